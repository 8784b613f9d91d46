/*-------------------------------------------------------------------------
 *
 * snapshot.h
 *		The first stage of the pipeline: the silent sessions and prepared
 *		transactions, how long each has been silent, what WAL replay waits
 *		for, and what the kernel says of each one's client.
 *
 *	backends.c	snapshot of silent client backends (and, for the record,
 *				a fresh read of the target and its waiters)
 *	prepared.c	prepared transactions in the snapshot
 *	gid.c		their gids
 *	observe.c	timing of silences that have no timestamp
 *	replay.c	on a hot standby, what WAL replay waits for
 *	link.c		what the kernel says of each one's TCP client
 *
 * The map of the files, by layer, is in docs/design.md.
 *
 * Copyright (c) 2026, idle_guard developers
 *
 * IDENTIFICATION
 *	  src/snapshot.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef IDLE_GUARD_SNAPSHOT_H
#define IDLE_GUARD_SNAPSHOT_H

#include "shared.h"
#include "sweep.h"

/* backends.c */
extern void idle_guard_snapshot(IgSweep *sweep, bool include_idle);
extern const char *idle_guard_state_name(const IgSession *s);
extern bool idle_guard_client_addr_text(const SockAddr *addr, char *buf,
										size_t buflen);
extern bool idle_guard_describe_sessions(IgRecord *rec, int target_pid,
										 IgEpisodeKey *key,
										 BackendState *state);

/* prepared.c */
extern void idle_guard_add_prepared(IgSweep *sweep, int room);

/* gid.c */
extern void idle_guard_prepared_gids(IgSweep *sweep);
extern bool idle_guard_copy_published_gids(IgSweep *sweep);
extern void idle_guard_publish_gids(void);

/* observe.c */
extern void idle_guard_observe_sessions(IgSweep *sweep);

/* replay.c */
extern void idle_guard_replay_state(IgReplay *replay);
extern const char *idle_guard_replay_wait_name(IgReplayWait wait);

/* link.c */
extern void idle_guard_client_links(IgSweep *sweep);

#endif							/* IDLE_GUARD_SNAPSHOT_H */
