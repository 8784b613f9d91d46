#!/usr/bin/env bash
#
# scripts/test.sh -- build idle_guard and run every test suite.
#
# Usage: bash scripts/test.sh [--pg MAJOR] [--keep]
#
#   --pg MAJOR         15: Debian's PostgreSQL; another major: the one
#                      scripts/pg-build.sh MAJOR builds once and caches
#   --keep             keep the build directory (logs, regression.diffs)
#   PG_CONFIG=...      without --pg, the pg_config to use (default 15's)
#   PROVE_TESTS=...    only these TAP files, e.g. PROVE_TESTS=t/001_row_lock.pl
#   PROVE_FLAGS=...    extra flags for prove, e.g. PROVE_FLAGS=-v
#   IG_TEST_TIMEOUT=N  time bound of the suites in seconds (default 2700)
#
# Installs what is missing (scripts/setup.sh), copies the source tree to a
# fresh directory under /tmp, builds it there with COPT=-Werror, installs
# it, and runs "make -k installcheck": every suite the Makefile chains
# (pg_regress without and with the preload, the unit test, the TAP files),
# as the postgres user when root.  make's exit status is the verdict; on
# failure every regression.diffs and the end of every server and TAP log
# is printed.  Only temporary servers on their own ports are used.

set -euo pipefail

usage() { sed -n '5,13p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }
KEEP=0 MAJOR=
while [ "$#" -gt 0 ]; do
	case "$1" in
	--keep) KEEP=1 ;;
	--pg) MAJOR=${2:-}; shift ;;
	--pg=*) MAJOR=${1#--pg=} ;;
	-h | --help) usage; exit 0 ;;
	*) usage >&2; exit 2 ;;
	esac
	shift
done
[ -z "$MAJOR" ] || [[ "$MAJOR" =~ ^[1-9][0-9]*$ ]] || { echo "test: --pg takes a major version" >&2; exit 2; }
TIMEOUT=${IG_TEST_TIMEOUT:-2700}
[[ "$TIMEOUT" =~ ^[0-9]+$ ]] || { echo "test: IG_TEST_TIMEOUT takes seconds" >&2; exit 2; }

IG_LOG_PREFIX="test"
SCRIPTS=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
# shellcheck source=scripts/lib.sh
. "$SCRIPTS/lib.sh"
bash "$SCRIPTS/setup.sh"
case "$MAJOR" in
'') PG_CONFIG=$(ig_pg_config) ;;
15) PG_CONFIG=$IG_DEFAULT_PG_CONFIG ;;
*) PG_CONFIG=$(bash "$SCRIPTS/pg-build.sh" "$MAJOR" | tee >(cat >&2) | tail -n 1) ;;
esac
VERSION=$("$PG_CONFIG" --version)
re="^PostgreSQL ${MAJOR}[^0-9]"
[ -z "$MAJOR" ] || [[ "$VERSION" =~ $re ]] || ig_die "$PG_CONFIG is $VERSION, not $MAJOR"
unset PGHOST PGHOSTADDR PGPORT PGDATABASE PGUSER PGSERVICE PGOPTIONS PGDATA

DIR=$(mktemp -d /tmp/idle_guard_test.XXXXXX)
cleanup() {
	ig_stop_servers_under "$DIR" "$PG_CONFIG"
	if [ "$KEEP" -eq 1 ]; then ig_say "kept $DIR"; else rm -rf "$DIR"; fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

ig_copy_source "$(ig_repo_root)" "$DIR"
ig_build_install "$DIR" "$PG_CONFIG" || ig_die "could not build and install idle_guard"
ig_give_to_server_user "$DIR"
RUN=()
ig_is_root && RUN=(runuser -u "$IG_SERVER_USER" --)

ig_say "make -k installcheck against $VERSION ($PG_CONFIG), at most ${TIMEOUT}s"
rc=0
timeout -k 30 "$TIMEOUT" "${RUN[@]}" make -C "$DIR" -k --no-print-directory \
	"PG_CONFIG=$PG_CONFIG" COPT=-Werror installcheck || rc=$?
if [ "$rc" -ne 0 ]; then
	[ "$rc" -eq 124 ] && ig_warn "timed out after ${TIMEOUT}s"
	while IFS= read -r -d '' f; do
		case "$f" in
		*.diffs) printf '\n===== %s =====\n' "$f" && cat "$f" ;;
		*) printf '\n===== %s (last 200 lines) =====\n' "$f" && tail -n 200 "$f" ;;
		esac
	done < <(find "$DIR" -maxdepth 2 -name regression.diffs -size +0 -print0 | sort -z
		find "$DIR"/{tmp_regress,output_nopreload,tmp_nopreload,tmp_check}/log "$DIR/log" \
			-type f -print0 2>/dev/null | sort -z)
	echo
	ig_say "FAIL: make installcheck, $VERSION (exit status $rc)"
	exit "$rc"
fi
ig_say "PASS: make installcheck, $VERSION"
