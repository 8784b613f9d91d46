/*-------------------------------------------------------------------------
 *
 * session_policy.c
 *		Each session's own policy: the values of idle_guard.action and of
 *		the per-session rules' timeouts (rules.h: blocking_timeout,
 *		idle_timeout) in force in that backend, and where they came from,
 *		published into a per-backend slot in shared memory so that the
 *		worker can judge each session by its own values.
 *
 * These settings are PGC_SUSET: postgresql.conf gives the cluster-wide
 * default, and superusers (or roles granted SET on the parameter) may set
 * other values per role, per database, per role in a database, or for a
 * session or a transaction.  Ordinary clients cannot change them.
 *
 * Where a value came from.  A check hook knows the GucSource of the value
 * it validates; it stores it as the value's "extra", which the GUC
 * machinery hands to the assign hook with the value and keeps alongside
 * the value on its stack.  So when SET LOCAL is rolled back or RESET, the
 * assign hook receives the restored value together with the source it had.
 *
 * Publishing.  Every assign hook updates this backend's local copy of all
 * these values and, in a client backend, writes the copy into the slot of
 * its PGPROC, stamped with its pid and process start.  A slot whose stamp
 * does not match the session being judged belongs to a backend that exited
 * (its PGPROC reused): it is ignored and the defaults apply.  Writers and
 * readers use a change counter, as backend_status.c does: the writer makes
 * it odd, writes, makes it even; a reader retries while it is odd or moved.
 *
 * Defaults.  A value whose source is postgresql.conf (or the built-in
 * default, the command line, the environment) is not taken from the slot:
 * an idle backend applies a reload only when its client speaks again, so
 * its copy may be stale.  The worker's own values are the defaults; it
 * publishes them (IgShared.defaults) for idle_guard_report().
 *
 * Copyright (c) 2026, idle_guard developers
 *
 * IDENTIFICATION
 *	  src/session_policy.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "port/atomics.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "utils/guc.h"

#include "compat.h"
#include "settings.h"
#include "shared.h"

/* The extra of each per-session setting: where its value came from */
typedef struct IgSourceExtra
{
	IgPolicySource source;
} IgSourceExtra;

/* This backend's current values and their sources (local copy) */
static IgSessionPolicy ig_local = {
	.action = IG_DEFAULT_ACTION,
	.action_source = IG_SOURCE_DEFAULT,
	.timeout_ms = {
#define IG_RULE(symbol, name, setting, field, default_ms, ...) \
		[symbol] = default_ms,
#include "rules.h"
#undef IG_RULE
	},
	/* timeout_source: all IG_SOURCE_DEFAULT (0) */
};

static void ig_publish(void);

/*
 * Map a GUC source to the policy source shown by idle_guard_report().
 * Everything that every backend shares (built-in default, postgresql.conf,
 * command line) is "default"; ALTER ROLE ALL SET counts as a role setting.
 */
static IgPolicySource
ig_policy_source(GucSource source)
{
	switch (source)
	{
		case PGC_S_DATABASE:
			return IG_SOURCE_DATABASE;
		case PGC_S_GLOBAL:
		case PGC_S_USER:
		case PGC_S_DATABASE_USER:
			return IG_SOURCE_ROLE;
		case PGC_S_CLIENT:
		case PGC_S_INTERACTIVE:
		case PGC_S_TEST:
		case PGC_S_SESSION:
			return IG_SOURCE_SESSION;
		default:
			return IG_SOURCE_DEFAULT;
	}
}

/*
 * idle_guard_check_policy_source
 *		Check hook shared by the per-session settings: accept the
 *		value (its range is checked by the GUC machinery) and remember its
 *		source as the extra.
 */
bool
idle_guard_check_policy_source(GucSource source, void **extra)
{
	IgSourceExtra *e = (IgSourceExtra *) ig_guc_malloc(sizeof(IgSourceExtra));

	if (e == NULL)
	{
		GUC_check_errcode(ERRCODE_OUT_OF_MEMORY);
		GUC_check_errmsg("out of memory");
		return false;
	}
	e->source = ig_policy_source(source);
	*extra = e;
	return true;
}

/* Where the extra of a per-session setting says its value came from */
static IgPolicySource
ig_extra_source(void *extra)
{
	return extra ? ((IgSourceExtra *) extra)->source : IG_SOURCE_DEFAULT;
}

/*
 * idle_guard_assign_policy_action
 *		Assign hook of idle_guard.action: record the new value and its
 *		source locally and publish them.
 */
void
idle_guard_assign_policy_action(int value, void *extra)
{
	ig_local.action = value;
	ig_local.action_source = ig_extra_source(extra);
	ig_publish();
}

/*
 * idle_guard_assign_policy_timeout
 *		The same for the setting of a per-session rule.
 */
void
idle_guard_assign_policy_timeout(IgRule rule, int value, void *extra)
{
	Assert(rule >= IG_RULE_FIRST && rule < IG_RULE_END);
	ig_local.timeout_ms[rule] = value;
	ig_local.timeout_source[rule] = ig_extra_source(extra);
	ig_publish();
}

/*
 * The most specific source among a published policy's values: session
 * over role over database over default.
 */
static IgPolicySource
ig_most_specific_source(const IgSessionPolicy *sp)
{
	IgPolicySource source = sp->action_source;
	IgRule		r;

	for (r = IG_RULE_FIRST; r < IG_RULE_END; r++)
		source = Max(source, sp->timeout_source[r]);
	return source;
}

/*
 * Write the local copy into this backend's slot.  Only client backends
 * publish: the postmaster, the worker and other processes run the assign
 * hooks too (at startup and reload) but are never judged.
 */
static void
ig_publish(void)
{
	IgSlot	   *slot;
	int			procno;
	bool		wake;

	if (idle_guard_shared == NULL || MyProc == NULL ||
		MyBackendType != B_BACKEND)
		return;
	procno = (int) (MyProc - ProcGlobal->allProcs);
	if (procno < 0 || procno >= idle_guard_shared->nslots)
		return;
	slot = &idle_guard_shared->slots[procno];

	/* A non-default value may shorten a deadline the worker sleeps toward */
	wake = ig_most_specific_source(&ig_local) != IG_SOURCE_DEFAULT;

	pg_atomic_add_fetch_u32(&slot->changecount, 1);
	pg_write_barrier();
	slot->pid = MyProcPid;
	slot->proc_start = MyStartTimestamp;
	slot->policy = ig_local;
	pg_write_barrier();
	pg_atomic_add_fetch_u32(&slot->changecount, 1);

	if (wake)
		idle_guard_wake_worker();
}

/*
 * Copy the slot of PGPROC index procno consistently (change counter), with
 * the pid and process start of the backend that wrote it.  Returns false
 * if a writer kept the slot busy; the caller then uses the defaults.
 */
static bool
ig_copy_slot(int procno, int *pid, TimestampTz *proc_start,
			 IgSessionPolicy *out)
{
	IgSlot	   *slot = &idle_guard_shared->slots[procno];
	int			tries;

	for (tries = 0; tries < 1000; tries++)
	{
		uint32		before = pg_atomic_read_u32(&slot->changecount);

		if (before & 1)
		{
			pg_spin_delay();
			continue;
		}
		pg_read_barrier();
		*pid = slot->pid;
		*proc_start = slot->proc_start;
		*out = slot->policy;
		pg_read_barrier();
		if (pg_atomic_read_u32(&slot->changecount) == before)
			return true;
	}
	return false;
}

/*
 * idle_guard_effective_policy
 *		The policy that applies to one session: each value from the session's
 *		slot where it was set for the role, database or session, otherwise
 *		the cluster-wide default.  Also says where the most specific value
 *		came from (session over role over database over default).
 */
void
idle_guard_effective_policy(const IgPolicy *defaults, int procno, int pid,
							TimestampTz proc_start, IgPolicy *policy,
							IgPolicySource *source)
{
	IgSessionPolicy sp;
	IgRule		r;
	int			slot_pid;
	TimestampTz slot_start;

	*policy = *defaults;
	*source = IG_SOURCE_DEFAULT;

	/* a slot written by another backend (one that exited) does not count */
	if (procno < 0 || procno >= idle_guard_shared->nslots ||
		!ig_copy_slot(procno, &slot_pid, &slot_start, &sp) ||
		slot_pid != pid || slot_start != proc_start)
		return;

	if (sp.action_source != IG_SOURCE_DEFAULT)
		policy->action = (IgActionSetting) sp.action;
	for (r = IG_RULE_FIRST; r < IG_RULE_END; r++)
		if (sp.timeout_source[r] != IG_SOURCE_DEFAULT)
			idle_guard_set_rule_timeout(policy, r, sp.timeout_ms[r]);
	*source = ig_most_specific_source(&sp);
}

/*
 * idle_guard_shortest_session_timeout
 *		The shortest enabled timeout set (not by default) in any live client
 *		backend, or 0 if none.  A session that is not silent now may go
 *		silent after the sweep: its deadline cannot come sooner than this.
 */
int
idle_guard_shortest_session_timeout(void)
{
	int			shortest = 0;
	IgRule		r;
	int			i;

	for (i = 0; i < idle_guard_shared->nslots; i++)
	{
		int			pid = ProcGlobal->allProcs[i].pid;
		IgSessionPolicy sp;
		int			slot_pid;
		TimestampTz slot_start;

		/*
		 * PGPROC has no process start: match the writer on pid only.  A stale
		 * match can only make the worker look sooner than needed.
		 */
		if (pid == 0 || !ig_copy_slot(i, &slot_pid, &slot_start, &sp) ||
			slot_pid != pid)
			continue;
		for (r = IG_RULE_FIRST; r < IG_RULE_END; r++)
			if (sp.timeout_source[r] != IG_SOURCE_DEFAULT)
				shortest = idle_guard_shorter_timeout(shortest,
													  sp.timeout_ms[r]);
	}
	return shortest;
}
