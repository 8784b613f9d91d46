#!/usr/bin/env bash
#
# bench/overhead.sh -- does idle_guard cost throughput?  pgbench select-only
# and TPC-B-like runs on one throwaway server in three configurations,
# interleaved in the same run:
#   unloaded  idle_guard not loaded;
#   control   idle_guard not loaded, plus an unrelated process (perl) that
#             wakes up every 10 ms, as often as the loaded worker does: on
#             a virtual machine such wake-ups alone can change throughput
#             (they keep the vCPUs out of deep idle states);
#   loaded    idle_guard loaded and working hard: naptime 10 ms, and a
#             silent lock holder past its blocking deadline that it keeps
#             polling for waiters, so it sweeps about 100 times a second.
# The same silent session exists in all three.  The ratio that answers the
# question is loaded / control.
#
#   bash bench/overhead.sh [--rounds N] [--seconds S] [--quick]
#       (default 3 rounds of 12 s per workload and configuration; --quick: 1 of 5 s)
#
# The order of the configurations rotates from round to round, so each
# takes each position once in 3 rounds.  Prints, per workload, the median
# tps of each configuration and the median and range of the per-round
# ratios; writes bench/results/overhead.csv (workload,round,config,tps).
# 127.0.0.1 and a Unix socket only; every run is bounded by -T.

set -euo pipefail

ROUNDS=3
SECONDS_PER_RUN=12
while [ $# -gt 0 ]; do
	case "$1" in
	--rounds) ROUNDS=$2; shift 2 ;;
	--seconds) SECONDS_PER_RUN=$2; shift 2 ;;
	--quick) ROUNDS=1; SECONDS_PER_RUN=5; shift ;;
	*) echo "usage: bash bench/overhead.sh [--rounds N] [--seconds S] [--quick]" >&2; exit 2 ;;
	esac
done
for v in ROUNDS SECONDS_PER_RUN; do
	if ! [[ "${!v}" =~ ^[0-9]+$ ]] || [ "${!v}" -lt 1 ] || [ "${!v}" -gt 600 ]; then
		echo "overhead: --rounds and --seconds take 1 to 600" >&2
		exit 2
	fi
done

IG_LOG_PREFIX=overhead
SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
# shellcheck source=scripts/lib.sh
. "$SCRIPT_DIR/../scripts/lib.sh"
# shellcheck source=bench/common.sh
. "$SCRIPT_DIR/common.sh"
CONFIGS=(unloaded control loaded)
HOLDER=
WAKER=
BUILD_DIR=
RUN_DIR=
# cleanup: stop the silent session, the waker and the cluster we started
cleanup() {
	[ -n "$RUN_DIR" ] && touch "$RUN_DIR/holder.stop" 2>/dev/null
	[ -n "$HOLDER" ] && kill "$HOLDER" 2>/dev/null
	[ -n "$WAKER" ] && kill "$WAKER" 2>/dev/null
	[ -n "$RUN_DIR" ] && ig_stop_servers_under "$RUN_DIR" "$PG_CONFIG"
	rm -rf "$BUILD_DIR" "$RUN_DIR"
}
trap cleanup EXIT
# a timeout or ^C: leave through the EXIT trap, so nothing is left running
trap 'exit 143' TERM INT
ig_bench_prepare

ig_start_cluster "$RUN_DIR" "$BINDIR" 55430 "shared_buffers = '256MB'
max_connections = 50
idle_guard.action = 'report'
idle_guard.naptime = '10ms'
idle_guard.blocking_timeout = '100ms'
idle_guard.idle_timeout = '1h'
include_if_exists = 'preload.conf'" || ig_die "could not start the cluster"
CONF_DIR="$RUN_DIR/data"

psql_q() {
	"$BINDIR/psql" -X -At -v ON_ERROR_STOP=1 -h "$RUN_DIR" -p "$IG_CLUSTER_PORT" \
		-U postgres -d postgres -c "$1"
}

# configure unloaded|control|loaded: restart with or without idle_guard
# preloaded, start the waker for control, the silent session for all
configure() {
	[ -n "$HOLDER" ] && { touch "$RUN_DIR/holder.stop"; kill "$HOLDER" 2>/dev/null || true; HOLDER=; }
	[ -n "$WAKER" ] && { kill "$WAKER" 2>/dev/null || true; WAKER=; }
	if [ "$1" = loaded ]; then
		echo "shared_preload_libraries = 'idle_guard'" >"$CONF_DIR/preload.conf"
	else
		: >"$CONF_DIR/preload.conf"
	fi
	chown "$(stat -c %U "$CONF_DIR")" "$CONF_DIR/preload.conf" 2>/dev/null || true
	ig_as_server_user "$BINDIR/pg_ctl" -D "$CONF_DIR" -l "$RUN_DIR/server.log" \
		-m fast -w -t 60 restart >/dev/null || ig_die "restart failed"
	if [ "$1" = control ]; then
		# wakes every 10 ms for at most an hour, does nothing else
		perl -MTime::HiRes=sleep -e 'sleep 0.01 for 1 .. 360000' </dev/null >/dev/null 2>&1 &
		WAKER=$!
	fi
	# a silent lock holder nobody waits on: with idle_guard loaded, past
	# its blocking deadline, the worker polls for waiters every naptime
	rm -f "$RUN_DIR/holder.stop"
	(
		printf '%s\n' "SET application_name = 'holder'; BEGIN; SELECT * FROM side;"
		# silent until configure or cleanup creates holder.stop (1 h at most)
		for _ in $(seq 1 18000); do
			{ [ -e "$RUN_DIR/holder.stop" ] || [ ! -d "$RUN_DIR" ]; } && break
			sleep 0.2
		done
	) 2>/dev/null | "$BINDIR/psql" -X -q -h "$RUN_DIR" -p "$IG_CLUSTER_PORT" -U postgres \
		-d postgres >/dev/null 2>&1 &
	HOLDER=$!
	local tries=200
	until [ "$(psql_q "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'holder' AND state = 'idle in transaction'")" = 1 ]; do
		tries=$((tries - 1))
		[ "$tries" -gt 0 ] || ig_die "the silent holder did not appear"
		sleep 0.05
	done
}

# bench WORKLOAD: one pgbench run, prints tps
bench() {
	local flags=()
	[ "$1" = select-only ] && flags=(-S)
	"$BINDIR/pgbench" -h "$RUN_DIR" -p "$IG_CLUSTER_PORT" -U postgres -n -c 4 -j 2 \
		-T "$SECONDS_PER_RUN" "${flags[@]}" postgres 2>/dev/null |
		sed -n 's/^tps = \([0-9.]*\) .*/\1/p'
}

psql_q "CREATE TABLE side (a int); CREATE EXTENSION idle_guard;" >/dev/null
ig_as_server_user "$BINDIR/pgbench" -h "$RUN_DIR" -p "$IG_CLUSTER_PORT" -U postgres \
	-i -s 10 -q postgres >/dev/null 2>&1 || ig_die "pgbench -i failed"

mkdir -p "$REPO/bench/results"
CSV="$REPO/bench/results/overhead.csv"
echo "workload,round,config,tps,worker_cpu_pct" >"$CSV"
ig_say "$ROUNDS rounds x 2 workloads x ${#CONFIGS[@]} configurations, ${SECONDS_PER_RUN}s each"
for r in $(seq 1 "$ROUNDS"); do
	# rotate the order, so no configuration always runs on a warmer or
	# cooler machine
	order=()
	for i in "${!CONFIGS[@]}"; do
		order+=("${CONFIGS[$(((i + r - 1) % ${#CONFIGS[@]}))]}")
	done
	for cfg in "${order[@]}"; do
		configure "$cfg"
		wpid=
		[ "$cfg" = loaded ] && wpid=$(psql_q "SELECT worker_pid FROM idle_guard_stats()")
		for w in select-only tpcb-like; do
			c0=0
			[ -n "$wpid" ] && c0=$(bench_cpu_ns "$wpid")
			t0=$(bench_now_us)
			tps=$(bench "$w")
			[ -n "$tps" ] || ig_die "pgbench gave no tps ($w, $cfg)"
			# the worker's share of one CPU during the run, in percent
			pct=
			[ -n "$wpid" ] && pct=$(awk -v c=$(($(bench_cpu_ns "$wpid") - c0)) \
				-v t=$(($(bench_now_us) - t0)) 'BEGIN { printf "%.3f", c / 1000 / t * 100 }')
			echo "$w,$r,$cfg,$tps,$pct" >>"$CSV"
			ig_say "round $r $cfg $w: $tps tps${pct:+, worker CPU $pct% of one core}"
		done
		if [ "$cfg" = loaded ]; then
			sweeps=$(psql_q "SELECT sweeps FROM idle_guard_stats()")
			ig_say "round $r: the worker has swept $sweeps times in all"
		fi
	done
done

configure unloaded
psql_q "CREATE TABLE r (workload text, round int, config text, tps float8, worker_cpu_pct float8)" >/dev/null
bench_load_csv r "$CSV"
echo
echo "Throughput: idle_guard loaded and sweeping every 10 ms, against not loaded, and against a control"
echo "(control = not loaded + a process waking every 10 ms; $ROUNDS interleaved rounds of ${SECONDS_PER_RUN}s,"
echo " pgbench -c 4 -j 2, scale 10; ratios are per round, then median and range over the rounds;"
echo " worker_cpu_pct = the worker's CPU time during the loaded runs / their wall time, from /proc)"
bench_machine
echo
bench_table "
WITH p AS (
    SELECT workload, round,
           max(tps) FILTER (WHERE config = 'unloaded') AS u,
           max(tps) FILTER (WHERE config = 'control') AS c,
           max(tps) FILTER (WHERE config = 'loaded') AS l
    FROM r GROUP BY workload, round),
q AS (SELECT workload, l / c AS lc, l / u AS lu, c / u AS cu FROM p)
SELECT workload,
       round(percentile_cont(0.5) WITHIN GROUP (ORDER BY tps) FILTER (WHERE config = 'unloaded')::numeric) AS unloaded_tps,
       round(percentile_cont(0.5) WITHIN GROUP (ORDER BY tps) FILTER (WHERE config = 'control')::numeric) AS control_tps,
       round(percentile_cont(0.5) WITHIN GROUP (ORDER BY tps) FILTER (WHERE config = 'loaded')::numeric) AS loaded_tps,
       (SELECT to_char(percentile_cont(0.5) WITHIN GROUP (ORDER BY lc), 'FM0.000') || ' (' ||
               to_char(min(lc), 'FM0.000') || ' .. ' || to_char(max(lc), 'FM0.000') || ')'
        FROM q WHERE q.workload = r.workload) AS loaded_vs_control,
       (SELECT to_char(percentile_cont(0.5) WITHIN GROUP (ORDER BY lu), 'FM0.000') || ' (' ||
               to_char(min(lu), 'FM0.000') || ' .. ' || to_char(max(lu), 'FM0.000') || ')'
        FROM q WHERE q.workload = r.workload) AS loaded_vs_unloaded,
       (SELECT to_char(percentile_cont(0.5) WITHIN GROUP (ORDER BY cu), 'FM0.000') || ' (' ||
               to_char(min(cu), 'FM0.000') || ' .. ' || to_char(max(cu), 'FM0.000') || ')'
        FROM q WHERE q.workload = r.workload) AS control_vs_unloaded,
       to_char(percentile_cont(0.5) WITHIN GROUP (ORDER BY worker_cpu_pct), 'FM990.00') AS worker_cpu_pct
FROM r GROUP BY workload ORDER BY workload"
ig_say "per-run figures: bench/results/overhead.csv"
