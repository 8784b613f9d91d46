/*-------------------------------------------------------------------------
 *
 * policy_test.c
 *		Table-driven test of idle_guard's pure policy functions, built and
 *		run without a server ("make unittest").
 *
 * Each case gives the policy, the facts about one silent session and the
 * time since it went silent, and the expected verdict: rule, deadline,
 * action, whether it is due, when the worker must look again and whether
 * it must poll for waiters.  Episode and application-name matching are
 * checked the same way.  Prints one line per failure and a closing line
 * "policy: N passed, M failed"; exits non-zero on any failure.
 *
 * Copyright (c) 2026, idle_guard developers
 *
 * IDENTIFICATION
 *	  test/policy_test.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <stdio.h>

#include "policy.h"

#define MS(x)	((TimestampTz) (x) * 1000)
#define NOW		MS(1000000000)	/* an arbitrary "now" */
#define NEVER	(-1)			/* expected time that must be 0 */

typedef struct PolicyCase
{
	const char *name;
	IgActionSetting action;
	int			blocking_ms;
	int			idle_ms;
	int			silent_ms;		/* silent for this long at NOW */
	bool		holds;
	int			blocked;
	bool		exempt;
	/* expected */
	IgRule		rule;
	int			deadline_ms;	/* after the start of silence; NEVER = 0 */
	IgVerdict	act;
	bool		due;
	int			wake_ms;		/* after the start of silence; NEVER = 0 */
	bool		poll;
} PolicyCase;

static const PolicyCase cases[] = {
	/*
	 * name; action, blocking_timeout, idle_timeout, silent for, holds locks,
	 * blocked, exempt; expected rule, deadline, action, due, wake, poll
	 */
	{
		"no lock: never a candidate",
		IG_ACTION_TERMINATE, 1000, 5000, 60000, false, 3, false,
		IG_RULE_NONE, NEVER, IG_VERDICT_NONE, false, NEVER, false
	},
	{
		"blocking, before blocking deadline",
		IG_ACTION_TERMINATE, 1000, 5000, 500, true, 1, false,
		IG_RULE_BLOCKING, 1000, IG_VERDICT_TERMINATE, false, 1000, false
	},
	{
		"blocking, at blocking deadline: due",
		IG_ACTION_TERMINATE, 1000, 5000, 1000, true, 1, false,
		IG_RULE_BLOCKING, 1000, IG_VERDICT_TERMINATE, true, NEVER, false
	},
	{
		"blocking, 1 ms before the deadline: not due",
		IG_ACTION_TERMINATE, 1000, 5000, 999, true, 1, false,
		IG_RULE_BLOCKING, 1000, IG_VERDICT_TERMINATE, false, 1000, false
	},
	{
		"not blocking, before blocking deadline: wake at it",
		IG_ACTION_TERMINATE, 1000, 5000, 200, true, 0, false,
		IG_RULE_IDLE, 5000, IG_VERDICT_TERMINATE, false, 1000, false
	},
	{
		"not blocking, past blocking deadline: poll for waiters",
		IG_ACTION_TERMINATE, 1000, 5000, 2000, true, 0, false,
		IG_RULE_IDLE, 5000, IG_VERDICT_TERMINATE, false, 5000, true
	},
	{
		"not blocking, past idle deadline: due by idle",
		IG_ACTION_TERMINATE, 1000, 5000, 5000, true, 0, false,
		IG_RULE_IDLE, 5000, IG_VERDICT_TERMINATE, true, NEVER, false
	},
	{
		"blocking and idle both passed: blocking is the earlier rule",
		IG_ACTION_TERMINATE, 1000, 5000, 9000, true, 2, false,
		IG_RULE_BLOCKING, 1000, IG_VERDICT_TERMINATE, true, NEVER, false
	},
	{
		"idle shorter than blocking: idle wins even when blocking",
		IG_ACTION_TERMINATE, 8000, 3000, 100, true, 1, false,
		IG_RULE_IDLE, 3000, IG_VERDICT_TERMINATE, false, 3000, false
	},
	{
		"equal deadlines: blocking named",
		IG_ACTION_TERMINATE, 3000, 3000, 3000, true, 1, false,
		IG_RULE_BLOCKING, 3000, IG_VERDICT_TERMINATE, true, NEVER, false
	},
	{
		"blocking_timeout 0: blocking rule disabled",
		IG_ACTION_TERMINATE, 0, 5000, 2000, true, 4, false,
		IG_RULE_IDLE, 5000, IG_VERDICT_TERMINATE, false, 5000, false
	},
	{
		"idle_timeout 0, not blocking: no rule yet, wake at blocking deadline",
		IG_ACTION_TERMINATE, 1000, 0, 100, true, 0, false,
		IG_RULE_NONE, NEVER, IG_VERDICT_NONE, false, 1000, false
	},
	{
		"idle_timeout 0, not blocking, past blocking deadline: poll",
		IG_ACTION_TERMINATE, 1000, 0, 100000, true, 0, false,
		IG_RULE_NONE, NEVER, IG_VERDICT_NONE, false, NEVER, true
	},
	{
		"both timeouts 0: nothing ever",
		IG_ACTION_TERMINATE, 0, 0, 100000, true, 9, false,
		IG_RULE_NONE, NEVER, IG_VERDICT_NONE, false, NEVER, false
	},
	{
		"report mode: same rule, action report",
		IG_ACTION_REPORT, 1000, 5000, 1500, true, 1, false,
		IG_RULE_BLOCKING, 1000, IG_VERDICT_REPORT, true, NEVER, false
	},
	{
		"off: rule shown, action none, no wake",
		IG_ACTION_OFF, 1000, 5000, 500, true, 1, false,
		IG_RULE_BLOCKING, 1000, IG_VERDICT_NONE, false, NEVER, false
	},
	{
		"exempt: action exempt, due but never woken for",
		IG_ACTION_TERMINATE, 1000, 5000, 1500, true, 1, true,
		IG_RULE_BLOCKING, 1000, IG_VERDICT_EXEMPT, true, NEVER, false
	},
	{
		"exempt before deadline: no wake",
		IG_ACTION_TERMINATE, 1000, 5000, 10, true, 0, true,
		IG_RULE_IDLE, 5000, IG_VERDICT_EXEMPT, false, NEVER, false
	},
	{
		"exempt with no rule: action none",
		IG_ACTION_TERMINATE, 0, 0, 10, true, 1, true,
		IG_RULE_NONE, NEVER, IG_VERDICT_NONE, false, NEVER, false
	},
	{
		"very long timeouts do not overflow",
		IG_ACTION_TERMINATE, 2147483647, 2147483647, 1, true, 1, false,
		IG_RULE_BLOCKING, 2147483647, IG_VERDICT_TERMINATE, false, 2147483647, false
	},
};

static int	passed = 0;
static int	failed = 0;

/* Record one check */
static void
check(bool ok, const char *name, const char *what)
{
	if (ok)
		passed++;
	else
	{
		failed++;
		printf("FAILED: %s: %s\n", name, what);
	}
}

/* Expected absolute time of a case, or 0 */
static TimestampTz
at(const PolicyCase *c, int ms)
{
	if (ms == NEVER)
		return 0;
	return NOW - MS(c->silent_ms) + MS(ms);
}

/* Run the decision table */
static void
test_decide(void)
{
	int			i;

	for (i = 0; i < (int) lengthof(cases); i++)
	{
		const PolicyCase *c = &cases[i];
		IgPolicy	policy = {c->action, c->blocking_ms, c->idle_ms, 0, false};
		IgFacts		facts = {0};
		IgDecision	d;

		facts.silent_since = NOW - MS(c->silent_ms);
		facts.holds_locks = c->holds;
		facts.blocked_total = c->blocked;
		facts.exempt = c->exempt;
		facts.observed = false;
		idle_guard_decide(&policy, &facts, NOW, &d);

		check(d.rule == c->rule, c->name, "rule");
		check(d.deadline == at(c, c->deadline_ms), c->name, "deadline");
		check(d.action == c->act, c->name, "action");
		check(d.due == c->due, c->name, "due");
		check(d.wake_at == at(c, c->wake_ms), c->name, "wake_at");
		check(d.needs_poll == c->poll, c->name, "needs_poll");
	}
}

/*
 * A silence known only by observation (client not reading, request
 * incomplete) is polled every naptime until due, unless nothing would be
 * done to it; it is decided like any other otherwise.
 */
static void
test_decide_observed(void)
{
	IgPolicy	policy = {IG_ACTION_TERMINATE, 1000, 5000, 0, false};
	IgFacts		facts = {NOW - MS(200), true, 0, false, true};
	IgDecision	d;

	idle_guard_decide(&policy, &facts, NOW, &d);
	check(d.needs_poll, "observed", "polled before its deadline");
	check(d.wake_at == NOW - MS(200) + MS(1000), "observed",
		  "still wakes at the blocking deadline");

	facts.silent_since = NOW - MS(1500);
	facts.blocked_total = 1;
	idle_guard_decide(&policy, &facts, NOW, &d);
	check(d.due && !d.needs_poll, "observed", "due: no poll");
	check(d.rule == IG_RULE_BLOCKING && d.action == IG_VERDICT_TERMINATE,
		  "observed", "blocking rule as for any silence");

	facts.silent_since = NOW - MS(200);
	facts.blocked_total = 0;
	facts.holds_locks = false;
	idle_guard_decide(&policy, &facts, NOW, &d);
	check(!d.needs_poll && d.rule == IG_RULE_NONE, "observed",
		  "no lock: not watched");

	facts.holds_locks = true;
	facts.exempt = true;
	idle_guard_decide(&policy, &facts, NOW, &d);
	check(!d.needs_poll, "observed", "exempt: not watched");

	facts.exempt = false;
	policy.action = IG_ACTION_OFF;
	idle_guard_decide(&policy, &facts, NOW, &d);
	check(!d.needs_poll, "observed", "action off: not watched");
}

/*
 * The unreachable rule: a lock holder whose client is unreachable is due
 * unreachable_timeout after the peer's last acknowledgement (or after the
 * start of the silence, if later), before the idle rule if that is earlier, and only when the link is unreachable;
 * while the rule is on, a TCP client is polled every naptime.
 */
static void
test_decide_unreachable(void)
{
	IgPolicy	policy = {IG_ACTION_TERMINATE, 1000, 60000, 0, false, 5000};
	IgFacts		facts = {NOW - MS(10000), true, 0, false, false};
	IgDecision	d;

	facts.link = IG_LINK_UNREACHABLE;
	facts.unreachable_since = NOW - MS(6000);
	idle_guard_decide(&policy, &facts, NOW, &d);
	check(d.rule == IG_RULE_UNREACHABLE && d.due &&
		  d.action == IG_VERDICT_TERMINATE, "unreachable",
		  "due unreachable_timeout after the last ACK, nobody waiting");
	check(d.deadline == NOW - MS(1000), "unreachable", "deadline");

	facts.unreachable_since = NOW - MS(2000);
	idle_guard_decide(&policy, &facts, NOW, &d);
	check(d.rule == IG_RULE_UNREACHABLE && !d.due &&
		  d.wake_at == NOW + MS(3000) && d.needs_poll, "unreachable",
		  "not yet: wakes at its deadline, and polls");

	/* lost during a long statement: counted from the start of the silence */
	facts.silent_since = NOW - MS(1000);
	facts.unreachable_since = NOW - MS(600000);
	idle_guard_decide(&policy, &facts, NOW, &d);
	check(d.rule == IG_RULE_UNREACHABLE && !d.due &&
		  d.deadline == NOW + MS(4000), "unreachable",
		  "never before the silence started plus unreachable_timeout");
	facts.silent_since = NOW - MS(10000);
	facts.unreachable_since = NOW - MS(2000);

	facts.blocked_total = 1;
	idle_guard_decide(&policy, &facts, NOW, &d);
	check(d.rule == IG_RULE_BLOCKING && d.due, "unreachable",
		  "an earlier blocking deadline wins");

	/* without the blocking rule, which polls for waiters of its own */
	facts.blocked_total = 0;
	policy.blocking_timeout_ms = 0;
	facts.link = IG_LINK_ALIVE;
	idle_guard_decide(&policy, &facts, NOW, &d);
	check(d.rule == IG_RULE_IDLE && d.deadline == NOW + MS(50000) &&
		  d.needs_poll, "unreachable",
		  "alive: the idle deadline stands, and the link is watched");

	facts.link = IG_LINK_NOT_READING;
	idle_guard_decide(&policy, &facts, NOW, &d);
	check(d.rule == IG_RULE_IDLE && !d.due, "unreachable",
		  "not reading never shortens a deadline");

	facts.link = IG_LINK_LOCAL;
	idle_guard_decide(&policy, &facts, NOW, &d);
	check(!d.needs_poll, "unreachable", "a local client is not watched");

	facts.link = IG_LINK_UNREACHABLE;
	policy.unreachable_timeout_ms = 0;
	idle_guard_decide(&policy, &facts, NOW, &d);
	check(d.rule == IG_RULE_IDLE && !d.needs_poll, "unreachable",
		  "unreachable_timeout 0: the rule is off");

	policy.unreachable_timeout_ms = 5000;
	facts.unreachable_since = NOW - MS(6000);
	facts.holds_locks = false;
	idle_guard_decide(&policy, &facts, NOW, &d);
	check(d.rule == IG_RULE_NONE, "unreachable", "no lock: no rule");
}

/* One case of the link classification */
typedef struct LinkCase
{
	const char *name;
	IgTcpFacts	tcp;
	IgLink		expected;
} LinkCase;

/*
 * The link classification, on the probe and ACK timelines of live and dead
 * peers.  Fields: found, state, retransmits, probes,
 * backoff, unacked, total_retrans, last_ack_recv_ms, last_data_recv_ms,
 * last_data_sent_ms, snd_wnd, rto_us.
 */
static void
test_classify_link(void)
{
	static const LinkCase lc[] = {
		{"not found", {false}, IG_LINK_UNKNOWN},
		{"paused application: acked, window open",
		{true, 1, 0, 0, 0, 0, 0, 30000, 30000, 30000, 65536, 200000}, IG_LINK_ALIVE},
		{"keepalive answered",
		{true, 1, 0, 0, 0, 0, 0, 100, 30000, 30000, 65536, 200000}, IG_LINK_ALIVE},
		{"not reading: zero window, probes answered",
		{true, 1, 0, 0, 0, 0, 0, 200, 9000, 10, 0, 200000}, IG_LINK_NOT_READING},

		/*
		 * A live peer that stopped reading, probes at 0.2, 0.6, 1.4, 3.0 s
		 * after its window closed (base 200 ms, doubling): with a rate limit
		 * of 500 ms or 1 s it answers 0.2 s, not 0.6 s, then 1.4 s.
		 */
		{"stopped reading, 1.3 s: one probe rate-limited (500 ms)",
		{true, 1, 0, 1, 2, 0, 0, 1100, 9000, 1300, 0, 200000}, IG_LINK_NOT_READING},
		{"stopped reading, 1.39 s: one probe rate-limited (1 s)",
		{true, 1, 0, 1, 2, 0, 0, 1190, 9000, 1390, 0, 200000}, IG_LINK_NOT_READING},
		{"stopped reading, 3.0 s: all answered since",
		{true, 1, 0, 0, 4, 0, 0, 2, 9000, 3000, 0, 200000}, IG_LINK_NOT_READING},
		{"stopped reading long ago: one probe in flight 20 s",
		{true, 1, 0, 1, 8, 0, 0, 20000, 90000, 90000, 0, 200000}, IG_LINK_NOT_READING},

		/*
		 * The window closed again 0.1 s after the answer to a probe (rate
		 * limit 1 s): the probes at 0.2 and 0.6 s go unanswered, the one at
		 * 1.4 s is answered.  Seen by t/033 on a busy machine.
		 */
		{"stopped reading, 1.3 s: two probes rate-limited (1 s)",
		{true, 1, 0, 2, 2, 0, 0, 1300, 9000, 1300, 0, 200000}, IG_LINK_NOT_READING},
		{"the same, base 400 ms, rate limit 1.2 s, 2.79 s",
		{true, 1, 0, 2, 2, 0, 0, 2790, 9000, 2790, 0, 400000}, IG_LINK_NOT_READING},

		/*
		 * Rate limit 500 ms, base 208 ms: the probe 2 bases after an answer
		 * is rate-limited, the answer to the one 6 bases after it lost, and
		 * the one 14 bases after it (2.91 s, the timer late by up to 0.1 s)
		 * is answered.  Seen by helper experiments on Linux 6.18, dropping
		 * the answer to the third probe.
		 */
		{"stopped reading, one answer lost: 3.01 s, the next probe not out",
		{true, 1, 0, 2, 3, 0, 0, 3010, 9000, 1720, 0, 208000}, IG_LINK_NOT_READING},
		{"the same peer gone, 3.12 s: the probe at 14 bases unanswered too",
		{true, 1, 0, 3, 4, 0, 0, 3120, 9000, 100, 0, 208000}, IG_LINK_UNREACHABLE},

		/* The same zero window, the peer gone at 0 s: nothing answered */
		{"gone reader, 0.6 s: two probes unanswered, too soon",
		{true, 1, 0, 2, 2, 0, 0, 600, 9000, 600, 0, 200000}, IG_LINK_NOT_READING},
		{"gone reader, 1.4 s: three probes unanswered, too soon",
		{true, 1, 0, 3, 3, 0, 0, 1400, 9000, 1400, 0, 200000}, IG_LINK_NOT_READING},
		{"gone reader, 3.0 s: four probes unanswered",
		{true, 1, 0, 4, 4, 0, 0, 3000, 9000, 3000, 0, 200000}, IG_LINK_UNREACHABLE},

		/* Keepalives every 10 s to a vanished idle client */
		{"one keepalive probe unanswered: maybe in flight",
		{true, 1, 0, 1, 0, 0, 0, 10050, 10050, 10050, 65536, 200000}, IG_LINK_ALIVE},
		{"two keepalive probes unanswered",
		{true, 1, 0, 2, 0, 0, 0, 20000, 20000, 20000, 65536, 200000}, IG_LINK_UNREACHABLE},

		/*
		 * Data in flight to a vanished peer, sent at 0 s, retransmitted at
		 * 0.2, 0.6, 1.4 s (RTO 200 ms, doubling), seen at 2.0 s
		 */
		{"data retransmitted three times, no ACK since",
		{true, 1, 3, 0, 3, 1, 3, 2000, 9000, 600, 65536, 1600000}, IG_LINK_UNREACHABLE},
		{"one retransmission just now: not yet",
		{true, 1, 1, 0, 1, 1, 1, 300, 9000, 100, 65536, 400000}, IG_LINK_ALIVE},

		/*
		 * A live peer with no room that drops the data and answers each
		 * retransmission (0.2, 0.6, 1.4, 3.0 s) within a millisecond
		 */
		{"retransmissions answered, seen at 2.9 s",
		{true, 1, 3, 0, 3, 1, 3, 1499, 9000, 1500, 65536, 1600000}, IG_LINK_ALIVE},
		{"retransmissions answered, the fourth in flight (timer 4 ms late)",
		{true, 1, 4, 0, 4, 1, 4, 1603, 9000, 0, 65536, 3200000}, IG_LINK_ALIVE},
		{"unacked but no retransmission yet",
		{true, 1, 0, 0, 0, 1, 0, 5000, 9000, 100, 65536, 200000}, IG_LINK_ALIVE},
		{"peer sent FIN: CLOSE_WAIT", {true, 8}, IG_LINK_CLOSED},
		{"LAST_ACK", {true, 9}, IG_LINK_CLOSED},
		{"CLOSE (RST)", {true, 7}, IG_LINK_CLOSED},
		{"a listening socket is no evidence", {true, 10}, IG_LINK_UNKNOWN},
	};
	int			i;

	for (i = 0; i < (int) lengthof(lc); i++)
		check(idle_guard_classify_link(&lc[i].tcp) == lc[i].expected,
			  "link", lc[i].name);
	check(strcmp(idle_guard_link_name(IG_LINK_NOT_READING), "not reading") == 0,
		  "link", "name of not reading");
	check(idle_guard_link_name(IG_LINK_NONE) == NULL, "link",
		  "a prepared transaction has none");
	check(strcmp(idle_guard_rule_name(IG_RULE_UNREACHABLE), "unreachable") == 0,
		  "link", "rule name");
}

/*
 * The policy per reason: prepared transactions are reported at most and
 * timed by prepared_timeout; session locks never by the idle rule (the
 * blocking and unreachable rules apply), and terminated only with
 * session_locks on; every other reason as set.
 */
static void
test_policy_for_reason(void)
{
	IgPolicy	base = {IG_ACTION_TERMINATE, 1000, 5000, 60000, false};
	IgPolicy	out;

	idle_guard_policy_for_reason(&base, IG_REASON_IDLE_XACT, &out);
	check(out.action == IG_ACTION_TERMINATE && out.blocking_timeout_ms == 1000 &&
		  out.idle_timeout_ms == 5000, "reason", "idle in transaction: as set");
	idle_guard_policy_for_reason(&base, IG_REASON_CLIENT_WRITE, &out);
	check(out.action == IG_ACTION_TERMINATE && out.idle_timeout_ms == 5000,
		  "reason", "client not reading: as set");
	idle_guard_policy_for_reason(&base, IG_REASON_REQUEST_INCOMPLETE, &out);
	check(out.action == IG_ACTION_TERMINATE && out.idle_timeout_ms == 5000,
		  "reason", "request incomplete: as set");

	idle_guard_policy_for_reason(&base, IG_REASON_PREPARED, &out);
	check(out.action == IG_ACTION_REPORT, "reason",
		  "prepared: terminate becomes report");
	check(out.idle_timeout_ms == 60000 && out.blocking_timeout_ms == 1000,
		  "reason", "prepared: prepared_timeout, blocking_timeout");
	base.action = IG_ACTION_OFF;
	idle_guard_policy_for_reason(&base, IG_REASON_PREPARED, &out);
	check(out.action == IG_ACTION_OFF, "reason", "prepared: off stays off");
	base.action = IG_ACTION_TERMINATE;
	base.prepared_timeout_ms = 0;
	idle_guard_policy_for_reason(&base, IG_REASON_PREPARED, &out);
	check(out.idle_timeout_ms == 0, "reason", "prepared_timeout 0: never");

	idle_guard_policy_for_reason(&base, IG_REASON_SESSION_LOCK, &out);
	check(out.action == IG_ACTION_REPORT && out.idle_timeout_ms == 0 &&
		  out.blocking_timeout_ms == 1000, "reason",
		  "session lock, session_locks off: report, no idle rule");
	base.session_locks = true;
	idle_guard_policy_for_reason(&base, IG_REASON_SESSION_LOCK, &out);
	check(out.action == IG_ACTION_TERMINATE && out.idle_timeout_ms == 0,
		  "reason", "session lock, session_locks on: terminate");
	base.action = IG_ACTION_REPORT;
	idle_guard_policy_for_reason(&base, IG_REASON_SESSION_LOCK, &out);
	check(out.action == IG_ACTION_REPORT, "reason",
		  "session_locks on never raises report");
}

/*
 * Observation of a silence with no timestamp: it continues while the same
 * statement is seen without progress, and starts again on any change.
 */
static void
test_observe(void)
{
	IgObservation obs;
	IgEpisodeKey key = {4242, MS(100), MS(5000), 77};
	IgEpisodeKey other = key;
	TimestampTz t = NOW;

	memset(&obs, 0, sizeof(obs));
	check(idle_guard_observe(&obs, &key, IG_REASON_CLIENT_WRITE, true, 1000,
							 t, 300) == t, "observe", "first observation");
	check(idle_guard_observe(&obs, &key, IG_REASON_CLIENT_WRITE, true, 1000,
							 t + MS(100), 300) == t, "observe",
		  "no progress: continues");
	check(idle_guard_observe(&obs, &key, IG_REASON_CLIENT_WRITE, true, 1000,
							 t + MS(5000), 300) == t, "observe",
		  "no wake-up, long gap: continues (count known)");
	check(idle_guard_observe(&obs, &key, IG_REASON_CLIENT_WRITE, true, 9000,
							 t + MS(5100), 300) == t + MS(5100), "observe",
		  "woke up: a new silence");
	check(idle_guard_observe(&obs, &key, IG_REASON_CLIENT_WRITE, false, 0,
							 t + MS(5300), 300) == t + MS(5100), "observe",
		  "count unknown, short gap: continues");
	check(idle_guard_observe(&obs, &key, IG_REASON_CLIENT_WRITE, false, 0,
							 t + MS(5700), 300) == t + MS(5700), "observe",
		  "count unknown, long gap: a new silence");
	check(idle_guard_observe(&obs, &key, IG_REASON_REQUEST_INCOMPLETE, false,
							 0, t + MS(5800), 300) == t + MS(5800), "observe",
		  "other reason: a new silence");
	other.state_start = MS(6000);
	check(idle_guard_observe(&obs, &other, IG_REASON_REQUEST_INCOMPLETE, false,
							 0, t + MS(5900), 300) == t + MS(5900), "observe",
		  "next message of the request: a new silence");
	other.proc_start = MS(200);
	check(idle_guard_observe(&obs, &other, IG_REASON_REQUEST_INCOMPLETE, false,
							 0, t + MS(6000), 300) == t + MS(6000), "observe",
		  "pid reused: a new silence");
	check(idle_guard_observe(&obs, &other, IG_REASON_REQUEST_INCOMPLETE, false,
							 0, t + MS(60000), 0) == t + MS(6000), "observe",
		  "no gap limit: continues");

	/* a prepared transaction has pid 0: still a valid observation */
	memset(&obs, 0, sizeof(obs));
	other.pid = 0;
	check(idle_guard_observe(&obs, &other, IG_REASON_PREPARED, false, 0,
							 t, 0) == t, "observe", "prepared, first");
	check(idle_guard_observe(&obs, &other, IG_REASON_PREPARED, false, 0,
							 t + MS(90000), 0) == t, "observe",
		  "prepared, much later: continues");
}

/* The re-check before a signal: same backend, same silence, or not */
static void
test_same_episode(void)
{
	IgEpisodeKey seen = {4242, MS(100), MS(5000), 77};
	IgEpisodeKey now = seen;

	check(idle_guard_same_episode(&seen, &now), "episode", "identical");

	now = seen;
	now.proc_start = MS(9000);
	check(!idle_guard_same_episode(&seen, &now), "episode",
		  "pid reused by a new backend");

	now = seen;
	now.state_start = MS(5001);
	check(!idle_guard_same_episode(&seen, &now), "episode",
		  "client woke up and went silent again");

	now = seen;
	now.lxid = 78;
	check(!idle_guard_same_episode(&seen, &now), "episode",
		  "new transaction");

	now = seen;
	now.pid = 4243;
	check(!idle_guard_same_episode(&seen, &now), "episode", "other pid");
}

/* exempt_applications entries: exact, or prefix with a trailing '*' */
static void
test_app_matches(void)
{
	check(idle_guard_app_matches("pg_dump", "pg_dump"), "app", "exact");
	check(!idle_guard_app_matches("pg_dump", "pg_dumpall"), "app",
		  "exact is not a prefix");
	check(!idle_guard_app_matches("pg_dump", "PG_DUMP"), "app",
		  "case-sensitive");
	check(idle_guard_app_matches("etl_*", "etl_nightly"), "app", "prefix");
	check(idle_guard_app_matches("etl_*", "etl_"), "app",
		  "prefix matches itself");
	check(!idle_guard_app_matches("etl_*", "etl"), "app", "shorter name");
	check(idle_guard_app_matches("*", "anything"), "app", "lone star");
	check(idle_guard_app_matches("*", ""), "app", "lone star, empty name");
	check(!idle_guard_app_matches("x", NULL), "app", "NULL name");
	check(!idle_guard_app_matches("", "psql"), "app", "empty entry");
}

/* The shorter of two timeouts (0 = disabled), and what a setting does */
static void
test_helpers(void)
{
	check(idle_guard_shorter_timeout(0, 0) == 0, "helpers", "both disabled");
	check(idle_guard_shorter_timeout(0, 500) == 500, "helpers", "first disabled");
	check(idle_guard_shorter_timeout(500, 0) == 500, "helpers", "second disabled");
	check(idle_guard_shorter_timeout(300, 500) == 300, "helpers", "shorter first");
	check(idle_guard_shorter_timeout(500, 300) == 300, "helpers", "shorter second");
	check(idle_guard_policy_verdict(IG_ACTION_OFF) == IG_VERDICT_NONE,
		  "helpers", "off does nothing");
	check(idle_guard_policy_verdict(IG_ACTION_REPORT) == IG_VERDICT_REPORT,
		  "helpers", "report reports");
	check(idle_guard_policy_verdict(IG_ACTION_TERMINATE) == IG_VERDICT_TERMINATE,
		  "helpers", "terminate terminates");
}

/* Names shown in the report, the log and the history */
static void
test_names(void)
{
	check(strcmp(idle_guard_rule_name(IG_RULE_BLOCKING), "blocking") == 0,
		  "names", "blocking");
	check(strcmp(idle_guard_rule_name(IG_RULE_IDLE), "idle") == 0,
		  "names", "idle");
	check(idle_guard_rule_name(IG_RULE_NONE) == NULL, "names", "none");
	check(strcmp(idle_guard_verdict_name(IG_VERDICT_EXEMPT), "exempt") == 0,
		  "names", "exempt");
	check(strcmp(idle_guard_verdict_name(IG_VERDICT_NONE), "none") == 0,
		  "names", "none action");
	check(strcmp(idle_guard_reason_name(IG_REASON_IDLE_XACT),
				 "idle in transaction") == 0, "names", "idle in transaction");
	check(strcmp(idle_guard_reason_name(IG_REASON_CLIENT_WRITE),
				 "client not reading") == 0, "names", "client not reading");
	check(strcmp(idle_guard_reason_name(IG_REASON_REQUEST_INCOMPLETE),
				 "request incomplete") == 0, "names", "request incomplete");
	check(strcmp(idle_guard_reason_name(IG_REASON_PREPARED),
				 "prepared") == 0, "names", "prepared");
	check(strcmp(idle_guard_reason_name(IG_REASON_SESSION_LOCK),
				 "session lock") == 0, "names", "session lock");
}

int
main(void)
{
	test_decide();
	test_decide_observed();
	test_decide_unreachable();
	test_classify_link();
	test_policy_for_reason();
	test_observe();
	test_same_episode();
	test_app_matches();
	test_helpers();
	test_names();
	printf("policy: %d passed, %d failed\n", passed, failed);
	return failed == 0 ? 0 : 1;
}
