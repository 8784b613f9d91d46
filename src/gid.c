/*-------------------------------------------------------------------------
 *
 * gid.c
 *		The gids of prepared transactions.  The gid is private to
 *		twophase.c; its public face is pg_prepared_xact(), the function
 *		behind the pg_prepared_xacts view, which looks up its result types
 *		in pg_type and so needs a database connection.
 *
 * The worker is connected to no database: its gid lookup worker
 * (gid_worker.c) calls pg_prepared_xact() in some database and publishes
 * every gid in shared memory, by the index of the transaction's dummy
 * PGPROC.  idle_guard_report() uses the published gids, and calls
 * pg_prepared_xact() itself for the others, when pg_type can be read
 * without waiting (names.c).
 *
 * Copyright (c) 2026, idle_guard developers
 *
 * IDENTIFICATION
 *	  src/gid.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/twophase.h"
#include "catalog/pg_type.h"
#include "executor/executor.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "nodes/execnodes.h"
#include "storage/proc.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"

#include "names.h"
#include "shared.h"
#include "snapshot.h"

/* Columns of pg_prepared_xact(), as the pg_prepared_xacts view uses them */
#define IG_PX_XID		1
#define IG_PX_GID		2

/* Called for each row of pg_prepared_xact(): xid and gid */
typedef void (*IgGidCallback) (TransactionId xid, const char *gid,
							   void *arg);

static void ig_scan_gids(IgGidCallback callback, void *arg);
static void ig_fill_sweep_gid(TransactionId xid, const char *gid, void *arg);
static void ig_publish_gid(TransactionId xid, const char *gid, void *arg);

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
	if (!idle_guard_copy_published_gids(sweep))
		return;
	if (!idle_guard_lock_catalog(TypeRelationId, TypeOidIndexId))
		return;
	ig_scan_gids(ig_fill_sweep_gid, sweep);
	idle_guard_unlock_catalog(TypeRelationId, TypeOidIndexId);
}

/*
 * idle_guard_publish_gids
 *		Read every prepared transaction's gid with pg_prepared_xact() and
 *		publish it for the worker.  Needs a database connection and a
 *		transaction (the gid lookup worker's).
 */
void
idle_guard_publish_gids(void)
{
	ig_scan_gids(ig_publish_gid, NULL);
}

/*
 * idle_guard_copy_published_gids
 *		Copy the published gids into the sweep's prepared transactions.
 *		Returns true if some prepared transaction still has no gid.
 */
bool
idle_guard_copy_published_gids(IgSweep *sweep)
{
	IgShared   *sh = idle_guard_shared;
	bool		missing = false;
	int			i;

	/* most sweeps have no prepared transaction: take no lock for them */
	for (i = 0; i < sweep->nsessions; i++)
		if (sweep->sessions[i].reason == IG_REASON_PREPARED)
			break;
	if (i == sweep->nsessions)
		return false;

	LWLockAcquire(sh->lock, LW_SHARED);
	for (; i < sweep->nsessions; i++)
	{
		IgSession  *s = &sweep->sessions[i];
		int			index;

		if (s->reason != IG_REASON_PREPARED)
			continue;
		index = s->procno - (int) (PreparedXactProcs - ProcGlobal->allProcs);
		if (index >= 0 && index < max_prepared_xacts &&
			TransactionIdEquals(sh->gids[index].xid, s->xid))
		{
			strlcpy(s->gid, sh->gids[index].gid, GIDSIZE);
			s->gid_known = true;
		}
		if (!s->gid_known)
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
		{
			strlcpy(s->gid, gid, GIDSIZE);
			s->gid_known = true;
		}
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
