# shellcheck shell=bash
#
# scripts/lib.sh -- helpers shared by scripts/test.sh, scripts/demo.sh,
# scripts/pg-build.sh, the benchmarks (bench/) and the soak (test/soak/).
#
# Source it, do not run it.  It defines functions and a few constants only;
# nothing happens at source time.  Every message goes through ig_say, which
# prefixes it with "$IG_LOG_PREFIX: " (set IG_LOG_PREFIX before sourcing or
# before the first call; it defaults to the calling script's name).
#
# What the helpers cover:
#   - picking pg_config ($PG_CONFIG, else the Debian PostgreSQL 15 one);
#   - copying the source tree (tracked + untracked files, no .git, no build
#     products) into a fresh temporary directory under /tmp, because initdb
#     and postgres refuse to run as root and the server user needs a
#     directory it can write;
#   - building it with -Werror and installing it as the invoking user;
#   - running commands as the server user ("postgres") when we are root;
#   - stopping any PostgreSQL server left running under a directory, so a
#     temporary directory can be removed safely.

set -euo pipefail

# The OS user that runs initdb/postgres when the scripts are run as root.
IG_SERVER_USER=postgres
# pg_config used when $PG_CONFIG is not set.
IG_DEFAULT_PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config

# Prefix for messages; the caller may set it first.
: "${IG_LOG_PREFIX:=$(basename "${0%.sh}")}"

# ig_say MESSAGE...: one-line progress message on stdout.
ig_say() {
	printf '%s: %s\n' "$IG_LOG_PREFIX" "$*"
}

# ig_warn MESSAGE...: one-line message on stderr.
ig_warn() {
	printf '%s: %s\n' "$IG_LOG_PREFIX" "$*" >&2
}

# ig_die MESSAGE...: print an error on stderr and exit non-zero.
ig_die() {
	printf '%s: ERROR: %s\n' "$IG_LOG_PREFIX" "$*" >&2
	exit 1
}

# ig_is_root: true when running as uid 0.
ig_is_root() {
	[ "$(id -u)" -eq 0 ]
}

# ig_repo_root: absolute path of the project (the parent of scripts/).
ig_repo_root() {
	(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
}

# ig_pg_config: print the pg_config to use, or die if it is not executable.
ig_pg_config() {
	local pgc=${PG_CONFIG:-$IG_DEFAULT_PG_CONFIG}
	if [ ! -x "$pgc" ]; then
		pgc=$(command -v "$pgc" 2>/dev/null) ||
			ig_die "pg_config not found: ${PG_CONFIG:-$IG_DEFAULT_PG_CONFIG} (set PG_CONFIG)"
	fi
	printf '%s\n' "$pgc"
}

# ig_as_server_user CMD...: run CMD as the server user when we are root
# (initdb and postgres refuse root), otherwise as ourselves.
ig_as_server_user() {
	if ig_is_root; then
		runuser -u "$IG_SERVER_USER" -- "$@"
	else
		"$@"
	fi
}

# ig_give_to_server_user DIR: when root, hand DIR over to the server user so
# the temporary servers started from it can write there.  No-op otherwise.
ig_give_to_server_user() {
	if ig_is_root; then
		id "$IG_SERVER_USER" >/dev/null 2>&1 ||
			ig_die "user '$IG_SERVER_USER' does not exist (is postgresql-15 installed?)"
		chown -R "$IG_SERVER_USER:$IG_SERVER_USER" "$1"
	fi
}

# ig_mktemp_dir NAME: create and print a fresh directory /tmp/NAME.XXXXXX.
ig_mktemp_dir() {
	mktemp -d "/tmp/$1.XXXXXX"
}

# ig_is_build_product PATH: true for files the build or the tests create,
# which must not be copied into a fresh build directory.  PATH is relative
# to the top of the source tree.
ig_is_build_product() {
	case "$1" in
	.git | .git/* | */.git/*) return 0 ;;
	*.o | *.so | *.bc | *.a | */.deps/* | .deps/*) return 0 ;;
	results/* | log/* | tmp_check/* | tmp_regress/* | tmp_nopreload/*) return 0 ;;
	output_nopreload/* | output_iso/* | tmp_check_iso/*) return 0 ;;
	regression.diffs | regression.out | test/policy_test) return 0 ;;
	esac
	return 1
}

# ig_list_source SRC: print, NUL-separated, the files of the source tree at
# SRC relative to SRC: tracked and untracked (but not ignored) files when SRC
# is the top of a git work tree, every file otherwise; build products and
# .git excluded either way.
ig_list_source() {
	local src=$1 top path
	top=$(git -C "$src" rev-parse --show-toplevel 2>/dev/null) || top=
	if [ -n "$top" ] && [ "$(cd "$top" && pwd -P)" = "$(cd "$src" && pwd -P)" ]; then
		# -c also lists tracked files deleted from the work tree: skip them.
		git -C "$src" ls-files -z -co --exclude-standard
	else
		(cd "$src" && find . -name .git -prune -o \( -type f -o -type l \) -print0 |
			sed -z 's|^\./||')
	fi | while IFS= read -r -d '' path; do
		if [ -e "$src/$path" ] || [ -L "$src/$path" ]; then
			ig_is_build_product "$path" || printf '%s\0' "$path"
		fi
	done
}

# ig_copy_source SRC DEST: copy the source tree at SRC into the existing
# directory DEST (see ig_list_source for what is copied).
ig_copy_source() {
	local src=$1 dest=$2
	[ -f "$src/Makefile" ] || ig_die "no Makefile in $src"
	ig_list_source "$src" | tar -C "$src" --null -T - -cf - | tar -C "$dest" -xf -
	ig_say "copied $(find "$dest" -type f | wc -l) files from $src to $dest"
}

# ig_build_install DIR PG_CONFIG [LOG]: build DIR with -Werror and install it,
# as the invoking user, each step bounded by a timeout.  With LOG, the make
# output goes to that file (and its tail is shown on failure); without, it
# streams to stdout.  Returns non-zero on failure after saying what failed.
ig_build_install() {
	local dir=$1 pgc=$2 log=${3:-} jobs
	jobs=$(nproc 2>/dev/null || echo 2)
	local -a make_vars=("PG_CONFIG=$pgc" "COPT=-Werror")

	ig_say "building in $dir ($("$pgc" --version), -Werror)"
	if ! ig_run_logged "$log" timeout -k 10 900 make -C "$dir" -j"$jobs" "${make_vars[@]}"; then
		ig_warn "build failed"
		return 1
	fi

	ig_say "installing into $("$pgc" --pkglibdir) and $("$pgc" --sharedir)/extension"
	if ! ig_run_logged "$log" timeout -k 10 300 make -C "$dir" "${make_vars[@]}" install; then
		if ig_is_root; then
			ig_warn "make install failed"
		else
			ig_warn "make install failed: as a non-root user you need write access to" \
				"$("$pgc" --pkglibdir) and $("$pgc" --sharedir)/extension" \
				"(or run this script as root)"
		fi
		return 1
	fi
}

# ig_run_logged LOG CMD...: run CMD; with a non-empty LOG append its output
# there and show the last 60 lines if it fails, else let it stream.
ig_run_logged() {
	local log=$1
	shift
	if [ -z "$log" ]; then
		"$@"
		return
	fi
	if ! "$@" >>"$log" 2>&1; then
		ig_warn "command failed: $*  (last lines of $log follow)"
		tail -n 60 "$log" >&2
		return 1
	fi
}

# ig_stop_servers_under DIR PG_CONFIG: stop (immediate mode) every
# PostgreSQL server whose data directory lies under DIR -- the leftovers of
# an interrupted or timed-out test -- so that DIR can be removed.
ig_stop_servers_under() {
	local dir=$1 pgc=$2 pidfile datadir owner pg_ctl
	[ -d "$dir" ] || return 0
	pg_ctl="$("$pgc" --bindir)/pg_ctl"
	while IFS= read -r -d '' pidfile; do
		datadir=$(dirname "$pidfile")
		owner=$(stat -c %U "$datadir")
		ig_say "stopping leftover server in $datadir"
		if ig_is_root && [ "$owner" != root ]; then
			runuser -u "$owner" -- "$pg_ctl" -D "$datadir" -m immediate -w -t 20 stop >/dev/null 2>&1 || true
		else
			"$pg_ctl" -D "$datadir" -m immediate -w -t 20 stop >/dev/null 2>&1 || true
		fi
	done < <(find "$dir" -name postmaster.pid -print0 2>/dev/null)
}

# ig_port_free PORT: true when nothing listens on 127.0.0.1:PORT.
ig_port_free() {
	! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# ig_start_cluster DIR BINDIR FIRST_PORT EXTRA_CONF: create a throwaway
# cluster in DIR/data as the server user and start it, listening only on
# 127.0.0.1 and on a socket in DIR, on the first free port from FIRST_PORT
# (set in IG_CLUSTER_PORT), logging to DIR/server.log with millisecond
# timestamps and pids; EXTRA_CONF (lines) is appended to postgresql.conf.
# DIR must belong to the server user (ig_give_to_server_user).
ig_start_cluster() {
	local dir=$1 bindir=$2 first=$3 conf=$4 p
	IG_CLUSTER_PORT=
	for p in $(seq "$first" $((first + 70))); do
		if ig_port_free "$p"; then
			IG_CLUSTER_PORT=$p
			break
		fi
	done
	[ -n "$IG_CLUSTER_PORT" ] || {
		ig_warn "no free port in $first-$((first + 70))"
		return 1
	}
	ig_say "creating a throwaway cluster in $dir/data (port $IG_CLUSTER_PORT)"
	ig_as_server_user timeout 60 "$bindir/initdb" -D "$dir/data" -U postgres -A trust \
		--no-locale -E UTF8 --no-sync >"$dir/initdb.log" 2>&1 || {
		cat "$dir/initdb.log" >&2
		ig_warn "initdb failed"
		return 1
	}
	cat >>"$dir/data/postgresql.conf" <<CONF

# --- added by $IG_LOG_PREFIX ---
listen_addresses = '127.0.0.1'
port = $IG_CLUSTER_PORT
unix_socket_directories = '$dir'
fsync = off
log_line_prefix = '%m [%p] %q[%a] '
$conf
CONF
	ig_as_server_user "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" \
		-w -t 20 start >/dev/null || {
		ig_warn "the server did not start"
		return 1
	}
}

# --- verdicts of a script's checks -----------------------------------------

IG_CHECK_NAMES=()
IG_CHECK_VERDICTS=() # PASS or FAIL, parallel to IG_CHECK_NAMES

# ig_record NAME PASS|FAIL [NOTE]: note the verdict of one check.
ig_record() {
	IG_CHECK_NAMES+=("$1")
	IG_CHECK_VERDICTS+=("$2")
	ig_say "$2: $1${3:+ ($3)}"
}

# ig_print_checks: a line per recorded check; sets IG_PASSED and IG_FAILED.
ig_print_checks() {
	local i
	IG_PASSED=0
	IG_FAILED=0
	echo
	for i in "${!IG_CHECK_NAMES[@]}"; do
		printf '  %-4s  %s\n' "${IG_CHECK_VERDICTS[$i]}" "${IG_CHECK_NAMES[$i]}"
		if [ "${IG_CHECK_VERDICTS[$i]}" = PASS ]; then
			IG_PASSED=$((IG_PASSED + 1))
		else
			IG_FAILED=$((IG_FAILED + 1))
		fi
	done
}
