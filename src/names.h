/*-------------------------------------------------------------------------
 *
 * names.h
 *		Catalog reads that never wait (names.c): role, database and
 *		relation names, and exemption by role.
 *
 * The map of the files, by layer, is in docs/design.md.
 *
 * Copyright (c) 2026, idle_guard developers
 *
 * IDENTIFICATION
 *	  src/names.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef IDLE_GUARD_NAMES_H
#define IDLE_GUARD_NAMES_H

extern bool idle_guard_lock_catalog(Oid relid, Oid indexid);
extern void idle_guard_unlock_catalog(Oid relid, Oid indexid);
extern bool idle_guard_role_name(Oid roleid, char *buf);
extern bool idle_guard_database_name(Oid dbid, char *buf);
extern char *idle_guard_relation_name(Oid dbid, Oid relid);
extern bool idle_guard_role_oid_exempt(Oid roleid);

#endif							/* IDLE_GUARD_NAMES_H */
