#!/usr/bin/env bash
#
# bench/run.sh -- every benchmark of idle_guard, in one command.
#
#   bash bench/run.sh [--quick]
#
# Installs what is missing (the build and test packages via
# scripts/setup.sh, plus pgbouncer and gnuplot-nox), then runs, each on its
# own throwaway server on 127.0.0.1 (ports 55400-55499):
#   1. bench/recovery.sh    outage recovery against today's alternatives;
#   2. bench/sweep_cost.sh  sweep cost at 100, 500 and 1000 connections, over
#                           TCP and the Unix socket; keepalive probes;
#   3. bench/overhead.sh    throughput overhead, with a control;
#   4. bench/precision.sh   deadline precision;
#   5. bench/standby.sh     WAL replay stopped by a silent session on a hot
#                           standby, against max_standby_streaming_delay.
# Each script builds and installs the current tree into the system's
# PostgreSQL 15 first.  Results: bench/results/*.csv and *.png, each
# script's table in bench/results/<name>.txt, and all five in
# bench/results/summary.txt, which this script prints at the end.
# About 20 minutes on 2 cores; --quick (fewer and shorter rounds, for
# development) about 7.  Each script is bounded by a timeout.

set -euo pipefail

QUICK=()
while [ $# -gt 0 ]; do
	case "$1" in
	--quick) QUICK=(--quick); shift ;;
	*) echo "usage: bash bench/run.sh [--quick]" >&2; exit 2 ;;
	esac
done

IG_LOG_PREFIX=bench
SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
# shellcheck source=scripts/lib.sh
. "$SCRIPT_DIR/../scripts/lib.sh"
RESULTS="$SCRIPT_DIR/results"

# run_one NAME LIMIT_S: run bench/NAME.sh, bounded by LIMIT_S seconds,
# showing its progress lines; keep the rest of its output (its table) in
# results/NAME.txt, and all of it in results/NAME.log if it fails
run_one() {
	local name=$1 limit=$2 start rc
	start=$SECONDS
	ig_say "=== $name ==="
	set +e
	timeout -k 20 "$limit" bash "$SCRIPT_DIR/$name.sh" "${QUICK[@]}" 2>&1 |
		tee "$RESULTS/$name.log" | grep --line-buffered -E '^[a-z_]+: '
	rc=${PIPESTATUS[0]}
	set -e
	grep -vE '^(setup|recovery|sweep_cost|overhead|precision|standby): ' "$RESULTS/$name.log" \
		>"$RESULTS/$name.txt" || true
	if [ "$rc" -ne 0 ]; then
		ig_warn "$name failed (exit $rc); its whole output: bench/results/$name.log"
		FAILED+=("$name")
	else
		rm -f "$RESULTS/$name.log"
	fi
	ig_say "$name took $((SECONDS - start)) s"
}

mkdir -p "$RESULTS"
bash "$SCRIPT_DIR/../scripts/setup.sh" pgbouncer gnuplot-nox
FAILED=()
run_one recovery 600
run_one sweep_cost 480
run_one overhead 600
run_one precision 400
run_one standby 1200

{
	echo "idle_guard benchmarks, $(date -u '+%Y-%m-%d %H:%M UTC'), bash bench/run.sh ${QUICK[*]}"
	echo "total run time: $((SECONDS / 60)) min $((SECONDS % 60)) s"
	for name in recovery sweep_cost overhead precision standby; do
		echo
		echo "## $name"
		cat "$RESULTS/$name.txt"
	done
} >"$RESULTS/summary.txt"
echo
cat "$RESULTS/summary.txt"
[ "${#FAILED[@]}" -eq 0 ] || ig_die "failed: ${FAILED[*]}"
ig_say "done in $((SECONDS / 60)) min $((SECONDS % 60)) s; results in bench/results/"
