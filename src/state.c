/*-------------------------------------------------------------------------
 *
 * state.c
 *		idle_guard's shared memory: the worker's identity, the counters
 *		shown by idle_guard_stats() and the ring of past actions shown by
 *		idle_guard_history().
 *
 * Locking: IgShared.lock (one LWLock of the "idle_guard" tranche) protects
 * every field but the per-backend policy slots, which each backend writes
 * for itself under a change counter (see session_policy.c), and
 * wake_pending, an atomic.  The worker writes under it held exclusively, for a few
 * stores at a time; the SQL functions read under it held shared and copy
 * what they need before building result rows.
 *
 * Copyright (c) 2026, idle_guard developers
 *
 * IDENTIFICATION
 *	  src/state.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "storage/shmem.h"

#include "idle_guard.h"

IgShared   *idle_guard_shared = NULL;

/* Number of per-backend policy slots: one per regular PGPROC */
static int
ig_nslots(void)
{
	return MaxBackends + NUM_AUXILIARY_PROCS;
}

/* Bytes of the struct and the history ring, before the slots */
static Size
ig_ring_size(void)
{
	return MAXALIGN(add_size(offsetof(IgShared, history),
							 mul_size(sizeof(IgHistoryEntry),
									  idle_guard_history_size)));
}

/* Bytes of the per-backend policy slots */
static Size
ig_slots_size(void)
{
	return MAXALIGN(mul_size(sizeof(IgSlot), ig_nslots()));
}

/*
 * Bytes of shared memory: struct, history ring, per-backend policy slots,
 * per-backend episode memory of the worker
 */
static Size
ig_shmem_size(void)
{
	return add_size(add_size(ig_ring_size(), ig_slots_size()),
					mul_size(sizeof(IgEpisodeMemory), ig_nslots()));
}

/*
 * idle_guard_shmem_request
 *		Reserve shared memory and the LWLock.  Called from the
 *		shmem_request_hook, as PostgreSQL 15+ requires.
 */
void
idle_guard_shmem_request(void)
{
	RequestAddinShmemSpace(ig_shmem_size());
	RequestNamedLWLockTranche("idle_guard", 1);
}

/*
 * idle_guard_shmem_startup
 *		Create or attach to the shared state.  Runs in the postmaster at
 *		startup and after a crash restart (where it re-initializes).
 */
void
idle_guard_shmem_startup(void)
{
	bool		found;

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	idle_guard_shared = ShmemInitStruct("idle_guard", ig_shmem_size(), &found);
	if (!found)
	{
		int			i;

		memset(idle_guard_shared, 0, ig_shmem_size());
		idle_guard_shared->lock = &(GetNamedLWLockTranche("idle_guard"))->lock;
		idle_guard_shared->history_size = idle_guard_history_size;
		pg_atomic_init_u32(&idle_guard_shared->wake_pending, 0);
		idle_guard_current_policy(&idle_guard_shared->defaults);
		idle_guard_shared->nslots = ig_nslots();
		idle_guard_shared->slots = (IgSlot *)
			((char *) idle_guard_shared + ig_ring_size());
		for (i = 0; i < idle_guard_shared->nslots; i++)
			pg_atomic_init_u32(&idle_guard_shared->slots[i].changecount, 0);
		idle_guard_shared->episodes = (IgEpisodeMemory *)
			((char *) idle_guard_shared + ig_ring_size() + ig_slots_size());
	}
	LWLockRelease(AddinShmemInitLock);
}

/*
 * idle_guard_require_loaded
 *		Raise an error explaining the missing preload when this process has
 *		no shared state; called first by every SQL-callable function.
 */
void
idle_guard_require_loaded(void)
{
	if (idle_guard_shared == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("idle_guard must be loaded via \"shared_preload_libraries\""),
				 errhint("Add idle_guard to \"shared_preload_libraries\" in postgresql.conf and restart the server.")));
}

/*
 * idle_guard_wake_worker
 *		Ask the worker for a sweep now (a session's policy changed).
 */
void
idle_guard_wake_worker(void)
{
	Latch	   *latch;

	pg_atomic_write_u32(&idle_guard_shared->wake_pending, 1);
	LWLockAcquire(idle_guard_shared->lock, LW_SHARED);
	latch = idle_guard_shared->worker_latch;
	if (latch)
		SetLatch(latch);
	LWLockRelease(idle_guard_shared->lock);
}

/*
 * idle_guard_publish_defaults
 *		Publish the cluster-wide policy the worker applies, for
 *		idle_guard_report() to judge with the same values.
 */
void
idle_guard_publish_defaults(const IgPolicy *policy)
{
	LWLockAcquire(idle_guard_shared->lock, LW_EXCLUSIVE);
	idle_guard_shared->defaults = *policy;
	LWLockRelease(idle_guard_shared->lock);
}

/*
 * idle_guard_record
 *		Count one action and append it to the history ring, overwriting the
 *		oldest entry once the ring is full.
 *
 * action is "reported", "terminated" or "skipped".  The names are passed
 * in resolved, since the caller has them for its LOG line already.
 */
void
idle_guard_record(const IgSession *s, const char *usename,
				  const char *datname, const char *client, TimestampTz at,
				  const char *action, const char *detail)
{
	IgShared   *sh = idle_guard_shared;
	IgHistoryEntry *e;

	LWLockAcquire(sh->lock, LW_EXCLUSIVE);

	if (strcmp(action, "terminated") == 0)
		sh->terminated++;
	else if (strcmp(action, "skipped") == 0)
		sh->skipped++;
	else
		sh->reported++;

	if (sh->history_size > 0)
	{
		e = &sh->history[sh->history_next % sh->history_size];
		memset(e, 0, sizeof(IgHistoryEntry));
		e->at = at;
		e->pid = s->key.pid;
		e->userid = s->userid;
		strlcpy(e->usename, usename ? usename : "", NAMEDATALEN);
		strlcpy(e->datname, datname ? datname : "", NAMEDATALEN);
		strlcpy(e->appname, s->appname, NAMEDATALEN);
		strlcpy(e->client_addr, client ? client : "", IG_ADDR_LEN);
		e->silent_for_us = at - s->key.state_start;
		e->locks_held = s->locks_held;
		e->blocked_total = s->blocked_total;
		e->rule = s->decision.rule;
		strlcpy(e->action, action, sizeof(e->action));
		strlcpy(e->detail, detail ? detail : "", sizeof(e->detail));
		sh->history_next++;
	}

	LWLockRelease(sh->lock);
}
