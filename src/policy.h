/*-------------------------------------------------------------------------
 *
 * policy.h
 *		The pure decision of idle_guard's pipeline: the facts about one
 *		silent session, the policy, and what follows from them.
 *
 * policy.c is compiled into a standalone unit test (test/policy_test.c) as
 * well as into the module, so this header pulls in nothing beyond
 * postgres.h and the timestamp type.
 *
 * Copyright (c) 2026, idle_guard developers
 *
 * IDENTIFICATION
 *	  src/policy.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef IDLE_GUARD_POLICY_H
#define IDLE_GUARD_POLICY_H

#include "datatype/timestamp.h"

/* Values of idle_guard.action, in increasing strength */
typedef enum IgActionSetting
{
	IG_ACTION_OFF = 0,
	IG_ACTION_REPORT,
	IG_ACTION_TERMINATE
} IgActionSetting;

/* What a silent backend waits on (reasons.h's "waits" column) */
typedef enum IgClientWait
{
	IG_WAITS_NOTHING = 0,		/* no backend: a prepared transaction */
	IG_WAITS_READ,				/* ClientRead */
	IG_WAITS_WRITE				/* ClientWrite */
} IgClientWait;

/* Where the start of a silence comes from (reasons.h's "timing") */
typedef enum IgTiming
{
	IG_TIMED_BY_STATE = 0,		/* the backend's last state change */
	IG_TIMED_BY_WAKEUPS,		/* its first observation; the silence restarts
								 * when the backend wakes up, or where that
								 * cannot be read, when observations are far
								 * apart (observe.c) */
	IG_TIMED_BY_WATCH,			/* its first observation; the silence restarts
								 * when observations are far apart */
	IG_TIMED_ONCE				/* its first observation; it cannot restart */
} IgTiming;

/* The setting that times the idle rule (reasons.h's "idle_by") */
typedef enum IgIdleBy
{
	IG_IDLE_BY_IDLE_TIMEOUT = 0,
	IG_IDLE_BY_PREPARED_TIMEOUT,
	IG_IDLE_BY_NOTHING			/* the idle rule never applies */
} IgIdleBy;

/* Whether the policy may terminate it (reasons.h's "may_end") */
typedef enum IgMayEnd
{
	IG_MAY_END = 0,
	IG_MAY_END_IF_SESSION_LOCKS,	/* only with idle_guard.session_locks */
	IG_MAY_NOT_END				/* reported at most */
} IgMayEnd;

/*
 * Why a session counts as silent: each way a client can leave a backend
 * waiting on it while locks are held (reasons.h).
 */
typedef enum IgReason
{
#define IG_REASON(symbol, ...) symbol,
#include "reasons.h"
#undef IG_REASON
	IG_REASON_END				/* not a reason: one past the last */
} IgReason;

/* A reason's line of reasons.h */
typedef struct IgReasonInfo
{
	const char *name;
	IgClientWait waits;
	IgTiming	timing;
	IgIdleBy	idle_by;
	IgMayEnd	may_end;
	bool		fastpath;
	bool		needs_waiter;
	bool		idle_in_xact;
	const char *words;
	const char *hint;
	const char *conflict_hint;
} IgReasonInfo;

/* What a rule's deadline counts from (rules.h's "clock") */
typedef enum IgClock
{
	IG_CLOCK_SILENCE = 0,		/* the start of the silence */
	IG_CLOCK_LAST_ACK			/* the client's last acknowledgement, or the
								 * start of the silence if later */
} IgClock;

/* When a rule applies (rules.h's "when") */
typedef enum IgWhen
{
	IG_WHEN_ALWAYS = 0,
	IG_WHEN_BLOCKING,			/* someone waits on the session */
	IG_WHEN_UNREACHABLE			/* the kernel finds its client unreachable */
} IgWhen;

/* The rule that fires for a session (rules.h) */
typedef enum IgRule
{
	IG_RULE_NONE = 0,			/* nothing would fire given current facts */
#define IG_RULE(symbol, ...) symbol,
#include "rules.h"
#undef IG_RULE
	IG_RULE_END					/* not a rule: one past the last */
} IgRule;

#define IG_RULE_FIRST	((IgRule) (IG_RULE_NONE + 1))

/* A rule's line of rules.h */
typedef struct IgRuleInfo
{
	const char *name;
	const char *setting;
	int			default_ms;
	bool		per_session;
	IgClock		clock;
	IgWhen		when;
	const char *message;
	const char *description;
	const char *details;
} IgRuleInfo;

/*
 * What the kernel's TCP state says of a silent session's client
 * (link.c reads it; idle_guard_classify_link judges it).  The names are
 * those of idle_guard_report().client_link.
 */
typedef enum IgLink
{
	IG_LINK_NONE = 0,			/* no client: a prepared transaction */
	IG_LINK_UNKNOWN,			/* no evidence could be read */
	IG_LINK_LOCAL,				/* a Unix socket: no evidence */
	IG_LINK_ALIVE,				/* the peer's kernel acknowledges */
	IG_LINK_NOT_READING,		/* zero window, probes answered */
	IG_LINK_UNREACHABLE,		/* data or probes unacknowledged */
	IG_LINK_CLOSED				/* the peer sent FIN or RST */
} IgLink;

/* The evidence of one TCP connection, from the kernel's struct tcp_info */
typedef struct IgTcpFacts
{
	bool		found;			/* the socket was found */
	uint8		state;			/* TCP state, as in <netinet/tcp.h> */
	uint8		retransmits;	/* retransmissions of the unacknowledged
								 * segment so far */
	uint8		probes;			/* zero-window or keepalive probes sent and
								 * not answered */
	uint8		backoff;		/* exponential backoff of the timer */
	uint32		unacked;		/* segments sent, not acknowledged */
	uint32		total_retrans;	/* retransmissions over its lifetime */
	uint32		last_ack_recv_ms;	/* since the peer's last ACK */
	uint32		last_data_recv_ms;	/* since the peer last sent data */
	uint32		last_data_sent_ms;	/* since we last sent data */
	uint32		snd_wnd;		/* the peer's advertised window, bytes */
	uint32		rto_us;			/* retransmission timeout */
} IgTcpFacts;

/*
 * How long the peer must have acknowledged nothing, with a retransmission
 * or probes unanswered, before its client counts as unreachable: on a
 * healthy path a retransmission is answered within a few RTOs.
 */
#define IG_LINK_UNREACHABLE_MIN_MS 1000

/*
 * How many probes in a row (zero-window or keepalive) the peer must have
 * left unanswered.  One is not enough: a live peer that stopped reading
 * answers out-of-window probes at most once per tcp_invalid_ratelimit
 * (500 ms by default), so it may leave the probe after an answered one
 * unanswered; two in a row span more than that (see
 * idle_guard_classify_link).
 */
#define IG_LINK_UNANSWERED_PROBES 2

/*
 * How long the peer must have acknowledged nothing before unanswered
 * probes count.  A live peer that stopped reading and rate-limits its
 * answers to out-of-window segments can leave two probes in a row
 * unanswered when its last ACK fell inside the rate limit of an earlier
 * answer; the next probe, at most 7 * 2^backoff bases after that ACK, is
 * answered.  Two unanswered take a rate limit above 3 * 2^backoff bases,
 * so with a rate limit of 1.2 s or less the last ACK of a live peer in
 * that state is under 2.8 s old (see idle_guard_classify_link).
 */
#define IG_LINK_PROBES_MIN_MS 3000

/*
 * And for no fewer probe bases (the RTO, at least 200 ms) than this: the
 * answer to a probe can be lost, and then the last two can go unanswered
 * with a rate limit of 500 ms, the first of them rate-limited, the second
 * lost; the next, 14 bases after the last ACK, is answered (plus the
 * timer's slack: up to 3.02 s seen at 208 ms).
 */
#define IG_LINK_PROBES_MIN_BASES 15

/*
 * The verdict of the decision: what idle_guard does (or would do) to a
 * session at its deadline, idle_guard_report().action
 */
typedef enum IgVerdict
{
	IG_VERDICT_NONE = 0,		/* no rule applies, or idle_guard.action = off */
	IG_VERDICT_REPORT,
	IG_VERDICT_TERMINATE,
	IG_VERDICT_EXEMPT			/* a rule applies but the session is exempt */
} IgVerdict;

/* The policy in force: copied from the GUCs, passed to the pure decision */
typedef struct IgPolicy
{
	IgActionSetting action;
	int			blocking_timeout_ms;	/* 0 = never */
	int			idle_timeout_ms;	/* 0 = never */
	int			prepared_timeout_ms;	/* 0 = never; prepared xacts only */
	bool		session_locks;	/* may terminate for session-level locks */
	int			unreachable_timeout_ms; /* 0 = never */
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
	IgLink		link;			/* what the kernel says of its client */
	TimestampTz unreachable_since;	/* the peer's last ACK, when link is
									 * IG_LINK_UNREACHABLE */
} IgFacts;

/* The outcome of the decision */
typedef struct IgDecision
{
	IgRule		rule;			/* rule that fires given current facts */
	TimestampTz deadline;		/* when it fires; 0 if rule is NONE */
	IgVerdict	action;			/* what happens at the deadline */
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

/* Where a session's policy value came from, least to most specific */
typedef enum IgPolicySource
{
	IG_SOURCE_DEFAULT = 0,		/* postgresql.conf or built-in default */
	IG_SOURCE_DATABASE,			/* ALTER DATABASE ... SET */
	IG_SOURCE_ROLE,				/* ALTER ROLE [... IN DATABASE] ... SET */
	IG_SOURCE_SESSION			/* SET, SET LOCAL, connection options */
} IgPolicySource;

/* policy.c */
extern void idle_guard_decide(const IgPolicy *policy, const IgFacts *facts,
							  TimestampTz now, IgDecision *out);
extern bool idle_guard_same_episode(const IgEpisodeKey *seen,
									const IgEpisodeKey *now);
extern bool idle_guard_app_matches(const char *pattern, const char *appname);
extern int	idle_guard_shorter_timeout(int a, int b);
extern IgVerdict idle_guard_policy_verdict(IgActionSetting setting);
extern const IgRuleInfo *idle_guard_rule(IgRule rule);
extern const char *idle_guard_rule_name(IgRule rule);
extern int	idle_guard_rule_timeout(const IgPolicy *policy, IgRule rule);
extern void idle_guard_set_rule_timeout(IgPolicy *policy, IgRule rule,
										int timeout_ms);
extern const IgReasonInfo *idle_guard_reason(IgReason reason);
extern IgLink idle_guard_classify_link(const IgTcpFacts *tcp);
extern const char *idle_guard_link_name(IgLink link);
extern const char *idle_guard_verdict_name(IgVerdict action);
extern const char *idle_guard_reason_name(IgReason reason);
extern const char *idle_guard_policy_source_name(IgPolicySource source);
extern void idle_guard_policy_for_reason(const IgPolicy *policy,
										 IgReason reason, IgPolicy *out);
extern TimestampTz idle_guard_observe(IgObservation *obs,
									  const IgEpisodeKey *key,
									  IgReason reason, bool wakeups_known,
									  uint64 wakeups, TimestampTz now,
									  int max_gap_ms);

#endif							/* IDLE_GUARD_POLICY_H */
