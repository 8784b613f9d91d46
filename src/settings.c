/*-------------------------------------------------------------------------
 *
 * settings.c
 *		The idle_guard.* settings: their variables and definitions, and the
 *		policy they make.
 *
 * action and the timeouts of the per-session rules (rules.h:
 * blocking_timeout, idle_timeout) are PGC_SUSET: postgresql.conf sets the
 * cluster-wide default, and only superusers or roles granted SET on the
 * parameter may give a role, a database or a session other values; each
 * backend publishes its own values for the worker (session_policy.c).
 * naptime, the exemption lists (exempt.c), prepared_timeout,
 * session_locks, terminate_sqlstate, the other rules' timeouts
 * (unreachable_timeout) and tcp_keepalives are PGC_SIGHUP: they configure
 * the worker itself, apply to what has no session of its own (a prepared
 * transaction), or to a connection's socket before its session settings
 * exist.  history_size sizes shared memory and needs a restart.
 *
 * Copyright (c) 2026, idle_guard developers
 *
 * IDENTIFICATION
 *	  src/settings.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>

#include "utils/guc.h"

#include "settings.h"

/*---- GUC variables ----*/

int			idle_guard_action = IG_DEFAULT_ACTION;
int			idle_guard_rule_timeouts[IG_RULE_END] = {
#define IG_RULE(symbol, name, setting, field, default_ms, ...) \
	[symbol] = default_ms,
#include "rules.h"
#undef IG_RULE
};
int			idle_guard_naptime = IG_DEFAULT_NAPTIME_MS;
int			idle_guard_history_size = IG_DEFAULT_HISTORY_SIZE;
int			idle_guard_prepared_timeout = IG_DEFAULT_PREPARED_TIMEOUT_MS;
bool		idle_guard_session_locks = false;
char	   *idle_guard_exempt_roles = NULL;
char	   *idle_guard_exempt_applications = NULL;

int			idle_guard_terminate_sqlstate = IG_SQLSTATE_ADMIN_SHUTDOWN;
int			idle_guard_tcp_keepalives = IG_DEFAULT_TCP_KEEPALIVES_S;

static const struct config_enum_entry ig_sqlstate_options[] = {
	{"57P01", IG_SQLSTATE_ADMIN_SHUTDOWN, false},
	{"admin_shutdown", IG_SQLSTATE_ADMIN_SHUTDOWN, true},
	{"25P03", IG_SQLSTATE_IDLE_TIMEOUT, false},
	{"idle_in_transaction_session_timeout", IG_SQLSTATE_IDLE_TIMEOUT, true},
	{NULL, 0, false}
};

static const struct config_enum_entry ig_action_options[] = {
	{"off", IG_ACTION_OFF, false},
	{"report", IG_ACTION_REPORT, false},
	{"terminate", IG_ACTION_TERMINATE, false},
	{NULL, 0, false}
};

static bool ig_check_action(int *newval, void **extra, GucSource source);
static void ig_assign_action(int newval, void *extra);
static bool ig_check_timeout(int *newval, void **extra, GucSource source);
static void ig_define_rule_settings(void);

/*
 * idle_guard_define_settings
 *		Define the reloadable settings.  Every process that loads the
 *		library defines them, so SHOW works and the SQL functions can
 *		explain a missing preload.
 */
void
idle_guard_define_settings(void)
{
	DefineCustomEnumVariable("idle_guard.action",
							 "What to do with a silent session that holds locks past a deadline.",
							 "off: nothing; report: write one LOG line per silent episode; "
							 "terminate: log, then end the session.",
							 &idle_guard_action,
							 IG_DEFAULT_ACTION,
							 ig_action_options,
							 PGC_SUSET,
							 0,
							 ig_check_action, ig_assign_action, NULL);

	ig_define_rule_settings();

	DefineCustomIntVariable("idle_guard.naptime",
							"How often the worker looks for new waiters behind silent sessions.",
							"Deadlines are met exactly whatever this is; it only bounds how late "
							"a session whose blocking_timeout has passed is acted on once someone "
							"starts to wait for it.",
							&idle_guard_naptime,
							IG_DEFAULT_NAPTIME_MS,
							10, 60 * 60 * 1000,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("idle_guard.prepared_timeout",
							"How long a prepared transaction may hold locks before it is reported.",
							"Counted from when idle_guard first saw it; 0 disables this rule.  idle_guard "
							"only reports prepared transactions, it never ends them.",
							&idle_guard_prepared_timeout,
							IG_DEFAULT_PREPARED_TIMEOUT_MS,
							0, INT_MAX,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomBoolVariable("idle_guard.session_locks",
							 "Whether a session idle between transactions may be terminated for "
							 "holding a session-level lock that another session waits for.",
							 "When off, such sessions are only reported.",
							 &idle_guard_session_locks,
							 false,
							 PGC_SIGHUP,
							 0,
							 NULL, NULL, NULL);

	DefineCustomStringVariable("idle_guard.exempt_roles",
							   "Roles whose sessions are never acted on.",
							   "A comma-separated list of role names; exempt sessions are still "
							   "reported with action \"exempt\".",
							   &idle_guard_exempt_roles,
							   "",
							   PGC_SIGHUP,
							   GUC_LIST_INPUT,
							   idle_guard_check_exempt_roles,
							   idle_guard_assign_exempt_roles,
							   NULL);

	DefineCustomStringVariable("idle_guard.exempt_applications",
							   "Application names whose sessions are never acted on.",
							   "A comma-separated list of application_name values; an entry "
							   "ending in \"*\" matches every name that starts with it.  Any "
							   "client can set its own application_name: prefer exempt_roles.",
							   &idle_guard_exempt_applications,
							   "",
							   PGC_SIGHUP,
							   GUC_LIST_INPUT,
							   idle_guard_check_exempt_applications,
							   idle_guard_assign_exempt_applications,
							   NULL);

	DefineCustomEnumVariable("idle_guard.terminate_sqlstate",
							 "The SQLSTATE a session idle in transaction reads when idle_guard ends it.",
							 "57P01 (admin_shutdown), as pg_terminate_backend() gives, or 25P03 "
							 "(idle_in_transaction_session_timeout), as PostgreSQL's own timeout "
							 "gives.  Other silences read 57P01; a standby session ended for "
							 "blocking WAL replay reads 40001.",
							 &idle_guard_terminate_sqlstate,
							 IG_SQLSTATE_ADMIN_SHUTDOWN,
							 ig_sqlstate_options,
							 PGC_SIGHUP,
							 0,
							 NULL, NULL, NULL);

	DefineCustomIntVariable("idle_guard.tcp_keepalives",
							"Keepalive idle time and probe interval idle_guard gives each new TCP session.",
							"So that a vanished client is noticed while nothing is in flight.  "
							"Not applied when tcp_keepalives_idle or tcp_keepalives_interval is "
							"set; 0 leaves the sockets as PostgreSQL sets them.",
							&idle_guard_tcp_keepalives,
							IG_DEFAULT_TCP_KEEPALIVES_S,
							0, 2 * 60 * 60,
							PGC_SIGHUP,
							GUC_UNIT_S,
							NULL, NULL, NULL);
}

/*
 * idle_guard_define_restart_settings
 *		Define the settings that need a restart, which only the preload can
 *		define (a PGC_POSTMASTER variable cannot be defined after startup).
 */
void
idle_guard_define_restart_settings(void)
{
	DefineCustomIntVariable("idle_guard.history_size",
							"How many past actions idle_guard_history() keeps.",
							"Kept in shared memory; changing it needs a restart.",
							&idle_guard_history_size,
							IG_DEFAULT_HISTORY_SIZE,
							0, 10000,
							PGC_POSTMASTER,
							0,
							NULL, NULL, NULL);
}

/*
 * Check and assign hooks of the per-session settings (action and the
 * per-session rules' timeouts): the GUC machinery checks the value itself;
 * the hooks keep track of where it came from and publish it
 * (session_policy.c).
 */
static bool
ig_check_action(int *newval, void **extra, GucSource source)
{
	return idle_guard_check_policy_source(source, extra);
}

static void
ig_assign_action(int newval, void *extra)
{
	idle_guard_assign_policy_action(newval, extra);
}

static bool
ig_check_timeout(int *newval, void **extra, GucSource source)
{
	return idle_guard_check_policy_source(source, extra);
}

/*
 * The assign hook of each rule's setting (used for the per-session ones):
 * the hook is told only the value, so each rule has its own.
 */
#define IG_RULE(symbol, ...) \
static void \
ig_assign_##symbol(int newval, void *extra) \
{ \
	idle_guard_assign_policy_timeout(symbol, newval, extra); \
}
#include "rules.h"
#undef IG_RULE

static const GucIntAssignHook ig_assign_rule[IG_RULE_END] = {
#define IG_RULE(symbol, ...) [symbol] = ig_assign_##symbol,
#include "rules.h"
#undef IG_RULE
};

/*
 * Define the setting of each rule of rules.h, idle_guard.<setting>, in
 * milliseconds, 0 disabling the rule: PGC_SUSET with its own value per
 * role, database and session where the list says so, else PGC_SIGHUP.
 */
static void
ig_define_rule_settings(void)
{
	IgRule		r;

	for (r = IG_RULE_FIRST; r < IG_RULE_END; r++)
	{
		const IgRuleInfo *rule = idle_guard_rule(r);
		char		name[NAMEDATALEN];

		snprintf(name, sizeof(name), "idle_guard.%s", rule->setting);
		DefineCustomIntVariable(name, rule->description, rule->details,
								&idle_guard_rule_timeouts[r],
								rule->default_ms,
								0, INT_MAX,
								rule->per_session ? PGC_SUSET : PGC_SIGHUP,
								GUC_UNIT_MS,
								rule->per_session ? ig_check_timeout : NULL,
								rule->per_session ? ig_assign_rule[r] : NULL,
								NULL);
	}
}

/*
 * idle_guard_current_policy
 *		Copy this process's values of the policy settings into the struct
 *		the pure decision takes.  In the worker (and the postmaster) these
 *		are the cluster-wide defaults.
 */
void
idle_guard_current_policy(IgPolicy *policy)
{
	IgRule		r;

	memset(policy, 0, sizeof(IgPolicy));
	policy->action = (IgActionSetting) idle_guard_action;
	for (r = IG_RULE_FIRST; r < IG_RULE_END; r++)
		idle_guard_set_rule_timeout(policy, r, idle_guard_rule_timeouts[r]);
	policy->prepared_timeout_ms = idle_guard_prepared_timeout;
	policy->session_locks = idle_guard_session_locks;
}

/*
 * idle_guard_action_setting_name
 *		The name of a value of idle_guard.action, from the table the setting
 *		itself is defined with.
 */
const char *
idle_guard_action_setting_name(IgActionSetting action)
{
	const struct config_enum_entry *e;

	for (e = ig_action_options; e->name != NULL; e++)
		if (e->val == (int) action)
			return e->name;
	return "unknown";
}
