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
 *
 * The entries are IgHistoryEntry as this build lays it out, so the header
 * names the format and the PostgreSQL major it was written for, and a file
 * that does not match is discarded, never converted: raise IG_STATE_FORMAT
 * whenever IgHistoryEntry (or anything in it) changes.  The one exception
 * is the file of idle_guard 1.5 (format 5), whose entries are the same as
 * format 6's: it is read once, on the upgrade from 1.5.  Its header ends
 * before pg_major (it ran on the same major: pg_upgrade does not carry the
 * file over).
 */
#define IG_STATE_FILE		PGSTAT_STAT_PERMANENT_DIRECTORY "/idle_guard.stat"
#define IG_STATE_MAGIC		0x49474831	/* "IGH1" */
#define IG_STATE_FORMAT		6	/* since 1.5.1 */
#define IG_STATE_FORMAT_1_5 5	/* 1.5's: the same entries, a shorter header */

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
	/* format 6 on */
	uint32		pg_major;		/* the PostgreSQL major it was written for */
	uint32		unused;
} IgStateFileHeader;

#define IG_HEADER_SIZE_1_5	offsetof(IgStateFileHeader, pg_major)

/* This build's PostgreSQL major */
#define IG_PG_MAJOR			(PG_VERSION_NUM / 100)

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
	hdr.pg_major = IG_PG_MAJOR;
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
 * is truncated, of another format, build (entry size) or PostgreSQL major,
 * or fails its checksum is ignored with a LOG message and everything
 * starts empty: it never stops the server.
 */
void
idle_guard_load_state(void)
{
	IgShared   *sh = idle_guard_shared;
	IgStateFileHeader hdr;
	size_t		header_size = IG_HEADER_SIZE_1_5;
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
	else if (fread(&hdr, IG_HEADER_SIZE_1_5, 1, file) != 1)
		problem = gettext_noop("The file is too short.");
	else if (hdr.magic != IG_STATE_MAGIC)
		problem = gettext_noop("The file is not an idle_guard state file.");
	else if (hdr.format < IG_STATE_FORMAT_1_5)
		problem = gettext_noop("The file was written by a version of idle_guard older than 1.5, whose history is not carried over.");
	else if (hdr.format != IG_STATE_FORMAT_1_5 &&
			 hdr.format != IG_STATE_FORMAT)
		problem = gettext_noop("The file was written by another version of idle_guard.");
	else if (hdr.format == IG_STATE_FORMAT &&
			 fread((char *) &hdr + IG_HEADER_SIZE_1_5,
				   sizeof(hdr) - IG_HEADER_SIZE_1_5, 1, file) != 1)
		problem = gettext_noop("The file is too short.");
	else if (hdr.format == IG_STATE_FORMAT && hdr.pg_major != IG_PG_MAJOR)
		problem = gettext_noop("The file was written for another major version of PostgreSQL.");
	else if (hdr.entry_size != sizeof(IgHistoryEntry))
		problem = gettext_noop("The file was written by another build of idle_guard.");
	else
	{
		if (hdr.format == IG_STATE_FORMAT)
			header_size = sizeof(hdr);
		COMP_CRC32C(crc, &hdr, header_size);
		for (i = 0; i < hdr.count && problem == NULL; i++)
		{
			IgHistoryEntry e;

			if (fread(&e, sizeof(e), 1, file) != 1)
				problem = gettext_noop("The file is truncated.");
			else
			{
				COMP_CRC32C(crc, &e, sizeof(e));
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
