--
-- Every earlier version upgrades to the current one, keeping privileges.
--
DROP EXTENSION IF EXISTS idle_guard;

-- Column counts of the versioned functions, and the version installed
CREATE FUNCTION ig_shape() RETURNS TABLE (version text, report int,
                                          history int, stats int, reset bool)
LANGUAGE sql AS $$
    SELECT (SELECT extversion FROM pg_extension WHERE extname = 'idle_guard'),
           (SELECT count(*)::int FROM pg_attribute
            WHERE attrelid = to_regclass('idle_guard_report') AND attnum > 0),
           (SELECT coalesce(array_length(proallargtypes, 1), 0) FROM pg_proc
            WHERE proname = 'idle_guard_history'),
           (SELECT coalesce(array_length(proallargtypes, 1), 0) FROM pg_proc
            WHERE proname = 'idle_guard_stats'),
           EXISTS (SELECT FROM pg_proc WHERE proname = 'idle_guard_reset')
$$;

-- 1.0, step by step to the latest
CREATE EXTENSION idle_guard VERSION '1.0';
SELECT * FROM ig_shape();
-- each version's entry points answer with their own columns
SELECT count(*) FROM idle_guard_report();
SELECT count(*) FROM idle_guard_history();
SELECT sweeps >= 0 AS ok FROM idle_guard_stats();
ALTER EXTENSION idle_guard UPDATE TO '1.1';
SELECT * FROM ig_shape();
SELECT count(*) FROM idle_guard_report();
ALTER EXTENSION idle_guard UPDATE TO '1.2';
SELECT * FROM ig_shape();
SELECT count(*) FROM idle_guard_history();
SELECT stats_reset IS NOT NULL AS has_reset_time FROM idle_guard_stats();
ALTER EXTENSION idle_guard UPDATE TO '1.3';
SELECT * FROM ig_shape();
SELECT count(*) FROM idle_guard_report();
SELECT count(*) FROM idle_guard_history();
ALTER EXTENSION idle_guard UPDATE TO '1.4';
SELECT * FROM ig_shape();
SELECT count(*) FROM idle_guard_report();
SELECT in_recovery, replay_wait IS NULL AS replay_not_waiting
FROM idle_guard_stats();
ALTER EXTENSION idle_guard UPDATE TO '1.5';
SELECT * FROM ig_shape();
SELECT count(*) FROM idle_guard_report();
SELECT count(*) FROM idle_guard_history();
DROP EXTENSION idle_guard;

-- 1.0 straight to the latest, then each later version to the latest
CREATE EXTENSION idle_guard VERSION '1.0';
ALTER EXTENSION idle_guard UPDATE;
SELECT * FROM ig_shape();
DROP EXTENSION idle_guard;
CREATE EXTENSION idle_guard VERSION '1.1';
ALTER EXTENSION idle_guard UPDATE;
SELECT * FROM ig_shape();
DROP EXTENSION idle_guard;
CREATE EXTENSION idle_guard VERSION '1.2';
ALTER EXTENSION idle_guard UPDATE;
SELECT * FROM ig_shape();
DROP EXTENSION idle_guard;
CREATE EXTENSION idle_guard VERSION '1.3';
ALTER EXTENSION idle_guard UPDATE;
SELECT * FROM ig_shape();
DROP EXTENSION idle_guard;
CREATE EXTENSION idle_guard VERSION '1.4';
ALTER EXTENSION idle_guard UPDATE;
SELECT * FROM ig_shape();

-- The new columns are at the end
SELECT attnum, attname, format_type(atttypid, atttypmod) AS type
FROM pg_attribute
WHERE attrelid = 'idle_guard_report'::regclass AND attnum > 17
ORDER BY attnum;
SELECT ordinality, name
FROM pg_proc, unnest(proargnames) WITH ORDINALITY AS a(name, ordinality)
WHERE proname = 'idle_guard_history' AND ordinality > 11
ORDER BY ordinality;

-- Privileges after an upgrade are as on a fresh install
SELECT p.proname,
       has_function_privilege('pg_monitor', p.oid, 'EXECUTE') AS pg_monitor,
       EXISTS (SELECT FROM aclexplode(p.proacl) a WHERE a.grantee = 0) AS public
FROM pg_proc p
WHERE p.proname LIKE 'idle\_guard%'
ORDER BY p.proname;
SELECT has_table_privilege('pg_monitor', 'idle_guard_report', 'SELECT') AS monitor_select;

-- A fresh install at the current version has the same shape
DROP EXTENSION idle_guard;
CREATE EXTENSION idle_guard;
SELECT * FROM ig_shape();
DROP FUNCTION ig_shape();
