#!/usr/bin/env bash
#
# scripts/test.sh -- build idle_guard and run every test suite.
#
# Usage: bash scripts/test.sh [--keep] [--pg MAJOR]...
#
#   --keep            keep the temporary build directory (with every log and
#                     regression.diffs) and print its path
#   --pg MAJOR        test against PostgreSQL MAJOR: 15 is Debian's
#                     (/usr/lib/postgresql/15/bin/pg_config), any other major
#                     is built once and cached by scripts/pg-build.sh MAJOR;
#                     repeat it (--pg 15 --pg 18) to test several majors,
#                     each from its own fresh copy of the source
#   PG_CONFIG=...     pg_config to build against when --pg is not given
#                     (default /usr/lib/postgresql/15/bin/pg_config)
#   PROVE_TESTS=...   run only these TAP files, e.g. PROVE_TESTS='t/001_x.pl'
#   PROVE_FLAGS=...   extra flags for prove, e.g. PROVE_FLAGS=-v
#   IG_TEST_TIMEOUT=N time budget in seconds for all suites (default 2700)
#
# Steps:
#   1. scripts/setup.sh installs missing Debian packages (if any);
#   2. the source tree (tracked and untracked files, no .git, no build
#      products) is copied to a fresh directory under /tmp, because initdb and
#      postgres refuse to run as root and the server user needs a writable
#      directory;
#   3. with --pg MAJOR other than 15, scripts/pg-build.sh MAJOR provides
#      (builds once, then reuses) that PostgreSQL; then make COPT=-Werror &&
#      make install in the copy, as the invoking user;
#   4. the suites that "make installcheck" chains are run one make call each,
#      as the "postgres" user when we are root, so that every suite runs even
#      if an earlier one fails, and each one gets its own verdict:
#        - every prerequisite of the Makefile's installcheck target (today
#          installcheck-nopreload, a pg_regress run, and unittest, the C unit
#          test), read from make's database, so a new one is picked up;
#        - the main pg_regress suite: make installcheck with the
#          prerequisites marked done (-o) and TAP_TESTS emptied;
#        - the TAP files: make installcheck with the prerequisites marked done
#          and REGRESS (and ISOLATION) emptied, one verdict per t/*.pl file
#          from prove's output;
#   5. on failure, every regression.diffs and the tail of every server/test
#      log is printed;
#   6. the summary: one line per suite, "test: PostgreSQL MAJOR: N passed,
#      M failed", and, last, "test: N passed, M failed" (N, M count suites,
#      over every major with several --pg); the exit status is 0 only when
#      nothing failed.  A major whose PostgreSQL could not be built counts
#      one failed suite.
#
# Servers are temporary instances on their own ports; the Debian cluster
# 15/main (port 5432) is neither used nor touched.

set -euo pipefail

usage() {
	sed -n '3,18p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

KEEP=0
PG_MAJORS=()
while [ "$#" -gt 0 ]; do
	case "$1" in
	--keep) KEEP=1 ;;
	--pg)
		[ "$#" -ge 2 ] || { usage >&2; echo "test: --pg needs a major version" >&2; exit 2; }
		PG_MAJORS+=("$2")
		shift
		;;
	--pg=*) PG_MAJORS+=("${1#--pg=}") ;;
	-h | --help) usage; exit 0 ;;
	*) usage >&2; echo "test: unknown argument: $1" >&2; exit 2 ;;
	esac
	shift
done
for m in "${PG_MAJORS[@]}"; do
	[[ "$m" =~ ^[1-9][0-9]*$ ]] || { echo "test: --pg: not a major version: $m" >&2; exit 2; }
done

# Several majors: run this script once per major (its own temporary copy of
# the source, its own build, its own servers) and add up the verdicts.
if [ "${#PG_MAJORS[@]}" -gt 1 ]; then
	self=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)/$(basename "${BASH_SOURCE[0]}")
	keep_arg=()
	[ "$KEEP" -eq 1 ] && keep_arg=(--keep)
	total_passed=0 total_failed=0
	lines=()
	for m in "${PG_MAJORS[@]}"; do
		out=$(mktemp /tmp/idle_guard_test_out.XXXXXX)
		echo "test: ==== PostgreSQL $m ===="
		bash "$self" "${keep_arg[@]}" --pg "$m" | tee "$out" || true
		last=$(tail -n 1 "$out")
		rm -f "$out"
		if [[ "$last" =~ ^test:\ ([0-9]+)\ passed,\ ([0-9]+)\ failed$ ]]; then
			p=${BASH_REMATCH[1]} f=${BASH_REMATCH[2]}
		else
			p=0 f=1 # died before its summary
		fi
		total_passed=$((total_passed + p))
		total_failed=$((total_failed + f))
		lines+=("test: PostgreSQL $m: $p passed, $f failed")
	done
	echo
	printf '%s\n' "${lines[@]}"
	echo "test: $total_passed passed, $total_failed failed"
	[ "$total_failed" -eq 0 ] && [ "$total_passed" -gt 0 ]
	exit
fi

IG_LOG_PREFIX="test"
SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
# shellcheck source=scripts/lib.sh
. "$SCRIPT_DIR/lib.sh"

TEST_TIMEOUT=${IG_TEST_TIMEOUT:-2700}
[[ "$TEST_TIMEOUT" =~ ^[0-9]+$ ]] || ig_die "IG_TEST_TIMEOUT must be a number of seconds"

bash "$SCRIPT_DIR/setup.sh"

REPO=$(ig_repo_root)
PG_MAJOR=${PG_MAJORS[0]:-} # empty: whatever $PG_CONFIG is
PG_CONFIG_ARG=${PG_CONFIG:-}
PG_CONFIG= # set below, once the PostgreSQL install is known
BUILD_DIR=$(ig_mktemp_dir idle_guard_test)
LOG_DIR=$BUILD_DIR/test_logs # one captured output per suite

# Connection settings from the caller's environment must not leak into the
# temporary servers' clients.
unset PGHOST PGHOSTADDR PGPORT PGDATABASE PGUSER PGSERVICE PGOPTIONS PGDATA

# --- cleanup ---------------------------------------------------------------

CLEANED=0
cleanup() {
	[ "$CLEANED" -eq 1 ] && return 0
	CLEANED=1
	[ -n "$PG_CONFIG" ] && ig_stop_servers_under "$BUILD_DIR" "$PG_CONFIG"
	if [ "$KEEP" -eq 1 ]; then
		ig_say "kept build directory: $BUILD_DIR"
	else
		rm -rf "$BUILD_DIR"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- suite bookkeeping (ig_record, ig_print_checks in lib.sh) ------------

# print_summary: one line per suite, then the summary line, last.
print_summary() {
	ig_print_checks
	echo "test: PostgreSQL ${PG_MAJOR:-(unknown major)}: $IG_PASSED passed, $IG_FAILED failed"
	echo "test: $IG_PASSED passed, $IG_FAILED failed"
	[ "$IG_FAILED" -eq 0 ] && [ "$IG_PASSED" -gt 0 ]
}

# finish: cleanup, summary, exit with the verdict.
finish() {
	cleanup
	if print_summary; then
		exit 0
	fi
	exit 1
}

DEADLINE=0
# remaining: seconds left in the time budget (may be <= 0).
remaining() {
	echo $((DEADLINE - $(date +%s)))
}

# run_make LOG MAKE-ARGS...: run make in the build directory as the server
# user (when root), bounded by the remaining time budget, output to the
# console and to LOG.  Returns make's status (124 on timeout).
run_make() {
	local log=$1 left rc=0
	shift
	left=$(remaining)
	if [ "$left" -le 0 ]; then
		echo "time budget of ${TEST_TIMEOUT}s exhausted, not run" | tee "$log"
		return 124
	fi
	ig_say "make $*"
	timeout -k 30 "$left" "${RUNNER[@]}" make -C "$BUILD_DIR" --no-print-directory \
		"${MAKE_VARS[@]}" "$@" 2>&1 | tee "$log" || rc=$?
	[ "$rc" -eq 124 ] && ig_warn "timed out (budget ${TEST_TIMEOUT}s): make $*"
	return "$rc"
}

# judge LOG RC: decide PASS/FAIL from a suite's exit status and its output:
# pg_regress must have printed "All N tests passed" (or "N of N tests passed,
# K failed test(s) ignored"), and no line may report failures, whether
# pg_regress style ("M of N tests failed") or unit-test style
# ("x: N passed, M failed" with M > 0).
judge() {
	local log=$1 rc=$2
	[ "$rc" -eq 0 ] || return 1
	grep -Eq '[0-9]+ of [0-9]+ tests failed' "$log" && return 1
	grep -Eq '[0-9]+ passed, [1-9][0-9]* failed' "$log" && return 1
	if grep -q '+++ regress install-check' "$log"; then
		grep -Eq 'All [0-9]+ tests passed|[0-9]+ of [0-9]+ tests passed' "$log" || return 1
	fi
	return 0
}

# run_suite NAME LOGNAME MAKE-ARGS...: one make call, one verdict.
run_suite() {
	local name=$1 log="$LOG_DIR/$2.log" rc=0
	shift 2
	echo
	ig_say "=== $name ==="
	run_make "$log" "$@" || rc=$?
	if judge "$log" "$rc"; then
		ig_record "$name" PASS
	else
		ig_record "$name" FAIL "exit status $rc"
	fi
}

# tap_files: the TAP files prove will run, relative to the build directory:
# the expansion of $PROVE_TESTS if set, else t/*.pl.
tap_files() {
	local pat f
	local -a pats
	(
		cd "$BUILD_DIR"
		shopt -s nullglob
		read -ra pats <<<"${PROVE_TESTS:-t/*.pl}"
		for pat in "${pats[@]}"; do
			# Unquoted on purpose: expand the glob.
			# shellcheck disable=SC2206
			local -a matches=($pat)
			for f in "${matches[@]}"; do
				printf '%s\n' "$f"
			done
		done
	)
}

# run_tap_suites MAKE-ARGS...: run prove through make once, then give each
# TAP file its verdict: PASS when prove printed "<file> .. ok" (or
# "skipped"), FAIL otherwise (failed, died, or never reached).
run_tap_suites() {
	local log="$LOG_DIR/tap.log" rc=0 f
	local -a files extra=()
	mapfile -t files < <(tap_files)
	if [ "${#files[@]}" -eq 0 ]; then
		if [ -n "${PROVE_TESTS:-}" ]; then
			ig_record "TAP: PROVE_TESTS='$PROVE_TESTS'" FAIL "matches no file"
		else
			ig_say "no TAP files (t/*.pl), skipping prove"
		fi
		return 0
	fi
	[ -n "${PROVE_TESTS:-}" ] && extra+=("PROVE_TESTS=$PROVE_TESTS")
	[ -n "${PROVE_FLAGS:-}" ] && extra+=("PROVE_FLAGS=$PROVE_FLAGS")

	echo
	ig_say "=== TAP tests (${#files[@]} files) ==="
	run_make "$log" "$@" "${extra[@]}" || rc=$?

	# Files prove itself reported, in case the list above missed one.
	local -A seen=()
	local -a ok_files
	for f in "${files[@]}"; do seen[$f]=1; done
	while IFS= read -r f; do
		[ -n "${seen[$f]:-}" ] || { files+=("$f"); seen[$f]=1; }
	done < <(sed -nE 's/^(\[[0-9:]+\] )?([^ ]+\.pl) \.\..*/\2/p' "$log")

	mapfile -t ok_files < <(sed -nE 's/^(\[[0-9:]+\] )?([^ ]+\.pl) \.+ (ok|skipped).*/\2/p' "$log")
	local -A ok=()
	for f in "${ok_files[@]}"; do ok[$f]=1; done

	local all_ok=1
	for f in "${files[@]}"; do
		if [ -n "${ok[$f]:-}" ]; then
			ig_record "TAP $f" PASS
		else
			ig_record "TAP $f" FAIL
			all_ok=0
		fi
	done
	# prove failed although every file looked fine (bad flags, timeout after
	# the last file, "Result: FAIL" for a parse error...): count it too.
	if [ "$all_ok" -eq 1 ] && { [ "$rc" -ne 0 ] || ! grep -q '^Result: PASS' "$log"; }; then
		ig_record "TAP prove run" FAIL "exit status $rc"
	fi
}

# show_failure_details: every regression.diffs, then the tail of every log
# of the temporary servers and of the TAP tests.
show_failure_details() {
	local f d
	echo
	ig_say "=== failure details ==="
	while IFS= read -r f; do
		echo
		echo "===== $f ====="
		cat "$f"
	done < <(find "$BUILD_DIR" -maxdepth 2 -name regression.diffs -size +0 | sort)
	for d in tmp_check/log tmp_regress/log log output_nopreload/log tmp_nopreload/log; do
		[ -d "$BUILD_DIR/$d" ] || continue
		while IFS= read -r f; do
			echo
			echo "===== $f (last 200 lines) ====="
			tail -n 200 "$f"
		done < <(find "$BUILD_DIR/$d" -type f | sort)
	done
}

# --- the PostgreSQL install ------------------------------------------------

# major_of PG_CONFIG: the major version, e.g. 18 for "PostgreSQL 18.6" and
# 19 for "PostgreSQL 19rc1".
major_of() {
	"$1" --version | sed -nE 's/^PostgreSQL ([0-9]+).*/\1/p'
}

if [ -z "$PG_MAJOR" ]; then
	PG_CONFIG=$(PG_CONFIG=$PG_CONFIG_ARG ig_pg_config)
	PG_MAJOR=$(major_of "$PG_CONFIG")
else
	[ -n "$PG_CONFIG_ARG" ] && ig_say "--pg $PG_MAJOR given: ignoring PG_CONFIG=$PG_CONFIG_ARG"
	if [ "$PG_MAJOR" = 15 ]; then
		PG_CONFIG=$(PG_CONFIG=$IG_DEFAULT_PG_CONFIG ig_pg_config)
	else
		# Built once, cached outside the clone; its last stdout line is the
		# pg_config path.
		ig_say "PostgreSQL $PG_MAJOR: scripts/pg-build.sh $PG_MAJOR"
		rc=0
		bash "$SCRIPT_DIR/pg-build.sh" "$PG_MAJOR" | tee "$BUILD_DIR/pg-build.out" || rc=$?
		pgc=$(tail -n 1 "$BUILD_DIR/pg-build.out")
		if [ "$rc" -ne 0 ] || [ ! -x "$pgc" ]; then
			ig_record "build PostgreSQL $PG_MAJOR (scripts/pg-build.sh $PG_MAJOR)" FAIL "exit status $rc"
			finish
		fi
		PG_CONFIG=$pgc
	fi
	found=$(major_of "$PG_CONFIG")
	if [ "$found" != "$PG_MAJOR" ]; then
		ig_record "PostgreSQL $PG_MAJOR install" FAIL "$PG_CONFIG reports major '$found'"
		PG_CONFIG=
		finish
	fi
fi
MAKE_VARS=("PG_CONFIG=$PG_CONFIG" "COPT=-Werror")
ig_say "PostgreSQL $PG_MAJOR: $("$PG_CONFIG" --version), $PG_CONFIG"

# --- build and install -------------------------------------------------------

ig_copy_source "$REPO" "$BUILD_DIR"
if ! ig_build_install "$BUILD_DIR" "$PG_CONFIG"; then
	ig_record "build and install" FAIL
	finish
fi

# --- run the suites ---------------------------------------------------------

mkdir -p "$LOG_DIR"
ig_give_to_server_user "$BUILD_DIR"
RUNNER=()
if ig_is_root; then
	RUNNER=(runuser -u "$IG_SERVER_USER" --)
	ig_say "running the suites as user '$IG_SERVER_USER'"
fi
cd "$BUILD_DIR"

# What "make installcheck" would run, from make's database (-p; -q runs no
# recipe; the made-up goal only keeps make from building anything).
make_db=$(make -pq "${MAKE_VARS[@]}" __idle_guard_print_database__ 2>/dev/null) || true
make_var() {
	sed -nE "s/^$1 :?= *//p" <<<"$make_db" | head -n 1
}
PREREQS=()
for p in $(sed -nE 's/^installcheck: *//p' <<<"$make_db" | head -n 1); do
	case "$p" in
	submake* | "|") ;; # PGXS plumbing, not a suite
	*) PREREQS+=("$p") ;;
	esac
done
REGRESS_LIST=$(make_var REGRESS)
ISOLATION_LIST=$(make_var ISOLATION)
TAP_ENABLED=$(make_var TAP_TESTS)

DEADLINE=$(($(date +%s) + TEST_TIMEOUT))
ig_say "time budget: ${TEST_TIMEOUT}s; installcheck prerequisites: ${PREREQS[*]:-none}"

# Each prerequisite of installcheck on its own.
SKIP_PREREQS=()
for p in "${PREREQS[@]}"; do
	case "$p" in
	installcheck-nopreload) label="pg_regress nopreload (installcheck-nopreload)" ;;
	unittest) label="unit test (unittest)" ;;
	*) label="make $p" ;;
	esac
	run_suite "$label" "${p//\//_}" "$p"
	SKIP_PREREQS+=(-o "$p")
done

# The main pg_regress suite (and isolation specs, should the Makefile get
# some): installcheck without its prerequisites and without the TAP step.
if [ -n "$REGRESS_LIST$ISOLATION_LIST" ]; then
	run_suite "pg_regress main (${REGRESS_LIST}${ISOLATION_LIST:+; isolation: $ISOLATION_LIST})" \
		regress-main installcheck "${SKIP_PREREQS[@]}" TAP_TESTS=
fi

# The TAP files: installcheck without its prerequisites and without the
# pg_regress and isolation suites.
if [ -n "$TAP_ENABLED" ]; then
	run_tap_suites installcheck "${SKIP_PREREQS[@]}" REGRESS= ISOLATION=
fi

if [ "${#IG_CHECK_NAMES[@]}" -eq 0 ]; then
	ig_warn "no test suite found in the Makefile"
	ig_record "find test suites" FAIL
fi

for r in "${IG_CHECK_VERDICTS[@]}"; do
	if [ "$r" != PASS ]; then
		show_failure_details
		break
	fi
done

finish
