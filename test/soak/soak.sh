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
#   1. installs what is missing (scripts/setup.sh, python3-psycopg2; nft and
#      ip come with setup.sh), builds idle_guard with -Werror from a copy of
#      the tree and installs it into the release's PostgreSQL
#      (ig_bench_prepare, bench/common.sh);
#   2. re-runs itself in a network namespace of its own (unshare --net as
#      root; as another user, in a user namespace too, as t/032 does), with
#      only the loopback interface, up: the server, the clients and the
#      nftables rules that sever some of them live there alone, so the
#      host's firewall is never touched and the rules die with the
#      namespace, whatever happens;
#   3. starts a throwaway cluster on 127.0.0.1 (first free port from 55600)
#      with idle_guard preloaded: action terminate, blocking_timeout 2.5 s,
#      idle_timeout 8 s, naptime 200 ms, unreachable_timeout 3 s,
#      tcp_keepalives 1 s (a severed client is found unreachable within
#      about 2 s), an exempt role and application prefix, a history large
#      enough for the whole run, log lines with millisecond timestamps;
#   4. test/soak/driver.py runs the clients (random scenarios, each logged
#      with timestamps; among them clients that stop reading a large
#      result, and clients severed by an nftables drop rule) and reloads a
#      changed policy twice mid-run, samples idle_guard_report() every
#      200 ms, then dumps idle_guard_history(), idle_guard_stats() and the
#      worker's RSS;
#   5. test/soak/oracle.py decides from the clients' logs which sessions
#      had to be terminated (or reported) and which must not be touched,
#      checks the history and the clients' own view against that, checks
#      that every deadline the report showed as passed was kept (the
#      report's promises), and prints the report;
#   6. the server log is searched for crashes.
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
IN_NETNS=
while [ $# -gt 0 ]; do
	case "$1" in
	--duration) DURATION=${2:-}; shift 2 ;;
	--clients) CLIENTS=${2:-}; shift 2 ;;
	--keep) KEEP=1; shift ;;
	--in-netns) IN_NETNS=${2:-}; shift 2 ;; # internal: steps 3 to 6, in RUN_DIR
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
UNREACHABLE_MS=3000
KEEPALIVES=1s
# Allowed growth of the worker's private memory after the warm-up, in kB.
RSS_BOUND_KB=1024
PYTHON=/usr/bin/python3

# soak_run: steps 3 to 6, in the network namespace (RUN_DIR, BINDIR and
# REPO set).  Returns the run's verdict.
soak_run() {
	local rc=0 out=$RUN_DIR/out
	# Three connections per client at most (its holder and its waiter, kept
	# open, and the session of a scenario that needs one of its own: another
	# role, the raw protocol), the admin's, the sampler's, and room to spare.
	local max_conn=$((CLIENTS * 3 + 40))
	ig_start_cluster "$RUN_DIR" "$BINDIR" 55600 "shared_preload_libraries = 'idle_guard'
max_connections = $max_conn
autovacuum = off
shared_buffers = '64MB'
idle_guard.action = 'terminate'
idle_guard.blocking_timeout = '${BLOCKING_MS}ms'
idle_guard.idle_timeout = '${IDLE_MS}ms'
idle_guard.naptime = '${NAPTIME_MS}ms'
idle_guard.unreachable_timeout = '${UNREACHABLE_MS}ms'
idle_guard.tcp_keepalives = '$KEEPALIVES'
idle_guard.exempt_roles = 'soak_exempt'
idle_guard.exempt_applications = 'pg_dump,soak_etl_*'
idle_guard.history_size = 10000
log_min_messages = 'log'" || ig_die "could not start the cluster"
	ig_say "cluster on 127.0.0.1:$IG_CLUSTER_PORT (network namespace $(readlink /proc/self/ns/net)), max_connections $max_conn"

	mkdir -p "$out"
	timeout -k 10 $((DURATION + 600)) "$PYTHON" "$REPO/test/soak/driver.py" \
		--port "$IG_CLUSTER_PORT" --duration "$DURATION" --clients "$CLIENTS" --out "$out" \
		--blocking-ms "$BLOCKING_MS" --idle-ms "$IDLE_MS" --naptime-ms "$NAPTIME_MS" \
		--unreachable-ms "$UNREACHABLE_MS" --sever "$IG_SOAK_OUTER_NETNS" || rc=$?
	if [ "$rc" -ne 0 ]; then
		tail -n 30 "$RUN_DIR/server.log" >&2
		ig_die "the driver failed (exit status $rc)"
	fi

	"$PYTHON" "$REPO/test/soak/oracle.py" "$out" --rss-bound-kb "$RSS_BOUND_KB" || rc=$?

	# A crash of any server process shows in the log
	if grep -aE 'terminated by signal|PANIC|TRAP:' "$RUN_DIR/server.log" >&2; then
		ig_warn "FAIL: the server log shows a crash (lines above)"
		rc=1
	else
		ig_say "server log: no crash"
	fi
	return "$rc"
}

# Steps 3 to 6, when soak.sh re-ran itself in the network namespace: the
# server stops when they end, so the namespace goes with it.
if [ -n "$IN_NETNS" ]; then
	[ "$(readlink /proc/self/ns/net)" != "${IG_SOAK_OUTER_NETNS:-}" ] ||
		ig_die "--in-netns: still in the network namespace soak.sh started in"
	RUN_DIR=$IN_NETNS
	REPO=$(ig_repo_root)
	PG_CONFIG=$(ig_pg_config)
	BINDIR=$("$PG_CONFIG" --bindir)
	ig_on_exit ig_stop_servers_under "$RUN_DIR" "$PG_CONFIG"
	rc=0
	soak_run || rc=$?
	exit "$rc"
fi

BUILD_DIR=
RUN_DIR=
# cleanup: stop the server and remove the temporary directories (the run
# directory stays with --keep).
# shellcheck disable=SC2317 # called at exit (ig_on_exit)
cleanup() {
	[ -n "$RUN_DIR" ] && ig_stop_servers_under "$RUN_DIR" "$PG_CONFIG"
	[ -n "$BUILD_DIR" ] && rm -rf "$BUILD_DIR"
	if [ "$KEEP" = 1 ] && [ -n "$RUN_DIR" ]; then
		ig_say "kept $RUN_DIR"
	elif [ -n "$RUN_DIR" ]; then
		rm -rf "$RUN_DIR"
	fi
}
ig_on_exit cleanup

# Install what is missing (the soak's driver needs psycopg2 besides what
# the benchmarks need), build and install idle_guard, make the run
# directory: /tmp/idle_guard_soak*.
ig_bench_prepare idle_guard_soak python3-psycopg2

# Steps 3 to 6 in a network namespace of their own, with loopback up.  As
# root, a plain network namespace: the server still runs as the server
# user.  As another user, a user namespace too (mapped to that user, with
# the capabilities it gets there kept for nft), as t/032 does.
if ig_is_root; then
	NETNS=(unshare --net)
else
	NETNS=(unshare --user --net "--map-user=$(id -u)" "--map-group=$(id -g)" --keep-caps)
fi
rc=0
IG_SOAK_OUTER_NETNS=$(readlink /proc/self/ns/net) PG_CONFIG=$PG_CONFIG PATH="$PATH:/usr/sbin:/sbin" \
	"${NETNS[@]}" -- \
	sh -c 'ip link set lo up && exec "$@"' sh \
	bash "$SCRIPT_DIR/soak.sh" --duration "$DURATION" --clients "$CLIENTS" --in-netns "$RUN_DIR" || rc=$?
exit "$rc"
