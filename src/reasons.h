/*-------------------------------------------------------------------------
 *
 * reasons.h
 *		The list of silent shapes: every way a client can leave a backend
 *		waiting on it while locks are held, one line each.
 *
 * Everything idle_guard knows about a shape is on its line; the code that
 * differs by shape reads these columns, never the shape's name.  A new
 * shape is one line here and its classifier (backends.c, or prepared.c
 * for a silence without a backend).
 *
 * Columns:
 *	symbol			the IgReason value (policy.h)
 *	name			its name in the report, the log and the history
 *	waits			what the backend waits on while silent (IgClientWait):
 *					the re-check before a signal expects exactly that
 *	timing			where the silence's start comes from (IgTiming)
 *	idle_by			the setting that times the idle rule (IgIdleBy)
 *	may_end			whether the policy may terminate it (IgMayEnd)
 *	fastpath		it may hold fast-path locks (it is in a live
 *					transaction); otherwise all its locks are in the main
 *					lock table
 *	needs_waiter	it counts only while someone waits on it (and is looked
 *					for only while anyone waits on a lock)
 *	idle_in_xact	PostgreSQL's own idle-in-transaction handling applies:
 *					idle_guard.terminate_sqlstate may give it 25P03, and on
 *					a standby the recovery-conflict signal ends it
 *	words			what it did, in the ended client's FATAL ("... because
 *					it <words> for 12.0 s ..."); NULL: never ended
 *	hint			how the application avoids it, in that FATAL
 *	conflict_hint	the hint when the recovery-conflict signal ended it
 *
 * Kept in the order of the enum's values, which the history file stores.
 * This file has no include guard: it is included where the list is
 * expanded, with IG_REASON defined.
 *
 * Copyright (c) 2026, idle_guard developers
 *
 * IDENTIFICATION
 *	  src/reasons.h
 *
 *-------------------------------------------------------------------------
 */

/* symbol, name, waits, timing, idle_by, may_end, fastpath, needs_waiter,
 * idle_in_xact, words, hint, conflict_hint */
IG_REASON(IG_REASON_IDLE_XACT, "idle in transaction",
		  IG_WAITS_READ, IG_TIMED_BY_STATE, IG_IDLE_BY_IDLE_TIMEOUT,
		  IG_MAY_END, true, false, true,
		  "was idle in transaction",
		  "Commit or roll back each transaction promptly; do not keep one open while waiting for a user or another service.",
		  "On a standby an open transaction holds back WAL replay: commit or roll back promptly. You can reconnect and repeat your command.")
IG_REASON(IG_REASON_CLIENT_WRITE, "client not reading",
		  IG_WAITS_WRITE, IG_TIMED_BY_WAKEUPS, IG_IDLE_BY_IDLE_TIMEOUT,
		  IG_MAY_END, true, false, false,
		  "waited for its client to read results",
		  "Read every result the server sends, or cancel the query.",
		  NULL)
IG_REASON(IG_REASON_REQUEST_INCOMPLETE, "request incomplete",
		  IG_WAITS_READ, IG_TIMED_BY_WATCH, IG_IDLE_BY_IDLE_TIMEOUT,
		  IG_MAY_END, true, false, false,
		  "waited for the rest of its client's request",
		  "End each extended-query request with Sync (in libpq, a pipeline with PQpipelineSync).",
		  NULL)
IG_REASON(IG_REASON_PREPARED, "prepared",
		  IG_WAITS_NOTHING, IG_TIMED_ONCE, IG_IDLE_BY_PREPARED_TIMEOUT,
		  IG_MAY_NOT_END, false, false, false,
		  NULL,
		  NULL,
		  NULL)
IG_REASON(IG_REASON_SESSION_LOCK, "session lock",
		  IG_WAITS_READ, IG_TIMED_BY_STATE, IG_IDLE_BY_NOTHING,
		  IG_MAY_END_IF_SESSION_LOCKS, false, true, false,
		  "was idle holding a session-level lock",
		  "Release session-level locks, such as advisory locks, as soon as they are no longer needed.",
		  NULL)
