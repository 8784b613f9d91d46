/*-------------------------------------------------------------------------
 *
 * pipeline.c
 *		One pass of idle_guard's pipeline, the same for the worker and for
 *		idle_guard_report(): snapshot the silent sessions and prepared
 *		transactions, time the silences that have no timestamp, find their
 *		locks and waiters, settle exemptions and decide each one.
 *
 * Because both callers run exactly this code with the same policy (the
 * defaults the worker publishes, and each session's own values), what the
 * report says idle_guard would do is what the worker does.  The worker
 * only adds the last step, the action.
 *
 * Each session is judged by its own policy (session_policy.c): its role's,
 * database's or session's values where set, else the cluster-wide
 * defaults passed in, adjusted for why it is silent (a prepared
 * transaction is only ever reported, and so is a session lock unless
 * idle_guard.session_locks is on).  The exemption lists apply whatever
 * that policy says.
 *
 * Must run inside a transaction: exemption by role may need the role's
 * name, read without waiting (names.c).
 *
 * Copyright (c) 2026, idle_guard developers
 *
 * IDENTIFICATION
 *	  src/pipeline.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/twophase.h"
#include "miscadmin.h"
#include "utils/timestamp.h"

#include "locks.h"
#include "names.h"
#include "pipeline.h"
#include "settings.h"
#include "snapshot.h"

static void ig_decide_all(IgSweep *sweep);

/*
 * idle_guard_collect
 *		Fill sweep with every silent client session and its verdict.
 *
 * The lock-table pass (every partition lock held shared, briefly) runs
 * only when its answer is needed: when someone waits on a lock (to find
 * who blocks whom), when a session's holding cannot be settled from its
 * xid and fast-path slots, when a session is due (so the LOG line gives an
 * exact lock count), or when the caller asks for exact counts (the
 * report).  With no silent session it takes no lock at all.
 */
void
idle_guard_collect(IgSweep *sweep, const IgPolicy *defaults, bool exact)
{
	bool		need_pass = exact;
	int			i;

	memset(sweep, 0, sizeof(IgSweep));
	sweep->now = GetCurrentTimestamp();

	/* idle sessions matter only to someone waiting on a lock */
	sweep->nwaiters = idle_guard_count_lock_waiters();
	idle_guard_snapshot(sweep, sweep->nwaiters > 0);
	idle_guard_replay_state(&sweep->replay);
	idle_guard_add_prepared(sweep, max_prepared_xacts);
	idle_guard_observe_sessions(sweep);
	if (sweep->nsessions == 0)
		return;
	idle_guard_client_links(sweep);

	idle_guard_fastpath_locks(sweep);
	if (sweep->nwaiters > 0)
		need_pass = true;

	for (i = 0; i < sweep->nsessions; i++)
	{
		IgSession  *s = &sweep->sessions[i];
		IgPolicy	own;

		s->replay = &sweep->replay;
		s->facts.exempt = idle_guard_role_oid_exempt(s->userid) ||
			idle_guard_application_exempt(s->appname);
		idle_guard_effective_policy(defaults, s->procno, s->key.pid,
									s->key.proc_start, &own,
									&s->policy_source);
		idle_guard_policy_for_reason(&own, s->reason, &s->policy);
		if (!s->holds_known)
			need_pass = true;
	}

	/* Preliminary verdicts, assuming nobody waits (true if nwaiters = 0) */
	if (!need_pass)
	{
		ig_decide_all(sweep);
		for (i = 0; i < sweep->nsessions && !need_pass; i++)
			if (sweep->sessions[i].decision.due)
				need_pass = true;
	}

	if (need_pass)
	{
		idle_guard_lock_table_pass(sweep);
		ig_decide_all(sweep);
	}
}

/*
 * Fill each session's facts from what the steps found, and decide it by
 * its own policy.  A session whose reason needs a waiter (idle between
 * transactions) counts only while someone waits on it: holding a
 * session-level lock nobody wants is what such locks are for.
 */
static void
ig_decide_all(IgSweep *sweep)
{
	int			i;

	for (i = 0; i < sweep->nsessions; i++)
	{
		IgSession  *s = &sweep->sessions[i];

		if (idle_guard_reason(s->reason)->needs_waiter)
			s->facts.holds_locks = s->facts.blocked_total > 0;
		s->facts.unreachable_since = sweep->now -
			(TimestampTz) s->tcp.last_ack_recv_ms * 1000;
		idle_guard_decide(&s->policy, &s->facts, sweep->now, &s->decision);
	}
}
