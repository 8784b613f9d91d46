#!/usr/bin/env bash
#
# scripts/sanitize.sh -- run the test suite once with idle_guard built with
# AddressSanitizer and UndefinedBehaviorSanitizer, and fail on any report.
#
# Usage: bash scripts/sanitize.sh [--keep] [--pg MAJOR]
#
#   --pg MAJOR        the PostgreSQL to test against, built (once, cached) by
#                     scripts/pg-build.sh MAJOR; default 18 (even 15 means
#                     that source build: Debian's packaged 15 is not under
#                     one relocatable prefix, see step 1)
#   --keep            keep the temporary PostgreSQL copy, the sanitizer
#                     logs and scripts/test.sh's build directory
#   PROVE_TESTS=...   run only these TAP files (passed to scripts/test.sh),
#                     e.g. PROVE_TESTS='t/001_row_lock.pl t/011_session_policy.pl';
#                     default: every t/*.pl except those that measure process
#                     memory in /proc (ASan changes the footprint; see below)
#   IG_TEST_TIMEOUT=N time budget of scripts/test.sh (default 2700 s)
#
# What it does:
#   1. copies the PostgreSQL install (cp -a of its prefix) to a temporary
#      directory: a source build is relocatable (pg_config and postgres find
#      their directories relative to their own binary; checked below), so
#      the sanitized extension is installed into the copy and the shared
#      install in /var/cache/idle_guard/pg is never written to;
#   2. in the copy, renames bin/postgres to bin/postgres.unsanitized and puts
#      a wrapper in its place that execs it with LD_PRELOAD=libasan.so and
#      the sanitizer options.  The server binary is not instrumented, so the
#      ASan runtime must be preloaded for the instrumented idle_guard.so to
#      load; the wrapper does it for the server processes only (postmaster,
#      backends, the worker, and the bootstrap/single-user runs of initdb),
#      never for initdb, pg_ctl, psql, pg_regress or perl, which therefore
#      produce no leak or interceptor noise;
#   3. runs scripts/test.sh (every suite: pg_regress without and with the
#      preload, the C unit test, the TAP files) with PG_CONFIG pointing into
#      the copy and PROFILE set in the environment: PGXS's Makefile.global
#      appends $(PROFILE) to CFLAGS and LDFLAGS ("meant to be set in the
#      environment of make"), so the objects are compiled and idle_guard.so
#      is linked with -fsanitize=address,undefined (libasan and libubsan
#      become NEEDED entries), on top of test.sh's own COPT=-Werror; the
#      unit test binary test/policy_test is instrumented the same way;
#   4. checks that the sanitizers were really in play (idle_guard.so in the
#      copy needs libasan, the wrapper started at least one server);
#   5. scans the sanitizer logs (ASAN_OPTIONS/UBSAN_OPTIONS log_path: one
#      file per process, asan.PID / ubsan.PID), scripts/test.sh's output and
#      every *.log of its build directory (the servers' logs).  The logs are
#      needed: with GCC the UBSan handlers of a combined ASan+UBSan build
#      live in libasan and write their "runtime error:" reports to stderr,
#      that is to the server log, not to log_path.
#      ANY report fails the run, not only those with an idle_guard frame:
#      only server processes (and the unit test) carry the runtime, so a
#      report is either a bug in idle_guard (possibly caught in a libc
#      interceptor, with PostgreSQL frames around it) or a memory error in
#      the server while it runs our code; neither can be waved through, and
#      there is no frontend noise to filter.  Each report is printed with
#      whether it involves idle_guard frames.
#
# Options of the sanitizers: detect_leaks=0 (PostgreSQL frees memory
# contexts wholesale and leaves the rest to process exit: leak reports
# would be noise), halt_on_error=1 and -fno-sanitize-recover=undefined (the
# first error ends the process, so the test that triggered it fails too).
#
# TAP files that read a process's memory from /proc (RssAnon, VmRSS...) are
# not run by default: ASan's quarantine holds freed blocks (t/014 sees the
# worker grow by ~80 MB over 1000 sweeps), so they would measure ASan.
#
# What it cannot see: overruns inside palloc'd memory.  PostgreSQL's memory
# contexts carve chunks out of large malloc'd blocks in code that is not
# instrumented, so ASan knows the blocks, not the chunks (the assertion
# build's MEMORY_CONTEXT_CHECKING sentinels cover part of that).  Shared
# memory is not tracked either.  Stack, global and malloc'd objects of
# idle_guard, and all of UBSan's checks (bounds of arrays of known size,
# shifts, alignment, null, bool/enum values...), are covered.
#
# The summary counts scripts/test.sh's suites plus two checks of our own
# ("sanitizer runtime in the servers", "no sanitizer report"); the last line
# is "sanitize: N passed, M failed" and the exit status is 0 only when
# nothing failed.

set -euo pipefail

usage() {
	sed -n '3,20p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

KEEP=0
PG_MAJOR=18
while [ "$#" -gt 0 ]; do
	case "$1" in
	--keep) KEEP=1 ;;
	--pg)
		[ "$#" -ge 2 ] || { usage >&2; echo "sanitize: --pg needs a major version" >&2; exit 2; }
		PG_MAJOR=$2
		shift
		;;
	--pg=*) PG_MAJOR=${1#--pg=} ;;
	-h | --help) usage; exit 0 ;;
	*) usage >&2; echo "sanitize: unknown argument: $1" >&2; exit 2 ;;
	esac
	shift
done
[[ "$PG_MAJOR" =~ ^[1-9][0-9]*$ ]] || { echo "sanitize: --pg: not a major version: $PG_MAJOR" >&2; exit 2; }

IG_LOG_PREFIX="sanitize"
SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
# shellcheck source=scripts/lib.sh
. "$SCRIPT_DIR/lib.sh"

SAN_FLAGS="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined"
# Markers of a sanitizer report, or of a runtime that could not start.
SAN_PATTERN='ERROR: AddressSanitizer|ERROR: LeakSanitizer|runtime error: |AddressSanitizer:DEADLYSIGNAL|ASan runtime does not come first|Shadow memory range interleaves'

START=$(date +%s)
WORK=$(ig_mktemp_dir idle_guard_sanitize)
# The server user must reach the wrapper and the copy inside WORK.
chmod 755 "$WORK"
PG_COPY=$WORK/pg
SAN_DIR=$WORK/sanitizer-logs
TEST_OUT=$WORK/test.out
BUILD_DIR= # scripts/test.sh's, known from its output with --keep

CLEANED=0
cleanup() {
	[ "$CLEANED" -eq 1 ] && return 0
	CLEANED=1
	# test.sh names its build directory early ("copied N files from X to
	# DIR"), in case it was interrupted before its own last words.
	[ -z "$BUILD_DIR" ] && [ -f "$TEST_OUT" ] &&
		BUILD_DIR=$(sed -nE 's/^test: copied [0-9]+ files from .* to (\/tmp\/idle_guard_test\.[A-Za-z0-9]+)$/\1/p' "$TEST_OUT" | tail -n 1)
	if [ -n "$BUILD_DIR" ] && [ -x "$PG_COPY/bin/pg_config" ]; then
		ig_stop_servers_under "$BUILD_DIR" "$PG_COPY/bin/pg_config"
	fi
	if [ "$KEEP" -eq 1 ]; then
		ig_say "kept: $WORK${BUILD_DIR:+ and $BUILD_DIR}"
	else
		rm -rf "$WORK"
		if [ -n "$BUILD_DIR" ]; then rm -rf "$BUILD_DIR"; fi
	fi
	return 0
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# finish: cleanup, summary (its line last), exit with the verdict.
finish() {
	cleanup
	ig_print_checks
	ig_say "duration $(($(date +%s) - START))s"
	echo "sanitize: $IG_PASSED passed, $IG_FAILED failed"
	[ "$IG_FAILED" -eq 0 ] && [ "$IG_PASSED" -gt 0 ] && exit 0
	exit 1
}

# --- 1. a private copy of the PostgreSQL install ------------------------------

ig_say "PostgreSQL $PG_MAJOR: scripts/pg-build.sh $PG_MAJOR"
rc=0
bash "$SCRIPT_DIR/pg-build.sh" "$PG_MAJOR" >"$WORK/pg-build.out" || rc=$?
ORIG_PGC=$(tail -n 1 "$WORK/pg-build.out")
if [ "$rc" -ne 0 ] || [ ! -x "$ORIG_PGC" ]; then
	cat "$WORK/pg-build.out"
	ig_record "build PostgreSQL $PG_MAJOR (scripts/pg-build.sh $PG_MAJOR)" FAIL "exit status $rc"
	finish
fi
ORIG_PREFIX=$(cd "$("$ORIG_PGC" --bindir)/.." && pwd -P)
ig_say "copying $ORIG_PREFIX to $PG_COPY"
cp -a "$ORIG_PREFIX" "$PG_COPY"
PGC=$PG_COPY/bin/pg_config
for what in --bindir --pkglibdir --sharedir --pgxs; do
	case "$("$PGC" "$what")" in
	"$PG_COPY"/*) ;;
	*)
		ig_record "relocatable copy of $ORIG_PREFIX" FAIL "the copy's pg_config $what is $("$PGC" "$what"), outside $PG_COPY"
		finish
		;;
	esac
done
# Whatever idle_guard the shared install has must not stand in for ours.
rm -f "$("$PGC" --pkglibdir)"/idle_guard.so "$("$PGC" --sharedir)"/extension/idle_guard*

# --- 2. the server wrapper ----------------------------------------------------

# Both runtimes: libasan must come first in the process; libubsan preloaded
# too so that it starts with the process and honours UBSAN_OPTIONS.
PRELOAD=
for lib in libasan.so libubsan.so; do
	path=$(gcc -print-file-name="$lib")
	if [ ! -e "$path" ]; then
		ig_record "sanitizer runtimes" FAIL "$lib not found by gcc (packages libasan8, libubsan1)"
		finish
	fi
	PRELOAD=${PRELOAD:+$PRELOAD:}$(readlink -f "$path")
done
mkdir -p "$SAN_DIR"
ig_give_to_server_user "$SAN_DIR"
ASAN_OPTS="detect_leaks=0:abort_on_error=0:halt_on_error=1:log_path=$SAN_DIR/asan"
UBSAN_OPTS="print_stacktrace=1:halt_on_error=1:log_path=$SAN_DIR/ubsan"

mv "$PG_COPY/bin/postgres" "$PG_COPY/bin/postgres.unsanitized"
# Expanded now on purpose: the wrapper carries fixed paths and options.
cat >"$PG_COPY/bin/postgres" <<EOF
#!/bin/bash
# Written by idle_guard's scripts/sanitize.sh: the server with the ASan
# runtime preloaded (idle_guard.so is instrumented, postgres is not).
echo "\$\$ \$*" >>'$SAN_DIR/server-starts'
LD_PRELOAD='$PRELOAD'\${LD_PRELOAD:+:\$LD_PRELOAD} \\
ASAN_OPTIONS='$ASAN_OPTS' \\
UBSAN_OPTIONS='$UBSAN_OPTS' \\
	exec -a "\$0" '$PG_COPY/bin/postgres.unsanitized' "\$@"
EOF
chmod 755 "$PG_COPY/bin/postgres"

# --- 3. the test suite --------------------------------------------------------

# TAP files that measure a process's memory in /proc (RssAnon, VmRSS...)
# are left out unless PROVE_TESTS names them: ASan's quarantine keeps freed
# blocks (256 MB by default) and its allocator and shadow memory change the
# footprint, so such a file measures ASan, not idle_guard.  They run in
# the normal suite.
SKIPPED=()
if [ -z "${PROVE_TESTS:-}" ]; then
	selected=()
	for f in "$(ig_repo_root)"/t/*.pl; do
		if grep -Eq 'RssAnon|VmRSS|VmSize|RssFile' "$f"; then
			SKIPPED+=("t/${f##*/}")
		else
			selected+=("t/${f##*/}")
		fi
	done
	if [ "${#SKIPPED[@]}" -gt 0 ]; then
		ig_say "not run under the sanitizers (they measure process memory): ${SKIPPED[*]}"
		export PROVE_TESTS="${selected[*]}"
	fi
fi

KEEP_ARG=(--keep) # always: the build directory is scanned, then removed
ig_say "running scripts/test.sh with PG_CONFIG=$PGC PROFILE='$SAN_FLAGS'"
rc=0
PG_CONFIG=$PGC PROFILE=$SAN_FLAGS \
	ASAN_OPTIONS=$ASAN_OPTS UBSAN_OPTIONS=$UBSAN_OPTS \
	bash "$SCRIPT_DIR/test.sh" "${KEEP_ARG[@]}" 2>&1 | tee "$TEST_OUT" || rc=$?
BUILD_DIR=$(sed -nE 's/^test: kept build directory: (.*)$/\1/p' "$TEST_OUT" | tail -n 1)
last=$(grep -E '^test: [0-9]+ passed, [0-9]+ failed$' "$TEST_OUT" | tail -n 1) || true
if [[ "$last" =~ ^test:\ ([0-9]+)\ passed,\ ([0-9]+)\ failed$ ]]; then
	# One check per suite, from test.sh's summary: the PASS/FAIL lines after
	# its last blank line.
	while IFS= read -r line; do
		case "$line" in
		"  PASS  "*) ig_record "test.sh: ${line#  PASS  }" PASS ;;
		"  FAIL  "*) ig_record "test.sh: ${line#  FAIL  }" FAIL ;;
		esac
	done < <(awk '/^$/ { n = NR } { l[NR] = $0 } END { for (i = n + 1; i <= NR; i++) print l[i] }' "$TEST_OUT")
	[ "$rc" -eq 0 ] || [ "${#IG_CHECK_NAMES[@]}" -gt 0 ] || ig_record "scripts/test.sh" FAIL "exit status $rc"
else
	ig_record "scripts/test.sh" FAIL "no summary line, exit status $rc"
fi

for f in "${SKIPPED[@]}"; do
	ig_say "SKIP: TAP $f (measures process memory; not counted)"
done

# --- 4. were the sanitizers in play? ----------------------------------------

so=$("$PGC" --pkglibdir)/idle_guard.so
starts=0
[ -f "$SAN_DIR/server-starts" ] && starts=$(wc -l <"$SAN_DIR/server-starts")
if [ ! -f "$so" ]; then
	ig_record "sanitizer runtime in the servers" FAIL "$so not installed"
elif ! readelf -d "$so" | grep -q 'NEEDED.*libasan'; then
	ig_record "sanitizer runtime in the servers" FAIL "$so does not need libasan: built without -fsanitize"
elif [ "$starts" -eq 0 ]; then
	ig_record "sanitizer runtime in the servers" FAIL "the wrapper $PG_COPY/bin/postgres never ran"
else
	ig_record "sanitizer runtime in the servers" PASS "instrumented idle_guard.so, $starts postgres invocations through the wrapper"
fi

# --- 5. the reports -----------------------------------------------------------

# involves_idle_guard FILE: true when a report names one of our frames:
# "#N 0x... in FUNC src/FILE.c:LINE" (PostgreSQL's frames carry absolute or
# ../../../src/ paths), an unsymbolized frame in idle_guard.so, or the unit
# test.
involves_idle_guard() {
	grep -Eq ' in [A-Za-z0-9_]+ (src|test)/[a-z_]+\.c:[0-9]+|idle_guard\.so\+|policy_test' "$1"
}

reports=()
while IFS= read -r -d '' f; do
	[ -s "$f" ] && reports+=("$f")
done < <(find "$SAN_DIR" -maxdepth 1 -type f \( -name 'asan.*' -o -name 'ubsan.*' \) -print0 | sort -z)
# Reports that missed log_path (a runtime that failed to start prints to
# stderr): in the captured output, or in the servers' logs when kept.
stray=()
while IFS= read -r -d '' f; do
	stray+=("$f")
done < <({
	grep -lE "$SAN_PATTERN" "$TEST_OUT" 2>/dev/null || true
	[ -n "$BUILD_DIR" ] && [ -d "$BUILD_DIR" ] &&
		grep -rlE --include='*.log' --include='*.out' --include='*.diffs' "$SAN_PATTERN" "$BUILD_DIR" 2>/dev/null
} | tr '\n' '\0')

if [ "${#reports[@]}" -eq 0 ] && [ "${#stray[@]}" -eq 0 ]; then
	ig_record "no sanitizer report" PASS "$SAN_DIR has none"
else
	echo
	ig_say "=== sanitizer reports ==="
	ours=0
	for f in "${reports[@]}"; do
		if involves_idle_guard "$f"; then
			note="involves idle_guard frames"
			ours=$((ours + 1))
		else
			note="no idle_guard frame"
		fi
		echo
		echo "===== $(basename "$f") ($note; first 80 lines) ====="
		head -n 80 "$f"
	done
	for f in "${stray[@]}"; do
		if involves_idle_guard "$f"; then
			ours=$((ours + 1))
		fi
		echo
		echo "===== sanitizer lines in $f ====="
		grep -E -A 30 "$SAN_PATTERN" "$f" | head -n 120
	done
	ig_record "no sanitizer report" FAIL \
		"${#reports[@]} report file(s), ${#stray[@]} log(s) with sanitizer lines; $ours of them with idle_guard frames"
fi

finish
