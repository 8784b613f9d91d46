/* idle_guard--1.0--1.1.sql */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION idle_guard UPDATE TO '1.1'" to load this file. \quit

-- idle_guard_report() gains, at the end, the policy that applies to each
-- session: idle_guard.blocking_timeout, idle_guard.idle_timeout and
-- idle_guard.action may now be set per role, database and session.
DROP VIEW idle_guard_report;
DROP FUNCTION idle_guard_report();

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
    OUT action text,
    OUT blocking_timeout interval,
    OUT idle_timeout interval,
    OUT policy_source text
)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'idle_guard_report_1_1'
LANGUAGE C STRICT VOLATILE PARALLEL RESTRICTED;

COMMENT ON FUNCTION idle_guard_report() IS
'silent client sessions that hold locks, who waits on them, the policy that applies to each, and what idle_guard does at their deadline';

CREATE VIEW idle_guard_report AS
    SELECT * FROM idle_guard_report();

REVOKE ALL ON FUNCTION idle_guard_report() FROM PUBLIC;
REVOKE ALL ON idle_guard_report FROM PUBLIC;
GRANT EXECUTE ON FUNCTION idle_guard_report() TO pg_monitor;
GRANT SELECT ON idle_guard_report TO pg_monitor;
