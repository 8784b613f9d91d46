--
-- Without shared_preload_libraries: CREATE EXTENSION works, and every
-- function says what is missing.
--
CREATE EXTENSION idle_guard;

SELECT * FROM idle_guard_report();
SELECT * FROM idle_guard_report;
SELECT * FROM idle_guard_history();
SELECT * FROM idle_guard_stats();

-- The error code is object_not_in_prerequisite_state (55000)
DO $$
BEGIN
    PERFORM idle_guard_stats();
EXCEPTION WHEN object_not_in_prerequisite_state THEN
    RAISE NOTICE 'caught SQLSTATE %', SQLSTATE;
END
$$;

-- The library is loaded now; its reloadable settings show their defaults
SHOW idle_guard.action;
SHOW idle_guard.blocking_timeout;
SHOW idle_guard.exempt_applications;

-- No worker runs
SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'idle_guard';

DROP EXTENSION idle_guard;
