/*-------------------------------------------------------------------------
 *
 * settings.h
 *		The idle_guard.* settings: their definitions and values
 *		(settings.c), the exemption lists (exempt.c), each session's own
 *		values of the per-session ones (session_policy.c), and the
 *		keepalives given to new connections (keepalive.c).
 *
 * The map of the files, by layer, is in docs/design.md.
 *
 * Copyright (c) 2026, idle_guard developers
 *
 * IDENTIFICATION
 *	  src/settings.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef IDLE_GUARD_SETTINGS_H
#define IDLE_GUARD_SETTINGS_H

#include "utils/guc.h"

#include "policy.h"

/*
 * Built-in defaults of the settings: the one place they are written (the
 * variables, the GUC boot values and a backend's initial published policy
 * all use these; the rules' are in rules.h).
 */
#define IG_DEFAULT_ACTION				IG_ACTION_REPORT
#define IG_DEFAULT_NAPTIME_MS			1000
#define IG_DEFAULT_HISTORY_SIZE			1000
#define IG_DEFAULT_PREPARED_TIMEOUT_MS	(30 * 60 * 1000)
#define IG_DEFAULT_TCP_KEEPALIVES_S		10

/* Values of idle_guard.terminate_sqlstate */
typedef enum IgSqlstateSetting
{
	IG_SQLSTATE_ADMIN_SHUTDOWN = 0, /* 57P01, as pg_terminate_backend() */
	IG_SQLSTATE_IDLE_TIMEOUT	/* 25P03, as
								 * idle_in_transaction_session_timeout */
} IgSqlstateSetting;

/* settings.c */
extern PGDLLIMPORT int idle_guard_action;
extern PGDLLIMPORT int idle_guard_rule_timeouts[IG_RULE_END];
extern PGDLLIMPORT int idle_guard_naptime;
extern PGDLLIMPORT int idle_guard_history_size;
extern PGDLLIMPORT int idle_guard_prepared_timeout;
extern PGDLLIMPORT bool idle_guard_session_locks;
extern PGDLLIMPORT char *idle_guard_exempt_roles;
extern PGDLLIMPORT char *idle_guard_exempt_applications;
extern PGDLLIMPORT int idle_guard_terminate_sqlstate;
extern PGDLLIMPORT int idle_guard_tcp_keepalives;
extern void idle_guard_define_settings(void);
extern void idle_guard_define_restart_settings(void);
extern void idle_guard_current_policy(IgPolicy *policy);
extern const char *idle_guard_action_setting_name(IgActionSetting action);

/* exempt.c */
extern bool idle_guard_check_exempt_roles(char **newval, void **extra,
										  GucSource source);
extern void idle_guard_assign_exempt_roles(const char *newval, void *extra);
extern bool idle_guard_check_exempt_applications(char **newval, void **extra,
												 GucSource source);
extern void idle_guard_assign_exempt_applications(const char *newval,
												  void *extra);
extern bool idle_guard_role_exempt(const char *rolename);
extern bool idle_guard_exempt_roles_listed(void);
extern const char *idle_guard_exempt_role_names(int *count,
												uint64 *generation);
extern bool idle_guard_application_exempt(const char *appname);

/* session_policy.c */
extern bool idle_guard_check_policy_source(GucSource source, void **extra);
extern void idle_guard_assign_policy_action(int value, void *extra);
extern void idle_guard_assign_policy_timeout(IgRule rule, int value,
											 void *extra);
extern void idle_guard_effective_policy(const IgPolicy *defaults, int procno,
										int pid, TimestampTz proc_start,
										IgPolicy *policy,
										IgPolicySource *source);
extern int	idle_guard_shortest_session_timeout(void);

/* keepalive.c */
extern void idle_guard_install_keepalive_hook(void);

#endif							/* IDLE_GUARD_SETTINGS_H */
