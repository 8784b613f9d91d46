/*-------------------------------------------------------------------------
 *
 * observe.c
 *		Silences that have no timestamp: an active backend blocked sending
 *		results its client does not read (ClientWrite), or waiting for the
 *		rest of a request (ClientRead in the middle of the extended
 *		protocol), and a prepared transaction.  PostgreSQL records when a
 *		wait event began nowhere (and keeps the time of PREPARE private), so
 *		the silence is timed from when the pipeline first saw it.
 *
 * Every pass of the pipeline (the worker's sweeps and idle_guard_report()
 * alike) observes each such backend and updates its entry, by PGPROC
 * index (a prepared transaction's dummy PGPROC's), in shared memory; the
 * pure rule is idle_guard_observe() in policy.c.
 *
 * A backend that makes progress starts a new silence.  On Linux progress
 * is a wake-up: a backend blocked on its socket sleeps in the kernel, and
 * its count of voluntary context switches (/proc/<pid>/status) moves only
 * when it wakes, as it does each time a slow client drains the socket.
 * (Bytes written would be the natural measure, but /proc/<pid>/io does
 * not count send().)  A wake-up for another reason, such as a signal,
 * only delays the action.  Elsewhere the observations must follow each
 * other closely (the worker looks every naptime while it watches one).
 * An entry whose backend is no longer silent is cleared, so a slow client
 * that keeps reading, caught between two writes, starts again from zero.
 *
 * IgShared.lock, held exclusively, protects the entries: the worker and
 * any backend running the report may observe at the same time.
 *
 * Copyright (c) 2026, idle_guard developers
 *
 * IDENTIFICATION
 *	  src/observe.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <stdio.h>

#include "access/twophase.h"
#include "storage/fd.h"
#include "storage/lwlock.h"

#include "settings.h"
#include "shared.h"
#include "snapshot.h"

/* Longest gap between two observations of one silence, in naptimes */
#define IG_OBSERVE_GAP_NAPTIMES 3

static bool ig_observed_reason(IgReason reason);
static bool ig_wakeups(int pid, uint64 *wakeups);

/*
 * idle_guard_observe_sessions
 *		Time each observed silence of the sweep from its first observation,
 *		and forget the backends that are no longer silent.
 *
 * Sets silent_since of each such session, and facts.observed of those
 * that must be watched continuously (all but prepared transactions).  Reads
 * /proc before taking the lock, so the lock is held for memory work only.
 */
void
idle_guard_observe_sessions(IgSweep *sweep)
{
	IgShared   *sh = idle_guard_shared;
	bool	   *seen;
	uint64	   *wakeups;
	bool	   *wakeups_known;
	int			nobserved = 0;
	int			ncandidates = 0;
	int			max_gap_ms;
	int			nentries;
	int			i;

	for (i = 0; i < sweep->nsessions; i++)
		if (ig_observed_reason(sweep->sessions[i].reason))
			ncandidates++;

	/* nothing to observe and nothing to forget: no lock */
	LWLockAcquire(sh->lock, LW_SHARED);
	nobserved = sh->nobserved;
	LWLockRelease(sh->lock);
	if (ncandidates == 0 && nobserved == 0)
		return;

	wakeups = (uint64 *) palloc0(sizeof(uint64) * Max(sweep->nsessions, 1));
	wakeups_known = (bool *) palloc0(sizeof(bool) * Max(sweep->nsessions, 1));
	for (i = 0; i < sweep->nsessions; i++)
	{
		IgSession  *s = &sweep->sessions[i];

		if (idle_guard_reason(s->reason)->timing == IG_TIMED_BY_WAKEUPS)
			wakeups_known[i] = ig_wakeups(s->key.pid, &wakeups[i]);
	}

	max_gap_ms = IG_OBSERVE_GAP_NAPTIMES * idle_guard_naptime;
	nentries = sh->nslots + max_prepared_xacts;
	seen = (bool *) palloc0(sizeof(bool) * nentries);

	LWLockAcquire(sh->lock, LW_EXCLUSIVE);
	for (i = 0; i < sweep->nsessions; i++)
	{
		IgSession  *s = &sweep->sessions[i];
		IgTiming	timing = idle_guard_reason(s->reason)->timing;

		if (!ig_observed_reason(s->reason) || s->procno >= nentries)
			continue;

		/*
		 * What cannot make progress (a prepared transaction), once seen, has
		 * been silent since, however long ago that was.  Anything else must
		 * be watched continuously.
		 */
		s->facts.silent_since = idle_guard_observe(&sh->observations[s->procno],
												   &s->key, s->reason,
												   wakeups_known[i], wakeups[i],
												   sweep->now,
												   timing == IG_TIMED_ONCE ?
												   0 : max_gap_ms);
		s->facts.observed = (timing != IG_TIMED_ONCE);
		seen[s->procno] = true;
	}
	nobserved = 0;
	for (i = 0; i < nentries; i++)
	{
		IgObservation *obs = &sh->observations[i];

		if (!seen[i] && obs->first_seen != 0)
			memset(obs, 0, sizeof(IgObservation));
		if (obs->first_seen != 0)
			nobserved++;
	}
	sh->nobserved = nobserved;
	LWLockRelease(sh->lock);

	pfree(seen);
	pfree(wakeups);
	pfree(wakeups_known);
}

/* Is a silence of this kind timed by observation? */
static bool
ig_observed_reason(IgReason reason)
{
	return idle_guard_reason(reason)->timing != IG_TIMED_BY_STATE;
}

/*
 * Read how many times process pid has gone to sleep of its own accord
 * (field "voluntary_ctxt_switches" of /proc/<pid>/status, Linux only).
 * Returns false where that file is missing or has no such field; the
 * caller then relies on continuous observation.
 */
static bool
ig_wakeups(int pid, uint64 *wakeups)
{
	char		path[64];
	char		line[128];
	FILE	   *file;
	bool		found = false;

	snprintf(path, sizeof(path), "/proc/%d/status", pid);
	file = AllocateFile(path, "r");
	if (file == NULL)
		return false;
	while (fgets(line, sizeof(line), file) != NULL)
	{
		unsigned long long value;

		if (sscanf(line, "voluntary_ctxt_switches: %llu", &value) == 1)
		{
			*wakeups = (uint64) value;
			found = true;
			break;
		}
	}
	FreeFile(file);
	return found;
}
