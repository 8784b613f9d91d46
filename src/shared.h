/*-------------------------------------------------------------------------
 *
 * shared.h
 *		idle_guard's shared state: what lives in shared memory (shmem.c),
 *		the history ring with its postmortem records (history.c) and its
 *		file across clean restarts (persist.c).
 *
 * The map of the files, by layer, is in docs/design.md.
 *
 * Copyright (c) 2026, idle_guard developers
 *
 * IDENTIFICATION
 *	  src/shared.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef IDLE_GUARD_SHARED_H
#define IDLE_GUARD_SHARED_H

#include "access/xlogdefs.h"
#include "port/atomics.h"
#include "storage/latch.h"
#include "storage/lwlock.h"

#include "sweep.h"

/*
 * The words a session idle_guard ends reads in its FATAL, left by the
 * worker before the signal and taken by the session's emit_log_hook
 * (client_message.c).  One per PGPROC; written by the worker under the
 * change counter (odd while written), cleared by the backend it names.
 */
#define IG_NOTE_MESSAGE_LEN		256
#define IG_NOTE_DETAIL_LEN		512
#define IG_NOTE_HINT_LEN		256

typedef struct IgEndNote
{
	pg_atomic_uint32 changecount;
	int			pid;			/* the target; 0 = no note */
	TimestampTz proc_start;		/* the target's process start */
	int			sqlerrcode;		/* the SQLSTATE it reads */
	bool		by_conflict;	/* ended by the recovery-conflict signal */
	char		message[IG_NOTE_MESSAGE_LEN];
	char		detail[IG_NOTE_DETAIL_LEN];
	char		hint[IG_NOTE_HINT_LEN];
} IgEndNote;

/* A waiter as the record describes it */
typedef struct IgWaiterRecord
{
	IgWaiterFact fact;
	int64		waited_us;		/* how long it had waited when we acted; -1 =
								 * unknown */
	Oid			userid;
	char		usename[NAMEDATALEN];
	char		appname[NAMEDATALEN];
	char		query[IG_WAITER_QUERY_LEN];
} IgWaiterRecord;

/*
 * A backend's values of the settings a session may have its own value of
 * (action, and the timeouts of the rules rules.h marks per_session), and
 * their sources
 */
typedef struct IgSessionPolicy
{
	int			action;			/* IgActionSetting */
	IgPolicySource action_source;
	int			timeout_ms[IG_RULE_END];	/* by rule */
	IgPolicySource timeout_source[IG_RULE_END];
} IgSessionPolicy;

/* What the worker did in the current episode of the backend of a PGPROC */
typedef struct IgEpisodeMemory
{
	IgEpisodeKey key;			/* the episode */
	IgVerdict	done;			/* IG_VERDICT_NONE, IG_VERDICT_REPORT or
								 * IG_VERDICT_TERMINATE */
} IgEpisodeMemory;

/* One backend's published policy; see session_policy.c */
typedef struct IgSlot
{
	pg_atomic_uint32 changecount;	/* odd while being written */
	int			pid;			/* writer's pid */
	TimestampTz proc_start;		/* writer's process start */
	IgSessionPolicy policy;
} IgSlot;

/*
 * What the record says of WAL replay and of the session's snapshot: on a
 * hot standby, whether replay waited on the session and for what, and the
 * age of its xmin (with hot_standby_feedback, it holds back vacuum on the
 * primary).
 */
typedef struct IgRecordStandby
{
	bool		in_recovery;	/* the action was taken on a standby */
	bool		feedback;		/* hot_standby_feedback was on */
	bool		blocks_replay;	/* WAL replay was among the waiters */
	int32		xmin_age;		/* -1 = no xmin */
	IgReplay	replay;			/* what replay waited for then */
} IgRecordStandby;

/*
 * The postmortem record of one action: what the silent session was doing,
 * what it held, who waited on it, and the policy that applied.  Kept
 * structured; idle_guard_history() renders it as jsonb when read, applying
 * the caller's visibility and resolving relation names.
 */
typedef struct IgRecord
{
	char		query[IG_QUERY_LEN];	/* its last query, clipped */
	TimestampTz xact_start;
	TimestampTz silent_since;
	int			nlocks;			/* entries in locks[] */
	IgLockHeld	locks[IG_RECORD_MAX_LOCKS];
	int			nwaiters;		/* entries in waiters[] */
	IgWaiterRecord waiters[IG_RECORD_MAX_WAITERS];
	IgPolicy	policy;
	IgPolicySource policy_source;
	IgRecordStandby standby;
	/* the client link and its evidence */
	IgLink		link;
	IgTcpFacts	tcp;
} IgRecord;

/* What was done, as a history entry records it: idle_guard_history().action */
typedef enum IgOutcome
{
	IG_OUTCOME_REPORTED = 0,
	IG_OUTCOME_TERMINATED,
	IG_OUTCOME_SKIPPED
} IgOutcome;

/* IgHistoryEntry.flags: gid is the prepared transaction's gid */
#define IG_HIST_GID_KNOWN	0x0001

/* One entry of the history ring */
typedef struct IgHistoryEntry
{
	TimestampTz at;
	int			pid;
	Oid			userid;			/* for the visibility rules */
	char		usename[NAMEDATALEN];
	char		datname[NAMEDATALEN];
	char		appname[NAMEDATALEN];
	char		client_addr[IG_ADDR_LEN];	/* "" = local or unknown */
	int64		silent_for_us;
	int			locks_held;
	int			blocked_total;
	IgRule		rule;
	IgOutcome	action;
	Oid			dbid;			/* for a name not known when recorded */
	uint32		flags;			/* IG_HIST_GID_KNOWN */
	char		detail[128];
	IgReason	reason;
	char		gid[GIDSIZE];	/* "" unless a prepared transaction */
	IgRecord	record;
} IgHistoryEntry;

/*
 * The gid of one prepared transaction, as the gid lookup worker found it
 * (prepared.c); kept by the index of its dummy PGPROC.
 */
typedef struct IgPreparedGid
{
	TransactionId xid;			/* InvalidTransactionId = nothing known */
	char		gid[GIDSIZE];
} IgPreparedGid;

/*
 * Shared state.  "lock" protects every field but slots[] (each backend
 * writes its own, under a change counter), wake_pending (an atomic) and
 * episodes[] (the worker's alone).  Writers under "lock" held exclusively:
 * the worker (its identity, the defaults, the sweep counters, the history
 * and the action counters), every pass of the pipeline, the worker's or a
 * report's (observations[], see observe.c; replay_seen_*, see replay.c),
 * the gid lookup worker
 * (gids[]), and idle_guard_reset() (counters and history).  Readers take
 * it shared and copy out what they need.
 */
typedef struct IgShared
{
	LWLock	   *lock;
	int			worker_pid;		/* 0 when no worker runs */
	TimestampTz worker_started_at;
	Latch	   *worker_latch;	/* set to wake the worker; NULL if none */
	pg_atomic_uint32 wake_pending;	/* a backend asked for a sweep */
	IgPolicy	defaults;		/* cluster-wide policy, as the worker has it */
	int			nslots;			/* entries in slots[] */
	IgSlot	   *slots;			/* per-backend policies, by PGPROC index;
								 * written without "lock" (change counter) */
	IgEpisodeMemory *episodes;	/* by PGPROC index, prepared transactions'
								 * dummy PGPROCs included; the worker's alone,
								 * kept here so a restarted worker remembers */
	IgObservation *observations;	/* by PGPROC index, prepared transactions'
									 * dummy PGPROCs included */
	IgPreparedGid *gids;		/* by index in PreparedXactProcs; written by
								 * the gid lookup worker */
	IgEndNote  *notes;			/* by PGPROC index (nslots); written by the
								 * worker under a change counter, cleared by
								 * the backend named */
	int			nobserved;		/* valid entries in observations[] */
	int64		sweeps;
	TimestampTz last_sweep_at;
	double		last_sweep_ms;
	int			guarded_now;	/* silent lock holders at the last sweep */
	int64		reported;
	int64		terminated;
	int64		skipped;
	TimestampTz stats_reset;	/* when counters and history were cleared */
	IgReplayWait replay_seen_wait;	/* replay.c: a replay wait first seen */
	XLogRecPtr	replay_seen_lsn;	/* at this replay position */
	TimestampTz replay_seen_since;	/* at this time */
	int			history_size;	/* entries in the ring */
	int64		history_next;	/* total entries ever written */
	IgHistoryEntry history[FLEXIBLE_ARRAY_MEMBER];
} IgShared;

/* shmem.c */
extern IgShared *idle_guard_shared;
extern void idle_guard_shmem_request(int history_size);
extern bool idle_guard_shmem_startup(int history_size,
									 const IgPolicy *defaults);
extern void idle_guard_require_loaded(void);
extern void idle_guard_wake_worker(void);
extern void idle_guard_publish_defaults(const IgPolicy *policy);

/* history.c */
extern void idle_guard_history_add(const IgSession *s, const char *usename,
								   const char *datname, const char *client,
								   TimestampTz at, IgOutcome action,
								   const char *detail,
								   const IgRecord *record);
extern const char *idle_guard_outcome_name(IgOutcome action);
extern void idle_guard_history_reset(void);

/* persist.c */
extern void idle_guard_load_state(void);
extern void idle_guard_save_state(int code, Datum arg);

#endif							/* IDLE_GUARD_SHARED_H */
