/*-------------------------------------------------------------------------
 *
 * sweep.h
 *		The data model of one sweep: every silent session found and what
 *		each stage learns of it (snapshot.h, locks.h), judges (policy.h)
 *		and acts on (action.h).  Types only.
 *
 * The map of the files, by layer, is in docs/design.md.
 *
 * Copyright (c) 2026, idle_guard developers
 *
 * IDENTIFICATION
 *	  src/sweep.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef IDLE_GUARD_SWEEP_H
#define IDLE_GUARD_SWEEP_H

#include "access/xact.h"
#include "libpq/pqcomm.h"
#include "utils/backend_status.h"

#include "policy.h"

/* Length of a textual client address, as inet_ntop would write it */
#define IG_ADDR_LEN		64

/*
 * Bounds of the postmortem record kept with each history entry (about
 * 8 kB an entry): the locks held and the sessions waiting beyond these
 * counts are counted but not described, and query texts are clipped.
 */
#define IG_RECORD_MAX_LOCKS		16
#define IG_RECORD_MAX_WAITERS	16
#define IG_QUERY_LEN			1024
#define IG_WAITER_QUERY_LEN		256

/* One lock a silent session holds, as its lock tag and modes */
typedef struct IgLockHeld
{
	uint8		locktype;		/* LockTagType */
	bool		fastpath;
	uint16		modes;			/* LOCKMASK: bit m = mode m held */
	uint32		field1;			/* lock tag fields, as in pg_locks */
	uint32		field2;
	uint32		field3;
	uint16		field4;
} IgLockHeld;

/* One session waiting on a silent session (directly or through the queue) */
typedef struct IgWaiterFact
{
	int			pid;
	uint8		mode;			/* lock mode it requests */
	uint8		locktype;		/* LockTagType of the lock it waits on */
	bool		direct;			/* waits on the silent session itself */
	bool		replay;			/* it is WAL replay (a standby's startup
								 * process) */
	TimestampTz wait_start;		/* when its lock wait began; 0 = unknown */
} IgWaiterFact;

/* What WAL replay on a hot standby is waiting for */
typedef enum IgReplayWait
{
	IG_REPLAY_NONE = 0,			/* not a standby, or replay is not waiting on
								 * a recovery conflict */
	IG_REPLAY_LOCK,				/* a lock that standby sessions hold */
	IG_REPLAY_SNAPSHOT,			/* snapshots that still see removed rows */
	IG_REPLAY_TABLESPACE,		/* sessions using a dropped tablespace */
	IG_REPLAY_BUFFER_PIN		/* a buffer pin some session holds */
} IgReplayWait;

/*
 * WAL replay on a hot standby, as one pass sees it.  Its lock waits are
 * part of the wait graph (locks.c); the other conflicts name no session,
 * so they are only reported.
 */
typedef struct IgReplay
{
	bool		in_recovery;
	int			pid;			/* the startup process; 0 = none seen */
	IgReplayWait wait;
	TimestampTz since;			/* when the wait began (a lock's wait start;
								 * else the first sight of this wait at this
								 * replay position); 0 = not waiting */
	IgLockHeld	lock;			/* for IG_REPLAY_LOCK: the lock awaited, its
								 * modes the mode requested */
} IgReplay;

/*
 * Everything the pipeline learns about one silent client backend, each fact
 * in one place.  Filled by backends.c (status), link.c (its client), locks.c
 * (locks and waiters) and pipeline.c (policy, exemption and decision).
 */
typedef struct IgSession
{
	IgEpisodeKey key;			/* pid, process start, state start, lxid; for
								 * a prepared transaction: 0, 0, 0, xid */
	IgReason	reason;			/* the shape of its silence */
	int			procno;			/* index in ProcGlobal->allProcs */
	Oid			userid;			/* a prepared transaction's owner */
	Oid			dbid;
	BackendState state;			/* STATE_UNDEFINED for a prepared xact */
	uint32		wait_event_info;	/* as read from its PGPROC */
	char		gid[GIDSIZE];	/* a prepared transaction's, once known */
	bool		gid_known;		/* gid is known ("" is a valid gid) */
	TimestampTz xact_start;
	TransactionId xid;
	TransactionId xmin;
	int32		xmin_age;		/* transactions since xmin; -1 = no xmin */
	char		appname[NAMEDATALEN];
	SockAddr	clientaddr;

	/* link.c (and facts.link) */
	IgTcpFacts	tcp;			/* the evidence, for a TCP client */

	/* locks.c (and facts.holds_locks, facts.blocked_total) */
	bool		holds_known;	/* true once facts.holds_locks is certain */
	int			locks_held;		/* pg_locks rows, but its own xid/vxid */
	int			strongest_mode; /* NoLock if none */
	int			blocked_direct;
	int		   *blocked_pids;	/* transitive waiters, sorted; palloc'd */
	bool		blocks_replay;	/* WAL replay is among its waiters */
	const IgReplay *replay;		/* the sweep's view of WAL replay */
	IgWaiterFact *waiters;		/* the same, with what each waits for */
	int			nheld;			/* locks described in held[] */
	IgLockHeld	held[IG_RECORD_MAX_LOCKS];

	/* pipeline.c */
	IgPolicy	policy;			/* the policy that applies to it */
	IgPolicySource policy_source;	/* most specific source among its values */
	IgDecision	decision;

	/*
	 * What the decision looks at, written in place by the stages: the start
	 * of the silence (backends.c, prepared.c, or its first observation in
	 * observe.c), the link (link.c), whether it holds locks and how many wait
	 * on it (locks.c), exemption and the last ACK (pipeline.c).
	 */
	IgFacts		facts;
} IgSession;

/* One pass of the pipeline: every silent session found */
typedef struct IgSweep
{
	TimestampTz now;
	int			nsessions;
	IgSession  *sessions;
	int			nwaiters;		/* backends waiting on a heavyweight lock */
	IgReplay	replay;			/* WAL replay, on a hot standby */
} IgSweep;

#endif							/* IDLE_GUARD_SWEEP_H */
