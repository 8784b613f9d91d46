/*-------------------------------------------------------------------------
 *
 * persist.c
 *		The history and the counters across a clean restart: written to a
 *		file by the postmaster at shutdown and read back (then removed) at
 *		startup, the way pg_stat_statements keeps its statistics.
 *
 * Copyright (c) 2026, idle_guard developers
 *
 * IDENTIFICATION
 *	  src/persist.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <unistd.h>

#include "catalog/pg_control.h"
#include "common/controldata_utils.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "port/pg_crc32c.h"
#include "storage/fd.h"

#include "shared.h"

/*
 * The history and counters survive a clean restart in this file, written
 * by the postmaster at shutdown and read (then removed) at startup, the
 * way pg_stat_statements keeps its statistics.  A file from a crash is
 * never written; one that does not validate is ignored.
 */
#define IG_STATE_FILE		PGSTAT_STAT_PERMANENT_DIRECTORY "/idle_guard.stat"
#define IG_STATE_MAGIC		0x49474831	/* "IGH1" */
#define IG_STATE_FORMAT		5	/* 2: reason and gid (1.3); 3: action as a
								 * number, and dbid; 4: the record's standby
								 * part (1.4); 5: its client link (1.5) */

/*
 * The record, the entry's last member, as formats 2 to 4 laid it out: 1.5
 * added unreachable_timeout_ms to the policy, which moved every member
 * after it, and appended the link.  An older entry is read into the first
 * bytes of a new one, then its record is rebuilt from this layout
 * (ig_convert_v4_record).  Formats 2 and 3 end where the standby part
 * begins.
 */
#define IG_STATE_FORMAT_V4	4
#define IG_STATE_FORMAT_V3	3
typedef struct IgPolicyV4
{
	IgActionSetting action;
	int			blocking_timeout_ms;
	int			idle_timeout_ms;
	int			prepared_timeout_ms;
	bool		session_locks;
} IgPolicyV4;
typedef struct IgRecordV4
{
	char		query[IG_QUERY_LEN];
	TimestampTz xact_start;
	TimestampTz silent_since;
	int			nlocks;
	IgLockHeld	locks[IG_RECORD_MAX_LOCKS];
	int			nwaiters;
	IgWaiterRecord waiters[IG_RECORD_MAX_WAITERS];
	IgPolicyV4	policy;
	IgPolicySource policy_source;
	IgRecordStandby standby;	/* format 4 only */
} IgRecordV4;

StaticAssertDecl(offsetof(IgRecordV4, policy) == offsetof(IgRecord, policy),
				 "the record no longer begins as it did in format 4");
#define IG_V3_ENTRY_SIZE \
	(offsetof(IgHistoryEntry, record) + offsetof(IgRecordV4, standby))
#define IG_V4_ENTRY_SIZE \
	(offsetof(IgHistoryEntry, record) + sizeof(IgRecordV4))
StaticAssertDecl(sizeof(IgWaiterFact) == 16,
				 "a waiter's facts no longer have the size of format 3");
StaticAssertDecl(offsetof(IgHistoryEntry, record) + sizeof(IgRecord) ==
				 sizeof(IgHistoryEntry),
				 "the record is no longer the history entry's last member");

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

static void ig_convert_v2_entry(IgHistoryEntry *e);
static void ig_convert_v3_entry(IgHistoryEntry *e);
static void ig_convert_v4_record(IgHistoryEntry *e, size_t size);
static size_t ig_file_entry_size(uint32 format);

/*
 * Write the history ring and the counters to IG_STATE_FILE, at a clean
 * shutdown of the postmaster (an on_shmem_exit callback).  Written to a
 * temporary file first and renamed into place durably; a failure is
 * logged, never raised.
 */
void
idle_guard_save_state(int code, Datum arg)
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
void
idle_guard_load_state(void)
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
		problem = gettext_noop("The server did not shut down cleanly.");
	else if (fread(&hdr, sizeof(hdr), 1, file) != 1)
		problem = gettext_noop("The file is too short.");
	else if (hdr.magic != IG_STATE_MAGIC)
		problem = gettext_noop("The file is not an idle_guard state file.");
	else if (ig_file_entry_size(hdr.format) == 0 ||
			 hdr.entry_size != ig_file_entry_size(hdr.format))
		problem = gettext_noop("The file was written by another version of idle_guard.");
	else
	{
		size_t		size = hdr.entry_size;

		COMP_CRC32C(crc, &hdr, sizeof(hdr));
		for (i = 0; i < hdr.count && problem == NULL; i++)
		{
			IgHistoryEntry e;

			memset(&e, 0, sizeof(e));
			if (fread(&e, size, 1, file) != 1)
				problem = gettext_noop("The file is truncated.");
			else
			{
				COMP_CRC32C(crc, &e, size);
				if (hdr.format == IG_STATE_FORMAT_V2)
					ig_convert_v2_entry(&e);
				if (hdr.format <= IG_STATE_FORMAT_V4)
					ig_convert_v4_record(&e, size);
				if (hdr.format <= IG_STATE_FORMAT_V3)
					ig_convert_v3_entry(&e);
				/* later entries overwrite earlier ones past the ring size */
				if (sh->history_size > 0)
					sh->history[i % sh->history_size] = e;
			}
		}
		FIN_CRC32C(crc);
		if (problem == NULL &&
			(fread(&file_crc, sizeof(file_crc), 1, file) != 1 ||
			 !EQ_CRC32C(crc, file_crc)))
			problem = gettext_noop("The file's checksum does not match.");
	}
	FreeFile(file);

	if (problem != NULL)
	{
		ereport(LOG,
				(errmsg("idle_guard: ignoring file \"%s\"", IG_STATE_FILE),
				 errdetail("%s The history of idle_guard's actions and its counters start empty.",
						   _(problem))));
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
				(errmsg_plural("idle_guard: restored %u history entry from \"%s\"",
							   "idle_guard: restored %u history entries from \"%s\"",
							   hdr.count, hdr.count, IG_STATE_FILE)));
	}
	unlink(IG_STATE_FILE);
}

/*
 * The size of an entry in a file of this format, as this build reads it;
 * 0 for a format it cannot read.
 */
static size_t
ig_file_entry_size(uint32 format)
{
	switch (format)
	{
		case IG_STATE_FORMAT:
			return sizeof(IgHistoryEntry);
		case IG_STATE_FORMAT_V4:
			return IG_V4_ENTRY_SIZE;
		case IG_STATE_FORMAT_V3:
		case IG_STATE_FORMAT_V2:
			return IG_V3_ENTRY_SIZE;
	}
	return 0;
}

/*
 * Rebuild the record of an entry read from a format-2 to format-4 file
 * (size bytes, read into the first bytes of e) in today's layout: the
 * members before the policy stay where they are, the ones from the policy
 * on move.  Such an entry knows no unreachable rule (0, never) and no
 * client link (IG_LINK_NONE: rendered as null, as for an action before
 * 1.5); a format-2 or format-3 entry has no standby part either.
 */
static void
ig_convert_v4_record(IgHistoryEntry *e, size_t size)
{
	IgRecordV4	old;

	memset(&old, 0, sizeof(old));
	memcpy(&old, &e->record, size - offsetof(IgHistoryEntry, record));
	memset(&e->record.policy, 0,
		   sizeof(IgRecord) - offsetof(IgRecord, policy));
	e->record.policy.action = old.policy.action;
	e->record.policy.blocking_timeout_ms = old.policy.blocking_timeout_ms;
	e->record.policy.idle_timeout_ms = old.policy.idle_timeout_ms;
	e->record.policy.prepared_timeout_ms = old.policy.prepared_timeout_ms;
	e->record.policy.session_locks = old.policy.session_locks;
	e->record.policy.unreachable_timeout_ms = 0;
	e->record.policy_source = old.policy_source;
	e->record.standby = old.standby;
	e->record.link = IG_LINK_NONE;
}

/*
 * Complete an entry read from a format-2 or format-3 file: it has no
 * standby part, and the byte where a waiter now says whether it is WAL
 * replay was padding, with whatever it held.
 */
static void
ig_convert_v3_entry(IgHistoryEntry *e)
{
	int			i;

	e->record.standby.xmin_age = -1;	/* not recorded */
	for (i = 0; i < IG_RECORD_MAX_WAITERS; i++)
		e->record.waiters[i].fact.replay = false;
}

/*
 * Convert an entry read from a format-2 file, whose action was text where
 * format 3 has the action, dbid and an unused word.  The database of such
 * an entry is known by name only.
 */
static void
ig_convert_v2_entry(IgHistoryEntry *e)
{
	char text[	IG_V2_ACTION_LEN + 1];

	memcpy(text, &e->action, IG_V2_ACTION_LEN);
	text[		IG_V2_ACTION_LEN] = '\0';

	if (strcmp(text, "terminated") == 0)
		e->action = IG_OUTCOME_TERMINATED;
	else if (strcmp(text, "skipped") == 0)
		e->action = IG_OUTCOME_SKIPPED;
	else
		e->action = IG_OUTCOME_REPORTED;
	e->dbid = InvalidOid;
	e->flags = e->gid[0] != '\0' ? IG_HIST_GID_KNOWN : 0;
}
