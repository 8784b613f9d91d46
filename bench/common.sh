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
#   - microsecond clocks and sleeping until a moment (bench_now_us,
#     bench_sleep_until);
#   - the CPU time a process has used, from /proc (bench_cpu_ns);
#   - the one-line description of the machine every table prints;
#   - starting and stopping a private PgBouncer as the server user, on
#     127.0.0.1 only (bench_pgbouncer_start, bench_pgbouncer_stop);
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
# return at once if it has passed.
bench_sleep_until() {
	local left
	left=$(($1 - $(bench_now_us)))
	[ "$left" -gt 0 ] && sleep "$(bench_us_to_s "$left")"
	return 0
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
