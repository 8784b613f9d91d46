/* idle_guard--1.3--1.4.sql */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION idle_guard UPDATE TO '1.4'" to load this file. \quit

-- idle_guard_report() gains, at the end: whether WAL replay on a hot
-- standby waits on the session, and for which relation; the age of the
-- session's xmin (with hot_standby_feedback it holds back vacuum on the
-- primary); and whether a worker runs to carry out the action.
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
    OUT enforced boolean
)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'idle_guard_report_1_4'
LANGUAGE C STRICT VOLATILE PARALLEL RESTRICTED;

COMMENT ON FUNCTION idle_guard_report() IS
'silent client sessions and prepared transactions that hold locks, who waits on them (WAL replay included), the policy that applies to each, and what idle_guard does at their deadline';

CREATE VIEW idle_guard_report AS
    SELECT * FROM idle_guard_report();

-- idle_guard_stats() gains what WAL replay is waiting for on a hot
-- standby: a lock (and on which relation), or a snapshot, tablespace or
-- buffer-pin conflict, and since when.
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
    OUT stats_reset timestamptz,
    OUT in_recovery boolean,
    OUT replay_pid integer,
    OUT replay_wait text,
    OUT replay_wait_since timestamptz,
    OUT replay_wait_relation text
)
RETURNS record
AS 'MODULE_PATHNAME', 'idle_guard_stats_1_4'
LANGUAGE C STRICT VOLATILE PARALLEL RESTRICTED;

COMMENT ON FUNCTION idle_guard_stats() IS
'the idle_guard worker and its counters since the last reset, and what WAL replay waits for on a hot standby';

REVOKE ALL ON FUNCTION idle_guard_report() FROM PUBLIC;
REVOKE ALL ON idle_guard_report FROM PUBLIC;
REVOKE ALL ON FUNCTION idle_guard_stats() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION idle_guard_report() TO pg_monitor;
GRANT SELECT ON idle_guard_report TO pg_monitor;
GRANT EXECUTE ON FUNCTION idle_guard_stats() TO pg_monitor;
