/*-------------------------------------------------------------------------
 *
 * idle_guard.h
 *		idle_guard's settings, shared state and the stages after the
 *		pipeline: the action, the history and the worker.
 *
 * The files, by stage (each stage's header includes the one before):
 *
 *	policy.h	pure decision			policy.c
 *	pipeline.h	snapshot, locks,		backends.c prepared.c observe.c
 *				waiters, one pass		locks.c session_policy.c pipeline.c
 *										gid.c
 *	idle_guard.h settings, shared		idle_guard.c (_PG_init, settings,
 *				state, action, worker	worker registration) shmem.c
 *										history.c persist.c names.c record.c
 *										keepalive.c client_message.c action.c
 *										worker.c gid_worker.c
 *										report.c (SQL functions)
 *	compat.h	every PostgreSQL version difference
 *
 * Calls go from later stages to earlier ones only (worker -> action ->
 * pipeline -> policy), and every file may use shmem.c and idle_guard.c's
 * settings, which call nothing above them.
 *
 * Copyright (c) 2026, idle_guard developers
 *
 * IDENTIFICATION
 *	  src/idle_guard.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef IDLE_GUARD_H
#define IDLE_GUARD_H

#include "access/xlogdefs.h"
#include "port/atomics.h"
#include "postmaster/bgworker.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "utils/guc.h"

#include "pipeline.h"

/*
 * Built-in defaults of the settings: the one place they are written (the
 * variables, the GUC boot values and a backend's initial published policy
 * all use these).
 */
#define IG_DEFAULT_ACTION				IG_ACTION_REPORT
#define IG_DEFAULT_BLOCKING_TIMEOUT_MS	(30 * 1000)
#define IG_DEFAULT_IDLE_TIMEOUT_MS		(5 * 60 * 1000)
#define IG_DEFAULT_NAPTIME_MS			1000
#define IG_DEFAULT_HISTORY_SIZE			1000
#define IG_DEFAULT_PREPARED_TIMEOUT_MS	(30 * 60 * 1000)
#define IG_DEFAULT_UNREACHABLE_TIMEOUT_MS (60 * 1000)
#define IG_DEFAULT_TCP_KEEPALIVES_S		10





/* Values of idle_guard.terminate_sqlstate */
typedef enum IgSqlstateSetting
{
	IG_SQLSTATE_ADMIN_SHUTDOWN = 0, /* 57P01, as pg_terminate_backend() */
	IG_SQLSTATE_IDLE_TIMEOUT	/* 25P03, as
								 * idle_in_transaction_session_timeout */
} IgSqlstateSetting;

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


/* The settings a session may have its own value of */
typedef enum IgPolicyField
{
	IG_FIELD_ACTION = 0,
	IG_FIELD_BLOCKING,
	IG_FIELD_IDLE
} IgPolicyField;

#define IG_NUM_FIELDS 3

/* A backend's values of those settings and their sources */
typedef struct IgSessionPolicy
{
	int			action;			/* IgActionSetting */
	int			blocking_timeout_ms;
	int			idle_timeout_ms;
	IgPolicySource source[IG_NUM_FIELDS];
} IgSessionPolicy;

/* What the worker did in the current episode of the backend of a PGPROC */
typedef struct IgEpisodeMemory
{
	IgEpisodeKey key;			/* the episode */
	IgAction	done;			/* IG_DO_NONE, IG_DO_REPORT or IG_DO_TERMINATE */
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
	/* added in state-file format 4 (1.4); see persist.c */
	IgRecordStandby standby;
	/* added in state-file format 5 (1.5): the client link and its evidence */
	IgLink		link;
	IgTcpFacts	tcp;
} IgRecord;

/* What one history entry says was done */
typedef enum IgHistoryAction
{
	IG_HIST_REPORTED = 0,
	IG_HIST_TERMINATED,
	IG_HIST_SKIPPED
} IgHistoryAction;

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
	IgHistoryAction action;
	Oid			dbid;			/* for a name not known when recorded */
	uint32		flags;			/* IG_HIST_GID_KNOWN; in the word that keeps
								 * the 1.3 entry size (see persist.c) */
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

/* idle_guard.c: settings, and the description of this library's workers */
extern PGDLLIMPORT int idle_guard_action;
extern PGDLLIMPORT int idle_guard_blocking_timeout;
extern PGDLLIMPORT int idle_guard_idle_timeout;
extern PGDLLIMPORT int idle_guard_naptime;
extern PGDLLIMPORT int idle_guard_history_size;
extern PGDLLIMPORT int idle_guard_prepared_timeout;
extern PGDLLIMPORT bool idle_guard_session_locks;
extern PGDLLIMPORT char *idle_guard_exempt_roles;
extern PGDLLIMPORT char *idle_guard_exempt_applications;
extern PGDLLIMPORT int idle_guard_terminate_sqlstate;
extern PGDLLIMPORT int idle_guard_unreachable_timeout;
extern PGDLLIMPORT int idle_guard_tcp_keepalives;
extern void idle_guard_current_policy(IgPolicy *policy);
extern const char *idle_guard_action_setting_name(IgActionSetting action);
extern void idle_guard_describe_worker(BackgroundWorker *worker,
									   const char *function_name,
									   const char *name, const char *type,
									   int restart_time);
extern bool idle_guard_role_exempt(const char *rolename);
extern bool idle_guard_exempt_roles_listed(void);
extern const char *idle_guard_exempt_role_names(int *count,
												uint64 *generation);
extern bool idle_guard_application_exempt(const char *appname);

/* names.c: catalog reads that never wait */
extern bool idle_guard_lock_catalog(Oid relid, Oid indexid);
extern void idle_guard_unlock_catalog(Oid relid, Oid indexid);
extern bool idle_guard_role_name(Oid roleid, char *buf);
extern bool idle_guard_database_name(Oid dbid, char *buf);
extern bool idle_guard_role_oid_exempt(Oid roleid);

/* shmem.c */
extern IgShared *idle_guard_shared;
extern void idle_guard_shmem_request(void);
extern void idle_guard_shmem_startup(const IgPolicy *defaults);
extern void idle_guard_require_loaded(void);
extern void idle_guard_wake_worker(void);
extern void idle_guard_publish_defaults(const IgPolicy *policy);

/* history.c */
extern void idle_guard_history_add(const IgSession *s, const char *usename,
								   const char *datname, const char *client,
								   TimestampTz at, IgHistoryAction action,
								   const char *detail,
								   const IgRecord *record);
extern const char *idle_guard_history_action_name(IgHistoryAction action);
extern void idle_guard_history_reset(void);

/* persist.c */
extern void idle_guard_load_state(void);
extern void idle_guard_save_state(int code, Datum arg);

/* session_policy.c */
extern bool idle_guard_check_policy_source(GucSource source, void **extra);
extern void idle_guard_assign_policy(IgPolicyField field, int value,
									 void *extra);
extern int	idle_guard_shortest_session_timeout(void);

/* backends.c, for the record: the status of the target and its waiters */
extern bool idle_guard_describe_sessions(IgRecord *rec, int target_pid,
										 IgEpisodeKey *key,
										 BackendState *state);

/* record.c */
extern bool idle_guard_build_record(const IgSession *s, IgRecord *rec,
									IgEpisodeKey *key, BackendState *state);
extern Datum idle_guard_record_jsonb(const IgRecord *rec, Oid target_userid,
									 bool (*can_see) (Oid userid));
extern char *idle_guard_relation_name(Oid dbid, Oid relid);

/* keepalive.c */
extern void idle_guard_install_keepalive_hook(void);

/* client_message.c */
extern void idle_guard_install_message_hook(void);
extern void idle_guard_note_end(const IgSession *s, bool by_conflict,
								TimestampTz now);
extern void idle_guard_note_clear(const IgSession *s);

/* action.c */
typedef enum IgActResult
{
	IG_ACT_DONE,				/* nothing more to do in this episode */
	IG_ACT_RETRY				/* look again after naptime */
} IgActResult;

extern IgActResult idle_guard_act(IgSession *s);

/* worker.c */
extern PGDLLEXPORT void idle_guard_worker_main(Datum main_arg);

/* gid_worker.c: naming prepared transactions from the worker */
extern void idle_guard_worker_gids(IgSweep *sweep);
extern PGDLLEXPORT void idle_guard_gid_main(Datum main_arg);
#endif							/* IDLE_GUARD_H */
