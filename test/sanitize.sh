#!/usr/bin/env bash
#
# test/sanitize.sh -- the whole suite (scripts/test.sh) with idle_guard
# built with AddressSanitizer and UndefinedBehaviorSanitizer, against the
# assert-enabled PostgreSQL that scripts/pg.sh --assert builds; any sanitizer
# report fails.  Run by "make sanitize".
#
# Usage: bash test/sanitize.sh [--pg MAJOR] [--keep]      (default major 18)
#   PROVE_TESTS, IG_TEST_TIMEOUT: passed to scripts/test.sh
#
# 1. The PostgreSQL install is copied (a source build is relocatable), so
#    the shared one in /var/cache/idle_guard/pg is never written to.
# 2. In the copy, bin/postgres becomes a wrapper that execs the real one
#    with the ASan and UBSan runtimes in LD_PRELOAD: the server is not
#    instrumented, idle_guard.so is, and its runtime must come first.  Only
#    server processes get it, never initdb, psql, pg_regress or perl.
# 3. scripts/test.sh runs with PG_CONFIG in the copy and PROFILE set:
#    PGXS adds $(PROFILE) to CFLAGS and LDFLAGS, so idle_guard.so and the
#    unit test are built with -fsanitize=address,undefined.  TAP files that
#    measure process memory in /proc are left out unless PROVE_TESTS names
#    them: ASan's quarantine and shadow memory are not idle_guard's.
# 4. Checks that the sanitizers were in play: idle_guard.so needs libasan,
#    the wrapper ran.
# 5. Any report fails: the per-process logs (log_path), and "runtime
#    error:" lines, which GCC's UBSan-in-ASan writes to stderr, that is to
#    the server logs kept by scripts/test.sh --keep.  Only server processes
#    and the unit test carry the runtime, so there is no frontend noise.
# detect_leaks=0: PostgreSQL frees memory contexts wholesale and leaves the
# rest to process exit.  halt_on_error: the first error ends the process,
# so the test that triggered it fails too.  Not covered: overruns inside
# palloc'd chunks (the memory contexts are not instrumented; the assert
# build's sentinels cover part of that) and shared memory.

set -euo pipefail

MAJOR=18 KEEP=0
while [ "$#" -gt 0 ]; do
	case "$1" in
	--pg) MAJOR=${2:-}; shift ;;
	--keep) KEEP=1 ;;
	*) sed -n '8,9p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
	esac
	shift
done
IG_LOG_PREFIX=sanitize
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
# shellcheck source=scripts/lib.sh
. "$REPO/scripts/lib.sh"

FLAGS="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined"
REPORT='ERROR: AddressSanitizer|ERROR: LeakSanitizer|runtime error: |AddressSanitizer:DEADLYSIGNAL|ASan runtime does not come first|Shadow memory range interleaves'
WORK=$(mktemp -d /tmp/idle_guard_sanitize.XXXXXX)
chmod 755 "$WORK" # the server user reaches the copy and the logs
BUILD=
# shellcheck disable=SC2317 # called at exit (ig_on_exit)
cleanup() {
	if [ "$KEEP" -eq 1 ]; then ig_say "kept $WORK $BUILD"; else rm -rf "$WORK" "$BUILD"; fi
}
ig_on_exit cleanup
failed=0
fail() { ig_say "FAIL: $*"; failed=1; }

# 1. a private, relocated copy of the install
ORIG=$(bash "$REPO/scripts/pg.sh" --assert "$MAJOR" | tee >(cat >&2) | tail -n 1)
cp -a "$(cd "$("$ORIG" --bindir)/.." && pwd -P)" "$WORK/pg"
PGC=$WORK/pg/bin/pg_config
for what in --bindir --pkglibdir --sharedir --pgxs; do
	[[ "$("$PGC" "$what")" == "$WORK/pg/"* ]] || ig_die "the copy is not relocatable: pg_config $what is $("$PGC" "$what")"
done
rm -f "$("$PGC" --pkglibdir)"/idle_guard.so "$("$PGC" --sharedir)"/extension/idle_guard*

# 2. the server wrapper (paths and options fixed now, on purpose)
PRELOAD=
for lib in libasan.so libubsan.so; do
	path=$(gcc -print-file-name="$lib")
	[ -e "$path" ] || ig_die "$lib not found by gcc (packages libasan8, libubsan1)"
	PRELOAD=${PRELOAD:+$PRELOAD:}$(readlink -f "$path")
done
LOGS=$WORK/logs
mkdir "$LOGS"
ig_give_to_server_user "$LOGS"
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=0:halt_on_error=1:log_path=$LOGS/asan"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:log_path=$LOGS/ubsan"
mv "$WORK/pg/bin/postgres" "$WORK/pg/bin/postgres.unsanitized"
cat >"$WORK/pg/bin/postgres" <<EOF
#!/bin/bash
# test/sanitize.sh: postgres with the sanitizer runtimes preloaded
echo "\$\$ \$*" >>'$LOGS/server-starts'
LD_PRELOAD='$PRELOAD'\${LD_PRELOAD:+:\$LD_PRELOAD} ASAN_OPTIONS='$ASAN_OPTIONS' \\
	UBSAN_OPTIONS='$UBSAN_OPTIONS' exec -a "\$0" '$WORK/pg/bin/postgres.unsanitized' "\$@"
EOF
chmod 755 "$WORK/pg/bin/postgres"

# 3. the suite
if [ -z "${PROVE_TESTS:-}" ]; then
	PROVE_TESTS=$(cd "$REPO" && grep -LE 'RssAnon|VmRSS|VmSize|RssFile' t/*.pl | xargs)
	ig_say "left out (they measure process memory): $(cd "$REPO" && grep -lE 'RssAnon|VmRSS|VmSize|RssFile' t/*.pl | xargs)"
	export PROVE_TESTS
fi
rc=0
PG_CONFIG=$PGC PROFILE=$FLAGS bash "$REPO/scripts/test.sh" --keep 2>&1 | tee "$WORK/test.out" || rc=$?
BUILD=$(sed -n 's|^test: kept \(/tmp/idle_guard_test\.[A-Za-z0-9]*\)$|\1|p' "$WORK/test.out")

# 4. were the sanitizers in play?
[ "$rc" -eq 0 ] || fail "scripts/test.sh (exit status $rc)"
SO=$("$PGC" --pkglibdir)/idle_guard.so
if ! readelf -d "$SO" 2>/dev/null | grep -q 'NEEDED.*libasan'; then
	fail "$SO is missing or was built without -fsanitize"
elif [ ! -s "$LOGS/server-starts" ]; then
	fail "the wrapper $WORK/pg/bin/postgres never ran"
else
	ig_say "sanitizers in play: instrumented idle_guard.so, $(wc -l <"$LOGS/server-starts") postgres runs through the wrapper"
fi

# 5. the reports
found=0
for f in $(find "$LOGS" -name 'asan.*' -o -name 'ubsan.*' | sort) \
	$(grep -rlE --include='*.log' --include='*.out' --include='*.diffs' "$REPORT" "$WORK/test.out" ${BUILD:+"$BUILD"} | sort); do
	[ -s "$f" ] || continue
	found=$((found + 1))
	ours="no idle_guard frame"
	grep -Eq ' in [A-Za-z0-9_]+ (src|test)/[a-z_]+\.c:[0-9]+|idle_guard\.so\+|policy_test' "$f" &&
		ours="involves idle_guard frames"
	printf '\n===== %s (%s) =====\n' "$f" "$ours"
	case "$f" in
	"$LOGS"/*) head -n 80 "$f" ;;
	*) grep -E -A 30 "$REPORT" "$f" | head -n 120 ;;
	esac
done
if [ "$found" -eq 0 ]; then ig_say "no sanitizer report"; else fail "$found file(s) with sanitizer reports (above)"; fi
[ "$failed" -eq 0 ] || exit 1
ig_say "PASS: the suite against $("$PGC" --version), sanitizers in play, no report"
