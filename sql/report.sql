--
-- The SQL functions against a live server with the worker running.
--

-- Wait (bounded) for the worker to have started and swept once
DO $$
BEGIN
    FOR i IN 1..300 LOOP
        EXIT WHEN (SELECT worker_pid IS NOT NULL AND sweeps > 0
                   FROM idle_guard_stats());
        PERFORM pg_sleep(0.1);
    END LOOP;
END
$$;

SELECT worker_pid > 0 AS worker_running,
       worker_started_at <= now() AS started_in_the_past,
       sweeps > 0 AS has_swept,
       last_sweep_ms >= 0 AS sweep_timed,
       guarded_now, reported, terminated, skipped
FROM idle_guard_stats();

-- The worker shows in pg_stat_activity under its own type
SELECT s.backend_type, s.application_name, s.pid = g.worker_pid AS same_pid
FROM pg_stat_activity s, idle_guard_stats() g
WHERE s.backend_type = 'idle_guard';

-- Nothing is silent: the report and the history are empty
SELECT count(*) FROM idle_guard_report();
SELECT count(*) FROM idle_guard_report;
SELECT count(*) FROM idle_guard_history();

-- The caller's own session is active, never silent, even holding locks
CREATE TABLE ig_t (id int);
BEGIN;
LOCK TABLE ig_t IN ACCESS EXCLUSIVE MODE;
SELECT count(*) FROM idle_guard_report() WHERE pid = pg_backend_pid();
COMMIT;
DROP TABLE ig_t;

-- Calling the functions repeatedly and from a query is stable
SELECT count(*) FROM generate_series(1, 20) g, LATERAL idle_guard_report() r;
SELECT count(*) FROM (SELECT * FROM idle_guard_stats()) s;
