--
-- Every earlier version upgrades to the current one, keeping privileges.
--
DROP EXTENSION IF EXISTS idle_guard;

CREATE EXTENSION idle_guard VERSION '1.0';
SELECT extversion FROM pg_extension WHERE extname = 'idle_guard';
SELECT count(*) AS report_columns
FROM pg_attribute
WHERE attrelid = 'idle_guard_report'::regclass AND attnum > 0;
-- the 1.0 entry point still answers with the 1.0 columns
SELECT count(*) FROM idle_guard_report();

ALTER EXTENSION idle_guard UPDATE;
SELECT extversion FROM pg_extension WHERE extname = 'idle_guard';

-- The new columns are at the end; the view follows the function
SELECT attnum, attname, format_type(atttypid, atttypmod) AS type
FROM pg_attribute
WHERE attrelid = 'idle_guard_report'::regclass AND attnum > 17
ORDER BY attnum;
SELECT count(*) FROM idle_guard_report();

-- Privileges are as on a fresh install
SELECT has_function_privilege('pg_monitor', 'idle_guard_report()', 'EXECUTE') AS monitor_exec,
       has_table_privilege('pg_monitor', 'idle_guard_report', 'SELECT') AS monitor_select,
       EXISTS (SELECT FROM pg_proc p, aclexplode(p.proacl) a
               WHERE p.proname = 'idle_guard_report' AND a.grantee = 0) AS public_exec;

-- A fresh install at the current version is the same as an upgraded one
DROP EXTENSION idle_guard;
CREATE EXTENSION idle_guard;
SELECT extversion FROM pg_extension WHERE extname = 'idle_guard';
SELECT count(*) AS report_columns
FROM pg_attribute
WHERE attrelid = 'idle_guard_report'::regclass AND attnum > 0;
