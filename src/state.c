/*-------------------------------------------------------------------------
 *
 * state.c
 *		idle_guard's shared memory: the worker's identity, the counters
 *		shown by idle_guard_stats() and the ring of past actions shown by
 *		idle_guard_history().
 *
 * Locking: IgShared.lock (one LWLock of the "idle_guard" tranche) protects
 * every field but the per-backend policy slots, which each backend writes
 * for itself under a change counter (see session_policy.c), and
 * wake_pending, an atomic.  The worker writes under it held exclusively, for a few
 * stores at a time; the SQL functions read under it held shared and copy
 * what they need before building result rows.
 *
 * Copyright (c) 2026, idle_guard developers
 *
 * IDENTIFICATION
 *	  src/state.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <unistd.h>

#include "access/twophase.h"
#include "catalog/pg_control.h"
#include "common/controldata_utils.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "port/pg_crc32c.h"
#include "storage/fd.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "storage/shmem.h"

#include "idle_guard.h"

IgShared   *idle_guard_shared = NULL;

/*
 * The history and counters survive a clean restart in this file, written
 * by the postmaster at shutdown and read (then removed) at startup, the
 * way pg_stat_statements keeps its statistics.  A file from a crash is
 * never written; one that does not validate is ignored.
 */
#define IG_STATE_FILE		PGSTAT_STAT_PERMANENT_DIRECTORY "/idle_guard.stat"
#define IG_STATE_MAGIC		0x49474831	/* "IGH1" */
#define IG_STATE_FORMAT		3	/* 2: reason and gid (1.3); 3: action as
									 * a number, and dbid */

/*
 * Format 2 had "char action[12]" where format 3 has the action, dbid and
 * an unused word: same size, so a format-2 file is read and converted.
 */
#define IG_STATE_FORMAT_V2	2
#define IG_V2_ACTION_LEN	12
StaticAssertDecl(offsetof(IgHistoryEntry, detail) -
				 offsetof(IgHistoryEntry, action) == IG_V2_ACTION_LEN,
				 "history entry no longer has the size of format 2");

/* Header of the state file; entries and a CRC-32C of all before it follow */
typedef struct IgStateFileHeader
{
	uint32		magic;
	uint32		format;
	uint32		entry_size;		/* sizeof(IgHistoryEntry) of the writer */
	uint32		count;			/* entries that follow, oldest first */
	int64		sweeps;
	int64		reported;
	int64		terminated;
	int64		skipped;
	TimestampTz stats_reset;
} IgStateFileHeader;

static void ig_save_state(int code, Datum arg);
static void ig_load_state(void);
static void ig_convert_v2_entry(IgHistoryEntry *e);

/* Number of per-backend policy slots: one per regular PGPROC */
static int
ig_nslots(void)
{
	return MaxBackends + NUM_AUXILIARY_PROCS;
}

/* Bytes of the struct and the history ring, before the slots */
static Size
ig_ring_size(void)
{
	return MAXALIGN(add_size(offsetof(IgShared, history),
							 mul_size(sizeof(IgHistoryEntry),
									  idle_guard_history_size)));
}

/*
 * Number of episode memories and observations: one per PGPROC, prepared
 * transactions' dummies included
 */
static int
ig_nepisodes(void)
{
	return ig_nslots() + max_prepared_xacts;
}

/* Bytes of the per-backend policy slots */
static Size
ig_slots_size(void)
{
	return MAXALIGN(mul_size(sizeof(IgSlot), ig_nslots()));
}

/* Bytes of the worker's episode memory */
static Size
ig_episodes_size(void)
{
	return MAXALIGN(mul_size(sizeof(IgEpisodeMemory), ig_nepisodes()));
}

/* Bytes of the observations */
static Size
ig_observations_size(void)
{
	return MAXALIGN(mul_size(sizeof(IgObservation), ig_nepisodes()));
}

/*
 * Bytes of shared memory: struct, history ring, per-backend policy slots,
 * per-PGPROC episode memory of the worker, observations, and the gids of
 * prepared transactions
 */
static Size
ig_shmem_size(void)
{
	return add_size(add_size(add_size(add_size(ig_ring_size(),
											   ig_slots_size()),
									  ig_episodes_size()),
							 ig_observations_size()),
					mul_size(sizeof(IgPreparedGid), max_prepared_xacts));
}

/*
 * idle_guard_shmem_request
 *		Reserve shared memory and the LWLock.  Called from the
 *		shmem_request_hook, as PostgreSQL 15+ requires.
 */
void
idle_guard_shmem_request(void)
{
	RequestAddinShmemSpace(ig_shmem_size());
	RequestNamedLWLockTranche("idle_guard", 1);
}

/*
 * idle_guard_shmem_startup
 *		Create or attach to the shared state.  Runs in the postmaster at
 *		startup and after a crash restart (where it re-initializes).
 */
void
idle_guard_shmem_startup(void)
{
	bool		found;

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	idle_guard_shared = ShmemInitStruct("idle_guard", ig_shmem_size(), &found);
	if (!found)
	{
		int			i;

		memset(idle_guard_shared, 0, ig_shmem_size());
		idle_guard_shared->lock = &(GetNamedLWLockTranche("idle_guard"))->lock;
		idle_guard_shared->history_size = idle_guard_history_size;
		pg_atomic_init_u32(&idle_guard_shared->wake_pending, 0);
		idle_guard_current_policy(&idle_guard_shared->defaults);
		idle_guard_shared->nslots = ig_nslots();
		idle_guard_shared->slots = (IgSlot *)
			((char *) idle_guard_shared + ig_ring_size());
		for (i = 0; i < idle_guard_shared->nslots; i++)
			pg_atomic_init_u32(&idle_guard_shared->slots[i].changecount, 0);
		idle_guard_shared->episodes = (IgEpisodeMemory *)
			((char *) idle_guard_shared + ig_ring_size() + ig_slots_size());
		idle_guard_shared->observations = (IgObservation *)
			((char *) idle_guard_shared + ig_ring_size() + ig_slots_size() +
			 ig_episodes_size());
		idle_guard_shared->gids = (IgPreparedGid *)
			((char *) idle_guard_shared + ig_ring_size() + ig_slots_size() +
			 ig_episodes_size() + ig_observations_size());
		idle_guard_shared->stats_reset = GetCurrentTimestamp();
	}
	LWLockRelease(AddinShmemInitLock);

	/* The postmaster restores the state of the last clean shutdown */
	if (!IsUnderPostmaster)
	{
		if (!found)
			ig_load_state();
		on_shmem_exit(ig_save_state, (Datum) 0);
	}
}

/*
 * idle_guard_require_loaded
 *		Raise an error explaining the missing preload when this process has
 *		no shared state; called first by every SQL-callable function.
 */
void
idle_guard_require_loaded(void)
{
	if (idle_guard_shared == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("idle_guard must be loaded via \"shared_preload_libraries\""),
				 errhint("Add idle_guard to \"shared_preload_libraries\" in postgresql.conf and restart the server.")));
}

/*
 * idle_guard_wake_worker
 *		Ask the worker for a sweep now (a session's policy changed).
 */
void
idle_guard_wake_worker(void)
{
	Latch	   *latch;

	pg_atomic_write_u32(&idle_guard_shared->wake_pending, 1);
	LWLockAcquire(idle_guard_shared->lock, LW_SHARED);
	latch = idle_guard_shared->worker_latch;
	if (latch)
		SetLatch(latch);
	LWLockRelease(idle_guard_shared->lock);
}

/*
 * idle_guard_publish_defaults
 *		Publish the cluster-wide policy the worker applies, for
 *		idle_guard_report() to judge with the same values.
 */
void
idle_guard_publish_defaults(const IgPolicy *policy)
{
	LWLockAcquire(idle_guard_shared->lock, LW_EXCLUSIVE);
	idle_guard_shared->defaults = *policy;
	LWLockRelease(idle_guard_shared->lock);
}

/*
 * idle_guard_reset_state
 *		Clear the history and the counters, and remember when.
 */
void
idle_guard_reset_state(void)
{
	IgShared   *sh = idle_guard_shared;

	LWLockAcquire(sh->lock, LW_EXCLUSIVE);
	sh->history_next = 0;
	sh->sweeps = 0;
	sh->reported = 0;
	sh->terminated = 0;
	sh->skipped = 0;
	sh->stats_reset = GetCurrentTimestamp();
	LWLockRelease(sh->lock);
}

/*
 * Write the history ring and the counters to IG_STATE_FILE, at a clean
 * shutdown of the postmaster (an on_shmem_exit callback).  Written to a
 * temporary file first and renamed into place durably; a failure is
 * logged, never raised.
 */
static void
ig_save_state(int code, Datum arg)
{
	IgShared   *sh = idle_guard_shared;
	IgStateFileHeader hdr;
	pg_crc32c	crc;
	FILE	   *file;
	int64		first;
	int			i;

	if (code != 0 || sh == NULL)
		return;

	memset(&hdr, 0, sizeof(hdr));
	hdr.magic = IG_STATE_MAGIC;
	hdr.format = IG_STATE_FORMAT;
	hdr.entry_size = sizeof(IgHistoryEntry);
	hdr.count = (uint32) Min(sh->history_next, (int64) sh->history_size);
	hdr.sweeps = sh->sweeps;
	hdr.reported = sh->reported;
	hdr.terminated = sh->terminated;
	hdr.skipped = sh->skipped;
	hdr.stats_reset = sh->stats_reset;
	first = sh->history_next - hdr.count;

	file = AllocateFile(IG_STATE_FILE ".tmp", PG_BINARY_W);
	if (file == NULL)
		goto error;
	INIT_CRC32C(crc);
	COMP_CRC32C(crc, &hdr, sizeof(hdr));
	if (fwrite(&hdr, sizeof(hdr), 1, file) != 1)
		goto error;
	for (i = 0; i < (int) hdr.count; i++)
	{
		IgHistoryEntry *e = &sh->history[(first + i) % sh->history_size];

		COMP_CRC32C(crc, e, sizeof(IgHistoryEntry));
		if (fwrite(e, sizeof(IgHistoryEntry), 1, file) != 1)
			goto error;
	}
	FIN_CRC32C(crc);
	if (fwrite(&crc, sizeof(crc), 1, file) != 1)
		goto error;
	if (FreeFile(file))
	{
		file = NULL;
		goto error;
	}
	(void) durable_rename(IG_STATE_FILE ".tmp", IG_STATE_FILE, LOG);
	return;

error:
	ereport(LOG,
			(errcode_for_file_access(),
			 errmsg("could not write file \"%s\": %m",
					IG_STATE_FILE ".tmp")));
	if (file)
		FreeFile(file);
	unlink(IG_STATE_FILE ".tmp");
}

/*
 * Did the server last stop cleanly?  Read in the postmaster before the
 * startup process runs, pg_control still says how the last run ended: a
 * clean shutdown writes "shut down", while a crash or an immediate
 * shutdown leaves "in production" behind.  After an immediate shutdown the
 * postmaster still exits normally and writes the state file, but from
 * shared memory that processes killed mid-update may have left torn.
 */
static bool
ig_last_stop_was_clean(void)
{
	ControlFileData *control;
	bool		crc_ok;
	bool		clean;

	control = get_controlfile(DataDir, &crc_ok);
	clean = crc_ok && (control->state == DB_SHUTDOWNED ||
					   control->state == DB_SHUTDOWNED_IN_RECOVERY);
	pfree(control);
	return clean;
}

/*
 * Read IG_STATE_FILE back into shared memory at postmaster start, then
 * remove it.  A file left by a server that did not stop cleanly, one that
 * is truncated, from another format or build (entry size), or fails its
 * checksum is ignored with a LOG message and everything starts empty: it
 * never stops the server.
 */
static void
ig_load_state(void)
{
	IgShared   *sh = idle_guard_shared;
	IgStateFileHeader hdr;
	pg_crc32c	crc;
	pg_crc32c	file_crc;
	const char *problem = NULL;
	FILE	   *file;
	uint32		i;

	file = AllocateFile(IG_STATE_FILE, PG_BINARY_R);
	if (file == NULL)
	{
		if (errno != ENOENT)
			ereport(LOG,
					(errcode_for_file_access(),
					 errmsg("could not read file \"%s\": %m",
							IG_STATE_FILE)));
		return;
	}

	memset(&hdr, 0, sizeof(hdr));
	INIT_CRC32C(crc);
	if (!ig_last_stop_was_clean())
		problem = "the server did not shut down cleanly";
	else if (fread(&hdr, sizeof(hdr), 1, file) != 1)
		problem = "it is too short";
	else if (hdr.magic != IG_STATE_MAGIC)
		problem = "it is not an idle_guard state file";
	else if ((hdr.format != IG_STATE_FORMAT &&
			  hdr.format != IG_STATE_FORMAT_V2) ||
			 hdr.entry_size != sizeof(IgHistoryEntry))
		problem = "it was written by another version of idle_guard";
	else
	{
		COMP_CRC32C(crc, &hdr, sizeof(hdr));
		for (i = 0; i < hdr.count && problem == NULL; i++)
		{
			IgHistoryEntry e;

			if (fread(&e, sizeof(e), 1, file) != 1)
				problem = "it is truncated";
			else
			{
				COMP_CRC32C(crc, &e, sizeof(e));
				if (hdr.format == IG_STATE_FORMAT_V2)
					ig_convert_v2_entry(&e);
				/* later entries overwrite earlier ones past the ring size */
				if (sh->history_size > 0)
					sh->history[i % sh->history_size] = e;
			}
		}
		FIN_CRC32C(crc);
		if (problem == NULL &&
			(fread(&file_crc, sizeof(file_crc), 1, file) != 1 ||
			 !EQ_CRC32C(crc, file_crc)))
			problem = "its checksum does not match";
	}
	FreeFile(file);

	if (problem != NULL)
	{
		ereport(LOG,
				(errmsg("idle_guard: ignoring file \"%s\": %s",
						IG_STATE_FILE, problem),
				 errdetail("The history of idle_guard's actions and its counters start empty.")));
		sh->history_next = 0;
	}
	else
	{
		sh->history_next = hdr.count;
		sh->sweeps = hdr.sweeps;
		sh->reported = hdr.reported;
		sh->terminated = hdr.terminated;
		sh->skipped = hdr.skipped;
		sh->stats_reset = hdr.stats_reset;
		ereport(LOG,
				(errmsg("idle_guard: restored %u history entries from \"%s\"",
						hdr.count, IG_STATE_FILE)));
	}
	unlink(IG_STATE_FILE);
}

/*
 * Convert an entry read from a format-2 file, whose action was text where
 * format 3 has the action, dbid and an unused word.  The database of such
 * an entry is known by name only.
 */
static void
ig_convert_v2_entry(IgHistoryEntry *e)
{
	char		text[IG_V2_ACTION_LEN + 1];

	memcpy(text, &e->action, IG_V2_ACTION_LEN);
	text[IG_V2_ACTION_LEN] = '\0';
	if (strcmp(text, "terminated") == 0)
		e->action = IG_HIST_TERMINATED;
	else if (strcmp(text, "skipped") == 0)
		e->action = IG_HIST_SKIPPED;
	else
		e->action = IG_HIST_REPORTED;
	e->dbid = InvalidOid;
	e->unused = 0;
}

/*
 * idle_guard_history_action_name
 *		The word idle_guard_history().action shows.
 */
const char *
idle_guard_history_action_name(IgHistoryAction action)
{
	switch (action)
	{
		case IG_HIST_TERMINATED:
			return "terminated";
		case IG_HIST_SKIPPED:
			return "skipped";
		case IG_HIST_REPORTED:
			break;
	}
	return "reported";
}

/*
 * idle_guard_record
 *		Count one action and append it to the history ring, overwriting the
 *		oldest entry once the ring is full.
 *
 * The names are passed in resolved, since the caller has them for its LOG
 * line already; either may be NULL or empty when it could not be read
 * without waiting, and idle_guard_history() tries again from the OIDs.
 */
void
idle_guard_record(const IgSession *s, const char *usename,
				  const char *datname, const char *client, TimestampTz at,
				  IgHistoryAction action, const char *detail,
				  const IgRecord *record)
{
	IgShared   *sh = idle_guard_shared;
	IgHistoryEntry *e;

	LWLockAcquire(sh->lock, LW_EXCLUSIVE);

	if (action == IG_HIST_TERMINATED)
		sh->terminated++;
	else if (action == IG_HIST_SKIPPED)
		sh->skipped++;
	else
		sh->reported++;

	if (sh->history_size > 0)
	{
		e = &sh->history[sh->history_next % sh->history_size];
		memset(e, 0, sizeof(IgHistoryEntry));
		e->at = at;
		e->pid = s->key.pid;
		e->userid = s->userid;
		strlcpy(e->usename, usename ? usename : "", NAMEDATALEN);
		strlcpy(e->datname, datname ? datname : "", NAMEDATALEN);
		strlcpy(e->appname, s->appname, NAMEDATALEN);
		strlcpy(e->client_addr, client ? client : "", IG_ADDR_LEN);
		e->silent_for_us = at - s->silent_since;
		e->locks_held = s->locks_held;
		e->blocked_total = s->blocked_total;
		e->rule = s->decision.rule;
		e->action = action;
		e->dbid = s->dbid;
		strlcpy(e->detail, detail ? detail : "", sizeof(e->detail));
		e->reason = s->reason;
		strlcpy(e->gid, s->gid, GIDSIZE);
		if (record)
			e->record = *record;
		sh->history_next++;
	}

	LWLockRelease(sh->lock);
}
