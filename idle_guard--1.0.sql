/* idle_guard--1.0.sql */

-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\echo Use "CREATE EXTENSION idle_guard" to load this file. \quit

CREATE FUNCTION idle_guard_report(
    OUT pid integer,
    OUT usename name,
    OUT datname name,
    OUT application_name text,
    OUT client_addr inet,
    OUT state text,
    OUT wait_event text,
    OUT xact_start timestamptz,
    OUT silent_since timestamptz,
    OUT silent_for interval,
    OUT locks_held integer,
    OUT strongest_lock text,
    OUT blocked_direct integer,
    OUT blocked_total integer,
    OUT blocked_pids integer[],
    OUT backend_xid xid,
    OUT backend_xmin xid,
    OUT rule text,
    OUT deadline timestamptz,
    OUT action text
)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'idle_guard_report'
LANGUAGE C STRICT VOLATILE PARALLEL RESTRICTED;

COMMENT ON FUNCTION idle_guard_report() IS
'silent client sessions that hold locks, who waits on them, and what idle_guard does at their deadline';

CREATE VIEW idle_guard_report AS
    SELECT * FROM idle_guard_report();

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
    OUT detail text
)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'idle_guard_history'
LANGUAGE C STRICT VOLATILE PARALLEL RESTRICTED;

COMMENT ON FUNCTION idle_guard_history() IS
'the last idle_guard.history_size actions of idle_guard, oldest first';

CREATE FUNCTION idle_guard_stats(
    OUT worker_pid integer,
    OUT worker_started_at timestamptz,
    OUT sweeps bigint,
    OUT last_sweep_at timestamptz,
    OUT last_sweep_ms double precision,
    OUT guarded_now integer,
    OUT reported bigint,
    OUT terminated bigint,
    OUT skipped bigint
)
RETURNS record
AS 'MODULE_PATHNAME', 'idle_guard_stats'
LANGUAGE C STRICT VOLATILE PARALLEL RESTRICTED;

COMMENT ON FUNCTION idle_guard_stats() IS
'the idle_guard worker and its counters since the server started';

-- Only monitoring roles may see other sessions' lock state.
REVOKE ALL ON FUNCTION idle_guard_report() FROM PUBLIC;
REVOKE ALL ON FUNCTION idle_guard_history() FROM PUBLIC;
REVOKE ALL ON FUNCTION idle_guard_stats() FROM PUBLIC;
REVOKE ALL ON idle_guard_report FROM PUBLIC;
GRANT EXECUTE ON FUNCTION idle_guard_report() TO pg_monitor;
GRANT EXECUTE ON FUNCTION idle_guard_history() TO pg_monitor;
GRANT EXECUTE ON FUNCTION idle_guard_stats() TO pg_monitor;
GRANT SELECT ON idle_guard_report TO pg_monitor;
