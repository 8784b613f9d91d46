#!/usr/bin/env bash
#
# bench/overhead.sh -- does idle_guard cost throughput?  pgbench select-only
# and TPC-B-like runs on one throwaway server, alternately with idle_guard
# not loaded and loaded and working hard (naptime 10 ms, a silent lock
# holder it keeps polling for waiters, so it sweeps about 100 times a
# second), interleaved in the same run.
#
#   bash bench/overhead.sh [--rounds N] [--seconds S]   (default 5 rounds of 10 s)
#
# Prints, per workload, the median tps of each configuration, the median of
# the per-round ratios loaded/not loaded, and their spread; writes
# bench/results/overhead.csv (workload,round,config,tps).  127.0.0.1 and a
# Unix socket only; every run is bounded by -T.

set -euo pipefail

ROUNDS=5
SECONDS_PER_RUN=10
while [ $# -gt 0 ]; do
	case "$1" in
	--rounds) ROUNDS=$2; shift 2 ;;
	--seconds) SECONDS_PER_RUN=$2; shift 2 ;;
	*) echo "usage: bash bench/overhead.sh [--rounds N] [--seconds S]" >&2; exit 2 ;;
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
HOLDER=
BUILD_DIR=
RUN_DIR=
cleanup() {
	[ -n "$HOLDER" ] && kill "$HOLDER" 2>/dev/null
	[ -n "$RUN_DIR" ] && ig_stop_servers_under "$RUN_DIR" "$PG_CONFIG"
	rm -rf "$BUILD_DIR" "$RUN_DIR"
}
trap cleanup EXIT
ig_bench_prepare

ig_start_cluster "$RUN_DIR" "$BINDIR" 54349 "shared_buffers = '256MB'
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

# configure loaded|unloaded: restart with or without idle_guard preloaded
configure() {
	[ -n "$HOLDER" ] && { kill "$HOLDER" 2>/dev/null || true; HOLDER=; }
	if [ "$1" = loaded ]; then
		echo "shared_preload_libraries = 'idle_guard'" >"$CONF_DIR/preload.conf"
	else
		: >"$CONF_DIR/preload.conf"
	fi
	chown "$(stat -c %U "$CONF_DIR")" "$CONF_DIR/preload.conf" 2>/dev/null || true
	ig_as_server_user "$BINDIR/pg_ctl" -D "$CONF_DIR" -l "$RUN_DIR/server.log" \
		-m fast -w -t 60 restart >/dev/null || ig_die "restart failed"
	if [ "$1" = loaded ]; then
		# a silent lock holder nobody waits on: past its blocking deadline,
		# the worker polls for waiters every naptime
		(
			printf '%s\n' "SET application_name = 'holder'; BEGIN; SELECT * FROM side;"
			sleep 3600
		) | "$BINDIR/psql" -X -q -h "$RUN_DIR" -p "$IG_CLUSTER_PORT" -U postgres \
			-d postgres >/dev/null 2>&1 &
		HOLDER=$!
		local tries=200
		until [ "$(psql_q "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'holder' AND state = 'idle in transaction'")" = 1 ]; do
			tries=$((tries - 1))
			[ "$tries" -gt 0 ] || ig_die "the silent holder did not appear"
			sleep 0.05
		done
	fi
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
echo "workload,round,config,tps" >"$CSV"
ig_say "$ROUNDS rounds x 2 workloads x 2 configurations, ${SECONDS_PER_RUN}s each"
for r in $(seq 1 "$ROUNDS"); do
	# alternate which configuration goes first, so neither always runs on
	# a warmer or cooler machine
	if [ $((r % 2)) -eq 1 ]; then order=(unloaded loaded); else order=(loaded unloaded); fi
	for cfg in "${order[@]}"; do
		configure "$cfg"
		for w in select-only tpcb-like; do
			tps=$(bench "$w")
			[ -n "$tps" ] || ig_die "pgbench gave no tps ($w, $cfg)"
			echo "$w,$r,$cfg,$tps" >>"$CSV"
			ig_say "round $r $cfg $w: $tps tps"
		done
		if [ "$cfg" = loaded ]; then
			sweeps=$(psql_q "SELECT sweeps FROM idle_guard_stats()")
			ig_say "round $r: the worker swept $sweeps times"
		fi
	done
done

configure unloaded
psql_q "CREATE TABLE r (workload text, round int, config text, tps float8)" >/dev/null
tail -n +2 "$CSV" | "$BINDIR/psql" -X -q -h "$RUN_DIR" -p "$IG_CLUSTER_PORT" -U postgres \
	-d postgres -c "COPY r FROM STDIN WITH (FORMAT csv)"
echo
echo "Throughput with idle_guard loaded and sweeping every 10 ms, against not loaded"
echo "($ROUNDS interleaved rounds of ${SECONDS_PER_RUN}s, pgbench -c 4 -j 2, scale 10)"
echo "machine: $(nproc) cores, $(uname -sr); $("$BINDIR/postgres" --version)"
echo
"$BINDIR/psql" -X -h "$RUN_DIR" -p "$IG_CLUSTER_PORT" -U postgres -d postgres -P footer=off -c "
WITH ratio AS (
    SELECT l.workload, l.round, l.tps / u.tps AS ratio
    FROM r l JOIN r u ON u.workload = l.workload AND u.round = l.round
    WHERE l.config = 'loaded' AND u.config = 'unloaded')
SELECT workload,
       round(percentile_cont(0.5) WITHIN GROUP (ORDER BY tps) FILTER (WHERE config = 'unloaded')::numeric) AS unloaded_tps,
       round(percentile_cont(0.5) WITHIN GROUP (ORDER BY tps) FILTER (WHERE config = 'loaded')::numeric) AS loaded_tps,
       (SELECT round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ratio)::numeric, 3) FROM ratio x WHERE x.workload = r.workload) AS median_ratio,
       (SELECT round(min(ratio)::numeric, 3) || ' .. ' || round(max(ratio)::numeric, 3) FROM ratio x WHERE x.workload = r.workload) AS ratio_range
FROM r GROUP BY workload ORDER BY workload"
ig_say "per-run figures: bench/results/overhead.csv"
