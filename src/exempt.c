/*-------------------------------------------------------------------------
 *
 * exempt.c
 *		The exemption lists, idle_guard.exempt_roles and
 *		idle_guard.exempt_applications: their syntax (check hooks), their
 *		parsed form, and matching a name against them.
 *
 * A role's name is matched here; resolving a session's role OID to a name
 * without waiting, and the roles of the list to OIDs, is names.c's.
 *
 * Copyright (c) 2026, idle_guard developers
 *
 * IDENTIFICATION
 *	  src/exempt.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <ctype.h>

#include "nodes/pg_list.h"
#include "utils/guc.h"
#include "utils/varlena.h"

#include "compat.h"
#include "settings.h"

/*
 * A parsed name list, kept as the "extra" of a list setting: count, then
 * the names one after another, each NUL-terminated.
 */
typedef struct IgNameList
{
	int			count;
	char		names[FLEXIBLE_ARRAY_MEMBER];
} IgNameList;

static IgNameList *ig_exempt_roles = NULL;
static uint64 ig_exempt_roles_generation = 0;	/* bumped by each assignment */
static IgNameList *ig_exempt_apps = NULL;

static IgNameList *ig_make_name_list(List *names);
static bool ig_name_in_list(const IgNameList *list, const char *name,
							bool prefix_patterns);

/*
 * Pack a list of C strings into one IgNameList allocated the way GUC
 * frees a check hook's "extra" (see ig_guc_malloc), the form a check hook
 * hands to its assign hook.
 * Returns NULL, with the GUC error set, when out of memory.
 */
static IgNameList *
ig_make_name_list(List *names)
{
	Size		size = offsetof(IgNameList, names) + 1;
	IgNameList *result;
	char	   *p;
	ListCell   *lc;

	foreach(lc, names)
		size += strlen((char *) lfirst(lc)) + 1;

	result = (IgNameList *) ig_guc_malloc(size);
	if (result == NULL)
	{
		GUC_check_errcode(ERRCODE_OUT_OF_MEMORY);
		GUC_check_errmsg("out of memory");
		return NULL;
	}
	result->count = list_length(names);
	p = result->names;
	foreach(lc, names)
	{
		size_t		len = strlen((char *) lfirst(lc)) + 1;

		memcpy(p, lfirst(lc), len);
		p += len;
	}
	*p = '\0';
	return result;
}

/*
 * Check hook of idle_guard.exempt_roles: a list of role names, written as
 * identifiers (unquoted names fold to lower case, as in SQL).  Whether the
 * roles exist is not checked: a role may be created after the setting.
 */
bool
idle_guard_check_exempt_roles(char **newval, void **extra, GucSource source)
{
	char	   *copy = pstrdup(*newval);
	List	   *names = NIL;
	IgNameList *parsed;

	if (!SplitIdentifierString(copy, ',', &names))
	{
		GUC_check_errdetail("List syntax is invalid.");
		pfree(copy);
		list_free(names);
		return false;
	}
	parsed = ig_make_name_list(names);
	pfree(copy);
	list_free(names);
	if (parsed == NULL)
		return false;
	*extra = parsed;
	return true;
}

/*
 * Assign hook of idle_guard.exempt_roles: take the list its check hook
 * parsed, and say that what was derived from the old one is out of date.
 */
void
idle_guard_assign_exempt_roles(const char *newval, void *extra)
{
	ig_exempt_roles = (IgNameList *) extra;
	ig_exempt_roles_generation++;
}

/*
 * Check hook of idle_guard.exempt_applications: application names
 * separated by commas, blanks around each trimmed, taken literally (no
 * case folding, no quoting).  "*" may appear only as an entry's last
 * character, where it makes the entry a prefix.
 */
bool
idle_guard_check_exempt_applications(char **newval, void **extra, GucSource source)
{
	char	   *copy = pstrdup(*newval);
	char	   *cur = copy;
	List	   *names = NIL;
	IgNameList *parsed;
	bool		ok = true;

	/* An empty or all-blank value is an empty list */
	while (isspace((unsigned char) *cur))
		cur++;
	while (*cur != '\0' && ok)
	{
		char	   *end = strchr(cur, ',');
		char	   *last;
		char	   *star;

		if (end)
			*end = '\0';
		while (isspace((unsigned char) *cur))
			cur++;
		last = cur + strlen(cur);
		while (last > cur && isspace((unsigned char) last[-1]))
			*--last = '\0';

		if (*cur == '\0')
		{
			GUC_check_errdetail("List syntax is invalid: empty application name.");
			ok = false;
		}
		else if ((star = strchr(cur, '*')) != NULL && star[1] != '\0')
		{
			GUC_check_errdetail("Entry \"%s\" has \"*\" before its end; \"*\" is allowed only as the last character.",
								cur);
			ok = false;
		}
		else
			names = lappend(names, cur);

		if (!end)
			break;
		cur = end + 1;
		if (*cur == '\0')
		{
			GUC_check_errdetail("List syntax is invalid: empty application name.");
			ok = false;
		}
	}

	parsed = ok ? ig_make_name_list(names) : NULL;
	list_free(names);
	pfree(copy);
	if (parsed == NULL)
		return false;
	*extra = parsed;
	return true;
}

/* Assign hook of idle_guard.exempt_applications: take the parsed list */
void
idle_guard_assign_exempt_applications(const char *newval, void *extra)
{
	ig_exempt_apps = (IgNameList *) extra;
}

/*
 * Is name in the list?  With prefix_patterns, entries ending in '*' match
 * as prefixes (see idle_guard_app_matches).
 */
static bool
ig_name_in_list(const IgNameList *list, const char *name,
				bool prefix_patterns)
{
	const char *p;
	int			i;

	if (list == NULL || name == NULL)
		return false;
	p = list->names;
	for (i = 0; i < list->count; i++)
	{
		if (prefix_patterns ? idle_guard_app_matches(p, name)
			: strcmp(p, name) == 0)
			return true;
		p += strlen(p) + 1;
	}
	return false;
}

/* Is a session of this role exempt by idle_guard.exempt_roles? */
bool
idle_guard_role_exempt(const char *rolename)
{
	return ig_name_in_list(ig_exempt_roles, rolename, false);
}

/* Does idle_guard.exempt_roles name any role? */
bool
idle_guard_exempt_roles_listed(void)
{
	return ig_exempt_roles != NULL && ig_exempt_roles->count > 0;
}

/*
 * The names of idle_guard.exempt_roles, one after another, each
 * NUL-terminated; *count of them.  *generation changes whenever the
 * setting is assigned, so a caller can tell that what it derived from the
 * list is out of date.
 */
const char *
idle_guard_exempt_role_names(int *count, uint64 *generation)
{
	*generation = ig_exempt_roles_generation;
	*count = ig_exempt_roles ? ig_exempt_roles->count : 0;
	return ig_exempt_roles ? ig_exempt_roles->names : "";
}

/* Is a session with this application_name exempt? */
bool
idle_guard_application_exempt(const char *appname)
{
	return ig_name_in_list(ig_exempt_apps, appname, true);
}
