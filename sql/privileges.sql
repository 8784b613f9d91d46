--
-- Who may call the functions: pg_monitor members, not PUBLIC.
--
CREATE ROLE ig_plain;
CREATE ROLE ig_monitor IN ROLE pg_monitor;

SET ROLE ig_plain;
SELECT * FROM idle_guard_report();
SELECT * FROM idle_guard_report;
SELECT * FROM idle_guard_history();
SELECT * FROM idle_guard_stats();
SELECT idle_guard_reset();
RESET ROLE;

-- Monitoring roles read, but may not reset
SET ROLE ig_monitor;
SELECT idle_guard_reset();
RESET ROLE;

SET ROLE ig_monitor;
SELECT count(*) >= 0 AS ok FROM idle_guard_report();
SELECT count(*) >= 0 AS ok FROM idle_guard_report;
SELECT count(*) >= 0 AS ok FROM idle_guard_history();
SELECT count(*) = 1 AS ok FROM idle_guard_stats();
RESET ROLE;

-- EXECUTE can be granted to a single role
GRANT EXECUTE ON FUNCTION idle_guard_stats() TO ig_plain;
SET ROLE ig_plain;
SELECT count(*) = 1 AS ok FROM idle_guard_stats();
RESET ROLE;
REVOKE EXECUTE ON FUNCTION idle_guard_stats() FROM ig_plain;

-- A superuser may reset, and may grant it
SELECT idle_guard_reset();
SELECT reported, terminated, skipped, stats_reset > now() - interval '1 min' AS just_reset
FROM idle_guard_stats();
GRANT EXECUTE ON FUNCTION idle_guard_reset() TO ig_plain;
SET ROLE ig_plain;
SELECT idle_guard_reset();
RESET ROLE;
REVOKE EXECUTE ON FUNCTION idle_guard_reset() FROM ig_plain;

DROP ROLE ig_plain;
DROP ROLE ig_monitor;
