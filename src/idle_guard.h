/*-------------------------------------------------------------------------
 *
 * idle_guard.h
 *		Shared declarations for idle_guard: the per-session facts that flow
 *		through the pipeline, the policy types, the shared-memory state and
 *		the prototypes of every file, grouped by the file that defines them.
 *
 * The pipeline, shared by the worker and idle_guard_report():
 *
 *	backends.c	snapshot of silent client backends
 *	locks.c		what each one holds and who waits on it
 *	policy.c	pure decision: facts + policy + now -> rule, deadline, action
 *	pipeline.c	runs the three steps above for every session
 *	action.c	worker only: log, re-check, signal
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

#include "datatype/timestamp.h"

/*
 * policy.c is compiled into a standalone unit test as well as into the
 * module, so the part of this header it needs (policy types) must not pull
 * in anything beyond postgres.h.  The rest is hidden behind
 * IDLE_GUARD_POLICY_ONLY.
 */

/* Values of idle_guard.action, in increasing strength */
typedef enum IgActionSetting
{
	IG_ACTION_OFF = 0,
	IG_ACTION_REPORT,
	IG_ACTION_TERMINATE
} IgActionSetting;

/*
 * Why a session counts as silent: each way a client can leave a backend
 * waiting on it while locks are held.  The names are those of
 * idle_guard_report().silent_reason.
 */
typedef enum IgReason
{
	IG_REASON_IDLE_XACT = 0,	/* idle in transaction */
	IG_REASON_CLIENT_WRITE,		/* active, blocked sending results the client
								 * does not read */
	IG_REASON_REQUEST_INCOMPLETE,	/* active, waiting for the rest of an
									 * extended-protocol request */
	IG_REASON_PREPARED,			/* a prepared transaction: no backend */
	IG_REASON_SESSION_LOCK		/* idle (or aborted), holding a session-level
								 * lock someone waits on */
} IgReason;

/* The rule that fires for a session */
typedef enum IgRule
{
	IG_RULE_NONE = 0,			/* nothing would fire given current facts */
	IG_RULE_BLOCKING,			/* blocking someone past blocking_timeout */
	IG_RULE_IDLE				/* silent past idle_timeout */
} IgRule;

/* What idle_guard does (or would do) to a session */
typedef enum IgAction
{
	IG_DO_NONE = 0,				/* no rule applies, or idle_guard.action = off */
	IG_DO_REPORT,
	IG_DO_TERMINATE,
	IG_DO_EXEMPT				/* a rule applies but the session is exempt */
} IgAction;

/* The policy in force: copied from the GUCs, passed to the pure decision */
typedef struct IgPolicy
{
	IgActionSetting action;
	int			blocking_timeout_ms;	/* 0 = never */
	int			idle_timeout_ms;	/* 0 = never */
	int			prepared_timeout_ms;	/* 0 = never; prepared xacts only */
	bool		session_locks;	/* may terminate for session-level locks */
} IgPolicy;

/* The facts about one silent session that the decision looks at */
typedef struct IgFacts
{
	TimestampTz silent_since;	/* when it started waiting on its client */
	bool		holds_locks;	/* any lock but its own xid/vxid, or an xid */
	int			blocked_total;	/* sessions waiting on it, transitively */
	bool		exempt;			/* exempt by role or application */
	bool		observed;		/* silent_since is only the first observation
								 * of a silence with no timestamp: it must be
								 * looked at again every naptime */
} IgFacts;

/* The outcome of the decision */
typedef struct IgDecision
{
	IgRule		rule;			/* rule that fires given current facts */
	TimestampTz deadline;		/* when it fires; 0 if rule is NONE */
	IgAction	action;			/* what happens at the deadline */
	bool		due;			/* deadline reached: act now */
	TimestampTz wake_at;		/* next time the facts alone could change the
								 * outcome; 0 = never */
	bool		needs_poll;		/* would fire at once if someone started to
								 * wait on it: look again after naptime */
} IgDecision;

/*
 * What identifies one silent episode of one backend: the same pid in the
 * same process incarnation, silent since the same state change, in the
 * same local transaction.  A reused pid has another process start; a
 * client that woke up and went silent again has another state start.
 */
typedef struct IgEpisodeKey
{
	int			pid;
	TimestampTz proc_start;
	TimestampTz state_start;
	uint32		lxid;
} IgEpisodeKey;

/*
 * What the pipeline remembers of a silence that has no timestamp of its
 * own (client not reading, request incomplete): when it was first seen,
 * when last, and how often the backend had woken up by then.
 */
typedef struct IgObservation
{
	IgEpisodeKey key;			/* what was observed */
	IgReason	reason;
	bool		wakeups_known;	/* wakeups is from /proc/<pid>/status */
	uint64		wakeups;		/* the backend's voluntary context switches */
	TimestampTz first_seen;		/* start of the silence as observed; 0 = no
								 * observation */
	TimestampTz last_seen;
} IgObservation;

/* policy.c */
extern void idle_guard_decide(const IgPolicy *policy, const IgFacts *facts,
							  TimestampTz now, IgDecision *out);
extern bool idle_guard_same_episode(const IgEpisodeKey *seen,
									const IgEpisodeKey *now);
extern bool idle_guard_app_matches(const char *pattern, const char *appname);
extern int	idle_guard_shorter_timeout(int a, int b);
extern IgAction idle_guard_policy_action(IgActionSetting setting);
extern const char *idle_guard_rule_name(IgRule rule);
extern const char *idle_guard_action_name(IgAction action);
extern const char *idle_guard_reason_name(IgReason reason);
extern void idle_guard_policy_for_reason(const IgPolicy *policy,
										 IgReason reason, IgPolicy *out);
extern TimestampTz idle_guard_observe(IgObservation *obs,
									  const IgEpisodeKey *key,
									  IgReason reason, bool wakeups_known,
									  uint64 wakeups, TimestampTz now,
									  int max_gap_ms);

#ifndef IDLE_GUARD_POLICY_ONLY

#include "access/xact.h"
#include "libpq/pqcomm.h"
#include "nodes/pg_list.h"
#include "port/atomics.h"
#include "postmaster/bgworker.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "utils/backend_status.h"
#include "utils/guc.h"

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
	TimestampTz wait_start;		/* when its lock wait began; 0 = unknown */
} IgWaiterFact;

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

/* Where a session's policy value came from, least to most specific */
typedef enum IgPolicySource
{
	IG_SOURCE_DEFAULT = 0,		/* postgresql.conf or built-in default */
	IG_SOURCE_DATABASE,			/* ALTER DATABASE ... SET */
	IG_SOURCE_ROLE,				/* ALTER ROLE [... IN DATABASE] ... SET */
	IG_SOURCE_SESSION			/* SET, SET LOCAL, connection options */
} IgPolicySource;

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
 * Everything the pipeline learns about one silent client backend.  Filled
 * by backends.c (status), locks.c (locks and waiters) and pipeline.c
 * (exemption and decision).
 */
typedef struct IgSession
{
	IgEpisodeKey key;			/* pid, process start, state start, lxid; for
								 * a prepared transaction: 0, 0, 0, xid */
	IgReason	reason;			/* the shape of its silence */
	TimestampTz silent_since;	/* start of the silence, or its first
								 * observation (see observe.c) */
	int			procno;			/* index in ProcGlobal->allProcs */
	Oid			userid;			/* a prepared transaction's owner */
	Oid			dbid;
	BackendState state;			/* STATE_UNDEFINED for a prepared xact */
	uint32		wait_event_info;	/* as read from its PGPROC */
	char		gid[GIDSIZE];	/* a prepared transaction's; else "" */
	TimestampTz xact_start;
	TransactionId xid;
	TransactionId xmin;
	char		appname[NAMEDATALEN];
	SockAddr	clientaddr;

	/* locks.c */
	bool		holds_known;	/* true once holds_locks is certain */
	bool		holds_locks;
	int			locks_held;		/* pg_locks rows, but its own xid/vxid */
	int			strongest_mode; /* NoLock if none */
	bool		locks_exact;	/* locks_held counted in the lock table too */
	int			blocked_direct;
	int			blocked_total;
	int		   *blocked_pids;	/* transitive waiters, sorted; palloc'd */
	IgWaiterFact *waiters;		/* the same, with what each waits for */
	int			nheld;			/* locks described in held[] */
	IgLockHeld	held[IG_RECORD_MAX_LOCKS];

	/* pipeline.c */
	IgPolicy	policy;			/* the policy that applies to it */
	IgPolicySource policy_source;	/* most specific source among its values */
	IgFacts		facts;
	IgDecision	decision;
} IgSession;

/* One pass of the pipeline: every silent session found */
typedef struct IgSweep
{
	TimestampTz now;
	int			nsessions;
	IgSession  *sessions;
	int			nwaiters;		/* backends waiting on a heavyweight lock */
	bool		graph_built;	/* the lock-table pass ran */
} IgSweep;

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
} IgRecord;

/* What one history entry says was done */
typedef enum IgHistoryAction
{
	IG_HIST_REPORTED = 0,
	IG_HIST_TERMINATED,
	IG_HIST_SKIPPED
} IgHistoryAction;

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
	uint32		unused;			/* keeps the 1.3 entry size (see state.c) */
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
 * Shared state.  "lock" protects every field; the worker is the only
 * writer of everything but the history read position, so readers take it
 * shared and copy out what they need.
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
	int			nobserved;		/* valid entries in observations[] */
	int64		sweeps;
	TimestampTz last_sweep_at;
	double		last_sweep_ms;
	int			guarded_now;	/* silent lock holders at the last sweep */
	int64		reported;
	int64		terminated;
	int64		skipped;
	TimestampTz stats_reset;	/* when counters and history were cleared */
	int			history_size;	/* entries in the ring */
	int64		history_next;	/* total entries ever written */
	IgHistoryEntry history[FLEXIBLE_ARRAY_MEMBER];
} IgShared;

/* idle_guard.c: GUC values */
extern PGDLLIMPORT int idle_guard_action;
extern PGDLLIMPORT int idle_guard_blocking_timeout;
extern PGDLLIMPORT int idle_guard_idle_timeout;
extern PGDLLIMPORT int idle_guard_naptime;
extern PGDLLIMPORT int idle_guard_history_size;
extern PGDLLIMPORT int idle_guard_prepared_timeout;
extern PGDLLIMPORT bool idle_guard_session_locks;
extern PGDLLIMPORT char *idle_guard_exempt_roles;
extern PGDLLIMPORT char *idle_guard_exempt_applications;
extern void idle_guard_current_policy(IgPolicy *policy);
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

/* state.c */
extern IgShared *idle_guard_shared;
extern void idle_guard_shmem_request(void);
extern void idle_guard_shmem_startup(void);
extern void idle_guard_require_loaded(void);
extern void idle_guard_wake_worker(void);
extern void idle_guard_publish_defaults(const IgPolicy *policy);
extern void idle_guard_record(const IgSession *s, const char *usename,
							  const char *datname, const char *client,
							  TimestampTz at, IgHistoryAction action,
							  const char *detail, const IgRecord *record);
extern const char *idle_guard_history_action_name(IgHistoryAction action);
extern void idle_guard_reset_state(void);

/* backends.c */
extern void idle_guard_snapshot(IgSweep *sweep, bool session_locks);
extern const char *idle_guard_state_name(const IgSession *s);
extern bool idle_guard_client_addr_text(const SockAddr *addr, char *buf,
										size_t buflen);
extern bool idle_guard_describe_sessions(IgRecord *rec, int target_pid,
										 IgEpisodeKey *key,
										 BackendState *state);

/* observe.c */
extern void idle_guard_observe_sessions(IgSweep *sweep);

/* prepared.c */
extern void idle_guard_add_prepared(IgSweep *sweep, int room);
extern void idle_guard_prepared_gids(IgSweep *sweep);
extern void idle_guard_worker_gids(IgSweep *sweep);
extern PGDLLEXPORT void idle_guard_gid_main(Datum main_arg);

/* locks.c */
extern void idle_guard_fastpath_locks(IgSweep *sweep);
extern int	idle_guard_count_lock_waiters(void);
extern void idle_guard_lock_table_pass(IgSweep *sweep);

/* session_policy.c */
extern bool idle_guard_check_policy_source(GucSource source, void **extra);
extern void idle_guard_assign_policy(IgPolicyField field, int value,
									 void *extra);
extern void idle_guard_effective_policy(const IgPolicy *defaults, int procno,
										int pid, TimestampTz proc_start,
										IgPolicy *policy,
										IgPolicySource *source);
extern int	idle_guard_shortest_session_timeout(void);
extern const char *idle_guard_policy_source_name(IgPolicySource source);

/* record.c */
extern bool idle_guard_build_record(const IgSession *s, IgRecord *rec,
									IgEpisodeKey *key, BackendState *state);
extern Datum idle_guard_record_jsonb(const IgRecord *rec, Oid target_userid,
									 bool (*can_see) (Oid userid));

/* pipeline.c */
extern void idle_guard_collect(IgSweep *sweep, const IgPolicy *defaults,
							   bool exact);

/* action.c */
typedef enum IgActResult
{
	IG_ACT_DONE,				/* nothing more to do in this episode */
	IG_ACT_RETRY				/* look again after naptime */
} IgActResult;

extern IgActResult idle_guard_act(IgSession *s);

/* worker.c */
extern PGDLLEXPORT void idle_guard_worker_main(Datum main_arg);
extern void idle_guard_register_worker(void);
extern void idle_guard_describe_worker(BackgroundWorker *worker,
									   const char *function_name,
									   const char *name, const char *type,
									   int restart_time);

#endif							/* IDLE_GUARD_POLICY_ONLY */

#endif							/* IDLE_GUARD_H */
