/*-------------------------------------------------------------------------
 *
 * client_message.c
 *		Tell the client idle_guard ends why: the worker leaves a note for
 *		the target before it signals it, and the target's emit_log_hook
 *		puts the note's words into the FATAL it sends its client and the
 *		server log.
 *
 * A backend ended by SIGTERM raises FATAL "terminating connection due to
 * administrator command" (57P01), the words of a DBA's
 * pg_terminate_backend() and of a shutdown too; one ended by the
 * recovery-conflict signal (action.c) raises "terminating connection due
 * to conflict with recovery" (40001).  EmitErrorReport() calls
 * emit_log_hook in that backend, with the error's fields, before it writes
 * the server log and sends the client the ErrorResponse; the hook may
 * replace the message, detail, hint and SQLSTATE, and both the log and the
 * client see the result.
 *
 * The note.  One per PGPROC, in shared memory, written by the worker only,
 * under a change counter (odd while written): the target's pid and process
 * start, the message, detail and hint, and the SQLSTATE.  The hook takes
 * it only for a FATAL with one of the two message ids above, in the
 * backend whose pid and process start the note names, and clears it: a DBA's
 * pg_terminate_backend(), a shutdown, PostgreSQL's own timeouts and
 * recovery conflicts find no note and keep their words, and a backend
 * that reuses the PGPROC (or the pid) never finds one meant for another.
 * The worker clears a note whose signal it did not send.
 *
 * When the hook does not run (log_min_messages above FATAL makes
 * EmitErrorReport skip it) the client reads PostgreSQL's own words; the
 * session is ended all the same.  When the backend cannot reach its client
 * (stalled in ClientWrite, the client not reading), only the server log
 * shows the words.
 *
 * Copyright (c) 2026, idle_guard developers
 *
 * IDENTIFICATION
 *	  src/client_message.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "storage/lock.h"
#include "storage/proc.h"
#include "utils/elog.h"

#include "action.h"
#include "settings.h"
#include "shared.h"

/* How many waiters' pids the detail lists */
#define IG_NOTE_MAX_PIDS 5

/*
 * How much later than the client's last ACK the silence must have begun
 * for the detail to say the unreachable deadline counted from the silence
 * (microseconds)
 */
#define IG_NOTE_SILENCE_AFTER_ACK_US INT64CONST(100000)

static emit_log_hook_type ig_prev_emit_log_hook = NULL;

static void ig_emit_log_hook(ErrorData *edata);
static bool ig_take_note(IgEndNote *note, IgEndNote *copy);
static void ig_write_note(int procno, const IgEndNote *content);
static void ig_append_duration(StringInfo buf, int ms);

/*
 * idle_guard_install_message_hook
 *		Install the hook, in the postmaster at preload, so that every
 *		backend has it.
 */
void
idle_guard_install_message_hook(void)
{
	ig_prev_emit_log_hook = emit_log_hook;
	emit_log_hook = ig_emit_log_hook;
}

/*
 * idle_guard_note_end
 *		Before the signal that ends session s: leave it the words its FATAL
 *		will carry, its silence counted up to now (the LOG line's figure).
 *		by_conflict says the signal is the recovery-conflict one (SQLSTATE
 *		40001 kept); otherwise SIGTERM, whose 57P01 becomes 25P03 for an
 *		idle transaction when idle_guard.terminate_sqlstate says so.
 */
void
idle_guard_note_end(const IgSession *s, bool by_conflict, TimestampTz now)
{
	IgEndNote	note;
	StringInfoData buf;
	const IgReasonInfo *reason = idle_guard_reason(s->reason);
	const IgRuleInfo *rule = idle_guard_rule(s->decision.rule);
	int			others = s->facts.blocked_total - (s->blocks_replay ? 1 : 0);
	int			i;

	Assert(rule != NULL && reason->words != NULL);
	memset(&note, 0, sizeof(note));
	note.pid = s->key.pid;
	note.proc_start = s->key.proc_start;
	note.by_conflict = by_conflict;
	if (by_conflict)
		note.sqlerrcode = ERRCODE_T_R_SERIALIZATION_FAILURE;
	else if (reason->idle_in_xact &&
			 idle_guard_terminate_sqlstate == IG_SQLSTATE_IDLE_TIMEOUT)
		note.sqlerrcode = ERRCODE_IDLE_IN_TRANSACTION_SESSION_TIMEOUT;
	else
		note.sqlerrcode = ERRCODE_ADMIN_SHUTDOWN;

	/* the reason and the figures */
	initStringInfo(&buf);
	appendStringInfo(&buf, "terminating connection because it %s for %.1f s ",
					 reason->words,
					 (double) (now - s->facts.silent_since) / USECS_PER_SEC);
	if (rule->message != NULL)
		appendStringInfoString(&buf, rule->message);
	else if (s->blocks_replay && others > 0)
		appendStringInfo(&buf, "while blocking WAL replay and %d other %s",
						 others, others == 1 ? "session" : "sessions");
	else if (s->blocks_replay)
		appendStringInfoString(&buf, "while blocking WAL replay");
	else
		appendStringInfo(&buf, "while blocking %d other %s",
						 others, others == 1 ? "session" : "sessions");
	strlcpy(note.message, buf.data, sizeof(note.message));

	/* the rule, the setting and its value, the locks, the waiters */
	resetStringInfo(&buf);
	appendStringInfo(&buf, "idle_guard ended it by its %s rule: idle_guard.%s is ",
					 rule->name, rule->setting);
	ig_append_duration(&buf,
					   idle_guard_rule_timeout(&s->policy, s->decision.rule));

	/*
	 * A deadline counted from the client's last ACK counts from the later of
	 * that ACK and the start of the silence.  The kernel times the ACK in
	 * jiffies, so when the two are a few milliseconds apart either may look
	 * later: name the silence only when it began a tenth of a second (the
	 * precision shown) or more after the ACK.
	 */
	if (rule->clock == IG_CLOCK_LAST_ACK &&
		s->facts.silent_since - s->facts.unreachable_since <
		IG_NOTE_SILENCE_AFTER_ACK_US)
		appendStringInfo(&buf, ", counted from its client's last acknowledgement %.1f s before",
						 (double) s->tcp.last_ack_recv_ms / 1000.0);
	else if (rule->clock == IG_CLOCK_LAST_ACK)
		appendStringInfo(&buf, ", counted from the start of its silence (its client's last acknowledgement was %.1f s before)",
						 (double) s->tcp.last_ack_recv_ms / 1000.0);
	appendStringInfo(&buf, ". It held %d %s", s->locks_held,
					 s->locks_held == 1 ? "lock" : "locks");
	if (s->strongest_mode != NoLock)
		appendStringInfo(&buf, ", the strongest %s",
						 GetLockmodeName(DEFAULT_LOCKMETHOD, s->strongest_mode));
	if (s->facts.blocked_total == 0)
		appendStringInfoString(&buf, "; nobody waited on it.");
	else
	{
		appendStringInfo(&buf, "; waiting on it: %s",
						 s->facts.blocked_total == 1 ? "pid" : "pids");
		for (i = 0; i < s->facts.blocked_total && i < IG_NOTE_MAX_PIDS; i++)
			appendStringInfo(&buf, "%s %d%s", i > 0 ? "," : "",
							 s->waiters[i].pid,
							 s->waiters[i].replay ? " (WAL replay)" : "");
		if (s->facts.blocked_total > IG_NOTE_MAX_PIDS)
			appendStringInfo(&buf, " and %d more",
							 s->facts.blocked_total - IG_NOTE_MAX_PIDS);
		appendStringInfoChar(&buf, '.');
	}
	strlcpy(note.detail, buf.data, sizeof(note.detail));
	if (by_conflict && reason->conflict_hint != NULL)
		strlcpy(note.hint, reason->conflict_hint, sizeof(note.hint));
	else if (reason->hint != NULL)
		strlcpy(note.hint, reason->hint, sizeof(note.hint));
	pfree(buf.data);

	ig_write_note(s->procno, &note);
}

/*
 * idle_guard_note_clear
 *		The signal was not sent after all: take the note back.
 */
void
idle_guard_note_clear(const IgSession *s)
{
	IgEndNote	empty;

	memset(&empty, 0, sizeof(empty));
	ig_write_note(s->procno, &empty);
}

/*
 * The hook, in every backend: a FATAL of the kind idle_guard's signals
 * raise, in the backend a note names, takes the note's words.  Anything
 * else passes through unchanged.  Runs in ErrorContext, where the new
 * strings must be palloc'd (errfinish frees them); takes no lock and reads
 * no catalog.
 */
static void
ig_emit_log_hook(ErrorData *edata)
{
	IgEndNote	copy;
	int			procno;

	if (ig_prev_emit_log_hook)
		ig_prev_emit_log_hook(edata);

	if (edata->elevel != FATAL || edata->message_id == NULL ||
		idle_guard_shared == NULL || MyProc == NULL)
		return;
	procno = (int) (MyProc - ProcGlobal->allProcs);
	if (procno < 0 || procno >= idle_guard_shared->nslots)
		return;
	if (!ig_take_note(&idle_guard_shared->notes[procno], &copy))
		return;

	if (copy.by_conflict ?
		(edata->sqlerrcode != ERRCODE_T_R_SERIALIZATION_FAILURE ||
		 strcmp(edata->message_id,
				"terminating connection due to conflict with recovery") != 0) :
		(edata->sqlerrcode != ERRCODE_ADMIN_SHUTDOWN ||
		 strcmp(edata->message_id,
				"terminating connection due to administrator command") != 0))
		return;

	edata->sqlerrcode = copy.sqlerrcode;
	edata->message = pstrdup(copy.message);
	edata->detail = pstrdup(copy.detail);
	edata->hint = pstrdup(copy.hint);

	/*
	 * The server log shows detail_log in place of detail when there is one:
	 * from 18 on, "Signal sent by PID ..., UID ...".  Keep both there.
	 */
	if (edata->detail_log != NULL)
		edata->detail_log = psprintf("%s %s", copy.detail, edata->detail_log);
}

/*
 * Copy the note for this backend, if there is one, and clear it: the note
 * is used at most once.  Returns false when the note is empty, being
 * written, or meant for another backend.
 */
static bool
ig_take_note(IgEndNote *note, IgEndNote *copy)
{
	uint32		before = pg_atomic_read_u32(&note->changecount);

	if (before & 1)
		return false;
	pg_read_barrier();
	if (note->pid != MyProcPid || note->proc_start != MyStartTimestamp)
		return false;
	memcpy(copy, note, sizeof(IgEndNote));
	pg_read_barrier();
	if (pg_atomic_read_u32(&note->changecount) != before)
		return false;

	/*
	 * Clear it.  Only the worker writes notes, and only before it signals
	 * this backend, so nothing else writes it now; a write barrier makes the
	 * cleared pid visible before any later note.
	 */
	note->pid = 0;
	pg_write_barrier();
	return true;
}

/* Write the note of PGPROC index procno under its change counter */
static void
ig_write_note(int procno, const IgEndNote *content)
{
	IgEndNote  *note;

	if (procno < 0 || procno >= idle_guard_shared->nslots)
		return;
	note = &idle_guard_shared->notes[procno];
	pg_atomic_add_fetch_u32(&note->changecount, 1);
	pg_write_barrier();
	note->pid = content->pid;
	note->proc_start = content->proc_start;
	note->sqlerrcode = content->sqlerrcode;
	note->by_conflict = content->by_conflict;
	memcpy(note->message, content->message, sizeof(note->message));
	memcpy(note->detail, content->detail, sizeof(note->detail));
	memcpy(note->hint, content->hint, sizeof(note->hint));
	pg_write_barrier();
	pg_atomic_add_fetch_u32(&note->changecount, 1);
}

/* Append a duration in the largest unit that writes it exactly */
static void
ig_append_duration(StringInfo buf, int ms)
{
	if (ms % (60 * 60 * 1000) == 0)
		appendStringInfo(buf, "%dh", ms / (60 * 60 * 1000));
	else if (ms % (60 * 1000) == 0)
		appendStringInfo(buf, "%dmin", ms / (60 * 1000));
	else if (ms % 1000 == 0)
		appendStringInfo(buf, "%ds", ms / 1000);
	else
		appendStringInfo(buf, "%dms", ms);
}
