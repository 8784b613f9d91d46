/*-------------------------------------------------------------------------
 *
 * prepared.c
 *		Prepared transactions as silent sessions: a transaction prepared
 *		for two-phase commit keeps its locks with no backend at all, until
 *		someone runs COMMIT PREPARED or ROLLBACK PREPARED.
 *
 * Finding them.  Each prepared transaction owns a dummy PGPROC in
 * PreparedXactProcs holding its xid, database, owner and locks; a dummy
 * whose xid is still in progress belongs to a live prepared transaction.
 * locks.c reads its locks like any backend's, and the wait graph already
 * has a node for it (keyed by PGPROC index, pid 0).  When it was prepared
 * is private to twophase.c, so its silence is timed from when idle_guard
 * first saw it (observe.c), a lower bound of its age.
 *
 * Naming them.  The gid is private to twophase.c too; its public face is
 * pg_prepared_xact(), the function behind the pg_prepared_xacts view.  That
 * function looks up its result types in pg_type, which needs a database,
 * and the worker is connected to none.  When the worker sees a prepared
 * transaction whose gid it does not know, it starts a short-lived
 * background worker in that transaction's database, which reads every
 * gid and publishes them in shared memory, and goes on without waiting
 * for it: the lookup worker may itself wait (to connect, or on pg_type),
 * and nothing may delay the main worker.  The gid is picked up at a later
 * sweep; an action due before it is known logs the xid instead.  A lookup
 * still running after IG_GID_LOOKUP_MS is stopped, and one is tried again
 * after IG_GID_RETRY_MS, or at once when a new prepared transaction
 * appears.  idle_guard_report() uses the published gids, and calls
 * pg_prepared_xact() itself for the others when pg_type can be read
 * without waiting.
 *
 * idle_guard never ends a prepared transaction: it cannot be signalled,
 * and only its owner's application knows whether to commit it or roll it
 * back.  The policy (policy.c) caps its action at "report".
 *
 * Copyright (c) 2026, idle_guard developers
 *
 * IDENTIFICATION
 *	  src/prepared.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/twophase.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/executor.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "nodes/execnodes.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "storage/proc.h"
#include "storage/procarray.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "compat.h"
#include "idle_guard.h"

/* Columns of pg_prepared_xact(), as the pg_prepared_xacts view uses them */
#define IG_PX_XID		1
#define IG_PX_GID		2

/* How long a gid lookup may run, and when to try again, in milliseconds */
#define IG_GID_LOOKUP_MS 5000
#define IG_GID_RETRY_MS 10000

/* In the worker: the gid lookup worker started last, while it runs */
static BackgroundWorkerHandle *ig_gid_handle = NULL;
static TimestampTz ig_gid_started = 0;

/* Called for each row of pg_prepared_xact(): xid and gid */
typedef void (*IgGidCallback) (TransactionId xid, const char *gid,
							   void *arg);

static void ig_scan_gids(IgGidCallback callback, void *arg);
static bool ig_copy_published_gids(IgSweep *sweep);
static void ig_fill_sweep_gid(TransactionId xid, const char *gid, void *arg);
static void ig_publish_gid(TransactionId xid, const char *gid, void *arg);
static bool ig_gid_lookup_running(TimestampTz now);
static void ig_start_gid_lookup(Oid dbid, TimestampTz now);

/*
 * idle_guard_add_prepared
 *		Append to sweep->sessions every live prepared transaction, at most
 *		room of them (the snapshot leaves max_prepared_transactions
 *		entries), without its gid (see above).
 *
 * Reads the dummy PGPROCs without a lock.  A dummy's xid stays behind when
 * its transaction ends, so only an xid still in progress counts; locks.c
 * checks the xid again under the lock-table partition locks before it
 * reads the dummy's locks.
 */
void
idle_guard_add_prepared(IgSweep *sweep, int room)
{
	int			limit = sweep->nsessions + room;
	int			i;

	for (i = 0; i < max_prepared_xacts && sweep->nsessions < limit; i++)
	{
		PGPROC	   *proc = PreparedXactProcs + i;
		TransactionId xid = proc->xid;
		IgSession  *s;

		if (proc->pid != 0 || !TransactionIdIsNormal(xid) ||
			!TransactionIdIsInProgress(xid))
			continue;

		s = &sweep->sessions[sweep->nsessions++];
		memset(s, 0, sizeof(IgSession));
		/* pid 0, and the xid in place of a local transaction id */
		s->key.pid = 0;
		s->key.lxid = (uint32) xid;
		s->reason = IG_REASON_PREPARED;
		s->silent_since = sweep->now;	/* until observe.c knows better */
		s->procno = (int) (proc - ProcGlobal->allProcs);
		s->userid = proc->roleId;
		s->dbid = proc->databaseId;
		s->state = STATE_UNDEFINED;
		s->xid = xid;
		s->strongest_mode = NoLock;
	}
}

/*
 * idle_guard_prepared_gids
 *		Fill in the gid of every prepared transaction of the sweep: those
 *		published by the gid lookup worker, then the others from
 *		pg_prepared_xact() if pg_type can be read without waiting.  Only in
 *		a backend connected to a database (idle_guard_report()).
 */
void
idle_guard_prepared_gids(IgSweep *sweep)
{
	if (!ig_copy_published_gids(sweep))
		return;
	if (!idle_guard_lock_catalog(TypeRelationId, TypeOidIndexId))
		return;
	ig_scan_gids(ig_fill_sweep_gid, sweep);
	idle_guard_unlock_catalog(TypeRelationId, TypeOidIndexId);
}

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

	if (!ig_copy_published_gids(sweep) || ig_gid_lookup_running(now))
		return;

	for (i = 0; i < sweep->nsessions; i++)
	{
		IgSession  *s = &sweep->sessions[i];

		if (s->reason != IG_REASON_PREPARED || s->gid[0] != '\0')
			continue;
		dbid = s->dbid;
		if (s->silent_since > ig_gid_started)
			new_since = true;
	}
	if (new_since ||
		TimestampDifferenceExceeds(ig_gid_started, now, IG_GID_RETRY_MS))
		ig_start_gid_lookup(dbid, now);
}

/*
 * Copy the published gids into the sweep's prepared transactions.  Returns
 * true if some prepared transaction still has no gid.
 */
static bool
ig_copy_published_gids(IgSweep *sweep)
{
	IgShared   *sh = idle_guard_shared;
	bool		missing = false;
	int			i;

	LWLockAcquire(sh->lock, LW_SHARED);
	for (i = 0; i < sweep->nsessions; i++)
	{
		IgSession  *s = &sweep->sessions[i];
		int			index;

		if (s->reason != IG_REASON_PREPARED)
			continue;
		index = s->procno - (int) (PreparedXactProcs - ProcGlobal->allProcs);
		if (index >= 0 && index < max_prepared_xacts &&
			TransactionIdEquals(sh->gids[index].xid, s->xid))
			strlcpy(s->gid, sh->gids[index].gid, GIDSIZE);
		if (s->gid[0] == '\0')
			missing = true;
	}
	LWLockRelease(sh->lock);
	return missing;
}

/* Copy a gid into the sweep's session of that xid */
static void
ig_fill_sweep_gid(TransactionId xid, const char *gid, void *arg)
{
	IgSweep    *sweep = (IgSweep *) arg;
	int			i;

	for (i = 0; i < sweep->nsessions; i++)
	{
		IgSession  *s = &sweep->sessions[i];

		if (s->reason == IG_REASON_PREPARED && TransactionIdEquals(s->xid, xid))
			strlcpy(s->gid, gid, GIDSIZE);
	}
}

/*
 * Call pg_prepared_xact() in value-per-call mode, as the executor would,
 * with a standalone expression context for its shutdown callback, and
 * pass each row's xid and gid to callback.  Needs a database connection
 * and a transaction.
 */
static void
ig_scan_gids(IgGidCallback callback, void *arg)
{
	FmgrInfo	flinfo;
	ReturnSetInfo rsinfo;
	ExprContext *econtext;

	LOCAL_FCINFO(fcinfo, 0);

	Assert(OidIsValid(MyDatabaseId));
	fmgr_info(F_PG_PREPARED_XACT, &flinfo);
	econtext = CreateStandaloneExprContext();
	memset(&rsinfo, 0, sizeof(rsinfo));
	rsinfo.type = T_ReturnSetInfo;
	rsinfo.econtext = econtext;
	rsinfo.allowedModes = (int) SFRM_ValuePerCall;
	rsinfo.returnMode = SFRM_ValuePerCall;
	InitFunctionCallInfoData(*fcinfo, &flinfo, 0, InvalidOid, NULL,
							 (Node *) &rsinfo);

	for (;;)
	{
		Datum		row;
		HeapTupleHeader tuple;
		bool		xid_null;
		bool		gid_null;
		Datum		xid;
		Datum		gid;

		fcinfo->isnull = false;
		rsinfo.isDone = ExprSingleResult;
		row = FunctionCallInvoke(fcinfo);
		if (rsinfo.isDone == ExprEndResult)
			break;
		if (fcinfo->isnull)
			continue;
		tuple = DatumGetHeapTupleHeader(row);
		xid = GetAttributeByNum(tuple, IG_PX_XID, &xid_null);
		gid = GetAttributeByNum(tuple, IG_PX_GID, &gid_null);
		if (!xid_null && !gid_null)
			callback(DatumGetTransactionId(xid), TextDatumGetCString(gid),
					 arg);
	}

	FreeExprContext(econtext, true);
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
	ig_scan_gids(ig_publish_gid, NULL);
	CommitTransactionCommand();
}

/*
 * Publish the gid of a prepared transaction under the index of its dummy
 * PGPROC, found by its xid.
 */
static void
ig_publish_gid(TransactionId xid, const char *gid, void *arg)
{
	IgShared   *sh = idle_guard_shared;
	int			i;

	for (i = 0; i < max_prepared_xacts; i++)
	{
		if (!TransactionIdEquals(PreparedXactProcs[i].xid, xid))
			continue;
		LWLockAcquire(sh->lock, LW_EXCLUSIVE);
		sh->gids[i].xid = xid;
		strlcpy(sh->gids[i].gid, gid, GIDSIZE);
		LWLockRelease(sh->lock);
		break;
	}
}
