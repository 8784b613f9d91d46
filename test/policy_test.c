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

#define IDLE_GUARD_POLICY_ONLY
#include "idle_guard.h"

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
	IgAction	act;
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
		IG_RULE_NONE, NEVER, IG_DO_NONE, false, NEVER, false
	},
	{
		"blocking, before blocking deadline",
		IG_ACTION_TERMINATE, 1000, 5000, 500, true, 1, false,
		IG_RULE_BLOCKING, 1000, IG_DO_TERMINATE, false, 1000, false
	},
	{
		"blocking, at blocking deadline: due",
		IG_ACTION_TERMINATE, 1000, 5000, 1000, true, 1, false,
		IG_RULE_BLOCKING, 1000, IG_DO_TERMINATE, true, NEVER, false
	},
	{
		"blocking, 1 ms before the deadline: not due",
		IG_ACTION_TERMINATE, 1000, 5000, 999, true, 1, false,
		IG_RULE_BLOCKING, 1000, IG_DO_TERMINATE, false, 1000, false
	},
	{
		"not blocking, before blocking deadline: wake at it",
		IG_ACTION_TERMINATE, 1000, 5000, 200, true, 0, false,
		IG_RULE_IDLE, 5000, IG_DO_TERMINATE, false, 1000, false
	},
	{
		"not blocking, past blocking deadline: poll for waiters",
		IG_ACTION_TERMINATE, 1000, 5000, 2000, true, 0, false,
		IG_RULE_IDLE, 5000, IG_DO_TERMINATE, false, 5000, true
	},
	{
		"not blocking, past idle deadline: due by idle",
		IG_ACTION_TERMINATE, 1000, 5000, 5000, true, 0, false,
		IG_RULE_IDLE, 5000, IG_DO_TERMINATE, true, NEVER, false
	},
	{
		"blocking and idle both passed: blocking is the earlier rule",
		IG_ACTION_TERMINATE, 1000, 5000, 9000, true, 2, false,
		IG_RULE_BLOCKING, 1000, IG_DO_TERMINATE, true, NEVER, false
	},
	{
		"idle shorter than blocking: idle wins even when blocking",
		IG_ACTION_TERMINATE, 8000, 3000, 100, true, 1, false,
		IG_RULE_IDLE, 3000, IG_DO_TERMINATE, false, 3000, false
	},
	{
		"equal deadlines: blocking named",
		IG_ACTION_TERMINATE, 3000, 3000, 3000, true, 1, false,
		IG_RULE_BLOCKING, 3000, IG_DO_TERMINATE, true, NEVER, false
	},
	{
		"blocking_timeout 0: blocking rule disabled",
		IG_ACTION_TERMINATE, 0, 5000, 2000, true, 4, false,
		IG_RULE_IDLE, 5000, IG_DO_TERMINATE, false, 5000, false
	},
	{
		"idle_timeout 0, not blocking: no rule yet, wake at blocking deadline",
		IG_ACTION_TERMINATE, 1000, 0, 100, true, 0, false,
		IG_RULE_NONE, NEVER, IG_DO_NONE, false, 1000, false
	},
	{
		"idle_timeout 0, not blocking, past blocking deadline: poll",
		IG_ACTION_TERMINATE, 1000, 0, 100000, true, 0, false,
		IG_RULE_NONE, NEVER, IG_DO_NONE, false, NEVER, true
	},
	{
		"both timeouts 0: nothing ever",
		IG_ACTION_TERMINATE, 0, 0, 100000, true, 9, false,
		IG_RULE_NONE, NEVER, IG_DO_NONE, false, NEVER, false
	},
	{
		"report mode: same rule, action report",
		IG_ACTION_REPORT, 1000, 5000, 1500, true, 1, false,
		IG_RULE_BLOCKING, 1000, IG_DO_REPORT, true, NEVER, false
	},
	{
		"off: rule shown, action none, no wake",
		IG_ACTION_OFF, 1000, 5000, 500, true, 1, false,
		IG_RULE_BLOCKING, 1000, IG_DO_NONE, false, NEVER, false
	},
	{
		"exempt: action exempt, due but never woken for",
		IG_ACTION_TERMINATE, 1000, 5000, 1500, true, 1, true,
		IG_RULE_BLOCKING, 1000, IG_DO_EXEMPT, true, NEVER, false
	},
	{
		"exempt before deadline: no wake",
		IG_ACTION_TERMINATE, 1000, 5000, 10, true, 0, true,
		IG_RULE_IDLE, 5000, IG_DO_EXEMPT, false, NEVER, false
	},
	{
		"exempt with no rule: action none",
		IG_ACTION_TERMINATE, 0, 0, 10, true, 1, true,
		IG_RULE_NONE, NEVER, IG_DO_NONE, false, NEVER, false
	},
	{
		"very long timeouts do not overflow",
		IG_ACTION_TERMINATE, 2147483647, 2147483647, 1, true, 1, false,
		IG_RULE_BLOCKING, 2147483647, IG_DO_TERMINATE, false, 2147483647, false
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
		IgPolicy	policy = {c->action, c->blocking_ms, c->idle_ms};
		IgFacts		facts;
		IgDecision	d;

		facts.silent_since = NOW - MS(c->silent_ms);
		facts.holds_locks = c->holds;
		facts.blocked_total = c->blocked;
		facts.exempt = c->exempt;
		idle_guard_decide(&policy, &facts, NOW, &d);

		check(d.rule == c->rule, c->name, "rule");
		check(d.deadline == at(c, c->deadline_ms), c->name, "deadline");
		check(d.action == c->act, c->name, "action");
		check(d.due == c->due, c->name, "due");
		check(d.wake_at == at(c, c->wake_ms), c->name, "wake_at");
		check(d.needs_poll == c->poll, c->name, "needs_poll");
	}
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
	check(idle_guard_policy_action(IG_ACTION_OFF) == IG_DO_NONE,
		  "helpers", "off does nothing");
	check(idle_guard_policy_action(IG_ACTION_REPORT) == IG_DO_REPORT,
		  "helpers", "report reports");
	check(idle_guard_policy_action(IG_ACTION_TERMINATE) == IG_DO_TERMINATE,
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
	check(strcmp(idle_guard_action_name(IG_DO_EXEMPT), "exempt") == 0,
		  "names", "exempt");
	check(strcmp(idle_guard_action_name(IG_DO_NONE), "none") == 0,
		  "names", "none action");
}

int
main(void)
{
	test_decide();
	test_same_episode();
	test_app_matches();
	test_helpers();
	test_names();
	printf("policy: %d passed, %d failed\n", passed, failed);
	return failed == 0 ? 0 : 1;
}
