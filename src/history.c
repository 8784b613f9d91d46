/*-------------------------------------------------------------------------
 *
 * history.c
 *		The ring of past actions shown by idle_guard_history(), and the
 *		counters of idle_guard_stats() that go with it.
 *
 * Copyright (c) 2026, idle_guard developers
 *
 * IDENTIFICATION
 *	  src/history.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "storage/lwlock.h"
#include "utils/timestamp.h"

#include "shared.h"

/*
 * idle_guard_outcome_name
 *		The word idle_guard_history().action shows.
 */
const char *
idle_guard_outcome_name(IgOutcome action)
{
	switch (action)
	{
		case IG_OUTCOME_TERMINATED:
			return "terminated";
		case IG_OUTCOME_SKIPPED:
			return "skipped";
		case IG_OUTCOME_REPORTED:
			break;
	}
	return "reported";
}

/*
 * idle_guard_history_add
 *		Count one action and append it to the history ring, overwriting the
 *		oldest entry once the ring is full.
 *
 * The names are passed in resolved, since the caller has them for its LOG
 * line already; either may be NULL or empty when it could not be read
 * without waiting, and idle_guard_history() tries again from the OIDs.
 */
void
idle_guard_history_add(const IgSession *s, const char *usename,
					   const char *datname, const char *client, TimestampTz at,
					   IgOutcome action, const char *detail,
					   const IgRecord *record)
{
	IgShared   *sh = idle_guard_shared;
	IgHistoryEntry *e;

	LWLockAcquire(sh->lock, LW_EXCLUSIVE);

	if (action == IG_OUTCOME_TERMINATED)
		sh->terminated++;
	else if (action == IG_OUTCOME_SKIPPED)
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
		e->silent_for_us = at - s->facts.silent_since;
		e->locks_held = s->locks_held;
		e->blocked_total = s->facts.blocked_total;
		e->rule = s->decision.rule;
		e->action = action;
		e->dbid = s->dbid;
		strlcpy(e->detail, detail ? detail : "", sizeof(e->detail));
		e->reason = s->reason;
		strlcpy(e->gid, s->gid, GIDSIZE);
		if (s->gid_known)
			e->flags |= IG_HIST_GID_KNOWN;
		if (record)
			e->record = *record;
		sh->history_next++;
	}

	LWLockRelease(sh->lock);
}

/*
 * idle_guard_history_reset
 *		Clear the history and the counters, and remember when.
 */
void
idle_guard_history_reset(void)
{
	IgShared   *sh = idle_guard_shared;

	LWLockAcquire(sh->lock, LW_EXCLUSIVE);
	sh->history_next = 0;
	sh->sweeps = 0;
	sh->reported = 0;
	sh->terminated = 0;
	sh->skipped = 0;
	sh->stats_reset = GetCurrentTimestamp();
	LWLockRelease(sh->lock);
}
