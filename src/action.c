/*-------------------------------------------------------------------------
 *
 * action.c
 *		The last step of the pipeline, taken by the worker only: write the
 *		LOG line, and for action = terminate re-check the target and send
 *		it SIGTERM; record the outcome in the history.
 *
 * Safety of the signal.  The decision was made on a snapshot; before the
 * signal the target is checked again, in two stages:
 *
 *	1. A fresh backend-status read: same pid, same process start (not a
 *	   reused pid), same state since the same state change (the client has
 *	   sent nothing since).
 *	2. Under ProcArrayLock, immediately before kill(): the pid still
 *	   belongs to a live backend in the same local transaction, blocked on
 *	   its client the way it was seen (wait event ClientRead, or
 *	   ClientWrite for a client that does not read).  A backend leaves
 *	   the proc array only under ProcArrayLock held exclusively, so while
 *	   we hold it shared the pid cannot be freed and reused.
 *
 * What remains is the microseconds between stage 2 and the signal's
 * arrival, during which the client's next message may arrive; the
 * built-in idle_in_transaction_session_timeout has the same window.
 *
 * The signal.  SIGTERM, as pg_terminate_backend() sends; the client reads
 * 57P01 "terminating connection due to administrator command".  On a hot
 * standby, a session idle in a transaction that WAL replay waits on is
 * sent the recovery-conflict signal instead, as the startup process sends
 * it when max_standby_streaming_delay runs out: the client reads
 * PostgreSQL's own 40001 "terminating connection due to conflict with
 * recovery", with its hint to reconnect and repeat, which drivers treat as
 * a transaction to retry.  Should the client's next message win the race
 * above, that signal cancels the statement instead of the session (an
 * idle session ignores it), which also releases the locks replay needs.
 *
 * Copyright (c) 2026, idle_guard developers
 *
 * IDENTIFICATION
 *	  src/action.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <signal.h>

#include "access/xlog.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "storage/lwlock.h"
#include "storage/procarray.h"
#include "utils/builtins.h"
#include "utils/wait_event.h"

#include "action.h"
#include "compat.h"
#include "names.h"
#include "shared.h"
#include "snapshot.h"

/*
 * Names and texts describing one target, resolved once per action.  A
 * name that cannot be read without waiting (names.c) is left empty, and
 * the LOG line gives the OID instead.
 */
typedef struct IgTarget
{
	char		usename[NAMEDATALEN];	/* "" = unknown */
	char		datname[NAMEDATALEN];	/* "" = unknown */
	char		client[IG_ADDR_LEN];
	IgRecord   *record;			/* the postmortem record of the action */
} IgTarget;

static void ig_resolve_target(const IgSession *s, IgTarget *t);
static void ig_log_action(const IgSession *s, const IgTarget *t,
						  const char *what, TimestampTz now);
static void ig_append_quoted(StringInfo buf, const char *key,
							 const char *value);
static void ig_append_name(StringInfo buf, const char *key,
						   const char *name, Oid oid);
static void ig_append_escaped(StringInfo buf, const char *value);

/* Outcome of the re-check of a target under ProcArrayLock */
typedef enum IgRecheck
{
	IG_RECHECK_OK,				/* same backend, same transaction, waiting on
								 * its client (and signalled, if asked) */
	IG_RECHECK_ENDED,			/* the episode is over: exited, new xact */
	IG_RECHECK_BUSY				/* same episode, but not waiting on its client
								 * this instant: try again later */
} IgRecheck;

static bool ig_ends_by_conflict(const IgSession *s);
static uint32 ig_expected_wait_event(IgClientWait waits);
static IgRecheck ig_recheck(const IgSession *s, bool send_signal,
							const char **why);
static void ig_spare(IgSession *s, const IgTarget *t, TimestampTz now,
					 const char *why);

/*
 * idle_guard_act
 *		Act on one session whose deadline has come: report it, or report
 *		and terminate it.
 *
 * Returns IG_ACT_DONE when the episode needs nothing more (reported,
 * terminated, or over), IG_ACT_RETRY when the target was still silent but
 * momentarily not waiting on its client (a backend woken by a signal, such
 * as the reload that started this sweep, leaves ClientRead for an instant):
 * the worker looks again after naptime instead of sparing it for good.
 */
IgActNext
idle_guard_act(IgSession *s)
{
	IgTarget	t;
	TimestampTz now = GetCurrentTimestamp();
	const char *why = NULL;
	IgEpisodeKey cur;
	BackendState state;
	IgRecord   *rec = (IgRecord *) palloc(sizeof(IgRecord));
	bool		present;
	IgRecheck	result;

	ig_resolve_target(s, &t);
	present = idle_guard_build_record(s, rec, &cur, &state);
	t.record = rec;

	if (s->decision.action == IG_VERDICT_REPORT)
	{
		ig_log_action(s, &t, s->reason == IG_REASON_PREPARED ?
					  "prepared transaction holds locks" :
					  "silent session holds locks", now);
		idle_guard_history_add(s, t.usename, t.datname, t.client, now,
							   IG_OUTCOME_REPORTED, NULL, rec);
		return IG_ACT_DONE;
	}

	/* the policy never lets what has no backend be terminated */
	Assert(s->decision.action == IG_VERDICT_TERMINATE);
	Assert(idle_guard_reason(s->reason)->waits != IG_WAITS_NOTHING);

	/*
	 * Stage 1, from the status read just made for the record: is it still the
	 * same backend in the same silence?
	 */
	if (!present)
	{
		ig_spare(s, &t, now, "backend exited before the signal");
		return IG_ACT_DONE;
	}
	cur.lxid = s->key.lxid;		/* checked in stage 2 */
	if (state != s->state || !idle_guard_same_episode(&s->key, &cur))
	{
		ig_spare(s, &t, now, "client became active before the signal");
		return IG_ACT_DONE;
	}

	/* Stage 2, quietly first: do not log a kill that would not happen */
	switch (ig_recheck(s, false, &why))
	{
		case IG_RECHECK_ENDED:
			ig_spare(s, &t, now, why);
			return IG_ACT_DONE;
		case IG_RECHECK_BUSY:
			return IG_ACT_RETRY;
		case IG_RECHECK_OK:
			break;
	}

	/*
	 * The LOG line comes before the signal, then the note that tells the
	 * client why (client_message.c), then the final check and the signal.
	 */
	ig_log_action(s, &t, "terminating silent session", now);
	idle_guard_note_end(s, ig_ends_by_conflict(s), now);
	result = ig_recheck(s, true, &why);
	if (result != IG_RECHECK_OK)
		idle_guard_note_clear(s);
	switch (result)
	{
		case IG_RECHECK_OK:
			idle_guard_history_add(s, t.usename, t.datname, t.client, now,
								   IG_OUTCOME_TERMINATED,
								   ig_ends_by_conflict(s) ?
								   "recovery conflict signal sent" :
								   "SIGTERM sent", rec);
			return IG_ACT_DONE;
		case IG_RECHECK_ENDED:
			ig_spare(s, &t, now, why);
			return IG_ACT_DONE;
		case IG_RECHECK_BUSY:
			break;
	}
	ereport(LOG,
			(errmsg("idle_guard: postponed signal to pid=%d: %s",
					s->key.pid, why),
			 errhidestmt(true), errhidecontext(true)));
	return IG_ACT_RETRY;
}

/* Log and record that the re-check spared a session */
static void
ig_spare(IgSession *s, const IgTarget *t, TimestampTz now, const char *why)
{
	ereport(LOG,
			(errmsg("idle_guard: spared session pid=%d: %s",
					s->key.pid, why),
			 errhidestmt(true), errhidecontext(true)));
	idle_guard_history_add(s, t->usename, t->datname, t->client, now,
						   IG_OUTCOME_SKIPPED, why, t->record);
}

/*
 * Does the session end by PostgreSQL's recovery-conflict path rather than
 * SIGTERM?  Only on a standby, only when WAL replay is among its waiters,
 * and only idle in a (not aborted) transaction (reasons.h's idle_in_xact),
 * the one state in which the signal ends the session: an idle or aborted
 * one would ignore it, and a client not reading would never see it.
 */
static bool
ig_ends_by_conflict(const IgSession *s)
{
	return s->blocks_replay && idle_guard_reason(s->reason)->idle_in_xact &&
		s->state == STATE_IDLEINTRANSACTION && RecoveryInProgress();
}

/*
 * The wait event of a backend silent the way its reason says (reasons.h's
 * waits): the re-check accepts exactly that one.
 */
static uint32
ig_expected_wait_event(IgClientWait waits)
{
	switch (waits)
	{
		case IG_WAITS_READ:
			return WAIT_EVENT_CLIENT_READ;
		case IG_WAITS_WRITE:
			return WAIT_EVENT_CLIENT_WRITE;
		case IG_WAITS_NOTHING:
			break;
	}
	return 0;					/* matches no backend that waits */
}

/*
 * Stage 2 of the re-check, under ProcArrayLock, and the signal itself when
 * send_signal: the pid still belongs to a live backend in the same local
 * transaction, blocked on its client the way its silence requires (reading
 * from it, or for a client not reading, writing to it; never merely what
 * the snapshot happened to see).  While we hold the lock shared the
 * backend cannot leave the proc array, so the pid cannot be reused before
 * kill().  The recovery-conflict signal goes right after the lock is
 * released, and is itself bound to the PGPROC and pid (compat.h).  Sets
 * *why unless the answer is IG_RECHECK_OK.
 */
static IgRecheck
ig_recheck(const IgSession *s, bool send_signal, const char **why)
{
	PGPROC	   *proc;
	IgRecheck	result = IG_RECHECK_OK;
	int			save_errno = 0;
	bool		conflict_signal = false;

	LWLockAcquire(ProcArrayLock, LW_SHARED);
	proc = BackendPidGetProcWithLock(s->key.pid);
	if (proc == NULL)
	{
		*why = "backend exited before the signal";
		result = IG_RECHECK_ENDED;
	}
	else if (ig_proc_lxid(proc) != s->key.lxid)
	{
		*why = "transaction ended before the signal";
		result = IG_RECHECK_ENDED;
	}
	else if (UINT32_ACCESS_ONCE(proc->wait_event_info) !=
			 ig_expected_wait_event(idle_guard_reason(s->reason)->waits))
	{
		*why = "backend was not waiting for its client";
		result = IG_RECHECK_BUSY;
	}
	else if (send_signal && ig_ends_by_conflict(s))
		conflict_signal = true;
	else if (send_signal && ig_signal_backend(s->key.pid, SIGTERM) != 0)
	{
		save_errno = errno;
		*why = "could not send the signal";
		result = IG_RECHECK_ENDED;
	}
	LWLockRelease(ProcArrayLock);

	/*
	 * The recovery-conflict signal is sent just after the lock is released:
	 * from 19 on, sending it takes ProcArrayLock, and it checks again that
	 * the PGPROC still belongs to the pid.
	 */
	if (conflict_signal && !ig_signal_recovery_conflict(proc, s->key.pid))
	{
		*why = "backend exited before the signal";
		result = IG_RECHECK_ENDED;
	}

	if (save_errno != 0)
	{
		errno = save_errno;
		ereport(WARNING,
				(errmsg("could not send signal to process %d: %m",
						s->key.pid)));
	}
	return result;
}

/*
 * Resolve the names a LOG line and a history entry show, without waiting
 * for a lock: a session holding pg_authid or pg_database locked may be the
 * very one being acted on.
 */
static void
ig_resolve_target(const IgSession *s, IgTarget *t)
{
	(void) idle_guard_role_name(s->userid, t->usename);
	(void) idle_guard_database_name(s->dbid, t->datname);
	if (!idle_guard_client_addr_text(&s->clientaddr, t->client,
									 sizeof(t->client)))
		t->client[0] = '\0';	/* Unix socket: "local" in the log */
}

/*
 * Write the one LOG line of an action.  Its fields are key=value pairs in
 * a fixed order so that log pipelines can parse them.  Every value that
 * comes from a name, a gid or a client is double-quoted and escaped (see
 * ig_append_escaped), so an action is exactly one physical line whatever
 * those contain; a role or database whose name could not be read without
 * waiting is given as user_oid=N or db_oid=N instead.
 */
static void
ig_log_action(const IgSession *s, const IgTarget *t, const char *what,
			  TimestampTz now)
{
	StringInfoData buf;

	initStringInfo(&buf);
	if (s->reason == IG_REASON_PREPARED)
	{
		/* no backend: no pid, application or client */
		appendStringInfo(&buf, " xid=%u", s->xid);
		if (s->gid_known)
			ig_append_quoted(&buf, "gid", s->gid);
		ig_append_name(&buf, "user", t->usename, s->userid);
		ig_append_name(&buf, "db", t->datname, s->dbid);
	}
	else
	{
		appendStringInfo(&buf, " pid=%d", s->key.pid);
		ig_append_name(&buf, "user", t->usename, s->userid);
		ig_append_name(&buf, "db", t->datname, s->dbid);
		ig_append_quoted(&buf, "app", s->appname);
		appendStringInfo(&buf, " client=%s",
						 t->client[0] ? t->client : "local");
	}
	appendStringInfo(&buf, " silent_s=%.3f locks=%d blocked=%d rule=%s action=%s",
					 (double) (now - s->facts.silent_since) / USECS_PER_SEC,
					 s->locks_held, s->facts.blocked_total,
					 idle_guard_rule_name(s->decision.rule),
					 idle_guard_verdict_name(s->decision.action));
	ig_append_quoted(&buf, "reason", idle_guard_reason_name(s->reason));
	if (s->blocks_replay)
		appendStringInfoString(&buf, " blocks_replay=true");
	if (s->facts.link != IG_LINK_NONE)
		ig_append_quoted(&buf, "link", idle_guard_link_name(s->facts.link));

	/*
	 * idle_guard never ends a prepared transaction: say what would.  The gid
	 * and the database name are escaped here too.
	 */
	if (s->reason == IG_REASON_PREPARED && s->gid_known)
	{
		char	   *sql = psprintf("ROLLBACK PREPARED %s",
								   quote_literal_cstr(s->gid));

		appendStringInfoString(&buf, "; ");
		ig_append_escaped(&buf, sql);
		if (t->datname[0] != '\0')
		{
			appendStringInfoString(&buf, " in database ");
			ig_append_escaped(&buf, quote_identifier(t->datname));
		}
		else
			appendStringInfo(&buf, " in the database of OID %u", s->dbid);
		appendStringInfoString(&buf, " would end it");
	}
	else if (s->reason == IG_REASON_PREPARED)
		appendStringInfo(&buf, "; ROLLBACK PREPARED of the gid that pg_prepared_xacts shows for transaction %u would end it",
						 s->xid);

	/* buf starts with a blank */
	ereport(LOG,
			(errmsg("idle_guard: %s%s", what, buf.data),
			 errhidestmt(true), errhidecontext(true)));
	pfree(buf.data);
}

/* Append ' key="value"', the value escaped */
static void
ig_append_quoted(StringInfo buf, const char *key, const char *value)
{
	appendStringInfo(buf, " %s=\"", key);
	ig_append_escaped(buf, value ? value : "");
	appendStringInfoChar(buf, '"');
}

/*
 * Append ' key="name"', or ' key_oid=N' when the name is unknown (empty):
 * a bare number in the name's place could be mistaken for a role or
 * database named so.
 */
static void
ig_append_name(StringInfo buf, const char *key, const char *name, Oid oid)
{
	if (name[0] != '\0')
		ig_append_quoted(buf, key, name);
	else
		appendStringInfo(buf, " %s_oid=%u", key, oid);
}

/*
 * Append value escaped for the LOG line, so that it can neither end the
 * line nor the quoted value it sits in, and a parser recovers every byte:
 * printable ASCII stays as it is but for backslash and double quote, which
 * become \\ and \"; newline, carriage return and tab become \n, \r and
 * \t; every other byte (control characters, DEL, and each byte of a
 * non-ASCII character, whatever the encoding) becomes \xHH, two lowercase
 * hex digits.  Non-ASCII names are thus logged as their bytes: the worker
 * has no database encoding to judge them by, and some log pipelines split
 * lines on Unicode separators too.
 */
static void
ig_append_escaped(StringInfo buf, const char *value)
{
	const unsigned char *p;

	for (p = (const unsigned char *) value; *p; p++)
	{
		switch (*p)
		{
			case '\\':
				appendStringInfoString(buf, "\\\\");
				break;
			case '"':
				appendStringInfoString(buf, "\\\"");
				break;
			case '\n':
				appendStringInfoString(buf, "\\n");
				break;
			case '\r':
				appendStringInfoString(buf, "\\r");
				break;
			case '\t':
				appendStringInfoString(buf, "\\t");
				break;
			default:
				if (*p < 0x20 || *p > 0x7e)
					appendStringInfo(buf, "\\x%02x", *p);
				else
					appendStringInfoChar(buf, (char) *p);
				break;
		}
	}
}
