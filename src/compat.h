/*-------------------------------------------------------------------------
 *
 * compat.h
 *		Every PostgreSQL version difference idle_guard depends on, as small
 *		static inline wrappers, so that no other file needs a version #if.
 *
 * Supported: PostgreSQL 15 and later.
 *	16: lock-manager queues move from SHM_QUEUE/PROC_QUEUE to dlist/dclist;
 *		backend-status accessors renamed; SetSingleFuncCall removed.
 *	17: PGPROC's lxid moves into vxid; extensions name their wait events.
 *	18: fast-path lock slots become a variable number of 16-slot groups;
 *		PG_MODULE_MAGIC_EXT carries the module's name and version.
 *	19: PGPROC.links is renamed waitLink; recovery conflicts are sent
 *		with SignalRecoveryConflict() and one procsignal; the buffer-pin
 *		wait class is renamed; fewer headers are included by
 *		others (idle_guard includes access/htup_details.h and
 *		utils/lsyscache.h itself).  Checked against 19~rc1: anything in
 *		the lock manager, PGPROC or backend status may still move before
 *		19.0.
 *
 * Copyright (c) 2026, idle_guard developers
 *
 * IDENTIFICATION
 *	  src/compat.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef IDLE_GUARD_COMPAT_H
#define IDLE_GUARD_COMPAT_H

#include <signal.h>

#include "fmgr.h"
#include "funcapi.h"
#include "storage/ipc.h"
#include "storage/lock.h"
#include "storage/proc.h"
#include "storage/procarray.h"
#include "storage/procsignal.h"
#include "utils/backend_status.h"
#include "utils/guc.h"
#include "utils/wait_event.h"

#if PG_VERSION_NUM < 150000
#error "idle_guard requires PostgreSQL 15 or later"
#endif

/* Read a 32-bit field another process writes, once, without a lock */
#ifndef UINT32_ACCESS_ONCE
#define UINT32_ACCESS_ONCE(var) ((uint32) (*((volatile uint32 *) &(var))))
#endif

/*
 * Fast-path lock slots.  lock.c keeps these macros private; the layout is
 * three mode bits per slot (AccessShareLock .. RowExclusiveLock), slots
 * packed into one uint64 up to 17.
 */
#define IG_FP_BITS_PER_SLOT		3
#define IG_FP_LOCKNUMBER_OFFSET 1
#define IG_FP_MASK				((1 << IG_FP_BITS_PER_SLOT) - 1)

/* Number of fast-path relation slots of a backend */
static inline int
ig_fastpath_slots(void)
{
#if PG_VERSION_NUM >= 180000
	return FastPathLockSlotsPerBackend();
#else
	return FP_LOCK_SLOTS_PER_BACKEND;
#endif
}

/* Mode bits of one fast-path slot; bit b means lock mode b + 1 */
static inline uint32
ig_fastpath_bits(PGPROC *proc, int slot)
{
#if PG_VERSION_NUM >= 180000
	uint64		group = proc->fpLockBits[slot / FP_LOCK_SLOTS_PER_GROUP];

	return (uint32) ((group >> (IG_FP_BITS_PER_SLOT *
								(slot % FP_LOCK_SLOTS_PER_GROUP))) &
					 IG_FP_MASK);
#else
	return (uint32) ((proc->fpLockBits >> (IG_FP_BITS_PER_SLOT * slot)) &
					 IG_FP_MASK);
#endif
}

/* Local transaction id of a backend's current top-level transaction */
static inline LocalTransactionId
ig_proc_lxid(PGPROC *proc)
{
#if PG_VERSION_NUM >= 170000
	return proc->vxid.lxid;
#else
	return proc->lxid;
#endif
}

/*
 * The module magic block: from 18 on it also names the module and its
 * version, which pg_get_loaded_modules() shows.
 */
#if PG_VERSION_NUM >= 180000
#define IG_MODULE_MAGIC \
	PG_MODULE_MAGIC_EXT(.name = "idle_guard", .version = IDLE_GUARD_VERSION)
#else
#define IG_MODULE_MAGIC PG_MODULE_MAGIC
#endif

/*
 * Wait event the worker sleeps under: its own name ("IdleGuardMain") in
 * pg_stat_activity from 17 on, the generic "Extension" before.
 */
static inline uint32
ig_worker_wait_event(void)
{
#if PG_VERSION_NUM >= 170000
	static uint32 event = 0;

	if (event == 0)
		event = WaitEventExtensionNew("IdleGuardMain");
	return event;
#else
	return PG_WAIT_EXTENSION;
#endif
}

/* Number of backend-status entries in the local snapshot */
static inline int
ig_status_count(void)
{
	return pgstat_fetch_stat_numbackends();
}

/* i-th (1-based) entry of the local backend-status snapshot */
static inline LocalPgBackendStatus *
ig_status_entry(int i)
{
#if PG_VERSION_NUM >= 160000
	return pgstat_get_local_beentry_by_index(i);
#else
	return pgstat_fetch_stat_local_beentry(i);
#endif
}

/* Drop the cached backend-status snapshot so the next read is fresh */
static inline void
ig_status_clear(void)
{
	pgstat_clear_backend_activity_snapshot();
}

/*
 * Walk the PROCLOCKs of one lock (its holders and waiters).  Pass NULL to
 * get the first; returns NULL after the last.  Caller holds the lock's
 * partition lock.
 */
static inline PROCLOCK *
ig_lock_proclock_next(LOCK *lock, PROCLOCK *prev)
{
#if PG_VERSION_NUM >= 160000
	dlist_node *next;

	next = prev ? prev->lockLink.next : lock->procLocks.head.next;
	if (next == NULL || next == &lock->procLocks.head)
		return NULL;
	return dlist_container(PROCLOCK, lockLink, next);
#else
	return (PROCLOCK *) SHMQueueNext(&lock->procLocks,
									 prev ? &prev->lockLink : &lock->procLocks,
									 offsetof(PROCLOCK, lockLink));
#endif
}

/*
 * Walk the PROCLOCKs a backend has in one lock partition.  Caller holds
 * that partition's lock.
 */
static inline PROCLOCK *
ig_proc_proclock_next(PGPROC *proc, int partition, PROCLOCK *prev)
{
#if PG_VERSION_NUM >= 160000
	dlist_head *head = &proc->myProcLocks[partition];
	dlist_node *next;

	next = prev ? prev->procLink.next : head->head.next;
	if (next == NULL || next == &head->head)
		return NULL;
	return dlist_container(PROCLOCK, procLink, next);
#else
	SHM_QUEUE  *head = &proc->myProcLocks[partition];

	return (PROCLOCK *) SHMQueueNext(head, prev ? &prev->procLink : head,
									 offsetof(PROCLOCK, procLink));
#endif
}

/*
 * The PGPROC member that links a process into a lock's wait queue: "links"
 * until 18, "waitLink" from 19.
 */
#if PG_VERSION_NUM >= 190000
#define IG_PROC_WAIT_LINK waitLink
#else
#define IG_PROC_WAIT_LINK links
#endif

/*
 * Walk a lock's wait queue from its head (the first in line).  Caller
 * holds the lock's partition lock.
 */
static inline PGPROC *
ig_lock_waiter_next(LOCK *lock, PGPROC *prev)
{
#if PG_VERSION_NUM >= 160000
	dlist_node *next;

	next = prev ? prev->IG_PROC_WAIT_LINK.next : lock->waitProcs.dlist.head.next;
	if (next == NULL || next == &lock->waitProcs.dlist.head)
		return NULL;
	return dlist_container(PGPROC, IG_PROC_WAIT_LINK, next);
#else
	SHM_QUEUE  *next;

	next = prev ? prev->links.next : lock->waitProcs.links.next;
	if (next == NULL || next == &lock->waitProcs.links)
		return NULL;
	return (PGPROC *) next;
#endif
}

/*
 * Allocate a GUC check hook's "extra".  GUC frees it with free() up to 15
 * and with guc_free() (a pfree in GUC's own context) from 16 on, so it must
 * come from the matching allocator.  Returns NULL on out-of-memory (16+
 * has already logged it).
 */
static inline void *
ig_guc_malloc(size_t size)
{
#if PG_VERSION_NUM >= 160000
	return guc_malloc(LOG, size);
#else
	return malloc(size);
#endif
}

/*
 * Set up a materialized set-returning function (15 named it
 * SetSingleFuncCall; 16 kept only InitMaterializedSRF).
 */
static inline void
ig_init_srf(FunctionCallInfo fcinfo)
{
#if PG_VERSION_NUM >= 160000
	InitMaterializedSRF(fcinfo, 0);
#else
	SetSingleFuncCall(fcinfo, 0);
#endif
}

/*
 * Is this wait event the startup process waiting for a buffer pin (a
 * buffer-pin recovery conflict)?  15-16: class BufferPin; 17-18: the same
 * class, renamed; 19: event BufferCleanup of class Buffer.
 */
static inline bool
ig_wait_is_buffer_pin(uint32 wait_event_info)
{
#if PG_VERSION_NUM >= 190000
	return wait_event_info == WAIT_EVENT_BUFFER_CLEANUP;
#elif PG_VERSION_NUM >= 170000
	return (wait_event_info & 0xFF000000) == PG_WAIT_BUFFERPIN;
#else
	return (wait_event_info & 0xFF000000) == PG_WAIT_BUFFER_PIN;
#endif
}

/*
 * Tell a standby backend that it holds a lock WAL replay needs, the way
 * the startup process itself does when max_standby_streaming_delay runs
 * out: idle in a transaction, it ends with PostgreSQL's own FATAL
 * "terminating connection due to conflict with recovery" (SQLSTATE
 * 40001); outside a transaction it ignores the signal.  The caller must
 * not hold ProcArrayLock: 19 takes it to check that proc still belongs to
 * pid; before 19, the procsignal slot of proc is checked for pid.  Returns
 * false if the signal could not be sent (the process is gone).
 */
static inline bool
ig_signal_recovery_conflict(PGPROC *proc, int pid)
{
#if PG_VERSION_NUM >= 190000
	return SignalRecoveryConflict(proc, pid, RECOVERY_CONFLICT_LOCK);
#elif PG_VERSION_NUM >= 170000
	return SendProcSignal(pid, PROCSIG_RECOVERY_CONFLICT_LOCK,
						  GetNumberFromPGProc(proc)) == 0;
#else
	return SendProcSignal(pid, PROCSIG_RECOVERY_CONFLICT_LOCK,
						  proc->backendId) == 0;
#endif
}

/*
 * ClientAuthentication_hook, as libpq/auth.h declares it, with Port left
 * opaque: libpq/auth.h includes libpq/libpq-be.h, which includes the GSSAPI
 * headers when the server was built with GSSAPI (Debian's is), and the
 * server development package does not depend on them.  The hook has had
 * this type since PostgreSQL 9.1.
 */
struct Port;
typedef void (*IgClientAuthHook) (struct Port *port, int status);
extern PGDLLIMPORT IgClientAuthHook ClientAuthentication_hook;

/*
 * Send a signal to a backend and, where backends lead their own process
 * group, to its children too, the way pg_terminate_backend does.
 */
static inline int
ig_signal_backend(int pid, int sig)
{
#ifdef HAVE_SETSID
	return kill(-pid, sig);
#else
	return kill(pid, sig);
#endif
}

#endif							/* IDLE_GUARD_COMPAT_H */
