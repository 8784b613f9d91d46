/*-------------------------------------------------------------------------
 *
 * keepalive.c
 *		Each backend's own socket: keepalive probes that idle_guard's
 *		setting asks for, so that a client that vanished is noticed while
 *		nothing is in flight.
 *
 * The kernel learns that a peer is gone only by sending it something.  A
 * silent client owes the server a message, so nothing is in flight, and at
 * Linux's defaults (keepalive after 2 hours idle) a vanished client looks
 * like a paused one for hours.  With idle_guard.tcp_keepalives = N, each
 * new TCP session's socket, once authenticated, sends a keepalive probe
 * after N seconds without traffic and every N seconds after that; a probe
 * left unanswered is the evidence link.c reads ("unreachable").  The
 * kernel's probe count (tcp_keepalive_probes, 9 by default) is left alone:
 * it still closes a connection whose probes all went unanswered, after
 * N + 9 N seconds instead of about 2 h 11 min.
 *
 * A DBA's own keepalive settings win: nothing is changed when
 * tcp_keepalives_idle or tcp_keepalives_interval is set in postgresql.conf,
 * and a value set later for the role, database or connection is applied
 * by PostgreSQL after this hook, over it.
 *
 * The hook is declared in libpq/auth.h, whose libpq/libpq-be.h needs the
 * GSSAPI headers a server built with GSSAPI was compiled with; compat.h
 * declares its type with an opaque Port instead, so that building
 * idle_guard needs no GSSAPI development package.
 *
 * Copyright (c) 2026, idle_guard developers
 *
 * IDENTIFICATION
 *	  src/keepalive.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "utils/guc.h"

#include "compat.h"
#include "settings.h"

static IgClientAuthHook ig_prev_client_auth_hook = NULL;

static void ig_client_auth(struct Port *port, int status);

/*
 * idle_guard_install_keepalive_hook
 *		Install the hook, in the postmaster at preload, so that every
 *		backend has it.
 */
void
idle_guard_install_keepalive_hook(void)
{
	ig_prev_client_auth_hook = ClientAuthentication_hook;
	ClientAuthentication_hook = ig_client_auth;
}

/*
 * After authentication, in the new backend: give a TCP session
 * idle_guard's keepalive timing, as PostgreSQL's own tcp_keepalives_idle
 * and tcp_keepalives_interval at the priority of a built-in default, so
 * that SHOW tells the truth and any later role, database or session value
 * overrides it.  PostgreSQL applies them to the socket itself, and ignores
 * them on a Unix socket.  Nothing is changed when the DBA set either in
 * postgresql.conf.  A failure is only a WARNING in the server log: it costs
 * evidence, never the connection.
 */
static void
ig_client_auth(struct Port *port, int status)
{
	char		value[16];

	if (ig_prev_client_auth_hook)
		ig_prev_client_auth_hook(port, status);

	if (status != STATUS_OK || idle_guard_tcp_keepalives <= 0 ||
		tcp_keepalives_idle != 0 || tcp_keepalives_interval != 0)
		return;

	snprintf(value, sizeof(value), "%d", idle_guard_tcp_keepalives);
	(void) set_config_option("tcp_keepalives_idle", value, PGC_SUSET,
							 PGC_S_DYNAMIC_DEFAULT, GUC_ACTION_SET, true,
							 WARNING, false);
	(void) set_config_option("tcp_keepalives_interval", value, PGC_SUSET,
							 PGC_S_DYNAMIC_DEFAULT, GUC_ACTION_SET, true,
							 WARNING, false);
}
