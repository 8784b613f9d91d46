/*-------------------------------------------------------------------------
 *
 * worker.c
 *		The idle_guard background worker: sweep, act on what is due, and
 *		sleep until the earliest deadline it knows.
 *
 * Timing.  After a sweep at time T the worker sleeps until the earliest of:
 *	- each silent session's next deadline (or the moment its blocking
 *	  deadline passes, after which a new waiter would make it due);
 *	- T + the shortest enabled timeout, unreachable_timeout included: a
 *	  session that turns silent after T cannot have an earlier deadline
 *	  than that (an unreachable deadline is never earlier than the start
 *	  of the silence plus unreachable_timeout);
 *	- T + naptime, but only while some session is past its blocking
 *	  deadline without anyone waiting yet (waiters arrive without notice),
 *	  its silence is known only by observation, or, with the unreachable
 *	  rule on, its client is on TCP (a link fails without notice).
 * So deadlines are met to the millisecond without polling, and a reload
 * (SIGHUP sets the latch) applies new values at once.  A backend that sets
 * its own policy (SET, or role and database settings at connection) sets
 * the latch too, since its values may bring a deadline closer.
 *
 * Episodes.  The worker remembers, per PGPROC, the silent episode it last
 * acted on (IgEpisodeKey) and what it did, so it writes one LOG line per
 * episode, not one per sweep, and escalates only from report to terminate
 * (after a reload that changes the action).  The memory is in shared
 * memory, so a restarted worker does not act on the same episode again.
 * A session that has had all its policy allows is no longer waited for.
 *
 * Memory.  Each sweep allocates in a context reset at its end.
 *
 * Copyright (c) 2026, idle_guard developers
 *
 * IDENTIFICATION
 *	  src/worker.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "action.h"
#include "compat.h"
#include "idle_guard.h"
#include "pipeline.h"
#include "settings.h"
#include "shared.h"

static MemoryContext ig_sweep_context = NULL;

static TimestampTz ig_sweep(void);
static IgEpisodeMemory *ig_episode_for(const IgSession *s);
static void ig_publish_sweep(TimestampTz start, int guarded);
static void ig_worker_detach(int code, Datum arg);
static void ig_publish_policy(void);
static void ig_log_start(void);

/*
 * idle_guard_worker_main
 *		Entry point of the worker.
 */
void
idle_guard_worker_main(Datum main_arg)
{
	TimestampTz next_sweep = 0;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	/* Connect to no database: pg_authid and pg_database are shared */
	BackgroundWorkerInitializeConnection(NULL, NULL, 0);
	pgstat_report_appname("idle_guard worker");

	ig_sweep_context = AllocSetContextCreate(TopMemoryContext,
											 "idle_guard sweep",
											 ALLOCSET_DEFAULT_SIZES);

	LWLockAcquire(idle_guard_shared->lock, LW_EXCLUSIVE);
	idle_guard_shared->worker_pid = MyProcPid;
	idle_guard_shared->worker_started_at = GetCurrentTimestamp();
	idle_guard_shared->worker_latch = MyLatch;
	LWLockRelease(idle_guard_shared->lock);
	before_shmem_exit(ig_worker_detach, (Datum) 0);
	ig_publish_policy();

	ig_log_start();

	for (;;)
	{
		long		sleep_ms;

		CHECK_FOR_INTERRUPTS();

		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			ig_publish_policy();
			next_sweep = 0;		/* judge again with the new values now */
		}

		/* a backend published a policy that may bring a deadline closer */
		if (pg_atomic_exchange_u32(&idle_guard_shared->wake_pending, 0) != 0)
			next_sweep = 0;

		if (GetCurrentTimestamp() >= next_sweep)
			next_sweep = ig_sweep();

		/* rounded up, so we never wake before the deadline; 0 if past */
		sleep_ms = TimestampDifferenceMilliseconds(GetCurrentTimestamp(),
												   next_sweep);

		if (sleep_ms != 0)
			(void) WaitLatch(MyLatch,
							 WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 sleep_ms, ig_worker_wait_event());
		ResetLatch(MyLatch);
	}
}

/*
 * One sweep: run the pipeline, act on every session that is due and not
 * yet acted on in this episode, and return when to sweep next.
 */
static TimestampTz
ig_sweep(void)
{
	TimestampTz start = GetCurrentTimestamp();
	TimestampTz next = DT_NOEND;
	MemoryContext oldcontext;
	IgPolicy	policy;
	IgSweep		sweep;
	int			guarded = 0;
	int			shortest;
	IgRule		r;
	int			i;

	idle_guard_current_policy(&policy);

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	oldcontext = MemoryContextSwitchTo(ig_sweep_context);

	idle_guard_collect(&sweep, &policy, false);
	idle_guard_worker_gids(&sweep);

	/*
	 * A session silent from now on cannot be due before the shortest timeout
	 * in force, by default or in any session: every rule's clock starts at
	 * the start of the silence or later (rules.h), and prepared_timeout
	 * stands in for idle_timeout.
	 */
	shortest = idle_guard_shorter_timeout(policy.prepared_timeout_ms,
										  idle_guard_shortest_session_timeout());
	for (r = IG_RULE_FIRST; r < IG_RULE_END; r++)
		shortest = idle_guard_shorter_timeout(shortest,
											  idle_guard_rule_timeout(&policy, r));
	if (shortest > 0)
		next = TimestampTzPlusMilliseconds(sweep.now, shortest);

	for (i = 0; i < sweep.nsessions; i++)
	{
		IgSession  *s = &sweep.sessions[i];
		IgDecision *d = &s->decision;
		IgEpisodeMemory *ep;

		if (!s->facts.holds_locks)
			continue;
		guarded++;
		ep = ig_episode_for(s);

		if (d->due && (d->action == IG_VERDICT_REPORT ||
					   d->action == IG_VERDICT_TERMINATE) &&
			ep->done < d->action)
		{
			if (idle_guard_act(s) == IG_ACT_DONE)
				ep->done = d->action;
			else
				next = Min(next, TimestampTzPlusMilliseconds(sweep.now,
															 idle_guard_naptime));
			continue;
		}

		/* Done all its policy allows in this episode: nothing to wait for */
		if (ep->done != IG_VERDICT_NONE &&
			ep->done >= idle_guard_policy_verdict(s->policy.action))
			continue;

		if (d->wake_at != 0 && d->wake_at < next)
			next = d->wake_at;
		if (d->needs_poll)
			next = Min(next, TimestampTzPlusMilliseconds(sweep.now,
														 idle_guard_naptime));
	}

	MemoryContextSwitchTo(oldcontext);
	CommitTransactionCommand();
	MemoryContextReset(ig_sweep_context);

	ig_publish_sweep(start, guarded);
	return next;
}

/*
 * Log the worker's start, with the action, each rule's timeout and the
 * naptime it starts with.
 */
static void
ig_log_start(void)
{
	StringInfoData detail;
	IgRule		r;

	initStringInfo(&detail);
	appendStringInfo(&detail, "action=%s",
					 GetConfigOption("idle_guard.action", false, false));
	for (r = IG_RULE_FIRST; r < IG_RULE_END; r++)
		appendStringInfo(&detail, " %s=%dms", idle_guard_rule(r)->setting,
						 idle_guard_rule_timeouts[r]);
	appendStringInfo(&detail, " naptime=%dms", idle_guard_naptime);
	ereport(LOG,
			(errmsg("idle_guard worker started"),
			 errdetail_internal("%s", detail.data)));
	pfree(detail.data);
}

/*
 * Publish this worker's values of the policy settings, which are the
 * cluster-wide defaults, for idle_guard_report().
 */
static void
ig_publish_policy(void)
{
	IgPolicy	policy;

	idle_guard_current_policy(&policy);
	idle_guard_publish_defaults(&policy);
}

/*
 * The worker's memory of a session's current episode, kept in shared
 * memory by PGPROC index so that a restarted worker does not act twice on
 * one episode; reset when that PGPROC holds a new episode (a new silence,
 * transaction or backend).  Only the worker reads or writes it.
 */
static IgEpisodeMemory *
ig_episode_for(const IgSession *s)
{
	IgEpisodeMemory *ep = &idle_guard_shared->episodes[s->procno];

	if (!idle_guard_same_episode(&ep->key, &s->key))
	{
		ep->key = s->key;
		ep->done = IG_VERDICT_NONE;
	}
	return ep;
}

/* Publish the sweep's counters for idle_guard_stats() */
static void
ig_publish_sweep(TimestampTz start, int guarded)
{
	TimestampTz end = GetCurrentTimestamp();

	/* last_sweep_at: when the facts were read, i.e. the sweep's start */
	LWLockAcquire(idle_guard_shared->lock, LW_EXCLUSIVE);
	idle_guard_shared->sweeps++;
	idle_guard_shared->last_sweep_at = start;
	idle_guard_shared->last_sweep_ms = (double) (end - start) / 1000.0;
	idle_guard_shared->guarded_now = guarded;
	LWLockRelease(idle_guard_shared->lock);
}

/* On exit, say in shared memory that no worker runs */
static void
ig_worker_detach(int code, Datum arg)
{
	LWLockAcquire(idle_guard_shared->lock, LW_EXCLUSIVE);
	if (idle_guard_shared->worker_pid == MyProcPid)
	{
		idle_guard_shared->worker_pid = 0;
		idle_guard_shared->worker_latch = NULL;
	}
	LWLockRelease(idle_guard_shared->lock);
}
