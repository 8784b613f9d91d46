/*-------------------------------------------------------------------------
 *
 * rules.h
 *		The list of rules: each deadline that can fire for a silent
 *		session, one line each, with the setting that times it.
 *
 * The setting's definition, its default, the decision, the worker's sleep
 * bound, the log line at worker start, the postmortem record, the report
 * and the ended client's message all read this list, so none of them can
 * forget a rule.  A new rule is one line here, its member of IgPolicy, and
 * its deadline in idle_guard_decide() if it needs a new clock or
 * condition.
 *
 * Columns:
 *	symbol		the IgRule value (policy.h)
 *	name		its name in the report, the log and the history
 *	setting		its setting, idle_guard.<setting>, in milliseconds; 0
 *				disables the rule
 *	field		the member of IgPolicy that holds the setting's value
 *	default_ms	the setting's built-in default
 *	per_session PGC_SUSET, with its own value per role, database and
 *				session (session_policy.c); otherwise PGC_SIGHUP
 *	clock		what the deadline counts from (IgClock)
 *	when		when the rule applies (IgWhen)
 *	message		the end of the ended client's FATAL ("... for 12.0 s
 *				<message>"); NULL: it names the sessions waiting
 *	description the setting's short description
 *	details		the setting's long description
 *
 * Every clock starts at the start of the silence or later, so no deadline
 * is earlier than the start of the silence plus the setting: the worker's
 * sleep bound relies on it (worker.c).  The order is the order of
 * precedence when two deadlines fall at the same instant, and that of the
 * enum's values, which the history file stores.  This file has no include
 * guard: it is included where the list is expanded, with IG_RULE defined.
 *
 * Copyright (c) 2026, idle_guard developers
 *
 * IDENTIFICATION
 *	  src/rules.h
 *
 *-------------------------------------------------------------------------
 */

/* symbol, name, setting, field, default_ms, per_session, clock, when,
 * message, description, details */
IG_RULE(IG_RULE_BLOCKING, "blocking", "blocking_timeout", blocking_timeout_ms,
		30 * 1000, true, IG_CLOCK_SILENCE, IG_WHEN_BLOCKING,
		NULL,
		"How long a silent session may hold locks that another session waits for.",
		"Counted from the start of the silence; 0 disables this rule.")
IG_RULE(IG_RULE_IDLE, "idle", "idle_timeout", idle_timeout_ms,
		5 * 60 * 1000, true, IG_CLOCK_SILENCE, IG_WHEN_ALWAYS,
		"while holding locks",
		"How long a silent session may hold locks even if nobody waits for them.",
		"Counted from the start of the silence; 0 disables this rule.")
IG_RULE(IG_RULE_UNREACHABLE, "unreachable", "unreachable_timeout",
		unreachable_timeout_ms,
		60 * 1000, false, IG_CLOCK_LAST_ACK, IG_WHEN_UNREACHABLE,
		"while holding locks, its client unreachable",
		"How long a silent session may hold locks once the kernel finds its client unreachable.",
		"Counted from the client's last acknowledgement, or from the start "
		"of the silence if that is later; it applies whether or not anyone "
		"waits, and only to TCP clients whose data or probes go "
		"unacknowledged.  0 disables this rule.")
