/* idle_guard--1.1--1.2.sql */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION idle_guard UPDATE TO '1.2'" to load this file. \quit

-- idle_guard_history() gains, at the end, the postmortem record of each
-- action: the silent session's last query, what it held, who waited on it
-- and the policy that applied.
DROP FUNCTION idle_guard_history();

CREATE FUNCTION idle_guard_history(
    OUT at timestamptz,
    OUT pid integer,
    OUT usename name,
    OUT datname name,
    OUT application_name text,
    OUT client_addr inet,
    OUT silent_for interval,
    OUT locks_held integer,
    OUT blocked_total integer,
    OUT rule text,
    OUT action text,
    OUT detail text,
    OUT record jsonb
)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'idle_guard_history_1_2'
LANGUAGE C STRICT VOLATILE PARALLEL RESTRICTED;

COMMENT ON FUNCTION idle_guard_history() IS
'the last idle_guard.history_size actions of idle_guard, oldest first, each with its postmortem record';

-- idle_guard_stats() gains the time of the last reset: its counters count
-- from then on, across restarts.
DROP FUNCTION idle_guard_stats();

CREATE FUNCTION idle_guard_stats(
    OUT worker_pid integer,
    OUT worker_started_at timestamptz,
    OUT sweeps bigint,
    OUT last_sweep_at timestamptz,
    OUT last_sweep_ms double precision,
    OUT guarded_now integer,
    OUT reported bigint,
    OUT terminated bigint,
    OUT skipped bigint,
    OUT stats_reset timestamptz
)
RETURNS record
AS 'MODULE_PATHNAME', 'idle_guard_stats_1_2'
LANGUAGE C STRICT VOLATILE PARALLEL RESTRICTED;

COMMENT ON FUNCTION idle_guard_stats() IS
'the idle_guard worker and its counters since the last reset';

CREATE FUNCTION idle_guard_reset()
RETURNS void
AS 'MODULE_PATHNAME', 'idle_guard_reset'
LANGUAGE C STRICT VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION idle_guard_reset() IS
'clear idle_guard''s history and counters';

REVOKE ALL ON FUNCTION idle_guard_history() FROM PUBLIC;
REVOKE ALL ON FUNCTION idle_guard_stats() FROM PUBLIC;
REVOKE ALL ON FUNCTION idle_guard_reset() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION idle_guard_history() TO pg_monitor;
GRANT EXECUTE ON FUNCTION idle_guard_stats() TO pg_monitor;
