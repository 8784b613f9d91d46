#!/usr/bin/env bash
#
# bench/precision.sh -- how late after its deadline does a silent session
# get ended?  idle_guard (idle_timeout) against PostgreSQL's own
# idle_in_transaction_session_timeout, on the same scenario, in the same
# run, trials interleaved.
#
#   bash bench/precision.sh [--trials N]      (default 20 per contender)
#
# Each trial opens a session that runs BEGIN; SELECT * FROM t; and goes
# silent.  With a timeout of 1 s, lateness = (moment of action) - (start of
# the silence) - 1 s:
#   idle_guard: silent_for of its history entry (microseconds), minus 1 s;
#   built-in:   the server log's timestamp of the FATAL (milliseconds,
#               log_line_prefix %m), minus state_change, minus 1 s.
# Writes bench/results/precision.csv (contender,trial,lateness_ms) and
# prints p50/p90/p99/max per contender.  Talks to 127.0.0.1 and a Unix
# socket only; every wait is bounded.

set -euo pipefail

TRIALS=20
while [ $# -gt 0 ]; do
	case "$1" in
	--trials) TRIALS=$2; shift 2 ;;
	*) echo "usage: bash bench/precision.sh [--trials N]" >&2; exit 2 ;;
	esac
done
if ! [[ "$TRIALS" =~ ^[0-9]+$ ]] || [ "$TRIALS" -lt 1 ] || [ "$TRIALS" -gt 500 ]; then
	echo "precision: --trials takes 1 to 500" >&2
	exit 2
fi

IG_LOG_PREFIX=precision
SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
# shellcheck source=scripts/lib.sh
. "$SCRIPT_DIR/../scripts/lib.sh"
CLIENTS=()
BUILD_DIR=
RUN_DIR=
cleanup() {
	local c
	for c in "${CLIENTS[@]}"; do
		kill "$c" 2>/dev/null || true
	done
	[ -n "$RUN_DIR" ] && ig_stop_servers_under "$RUN_DIR" "$PG_CONFIG"
	rm -rf "$BUILD_DIR" "$RUN_DIR"
}
trap cleanup EXIT
ig_bench_prepare

ig_start_cluster "$RUN_DIR" "$BINDIR" 54339 "shared_preload_libraries = 'idle_guard'
idle_guard.action = 'terminate'
idle_guard.idle_timeout = '1s'
idle_guard.blocking_timeout = 0" || ig_die "could not start the cluster"

psql_q() {
	"$BINDIR/psql" -X -At -v ON_ERROR_STOP=1 -h "$RUN_DIR" -p "$IG_CLUSTER_PORT" \
		-U postgres -d postgres -c "$1"
}

# wait_for SQL: poll until SQL returns t, for at most 20 s
wait_for() {
	local tries=400
	while [ "$tries" -gt 0 ]; do
		[ "$(psql_q "$1")" = t ] && return 0
		tries=$((tries - 1))
		sleep 0.05
	done
	ig_die "timed out waiting for: $1"
}

psql_q "CREATE TABLE t (a int); CREATE EXTENSION idle_guard;" >/dev/null

# trial CONTENDER N: one silent session, ended by CONTENDER; prints lateness
trial() {
	local who=$1 n=$2 app="bench_${1}_$2" setup='' pid since at late
	[ "$who" = builtin ] &&
		setup="SET idle_guard.action = 'off'; SET idle_in_transaction_session_timeout = '1s';"
	(
		printf '%s\n' "SET application_name = '$app'; $setup BEGIN; SELECT * FROM t;"
		sleep 30
	) | "$BINDIR/psql" -X -q -h "$RUN_DIR" -p "$IG_CLUSTER_PORT" -U postgres -d postgres \
		>/dev/null 2>&1 &
	CLIENTS+=($!)
	wait_for "SELECT count(*) = 1 FROM pg_stat_activity WHERE application_name = '$app' AND state = 'idle in transaction'"
	pid=$(psql_q "SELECT pid FROM pg_stat_activity WHERE application_name = '$app'")
	since=$(psql_q "SELECT state_change FROM pg_stat_activity WHERE pid = $pid")
	wait_for "SELECT count(*) = 0 FROM pg_stat_activity WHERE pid = $pid"
	if [ "$who" = idle_guard ]; then
		late=$(psql_q "SELECT round((extract(epoch FROM silent_for) * 1000 - 1000)::numeric, 3) FROM idle_guard_history() WHERE pid = $pid")
	else
		at=$(grep -a "\[$pid\] .*FATAL:  terminating connection due to idle-in-transaction timeout" \
			"$RUN_DIR/server.log" | awk '{print $1" "$2" "$3}' | head -1)
		[ -n "$at" ] || ig_die "no built-in timeout logged for $pid"
		late=$(psql_q "SELECT round((extract(epoch FROM '$at'::timestamptz - '$since'::timestamptz) * 1000 - 1000)::numeric, 3)")
	fi
	[ -n "$late" ] || ig_die "no action recorded for $who trial $n (pid $pid)"
	kill "${CLIENTS[-1]}" 2>/dev/null || true
	echo "$who,$n,$late"
}

mkdir -p "$REPO/bench/results"
CSV="$REPO/bench/results/precision.csv"
echo "contender,trial,lateness_ms" >"$CSV"
ig_say "running $TRIALS trials per contender, interleaved"
for n in $(seq 1 "$TRIALS"); do
	trial idle_guard "$n" >>"$CSV"
	trial builtin "$n" >>"$CSV"
done

psql_q "CREATE TABLE r (contender text, trial int, lateness_ms float8)" >/dev/null
tail -n +2 "$CSV" | "$BINDIR/psql" -X -q -h "$RUN_DIR" -p "$IG_CLUSTER_PORT" -U postgres \
	-d postgres -c "COPY r FROM STDIN WITH (FORMAT csv)"
echo
echo "Deadline precision, idle timeout of 1 s, $TRIALS trials each"
echo "(lateness = action time - start of silence - 1 s, in ms)"
echo "machine: $(nproc) cores, $(uname -sr); $("$BINDIR/postgres" --version)"
echo
"$BINDIR/psql" -X -h "$RUN_DIR" -p "$IG_CLUSTER_PORT" -U postgres -d postgres -P footer=off -c "
SELECT contender,
       count(*) AS trials,
       round(percentile_cont(0.5) WITHIN GROUP (ORDER BY lateness_ms)::numeric, 2) AS p50_ms,
       round(percentile_cont(0.9) WITHIN GROUP (ORDER BY lateness_ms)::numeric, 2) AS p90_ms,
       round(percentile_cont(0.99) WITHIN GROUP (ORDER BY lateness_ms)::numeric, 2) AS p99_ms,
       round(max(lateness_ms)::numeric, 2) AS max_ms,
       round(min(lateness_ms)::numeric, 2) AS min_ms
FROM r GROUP BY contender ORDER BY contender DESC"
ig_say "per-trial figures: bench/results/precision.csv"
