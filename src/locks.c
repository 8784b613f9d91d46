/*-------------------------------------------------------------------------
 *
 * locks.c
 *		The second step of the pipeline: which locks each silent session
 *		holds, and who waits on it, directly or through the lock queue.
 *
 * Cost model.  pg_locks (GetLockStatusData) and pg_blocking_pids
 * (GetBlockerStatusData) lock the whole lock manager per call; polling them
 * stalls every lock acquisition.  Here:
 *
 *	1. Fast-path relation locks are read per silent session under that
 *	   backend's fpInfoLock, with no partition lock held (lock.c's ordering
 *	   rule: fpInfoLock before any partition lock, never the reverse).
 *	2. A scan of the proc array, without locks, counts backends waiting on
 *	   a heavyweight lock.
 *	3. Only when needed, one pass takes the 16 partition locks shared, in
 *	   order, walks each silent session's own PROCLOCK lists (its locks in
 *	   the main table) and each waiter's awaited lock (its hard and soft
 *	   blockers), and releases them in reverse order.  Its cost is the
 *	   number of those locks, not the size of the lock table.
 *
 * Wait graph.  A waiter W has an edge to every backend holding a lock that
 * conflicts with W's request (hard block) and to every backend ahead of W
 * in the same wait queue whose request conflicts with it (soft block),
 * ignoring members of W's own lock group, as pg_blocking_pids does.  Nodes
 * are lock-group leaders, keyed by their index in the proc array, so a
 * prepared transaction (pid 0) is a node too.  A session's direct waiters
 * have an edge to it; its total waiters are everyone who reaches it: s1
 * idle holding AccessShareLock, s2's ALTER TABLE waiting on s1, s3's SELECT
 * queued behind s2: s1 has one direct and two total waiters.  On a hot
 * standby the startup process, replaying a lock the primary took, waits
 * in the same queues and is a node like the others (replay.c).
 *
 * Copyright (c) 2026, idle_guard developers
 *
 * IDENTIFICATION
 *	  src/locks.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/twophase.h"
#include "port/pg_bitutils.h"
#include "storage/lock.h"
#include "storage/lwlock.h"
#include "storage/proc.h"

#include "compat.h"
#include "locks.h"

/* One edge of the wait graph: waiter waits on blocker */
typedef struct IgEdge
{
	int			waiter;
	int			blocker;
} IgEdge;

/* Edges collected during the lock-table pass */
typedef struct IgEdges
{
	IgEdge	   *edges;
	int			nedges;
	int			maxedges;
} IgEdges;

/* What the lock-table pass learns about each waiting node */
typedef struct IgNodeWait
{
	int			pid;			/* its lock-group leader's pid */
	uint8		mode;			/* the mode it requests */
	uint8		locktype;		/* the type of lock it waits on */
	bool		replay;			/* it is WAL replay */
	TimestampTz wait_start;
} IgNodeWait;

static void ig_add_edge(IgEdges *e, int waiter, int blocker);
static void ig_collect_waiter_edges(PGPROC *proc, IgEdges *edges,
									IgNodeWait *nodes, int replay_pid);
static void ig_count_main_table_locks(IgSession *s, PGPROC *proc);
static void ig_count_waiters(IgSweep *sweep, IgEdges *edges,
							 const IgNodeWait *nodes, int nnodes);
static void ig_describe_held(IgSession *s, const IgLockHeld *lock);
static int	ig_cmp_waiter(const void *a, const void *b);

/* Index in the proc array of a proc's lock-group leader */
static inline int
ig_leader_node(PGPROC *proc)
{
	PGPROC	   *leader = proc->lockGroupLeader ? proc->lockGroupLeader : proc;

	return (int) (leader - ProcGlobal->allProcs);
}

/*
 * idle_guard_fastpath_locks
 *		Count each session's fast-path relation locks and settle, where it
 *		can, whether the session holds locks at all.
 *
 * A session with an xid or a fast-path lock certainly holds locks.  One
 * with neither may still hold main-table locks (advisory, strong relation
 * locks); only the lock-table pass can tell, so holds_known stays false.
 */
void
idle_guard_fastpath_locks(IgSweep *sweep)
{
	int			i;

	for (i = 0; i < sweep->nsessions; i++)
	{
		IgSession  *s = &sweep->sessions[i];
		PGPROC	   *proc = &ProcGlobal->allProcs[s->procno];
		int			slot;

		/*
		 * Outside a live transaction (between transactions, or prepared)
		 * every lock is in the main table; the lock-table pass settles it.
		 */
		if (!idle_guard_reason(s->reason)->fastpath)
		{
			s->facts.holds_locks = TransactionIdIsValid(s->xid);
			s->holds_known = true;
			continue;
		}

		LWLockAcquire(&proc->fpInfoLock, LW_SHARED);
		if (proc->pid == s->key.pid)
		{
			for (slot = 0; slot < ig_fastpath_slots(); slot++)
			{
				uint32		bits = ig_fastpath_bits(proc, slot);
				int			mode;

				IgLockHeld	held = {0};

				if (bits == 0)
					continue;
				s->locks_held += pg_popcount32(bits);
				mode = pg_leftmost_one_pos32(bits) + IG_FP_LOCKNUMBER_OFFSET;
				if (mode > s->strongest_mode)
					s->strongest_mode = mode;
				held.locktype = LOCKTAG_RELATION;
				held.fastpath = true;
				held.modes = (uint16) (bits << IG_FP_LOCKNUMBER_OFFSET);
				held.field1 = proc->databaseId;
				held.field2 = proc->fpRelId[slot];
				ig_describe_held(s, &held);
			}
		}
		LWLockRelease(&proc->fpInfoLock);

		s->facts.holds_locks = s->locks_held > 0 || TransactionIdIsValid(s->xid);
		s->holds_known = s->facts.holds_locks;
	}
}

/*
 * idle_guard_count_lock_waiters
 *		How many backends wait on a heavyweight lock right now.
 *
 * Reads each PGPROC's waitLock without a lock: a pointer read is atomic,
 * and this is only the pre-filter that decides whether the lock-table pass
 * must look for waiters; that pass reads the field again under the
 * partition locks.
 */
int
idle_guard_count_lock_waiters(void)
{
	int			n = 0;
	int			i;

	for (i = 0; i < ProcGlobal->allProcCount; i++)
	{
		PGPROC	   *proc = &ProcGlobal->allProcs[i];

		if (proc->pid != 0 && proc->waitLock != NULL)
			n++;
	}
	return n;
}

/*
 * idle_guard_lock_table_pass
 *		With every lock partition held shared: count each session's
 *		main-table locks and, if anyone waits, build the wait graph; then
 *		count each session's direct and total waiters.  A session that
 *		anyone waits on holds locks, whatever the count says.
 *
 * A fast-path lock can be moved to the main table between step 1 and this
 * pass and so be counted twice; the count is a report figure, never the
 * reason for an action, so the window is accepted.
 */
void
idle_guard_lock_table_pass(IgSweep *sweep)
{
	int			nnodes = ProcGlobal->allProcCount + max_prepared_xacts;
	IgNodeWait *nodes = (IgNodeWait *) palloc0(sizeof(IgNodeWait) * nnodes);
	IgEdges		edges = {0};
	int			i;

	for (i = 0; i < NUM_LOCK_PARTITIONS; i++)
		LWLockAcquire(LockHashPartitionLockByIndex(i), LW_SHARED);

	for (i = 0; i < sweep->nsessions; i++)
	{
		IgSession  *s = &sweep->sessions[i];
		PGPROC	   *proc = &ProcGlobal->allProcs[s->procno];

		/* still the same backend, or the same prepared transaction */
		if (proc->pid == s->key.pid &&
			(s->reason != IG_REASON_PREPARED ||
			 TransactionIdEquals(proc->xid, s->xid)))
			ig_count_main_table_locks(s, proc);
	}

	if (sweep->nwaiters > 0)
	{
		for (i = 0; i < ProcGlobal->allProcCount; i++)
		{
			PGPROC	   *proc = &ProcGlobal->allProcs[i];

			if (proc->pid != 0 && proc->waitLock != NULL)
				ig_collect_waiter_edges(proc, &edges, nodes,
										sweep->replay.pid);
		}
	}

	for (i = NUM_LOCK_PARTITIONS; --i >= 0;)
		LWLockRelease(LockHashPartitionLockByIndex(i));

	ig_count_waiters(sweep, &edges, nodes, nnodes);
}

/*
 * Count the locks a session holds in the main lock table, leaving out its
 * own transaction and virtual-transaction locks (every transaction holds
 * those; they block only who waits on the transaction, which its xid
 * already says).  Caller holds every partition lock.
 */
static void
ig_count_main_table_locks(IgSession *s, PGPROC *proc)
{
	int			part;

	for (part = 0; part < NUM_LOCK_PARTITIONS; part++)
	{
		PROCLOCK   *pl;

		for (pl = ig_proc_proclock_next(proc, part, NULL); pl != NULL;
			 pl = ig_proc_proclock_next(proc, part, pl))
		{
			LOCKTAG    *tag = &pl->tag.myLock->tag;
			uint32		mask = (uint32) pl->holdMask;
			int			mode;
			IgLockHeld	held = {0};

			if (mask == 0 || tag->locktag_type == LOCKTAG_VIRTUALTRANSACTION ||
				tag->locktag_type == LOCKTAG_TRANSACTION)
				continue;
			s->locks_held += pg_popcount32(mask);
			mode = pg_leftmost_one_pos32(mask);
			if (mode > s->strongest_mode)
				s->strongest_mode = mode;
			held.locktype = tag->locktag_type;
			held.modes = (uint16) mask;
			held.field1 = tag->locktag_field1;
			held.field2 = tag->locktag_field2;
			held.field3 = tag->locktag_field3;
			held.field4 = tag->locktag_field4;
			ig_describe_held(s, &held);
		}
	}
	s->facts.holds_locks = s->locks_held > 0 || TransactionIdIsValid(s->xid);
	s->holds_known = true;
}

/*
 * Add the edges of one waiting process: to the holders of a conflicting
 * lock and to the conflicting requests ahead of it in the queue.  The
 * startup process of a standby (replay_pid) is a waiter like any other.
 * Caller holds every partition lock, which also keeps lockGroupLeader
 * stable.
 */
static void
ig_collect_waiter_edges(PGPROC *proc, IgEdges *edges, IgNodeWait *nodes,
						int replay_pid)
{
	LOCK	   *lock = proc->waitLock;
	PGPROC	   *leader = proc->lockGroupLeader ? proc->lockGroupLeader : proc;
	int			waiter = ig_leader_node(proc);
	LOCKMASK	conflict;
	PROCLOCK   *pl;
	PGPROC	   *ahead;

	conflict = GetLocksMethodTable(lock)->conflictTab[proc->waitLockMode];
	nodes[waiter].pid = leader->pid;
	nodes[waiter].mode = (uint8) proc->waitLockMode;
	nodes[waiter].locktype = lock->tag.locktag_type;
	nodes[waiter].replay = replay_pid != 0 && leader->pid == replay_pid;
	nodes[waiter].wait_start =
		(TimestampTz) pg_atomic_read_u64(&proc->waitStart);

	for (pl = ig_lock_proclock_next(lock, NULL); pl != NULL;
		 pl = ig_lock_proclock_next(lock, pl))
	{
		if (pl->groupLeader == leader)
			continue;
		if ((pl->holdMask & conflict) != 0)
			ig_add_edge(edges, waiter,
						(int) (pl->groupLeader - ProcGlobal->allProcs));
	}

	for (ahead = ig_lock_waiter_next(lock, NULL);
		 ahead != NULL && ahead != proc;
		 ahead = ig_lock_waiter_next(lock, ahead))
	{
		PGPROC	   *aleader = ahead->lockGroupLeader ? ahead->lockGroupLeader : ahead;

		if (aleader == leader)
			continue;
		if ((conflict & LOCKBIT_ON(ahead->waitLockMode)) != 0)
			ig_add_edge(edges, waiter, ig_leader_node(ahead));
	}
}

/* Append one edge, growing the array as needed */
static void
ig_add_edge(IgEdges *e, int waiter, int blocker)
{
	if (e->nedges >= e->maxedges)
	{
		e->maxedges = Max(64, e->maxedges * 2);
		if (e->edges == NULL)
			e->edges = (IgEdge *) palloc(sizeof(IgEdge) * e->maxedges);
		else
			e->edges = (IgEdge *) repalloc(e->edges,
										   sizeof(IgEdge) * e->maxedges);
	}
	e->edges[e->nedges].waiter = waiter;
	e->edges[e->nedges].blocker = blocker;
	e->nedges++;
}

/*
 * From the edges, count for each session its direct waiters and, by a
 * breadth-first walk of the reversed graph, all sessions that wait on it
 * through any chain, and list their pids.  Linear in the graph per
 * session; the graph is stored as a compressed adjacency array.
 */
static void
ig_count_waiters(IgSweep *sweep, IgEdges *edges, const IgNodeWait *nodes,
				 int nnodes)
{
	int		   *start;
	int		   *adj;
	int		   *seen;
	int		   *queue;
	int			i;

	if (edges->nedges == 0)
		return;

	/* reversed adjacency: start[b] .. start[b+1] are the waiters of b */
	start = (int *) palloc0(sizeof(int) * (nnodes + 1));
	adj = (int *) palloc(sizeof(int) * edges->nedges);
	for (i = 0; i < edges->nedges; i++)
		start[edges->edges[i].blocker + 1]++;
	for (i = 0; i < nnodes; i++)
		start[i + 1] += start[i];
	{
		int		   *fill = (int *) palloc(sizeof(int) * nnodes);

		memcpy(fill, start, sizeof(int) * nnodes);
		for (i = 0; i < edges->nedges; i++)
			adj[fill[edges->edges[i].blocker]++] = edges->edges[i].waiter;
		pfree(fill);
	}

	seen = (int *) palloc0(sizeof(int) * nnodes);
	queue = (int *) palloc(sizeof(int) * nnodes);

	for (i = 0; i < sweep->nsessions; i++)
	{
		IgSession  *s = &sweep->sessions[i];
		int			stamp = i + 1;
		int			head = 0;
		int			tail = 0;
		int			k;

		seen[s->procno] = stamp;
		queue[tail++] = s->procno;
		while (head < tail)
		{
			int			node = queue[head++];

			for (k = start[node]; k < start[node + 1]; k++)
			{
				int			w = adj[k];

				if (seen[w] == stamp)
					continue;
				seen[w] = stamp;
				queue[tail++] = w;
				if (node == s->procno)
					s->blocked_direct++;
			}
		}
		/* queue[1 .. blocked_direct] are the direct waiters (BFS order) */

		s->facts.blocked_total = tail - 1;
		if (s->facts.blocked_total > 0)
		{
			/*
			 * Someone waits on it, so it holds a lock that matters even if
			 * that lock is only its own virtual transaction: CREATE INDEX
			 * CONCURRENTLY waits on the vxid of every older snapshot.
			 */
			s->facts.holds_locks = true;

			s->waiters = (IgWaiterFact *) palloc(sizeof(IgWaiterFact) *
												 s->facts.blocked_total);
			for (k = 0; k < s->facts.blocked_total; k++)
			{
				const IgNodeWait *nw = &nodes[queue[k + 1]];

				s->waiters[k].pid = nw->pid;
				s->waiters[k].mode = nw->mode;
				s->waiters[k].locktype = nw->locktype;
				s->waiters[k].wait_start = nw->wait_start;
				s->waiters[k].direct = (k < s->blocked_direct);
				s->waiters[k].replay = nw->replay;
				if (nw->replay)
					s->blocks_replay = true;
			}
			qsort(s->waiters, s->facts.blocked_total, sizeof(IgWaiterFact),
				  ig_cmp_waiter);
			s->blocked_pids = (int *) palloc(sizeof(int) * s->facts.blocked_total);
			for (k = 0; k < s->facts.blocked_total; k++)
				s->blocked_pids[k] = s->waiters[k].pid;
		}
	}
}

/* Keep the description of one held lock, up to IG_RECORD_MAX_LOCKS */
static void
ig_describe_held(IgSession *s, const IgLockHeld *lock)
{
	if (s->nheld < IG_RECORD_MAX_LOCKS)
		s->held[s->nheld++] = *lock;
}

/* qsort comparator for waiters, by pid */
static int
ig_cmp_waiter(const void *a, const void *b)
{
	int			x = ((const IgWaiterFact *) a)->pid;
	int			y = ((const IgWaiterFact *) b)->pid;

	return (x > y) - (x < y);
}
