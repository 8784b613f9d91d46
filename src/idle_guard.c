/*-------------------------------------------------------------------------
 *
 * idle_guard.c
 *		Module load: the idle_guard.* settings, the shared-memory hooks and
 *		the registration of the background worker.
 *
 * action, blocking_timeout and idle_timeout are PGC_SUSET: postgresql.conf
 * sets the cluster-wide default, and only superusers or roles granted SET
 * on the parameter may give a role, a database or a session other values;
 * each backend publishes its own values for the worker (session_policy.c).
 * naptime, the exemption lists, prepared_timeout, session_locks,
 * terminate_sqlstate, unreachable_timeout and tcp_keepalives are
 * PGC_SIGHUP: they configure the worker itself, apply to what has no
 * session of its own (a prepared transaction), or to a connection's socket
 * before its session settings exist.  history_size sizes shared
 * memory and needs a restart.
 *
 * Copyright (c) 2026, idle_guard developers
 *
 * IDENTIFICATION
 *	  src/idle_guard.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <ctype.h>
#include <limits.h>

#include "fmgr.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/varlena.h"

#include "compat.h"
#include "idle_guard.h"

IG_MODULE_MAGIC;

void		_PG_init(void);

/*---- GUC variables ----*/

int			idle_guard_action = IG_DEFAULT_ACTION;
int			idle_guard_blocking_timeout = IG_DEFAULT_BLOCKING_TIMEOUT_MS;
int			idle_guard_idle_timeout = IG_DEFAULT_IDLE_TIMEOUT_MS;
int			idle_guard_naptime = IG_DEFAULT_NAPTIME_MS;
int			idle_guard_history_size = IG_DEFAULT_HISTORY_SIZE;
int			idle_guard_prepared_timeout = IG_DEFAULT_PREPARED_TIMEOUT_MS;
bool		idle_guard_session_locks = false;
char	   *idle_guard_exempt_roles = NULL;
char	   *idle_guard_exempt_applications = NULL;

int			idle_guard_terminate_sqlstate = IG_SQLSTATE_ADMIN_SHUTDOWN;
int			idle_guard_unreachable_timeout = IG_DEFAULT_UNREACHABLE_TIMEOUT_MS;
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

/*
 * A parsed name list, kept as the "extra" of a list setting: count, then
 * the names one after another, each NUL-terminated.
 */
typedef struct IgNameList
{
	int			count;
	char		names[FLEXIBLE_ARRAY_MEMBER];
} IgNameList;

static IgNameList *ig_exempt_roles = NULL;
static uint64 ig_exempt_roles_generation = 0;	/* bumped by each assignment */
static IgNameList *ig_exempt_apps = NULL;

static shmem_request_hook_type ig_prev_shmem_request_hook = NULL;
static shmem_startup_hook_type ig_prev_shmem_startup_hook = NULL;

static bool ig_check_action(int *newval, void **extra, GucSource source);
static void ig_assign_action(int newval, void *extra);
static bool ig_check_timeout(int *newval, void **extra, GucSource source);
static void ig_assign_blocking(int newval, void *extra);
static void ig_assign_idle(int newval, void *extra);
static void ig_shmem_request(void);
static void ig_shmem_startup(void);
static void ig_register_worker(void);
static IgNameList *ig_make_name_list(List *names);
static bool ig_check_exempt_roles(char **newval, void **extra,
								  GucSource source);
static void ig_assign_exempt_roles(const char *newval, void *extra);
static bool ig_check_exempt_applications(char **newval, void **extra,
										 GucSource source);
static void ig_assign_exempt_applications(const char *newval, void *extra);
static bool ig_name_in_list(const IgNameList *list, const char *name,
							bool prefix_patterns);

/*
 * Module load callback.
 *
 * The reloadable settings are defined in every process that loads the
 * library, so SHOW works and the SQL functions can explain a missing
 * preload.  Shared memory, the restart-only setting and the worker exist
 * only when the library is in shared_preload_libraries.
 */
void
_PG_init(void)
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

	DefineCustomIntVariable("idle_guard.blocking_timeout",
							"How long a silent session may hold locks that another session waits for.",
							"Counted from the start of the silence; 0 disables this rule.",
							&idle_guard_blocking_timeout,
							IG_DEFAULT_BLOCKING_TIMEOUT_MS,
							0, INT_MAX,
							PGC_SUSET,
							GUC_UNIT_MS,
							ig_check_timeout, ig_assign_blocking, NULL);

	DefineCustomIntVariable("idle_guard.idle_timeout",
							"How long a silent session may hold locks even if nobody waits for them.",
							"Counted from the start of the silence; 0 disables this rule.",
							&idle_guard_idle_timeout,
							IG_DEFAULT_IDLE_TIMEOUT_MS,
							0, INT_MAX,
							PGC_SUSET,
							GUC_UNIT_MS,
							ig_check_timeout, ig_assign_idle, NULL);

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
							"Counted from PREPARE TRANSACTION; 0 disables this rule.  idle_guard "
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
							   ig_check_exempt_roles,
							   ig_assign_exempt_roles,
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
							   ig_check_exempt_applications,
							   ig_assign_exempt_applications,
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

	DefineCustomIntVariable("idle_guard.unreachable_timeout",
							"How long a silent session may hold locks once the kernel finds its client unreachable.",
							"Counted from the client's last acknowledgement, or from the start "
							"of the silence if that is later; it applies whether or not anyone "
							"waits, and only to TCP clients whose data or probes go "
							"unacknowledged.  0 disables this rule.",
							&idle_guard_unreachable_timeout,
							IG_DEFAULT_UNREACHABLE_TIMEOUT_MS,
							0, INT_MAX,
							PGC_SIGHUP,
							GUC_UNIT_MS,
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

	if (!process_shared_preload_libraries_in_progress)
	{
		MarkGUCPrefixReserved("idle_guard");
		return;
	}

	/* can't define PGC_POSTMASTER variable after startup */
	DefineCustomIntVariable("idle_guard.history_size",
							"How many past actions idle_guard_history() keeps.",
							"Kept in shared memory; changing it needs a restart.",
							&idle_guard_history_size,
							IG_DEFAULT_HISTORY_SIZE,
							0, 10000,
							PGC_POSTMASTER,
							0,
							NULL, NULL, NULL);

	MarkGUCPrefixReserved("idle_guard");

	ig_prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = ig_shmem_request;
	ig_prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = ig_shmem_startup;
	idle_guard_install_message_hook();
	idle_guard_install_keepalive_hook();

	/* pg_upgrade starts servers that must not be disturbed */
	if (!IsBinaryUpgrade)
		ig_register_worker();
}

/* Seconds the postmaster waits before restarting a worker that failed */
#define IG_RESTART_SECONDS 5

/*
 * Register the worker (worker.c) at postmaster start.  It needs shared
 * memory but no database: names come from the shared catalogs.
 */
static void
ig_register_worker(void)
{
	BackgroundWorker worker;

	idle_guard_describe_worker(&worker, "idle_guard_worker_main",
							   "idle_guard worker", "idle_guard",
							   IG_RESTART_SECONDS);
	RegisterBackgroundWorker(&worker);
}

/*
 * idle_guard_describe_worker
 *		Fill in a background worker of this library: shared memory and a
 *		database connection (to none, or to one), running function_name.
 *		The main worker and the gid lookup worker (gid_worker.c) are both
 *		described here.
 *
 * Workers start once the server has reached a consistent state: on a
 * primary when it accepts connections, on a hot standby as soon as it
 * does too, where silent readers can stop WAL replay.  The postmaster
 * keeps such a worker running through promotion, so the standby's guard
 * carries on as the new primary's with its memory of every episode.
 */
void
idle_guard_describe_worker(BackgroundWorker *worker,
						   const char *function_name, const char *name,
						   const char *type, int restart_time)
{
	memset(worker, 0, sizeof(BackgroundWorker));
	worker->bgw_flags = BGWORKER_SHMEM_ACCESS |
		BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker->bgw_start_time = BgWorkerStart_ConsistentState;
	worker->bgw_restart_time = restart_time;
	snprintf(worker->bgw_library_name, BGW_MAXLEN, "idle_guard");
	snprintf(worker->bgw_function_name, BGW_MAXLEN, "%s", function_name);
	snprintf(worker->bgw_name, BGW_MAXLEN, "%s", name);
	snprintf(worker->bgw_type, BGW_MAXLEN, "%s", type);
}

/* Chain the shared-memory request hook, then ask for our share */
static void
ig_shmem_request(void)
{
	if (ig_prev_shmem_request_hook)
		ig_prev_shmem_request_hook();
	idle_guard_shmem_request();
}

/*
 * Chain the shared-memory startup hook, then attach to our share, with
 * this process's settings as the first published defaults
 */
static void
ig_shmem_startup(void)
{
	IgPolicy	defaults;

	if (ig_prev_shmem_startup_hook)
		ig_prev_shmem_startup_hook();
	idle_guard_current_policy(&defaults);
	idle_guard_shmem_startup(&defaults);
}

/*
 * Check and assign hooks of the three per-session settings: the GUC
 * machinery checks the value itself; the hooks keep track of where it came
 * from and publish it (session_policy.c).
 */
static bool
ig_check_action(int *newval, void **extra, GucSource source)
{
	return idle_guard_check_policy_source(source, extra);
}

static void
ig_assign_action(int newval, void *extra)
{
	idle_guard_assign_policy(IG_FIELD_ACTION, newval, extra);
}

static bool
ig_check_timeout(int *newval, void **extra, GucSource source)
{
	return idle_guard_check_policy_source(source, extra);
}

static void
ig_assign_blocking(int newval, void *extra)
{
	idle_guard_assign_policy(IG_FIELD_BLOCKING, newval, extra);
}

static void
ig_assign_idle(int newval, void *extra)
{
	idle_guard_assign_policy(IG_FIELD_IDLE, newval, extra);
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
	policy->action = (IgActionSetting) idle_guard_action;
	policy->blocking_timeout_ms = idle_guard_blocking_timeout;
	policy->idle_timeout_ms = idle_guard_idle_timeout;
	policy->prepared_timeout_ms = idle_guard_prepared_timeout;
	policy->session_locks = idle_guard_session_locks;
	policy->unreachable_timeout_ms = idle_guard_unreachable_timeout;
}

/*
 * Pack a list of C strings into one IgNameList allocated the way GUC
 * frees a check hook's "extra" (see ig_guc_malloc), the form a check hook
 * hands to its assign hook.
 * Returns NULL, with the GUC error set, when out of memory.
 */
static IgNameList *
ig_make_name_list(List *names)
{
	Size		size = offsetof(IgNameList, names) + 1;
	IgNameList *result;
	char	   *p;
	ListCell   *lc;

	foreach(lc, names)
		size += strlen((char *) lfirst(lc)) + 1;

	result = (IgNameList *) ig_guc_malloc(size);
	if (result == NULL)
	{
		GUC_check_errcode(ERRCODE_OUT_OF_MEMORY);
		GUC_check_errmsg("out of memory");
		return NULL;
	}
	result->count = list_length(names);
	p = result->names;
	foreach(lc, names)
	{
		size_t		len = strlen((char *) lfirst(lc)) + 1;

		memcpy(p, lfirst(lc), len);
		p += len;
	}
	*p = '\0';
	return result;
}

/*
 * Check hook of idle_guard.exempt_roles: a list of role names, written as
 * identifiers (unquoted names fold to lower case, as in SQL).  Whether the
 * roles exist is not checked: a role may be created after the setting.
 */
static bool
ig_check_exempt_roles(char **newval, void **extra, GucSource source)
{
	char	   *copy = pstrdup(*newval);
	List	   *names = NIL;
	IgNameList *parsed;

	if (!SplitIdentifierString(copy, ',', &names))
	{
		GUC_check_errdetail("List syntax is invalid.");
		pfree(copy);
		list_free(names);
		return false;
	}
	parsed = ig_make_name_list(names);
	pfree(copy);
	list_free(names);
	if (parsed == NULL)
		return false;
	*extra = parsed;
	return true;
}

static void
ig_assign_exempt_roles(const char *newval, void *extra)
{
	ig_exempt_roles = (IgNameList *) extra;
	ig_exempt_roles_generation++;
}

/*
 * Check hook of idle_guard.exempt_applications: application names
 * separated by commas, blanks around each trimmed, taken literally (no
 * case folding, no quoting).  "*" may appear only as an entry's last
 * character, where it makes the entry a prefix.
 */
static bool
ig_check_exempt_applications(char **newval, void **extra, GucSource source)
{
	char	   *copy = pstrdup(*newval);
	char	   *cur = copy;
	List	   *names = NIL;
	IgNameList *parsed;
	bool		ok = true;

	/* An empty or all-blank value is an empty list */
	while (isspace((unsigned char) *cur))
		cur++;
	while (*cur != '\0' && ok)
	{
		char	   *end = strchr(cur, ',');
		char	   *last;
		char	   *star;

		if (end)
			*end = '\0';
		while (isspace((unsigned char) *cur))
			cur++;
		last = cur + strlen(cur);
		while (last > cur && isspace((unsigned char) last[-1]))
			*--last = '\0';

		if (*cur == '\0')
		{
			GUC_check_errdetail("List syntax is invalid: empty application name.");
			ok = false;
		}
		else if ((star = strchr(cur, '*')) != NULL && star[1] != '\0')
		{
			GUC_check_errdetail("Entry \"%s\" has \"*\" before its end; \"*\" is allowed only as the last character.",
								cur);
			ok = false;
		}
		else
			names = lappend(names, cur);

		if (!end)
			break;
		cur = end + 1;
		if (*cur == '\0')
		{
			GUC_check_errdetail("List syntax is invalid: empty application name.");
			ok = false;
		}
	}

	parsed = ok ? ig_make_name_list(names) : NULL;
	list_free(names);
	pfree(copy);
	if (parsed == NULL)
		return false;
	*extra = parsed;
	return true;
}

static void
ig_assign_exempt_applications(const char *newval, void *extra)
{
	ig_exempt_apps = (IgNameList *) extra;
}

/*
 * Is name in the list?  With prefix_patterns, entries ending in '*' match
 * as prefixes (see idle_guard_app_matches).
 */
static bool
ig_name_in_list(const IgNameList *list, const char *name,
				bool prefix_patterns)
{
	const char *p;
	int			i;

	if (list == NULL || name == NULL)
		return false;
	p = list->names;
	for (i = 0; i < list->count; i++)
	{
		if (prefix_patterns ? idle_guard_app_matches(p, name)
			: strcmp(p, name) == 0)
			return true;
		p += strlen(p) + 1;
	}
	return false;
}

/* Is a session of this role exempt by idle_guard.exempt_roles? */
bool
idle_guard_role_exempt(const char *rolename)
{
	return ig_name_in_list(ig_exempt_roles, rolename, false);
}

/* Does idle_guard.exempt_roles name any role? */
bool
idle_guard_exempt_roles_listed(void)
{
	return ig_exempt_roles != NULL && ig_exempt_roles->count > 0;
}

/*
 * The names of idle_guard.exempt_roles, one after another, each
 * NUL-terminated; *count of them.  *generation changes whenever the
 * setting is assigned, so a caller can tell that what it derived from the
 * list is out of date.
 */
const char *
idle_guard_exempt_role_names(int *count, uint64 *generation)
{
	*generation = ig_exempt_roles_generation;
	*count = ig_exempt_roles ? ig_exempt_roles->count : 0;
	return ig_exempt_roles ? ig_exempt_roles->names : "";
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

/* Is a session with this application_name exempt? */
bool
idle_guard_application_exempt(const char *appname)
{
	return ig_name_in_list(ig_exempt_apps, appname, true);
}
