/*-------------------------------------------------------------------------
 *
 * action.h
 *		The last stage of the pipeline, the worker's alone: the postmortem
 *		record (record.c), the words the ended client reads
 *		(client_message.c), and the LOG line, the re-check and the signal
 *		(action.c).
 *
 * The map of the files, by layer, is in docs/design.md.
 *
 * Copyright (c) 2026, idle_guard developers
 *
 * IDENTIFICATION
 *	  src/action.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef IDLE_GUARD_ACTION_H
#define IDLE_GUARD_ACTION_H

#include "shared.h"
#include "sweep.h"

/* record.c */
extern bool idle_guard_build_record(const IgSession *s, IgRecord *rec,
									IgEpisodeKey *key, BackendState *state);
extern Datum idle_guard_record_jsonb(const IgRecord *rec, Oid target_userid,
									 bool (*can_see) (Oid userid));

/* client_message.c */
extern void idle_guard_install_message_hook(void);
extern void idle_guard_note_end(const IgSession *s, bool by_conflict,
								TimestampTz now);
extern void idle_guard_note_clear(const IgSession *s);

/* action.c: what an episode needs after idle_guard_act() */
typedef enum IgActNext
{
	IG_ACT_DONE,				/* nothing more to do in this episode */
	IG_ACT_RETRY				/* look again after naptime */
} IgActNext;

extern IgActNext idle_guard_act(IgSession *s);

#endif							/* IDLE_GUARD_ACTION_H */
