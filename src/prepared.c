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
 * function looks up its result types in pg_type, which needs a database:
 * idle_guard_report() runs in one and calls it directly, but the worker is
 * connected to no database.  When the worker is about to report a prepared
 * transaction, it starts a short-lived background worker in that
 * transaction's database to read the gid, and waits a bounded time for it.
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
#include "executor/executor.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "nodes/execnodes.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "storage/procarray.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/timestamp.h"

#include "compat.h"
#include "idle_guard.h"

/* Columns of pg_prepared_xact(), as the pg_prepared_xacts view uses them */
#define IG_PX_XID		1
#define IG_PX_GID		2

/* How long the worker waits for the gid lookup, in milliseconds */
#define IG_GID_LOOKUP_MS 5000

/* Called for each row of pg_prepared_xact(): xid and gid */
typedef void (*IgGidCallback) (TransactionId xid, const char *gid,
							   void *arg);

static void ig_scan_gids(IgGidCallback callback, void *arg);
static void ig_fill_sweep_gid(TransactionId xid, const char *gid, void *arg);
static void ig_fill_lookup_gid(TransactionId xid, const char *gid,
							   void *arg);

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
 *		Fill in the gid of every prepared transaction of the sweep.  Only in
 *		a backend connected to a database (idle_guard_report()).
 */
void
idle_guard_prepared_gids(IgSweep *sweep)
{
	int			i;

	for (i = 0; i < sweep->nsessions; i++)
	{
		if (sweep->sessions[i].reason == IG_REASON_PREPARED)
		{
			ig_scan_gids(ig_fill_sweep_gid, sweep);
			return;
		}
	}
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
 * idle_guard_lookup_gid
 *		In the worker: find the gid of prepared transaction s by starting a
 *		background worker in its database, and copy it into s->gid.
 *		Returns false, leaving s->gid empty, if the gid could not be read
 *		within IG_GID_LOOKUP_MS (no free worker slot, the transaction
 *		ended, or the database refused the connection).
 */
bool
idle_guard_lookup_gid(IgSession *s)
{
	IgShared   *sh = idle_guard_shared;
	BackgroundWorker worker;
	BackgroundWorkerHandle *handle;
	TimestampTz give_up;
	bool		found = false;
	pid_t		pid;

	LWLockAcquire(sh->lock, LW_EXCLUSIVE);
	memset(&sh->gid_lookup, 0, sizeof(sh->gid_lookup));
	sh->gid_lookup.xid = s->xid;
	LWLockRelease(sh->lock);

	idle_guard_describe_worker(&worker, "idle_guard_gid_main",
							   "idle_guard gid lookup",
							   "idle_guard gid lookup", BGW_NEVER_RESTART);
	worker.bgw_main_arg = ObjectIdGetDatum(s->dbid);
	worker.bgw_notify_pid = MyProcPid;

	if (!RegisterDynamicBackgroundWorker(&worker, &handle))
		return false;

	/* Wait for it to exit, bounded; the latch is set when it does */
	give_up = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
										  IG_GID_LOOKUP_MS);
	for (;;)
	{
		long		left;

		if (GetBackgroundWorkerPid(handle, &pid) == BGWH_STOPPED)
			break;
		left = TimestampDifferenceMilliseconds(GetCurrentTimestamp(),
											   give_up);
		if (left <= 0)
		{
			TerminateBackgroundWorker(handle);
			break;
		}
		(void) WaitLatch(MyLatch,
						 WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 Min(left, 100), ig_worker_wait_event());
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
	pfree(handle);

	LWLockAcquire(sh->lock, LW_SHARED);
	if (sh->gid_lookup.found && TransactionIdEquals(sh->gid_lookup.xid, s->xid))
	{
		strlcpy(s->gid, sh->gid_lookup.gid, GIDSIZE);
		found = true;
	}
	LWLockRelease(sh->lock);

	/* the worker's own latch may have been set meanwhile: look again soon */
	SetLatch(MyLatch);
	return found;
}

/*
 * idle_guard_gid_main
 *		Entry point of the gid lookup worker: connect to the database of the
 *		prepared transaction (main_arg), read pg_prepared_xact(), publish
 *		the gid of the xid the worker asked for, and exit.
 */
void
idle_guard_gid_main(Datum main_arg)
{
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnectionByOid(DatumGetObjectId(main_arg),
											  InvalidOid, 0);

	StartTransactionCommand();
	ig_scan_gids(ig_fill_lookup_gid, NULL);
	CommitTransactionCommand();
}

/* Publish the gid of the xid the worker asked for */
static void
ig_fill_lookup_gid(TransactionId xid, const char *gid, void *arg)
{
	IgShared   *sh = idle_guard_shared;

	LWLockAcquire(sh->lock, LW_EXCLUSIVE);
	if (TransactionIdEquals(sh->gid_lookup.xid, xid))
	{
		strlcpy(sh->gid_lookup.gid, gid, GIDSIZE);
		sh->gid_lookup.found = true;
	}
	LWLockRelease(sh->lock);
}
