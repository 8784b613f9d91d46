/*-------------------------------------------------------------------------
 *
 * idle_guard.h
 *		The top of idle_guard: the background workers (worker.c,
 *		gid_worker.c) and their description (idle_guard.c, where _PG_init
 *		installs every hook).  report.c, the SQL functions, sits here too.
 *
 * The map of the files, by layer, is in docs/design.md.
 *
 * Copyright (c) 2026, idle_guard developers
 *
 * IDENTIFICATION
 *	  src/idle_guard.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef IDLE_GUARD_H
#define IDLE_GUARD_H

#include "postmaster/bgworker.h"

#include "sweep.h"

/* idle_guard.c */
extern void idle_guard_describe_worker(BackgroundWorker *worker,
									   const char *function_name,
									   const char *name, const char *type,
									   int restart_time);

/* worker.c */
extern PGDLLEXPORT void idle_guard_worker_main(Datum main_arg);

/* gid_worker.c: naming prepared transactions from the worker */
extern void idle_guard_worker_gids(IgSweep *sweep);
extern PGDLLEXPORT void idle_guard_gid_main(Datum main_arg);

#endif							/* IDLE_GUARD_H */
