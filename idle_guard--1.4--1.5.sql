/* idle_guard--1.4--1.5.sql */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION idle_guard UPDATE TO '1.5'" to load this file. \quit

-- idle_guard_report() and idle_guard_history() gain, at the end, what the
-- kernel's TCP state says of each session's client: alive, not reading,
-- unreachable, closed, local (a Unix socket) or unknown.
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
    OUT policy_source text,
    OUT gid text,
    OUT silent_reason text,
    OUT blocks_replay boolean,
    OUT replay_relation text,
    OUT xmin_age integer,
    OUT enforced boolean,
    OUT client_link text
)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'idle_guard_report_1_5'
LANGUAGE C STRICT VOLATILE PARALLEL RESTRICTED;

COMMENT ON FUNCTION idle_guard_report() IS
'silent client sessions and prepared transactions that hold locks, who waits on them (WAL replay included), the policy that applies to each, and what idle_guard does at their deadline';

CREATE VIEW idle_guard_report AS
    SELECT * FROM idle_guard_report();

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
    OUT record jsonb,
    OUT gid text,
    OUT silent_reason text,
    OUT client_link text
)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'idle_guard_history_1_5'
LANGUAGE C STRICT VOLATILE PARALLEL RESTRICTED;

COMMENT ON FUNCTION idle_guard_history() IS
'the last idle_guard.history_size actions of idle_guard, oldest first, each with its postmortem record';

REVOKE ALL ON FUNCTION idle_guard_report() FROM PUBLIC;
REVOKE ALL ON idle_guard_report FROM PUBLIC;
REVOKE ALL ON FUNCTION idle_guard_history() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION idle_guard_report() TO pg_monitor;
GRANT SELECT ON idle_guard_report TO pg_monitor;
GRANT EXECUTE ON FUNCTION idle_guard_history() TO pg_monitor;
