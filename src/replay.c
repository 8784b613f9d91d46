/*-------------------------------------------------------------------------
 *
 * replay.c
 *		On a hot standby: what WAL replay (the startup process) is waiting
 *		for, read from its PGPROC.
 *
 * When replay meets a record that conflicts with what standby sessions
 * are doing, the startup process waits for them, and every later record
 * waits with it.  Lock conflicts (an AccessExclusiveLock from the primary:
 * ALTER, DROP, TRUNCATE, LOCK, vacuum truncation) put it in the ordinary
 * lock queue with its waitLock set, so the wait graph (locks.c) finds the
 * sessions it waits on like any other waiter's; but the startup process
 * is not in the proc array, so pg_blocking_pids() never sees it.  Snapshot,
 * tablespace and buffer-pin conflicts show only as its wait event: the
 * sessions in conflict are known to the startup process alone, so they are
 * reported here and never acted on by guess.
 *
 * "Since when" is the lock wait's own start for a lock; for the other
 * kinds, which have no timestamp, the first time this wait was seen at
 * the current replay position (kept in shared memory, so the worker and
 * every caller of the SQL functions agree).
 *
 * Copyright (c) 2026, idle_guard developers
 *
 * IDENTIFICATION
 *	  src/replay.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xlog.h"
#include "access/xlogrecovery.h"
#include "storage/lock.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "utils/backend_status.h"
#include "utils/timestamp.h"

#include "compat.h"
#include "shared.h"
#include "snapshot.h"

static int	ig_startup_pid(void);
static IgReplayWait ig_classify_wait(uint32 wait_event_info);
static bool ig_read_replay_lock(PGPROC *proc, IgReplay *replay);
static TimestampTz ig_wait_seen_since(IgReplayWait wait);

/*
 * idle_guard_replay_state
 *		Fill *replay with what WAL replay waits for now; all zero when the
 *		server is not in recovery.
 *
 * Reads the backend-status snapshot of the current transaction (the one
 * backends.c took, if any) to find the startup process, and its PGPROC
 * without a lock but for the lock it awaits, whose tag is read under that
 * lock's partition lock.
 */
void
idle_guard_replay_state(IgReplay *replay)
{
	PGPROC	   *proc;
	IgReplayWait wait;
	int			pid;

	memset(replay, 0, sizeof(IgReplay));
	if (!RecoveryInProgress())
		return;
	replay->in_recovery = true;

	pid = ig_startup_pid();
	proc = pid != 0 ? AuxiliaryPidGetProc(pid) : NULL;
	if (proc == NULL)
		return;
	replay->pid = pid;

	wait = ig_classify_wait(UINT32_ACCESS_ONCE(proc->wait_event_info));
	if (wait == IG_REPLAY_LOCK && !ig_read_replay_lock(proc, replay))
		wait = IG_REPLAY_NONE;	/* the wait ended as we looked */
	replay->wait = wait;
	if (wait != IG_REPLAY_LOCK)
		replay->since = ig_wait_seen_since(wait);
}

/*
 * idle_guard_replay_wait_name
 *		The name of a replay wait, as idle_guard_stats() shows it; NULL for
 *		none.
 */
const char *
idle_guard_replay_wait_name(IgReplayWait wait)
{
	switch (wait)
	{
		case IG_REPLAY_NONE:
			return NULL;
		case IG_REPLAY_LOCK:
			return "lock";
		case IG_REPLAY_SNAPSHOT:
			return "snapshot";
		case IG_REPLAY_TABLESPACE:
			return "tablespace";
		case IG_REPLAY_BUFFER_PIN:
			return "buffer pin";
	}
	return NULL;
}

/* The startup process's pid, from the backend-status snapshot; 0 if none */
static int
ig_startup_pid(void)
{
	int			nentries = ig_status_count();
	int			i;

	for (i = 1; i <= nentries; i++)
	{
		LocalPgBackendStatus *local = ig_status_entry(i);

		if (local != NULL &&
			local->backendStatus.st_backendType == B_STARTUP)
			return local->backendStatus.st_procpid;
	}
	return 0;
}

/* What kind of recovery conflict a wait event of the startup process is */
static IgReplayWait
ig_classify_wait(uint32 wait_event_info)
{
	if ((wait_event_info & 0xFF000000) == PG_WAIT_LOCK)
		return IG_REPLAY_LOCK;
	if (wait_event_info == WAIT_EVENT_RECOVERY_CONFLICT_SNAPSHOT)
		return IG_REPLAY_SNAPSHOT;
	if (wait_event_info == WAIT_EVENT_RECOVERY_CONFLICT_TABLESPACE)
		return IG_REPLAY_TABLESPACE;
	if (ig_wait_is_buffer_pin(wait_event_info))
		return IG_REPLAY_BUFFER_PIN;
	return IG_REPLAY_NONE;
}

/*
 * Read the lock the startup process waits for.  Its waitLock is read
 * without a lock, then confirmed under the partition lock that guards it:
 * the wait may end, and the LOCK be reused, in between.  Returns false if
 * the process no longer waits on that lock.
 */
static bool
ig_read_replay_lock(PGPROC *proc, IgReplay *replay)
{
	LOCK	   *lock = (LOCK *) (*((LOCK *volatile *) &proc->waitLock));
	LOCKTAG		tag;
	LWLock	   *partition;
	bool		waiting = false;

	if (lock == NULL)
		return false;
	memcpy(&tag, &lock->tag, sizeof(LOCKTAG));
	partition = LockHashPartitionLock(LockTagHashCode(&tag));

	LWLockAcquire(partition, LW_SHARED);
	if (proc->waitLock == lock &&
		memcmp(&lock->tag, &tag, sizeof(LOCKTAG)) == 0)
	{
		replay->lock.locktype = tag.locktag_type;
		replay->lock.modes = (uint16) LOCKBIT_ON(proc->waitLockMode);
		replay->lock.field1 = tag.locktag_field1;
		replay->lock.field2 = tag.locktag_field2;
		replay->lock.field3 = tag.locktag_field3;
		replay->lock.field4 = tag.locktag_field4;
		replay->since = (TimestampTz) pg_atomic_read_u64(&proc->waitStart);
		waiting = true;
	}
	LWLockRelease(partition);
	return waiting;
}

/*
 * When a wait without a timestamp of its own began, as far as anyone
 * looking has seen: the first sight of this kind of wait at the current
 * replay position.  Replay that moves on, or stops waiting, starts over.
 */
static TimestampTz
ig_wait_seen_since(IgReplayWait wait)
{
	IgShared   *sh = idle_guard_shared;
	XLogRecPtr	lsn = GetXLogReplayRecPtr(NULL);
	TimestampTz since = 0;

	LWLockAcquire(sh->lock, LW_EXCLUSIVE);
	if (wait == IG_REPLAY_NONE)
		sh->replay_seen_wait = IG_REPLAY_NONE;
	else
	{
		if (sh->replay_seen_wait != wait || sh->replay_seen_lsn != lsn)
		{
			sh->replay_seen_wait = wait;
			sh->replay_seen_lsn = lsn;
			sh->replay_seen_since = GetCurrentTimestamp();
		}
		since = sh->replay_seen_since;
	}
	LWLockRelease(sh->lock);
	return since;
}
