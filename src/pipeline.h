/*-------------------------------------------------------------------------
 *
 * pipeline.h
 *		One pass of the pipeline (pipeline.c), shared by the worker and
 *		idle_guard_report(): the snapshot (snapshot.h), the locks and
 *		waiters (locks.h), each session's policy (settings.h) and the pure
 *		decision (policy.h).  The worker adds the action (action.h).
 *
 * The map of the files, by layer, is in docs/design.md.
 *
 * Copyright (c) 2026, idle_guard developers
 *
 * IDENTIFICATION
 *	  src/pipeline.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef IDLE_GUARD_PIPELINE_H
#define IDLE_GUARD_PIPELINE_H

#include "sweep.h"

extern void idle_guard_collect(IgSweep *sweep, const IgPolicy *defaults,
							   bool exact);

#endif							/* IDLE_GUARD_PIPELINE_H */
