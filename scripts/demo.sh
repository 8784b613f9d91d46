#!/usr/bin/env bash
#
# scripts/demo.sh -- watch idle_guard end a forgotten transaction.
#
# Usage: bash scripts/demo.sh [--keep] [--installed]
#
#   --keep         keep the temporary directories (cluster, logs, build)
#   --installed    use the installed package postgresql-NN-idle-guard:
#                  install nothing, build nothing (the quick start of a
#                  package install; CI runs it on each package it built)
#   PG_CONFIG=...  pg_config to build against (default: this Debian release's)
#
# Installs what is missing (scripts/setup.sh), builds and installs
# idle_guard from a copy of the tree (with --installed: neither), starts
# a throwaway cluster (port 54329 or the next free one, 127.0.0.1 and a
# socket in a temporary directory; as the postgres user when root) with
# idle_guard preloaded in "terminate"
# mode, and tells the story: a forgetful client goes silent in a
# transaction holding a row lock, three sessions queue behind it,
# idle_guard_report() shows it, idle_guard terminates it after
# blocking_timeout (3s), the others complete, and the history, the stats
# and the server log tell what happened.  Every wait is a bounded poll; if
# the story does not happen the script says which step failed and exits
# non-zero.  The server and the clients are always stopped at the end.

set -euo pipefail

KEEP=0 INSTALLED=0
for arg in "$@"; do
	case "$arg" in
	--keep) KEEP=1 ;;
	--installed) INSTALLED=1 ;;
	-h | --help) sed -n '5,11p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) echo "demo: unknown argument: $arg" >&2; exit 2 ;;
	esac
done

IG_LOG_PREFIX=demo
SCRIPTS=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
# shellcheck source=scripts/lib.sh
. "$SCRIPTS/lib.sh"

# Bounds of the polls below, in seconds; none ends after DEADLINE, the
# budget of the story itself, set once the server runs: installing packages
# and building on a fresh machine take what they take, bounded by their
# own timeouts, and never eat into it.
WAIT_CLIENT=5     # a client connects, or starts waiting on a lock
WAIT_REPORT=10    # the report shows the silent session blocking 3 others
WAIT_TERMINATE=15 # idle_guard terminates it (blocking_timeout is 3s)
WAIT_FINISH=10    # a blocked client completes
STORY_BUDGET=110  # the whole story
DEADLINE=

if [ "$INSTALLED" -eq 1 ]; then
	PACKAGE=$(ig_installed_package) || ig_die "no postgresql-NN-idle-guard is installed (or more than one)"
	PG_CONFIG=/usr/lib/postgresql/$(ig_package_major "$PACKAGE")/bin/pg_config
	dpkg -S "$("$PG_CONFIG" --pkglibdir)/idle_guard.so" >/dev/null ||
		ig_die "$("$PG_CONFIG" --pkglibdir)/idle_guard.so is not from a package"
	ig_say "using the installed package $PACKAGE $(dpkg-query -W -f '${Version}' "$PACKAGE")"
else
	bash "$SCRIPTS/setup.sh"
	PG_CONFIG=$(ig_pg_config)
fi
BINDIR=$("$PG_CONFIG" --bindir)
unset PGHOST PGHOSTADDR PGPORT PGDATABASE PGUSER PGSERVICE PGOPTIONS PGDATA PGAPPNAME
BUILD_DIR=$(mktemp -d /tmp/idle_guard_demo_build.XXXXXX)
DEMO_DIR=$(mktemp -d /tmp/idle_guard_demo.XXXXXX)
BG_PIDS=() # background psql processes

# shellcheck disable=SC2317 # called at exit (ig_on_exit)
cleanup() {
	local status=$IG_EXIT_STATUS pid
	exec 7>&- # EOF for the forgetful client
	kill -TERM "${BG_PIDS[@]}" 2>/dev/null
	ig_stop_servers_under "$DEMO_DIR" "$PG_CONFIG" >/dev/null
	for pid in "${BG_PIDS[@]}"; do
		timeout 5 tail --pid="$pid" -f /dev/null
		kill -KILL "$pid" 2>/dev/null
		wait "$pid" 2>/dev/null
	done
	if [ "$KEEP" -eq 1 ]; then
		ig_say "kept demo directory: $DEMO_DIR (server log: $DEMO_DIR/server.log)"
		ig_say "kept build directory: $BUILD_DIR"
	else
		rm -rf "$DEMO_DIR" "$BUILD_DIR"
	fi
	if [ "$status" -eq 0 ]; then ig_say "done"; else ig_warn "FAILED (exit status $status)"; fi
}
ig_on_exit cleanup

heading() { printf '\n=== %s ===\n\n' "$*"; }

# fail MESSAGE: show the end of the server log, then die.
fail() {
	if [ -f "$DEMO_DIR/server.log" ]; then
		ig_warn "last lines of the server log:"
		tail -n 30 "$DEMO_DIR/server.log" >&2
	fi
	ig_die "$*"
}

# As root we stay root for psql: root may use the postgres-owned socket
# directory, and the background clients stay our children, easy to kill.
PSQL=()
# show SQL / show_x SQL: print the statement, then its aligned / expanded
# output.  value SQL: its single value (an error is kept for wait_until).
show() { printf '=> %s\n' "$1"; "${PSQL[@]}" -P pager=off -c "$1"; }
show_x() { printf '=> %s\n' "$1"; "${PSQL[@]}" -P pager=off -x -c "$1"; }
value() { "${PSQL[@]}" -qAt -c "$1" 2>"$DEMO_DIR/poll.err"; }
is_true() { [ "$(value "$1")" = t ]; }
process_gone() { ! kill -0 "$1" 2>/dev/null; }
waits_on_lock() {
	is_true "SELECT EXISTS (SELECT FROM pg_stat_activity
	         WHERE application_name = '$1' AND wait_event_type = 'Lock')"
}

# wait_until WHAT SECONDS CMD...: poll CMD every 0.1s until it succeeds;
# fail, naming WHAT, after SECONDS (or when the demo's budget runs out).
wait_until() {
	local what=$1 deadline=$(($(date +%s) + $2))
	shift 2
	[ "$deadline" -le "$DEADLINE" ] || deadline=$DEADLINE
	until "$@"; do
		if [ "$(date +%s)" -ge "$deadline" ]; then
			[ -s "$DEMO_DIR/poll.err" ] && ig_warn "last error from a polling query: $(cat "$DEMO_DIR/poll.err")"
			fail "timed out waiting for: $what"
		fi
		sleep 0.1
	done
}

# start_client NAME SQL: SQL in a background psql with application_name
# NAME, output in $DEMO_DIR/NAME.out, pid in CLIENT_PID[NAME].
declare -A CLIENT_PID=()
start_client() {
	PGAPPNAME=$1 "${PSQL[@]}" -c "$2" >"$DEMO_DIR/$1.out" 2>&1 7>&- &
	CLIENT_PID[$1]=$!
	BG_PIDS+=("$!")
}

# --- build, install, start a throwaway cluster ------------------------------

if [ "$INSTALLED" -eq 0 ]; then
	ig_copy_source "$(ig_repo_root)" "$BUILD_DIR" >/dev/null
	ig_build_install "$BUILD_DIR" "$PG_CONFIG" "$BUILD_DIR/build.log" ||
		fail "could not build and install idle_guard (log: $BUILD_DIR/build.log, kept with --keep)"
fi
ig_give_to_server_user "$DEMO_DIR"
ig_start_cluster "$DEMO_DIR" "$BINDIR" 54329 "shared_preload_libraries = 'idle_guard'
idle_guard.action = 'terminate'
idle_guard.blocking_timeout = '3s'
idle_guard.idle_timeout = '1min'
idle_guard.naptime = '200ms'" || fail "could not start the throwaway cluster"
PSQL=("$BINDIR/psql" -X -v ON_ERROR_STOP=1 -h "$DEMO_DIR" -p "$IG_CLUSTER_PORT" -U postgres -d postgres)
ig_say "server running: $("$BINDIR/postgres" --version), idle_guard preloaded"
DEADLINE=$(($(date +%s) + STORY_BUDGET))

# --- the story -----------------------------------------------------------------

heading "1. A table of accounts, and idle_guard"
"${PSQL[@]}" -q <<'SQL'
CREATE TABLE accounts (id int PRIMARY KEY, balance int);
INSERT INTO accounts VALUES (1, 100), (2, 250), (3, 75);
CREATE EXTENSION idle_guard;
SQL
show "SELECT * FROM accounts ORDER BY id;"
show "SELECT name, setting FROM pg_settings WHERE name LIKE 'idle_guard.%' ORDER BY name;"

heading "2. A forgetful client opens a transaction, updates a row, and goes silent"
# Its input is a fifo that we keep open on fd 7 (read-write, so opening it
# never blocks): psql runs what we write and then waits for more, forever.
mkfifo "$DEMO_DIR/forgetful.in"
exec 7<>"$DEMO_DIR/forgetful.in"
PGAPPNAME=forgetful_app "${PSQL[@]}" <"$DEMO_DIR/forgetful.in" >"$DEMO_DIR/forgetful_app.out" 2>&1 7>&- &
FORGETFUL_CLIENT=$!
BG_PIDS+=("$FORGETFUL_CLIENT")
printf '%s\n' "BEGIN;" "UPDATE accounts SET balance = balance - 10 WHERE id = 1;" >&7
echo "forgetful_app> BEGIN;"
echo "forgetful_app> UPDATE accounts SET balance = balance - 10 WHERE id = 1;"
echo "forgetful_app> ... (nothing more: the client went to lunch)"
wait_until "forgetful_app to be idle in transaction" "$WAIT_CLIENT" \
	is_true "SELECT EXISTS (SELECT FROM pg_stat_activity
	         WHERE application_name = 'forgetful_app' AND state = 'idle in transaction')"
SILENT_PID=$(value "SELECT pid FROM pg_stat_activity WHERE application_name = 'forgetful_app'")
echo
echo "Its backend (pid $SILENT_PID) is idle in transaction, holding its locks."

heading "3. Others pile up behind it"
echo "checkout>  UPDATE accounts SET balance = balance + 1 WHERE id = 1;   -- the same row"
start_client checkout "UPDATE accounts SET balance = balance + 1 WHERE id = 1"
wait_until "checkout to wait on a lock" "$WAIT_CLIENT" waits_on_lock checkout
echo "migration> ALTER TABLE accounts ADD COLUMN note text;               -- needs the whole table"
start_client migration "ALTER TABLE accounts ADD COLUMN note text"
wait_until "migration to wait on a lock" "$WAIT_CLIENT" waits_on_lock migration
echo "reader>    SELECT count(*) FROM accounts;                            -- queues behind the migration"
start_client reader "SELECT count(*) FROM accounts"
wait_until "reader to wait on a lock" "$WAIT_CLIENT" waits_on_lock reader
echo
show "SELECT pid, application_name, state, wait_event_type, wait_event, pg_blocking_pids(pid) AS blocked_by
      FROM pg_stat_activity WHERE application_name IN ('forgetful_app', 'checkout', 'migration', 'reader')
      ORDER BY backend_start;"

heading "4. idle_guard_report(): who is silent, what it holds, whom it blocks"
# report_ready: the silent session blocks >= 3 sessions in the report; fails
# the demo at once if the session disappears before we saw that.
report_ready() {
	if ! is_true "SELECT EXISTS (SELECT FROM pg_stat_activity WHERE pid = $SILENT_PID)"; then
		fail "pid $SILENT_PID ended before idle_guard_report() showed it blocking 3 sessions"
	fi
	is_true "SELECT EXISTS (SELECT FROM idle_guard_report()
	         WHERE pid = $SILENT_PID AND blocked_total >= 3)"
}
wait_until "idle_guard_report() to show pid $SILENT_PID with blocked_total >= 3" \
	"$WAIT_REPORT" report_ready
show_x "SELECT pid, application_name, state, silent_for, locks_held, strongest_lock, blocked_direct, blocked_total, rule, deadline, action FROM idle_guard_report();"

heading "5. The deadline passes: idle_guard terminates the silent session"
wait_until "idle_guard to terminate pid $SILENT_PID" "$WAIT_TERMINATE" \
	is_true "SELECT NOT EXISTS (SELECT FROM pg_stat_activity WHERE pid = $SILENT_PID)"
echo "pid $SILENT_PID is gone.  The forgetful client finds out with its next statement:"
echo
echo "forgetful_app> SELECT 1;"
printf '%s\n' "SELECT 1;" >&7
wait_until "the forgetful client to exit" "$WAIT_CLIENT" process_gone "$FORGETFUL_CLIENT"
forgetful_status=0
wait "$FORGETFUL_CLIENT" || forgetful_status=$?
sed 's/^/  | /' "$DEMO_DIR/forgetful_app.out"
echo "  (psql exited with status $forgetful_status)"

echo
echo "Everyone it blocked went through:"
for name in checkout migration reader; do
	wait_until "$name to finish" "$WAIT_FINISH" process_gone "${CLIENT_PID[$name]}"
	client_status=0
	wait "${CLIENT_PID[$name]}" || client_status=$?
	echo
	echo "$name (exit status $client_status):"
	sed 's/^/  | /' "$DEMO_DIR/$name.out"
	[ "$client_status" -eq 0 ] || fail "$name failed (exit status $client_status)"
done
echo
show "SELECT * FROM accounts ORDER BY id;"
echo "(account 1: 100 + 1 from checkout; the forgotten -10 was rolled back)"

heading "6. What idle_guard remembers"
show "SELECT at, pid, application_name, silent_for, locks_held, blocked_total, rule, action, detail FROM idle_guard_history();"
is_true "SELECT EXISTS (SELECT FROM idle_guard_history() WHERE pid = $SILENT_PID AND action = 'terminated')" ||
	fail "idle_guard_history() has no 'terminated' entry for pid $SILENT_PID"
show_x "SELECT * FROM idle_guard_stats();"
is_true "SELECT terminated >= 1 FROM idle_guard_stats()" ||
	fail "idle_guard_stats() does not count the termination"

heading "7. The server log"
# Lines mentioning idle_guard (not the socket path, which contains the
# name), each with the DETAIL/HINT lines that follow it.
echo "\$ grep idle_guard server.log"
awk '/idle_guard/ && !/listening on/ { print; more = 1; found = 1; next }
     more && /(DETAIL|HINT|CONTEXT): / { print; next }
     { more = 0 }
     END { exit !found }' "$DEMO_DIR/server.log" || fail "no idle_guard line in the server log"

echo
ig_say "the story happened: pid $SILENT_PID was reported, terminated after blocking 3 sessions, and they all completed"
