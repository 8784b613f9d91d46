/*-------------------------------------------------------------------------
 *
 * gid_worker.c
 *		Naming prepared transactions from the worker, which is connected to
 *		no database: a short-lived background worker in the transaction's
 *		database reads every gid (gid.c) and publishes it.
 *
 * The worker starts one when it sees a prepared transaction whose gid it
 * does not know, and goes on without waiting for it: the lookup worker may
 * itself wait (to connect, or on pg_type), and nothing may delay the main
 * worker.  The gid is picked up at a later sweep; an action due before it
 * is known logs the xid instead.  A lookup still running after
 * IG_GID_LOOKUP_MS is stopped, and one is tried again after
 * IG_GID_RETRY_MS, or at once when a new prepared transaction appears.
 *
 * Copyright (c) 2026, idle_guard developers
 *
 * IDENTIFICATION
 *	  src/gid_worker.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "miscadmin.h"
#include "postmaster/bgworker.h"
#include "tcop/tcopprot.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "idle_guard.h"
#include "shared.h"
#include "snapshot.h"

/* How long a gid lookup may run, and when to try again, in milliseconds */
#define IG_GID_LOOKUP_MS 5000
#define IG_GID_RETRY_MS 10000

/* In the worker: the gid lookup worker started last, while it runs */
static BackgroundWorkerHandle *ig_gid_handle = NULL;
static TimestampTz ig_gid_started = 0;

static bool ig_gid_lookup_running(TimestampTz now);
static void ig_start_gid_lookup(Oid dbid, TimestampTz now);

/*
 * idle_guard_worker_gids
 *		In the worker: fill in the gids published so far, and start a gid
 *		lookup if some prepared transaction still has none.  Never waits.
 */
void
idle_guard_worker_gids(IgSweep *sweep)
{
	TimestampTz now = GetCurrentTimestamp();
	bool		new_since = false;
	Oid			dbid = InvalidOid;
	int			i;

	if (!idle_guard_copy_published_gids(sweep) || ig_gid_lookup_running(now))
		return;

	for (i = 0; i < sweep->nsessions; i++)
	{
		IgSession  *s = &sweep->sessions[i];

		if (s->reason != IG_REASON_PREPARED || s->gid_known)
			continue;
		dbid = s->dbid;
		if (s->facts.silent_since > ig_gid_started)
			new_since = true;
	}
	if (new_since ||
		TimestampDifferenceExceeds(ig_gid_started, now, IG_GID_RETRY_MS))
		ig_start_gid_lookup(dbid, now);
}

/*
 * Is the gid lookup started last still running?  One that has run past
 * IG_GID_LOOKUP_MS is asked to stop, and counts as running until it has.
 */
static bool
ig_gid_lookup_running(TimestampTz now)
{
	pid_t		pid;

	if (ig_gid_handle == NULL)
		return false;
	if (GetBackgroundWorkerPid(ig_gid_handle, &pid) == BGWH_STOPPED)
	{
		pfree(ig_gid_handle);
		ig_gid_handle = NULL;
		return false;
	}
	if (TimestampDifferenceExceeds(ig_gid_started, now, IG_GID_LOOKUP_MS))
		TerminateBackgroundWorker(ig_gid_handle);
	return true;
}

/*
 * Start a gid lookup worker in database dbid, without waiting for it.  Its
 * exit sets our latch (bgw_notify_pid).  If no worker slot is free, the
 * next try comes after IG_GID_RETRY_MS.
 */
static void
ig_start_gid_lookup(Oid dbid, TimestampTz now)
{
	BackgroundWorker worker;
	MemoryContext oldcontext;

	idle_guard_describe_worker(&worker, "idle_guard_gid_main",
							   "idle_guard gid lookup",
							   "idle_guard gid lookup", BGW_NEVER_RESTART);
	worker.bgw_main_arg = ObjectIdGetDatum(dbid);
	worker.bgw_notify_pid = MyProcPid;

	ig_gid_started = now;
	/* the handle outlives the sweep's memory context */
	oldcontext = MemoryContextSwitchTo(TopMemoryContext);
	if (!RegisterDynamicBackgroundWorker(&worker, &ig_gid_handle))
		ig_gid_handle = NULL;
	MemoryContextSwitchTo(oldcontext);
}

/*
 * idle_guard_gid_main
 *		Entry point of the gid lookup worker: connect to the database given
 *		(main_arg), read pg_prepared_xact(), publish every gid for the
 *		worker, and exit.
 */
void
idle_guard_gid_main(Datum main_arg)
{
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnectionByOid(DatumGetObjectId(main_arg),
											  InvalidOid, 0);

	StartTransactionCommand();
	idle_guard_publish_gids();
	CommitTransactionCommand();
}
