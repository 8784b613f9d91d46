/*-------------------------------------------------------------------------
 *
 * report.c
 *		The SQL-callable functions: idle_guard_report(), what idle_guard
 *		sees and would do now; idle_guard_history(), what it did; and
 *		idle_guard_stats(), how its worker is doing.
 *
 * Visibility: a caller that has neither the privileges of
 * pg_read_all_stats nor those of a session's role sees that session
 * without its client address and application name, and the postmortem
 * records without its or its waiters' queries and application names.
 * (pg_stat_activity shows the application name to everyone but hides the
 * state and timestamps; here those are the point of the report.)
 *
 * Copyright (c) 2026, idle_guard developers
 *
 * IDENTIFICATION
 *	  src/report.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_type.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/lock.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/inet.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"
#include "utils/wait_event.h"

#include "action.h"
#include "compat.h"
#include "names.h"
#include "pipeline.h"
#include "shared.h"
#include "snapshot.h"

PG_FUNCTION_INFO_V1(idle_guard_report);
PG_FUNCTION_INFO_V1(idle_guard_report_1_1);
PG_FUNCTION_INFO_V1(idle_guard_report_1_3);
PG_FUNCTION_INFO_V1(idle_guard_report_1_4);
PG_FUNCTION_INFO_V1(idle_guard_report_1_5);
PG_FUNCTION_INFO_V1(idle_guard_history);
PG_FUNCTION_INFO_V1(idle_guard_history_1_2);
PG_FUNCTION_INFO_V1(idle_guard_history_1_3);
PG_FUNCTION_INFO_V1(idle_guard_history_1_5);
PG_FUNCTION_INFO_V1(idle_guard_stats);
PG_FUNCTION_INFO_V1(idle_guard_stats_1_2);
PG_FUNCTION_INFO_V1(idle_guard_stats_1_4);
PG_FUNCTION_INFO_V1(idle_guard_reset);

/*
 * Columns of idle_guard_report() per SQL API version: each version's
 * script points the function at its own C entry, so a server running a
 * newer library with an older extension version still returns the
 * columns that version declares.
 */
#define IDLE_GUARD_REPORT_COLS_V1_0 20
#define IDLE_GUARD_REPORT_COLS_V1_1 23
#define IDLE_GUARD_REPORT_COLS_V1_3 25
#define IDLE_GUARD_REPORT_COLS_V1_4 29
#define IDLE_GUARD_REPORT_COLS_V1_5 30
#define IDLE_GUARD_REPORT_COLS		IDLE_GUARD_REPORT_COLS_V1_5
#define IDLE_GUARD_HISTORY_COLS_V1_0 12
#define IDLE_GUARD_HISTORY_COLS_V1_2 13
#define IDLE_GUARD_HISTORY_COLS_V1_3 15
#define IDLE_GUARD_HISTORY_COLS_V1_5 16
#define IDLE_GUARD_HISTORY_COLS		IDLE_GUARD_HISTORY_COLS_V1_5
#define IDLE_GUARD_STATS_COLS_V1_0	9
#define IDLE_GUARD_STATS_COLS_V1_2	10
#define IDLE_GUARD_STATS_COLS_V1_4	15
#define IDLE_GUARD_STATS_COLS		IDLE_GUARD_STATS_COLS_V1_4

static void ig_report(FunctionCallInfo fcinfo, int ncols);
static void ig_history(FunctionCallInfo fcinfo, int ncols);
static Datum ig_stats(FunctionCallInfo fcinfo, int ncols);
static void ig_check_columns(TupleDesc tupdesc, int ncols);
static bool ig_can_see(Oid userid);
static Datum ig_name_datum(const char *name);
static Datum ig_interval_datum(int64 usecs);
static Datum ig_inet_datum(const char *addr);
static void ig_put_name(Datum *values, bool *nulls, int *j,
						const char *known, Oid oid,
						bool (*resolve) (Oid oid, char *buf));
static void ig_put_gid_reason(Datum *values, bool *nulls, int *j,
							  const char *gid, IgReason reason);
static void ig_put_replay_relation(Datum *values, bool *nulls, int *j,
								   const IgReplay *replay);
static void ig_put_link(Datum *values, bool *nulls, int *j, IgLink link);

/*
 * idle_guard_report
 *		One row per silent client session or prepared transaction that
 *		holds locks, with what idle_guard knows of it and what it would do
 *		(API 1.0).
 */
Datum
idle_guard_report(PG_FUNCTION_ARGS)
{
	ig_report(fcinfo, IDLE_GUARD_REPORT_COLS_V1_0);
	return (Datum) 0;
}

/*
 * idle_guard_report_1_1
 *		The same, plus the policy that applies to each session (API 1.1).
 */
Datum
idle_guard_report_1_1(PG_FUNCTION_ARGS)
{
	ig_report(fcinfo, IDLE_GUARD_REPORT_COLS_V1_1);
	return (Datum) 0;
}

/*
 * idle_guard_report_1_3
 *		The same, plus each session's prepared-transaction gid and the
 *		reason it counts as silent (API 1.3).
 */
Datum
idle_guard_report_1_3(PG_FUNCTION_ARGS)
{
	ig_report(fcinfo, IDLE_GUARD_REPORT_COLS_V1_3);
	return (Datum) 0;
}

/*
 * idle_guard_report_1_4
 *		The same, plus whether WAL replay waits on each session and for
 *		which relation, the age of its xmin, and whether a worker carries
 *		out the action (API 1.4).
 */
Datum
idle_guard_report_1_4(PG_FUNCTION_ARGS)
{
	ig_report(fcinfo, IDLE_GUARD_REPORT_COLS_V1_4);
	return (Datum) 0;
}

/*
 * idle_guard_report_1_5
 *		The same, plus what the kernel says of each session's client
 *		(API 1.5).
 */
Datum
idle_guard_report_1_5(PG_FUNCTION_ARGS)
{
	ig_report(fcinfo, IDLE_GUARD_REPORT_COLS_V1_5);
	return (Datum) 0;
}

/*
 * Build the report's rows, with the first ncols columns.  The cluster-wide
 * defaults are the worker's (published in shared memory), not the
 * caller's: a superuser's own SET must not change what the report says.
 *
 * "enforced" says whether a worker runs on this server to carry out the
 * action column at the deadline: without one (the worker down, or between
 * restarts) the report still says what the policy decides, and that
 * nothing will do it.
 */
static void
ig_report(FunctionCallInfo fcinfo, int ncols)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	IgPolicy	defaults;
	IgSweep		sweep;
	bool		enforced;
	int			i;

	idle_guard_require_loaded();
	ig_init_srf(fcinfo);
	ig_check_columns(rsinfo->setDesc, ncols);

	LWLockAcquire(idle_guard_shared->lock, LW_SHARED);
	defaults = idle_guard_shared->defaults;
	enforced = idle_guard_shared->worker_pid != 0;
	LWLockRelease(idle_guard_shared->lock);
	idle_guard_collect(&sweep, &defaults, true);
	idle_guard_prepared_gids(&sweep);

	for (i = 0; i < sweep.nsessions; i++)
	{
		IgSession  *s = &sweep.sessions[i];
		Datum		values[IDLE_GUARD_REPORT_COLS] = {0};
		bool		nulls[IDLE_GUARD_REPORT_COLS] = {0};
		bool		visible = ig_can_see(s->userid);
		char		addr[IG_ADDR_LEN];
		const char *name;
		const char *rule;
		int			j = 0;

		if (!s->facts.holds_locks)
			continue;

		/* a prepared transaction has no backend */
		if (s->key.pid != 0)
			values[j++] = Int32GetDatum(s->key.pid);
		else
			nulls[j++] = true;

		ig_put_name(values, nulls, &j, "", s->userid, idle_guard_role_name);
		ig_put_name(values, nulls, &j, "", s->dbid, idle_guard_database_name);

		if (visible && s->reason != IG_REASON_PREPARED)
			values[j++] = CStringGetTextDatum(s->appname);
		else
			nulls[j++] = true;

		if (visible &&
			idle_guard_client_addr_text(&s->clientaddr, addr, sizeof(addr)))
			values[j++] = ig_inet_datum(addr);
		else
			nulls[j++] = true;

		values[j++] = CStringGetTextDatum(idle_guard_state_name(s));

		name = s->wait_event_info ? pgstat_get_wait_event(s->wait_event_info) : NULL;
		if (name)
			values[j++] = CStringGetTextDatum(name);
		else
			nulls[j++] = true;

		if (s->xact_start != 0)
			values[j++] = TimestampTzGetDatum(s->xact_start);
		else
			nulls[j++] = true;

		values[j++] = TimestampTzGetDatum(s->facts.silent_since);
		values[j++] = ig_interval_datum(sweep.now - s->facts.silent_since);
		values[j++] = Int32GetDatum(s->locks_held);

		if (s->strongest_mode != NoLock)
			values[j++] = CStringGetTextDatum(GetLockmodeName(DEFAULT_LOCKMETHOD,
															  s->strongest_mode));
		else
			nulls[j++] = true;

		values[j++] = Int32GetDatum(s->blocked_direct);
		values[j++] = Int32GetDatum(s->facts.blocked_total);
		{
			Datum	   *pids = (Datum *) palloc(sizeof(Datum) *
												Max(s->facts.blocked_total, 1));
			int			k;

			for (k = 0; k < s->facts.blocked_total; k++)
				pids[k] = Int32GetDatum(s->blocked_pids[k]);
			values[j++] = PointerGetDatum(construct_array(pids, s->facts.blocked_total,
														  INT4OID, sizeof(int32),
														  true, TYPALIGN_INT));
		}

		if (TransactionIdIsValid(s->xid))
			values[j++] = TransactionIdGetDatum(s->xid);
		else
			nulls[j++] = true;
		if (TransactionIdIsValid(s->xmin))
			values[j++] = TransactionIdGetDatum(s->xmin);
		else
			nulls[j++] = true;

		rule = idle_guard_rule_name(s->decision.rule);
		if (rule)
		{
			values[j++] = CStringGetTextDatum(rule);
			values[j++] = TimestampTzGetDatum(s->decision.deadline);
		}
		else
		{
			nulls[j++] = true;
			nulls[j++] = true;
		}

		values[j++] = CStringGetTextDatum(idle_guard_verdict_name(s->decision.action));
		Assert(j == IDLE_GUARD_REPORT_COLS_V1_0);

		if (ncols >= IDLE_GUARD_REPORT_COLS_V1_1)
		{
			values[j++] = ig_interval_datum(s->policy.blocking_timeout_ms *
											INT64CONST(1000));
			values[j++] = ig_interval_datum(s->policy.idle_timeout_ms *
											INT64CONST(1000));
			values[j++] = CStringGetTextDatum(idle_guard_policy_source_name(s->policy_source));
		}
		if (ncols >= IDLE_GUARD_REPORT_COLS_V1_3)
			ig_put_gid_reason(values, nulls, &j, s->gid_known ? s->gid : NULL,
							  s->reason);
		if (ncols >= IDLE_GUARD_REPORT_COLS_V1_4)
		{
			values[j++] = BoolGetDatum(s->blocks_replay);
			if (s->blocks_replay)
				ig_put_replay_relation(values, nulls, &j, &sweep.replay);
			else
				nulls[j++] = true;
			if (s->xmin_age >= 0)
				values[j++] = Int32GetDatum(s->xmin_age);
			else
				nulls[j++] = true;
			values[j++] = BoolGetDatum(enforced);
		}
		if (ncols >= IDLE_GUARD_REPORT_COLS_V1_5)
			ig_put_link(values, nulls, &j, s->facts.link);

		Assert(j == ncols);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
}

/*
 * idle_guard_history
 *		The actions kept in the ring, oldest first (API 1.0).
 */
Datum
idle_guard_history(PG_FUNCTION_ARGS)
{
	ig_history(fcinfo, IDLE_GUARD_HISTORY_COLS_V1_0);
	return (Datum) 0;
}

/*
 * idle_guard_history_1_2
 *		The same, with the postmortem record of each action (API 1.2).
 */
Datum
idle_guard_history_1_2(PG_FUNCTION_ARGS)
{
	ig_history(fcinfo, IDLE_GUARD_HISTORY_COLS_V1_2);
	return (Datum) 0;
}

/*
 * idle_guard_history_1_3
 *		The same, with the gid of a prepared transaction and why the
 *		session counted as silent (API 1.3).
 */
Datum
idle_guard_history_1_3(PG_FUNCTION_ARGS)
{
	ig_history(fcinfo, IDLE_GUARD_HISTORY_COLS_V1_3);
	return (Datum) 0;
}

/*
 * idle_guard_history_1_5
 *		The same, with the client link of each action (API 1.5).
 */
Datum
idle_guard_history_1_5(PG_FUNCTION_ARGS)
{
	ig_history(fcinfo, IDLE_GUARD_HISTORY_COLS_V1_5);
	return (Datum) 0;
}

/* Build the history's rows with the first ncols columns */
static void
ig_history(FunctionCallInfo fcinfo, int ncols)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	IgShared   *sh;
	IgHistoryEntry *copy;
	int64		first;
	int			n;
	int			i;

	idle_guard_require_loaded();
	ig_init_srf(fcinfo);
	ig_check_columns(rsinfo->setDesc, ncols);
	sh = idle_guard_shared;

	/* Copy out under the lock, build rows after releasing it */
	LWLockAcquire(sh->lock, LW_SHARED);
	n = (int) Min(sh->history_next, (int64) sh->history_size);
	first = sh->history_next - n;
	copy = (IgHistoryEntry *) palloc(sizeof(IgHistoryEntry) * Max(n, 1));
	for (i = 0; i < n; i++)
		copy[i] = sh->history[(first + i) % sh->history_size];
	LWLockRelease(sh->lock);

	for (i = 0; i < n; i++)
	{
		IgHistoryEntry *e = &copy[i];
		Datum		values[IDLE_GUARD_HISTORY_COLS] = {0};
		bool		nulls[IDLE_GUARD_HISTORY_COLS] = {0};
		bool		visible = ig_can_see(e->userid);
		const char *rule = idle_guard_rule_name(e->rule);
		int			j = 0;

		values[j++] = TimestampTzGetDatum(e->at);
		if (e->pid != 0)
			values[j++] = Int32GetDatum(e->pid);
		else
			nulls[j++] = true;	/* a prepared transaction */
		ig_put_name(values, nulls, &j, e->usename, e->userid,
					idle_guard_role_name);
		ig_put_name(values, nulls, &j, e->datname, e->dbid,
					idle_guard_database_name);
		if (visible && e->reason != IG_REASON_PREPARED)
			values[j++] = CStringGetTextDatum(e->appname);
		else
			nulls[j++] = true;
		if (visible && e->client_addr[0] != '\0')
			values[j++] = ig_inet_datum(e->client_addr);
		else
			nulls[j++] = true;
		values[j++] = ig_interval_datum(e->silent_for_us);
		values[j++] = Int32GetDatum(e->locks_held);
		values[j++] = Int32GetDatum(e->blocked_total);
		if (rule)
			values[j++] = CStringGetTextDatum(rule);
		else
			nulls[j++] = true;
		values[j++] = CStringGetTextDatum(idle_guard_outcome_name(e->action));
		if (e->detail[0] != '\0')
			values[j++] = CStringGetTextDatum(e->detail);
		else
			nulls[j++] = true;
		Assert(j == IDLE_GUARD_HISTORY_COLS_V1_0);

		if (ncols >= IDLE_GUARD_HISTORY_COLS_V1_2)
			values[j++] = idle_guard_record_jsonb(&e->record, e->userid,
												  ig_can_see);
		if (ncols >= IDLE_GUARD_HISTORY_COLS_V1_3)
			ig_put_gid_reason(values, nulls, &j,
							  (e->flags & IG_HIST_GID_KNOWN) ? e->gid : NULL,
							  e->reason);
		if (ncols >= IDLE_GUARD_HISTORY_COLS_V1_5)
			ig_put_link(values, nulls, &j, e->record.link);

		Assert(j == ncols);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
}

/*
 * idle_guard_stats
 *		One row: the worker and its counters (API 1.0).
 */
Datum
idle_guard_stats(PG_FUNCTION_ARGS)
{
	return ig_stats(fcinfo, IDLE_GUARD_STATS_COLS_V1_0);
}

/*
 * idle_guard_stats_1_2
 *		The same, with the time of the last reset (API 1.2).
 */
Datum
idle_guard_stats_1_2(PG_FUNCTION_ARGS)
{
	return ig_stats(fcinfo, IDLE_GUARD_STATS_COLS_V1_2);
}

/*
 * idle_guard_stats_1_4
 *		The same, with what WAL replay waits for on a hot standby (API 1.4).
 */
Datum
idle_guard_stats_1_4(PG_FUNCTION_ARGS)
{
	return ig_stats(fcinfo, IDLE_GUARD_STATS_COLS_V1_4);
}

/*
 * idle_guard_reset
 *		Clear the history and the counters.  EXECUTE is revoked from PUBLIC:
 *		superusers, and roles they grant it to, may call it.
 */
Datum
idle_guard_reset(PG_FUNCTION_ARGS)
{
	idle_guard_require_loaded();
	idle_guard_history_reset();
	PG_RETURN_VOID();
}

/* Build the stats row with the first ncols columns */
static Datum
ig_stats(FunctionCallInfo fcinfo, int ncols)
{
	TupleDesc	tupdesc;
	Datum		values[IDLE_GUARD_STATS_COLS] = {0};
	bool		nulls[IDLE_GUARD_STATS_COLS] = {0};
	IgShared	copy;
	int			j = 0;

	idle_guard_require_loaded();
	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	ig_check_columns(tupdesc, ncols);

	LWLockAcquire(idle_guard_shared->lock, LW_SHARED);
	memcpy(&copy, idle_guard_shared, offsetof(IgShared, history));
	LWLockRelease(idle_guard_shared->lock);

	if (copy.worker_pid != 0)
	{
		values[j++] = Int32GetDatum(copy.worker_pid);
		values[j++] = TimestampTzGetDatum(copy.worker_started_at);
	}
	else
	{
		nulls[j++] = true;
		nulls[j++] = true;
	}
	values[j++] = Int64GetDatum(copy.sweeps);
	if (copy.last_sweep_at != 0)
	{
		values[j++] = TimestampTzGetDatum(copy.last_sweep_at);
		values[j++] = Float8GetDatum(copy.last_sweep_ms);
	}
	else
	{
		nulls[j++] = true;
		nulls[j++] = true;
	}
	values[j++] = Int32GetDatum(copy.guarded_now);
	values[j++] = Int64GetDatum(copy.reported);
	values[j++] = Int64GetDatum(copy.terminated);
	values[j++] = Int64GetDatum(copy.skipped);
	Assert(j == IDLE_GUARD_STATS_COLS_V1_0);
	if (ncols >= IDLE_GUARD_STATS_COLS_V1_2)
		values[j++] = TimestampTzGetDatum(copy.stats_reset);
	if (ncols >= IDLE_GUARD_STATS_COLS_V1_4)
	{
		IgReplay	replay;
		const char *wait;

		/* read now, not as of the last sweep: the worker may be down */
		idle_guard_replay_state(&replay);
		wait = idle_guard_replay_wait_name(replay.wait);
		values[j++] = BoolGetDatum(replay.in_recovery);
		if (replay.pid != 0)
			values[j++] = Int32GetDatum(replay.pid);
		else
			nulls[j++] = true;
		if (wait != NULL)
		{
			values[j++] = CStringGetTextDatum(wait);
			values[j++] = TimestampTzGetDatum(replay.since);
		}
		else
		{
			nulls[j++] = true;
			nulls[j++] = true;
		}
		ig_put_replay_relation(values, nulls, &j, &replay);
	}
	Assert(j == ncols);

	return HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls));
}

/*
 * The SQL declaration of a function must have the columns its C entry
 * fills: a mismatch (a script pointing at the wrong entry) is a bug, not
 * a user error.
 */
static void
ig_check_columns(TupleDesc tupdesc, int ncols)
{
	if (tupdesc->natts != ncols)
		elog(ERROR, "incorrect number of output arguments");
}

/* May the caller see the client details of a session of this role? */
static bool
ig_can_see(Oid userid)
{
	return has_privs_of_role(GetUserId(), ROLE_PG_READ_ALL_STATS) ||
		has_privs_of_role(GetUserId(), userid);
}

/* A name-typed Datum from a C string */
static Datum
ig_name_datum(const char *name)
{
	Name		n = (Name) palloc0(NAMEDATALEN);

	namestrcpy(n, name);
	return NameGetDatum(n);
}

/*
 * Put a role or database name column: the name known already (the one
 * recorded with a history entry), else the one read now without waiting
 * (names.c), else the OID in decimal, as regrole shows an OID it cannot
 * name; NULL with no OID either.  A name that cannot be
 * read now is one locked by a session in the pile-up the caller is
 * probably looking into: waiting for it would hang the report.
 */
static void
ig_put_name(Datum *values, bool *nulls, int *j, const char *known, Oid oid,
			bool (*resolve) (Oid oid, char *buf))
{
	char		buf[NAMEDATALEN];

	if (known[0] != '\0')
		values[(*j)++] = ig_name_datum(known);
	else if (resolve(oid, buf))
		values[(*j)++] = ig_name_datum(buf);
	else if (OidIsValid(oid))
	{
		snprintf(buf, sizeof(buf), "%u", oid);
		values[(*j)++] = ig_name_datum(buf);
	}
	else
		nulls[(*j)++] = true;
}

/* An interval Datum of a number of microseconds */
static Datum
ig_interval_datum(int64 usecs)
{
	Interval   *iv = (Interval *) palloc0(sizeof(Interval));

	iv->time = usecs;
	return IntervalPGetDatum(iv);
}

/* An inet Datum from a numeric address in text form */
static Datum
ig_inet_datum(const char *addr)
{
	return DirectFunctionCall1(inet_in, CStringGetDatum(addr));
}

/*
 * Put the columns added in 1.3, in both the report and the history: the
 * gid of a prepared transaction (NULL for a session, or while the gid
 * is not known) and the reason.
 */
static void
ig_put_gid_reason(Datum *values, bool *nulls, int *j, const char *gid,
				  IgReason reason)
{
	if (gid != NULL)
		values[(*j)++] = CStringGetTextDatum(gid);
	else
		nulls[(*j)++] = true;
	values[(*j)++] = CStringGetTextDatum(idle_guard_reason_name(reason));
}

/*
 * Put the relation WAL replay waits to lock, as its name when it can be
 * read now without waiting (replay may be waiting on pg_class itself),
 * else its OID; NULL unless replay waits on a relation lock.
 */
static void
ig_put_replay_relation(Datum *values, bool *nulls, int *j,
					   const IgReplay *replay)
{
	char	   *name;

	if (replay->wait != IG_REPLAY_LOCK ||
		replay->lock.locktype != LOCKTAG_RELATION)
	{
		nulls[(*j)++] = true;
		return;
	}
	name = idle_guard_relation_name(replay->lock.field1, replay->lock.field2);
	if (name == NULL)
		name = psprintf("%u", replay->lock.field2);
	values[(*j)++] = CStringGetTextDatum(name);
}

/*
 * Put the client_link column (1.5): NULL for a prepared transaction, and
 * in the history for an action recorded before 1.5.
 */
static void
ig_put_link(Datum *values, bool *nulls, int *j, IgLink link)
{
	const char *name = idle_guard_link_name(link);

	if (name != NULL)
		values[(*j)++] = CStringGetTextDatum(name);
	else
		nulls[(*j)++] = true;
}
