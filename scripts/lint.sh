#!/usr/bin/env bash
#
# scripts/lint.sh -- static analysis of src/: cppcheck and clang-tidy must
# both be clean.  Run by .ci/run; by hand: bash scripts/lint.sh
#
# Uses $PG_CONFIG (default: Debian's PostgreSQL 15) for the server headers.
# Installs cppcheck and clang-tidy from Debian's archive if missing (as
# root).  Ends with "lint: N passed, M failed" (N, M count tools) and exits
# non-zero if either tool reports anything.

set -euo pipefail

IG_LOG_PREFIX=lint
SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
# shellcheck source=scripts/lib.sh
. "$SCRIPT_DIR/lib.sh"

ROOT=$(ig_repo_root)
cd "$ROOT"

missing=()
command -v cppcheck >/dev/null 2>&1 || missing+=(cppcheck)
command -v clang-tidy >/dev/null 2>&1 || missing+=(clang-tidy)
if [ ${#missing[@]} -gt 0 ]; then
	ig_is_root || ig_die "missing: ${missing[*]} (install them, or run as root)"
	ig_say "installing ${missing[*]}"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

pgc=$(ig_pg_config)
server_inc=$("$pgc" --includedir-server)
version=$(sed -n "s/^default_version = '\(.*\)'/\1/p" idle_guard.control)
passed=0 failed=0

# verdict TOOL OUTPUT STATUS: a tool passes when it exits 0 with no output
verdict() {
	if [ "$3" -eq 0 ] && [ -z "$2" ]; then
		passed=$((passed + 1))
		ig_say "$1: clean"
	else
		failed=$((failed + 1))
		printf '%s\n' "$2"
		ig_warn "$1: findings above"
	fi
}

# cppcheck: real warnings only (no style nits), every finding fails
ig_say "cppcheck $(cppcheck --version | awk '{print $2}') on src/"
rc=0
out=$(cppcheck --quiet --error-exitcode=1 --enable=warning,performance,portability \
	--inline-suppr --std=c99 --suppress=missingIncludeSystem \
	-I src -I "$server_inc" -D__GNUC__ src/*.c 2>&1) || rc=$?
verdict cppcheck "$out" "$rc"

# clang-tidy: the static analyzer and bug-prone patterns.  Left out:
# checks that fire on PostgreSQL's own macros and idioms (implicit widening
# in ALLOCSET_DEFAULT_SIZES, reserved _PG_init, macro argument style,
# deliberately similar branches and parameter lists).
checks='-*,clang-analyzer-*,bugprone-*'
checks+=',-bugprone-easily-swappable-parameters,-bugprone-reserved-identifier'
checks+=',-bugprone-macro-parentheses,-bugprone-narrowing-conversions'
checks+=',-bugprone-branch-clone,-bugprone-assignment-in-if-condition'
checks+=',-bugprone-implicit-widening-of-multiplication-result'
checks+=',-clang-analyzer-security.insecureAPI.*'
ig_say "$(clang-tidy --version | grep -m1 -o 'version [0-9.]*' | sed 's/version/clang-tidy/') on src/"
out=$(clang-tidy --quiet -checks="$checks" src/*.c -- \
	-I src -I "$server_inc" -I "$(dirname "$server_inc")/internal" \
	-D_GNU_SOURCE "-DIDLE_GUARD_VERSION=\"$version\"" 2>&1 | grep -E 'warning:|error:' || true)
verdict clang-tidy "$out" 0

echo "lint: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
