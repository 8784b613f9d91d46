/*-------------------------------------------------------------------------
 *
 * prepared.c
 *		Prepared transactions in the snapshot: a transaction prepared for
 *		two-phase commit keeps its locks with no backend at all, until
 *		someone runs COMMIT PREPARED or ROLLBACK PREPARED.
 *
 * Each prepared transaction owns a dummy PGPROC in PreparedXactProcs
 * holding its xid, database, owner and locks; a dummy whose xid is still
 * in progress belongs to a live prepared transaction.  locks.c reads its
 * locks like any backend's, and the wait graph already has a node for it
 * (keyed by PGPROC index, pid 0).  When it was prepared is private to
 * twophase.c, so its silence is timed from when idle_guard first saw it
 * (observe.c), a lower bound of its age.  Its gid is private too: gid.c
 * and gid_worker.c read it.
 *
 * On a hot standby there are none to see: a standby's prepared
 * transactions are the primary's until promotion.
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
#include "access/xlog.h"
#include "storage/proc.h"
#include "storage/procarray.h"

#include "snapshot.h"

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

	/*
	 * On a standby, prepared transactions are the primary's: their dummy
	 * PGPROCs are set up only at promotion, and the primary's idle_guard
	 * reports them.
	 */
	if (RecoveryInProgress())
		return;

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
		s->facts.silent_since = sweep->now; /* until observe.c knows better */
		s->procno = (int) (proc - ProcGlobal->allProcs);
		s->userid = proc->roleId;
		s->dbid = proc->databaseId;
		s->state = STATE_UNDEFINED;
		s->xid = xid;
		s->xmin_age = -1;
		s->strongest_mode = NoLock;
	}
}
