/*-------------------------------------------------------------------------
 *
 * record.c
 *		The postmortem record of an action: the silent session's last
 *		query and transaction start, the locks it held, every session that
 *		waited on it (who, running what, for which lock, for how long) and
 *		the policy that applied.
 *
 * The worker builds the record when it acts and stores it, structured and
 * bounded (IG_RECORD_MAX_LOCKS, IG_RECORD_MAX_WAITERS, clipped queries),
 * in the history ring.  idle_guard_history() renders it as jsonb when read,
 * so that relation names resolve in the caller's database and queries and
 * application names are shown only to callers allowed to see them, by the
 * same rule as idle_guard_report().
 *
 * Copyright (c) 2026, idle_guard developers
 *
 * IDENTIFICATION
 *	  src/record.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "port/pg_bitutils.h"
#include "replication/walreceiver.h"
#include "miscadmin.h"
#include "storage/lock.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/timestamp.h"

#include "action.h"
#include "names.h"
#include "settings.h"
#include "snapshot.h"

static void ig_json_key(StringInfo buf, const char *key, bool *first);
static void ig_json_text(StringInfo buf, const char *key, const char *value,
						 bool *first);
static void ig_json_time(StringInfo buf, const char *key, TimestampTz t,
						 bool *first);
static void ig_json_lock(StringInfo buf, const IgLockHeld *lock);
static void ig_json_relation(StringInfo buf, const IgLockHeld *lock,
							 bool *first);
static void ig_json_replay(StringInfo buf, const IgRecordStandby *sb);
static void ig_json_link(StringInfo buf, const IgRecord *rec);
static void ig_json_policy(StringInfo buf, const IgPolicy *policy,
						   IgPolicySource source);

/*
 * idle_guard_build_record
 *		Fill the record of an action on session s from the facts of the
 *		sweep and a fresh read of the sessions' status (queries, names).
 *		The same read gives the target's current status in key and *state,
 *		for the re-check before a signal; returns false if the target has
 *		exited.  Runs in the worker, inside its transaction (role names).
 */
bool
idle_guard_build_record(const IgSession *s, IgRecord *rec,
						IgEpisodeKey *key, BackendState *state)
{
	bool		present;
	TimestampTz now = GetCurrentTimestamp();
	int			i;

	memset(rec, 0, sizeof(IgRecord));
	rec->xact_start = s->xact_start;
	rec->silent_since = s->facts.silent_since;
	rec->nlocks = s->nheld;
	memcpy(rec->locks, s->held, sizeof(IgLockHeld) * s->nheld);
	rec->nwaiters = Min(s->facts.blocked_total, IG_RECORD_MAX_WAITERS);
	for (i = 0; i < rec->nwaiters; i++)
	{
		rec->waiters[i].fact = s->waiters[i];
		rec->waiters[i].waited_us = s->waiters[i].wait_start != 0
			? now - s->waiters[i].wait_start : -1;
	}
	rec->policy = s->policy;
	rec->policy_source = s->policy_source;
	rec->standby.in_recovery = s->replay != NULL && s->replay->in_recovery;
	rec->standby.feedback = rec->standby.in_recovery && hot_standby_feedback;
	rec->standby.blocks_replay = s->blocks_replay;
	rec->standby.xmin_age = s->xmin_age;
	if (s->replay != NULL)
		rec->standby.replay = *s->replay;
	rec->link = s->facts.link;
	rec->tcp = s->tcp;

	present = idle_guard_describe_sessions(rec, s->key.pid, key, state);
	/* "" when unknown now: never wait on pg_authid (names.c) */
	for (i = 0; i < rec->nwaiters; i++)
		(void) idle_guard_role_name(rec->waiters[i].userid,
									rec->waiters[i].usename);
	return present;
}

/*
 * idle_guard_record_jsonb
 *		Render a record as jsonb for a caller.  can_see(userid) says whether
 *		the caller may see a session's query and application; the silent
 *		session's own query follows target_userid.
 *
 * Shape:
 *	{"query", "xact_start", "silent_since",
 *	 "locks": [{"locktype", "modes": [...], "fastpath", "database",
 *				"relation", "relation_name", "fields": [f1, f2, f3, f4]}],
 *	 "locks_truncated",
 *	 "waiters": [{"pid", "usename", "application_name", "query",
 *				  "locktype", "mode_requested", "waited_s", "direct",
 *				  "wal_replay"}],
 *	 "policy": {"action", "<setting>_ms" of each rule (rules.h):
 *				"blocking_timeout_ms", "idle_timeout_ms",
 *				"unreachable_timeout_ms"; "source"},
 *	 "xmin_age",
 *	 "standby": null on a primary, else {"hot_standby_feedback",
 *				"blocks_replay", "replay_wait", "replay_wait_since",
 *				"replay_pid", and for a lock wait "locktype",
 *				"mode_requested", "database", "relation",
 *				"relation_name"},
 *	 "client_link": null for a prepared transaction or an action before
 *				1.5, else {"state": "alive", ...; for a TCP client found in
 *				the kernel's table, its evidence: "tcp_state",
 *				"last_ack_recv_ms", "last_data_recv_ms",
 *				"last_data_sent_ms", "unacked", "retransmits", "probes",
 *				"backoff", "total_retrans", "snd_wnd", "rto_ms"}}
 */
Datum
idle_guard_record_jsonb(const IgRecord *rec, Oid target_userid,
						bool (*can_see) (Oid userid))
{
	StringInfoData buf;
	bool		first = true;
	int			i;

	initStringInfo(&buf);
	appendStringInfoChar(&buf, '{');

	ig_json_text(&buf, "query", can_see(target_userid) ? rec->query : NULL,
				 &first);
	ig_json_time(&buf, "xact_start", rec->xact_start, &first);
	ig_json_time(&buf, "silent_since", rec->silent_since, &first);

	ig_json_key(&buf, "locks", &first);
	appendStringInfoChar(&buf, '[');
	for (i = 0; i < rec->nlocks; i++)
	{
		if (i > 0)
			appendStringInfoChar(&buf, ',');
		ig_json_lock(&buf, &rec->locks[i]);
	}
	appendStringInfoChar(&buf, ']');
	ig_json_key(&buf, "locks_truncated", &first);
	appendStringInfoString(&buf, rec->nlocks >= IG_RECORD_MAX_LOCKS ?
						   "true" : "false");

	ig_json_key(&buf, "waiters", &first);
	appendStringInfoChar(&buf, '[');
	for (i = 0; i < rec->nwaiters; i++)
	{
		const IgWaiterRecord *w = &rec->waiters[i];
		bool		visible = can_see(w->userid);
		bool		wfirst = true;

		if (i > 0)
			appendStringInfoChar(&buf, ',');
		appendStringInfoChar(&buf, '{');
		ig_json_key(&buf, "pid", &wfirst);
		appendStringInfo(&buf, "%d", w->fact.pid);
		ig_json_text(&buf, "usename", w->usename[0] ? w->usename : NULL,
					 &wfirst);
		ig_json_text(&buf, "application_name", visible ? w->appname : NULL,
					 &wfirst);
		ig_json_text(&buf, "query", visible ? w->query : NULL, &wfirst);
		ig_json_text(&buf, "locktype", LockTagTypeNames[w->fact.locktype],
					 &wfirst);
		ig_json_text(&buf, "mode_requested",
					 GetLockmodeName(DEFAULT_LOCKMETHOD, w->fact.mode),
					 &wfirst);
		ig_json_key(&buf, "waited_s", &wfirst);
		if (w->waited_us >= 0)
			appendStringInfo(&buf, "%.3f", (double) w->waited_us / USECS_PER_SEC);
		else
			appendStringInfoString(&buf, "null");
		ig_json_key(&buf, "direct", &wfirst);
		appendStringInfoString(&buf, w->fact.direct ? "true" : "false");
		ig_json_key(&buf, "wal_replay", &wfirst);
		appendStringInfoString(&buf, w->fact.replay ? "true" : "false");
		appendStringInfoChar(&buf, '}');
	}
	appendStringInfoChar(&buf, ']');

	ig_json_key(&buf, "policy", &first);
	ig_json_policy(&buf, &rec->policy, rec->policy_source);
	ig_json_key(&buf, "xmin_age", &first);
	if (rec->standby.xmin_age >= 0)
		appendStringInfo(&buf, "%d", rec->standby.xmin_age);
	else
		appendStringInfoString(&buf, "null");
	ig_json_key(&buf, "standby", &first);
	ig_json_replay(&buf, &rec->standby);
	ig_json_key(&buf, "client_link", &first);
	ig_json_link(&buf, rec);
	appendStringInfoChar(&buf, '}');

	return DirectFunctionCall1(jsonb_in, CStringGetDatum(buf.data));
}

/*
 * Render the policy that applied: the action, the setting of every rule
 * (rules.h) as "<setting>_ms", and where the most specific value came from.
 */
static void
ig_json_policy(StringInfo buf, const IgPolicy *policy, IgPolicySource source)
{
	bool		first = true;
	IgRule		r;

	appendStringInfoChar(buf, '{');
	ig_json_text(buf, "action",
				 idle_guard_action_setting_name(policy->action), &first);
	for (r = IG_RULE_FIRST; r < IG_RULE_END; r++)
	{
		char		key[NAMEDATALEN];

		snprintf(key, sizeof(key), "%s_ms", idle_guard_rule(r)->setting);
		ig_json_key(buf, key, &first);
		appendStringInfo(buf, "%d", idle_guard_rule_timeout(policy, r));
	}
	ig_json_text(buf, "source", idle_guard_policy_source_name(source),
				 &first);
	appendStringInfoChar(buf, '}');
}

/*
 * Render what the record says of the client's link: its judgement and,
 * for a TCP socket found in the kernel's table, the evidence it was
 * judged by.
 */
static void
ig_json_link(StringInfo buf, const IgRecord *rec)
{
	const IgTcpFacts *t = &rec->tcp;
	const char *name = idle_guard_link_name(rec->link);
	bool		first = true;

	if (name == NULL)
	{
		appendStringInfoString(buf, "null");
		return;
	}
	appendStringInfoChar(buf, '{');
	ig_json_text(buf, "state", name, &first);
	if (t->found)
	{
		const struct
		{
			const char *key;
			uint32		value;
		}			evidence[] = {
			{"tcp_state", t->state},
			{"last_ack_recv_ms", t->last_ack_recv_ms},
			{"last_data_recv_ms", t->last_data_recv_ms},
			{"last_data_sent_ms", t->last_data_sent_ms},
			{"unacked", t->unacked},
			{"retransmits", t->retransmits},
			{"probes", t->probes},
			{"backoff", t->backoff},
			{"total_retrans", t->total_retrans},
			{"snd_wnd", t->snd_wnd},
			{"rto_ms", t->rto_us / 1000},
		};
		int			i;

		for (i = 0; i < lengthof(evidence); i++)
		{
			ig_json_key(buf, evidence[i].key, &first);
			appendStringInfo(buf, "%u", evidence[i].value);
		}
	}
	appendStringInfoChar(buf, '}');
}

/*
 * Render what the record says of WAL replay: null for an action on a
 * primary; on a standby, whether replay waited on the session and what
 * replay was waiting for (a lock with its relation, or another kind of
 * conflict, or nothing).
 */
static void
ig_json_replay(StringInfo buf, const IgRecordStandby *sb)
{
	const IgReplay *r = &sb->replay;
	const char *wait = idle_guard_replay_wait_name(r->wait);
	bool		first = true;

	if (!sb->in_recovery)
	{
		appendStringInfoString(buf, "null");
		return;
	}
	appendStringInfoChar(buf, '{');
	ig_json_key(buf, "hot_standby_feedback", &first);
	appendStringInfoString(buf, sb->feedback ? "true" : "false");
	ig_json_key(buf, "blocks_replay", &first);
	appendStringInfoString(buf, sb->blocks_replay ? "true" : "false");
	ig_json_text(buf, "replay_wait", wait, &first);
	ig_json_time(buf, "replay_wait_since", wait ? r->since : 0, &first);
	ig_json_key(buf, "replay_pid", &first);
	if (r->pid != 0)
		appendStringInfo(buf, "%d", r->pid);
	else
		appendStringInfoString(buf, "null");
	if (r->wait == IG_REPLAY_LOCK)
	{
		ig_json_text(buf, "locktype", LockTagTypeNames[r->lock.locktype],
					 &first);
		ig_json_text(buf, "mode_requested",
					 GetLockmodeName(DEFAULT_LOCKMETHOD,
									 pg_rightmost_one_pos32(r->lock.modes)),
					 &first);
		ig_json_relation(buf, &r->lock, &first);
	}
	appendStringInfoChar(buf, '}');
}

/* Render one held lock: its type, modes and tag, with a relation's name */
static void
ig_json_lock(StringInfo buf, const IgLockHeld *lock)
{
	bool		first = true;
	int			m;
	bool		mfirst = true;

	appendStringInfoChar(buf, '{');
	ig_json_text(buf, "locktype", LockTagTypeNames[lock->locktype], &first);
	ig_json_key(buf, "modes", &first);
	appendStringInfoChar(buf, '[');
	for (m = 1; m <= MaxLockMode; m++)
	{
		if ((lock->modes & LOCKBIT_ON(m)) == 0)
			continue;
		if (!mfirst)
			appendStringInfoChar(buf, ',');
		mfirst = false;
		escape_json(buf, GetLockmodeName(DEFAULT_LOCKMETHOD, m));
	}
	appendStringInfoChar(buf, ']');
	ig_json_key(buf, "fastpath", &first);
	appendStringInfoString(buf, lock->fastpath ? "true" : "false");
	ig_json_relation(buf, lock, &first);
	ig_json_key(buf, "fields", &first);
	appendStringInfo(buf, "[%u, %u, %u, %u]", lock->field1, lock->field2,
					 lock->field3, (uint32) lock->field4);
	appendStringInfoChar(buf, '}');
}

/*
 * Append the members that name a lock's relation, if it is on one: its
 * database and relation OIDs and the relation's name.  Names resolve only
 * in the relation's own database (or shared), and only if pg_class can be
 * read without waiting: the lock may be on pg_class itself, and on a
 * standby replay may be waiting for it.
 */
static void
ig_json_relation(StringInfo buf, const IgLockHeld *lock, bool *first)
{
	char	   *relname = NULL;

	if (lock->locktype != LOCKTAG_RELATION &&
		lock->locktype != LOCKTAG_RELATION_EXTEND &&
		lock->locktype != LOCKTAG_PAGE &&
		lock->locktype != LOCKTAG_TUPLE)
		return;
	relname = idle_guard_relation_name(lock->field1, lock->field2);
	ig_json_key(buf, "database", first);
	appendStringInfo(buf, "%u", lock->field1);
	ig_json_key(buf, "relation", first);
	appendStringInfo(buf, "%u", lock->field2);
	ig_json_text(buf, "relation_name", relname, first);
}

/* Append the key of the next member of an object */
static void
ig_json_key(StringInfo buf, const char *key, bool *first)
{
	if (!*first)
		appendStringInfoString(buf, ", ");
	*first = false;
	escape_json(buf, key);
	appendStringInfoString(buf, ": ");
}

/*
 * Append a text member, null for NULL.  Only the prefix that is valid in
 * the database encoding is kept: a query clipped to the record's bound may
 * end in the middle of a character.
 */
static void
ig_json_text(StringInfo buf, const char *key, const char *value, bool *first)
{
	ig_json_key(buf, key, first);
	if (value)
	{
		int			len = strlen(value);
		int			valid = pg_encoding_verifymbstr(GetDatabaseEncoding(),
													value, len);

		if (valid == len)
			escape_json(buf, value);
		else
		{
			char	   *prefix = pnstrdup(value, valid);

			escape_json(buf, prefix);
			pfree(prefix);
		}
	}
	else
		appendStringInfoString(buf, "null");
}

/* Append a timestamp member, null for 0 */
static void
ig_json_time(StringInfo buf, const char *key, TimestampTz t, bool *first)
{
	ig_json_text(buf, key, t != 0 ? timestamptz_to_str(t) : NULL, first);
}
