/*-------------------------------------------------------------------------
 *
 * names.c
 *		Catalog reads that never wait: role and database names for the LOG
 *		line, the history and the report, relation names for the report
 *		and the postmortem record, and the role exemption list resolved to
 *		roles.
 *
 * A silent session may itself hold a lock on a catalog: "BEGIN; LOCK
 * TABLE pg_authid;" and gone.  Logins queue behind it, and so would any
 * syscache miss on that catalog, which opens it with AccessShareLock.  If
 * the worker queued there it would guard nothing until the holder left on
 * its own: the outage idle_guard exists to end.  So every catalog read
 * here first takes the lock of the catalog and of the index the read
 * uses, conditionally, and gives up when either is held in a conflicting
 * mode; the caller then shows the OID.  (Holding both locks ourselves,
 * the syscache's own lock requests are granted from our local lock
 * table without waiting.)
 *
 * Names found are kept in a per-process cache, flushed whenever pg_authid
 * or pg_database change (a syscache invalidation), so a name read once is
 * known afterwards without any lock.  A pile-up cannot flush it: the
 * holder's own catalog changes are sent only when it commits, and nobody
 * else can change a catalog it holds locked.
 *
 * idle_guard.exempt_roles names roles, but a session is known by its role
 * OID.  Each time the list or pg_authid changes, the roles of the list are
 * looked up by name (conditionally too) and put in the cache; from then on
 * a role whose name the cache lacks is certainly not exempt.  If the list
 * cannot be resolved (pg_authid locked since it changed), a role not in
 * the cache is treated as not exempt.
 *
 * Copyright (c) 2026, idle_guard developers
 *
 * IDENTIFICATION
 *	  src/names.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_class.h"
#include "catalog/pg_database.h"
#include "miscadmin.h"
#include "storage/lmgr.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/syscache.h"

#include "names.h"
#include "settings.h"

/* One cached name, keyed by OID */
typedef struct IgNameEntry
{
	Oid			oid;			/* hash key */
	NameData	name;
} IgNameEntry;

/* A catalog that names objects by OID, and the cache of its names */
typedef struct IgNameCache
{
	HTAB	   *hash;			/* NULL until first used, or after a flush */
	bool		stale;			/* the catalog changed: flush before use */
	const char *label;			/* for the hash table's name */
	Oid			relid;			/* the catalog */
	Oid			indexid;		/* its index on oid */
	int			cacheid;		/* its syscache by oid */
	AttrNumber	attnum;			/* its name column */
} IgNameCache;

static IgNameCache ig_roles = {NULL, false, "idle_guard role names",
	AuthIdRelationId, AuthIdOidIndexId, AUTHOID, Anum_pg_authid_rolname
};
static IgNameCache ig_databases = {NULL, false, "idle_guard database names",
	DatabaseRelationId, DatabaseOidIndexId, DATABASEOID, Anum_pg_database_datname
};

/* The exempt_roles list whose roles the role cache holds, if any */
static uint64 ig_exempt_resolved_generation = 0;
static bool ig_exempt_resolved = false;

static bool ig_callbacks_registered = false;

static bool ig_lookup_name(IgNameCache *cache, Oid oid, char *buf);
static void ig_register_callbacks(void);
static void ig_invalidate(Datum arg, int cacheid, uint32 hashvalue);
static HTAB *ig_cache_table(IgNameCache *cache);
static bool ig_cache_get(IgNameCache *cache, Oid oid, char *buf);
static void ig_cache_put(IgNameCache *cache, Oid oid, const char *name);
static void ig_resolve_exempt_roles(void);

/*
 * idle_guard_lock_catalog
 *		Take AccessShareLock on a catalog and on the index a lookup will
 *		read, without waiting.  Returns false, holding neither, if either
 *		is locked in a conflicting mode.  Release with
 *		idle_guard_unlock_catalog().
 */
bool
idle_guard_lock_catalog(Oid relid, Oid indexid)
{
	if (!ConditionalLockRelationOid(relid, AccessShareLock))
		return false;
	if (!ConditionalLockRelationOid(indexid, AccessShareLock))
	{
		UnlockRelationOid(relid, AccessShareLock);
		return false;
	}
	return true;
}

/* Release what idle_guard_lock_catalog() took */
void
idle_guard_unlock_catalog(Oid relid, Oid indexid)
{
	UnlockRelationOid(indexid, AccessShareLock);
	UnlockRelationOid(relid, AccessShareLock);
}

/*
 * idle_guard_role_name
 *		Copy the name of a role into buf (NAMEDATALEN bytes), from the cache
 *		or from pg_authid if it can be read without waiting.  Returns false,
 *		with buf empty, if the name is unknown now (pg_authid locked, or no
 *		such role).  Needs a transaction.
 */
bool
idle_guard_role_name(Oid roleid, char *buf)
{
	return ig_lookup_name(&ig_roles, roleid, buf);
}

/*
 * idle_guard_database_name
 *		The same for a database, from pg_database.
 */
bool
idle_guard_database_name(Oid dbid, char *buf)
{
	return ig_lookup_name(&ig_databases, dbid, buf);
}

/*
 * The name of the object oid of cache's catalog, from the cache, or read
 * under the conditional locks and then cached; false, with buf empty, if
 * it is unknown now.
 */
static bool
ig_lookup_name(IgNameCache *cache, Oid oid, char *buf)
{
	HeapTuple	tuple;

	buf[0] = '\0';
	if (!OidIsValid(oid))
		return false;
	if (ig_cache_get(cache, oid, buf))
		return true;
	if (!idle_guard_lock_catalog(cache->relid, cache->indexid))
		return false;
	tuple = SearchSysCache1(cache->cacheid, ObjectIdGetDatum(oid));
	if (HeapTupleIsValid(tuple))
	{
		bool		isnull;
		Datum		name = SysCacheGetAttr(cache->cacheid, tuple,
										   cache->attnum, &isnull);

		if (!isnull)
			strlcpy(buf, NameStr(*DatumGetName(name)), NAMEDATALEN);
		ReleaseSysCache(tuple);
	}
	idle_guard_unlock_catalog(cache->relid, cache->indexid);
	if (buf[0] == '\0')
		return false;
	ig_cache_put(cache, oid, buf);
	return true;
}

/*
 * idle_guard_role_oid_exempt
 *		Is a session of this role exempt by idle_guard.exempt_roles?  Reads
 *		no catalog when the list is empty, and never waits (see above).
 */
bool
idle_guard_role_oid_exempt(Oid roleid)
{
	char		name[NAMEDATALEN];

	if (!idle_guard_exempt_roles_listed())
		return false;
	ig_resolve_exempt_roles();
	if (!idle_guard_role_name(roleid, name))
		return false;
	return idle_guard_role_exempt(name);
}

/*
 * Put the roles of the current exempt_roles list in the role cache, by
 * name, unless that has been done since the list or pg_authid last
 * changed.  Leaves the list unresolved if pg_authid is locked.
 */
static void
ig_resolve_exempt_roles(void)
{
	uint64		generation;
	const char *names;
	int			count;
	int			i;

	(void) ig_cache_table(&ig_roles);	/* applies a pending flush */
	names = idle_guard_exempt_role_names(&count, &generation);
	if (ig_exempt_resolved && ig_exempt_resolved_generation == generation)
		return;
	if (!idle_guard_lock_catalog(AuthIdRelationId, AuthIdRolnameIndexId))
		return;
	for (i = 0; i < count; i++)
	{
		HeapTuple	tuple = SearchSysCache1(AUTHNAME, CStringGetDatum(names));

		if (HeapTupleIsValid(tuple))
		{
			ig_cache_put(&ig_roles, ((Form_pg_authid) GETSTRUCT(tuple))->oid,
						 names);
			ReleaseSysCache(tuple);
		}
		names += strlen(names) + 1;
	}
	idle_guard_unlock_catalog(AuthIdRelationId, AuthIdRolnameIndexId);

	/* an invalidation taken in with the lock flushed what we just put */
	if (ig_roles.stale)
		return;
	ig_exempt_resolved = true;
	ig_exempt_resolved_generation = generation;
}

/* Register the invalidation callbacks, once per process */
static void
ig_register_callbacks(void)
{
	if (ig_callbacks_registered)
		return;
	CacheRegisterSyscacheCallback(AUTHOID, ig_invalidate,
								  PointerGetDatum(&ig_roles));
	CacheRegisterSyscacheCallback(DATABASEOID, ig_invalidate,
								  PointerGetDatum(&ig_databases));
	ig_callbacks_registered = true;
}

/*
 * Syscache invalidation callback: the catalog changed (a role or database
 * created, renamed or dropped).  Only marks the cache: it may run in the
 * middle of a lookup, so the flush happens at the next use.
 */
static void
ig_invalidate(Datum arg, int cacheid, uint32 hashvalue)
{
	IgNameCache *cache = (IgNameCache *) DatumGetPointer(arg);

	cache->stale = true;
	if (cache == &ig_roles)
		ig_exempt_resolved = false;
}

/* The cache's hash table, created on first use and after a flush */
static HTAB *
ig_cache_table(IgNameCache *cache)
{
	HASHCTL		ctl;

	ig_register_callbacks();
	if (cache->stale && cache->hash != NULL)
	{
		hash_destroy(cache->hash);
		cache->hash = NULL;
	}
	cache->stale = false;
	if (cache->hash == NULL)
	{
		memset(&ctl, 0, sizeof(ctl));
		ctl.keysize = sizeof(Oid);
		ctl.entrysize = sizeof(IgNameEntry);
		ctl.hcxt = TopMemoryContext;
		cache->hash = hash_create(cache->label, 64, &ctl,
								  HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	}
	return cache->hash;
}

/* Copy a cached name into buf; false if not cached */
static bool
ig_cache_get(IgNameCache *cache, Oid oid, char *buf)
{
	IgNameEntry *entry = hash_search(ig_cache_table(cache), &oid, HASH_FIND,
									 NULL);

	if (entry == NULL)
		return false;
	strlcpy(buf, NameStr(entry->name), NAMEDATALEN);
	return true;
}

/* Remember a name, unless the catalog changed while it was read */
static void
ig_cache_put(IgNameCache *cache, Oid oid, const char *name)
{
	IgNameEntry *entry;

	if (cache->stale)
		return;
	entry = hash_search(ig_cache_table(cache), &oid, HASH_ENTER, NULL);
	namestrcpy(&entry->name, name);
}

/*
 * idle_guard_relation_name
 *		The name of a relation in database dbid, or NULL when it cannot be
 *		read now without waiting, or is in another database.  palloc'd.
 */
char *
idle_guard_relation_name(Oid dbid, Oid relid)
{
	char	   *relname = NULL;

	if ((dbid == MyDatabaseId || dbid == InvalidOid) &&
		idle_guard_lock_catalog(RelationRelationId, ClassOidIndexId))
	{
		relname = get_rel_name(relid);
		idle_guard_unlock_catalog(RelationRelationId, ClassOidIndexId);
	}
	return relname;
}
