/*-------------------------------------------------------------------------
 *
 * backends.c
 *		The first step of the pipeline: a snapshot of the client backends
 *		that are silent, i.e. waiting on their client while it owes them
 *		something, with what identifies each one's silent episode.
 *
 * Backend status comes from the backend-status snapshot API (the same data
 * pg_stat_activity shows), read fresh on every call; the wait event and
 * local transaction id come from each backend's PGPROC, found through a
 * pid map built in one scan of the proc array, so the whole step is linear
 * in the number of backends and takes no heavyweight-lock-manager lock.
 *
 * Copyright (c) 2026, idle_guard developers
 *
 * IDENTIFICATION
 *	  src/backends.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <netdb.h>

#include "common/ip.h"
#include "access/transam.h"
#include "access/twophase.h"
#include "miscadmin.h"
#include "storage/proc.h"
#include "utils/backend_status.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/wait_event.h"

#include "compat.h"
#include "snapshot.h"

/* Entry of the pid -> PGPROC index map */
typedef struct IgPidEntry
{
	int			pid;			/* hash key */
	int			procno;
} IgPidEntry;

/*
 * Map every live regular PGPROC's pid to its index in allProcs.  Reads
 * pid fields without a lock: the map is only a hint, every use checks the
 * PGPROC's pid again, and the kill path re-validates under ProcArrayLock.
 */
static HTAB *
ig_build_pid_map(void)
{
	HASHCTL		ctl;
	HTAB	   *map;
	int			i;

	ctl.keysize = sizeof(int);
	ctl.entrysize = sizeof(IgPidEntry);
	ctl.hcxt = CurrentMemoryContext;
	map = hash_create("idle_guard pid map", MaxBackends,
					  &ctl, HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);

	for (i = 0; i < ProcGlobal->allProcCount; i++)
	{
		int			pid = ProcGlobal->allProcs[i].pid;
		IgPidEntry *e;

		if (pid == 0)
			continue;
		e = hash_search(map, &pid, HASH_ENTER, NULL);
		e->procno = i;
	}
	return map;
}

/*
 * Why a client backend in this state, waiting on this event, is silent, if
 * it is: waiting on its client, in or out of a statement (the classifier
 * of reasons.h's shapes that have a backend).  Session-level locks can
 * keep an idle session (or one in an aborted transaction, whose other
 * locks are gone) relevant.
 */
static bool
ig_silent_reason(BackendState state, uint32 wait_event_info,
				 IgReason *reason)
{
	switch (state)
	{
		case STATE_IDLEINTRANSACTION:
			*reason = IG_REASON_IDLE_XACT;
			return true;
		case STATE_RUNNING:
			if (wait_event_info == WAIT_EVENT_CLIENT_WRITE)
			{
				*reason = IG_REASON_CLIENT_WRITE;
				return true;
			}
			if (wait_event_info == WAIT_EVENT_CLIENT_READ)
			{
				*reason = IG_REASON_REQUEST_INCOMPLETE;
				return true;
			}
			return false;
		case STATE_IDLE:
		case STATE_IDLEINTRANSACTION_ABORTED:
			*reason = IG_REASON_SESSION_LOCK;
			return true;
		default:
			return false;
	}
}

/*
 * idle_guard_snapshot
 *		Fill sweep->sessions with every silent client backend, leaving room
 *		for max_prepared_xacts more entries (idle_guard_add_prepared()).
 *
 * Only client backends count: walsenders, autovacuum, background workers
 * (idle_guard's own among them) are never judged.  A backend is silent
 * when it waits on its client while its client owes it something: idle in
 * a transaction, or active but blocked sending results (the client does
 * not read) or reading the rest of a request.  Idle sessions and those in
 * an aborted transaction hold at most session-level locks; like every
 * shape that needs a waiter (reasons.h), they are listed only when
 * include_idle, and count only if someone waits on them.
 */
void
idle_guard_snapshot(IgSweep *sweep, bool include_idle)
{
	HTAB	   *pidmap;
	int			nentries;
	int			room;
	int			i;
	TransactionId next_xid = ReadNextTransactionId();

	ig_status_clear();
	nentries = ig_status_count();
	pidmap = ig_build_pid_map();

	room = nentries + max_prepared_xacts;
	sweep->nsessions = 0;
	sweep->sessions = (IgSession *) palloc0(sizeof(IgSession) *
											Max(room, 1));

	for (i = 1; i <= nentries; i++)
	{
		LocalPgBackendStatus *local = ig_status_entry(i);
		PgBackendStatus *be;
		IgPidEntry *pe;
		PGPROC	   *proc;
		IgSession  *s;
		IgReason	reason;
		uint32		wait_event_info;

		if (local == NULL)
			continue;
		be = &local->backendStatus;
		if (be->st_procpid == 0 || be->st_procpid == MyProcPid)
			continue;
		if (be->st_backendType != B_BACKEND)
			continue;

		pe = hash_search(pidmap, &be->st_procpid, HASH_FIND, NULL);
		if (pe == NULL)
			continue;			/* exited since the status was read */
		proc = &ProcGlobal->allProcs[pe->procno];
		wait_event_info = UINT32_ACCESS_ONCE(proc->wait_event_info);
		if (!ig_silent_reason(be->st_state, wait_event_info, &reason) ||
			(idle_guard_reason(reason)->needs_waiter && !include_idle))
			continue;

		s = &sweep->sessions[sweep->nsessions++];
		s->key.pid = be->st_procpid;
		s->key.proc_start = be->st_proc_start_timestamp;
		s->key.state_start = be->st_state_start_timestamp;
		s->key.lxid = ig_proc_lxid(proc);
		s->reason = reason;
		s->facts.silent_since = be->st_state_start_timestamp;
		s->procno = pe->procno;
		s->userid = be->st_userid;
		s->dbid = be->st_databaseid;
		s->state = be->st_state;
		s->wait_event_info = wait_event_info;
		s->xact_start = be->st_xact_start_timestamp;
		s->xid = local->backend_xid;
		s->xmin = local->backend_xmin;
		/* as age(backend_xmin) computes it */
		s->xmin_age = TransactionIdIsNormal(s->xmin) ?
			(int32) (next_xid - s->xmin) : -1;
		strlcpy(s->appname, be->st_appname ? be->st_appname : "",
				NAMEDATALEN);
		memcpy(&s->clientaddr, &be->st_clientaddr, sizeof(SockAddr));
		s->strongest_mode = NoLock;
	}

	hash_destroy(pidmap);
}

/*
 * idle_guard_state_name
 *		The state a session is in, in pg_stat_activity's words, or
 *		"prepared" for a prepared transaction.
 */
const char *
idle_guard_state_name(const IgSession *s)
{
	if (s->reason == IG_REASON_PREPARED)
		return "prepared";
	switch (s->state)
	{
		case STATE_RUNNING:
			return "active";
		case STATE_IDLE:
			return "idle";
		case STATE_IDLEINTRANSACTION:
			return "idle in transaction";
		case STATE_IDLEINTRANSACTION_ABORTED:
			return "idle in transaction (aborted)";
		default:
			break;
	}
	return "unknown";
}

/*
 * idle_guard_describe_sessions
 *		When acting on a session: read a fresh status snapshot once, and
 *		from it fill the pid, process start and state start of key (not
 *		lxid, which lives in the PGPROC) and *state with the target's
 *		current status, for the re-check before a signal; and copy into the
 *		record the target's last query and, for each waiter listed in rec,
 *		its role, application name and current query (each clipped to the
 *		record's bounds).  A waiter that has gone keeps empty fields.
 *		Returns false if no backend has the target's pid any more.
 */
bool
idle_guard_describe_sessions(IgRecord *rec, int target_pid,
							 IgEpisodeKey *key, BackendState *state)
{
	bool		found = false;
	int			nentries;
	int			i;

	ig_status_clear();
	nentries = ig_status_count();
	for (i = 1; i <= nentries; i++)
	{
		LocalPgBackendStatus *local = ig_status_entry(i);
		PgBackendStatus *be;
		char	   *query;
		int			w;

		if (local == NULL)
			continue;
		be = &local->backendStatus;
		if (be->st_procpid == 0)
			continue;

		if (be->st_procpid == target_pid)
		{
			found = true;
			key->pid = target_pid;
			key->proc_start = be->st_proc_start_timestamp;
			key->state_start = be->st_state_start_timestamp;
			*state = be->st_state;
			query = pgstat_clip_activity(be->st_activity_raw);
			strlcpy(rec->query, query, IG_QUERY_LEN);
			pfree(query);
			continue;
		}
		for (w = 0; w < rec->nwaiters; w++)
		{
			IgWaiterRecord *wr = &rec->waiters[w];

			if (wr->fact.pid != be->st_procpid)
				continue;
			wr->userid = be->st_userid;
			strlcpy(wr->appname, be->st_appname ? be->st_appname : "",
					NAMEDATALEN);
			query = pgstat_clip_activity(be->st_activity_raw);
			strlcpy(wr->query, query, IG_WAITER_QUERY_LEN);
			pfree(query);
			break;
		}
	}
	return found;
}

/*
 * idle_guard_client_addr_text
 *		Write a client's IP address as text, the way pg_stat_activity shows
 *		client_addr.  Returns false for a Unix-socket or unknown client.
 */
bool
idle_guard_client_addr_text(const SockAddr *addr, char *buf, size_t buflen)
{
	char		host[NI_MAXHOST];

	if (addr->addr.ss_family != AF_INET && addr->addr.ss_family != AF_INET6)
		return false;

	host[0] = '\0';
	if (pg_getnameinfo_all(&addr->addr, addr->salen, host, sizeof(host),
						   NULL, 0, NI_NUMERICHOST | NI_NUMERICSERV) != 0)
		return false;
	clean_ipv6_addr(addr->addr.ss_family, host);
	strlcpy(buf, host, buflen);
	return true;
}
