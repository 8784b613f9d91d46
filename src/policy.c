/*-------------------------------------------------------------------------
 *
 * policy.c
 *		The policy decision: given the facts about one silent session, the
 *		policy in force and the current time, which rule fires, when, and
 *		what idle_guard does then.
 *
 * Everything here is a pure function of its arguments: no shared memory,
 * no GUC reads, no clock, no allocation.  That keeps the worker and
 * idle_guard_report() in agreement (both call it with the same inputs) and
 * lets test/policy_test.c check it on its own against a table of cases.
 *
 * Copyright (c) 2026, idle_guard developers
 *
 * IDENTIFICATION
 *	  src/policy.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <netinet/tcp.h>

#define IDLE_GUARD_POLICY_ONLY
#include "policy.h"

/* Microseconds in a millisecond, for TimestampTz arithmetic */
#define IG_USECS_PER_MS INT64CONST(1000)

/* The lines of reasons.h, by IgReason */
static const IgReasonInfo ig_reasons[] = {
#define IG_REASON(symbol, name, waits, timing, idle_by, may_end, fastpath, \
				  needs_waiter, idle_in_xact, words, hint, conflict_hint) \
	[symbol] = {name, waits, timing, idle_by, may_end, fastpath, \
				needs_waiter, idle_in_xact, words, hint, conflict_hint},
#include "reasons.h"
#undef IG_REASON
};

/* The lines of rules.h, by IgRule (none for IG_RULE_NONE) */
static const IgRuleInfo ig_rules[] = {
#define IG_RULE(symbol, name, setting, field, default_ms, per_session, \
				clock, when, message, description, details) \
	[symbol] = {name, setting, default_ms, per_session, clock, when, \
				message, description, details},
#include "rules.h"
#undef IG_RULE
};

StaticAssertDecl(lengthof(ig_reasons) == IG_REASON_END,
				 "every reason has its line");
StaticAssertDecl(lengthof(ig_rules) == IG_RULE_END,
				 "every rule has its line");

static TimestampTz ig_rule_deadline(const IgRuleInfo *rule, int timeout_ms,
									const IgFacts *facts);
static bool ig_rule_applies(const IgRuleInfo *rule, const IgFacts *facts);

/*
 * idle_guard_decide
 *		Decide what happens to one silent session.
 *
 * A session that holds no lock is never a candidate.  Otherwise three
 * rules may apply: "blocking" (someone waits on it, blocking_timeout) and
 * "idle" (idle_timeout, whether or not anyone waits), each counted from
 * the start of the silence, and "unreachable" (unreachable_timeout),
 * counted from the last acknowledgement of a client the kernel finds
 * unreachable, or from the start of the silence if that is later (a client
 * lost during a long statement is given the same time once its session
 * goes silent, and the worker, which cannot see a session go silent,
 * wakes unreachable_timeout after each sweep at the latest: so it is never
 * late).  The earliest applicable deadline wins; a timeout of 0 disables
 * its rule.  Only an unreachable client brings a deadline closer: one
 * whose kernel answers (alive, not reading) never does.
 *
 * A TCP client can become unreachable at any moment without notice, so
 * while the unreachable rule is on, a silent lock holder whose client is
 * on TCP is looked at every naptime.
 *
 * Besides the verdict, tell the worker when it must look again without
 * being woken: at the deadline, at the moment the blocking deadline passes
 * (it fires then only if someone waits, which only a look can tell), and
 * after naptime while a blocking deadline has passed but nobody waits yet
 * (waiters arrive without notice) or while the silence is known only by
 * observation (it must be seen to last).  Exempt sessions and action = off
 * never need a look: nothing would be done to them.
 */
void
idle_guard_decide(const IgPolicy *policy, const IgFacts *facts,
				  TimestampTz now, IgDecision *out)
{
	IgRule		r;

	memset(out, 0, sizeof(IgDecision));
	out->rule = IG_RULE_NONE;
	out->action = IG_VERDICT_NONE;

	if (!facts->holds_locks)
		return;

	/* the earliest deadline of a rule that applies; ties by list order */
	for (r = IG_RULE_FIRST; r < IG_RULE_END; r++)
	{
		const IgRuleInfo *rule = &ig_rules[r];
		int			timeout_ms = idle_guard_rule_timeout(policy, r);
		TimestampTz deadline;

		if (timeout_ms <= 0 || !ig_rule_applies(rule, facts))
			continue;
		deadline = ig_rule_deadline(rule, timeout_ms, facts);
		if (out->rule == IG_RULE_NONE || deadline < out->deadline)
		{
			out->rule = r;
			out->deadline = deadline;
		}
	}

	if (out->rule == IG_RULE_NONE)
		out->action = IG_VERDICT_NONE;
	else if (facts->exempt)
		out->action = IG_VERDICT_EXEMPT;
	else
		out->action = idle_guard_policy_verdict(policy->action);

	out->due = (out->rule != IG_RULE_NONE && now >= out->deadline);

	/* Nothing will ever be done to this session: no need to look again */
	if (facts->exempt || policy->action == IG_ACTION_OFF || out->due)
		return;

	if (out->rule != IG_RULE_NONE)
		out->wake_at = out->deadline;

	/* A silence known only by observation must be watched continuously */
	if (facts->observed)
		out->needs_poll = true;

	/* So must what can make a rule apply without notice */
	for (r = IG_RULE_FIRST; r < IG_RULE_END; r++)
	{
		const IgRuleInfo *rule = &ig_rules[r];
		int			timeout_ms = idle_guard_rule_timeout(policy, r);
		TimestampTz deadline;

		if (timeout_ms <= 0)
			continue;
		switch (rule->when)
		{
			case IG_WHEN_ALWAYS:
				break;
			case IG_WHEN_BLOCKING:
				/* waiters arrive without notice: look when it would fire */
				if (ig_rule_applies(rule, facts))
					break;
				deadline = ig_rule_deadline(rule, timeout_ms, facts);
				if (deadline <= now)
					out->needs_poll = true;
				else if (out->wake_at == 0 || deadline < out->wake_at)
					out->wake_at = deadline;
				break;
			case IG_WHEN_UNREACHABLE:
				/* a TCP client can become unreachable at any moment */
				if (facts->link >= IG_LINK_ALIVE)
					out->needs_poll = true;
				break;
		}
	}
}

/*
 * A rule's deadline for a session with these facts: timeout_ms after what
 * its clock counts from, never earlier than the start of the silence (see
 * rules.h).
 */
static TimestampTz
ig_rule_deadline(const IgRuleInfo *rule, int timeout_ms, const IgFacts *facts)
{
	TimestampTz start = facts->silent_since;

	switch (rule->clock)
	{
		case IG_CLOCK_SILENCE:
			break;
		case IG_CLOCK_LAST_ACK:
			start = Max(facts->unreachable_since, facts->silent_since);
			break;
	}
	return start + timeout_ms * IG_USECS_PER_MS;
}

/* Does a rule apply to a session with these facts? */
static bool
ig_rule_applies(const IgRuleInfo *rule, const IgFacts *facts)
{
	switch (rule->when)
	{
		case IG_WHEN_ALWAYS:
			break;
		case IG_WHEN_BLOCKING:
			return facts->blocked_total > 0;
		case IG_WHEN_UNREACHABLE:
			return facts->link == IG_LINK_UNREACHABLE;
	}
	return true;
}

/*
 * idle_guard_policy_for_reason
 *		The policy that applies to a session given why it is silent, from
 *		the policy of its role, database and session (or the defaults).
 *
 * The reason's line (reasons.h) says which setting times its idle rule and
 * whether it may be terminated.  A prepared transaction has no backend to
 * signal: it is reported at most, by the blocking rule or once it has been
 * prepared for prepared_timeout.  A session lock held between transactions
 * is often deliberate (leader election, job queues): the idle rule does
 * not apply to it (the blocking rule does, and the unreachable one, since
 * a client that is gone will never release it), and it is terminated only
 * when session_locks allows.  Every other silence follows the policy as
 * it is.
 */
void
idle_guard_policy_for_reason(const IgPolicy *policy, IgReason reason,
							 IgPolicy *out)
{
	const IgReasonInfo *info = idle_guard_reason(reason);

	*out = *policy;
	switch (info->idle_by)
	{
		case IG_IDLE_BY_IDLE_TIMEOUT:
			break;
		case IG_IDLE_BY_PREPARED_TIMEOUT:
			out->idle_timeout_ms = policy->prepared_timeout_ms;
			break;
		case IG_IDLE_BY_NOTHING:
			out->idle_timeout_ms = 0;
			break;
	}
	switch (info->may_end)
	{
		case IG_MAY_END:
			break;
		case IG_MAY_END_IF_SESSION_LOCKS:
			if (!policy->session_locks)
				out->action = Min(policy->action, IG_ACTION_REPORT);
			break;
		case IG_MAY_NOT_END:
			out->action = Min(policy->action, IG_ACTION_REPORT);
			break;
	}
}

/*
 * idle_guard_observe
 *		Update the memory of a silence that has no timestamp of its own and
 *		return when it started, as far as observation can tell.
 *
 * The silence continues from the last observation if this one is of the
 * same backend, statement and transaction (key), for the same reason,
 * with no progress in between: the backend has not woken up since (its
 * count of voluntary context switches is unchanged) where both counts are
 * known, or, where they are not, the previous observation is at most
 * max_gap_ms old (the worker looks every naptime while it watches such a
 * session; 0 = no limit, for what cannot make progress).  Otherwise a new
 * silence starts now: a slow client that keeps reading wakes its backend
 * every time it drains the socket, so it is never silent for long.
 */
TimestampTz
idle_guard_observe(IgObservation *obs, const IgEpisodeKey *key,
				   IgReason reason, bool wakeups_known, uint64 wakeups,
				   TimestampTz now, int max_gap_ms)
{
	bool		continues = obs->first_seen != 0 &&
		idle_guard_same_episode(&obs->key, key) &&
		obs->reason == reason;

	if (continues)
	{
		if (wakeups_known && obs->wakeups_known)
			continues = (wakeups == obs->wakeups);
		else if (max_gap_ms > 0)
			continues = (now - obs->last_seen <=
						 (TimestampTz) max_gap_ms * IG_USECS_PER_MS);
	}

	if (!continues)
	{
		obs->key = *key;
		obs->reason = reason;
		obs->first_seen = now;
	}
	obs->wakeups_known = wakeups_known;
	obs->wakeups = wakeups;
	obs->last_seen = now;
	return obs->first_seen;
}

/*
 * idle_guard_policy_verdict
 *		What a setting of idle_guard.action does at a deadline: the
 *		strongest action a session under that setting can meet.
 */
IgVerdict
idle_guard_policy_verdict(IgActionSetting setting)
{
	switch (setting)
	{
		case IG_ACTION_REPORT:
			return IG_VERDICT_REPORT;
		case IG_ACTION_TERMINATE:
			return IG_VERDICT_TERMINATE;
		case IG_ACTION_OFF:
			break;
	}
	return IG_VERDICT_NONE;
}

/*
 * idle_guard_shorter_timeout
 *		The shorter of two timeouts in ms, where 0 means "disabled": 0 only
 *		if both are.
 */
int
idle_guard_shorter_timeout(int a, int b)
{
	if (a == 0)
		return b;
	if (b == 0)
		return a;
	return Min(a, b);
}

/*
 * idle_guard_same_episode
 *		Is the backend seen now the one, in the same silent episode, that a
 *		decision was made about?
 *
 * Called immediately before a signal.  A different process start means the
 * pid was reused; a different state start or local transaction means the
 * client sent something and the silence it was judged for is over.
 */
bool
idle_guard_same_episode(const IgEpisodeKey *seen, const IgEpisodeKey *now)
{
	return seen->pid == now->pid &&
		seen->proc_start == now->proc_start &&
		seen->state_start == now->state_start &&
		seen->lxid == now->lxid;
}

/*
 * idle_guard_app_matches
 *		Does application_name match one entry of exempt_applications?
 *
 * An entry matches exactly, or, when it ends in '*', as a prefix.  The
 * comparison is case-sensitive, like application_name itself.  A NULL
 * application name matches nothing.
 */
bool
idle_guard_app_matches(const char *pattern, const char *appname)
{
	size_t		len = strlen(pattern);

	if (appname == NULL)
		return false;
	if (len > 0 && pattern[len - 1] == '*')
		return strncmp(pattern, appname, len - 1) == 0;
	return strcmp(pattern, appname) == 0;
}

/*
 * idle_guard_rule
 *		A rule's line of rules.h; NULL for IG_RULE_NONE.
 */
const IgRuleInfo *
idle_guard_rule(IgRule rule)
{
	if (rule <= IG_RULE_NONE || rule >= IG_RULE_END)
		return NULL;
	return &ig_rules[rule];
}

/*
 * idle_guard_rule_name
 *		The word used for a rule in the report, the log and the history;
 *		NULL for none.
 */
const char *
idle_guard_rule_name(IgRule rule)
{
	const IgRuleInfo *info = idle_guard_rule(rule);

	return info ? info->name : NULL;
}

/*
 * idle_guard_rule_timeout
 *		The value in a policy of the setting that times a rule (its "field"
 *		in rules.h); 0 for none.
 */
int
idle_guard_rule_timeout(const IgPolicy *policy, IgRule rule)
{
	switch (rule)
	{
#define IG_RULE(symbol, name, setting, field, ...) \
		case symbol: \
			return policy->field;
#include "rules.h"
#undef IG_RULE
		case IG_RULE_NONE:
		case IG_RULE_END:
			break;
	}
	return 0;
}

/*
 * idle_guard_set_rule_timeout
 *		Set the value in a policy of the setting that times a rule.
 */
void
idle_guard_set_rule_timeout(IgPolicy *policy, IgRule rule, int timeout_ms)
{
	switch (rule)
	{
#define IG_RULE(symbol, name, setting, field, ...) \
		case symbol: \
			policy->field = timeout_ms; \
			break;
#include "rules.h"
#undef IG_RULE
		case IG_RULE_NONE:
		case IG_RULE_END:
			break;
	}
}

/*
 * idle_guard_classify_link
 *		Judge a TCP connection by its kernel's evidence.
 *
 * Closed: the peer sent FIN or RST (its side is closed, ours not yet).
 *
 * Unreachable needs evidence a live peer cannot produce, and nothing
 * acknowledged for IG_LINK_UNREACHABLE_MIN_MS:
 *	- data in flight whose last two retransmissions went unanswered: the
 *	  peer's last ACK is older than the last data we sent (the latest
 *	  retransmission) by three quarters of the RTO or more.  The RTO
 *	  doubles with each retransmission, so the one before the latest went
 *	  out half an RTO before it, and the one before that a quarter earlier
 *	  still.  A live peer answers a retransmission within a round trip,
 *	  without a rate limit, even when it has no room to keep the data;
 *	- or IG_LINK_UNANSWERED_PROBES probes in a row unanswered, and no ACK
 *	  for IG_LINK_PROBES_MIN_MS and IG_LINK_PROBES_MIN_BASES RTOs.  A live
 *	  peer answers a keepalive probe within a round trip, and the next one
 *	  is a keepalive interval later.
 *	  A live peer that stopped reading answers the zero-window probes
 *	  (out-of-window segments) at most once per its tcp_invalid_ratelimit
 *	  (500 ms by default), counted from its last such answer, which is at
 *	  or before its last ACK.  Our kernel sends the probes at base <<
 *	  backoff (base at least 200 ms, the backoff grown by one per probe,
 *	  answered or not, and reset when the window opens), so after an ACK
 *	  at backoff b the next probes come 2^b, 3 * 2^b and 7 * 2^b bases
 *	  later.  When that ACK fell inside the rate limit of an earlier answer
 *	  (the window closed again soon after it opened), the first two can go
 *	  unanswered if the rate limit exceeds 3 * 2^b bases; the third,
 *	  later than the rate limit, is answered: for a rate limit of 1.2 s or
 *	  less, under 2.8 s after the ACK.  One answer lost on the way (a busy
 *	  machine) can stand in for one rate-limited: after an ACK at backoff
 *	  1 the probe 2 bases later is rate-limited, the one 6 bases later
 *	  lost, and the one 14 bases later answered, hence the floor in bases.
 *	  A dead peer leaves them all unanswered, and its last ACK grows old.
 *
 * Not reading: the peer advertises a zero window and answers probes often
 * enough not to be unreachable.  Alive: its kernel acknowledges, whatever
 * its application does.  A socket not found is unknown.
 */
IgLink
idle_guard_classify_link(const IgTcpFacts *tcp)
{
	bool		silent_peer;

	if (!tcp->found)
		return IG_LINK_UNKNOWN;
	switch (tcp->state)
	{
		case TCP_ESTABLISHED:
			break;
		case TCP_CLOSE_WAIT:
		case TCP_LAST_ACK:
		case TCP_CLOSING:
		case TCP_TIME_WAIT:
		case TCP_CLOSE:
			return IG_LINK_CLOSED;
		default:
			return IG_LINK_UNKNOWN;
	}
	silent_peer = tcp->last_ack_recv_ms >= IG_LINK_UNREACHABLE_MIN_MS;
	if (silent_peer && tcp->retransmits >= 2 && tcp->unacked > 0 &&
		tcp->last_ack_recv_ms > tcp->last_data_sent_ms &&
		(uint64) (tcp->last_ack_recv_ms - tcp->last_data_sent_ms) * 4000 >=
		(uint64) tcp->rto_us * 3)
		return IG_LINK_UNREACHABLE;
	if (tcp->last_ack_recv_ms >= IG_LINK_PROBES_MIN_MS &&
		(uint64) tcp->last_ack_recv_ms * 1000 >=
		(uint64) tcp->rto_us * IG_LINK_PROBES_MIN_BASES &&
		tcp->probes >= IG_LINK_UNANSWERED_PROBES)
		return IG_LINK_UNREACHABLE;
	if (tcp->snd_wnd == 0)
		return IG_LINK_NOT_READING;
	return IG_LINK_ALIVE;
}

/*
 * idle_guard_link_name
 *		The words used for a client link in the report, the log and the
 *		history; NULL for none (a prepared transaction).
 */
const char *
idle_guard_link_name(IgLink link)
{
	switch (link)
	{
		case IG_LINK_UNKNOWN:
			return "unknown";
		case IG_LINK_LOCAL:
			return "local";
		case IG_LINK_ALIVE:
			return "alive";
		case IG_LINK_NOT_READING:
			return "not reading";
		case IG_LINK_UNREACHABLE:
			return "unreachable";
		case IG_LINK_CLOSED:
			return "closed";
		case IG_LINK_NONE:
			break;
	}
	return NULL;
}

/*
 * idle_guard_reason
 *		A reason's line of reasons.h.  An out-of-range value (from a damaged
 *		history entry) gets the first line.
 */
const IgReasonInfo *
idle_guard_reason(IgReason reason)
{
	if ((int) reason < 0 || reason >= IG_REASON_END)
		return &ig_reasons[0];
	return &ig_reasons[reason];
}

/*
 * idle_guard_reason_name
 *		The words used for a reason in the report, the log and the history.
 */
const char *
idle_guard_reason_name(IgReason reason)
{
	if ((int) reason < 0 || reason >= IG_REASON_END)
		return "unknown";
	return ig_reasons[reason].name;
}

/*
 * idle_guard_verdict_name
 *		The word used for an action in the report.
 */
const char *
idle_guard_verdict_name(IgVerdict action)
{
	switch (action)
	{
		case IG_VERDICT_REPORT:
			return "report";
		case IG_VERDICT_TERMINATE:
			return "terminate";
		case IG_VERDICT_EXEMPT:
			return "exempt";
		case IG_VERDICT_NONE:
			break;
	}
	return "none";
}

/*
 * idle_guard_policy_source_name
 *		The word shown in idle_guard_report().policy_source.
 */
const char *
idle_guard_policy_source_name(IgPolicySource source)
{
	switch (source)
	{
		case IG_SOURCE_DATABASE:
			return "database";
		case IG_SOURCE_ROLE:
			return "role";
		case IG_SOURCE_SESSION:
			return "session";
		case IG_SOURCE_DEFAULT:
			break;
	}
	return "default";
}
