/*-------------------------------------------------------------------------
 *
 * idle_guard.c
 *		Module load: _PG_init defines the settings (settings.c), chains the
 *		shared-memory hooks, installs the hooks every backend runs
 *		(client_message.c, keepalive.c) and registers the background
 *		worker.
 *
 * Copyright (c) 2026, idle_guard developers
 *
 * IDENTIFICATION
 *	  src/idle_guard.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "miscadmin.h"
#include "storage/ipc.h"

#include "action.h"
#include "compat.h"
#include "idle_guard.h"
#include "settings.h"
#include "shared.h"

IG_MODULE_MAGIC;

void		_PG_init(void);

static shmem_request_hook_type ig_prev_shmem_request_hook = NULL;
static shmem_startup_hook_type ig_prev_shmem_startup_hook = NULL;

static void ig_shmem_request(void);
static void ig_shmem_startup(void);
static void ig_register_worker(void);

/*
 * Module load callback.
 *
 * The reloadable settings are defined in every process that loads the
 * library (settings.c).  Shared memory, the restart-only setting, the
 * hooks and the worker exist only when the library is in
 * shared_preload_libraries.
 */
void
_PG_init(void)
{
	idle_guard_define_settings();
	if (!process_shared_preload_libraries_in_progress)
	{
		MarkGUCPrefixReserved("idle_guard");
		return;
	}
	idle_guard_define_restart_settings();
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
	idle_guard_shmem_request(idle_guard_history_size);
}

/*
 * Chain the shared-memory startup hook, then attach to our share, with
 * this process's settings as the first published defaults.  The
 * postmaster restores the history of the last clean shutdown into a new
 * share, and saves it at its own exit.
 */
static void
ig_shmem_startup(void)
{
	IgPolicy	defaults;
	bool		found;

	if (ig_prev_shmem_startup_hook)
		ig_prev_shmem_startup_hook();
	idle_guard_current_policy(&defaults);
	found = idle_guard_shmem_startup(idle_guard_history_size, &defaults);
	if (!IsUnderPostmaster)
	{
		if (!found)
			idle_guard_load_state();
		on_shmem_exit(idle_guard_save_state, (Datum) 0);
	}
}
