#!/usr/bin/env bash
#
# scripts/test.sh -- build idle_guard and run every test suite.
#
# Usage: bash scripts/test.sh [--pg MAJOR] [--keep]
#
#   --pg MAJOR         test against that major, as scripts/pg.sh provides it
#                      (default: this Debian release's own, 15 on Debian 12,
#                      17 on Debian 13)
#   --keep             keep the build directory (logs, regression.diffs)
#   PG_CONFIG=...      without --pg, the pg_config to use
#   PROVE_TESTS=...    only these TAP files, e.g. PROVE_TESTS=t/001_row_lock.pl
#   PROVE_FLAGS=...    extra flags for prove, e.g. PROVE_FLAGS=-v
#   IG_TEST_TIMEOUT=N  time bound of the suites in seconds (default 2700)
#
# Installs what is missing (scripts/setup.sh), copies the source tree to a
# fresh directory under /tmp (inside the chroot, for a major that lives in
# one), builds it there with COPT=-Werror, installs it, and runs "make -k
# installcheck": every suite the Makefile chains (pg_regress without and
# with the preload, the unit test, the TAP files), as the postgres user
# when root.  make's exit status is the verdict; on failure every
# regression.diffs and the end of every server and TAP log is printed.
# Only temporary servers on their own ports are used.

set -euo pipefail

usage() { sed -n '5,15p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }
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
ROOT= # the chroot the major lives in, if any
if [ -z "$MAJOR" ]; then
	PG_CONFIG=$(ig_pg_config)
else
	where=$(bash "$SCRIPTS/pg.sh" "$MAJOR" | tee >(cat >&2) | tail -n 1)
	case "$where" in
	*:*) ROOT=${where%%:*} PG_CONFIG=${where#*:} ;;
	*) PG_CONFIG=$where ;;
	esac
fi
# IN CMD...: run CMD where the major lives (in its chroot, or here)
IN=()
if [ -n "$ROOT" ]; then ig_chroot_prefix "$ROOT" && IN=("${IG_IN[@]}"); fi
VERSION=$("${IN[@]}" "$PG_CONFIG" --version)
re="^PostgreSQL ${MAJOR}[^0-9]"
[ -z "$MAJOR" ] || [[ "$VERSION" =~ $re ]] || ig_die "$PG_CONFIG is $VERSION, not $MAJOR"
unset PGHOST PGHOSTADDR PGPORT PGDATABASE PGUSER PGSERVICE PGOPTIONS PGDATA

mkdir -p "$ROOT/tmp"
HOST_DIR=$(mktemp -d "$ROOT/tmp/idle_guard_test.XXXXXX")
DIR=${HOST_DIR#"$ROOT"} # the same, as seen where the major lives
# shellcheck disable=SC2317 # called at exit (ig_on_exit)
cleanup() {
	[ -n "$ROOT" ] || ig_stop_servers_under "$DIR" "$PG_CONFIG"
	if [ "$KEEP" -eq 1 ]; then ig_say "kept $HOST_DIR"; else rm -rf "$HOST_DIR"; fi
}
ig_on_exit cleanup

ig_copy_source "$(ig_repo_root)" "$HOST_DIR"
for goal in all install; do
	"${IN[@]}" make -C "$DIR" -j"$(nproc)" "PG_CONFIG=$PG_CONFIG" COPT=-Werror "$goal" ||
		ig_die "could not build and install idle_guard"
done
RUN=()
if ig_is_root; then
	"${IN[@]}" chown -R "$IG_SERVER_USER:" "$DIR"
	RUN=(runuser -u "$IG_SERVER_USER" --)
fi

ig_say "make -k installcheck against $VERSION ($PG_CONFIG${ROOT:+ in the chroot $ROOT}), at most ${TIMEOUT}s"
rc=0
# On make's command line: PGXS's Makefile.global sets PROVE_FLAGS itself.
timeout -k 30 "$TIMEOUT" "${IN[@]}" "${RUN[@]}" make -C "$DIR" -k --no-print-directory \
	"PG_CONFIG=$PG_CONFIG" COPT=-Werror ${PROVE_TESTS:+"PROVE_TESTS=$PROVE_TESTS"} \
	${PROVE_FLAGS:+"PROVE_FLAGS=$PROVE_FLAGS"} installcheck || rc=$?
if [ "$rc" -ne 0 ]; then
	[ "$rc" -eq 124 ] && ig_warn "timed out after ${TIMEOUT}s"
	while IFS= read -r -d '' f; do
		case "$f" in
		*.diffs) printf '\n===== %s =====\n' "$f" && cat "$f" ;;
		*) printf '\n===== %s (last 200 lines) =====\n' "$f" && tail -n 200 "$f" ;;
		esac
	done < <(find "$HOST_DIR" -maxdepth 2 -name regression.diffs -size +0 -print0 | sort -z
		find "$HOST_DIR"/{tmp_regress,output_nopreload,tmp_nopreload,tmp_check}/log "$HOST_DIR/log" \
			-type f -print0 2>/dev/null | sort -z)
	echo
	ig_say "FAIL: make installcheck, $VERSION (exit status $rc)"
	exit "$rc"
fi
ig_say "PASS: make installcheck, $VERSION"
