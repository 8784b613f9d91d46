/*-------------------------------------------------------------------------
 *
 * locks.h
 *		The second stage of the pipeline (locks.c): which locks each silent
 *		session holds, and who waits on it, directly or through the lock
 *		queue.
 *
 * The map of the files, by layer, is in docs/design.md.
 *
 * Copyright (c) 2026, idle_guard developers
 *
 * IDENTIFICATION
 *	  src/locks.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef IDLE_GUARD_LOCKS_H
#define IDLE_GUARD_LOCKS_H

#include "sweep.h"

extern void idle_guard_fastpath_locks(IgSweep *sweep);
extern int	idle_guard_count_lock_waiters(void);
extern void idle_guard_lock_table_pass(IgSweep *sweep);

#endif							/* IDLE_GUARD_LOCKS_H */
