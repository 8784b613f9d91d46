# shellcheck shell=bash
#
# bench/common.sh -- helpers shared by the bench/ scripts, on top of
# scripts/lib.sh (source that first, then ig_bench_prepare and
# ig_start_cluster, so that BINDIR, RUN_DIR and IG_CLUSTER_PORT are set).
#
# Source it, do not run it: it only defines functions.  What they cover:
#   - installing what is missing, building and installing idle_guard from a
#     copy of the tree, making a run directory (ig_bench_prepare; the soak,
#     test/soak/soak.sh, uses it too);
#   - running SQL on the throwaway cluster (bench_sql) and waiting, bounded,
#     for a condition (bench_wait_for);
#   - a client that goes silent in a transaction until told to speak
#     (bench_silent_client);
#   - microsecond clocks and sleeping until a moment (bench_now_us,
#     bench_sleep_until);
#   - commits per 100 ms from pgbench's per-transaction logs
#     (bench_commit_buckets);
#   - the CPU time a process has used, from /proc (bench_cpu_ns);
#   - the one-line description of the machine every table prints;
#   - starting and stopping a private PgBouncer as the server user, on
#     127.0.0.1 only (bench_pgbouncer_start, bench_pgbouncer_stop);
#   - making a streaming hot standby of the cluster and waiting until it has
#     caught up (bench_start_standby, bench_standby_caught_up);
#   - when a server log line was written (bench_log_epoch);
#   - loading a CSV file into a table of the cluster to summarise it in SQL.

# ig_bench_prepare [NAME [PACKAGE...]]: what every bench/ script and the
# soak do first: install what is missing (scripts/setup.sh PACKAGE...),
# build and install idle_guard from a copy of the tree, and make a run
# directory for a throwaway cluster, in /tmp/NAME_build.XXXXXX and
# /tmp/NAME.XXXXXX (NAME defaults to idle_guard_bench).  Sets REPO,
# PG_CONFIG, BINDIR, BUILD_DIR and RUN_DIR, and clears libpq's environment
# so nothing reaches another server.  The caller removes BUILD_DIR and
# RUN_DIR.
ig_bench_prepare() {
	local name=${1:-idle_guard_bench}
	[ "$#" -eq 0 ] || shift
	REPO=$(ig_repo_root)
	bash "$REPO/scripts/setup.sh" "$@"
	PG_CONFIG=$(ig_pg_config)
	BINDIR=$("$PG_CONFIG" --bindir)
	unset PGHOST PGHOSTADDR PGPORT PGDATABASE PGUSER PGSERVICE PGOPTIONS PGDATA PGAPPNAME
	BUILD_DIR=$(mktemp -d "/tmp/${name}_build.XXXXXX")
	RUN_DIR=$(mktemp -d "/tmp/$name.XXXXXX")
	ig_copy_source "$REPO" "$BUILD_DIR" >/dev/null
	ig_build_install "$BUILD_DIR" "$PG_CONFIG" "$BUILD_DIR/build.log" ||
		ig_die "could not build and install idle_guard"
	ig_give_to_server_user "$RUN_DIR"
}

# bench_start_standby DIR FIRST_PORT EXTRA_CONF: make DIR/data a streaming
# hot standby of the cluster (pg_basebackup -R over its Unix socket, as the
# server user) and start it on the first free port from FIRST_PORT
# (BENCH_STANDBY_PORT), on 127.0.0.1 and the cluster's socket directory,
# logging to DIR/server.log; EXTRA_CONF (lines) is appended to the
# postgresql.conf it copied.  Waits, bounded, until it streams.
bench_start_standby() {
	local dir=$1 first=$2 p
	BENCH_STANDBY_PORT=
	for p in $(seq "$first" $((first + 40))); do
		if [ "$p" != "$IG_CLUSTER_PORT" ] && ig_port_free "$p"; then BENCH_STANDBY_PORT=$p && break; fi
	done
	[ -n "$BENCH_STANDBY_PORT" ] || { ig_warn "no free port in $first-$((first + 40))"; return 1; }
	ig_say "making a streaming standby in $dir/data (port $BENCH_STANDBY_PORT)"
	mkdir -p "$dir" && ig_give_to_server_user "$dir"
	if ! ig_as_server_user timeout 120 "$BINDIR/pg_basebackup" -h "$RUN_DIR" -p "$IG_CLUSTER_PORT" \
		-U postgres -D "$dir/data" -R -X stream -c fast --no-sync >"$dir/basebackup.log" 2>&1; then
		cat "$dir/basebackup.log" >&2
		ig_warn "pg_basebackup failed"
		return 1
	fi
	printf '\n# --- standby, added by %s ---\nport = %s\n%s\n' "$IG_LOG_PREFIX" \
		"$BENCH_STANDBY_PORT" "$3" >>"$dir/data/postgresql.conf"
	ig_as_server_user "$BINDIR/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start >/dev/null ||
		{ ig_warn "the standby did not start"; return 1; }
	IG_CLUSTER_PORT=$BENCH_STANDBY_PORT bench_wait_for \
		"SELECT count(*) = 1 FROM pg_stat_wal_receiver WHERE status = 'streaming'" 300 ||
		{ ig_warn "the standby does not stream"; return 1; }
}

# bench_standby_caught_up: wait (30 s at most) until the standby of
# bench_start_standby has replayed all that the cluster has written.
bench_standby_caught_up() {
	IG_CLUSTER_PORT=$BENCH_STANDBY_PORT bench_wait_for \
		"SELECT pg_last_wal_replay_lsn() >= '$(bench_sql "SELECT pg_current_wal_lsn()")'" 300
}

# bench_log_epoch LOG PATTERN: the epoch (seconds, three decimals) of the
# first line of the server log LOG that matches the extended regular
# expression PATTERN, from its log_line_prefix's %m; nothing if none does.
bench_log_epoch() {
	local ts
	ts=$(grep -a -m1 -E "$2" "$1" | awk '{ print $1, $2, $3 }') || true
	[ -z "$ts" ] || date -d "$ts" +%s.%3N
}

# bench_sql SQL: run SQL on the cluster over its Unix socket, unaligned
# tuples-only output, stop on the first error.
bench_sql() {
	"$BINDIR/psql" -X -At -v ON_ERROR_STOP=1 -h "$RUN_DIR" -p "$IG_CLUSTER_PORT" \
		-U postgres -d postgres -c "$1"
}

# bench_table SQL: run SQL and print its result as an aligned table.
bench_table() {
	"$BINDIR/psql" -X -v ON_ERROR_STOP=1 -h "$RUN_DIR" -p "$IG_CLUSTER_PORT" \
		-U postgres -d postgres -P footer=off -c "$1"
}

# bench_load_csv TABLE FILE: append FILE (a CSV with a header line) to TABLE.
bench_load_csv() {
	tail -n +2 "$2" | "$BINDIR/psql" -X -q -v ON_ERROR_STOP=1 -h "$RUN_DIR" \
		-p "$IG_CLUSTER_PORT" -U postgres -d postgres \
		-c "COPY $1 FROM STDIN WITH (FORMAT csv)"
}

# bench_wait_for SQL [TENTHS]: poll every 50 ms until SQL returns t; give
# up (return 1) after TENTHS tenths of a second (default 200, i.e. 20 s).
bench_wait_for() {
	local tries=$((${2:-200} * 2))
	while [ "$tries" -gt 0 ]; do
		[ "$(bench_sql "$1")" = t ] && return 0
		tries=$((tries - 1))
		sleep 0.05
	done
	return 1
}

# bench_silent_client DIR NAME CONNINFO SQL [MAX_S]: start, in the
# background ($! is its pid), a psql client named NAME that runs SQL, stays
# silent until the file DIR/speak appears or DIR goes (MAX_S seconds at
# most, default 30), then runs SELECT 'alive'; COMMIT.  Its output, errors
# included, goes to DIR/NAME.out: "alive" in it means it was never ended.
bench_silent_client() {
	local dir=$1 name=$2 max=${5:-30}
	{
		printf '%s\n' "$4"
		for _ in $(seq 1 $((max * 20))); do
			{ [ -e "$dir/speak" ] || [ ! -d "$dir" ]; } && break
			sleep 0.05
		done
		printf '%s\n' "SELECT 'alive'; COMMIT;"
	} 2>/dev/null | timeout $((max + 30)) "$BINDIR/psql" -X -At "$3 application_name=$name" \
		>"$dir/$name.out" 2>&1 &
}

# bench_now_us: the wall clock in microseconds since the epoch.
bench_now_us() {
	local t=$EPOCHREALTIME
	printf '%s\n' "${t/./}"
}

# bench_us_to_s US: microseconds as seconds with six decimals ("1.500000").
bench_us_to_s() {
	local us=$1
	[ "$us" -lt 0 ] && us=0
	printf '%d.%06d\n' $((us / 1000000)) $((us % 1000000))
}

# bench_sleep_until US: sleep until the epoch moment US (microseconds);
# return at once if it has passed.  Sleeps a second at most at a time: bash
# runs a signal's trap only once the sleep in progress ends.
bench_sleep_until() {
	local left
	left=$(($1 - $(bench_now_us)))
	while [ "$left" -gt 1000000 ]; do
		sleep 1
		left=$(($1 - $(bench_now_us)))
	done
	[ "$left" -gt 0 ] && sleep "$(bench_us_to_s "$left")"
	return 0
}

# bench_commit_buckets ORIGIN FROM TO FILE...: transactions committed per
# 100 ms in pgbench per-transaction logs (pgbench -l), bucket i covering
# [ORIGIN + i/10, ORIGIN + (i+1)/10) s (ORIGIN in epoch seconds, i from FROM
# to TO, both > -1000); prints "t_s,commits" lines, a missing bucket as 0.
bench_commit_buckets() {
	local origin=$1 from=$2 to=$3
	shift 3
	cat "$@" | awk -v s="$origin" -v from="$from" -v to="$to" '
		$3 ~ /^[0-9]+$/ {
			i = int(($5 + $6 / 1000000 - s + 100) * 10) - 1000
			if (i >= from && i <= to) n[i]++
		}
		END { for (i = from; i <= to; i++) printf "%.1f,%d\n", i / 10, n[i] + 0 }'
}

# bench_cpu_ns PID: CPU time the process PID has used, in nanoseconds
# (/proc/PID/schedstat; else utime + stime from /proc/PID/stat, in ticks)
bench_cpu_ns() {
	if [ -r "/proc/$1/schedstat" ]; then
		cut -d' ' -f1 "/proc/$1/schedstat"
	else
		awk -v hz="$(getconf CLK_TCK)" '{ printf "%.0f", ($14 + $15) * 1e9 / hz }' "/proc/$1/stat"
	fi
}

# bench_machine: one line naming the machine, its CPU and PostgreSQL.
bench_machine() {
	local cpu
	cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)
	printf 'machine: %s cores (%s), %s; %s\n' "$(nproc)" "${cpu:-unknown CPU}" \
		"$(uname -sr)" "$("$BINDIR/postgres" --version)"
}

# bench_pgbouncer_start DIR PORT TIMEOUT_S: start a PgBouncer as the server
# user in transaction pooling mode on 127.0.0.1:PORT in front of the
# cluster, with idle_transaction_timeout = TIMEOUT_S (0 = off); its ini,
# log and pid file live in DIR (which the server user must own).  Waits,
# bounded, until it accepts connections.
bench_pgbouncer_start() {
	local dir=$1 port=$2 timeout_s=$3 tries=100
	printf '"postgres" ""\n' >"$dir/userlist.txt"
	cat >"$dir/pgbouncer.ini" <<INI
[databases]
postgres = host=127.0.0.1 port=$IG_CLUSTER_PORT dbname=postgres user=postgres

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $port
unix_socket_dir =
auth_type = trust
auth_file = $dir/userlist.txt
pool_mode = transaction
default_pool_size = 40
max_client_conn = 200
idle_transaction_timeout = $timeout_s
ignore_startup_parameters = extra_float_digits
logfile = $dir/pgbouncer.log
pidfile = $dir/pgbouncer.pid
INI
	ig_give_to_server_user "$dir"
	ig_as_server_user pgbouncer -d -q "$dir/pgbouncer.ini" ||
		ig_die "pgbouncer did not start (see $dir/pgbouncer.log)"
	while ig_port_free "$port"; do
		tries=$((tries - 1))
		[ "$tries" -gt 0 ] || ig_die "pgbouncer is not listening on 127.0.0.1:$port"
		sleep 0.05
	done
}

# bench_pgbouncer_stop DIR: stop the PgBouncer whose pid file is in DIR
# (immediate shutdown), and wait, bounded, until it has gone.
bench_pgbouncer_stop() {
	local pidfile=$1/pgbouncer.pid pid tries=100
	[ -f "$pidfile" ] || return 0
	pid=$(cat "$pidfile")
	kill -TERM "$pid" 2>/dev/null || true
	while kill -0 "$pid" 2>/dev/null; do
		tries=$((tries - 1))
		[ "$tries" -gt 0 ] || { kill -KILL "$pid" 2>/dev/null || true; break; }
		sleep 0.05
	done
	rm -f "$pidfile"
}

# bench_parse_rounds ARG...: the options every multi-round benchmark takes,
# "--rounds N" (1 to 20, default 3) and "--quick" (1 round); sets ROUNDS.
# Exits with status 2 and the usage on anything else.  IG_LOG_PREFIX names
# the script (bench/$IG_LOG_PREFIX.sh).
bench_parse_rounds() {
	ROUNDS=3
	while [ $# -gt 0 ]; do
		case "$1" in
		--rounds) ROUNDS=${2:-}; shift 2 || shift ;;
		--quick) ROUNDS=1; shift ;;
		*) echo "usage: bash bench/$IG_LOG_PREFIX.sh [--rounds N] [--quick]" >&2; exit 2 ;;
		esac
	done
	if ! [[ "$ROUNDS" =~ ^[0-9]+$ ]] || [ "$ROUNDS" -lt 1 ] || [ "$ROUNDS" -gt 20 ]; then
		echo "$IG_LOG_PREFIX: --rounds takes 1 to 20" >&2
		exit 2
	fi
}

# bench_interleave FUNC CONTENDER...: run "FUNC CONTENDER ROUND" for each of
# ROUNDS rounds and each contender, the contenders' order rotating by one
# from round to round, so that none always runs on a warmer or cooler
# machine.
bench_interleave() {
	local fn=$1 r i
	shift
	for r in $(seq 1 "$ROUNDS"); do
		for ((i = 0; i < $#; i++)); do
			"$fn" "${@:$(((i + r - 1) % $# + 1)):1}" "$r"
		done
	done
}
