#!/usr/bin/env bash
#
# test/soak/soak.sh -- many concurrent clients against idle_guard, judged by
# an oracle.
#
# Usage: bash test/soak/soak.sh [--duration SECONDS] [--clients N] [--keep]
#        make soak [DURATION=SECONDS]
#
#   --duration SECONDS  how long the clients run (default 300)
#   --clients N         concurrent clients (default 120); each may hold a
#                       second connection that waits on its first
#   --keep              keep the run directory (client logs, server log)
#
# Steps:
#   1. installs what is missing (scripts/setup.sh, python3-psycopg2), builds
#      idle_guard with -Werror from a copy of the tree and installs it into
#      the release's PostgreSQL (ig_bench_prepare, bench/common.sh);
#   2. starts a throwaway cluster on 127.0.0.1 (first free port from 55600)
#      with idle_guard preloaded: action terminate, blocking_timeout 2.5 s,
#      idle_timeout 8 s, naptime 200 ms, an exempt role and application
#      prefix, a history large enough for the whole run, log lines with
#      millisecond timestamps;
#   3. test/soak/driver.py runs the clients (random scenarios, each logged
#      with timestamps) and reloads a changed policy twice mid-run, samples
#      idle_guard_report() every 200 ms, then dumps idle_guard_history(),
#      idle_guard_stats() and the worker's RSS;
#   4. test/soak/oracle.py decides from the clients' logs which sessions
#      had to be terminated (or reported) and which must not be touched,
#      checks the history and the clients' own view against that, checks
#      that every deadline the report showed as passed was kept (the
#      report's promises), and prints the report;
#   5. the server log is searched for crashes.
#
# Exits non-zero on any wrong kill, missed action, broken promise, worker
# RSS growth over 1024 kB after the warm-up, worker restart or crash.
# Talks to 127.0.0.1 only; every wait is bounded (the driver gives up 30 s
# after the longest scenario could end, the whole run after duration + 10
# minutes).

set -euo pipefail

DURATION=300
CLIENTS=120
KEEP=0
while [ $# -gt 0 ]; do
	case "$1" in
	--duration) DURATION=${2:-}; shift 2 ;;
	--clients) CLIENTS=${2:-}; shift 2 ;;
	--keep) KEEP=1; shift ;;
	*) echo "usage: bash test/soak/soak.sh [--duration SECONDS] [--clients N] [--keep]" >&2; exit 2 ;;
	esac
done
if ! [[ "$DURATION" =~ ^[0-9]+$ ]] || [ "$DURATION" -lt 10 ] || [ "$DURATION" -gt 86400 ]; then
	echo "soak: --duration takes 10 to 86400 seconds" >&2
	exit 2
fi
if ! [[ "$CLIENTS" =~ ^[0-9]+$ ]] || [ "$CLIENTS" -lt 1 ] || [ "$CLIENTS" -gt 400 ]; then
	echo "soak: --clients takes 1 to 400" >&2
	exit 2
fi

IG_LOG_PREFIX=soak
SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
# shellcheck source=scripts/lib.sh
. "$SCRIPT_DIR/../../scripts/lib.sh"
# shellcheck source=bench/common.sh
. "$SCRIPT_DIR/../../bench/common.sh"

# The policy at the start (the driver changes it at two reloads), in ms.
BLOCKING_MS=2500
IDLE_MS=8000
NAPTIME_MS=200
# Allowed growth of the worker's private memory after the warm-up, in kB.
RSS_BOUND_KB=1024
PYTHON=/usr/bin/python3

BUILD_DIR=
RUN_DIR=
# cleanup: stop the server and remove the temporary directories (the run
# directory stays with --keep).
cleanup() {
	[ -n "$RUN_DIR" ] && ig_stop_servers_under "$RUN_DIR" "$PG_CONFIG"
	[ -n "$BUILD_DIR" ] && rm -rf "$BUILD_DIR"
	if [ "$KEEP" = 1 ] && [ -n "$RUN_DIR" ]; then
		ig_say "kept $RUN_DIR"
	elif [ -n "$RUN_DIR" ]; then
		rm -rf "$RUN_DIR"
	fi
}
trap cleanup EXIT

# Install what is missing (the soak's driver needs psycopg2 besides what
# the benchmarks need), build and install idle_guard, make the run
# directory: /tmp/idle_guard_soak*.
ig_bench_prepare idle_guard_soak python3-psycopg2

# Three connections per client at most (its holder and its waiter, kept
# open, and the session of a scenario that needs one of its own: another
# role), the admin's, the sampler's, and room to spare.
MAX_CONN=$((CLIENTS * 3 + 40))
ig_start_cluster "$RUN_DIR" "$BINDIR" 55600 "shared_preload_libraries = 'idle_guard'
max_connections = $MAX_CONN
autovacuum = off
shared_buffers = '64MB'
idle_guard.action = 'terminate'
idle_guard.blocking_timeout = '${BLOCKING_MS}ms'
idle_guard.idle_timeout = '${IDLE_MS}ms'
idle_guard.naptime = '${NAPTIME_MS}ms'
idle_guard.exempt_roles = 'soak_exempt'
idle_guard.exempt_applications = 'pg_dump,soak_etl_*'
idle_guard.history_size = 10000
log_min_messages = 'log'" || ig_die "could not start the cluster"
ig_say "cluster on 127.0.0.1:$IG_CLUSTER_PORT, max_connections $MAX_CONN"

OUT="$RUN_DIR/out"
mkdir -p "$OUT"
rc=0
timeout -k 10 $((DURATION + 600)) "$PYTHON" "$REPO/test/soak/driver.py" \
	--port "$IG_CLUSTER_PORT" --duration "$DURATION" --clients "$CLIENTS" --out "$OUT" \
	--blocking-ms "$BLOCKING_MS" --idle-ms "$IDLE_MS" --naptime-ms "$NAPTIME_MS" || rc=$?
if [ "$rc" -ne 0 ]; then
	tail -n 30 "$RUN_DIR/server.log" >&2
	ig_die "the driver failed (exit status $rc)"
fi

"$PYTHON" "$REPO/test/soak/oracle.py" "$OUT" --rss-bound-kb "$RSS_BOUND_KB" || rc=$?

# A crash of any server process shows in the log
if grep -aE 'terminated by signal|PANIC|TRAP:' "$RUN_DIR/server.log" >&2; then
	ig_warn "FAIL: the server log shows a crash (lines above)"
	rc=1
else
	ig_say "server log: no crash"
fi
exit "$rc"
