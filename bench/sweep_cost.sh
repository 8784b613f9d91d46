#!/usr/bin/env bash
#
# bench/sweep_cost.sh -- what does one sweep of the worker cost with many
# connections, against the SQL a polling tool runs for the same answer?
#
#   bash bench/sweep_cost.sh [--seconds S] [--quick]
#        (default 4 windows of 3 s per size and a 30 s keepalive window;
#         --quick: 2 s and 20 s)
#
# For 100, 500 and 1000 client connections (max_connections = 1100), and
# once more for 100 with max_connections = 150 (to separate the cost of the
# proc-array slots from that of the sessions): half of the connections are
# silent in a transaction holding a row lock, a tenth wait for one of those
# rows, the rest are idle.  The worker runs with naptime 10 ms and
# action = report, so it keeps sweeping about 100 times a second.
#
# Two contenders, in each of 4 windows per size:
#   idle_guard  CPU time of the worker process per sweep, from
#               /proc/<pid>/schedstat (nanoseconds) and the sweeps counter of
#               idle_guard_stats(); and last_sweep_ms (wall), sampled every
#               0.2 s, median;
#   polling     the query a polling tool runs to find silent lock holders
#               and whom they block (pg_stat_activity joined with pg_locks
#               and pg_blocking_pids() of the waiters), run 20 times in a
#               PL/pgSQL loop; its backend's CPU from /proc/self/schedstat,
#               and its wall time.
# The clients connect over TCP to 127.0.0.1 in two windows and over the
# Unix socket in the other two (tcp, unix, unix, tcp), the same sessions
# otherwise.  Over TCP each sweep also reads the clients' sockets (the
# client-link lookup: one sock_diag dump per address family, matched to
# the sessions); over the Unix socket it does not.  The same windows time
# idle_guard_report(), which runs the same pipeline, 20 times in a loop.
# Reports the ratios polling / idle_guard (TCP), and TCP / Unix socket.
#
# Then the keepalive probes idle_guard.tcp_keepalives asks for: 1000 idle
# TCP connections, opened with tcp_keepalives = 10s (the default), then
# with 0, each left 11 s to settle then counted for 30 s: TCP segments sent
# and received per second, from /proc/net/snmp (the whole network
# namespace: over loopback it counts both ends, a probe and its
# acknowledgement each once sent and once received).
#
# Writes bench/results/sweep_cost.csv, sweep_cost_keepalive.csv and
# sweep_cost.png.  127.0.0.1 and a Unix socket only; every wait is bounded.

set -euo pipefail

WINDOW_S=3
KEEPALIVE_S=30
while [ $# -gt 0 ]; do
	case "$1" in
	--seconds) WINDOW_S=$2; shift 2 ;;
	--quick) WINDOW_S=2 KEEPALIVE_S=20; shift ;;
	*) echo "usage: bash bench/sweep_cost.sh [--seconds S] [--quick]" >&2; exit 2 ;;
	esac
done
if ! [[ "$WINDOW_S" =~ ^[0-9]+$ ]] || [ "$WINDOW_S" -lt 1 ] || [ "$WINDOW_S" -gt 60 ]; then
	echo "sweep_cost: --seconds takes 1 to 60" >&2
	exit 2
fi

IG_LOG_PREFIX=sweep_cost
SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
# shellcheck source=scripts/lib.sh
. "$SCRIPT_DIR/../scripts/lib.sh"
# shellcheck source=bench/common.sh
. "$SCRIPT_DIR/common.sh"

POLL_RUNS=20
PIDS=()
BUILD_DIR=
RUN_DIR=
# cleanup: stop the pgbench clients and the cluster we started
cleanup() {
	local p
	for p in "${PIDS[@]}"; do
		kill "$p" 2>/dev/null || true
	done
	[ -n "$RUN_DIR" ] && ig_stop_servers_under "$RUN_DIR" "$PG_CONFIG"
	rm -rf "$BUILD_DIR" "$RUN_DIR"
}
trap cleanup EXIT
# a timeout or ^C: leave through the EXIT trap, so nothing is left running
trap 'exit 143' TERM INT

ig_bench_prepare idle_guard_bench gnuplot-nox
ig_start_cluster "$RUN_DIR" "$BINDIR" 55420 "shared_preload_libraries = 'idle_guard'
max_connections = 150
shared_buffers = '128MB'
idle_guard.action = 'report'
idle_guard.naptime = '10ms'
idle_guard.blocking_timeout = '100ms'
idle_guard.idle_timeout = '1h'" || ig_die "could not start the cluster"

bench_sql "CREATE EXTENSION idle_guard;
CREATE TABLE hold (id int PRIMARY KEY);
INSERT INTO hold SELECT g FROM generate_series(0, 999) g;" >/dev/null
cat >"$RUN_DIR/holder.sql" <<'SQL'
BEGIN;
SELECT id FROM hold WHERE id = :client_id FOR UPDATE;
\sleep 300 s
END;
SQL
cat >"$RUN_DIR/waiter.sql" <<'SQL'
SELECT id FROM hold WHERE id = :client_id FOR UPDATE;
SQL
cat >"$RUN_DIR/idle.sql" <<'SQL'
SELECT 1;
\sleep 300 s
SQL

# The polling tool's query, timed in a loop inside one backend: average
# wall and CPU milliseconds per run (CPU from the backend's own schedstat).
bench_sql "
CREATE FUNCTION poll_cost(k int, OUT wall_ms float8, OUT cpu_ms float8)
LANGUAGE plpgsql AS \$\$
DECLARE
    t0 timestamptz;
    c0 bigint;
BEGIN
    c0 := split_part(pg_read_file('/proc/self/schedstat'), ' ', 1)::bigint;
    t0 := clock_timestamp();
    FOR i IN 1 .. k LOOP
        PERFORM count(*) FROM (
            WITH waiting AS MATERIALIZED (
                SELECT pid, unnest(pg_blocking_pids(pid)) AS blocker
                FROM pg_stat_activity WHERE wait_event_type = 'Lock'),
            held AS MATERIALIZED (
                SELECT pid, count(*) AS locks FROM pg_locks
                WHERE granted AND locktype <> 'virtualxid' GROUP BY pid)
            SELECT a.pid, a.usename, a.application_name,
                   clock_timestamp() - a.state_change AS silent_for,
                   h.locks, count(w.pid) AS blocked
            FROM pg_stat_activity a
            JOIN held h ON h.pid = a.pid
            LEFT JOIN waiting w ON w.blocker = a.pid
            WHERE a.state = 'idle in transaction' AND a.backend_type = 'client backend'
            GROUP BY a.pid, a.usename, a.application_name, a.state_change, h.locks) q;
    END LOOP;
    wall_ms := extract(epoch FROM clock_timestamp() - t0) * 1000 / k;
    cpu_ms := (split_part(pg_read_file('/proc/self/schedstat'), ' ', 1)::bigint - c0) / 1e6 / k;
END \$\$;
CREATE FUNCTION report_cost(k int, OUT wall_ms float8, OUT cpu_ms float8)
LANGUAGE plpgsql AS \$\$
DECLARE
    t0 timestamptz;
    c0 bigint;
BEGIN
    c0 := split_part(pg_read_file('/proc/self/schedstat'), ' ', 1)::bigint;
    t0 := clock_timestamp();
    FOR i IN 1 .. k LOOP
        PERFORM count(*) FROM idle_guard_report();
    END LOOP;
    wall_ms := extract(epoch FROM clock_timestamp() - t0) * 1000 / k;
    cpu_ms := (split_part(pg_read_file('/proc/self/schedstat'), ' ', 1)::bigint - c0) / 1e6 / k;
END \$\$" >/dev/null

# clients N HOST: start N client connections to HOST (127.0.0.1, or the
# socket directory) (half silent holders, a tenth waiters, the rest idle)
# with three pgbench processes; wait until they are all there (60 s at most)
clients() {
	local n=$1 h=$(($1 / 2)) w=$(($1 / 10)) i
	i=$((n - h - w))
	"$BINDIR/pgbench" -h "$2" -p "$IG_CLUSTER_PORT" -U postgres -n -c "$h" -j 2 -t 1 \
		-f "$RUN_DIR/holder.sql" postgres >"$RUN_DIR/holders.log" 2>&1 &
	PIDS+=("$!")
	bench_wait_for "SELECT count(*) = $h FROM pg_stat_activity WHERE state = 'idle in transaction'" 600 ||
		ig_die "the $h holders did not appear"
	"$BINDIR/pgbench" -h "$2" -p "$IG_CLUSTER_PORT" -U postgres -n -c "$w" -j 2 -t 1 \
		-f "$RUN_DIR/waiter.sql" postgres >"$RUN_DIR/waiters.log" 2>&1 &
	PIDS+=("$!")
	"$BINDIR/pgbench" -h "$2" -p "$IG_CLUSTER_PORT" -U postgres -n -c "$i" -j 2 -t 1 \
		-f "$RUN_DIR/idle.sql" postgres >"$RUN_DIR/idle.log" 2>&1 &
	PIDS+=("$!")
	bench_wait_for "SELECT count(*) FILTER (WHERE wait_event_type = 'Lock') = $w
		AND count(*) FILTER (WHERE state = 'idle') = $i
		FROM pg_stat_activity WHERE backend_type = 'client backend'" 600 ||
		ig_die "the $w waiters and $i idle sessions did not appear"
}

# no_clients: end the pgbench clients and wait until only we are connected
no_clients() {
	local p
	for p in "${PIDS[@]}"; do
		kill "$p" 2>/dev/null || true
		wait "$p" 2>/dev/null || true
	done
	PIDS=()
	bench_wait_for "SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'client backend'" 600 ||
		ig_die "the clients did not go away"
}

# measure_worker: over WINDOW_S seconds, print
# "sweeps,cpu_ms_per_sweep,median last_sweep_ms"
measure_worker() {
	local wpid s0 s1 c0 c1 end samples=()
	wpid=$(bench_sql "SELECT worker_pid FROM idle_guard_stats()")
	[ -n "$wpid" ] || ig_die "no idle_guard worker"
	s0=$(bench_sql "SELECT sweeps FROM idle_guard_stats()")
	c0=$(bench_cpu_ns "$wpid")
	end=$(($(bench_now_us) + WINDOW_S * 1000000))
	while [ "$(bench_now_us)" -lt "$end" ] && [ "${#samples[@]}" -lt 1000 ]; do
		samples+=("$(bench_sql "SELECT last_sweep_ms FROM idle_guard_stats()")")
		sleep 0.2
	done
	c1=$(bench_cpu_ns "$wpid")
	s1=$(bench_sql "SELECT sweeps FROM idle_guard_stats()")
	printf '%s\n' "${samples[@]}" | sort -g | awk -v s=$((s1 - s0)) -v c=$((c1 - c0)) '
		{ v[NR] = $1 }
		END { m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
		      printf "%d,%.4f,%.4f\n", s, (s > 0 ? c / 1e6 / s : 0), m }'
}

# size MAXCONN N: one size, four windows, the clients on TCP or the Unix
# socket in turn (tcp, unix, unix, tcp), each window measuring idle_guard,
# the polling query and idle_guard_report()
size() {
	local maxconn=$1 n=$2 win tr w p q
	ig_say "$n connections (max_connections = $maxconn)"
	win=0
	for tr in tcp unix unix tcp; do
		win=$((win + 1))
		if [ "$tr" = tcp ]; then clients "$n" 127.0.0.1; else clients "$n" "$RUN_DIR"; fi
		sleep 1 # let the worker report the blocking holders once
		w=$(measure_worker)
		p=$(bench_sql "SELECT round(wall_ms::numeric, 4) || ',' || round(cpu_ms::numeric, 4) FROM poll_cost($POLL_RUNS)")
		q=$(bench_sql "SELECT round(wall_ms::numeric, 4) || ',' || round(cpu_ms::numeric, 4) FROM report_cost($POLL_RUNS)")
		echo "$maxconn,$n,$((n / 2)),$((n / 10)),$win,$tr,$w,$p,$q" >>"$CSV"
		ig_say "  window $win ($tr): worker sweeps,cpu_ms/sweep,last_sweep_ms = $w;" \
			"poll wall_ms,cpu_ms = $p; report wall_ms,cpu_ms = $q"
		no_clients
	done
}

# tcp_segs: "InSegs OutSegs" of /proc/net/snmp
tcp_segs() {
	awk '$1 == "Tcp:" && $2 ~ /^[0-9]+$/ { print $11, $12 }' /proc/net/snmp
}

# keepalive_cost N SECONDS: N idle TCP connections opened with
# idle_guard.tcp_keepalives = SECONDS, 11 s to settle, then the TCP segments
# received and sent per second over KEEPALIVE_S seconds
keepalive_cost() {
	local n=$1 in0 out0 in1 out1 t0 t1
	bench_sql "ALTER SYSTEM SET idle_guard.tcp_keepalives = '$2s'" >/dev/null
	bench_sql "SELECT pg_reload_conf()" >/dev/null
	bench_wait_for "SELECT setting = '$2' FROM pg_settings WHERE name = 'idle_guard.tcp_keepalives'" 50 ||
		ig_die "the reload did not take effect"
	"$BINDIR/pgbench" -h 127.0.0.1 -p "$IG_CLUSTER_PORT" -U postgres -n -c "$n" -j 2 -t 1 \
		-f "$RUN_DIR/idle.sql" postgres >"$RUN_DIR/idle.log" 2>&1 &
	PIDS+=("$!")
	bench_wait_for "SELECT count(*) = $n FROM pg_stat_activity WHERE state = 'idle' AND client_port IS NOT NULL
		AND client_port > 0" 600 || ig_die "the $n idle TCP sessions did not appear"
	sleep 11 # longer than the keepalive idle time: probes in their steady state
	read -r in0 out0 < <(tcp_segs)
	t0=$(bench_now_us)
	sleep "$KEEPALIVE_S"
	read -r in1 out1 < <(tcp_segs)
	t1=$(bench_now_us)
	echo "$2,$n,$KEEPALIVE_S,$((in1 - in0)),$((out1 - out0)),$(((t1 - t0) / 1000))" >>"$KA_CSV"
	ig_say "  tcp_keepalives = $2 s: $((in1 - in0)) segments received, $((out1 - out0)) sent in $(((t1 - t0) / 1000)) ms"
	no_clients
}

# set_max_connections N: restart the cluster with max_connections = N
set_max_connections() {
	bench_sql "ALTER SYSTEM SET max_connections = $1" >/dev/null
	ig_as_server_user "$BINDIR/pg_ctl" -D "$RUN_DIR/data" -l "$RUN_DIR/server.log" \
		-m fast -w -t 60 restart >/dev/null || ig_die "restart failed"
}

mkdir -p "$REPO/bench/results"
CSV="$REPO/bench/results/sweep_cost.csv"
KA_CSV="$REPO/bench/results/sweep_cost_keepalive.csv"
echo "max_connections,connections,holders,waiters,window,transport,sweeps,worker_cpu_ms_per_sweep,last_sweep_ms,poll_wall_ms,poll_cpu_ms,report_wall_ms,report_cpu_ms" >"$CSV"
echo "tcp_keepalives_s,connections,window_s,in_segs,out_segs,measured_ms" >"$KA_CSV"
size 150 100
set_max_connections 1100
for n in 100 500 1000; do
	size 1100 "$n"
done
ig_say "keepalive probes: 1000 idle TCP connections, tcp_keepalives = 10 s, then 0"
keepalive_cost 1000 10
keepalive_cost 1000 0

bench_sql "CREATE TABLE s0 (maxconn int, n int, holders int, waiters int, win int, transport text, sweeps int,
	cpu_ms float8, last_ms float8, poll_ms float8, poll_cpu_ms float8, report_ms float8, report_cpu_ms float8);
CREATE TABLE ka (setting int, n int, window_s int, in_segs bigint, out_segs bigint, measured_ms bigint)" >/dev/null
bench_load_csv s0 "$CSV"
bench_load_csv ka "$KA_CSV"
# s: the TCP windows, as in the main table; u: the Unix-socket ones
bench_sql "CREATE VIEW s AS SELECT * FROM s0 WHERE transport = 'tcp';
CREATE VIEW u AS SELECT * FROM s0 WHERE transport = 'unix'" >/dev/null
echo
echo "Sweep cost at scale: half the connections silent holding a row lock, a tenth waiting on them, the rest idle, over TCP to 127.0.0.1"
echo "(idle_guard: worker CPU per sweep from /proc/<pid>/schedstat, naptime 10 ms, and last_sweep_ms, median;"
echo " polling: pg_stat_activity + pg_locks + pg_blocking_pids() of the waiters, $POLL_RUNS runs in one backend;"
echo " the 2 TCP windows of ${WINDOW_S} s per size, interleaved with 2 over the Unix socket; ratio = polling / idle_guard)"
bench_machine
echo
bench_table "
SELECT n AS connections, maxconn AS max_conn, holders, waiters,
       round(sum(sweeps)::numeric / (2 * $WINDOW_S)) AS sweeps_per_s,
       round((sum(cpu_ms * sweeps) / nullif(sum(sweeps), 0))::numeric, 3) AS ig_cpu_ms,
       round(percentile_cont(0.5) WITHIN GROUP (ORDER BY last_ms)::numeric, 3) AS last_sweep_ms,
       round(avg(poll_cpu_ms)::numeric, 3) AS poll_cpu_ms,
       round(avg(poll_ms)::numeric, 3) AS poll_ms,
       round((avg(poll_cpu_ms) / nullif(sum(cpu_ms * sweeps) / nullif(sum(sweeps), 0), 0))::numeric, 1) AS cpu_ratio,
       round((avg(poll_ms) / nullif(percentile_cont(0.5) WITHIN GROUP (ORDER BY last_ms), 0))::numeric, 1) AS wall_ratio
FROM s GROUP BY n, maxconn, holders, waiters ORDER BY maxconn, n"

echo
echo "The client-link lookup: the same sessions over TCP to 127.0.0.1 (sock_diag read every sweep) and over the Unix socket (not read)"
echo "(in_sweep: sessions each sweep looks at, the silent holders and, as someone waits, the idle ones; *_cpu_ms: worker CPU per sweep;"
echo " link_cpu_ms = tcp - unix; *_last_ms: last_sweep_ms, median; report_ratio: idle_guard_report() wall time, tcp / unix;"
echo " 2 windows of each, interleaved tcp, unix, unix, tcp)"
echo
bench_table "
WITH t AS (SELECT n, maxconn, sum(cpu_ms * sweeps) / nullif(sum(sweeps), 0) AS cpu,
                  percentile_cont(0.5) WITHIN GROUP (ORDER BY last_ms) AS last, avg(report_ms) AS rep
           FROM s0 WHERE transport = 'tcp' GROUP BY n, maxconn),
     x AS (SELECT n, maxconn, sum(cpu_ms * sweeps) / nullif(sum(sweeps), 0) AS cpu,
                  percentile_cont(0.5) WITHIN GROUP (ORDER BY last_ms) AS last, avg(report_ms) AS rep
           FROM s0 WHERE transport = 'unix' GROUP BY n, maxconn)
SELECT n AS connections, maxconn AS max_conn, n - n / 10 AS in_sweep,
       round(x.cpu::numeric, 3) AS unix_cpu_ms, round(t.cpu::numeric, 3) AS tcp_cpu_ms,
       round((t.cpu - x.cpu)::numeric, 3) AS link_cpu_ms, round((t.cpu / nullif(x.cpu, 0))::numeric, 2) AS cpu_ratio,
       round(x.last::numeric, 3) AS unix_last_ms, round(t.last::numeric, 3) AS tcp_last_ms,
       round((t.last / nullif(x.last, 0))::numeric, 2) AS wall_ratio,
       round((t.rep / nullif(x.rep, 0))::numeric, 2) AS report_ratio
FROM t JOIN x USING (n, maxconn) ORDER BY maxconn, n"

echo
echo "Keepalive probes: N idle TCP connections over loopback, opened with idle_guard.tcp_keepalives = 10 s or 0 (off), each 11 s idle"
echo "(then segments per second over ${KEEPALIVE_S} s, from /proc/net/snmp Tcp InSegs and OutSegs: the whole namespace, both ends of loopback)"
echo
bench_table "
SELECT CASE WHEN setting = 0 THEN '0 (off)' ELSE setting || ' s' END AS tcp_keepalives, n AS connections,
       round(in_segs * 1000.0 / measured_ms, 1) AS in_segs_per_s, round(out_segs * 1000.0 / measured_ms, 1) AS out_segs_per_s,
       round(out_segs * 1000.0 / measured_ms * 10 / n, 2) AS out_segs_per_conn_per_10s
FROM ka ORDER BY setting DESC"

bench_sql "COPY (SELECT n, sum(cpu_ms * sweeps) / nullif(sum(sweeps), 0),
                        percentile_cont(0.5) WITHIN GROUP (ORDER BY last_ms),
                        avg(poll_cpu_ms), avg(poll_ms),
                        (SELECT sum(cpu_ms * sweeps) / nullif(sum(sweeps), 0) FROM u
                         WHERE (u.n, u.maxconn) = (s.n, s.maxconn))
                 FROM s WHERE maxconn = 1100 GROUP BY n, maxconn ORDER BY n)
          TO STDOUT WITH (FORMAT csv)" >"$RUN_DIR/plot.csv"
gnuplot <<GP || ig_warn "gnuplot failed, no sweep_cost.png"
set terminal pngcairo size 800,480 font ",11" noenhanced
set output "$REPO/bench/results/sweep_cost.png"
set datafile separator ","
set title "Cost of one look at the sessions (max_connections = 1100)"
set xlabel "client connections (half silent holding locks, a tenth waiting)"
set ylabel "milliseconds"
set logscale y
set key left top
set grid
set xtics (100, 500, 1000)
plot "$RUN_DIR/plot.csv" using 1:2 with linespoints lw 2 title "idle_guard sweep, CPU (TCP)", \
     "" using 1:6 with linespoints lw 2 dashtype 2 title "idle_guard sweep, CPU (Unix socket)", \
     "" using 1:3 with linespoints lw 2 title "idle_guard last_sweep_ms (TCP)", \
     "" using 1:4 with linespoints lw 2 title "polling query, CPU", \
     "" using 1:5 with linespoints lw 2 title "polling query, wall"
GP
ig_say "per-window figures: bench/results/sweep_cost.csv, sweep_cost_keepalive.csv; plot: bench/results/sweep_cost.png"
