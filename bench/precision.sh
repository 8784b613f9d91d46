#!/usr/bin/env bash
#
# bench/precision.sh -- how late after its deadline does a silent session
# get ended?  idle_guard against PostgreSQL's own
# idle_in_transaction_session_timeout, on the same scenarios, in the same
# run, trials interleaved.
#
#   bash bench/precision.sh [--trials N] [--quick]   (default 15 per case; --quick: 5)
#
# Each trial opens a session that runs BEGIN; SELECT * FROM t; and goes
# silent (it holds an AccessShareLock on t).  Every timeout is 1 s.  Cases:
#   idle         nobody waits.  idle_guard: idle_timeout = 1s; built-in:
#                idle_in_transaction_session_timeout = 1s.  Deadline: start
#                of the silence + 1 s.
#   blocking     a LOCK TABLE t arrives about 0.1 s into the silence and
#                waits.  idle_guard: blocking_timeout = 1s (idle_timeout 0);
#                built-in: the same timeout as above, on the same scenario.
#                Deadline: start of the silence + 1 s.
#   late waiter  the LOCK TABLE arrives 1.1 to 1.9 s (at random) into the
#                silence, after the blocking deadline has passed.  idle_guard only (the built-in
#                has ended the session before anyone waits).  Deadline: the
#                start of the wait; the worker finds the new waiter at its
#                next look, so the lateness is bounded by naptime (1 s, the
#                default).
# Lateness = moment of the action - deadline:
#   idle_guard: start of the silence + silent_for of its history entry
#               (microseconds);
#   built-in:   the server log's timestamp of the FATAL (milliseconds,
#               log_line_prefix %m), which is why its figures can go slightly
#               below zero.
# Writes bench/results/precision.csv (scenario,contender,trial,lateness_ms)
# and prints p50/p90/p99/max per scenario and contender.  Talks to
# 127.0.0.1 and a Unix socket only; every wait is bounded.

set -euo pipefail

TRIALS=15
while [ $# -gt 0 ]; do
	case "$1" in
	--trials) TRIALS=$2; shift 2 ;;
	--quick) TRIALS=5; shift ;;
	*) echo "usage: bash bench/precision.sh [--trials N] [--quick]" >&2; exit 2 ;;
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
# shellcheck source=bench/common.sh
. "$SCRIPT_DIR/common.sh"
CLIENTS=()
BUILD_DIR=
RUN_DIR=
# cleanup: stop the clients and the cluster we started
cleanup() {
	local c
	for c in "${CLIENTS[@]}"; do
		kill "$c" 2>/dev/null || true
	done
	[ -n "$RUN_DIR" ] && ig_stop_servers_under "$RUN_DIR" "$PG_CONFIG"
	rm -rf "$BUILD_DIR" "$RUN_DIR"
}
trap cleanup EXIT
# a timeout or ^C: leave through the EXIT trap, so nothing is left running
trap 'exit 143' TERM INT
ig_bench_prepare

ig_start_cluster "$RUN_DIR" "$BINDIR" 55440 "shared_preload_libraries = 'idle_guard'
idle_guard.action = 'terminate'
idle_guard.idle_timeout = '1s'
idle_guard.blocking_timeout = 0
idle_guard.naptime = '1s'" || ig_die "could not start the cluster"

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

# client APP SQL: a background psql named APP that runs SQL then stays
# connected for at most 30 s
client() {
	(
		printf '%s\n' "SET application_name = '$1'; $2"
		sleep 30
	) 2>/dev/null | "$BINDIR/psql" -X -q -h "$RUN_DIR" -p "$IG_CLUSTER_PORT" -U postgres \
		-d postgres >/dev/null 2>&1 &
	CLIENTS+=("$!")
}

# trial SCENARIO CONTENDER N: one silent session, ended by CONTENDER;
# prints "SCENARIO,CONTENDER,N,lateness_ms"
trial() {
	local sc=$1 who=$2 n=$3 app="bench_${1}_${2}_$3" setup pid since deadline wait_sql late at
	case "$who,$sc" in
	builtin,*) setup="SET idle_guard.action = 'off'; SET idle_in_transaction_session_timeout = '1s';" ;;
	idle_guard,idle) setup="SET idle_guard.idle_timeout = '1s'; SET idle_guard.blocking_timeout = 0;" ;;
	idle_guard,*) setup="SET idle_guard.idle_timeout = 0; SET idle_guard.blocking_timeout = '1s';" ;;
	esac
	client "$app" "$setup BEGIN; SELECT * FROM t;"
	wait_for "SELECT count(*) = 1 FROM pg_stat_activity WHERE application_name = '$app' AND state = 'idle in transaction'"
	pid=$(psql_q "SELECT pid FROM pg_stat_activity WHERE application_name = '$app'")
	since=$(psql_q "SELECT state_change FROM pg_stat_activity WHERE pid = $pid")
	deadline="('$since'::timestamptz + interval '1 s')"
	if [ "$sc" != idle ]; then
		[ "$sc" = late_waiter ] &&
			bench_sleep_until "$(psql_q "SELECT (extract(epoch FROM '$since'::timestamptz + interval '1.1 s') * 1000000)::bigint + $((RANDOM % 800)) * 1000")"
		client "w_$app" "BEGIN; LOCK TABLE t IN ACCESS EXCLUSIVE MODE; COMMIT;"
		wait_sql="SELECT query_start FROM pg_stat_activity WHERE application_name = 'w_$app' AND wait_event_type = 'Lock'"
		if [ "$sc" = late_waiter ]; then
			wait_for "SELECT count(*) = 1 FROM ($wait_sql) w"
			deadline="'$(psql_q "$wait_sql")'::timestamptz"
		fi
	fi
	wait_for "SELECT count(*) = 0 FROM pg_stat_activity WHERE pid = $pid"
	if [ "$who" = idle_guard ]; then
		late=$(psql_q "SELECT round((extract(epoch FROM '$since'::timestamptz + silent_for - $deadline) * 1000)::numeric, 3)
			FROM idle_guard_history() WHERE pid = $pid ORDER BY at DESC LIMIT 1")
	else
		at=$(grep -a "\[$pid\] .*FATAL:  terminating connection due to idle-in-transaction timeout" \
			"$RUN_DIR/server.log" | awk '{print $1" "$2" "$3}' | head -1)
		[ -n "$at" ] || ig_die "no built-in timeout logged for $pid"
		late=$(psql_q "SELECT round((extract(epoch FROM '$at'::timestamptz - $deadline) * 1000)::numeric, 3)")
	fi
	[ -n "$late" ] || ig_die "no action recorded for $who trial $n (pid $pid)"
	kill "${CLIENTS[-1]}" 2>/dev/null || true # the waiter, or the ended session
	echo "$sc,$who,$n,$late"
}

mkdir -p "$REPO/bench/results"
CSV="$REPO/bench/results/precision.csv"
echo "scenario,contender,trial,lateness_ms" >"$CSV"
ig_say "running $TRIALS trials per case, interleaved"
for n in $(seq 1 "$TRIALS"); do
	for c in idle,idle_guard idle,builtin blocking,idle_guard blocking,builtin late_waiter,idle_guard; do
		trial "${c%,*}" "${c#*,}" "$n" >>"$CSV"
	done
done

psql_q "CREATE TABLE r (scenario text, contender text, trial int, lateness_ms float8)" >/dev/null
bench_load_csv r "$CSV"
echo
echo "Deadline precision, timeouts of 1 s, $TRIALS interleaved trials per case"
echo "(lateness = action time - deadline, in ms; deadline = start of the silence + 1 s,"
echo " or for a late waiter the start of its wait; idle_guard naptime 1 s)"
bench_machine
echo
bench_table "
SELECT scenario, contender,
       count(*) AS trials,
       round(percentile_cont(0.5) WITHIN GROUP (ORDER BY lateness_ms)::numeric, 2) AS p50_ms,
       round(percentile_cont(0.9) WITHIN GROUP (ORDER BY lateness_ms)::numeric, 2) AS p90_ms,
       round(percentile_cont(0.99) WITHIN GROUP (ORDER BY lateness_ms)::numeric, 2) AS p99_ms,
       round(max(lateness_ms)::numeric, 2) AS max_ms,
       round(min(lateness_ms)::numeric, 2) AS min_ms
FROM r GROUP BY scenario, contender
ORDER BY array_position(ARRAY['idle', 'blocking', 'late_waiter'], scenario), contender DESC"
ig_say "per-trial figures: bench/results/precision.csv"
