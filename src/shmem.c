/*-------------------------------------------------------------------------
 *
 * shmem.c
 *		idle_guard's shared memory: its layout (the struct, the history
 *		ring, the per-backend policy slots, the worker's episode memory, the
 *		observations and the gids of prepared transactions), its creation,
 *		and the small accessors every process uses.
 *
 * Locking: see IgShared in shared.h.
 *
 * Copyright (c) 2026, idle_guard developers
 *
 * IDENTIFICATION
 *	  src/shmem.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/twophase.h"
#include "miscadmin.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "storage/shmem.h"

#include "shared.h"

IgShared   *idle_guard_shared = NULL;

/* Number of per-backend policy slots: one per regular PGPROC */
static int
ig_nslots(void)
{
	return MaxBackends + NUM_AUXILIARY_PROCS;
}

/* Bytes of the struct and a history ring of history_size entries */
static Size
ig_ring_size(int history_size)
{
	return MAXALIGN(add_size(offsetof(IgShared, history),
							 mul_size(sizeof(IgHistoryEntry), history_size)));
}

/*
 * Number of episode memories and observations: one per PGPROC, prepared
 * transactions' dummies included
 */
static int
ig_nepisodes(void)
{
	return ig_nslots() + max_prepared_xacts;
}

/* Bytes of the per-backend policy slots */
static Size
ig_slots_size(void)
{
	return MAXALIGN(mul_size(sizeof(IgSlot), ig_nslots()));
}

/* Bytes of the worker's episode memory */
static Size
ig_episodes_size(void)
{
	return MAXALIGN(mul_size(sizeof(IgEpisodeMemory), ig_nepisodes()));
}

/* Bytes of the observations */
static Size
ig_observations_size(void)
{
	return MAXALIGN(mul_size(sizeof(IgObservation), ig_nepisodes()));
}

/* Bytes of the gids of prepared transactions */
static Size
ig_gids_size(void)
{
	return MAXALIGN(mul_size(sizeof(IgPreparedGid), max_prepared_xacts));
}

/* Bytes of the notes to ended backends, one per backend's PGPROC */
static Size
ig_notes_size(void)
{
	return MAXALIGN(mul_size(sizeof(IgEndNote), ig_nslots()));
}

/*
 * Bytes of shared memory: struct, history ring, per-backend policy slots,
 * per-PGPROC episode memory of the worker, observations, the gids of
 * prepared transactions, and the notes to ended backends
 */
static Size
ig_shmem_size(int history_size)
{
	return add_size(add_size(add_size(add_size(add_size(ig_ring_size(history_size),
														ig_slots_size()),
											   ig_episodes_size()),
									  ig_observations_size()),
							 ig_gids_size()),
					ig_notes_size());
}

/*
 * idle_guard_shmem_request
 *		Reserve shared memory and the LWLock.  Called from the
 *		shmem_request_hook, as PostgreSQL 15+ requires.
 */
void
idle_guard_shmem_request(int history_size)
{
	RequestAddinShmemSpace(ig_shmem_size(history_size));
	RequestNamedLWLockTranche("idle_guard", 1);
}

/*
 * idle_guard_shmem_startup
 *		Create or attach to the shared state, with a history ring of
 *		history_size entries and the defaults to publish first.  Runs in
 *		the postmaster at startup and after a crash restart (where it
 *		re-initializes).  Returns whether the state existed already.
 */
bool
idle_guard_shmem_startup(int history_size, const IgPolicy *defaults)
{
	bool		found;
	Size		ring = ig_ring_size(history_size);
	char	   *base;

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	idle_guard_shared = ShmemInitStruct("idle_guard",
										ig_shmem_size(history_size), &found);
	if (!found)
	{
		IgShared   *sh = idle_guard_shared;
		int			i;

		memset(sh, 0, ig_shmem_size(history_size));
		sh->lock = &(GetNamedLWLockTranche("idle_guard"))->lock;
		sh->history_size = history_size;
		pg_atomic_init_u32(&sh->wake_pending, 0);
		sh->defaults = *defaults;
		sh->nslots = ig_nslots();
		base = (char *) sh + ring;
		sh->slots = (IgSlot *) base;
		base += ig_slots_size();
		sh->episodes = (IgEpisodeMemory *) base;
		base += ig_episodes_size();
		sh->observations = (IgObservation *) base;
		base += ig_observations_size();
		sh->gids = (IgPreparedGid *) base;
		base += ig_gids_size();
		sh->notes = (IgEndNote *) base;
		for (i = 0; i < sh->nslots; i++)
		{
			pg_atomic_init_u32(&sh->slots[i].changecount, 0);
			pg_atomic_init_u32(&sh->notes[i].changecount, 0);
		}
		sh->stats_reset = GetCurrentTimestamp();
	}
	LWLockRelease(AddinShmemInitLock);
	return found;
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
