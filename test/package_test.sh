#!/usr/bin/env bash
#
# test/package_test.sh -- what a DBA does with the package of idle_guard, on
# a system that has no PostgreSQL yet.
#
# Usage: bash test/package_test.sh --pg MAJOR [--debs DIR] [--test NAME]... [--upgrade-from REF]
#
#   --pg MAJOR         15, 17, 18 or 19 (scripts/package.sh builds it)
#   --debs DIR         the package scripts/package.sh --out DIR built
#                      already (CI builds them in the background)
#   --test NAME        only this test of the autopkgtest (installcheck, tap)
#   --upgrade-from REF also upgrade from the package of REF (e.g. v1.5)
#
# In a fresh root of the Debian release that packages MAJOR (bookworm,
# trixie, sid; for 19, sid with experimental), made by ig_fresh_root:
#   - apt-get install ./postgresql-MAJOR-idle-guard_*.deb: its dependencies
#     come from the package's metadata;
#   - the source package's autopkgtest against it;
#   - the quick start against it (scripts/demo.sh --installed: preload,
#     CREATE EXTENSION, a silent session ended, the history row);
#   - apt-get purge: no file dpkg -L listed remains;
#   - with --upgrade-from: install REF's package, create the extension
#     and a history row (a silent session the worker ends), install the new
#     package over it, restart, ALTER EXTENSION idle_guard UPDATE: the
#     functions answer at the new version and the history row survived.
# As root.  Each step says how long it took; the first failure ends the run.

set -euo pipefail
IG_LOG_PREFIX=package_test
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
# shellcheck source=scripts/lib.sh
. "$HERE/../scripts/lib.sh"

APT=(timeout -k 10 1200 apt-get -q -y --no-install-recommends -o DPkg::Lock::Timeout=300)
export DEBIAN_FRONTEND=noninteractive

# timed WHAT CMD...: run CMD, then say how long WHAT took.
timed() {
	local what=$1 t0=$SECONDS
	shift
	ig_say "$what"
	"$@" || ig_die "failed: $what"
	ig_say "  $what: $((SECONDS - t0))s"
}

# install_deb DEB: apt-get install ./DEB, quietly unless it fails.
install_deb() {
	local log
	log=$(mktemp)
	if ! "${APT[@]}" install "$(realpath "$1")" >"$log" 2>&1; then
		tail -n 30 "$log" >&2
		rm -f "$log"
		return 1
	fi
	rm -f "$log"
}

# purge_leaves_nothing PACKAGE: apt-get purge PACKAGE; no file dpkg -L
# listed remains, nor a directory that no other package owns.
purge_leaves_nothing() {
	local list left
	list=$(dpkg -L "$1")
	ig_say "$1 installed $(printf '%s\n' "$list" | while IFS= read -r f; do [ -d "$f" ] || echo; done | wc -l) files"
	"${APT[@]}" purge "$1" >/dev/null
	[ "$(dpkg-query -W -f '${db:Status-Status}' "$1" 2>/dev/null)" != installed ] || ig_die "$1 is still installed"
	left=$(printf '%s\n' "$list" | while IFS= read -r f; do
		[ "$f" != /. ] || continue
		if [ -f "$f" ] || [ -L "$f" ] || { [ -d "$f" ] && ! dpkg -S "$f" >/dev/null 2>&1; }; then
			printf '%s\n' "$f"
		fi
	done)
	[ -z "$left" ] || { printf '%s\n' "$left" >&2; ig_die "apt-get purge $1 left these behind"; }
	ig_say "apt-get purge $1: nothing left behind"
}

# autopkgtest_against DSC [TEST...]: the source package's autopkgtest on
# this system, against the installed binary package (null virt server).
autopkgtest_against() {
	local dsc=$1 rc=0 args=()
	shift
	for t in "$@"; do args+=(--test-name "$t"); done
	[ -x /usr/bin/autopkgtest ] || "${APT[@]}" install autopkgtest dpkg-dev >/dev/null
	autopkgtest --no-built-binaries "${args[@]}" "$(realpath "$dsc")" -- null || rc=$?
	# 0: every test passed; 2: some were skipped (none is, here)
	[ "$rc" -eq 0 ] || { ig_warn "autopkgtest exit status $rc"; return 1; }
}

# --- upgrade -------------------------------------------------------------------

# sql SQL: its value, from the upgrade cluster.
sql() { "$BINDIR/psql" -X -qAt -v ON_ERROR_STOP=1 -h "$DIR" -p "$IG_CLUSTER_PORT" -U postgres -d postgres -c "$1"; }

# wait_for WHAT SECONDS SQL: poll SQL until it returns t, at most SECONDS.
wait_for() {
	local what=$1 deadline=$((SECONDS + $2))
	until [ "$(sql "$3" 2>/dev/null)" = t ]; do
		[ "$SECONDS" -lt "$deadline" ] || ig_die "timed out waiting for: $what"
		sleep 0.2
	done
}

SILENT='' # the silent client's psql (global: stop_silent kills it)
# shellcheck disable=SC2317 # called at exit (ig_on_exit)
stop_silent() { [ -z "$SILENT" ] || kill "$SILENT" 2>/dev/null || true; }
upgrade() {
	local old=$1 new=$2 pkg major old_version new_version
	pkg=$(dpkg-deb -f "$old" Package)
	[ "$pkg" = "$(dpkg-deb -f "$new" Package)" ] || ig_die "$old and $new are not the same package"
	major=$(ig_package_major "$pkg")
	old_version=$(dpkg-deb -f "$old" Version) new_version=$(dpkg-deb -f "$new" Version)
	timed "apt-get install ./$(basename "$old")" install_deb "$old"
	BINDIR=/usr/lib/postgresql/$major/bin
	DIR=$(mktemp -d /tmp/idle_guard_upgrade.XXXXXX)
	ig_give_to_server_user "$DIR"
	ig_on_exit rm -rf "$DIR"
	ig_on_exit ig_stop_servers_under "$DIR" "$BINDIR/pg_config"
	ig_on_exit stop_silent
	ig_start_cluster "$DIR" "$BINDIR" 54340 "shared_preload_libraries = 'idle_guard'
idle_guard.action = 'terminate'
idle_guard.idle_timeout = '2s'
idle_guard.naptime = '200ms'" || ig_die "could not start a cluster"
	sql "CREATE EXTENSION idle_guard; CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1);"
	ig_say "idle_guard $(sql "SELECT extversion FROM pg_extension WHERE extname = 'idle_guard'") from $pkg $old_version"
	# a client that locks a row and goes silent: its input is a fifo we hold
	# open on fd 7; the worker ends it, and closing fd 7 ends the psql
	mkfifo "$DIR/silent.in"
	exec 7<>"$DIR/silent.in"
	PGAPPNAME=upgrade_silent "$BINDIR/psql" -X -h "$DIR" -p "$IG_CLUSTER_PORT" -U postgres -d postgres \
		<"$DIR/silent.in" >/dev/null 2>&1 7>&- &
	SILENT=$!
	printf 'BEGIN;\nSELECT * FROM t FOR UPDATE;\n' >&7
	wait_for "a history row for upgrade_silent" 30 \
		"SELECT EXISTS (SELECT FROM idle_guard_history() WHERE application_name = 'upgrade_silent' AND action = 'terminated')"
	exec 7>&-
	wait "$SILENT" || true
	SILENT=
	local row="FROM idle_guard_history() WHERE application_name = 'upgrade_silent' AND action = 'terminated'" record
	record=$(sql "SELECT record $row")
	ig_say "history before: $(sql "SELECT count(*) FROM idle_guard_history()") row(s)"

	timed "apt-get install ./$(basename "$new") over $old_version" install_deb "$new"
	[ "$(dpkg-query -W -f '${Version}' "$pkg")" = "$new_version" ] || ig_die "$pkg is not at $new_version"
	ig_as_server_user "$BINDIR/pg_ctl" -D "$DIR/data" -w -t 60 -l "$DIR/server.log" restart >/dev/null ||
		ig_die "the server did not restart"
	sql "ALTER EXTENSION idle_guard UPDATE"
	local want
	want=$(ig_default_version "/usr/share/postgresql/$major/extension/idle_guard.control")
	[ "$(sql "SELECT extversion FROM pg_extension WHERE extname = 'idle_guard'")" = "$want" ] ||
		ig_die "the extension is not at $want after ALTER EXTENSION UPDATE"
	[ "$(sql "SELECT count(*) $row")" -eq 1 ] || ig_die "the history row did not survive the upgrade"
	# its postmortem record, as the new library renders it, says all the
	# old one said (a newer library may say more: 1.5.1 gives every rule's
	# setting in the policy, unreachable_timeout_ms too)
	[ "$(sql "SELECT record @> \$ig\$$record\$ig\$::jsonb $row")" = t ] ||
		ig_die "the history row's record changed in the upgrade: before $record, after $(sql "SELECT record $row")"
	sql "SELECT count(*) FROM idle_guard_report()" >/dev/null
	sql "SELECT terminated FROM idle_guard_stats()" >/dev/null
	ig_say "upgraded $pkg $old_version -> $new_version, idle_guard $want: the history row survived, report, history and stats answer"
}

# --- inside the fresh root ------------------------------------------------------

# inside install DEB DSC [TEST...] | inside upgrade OLD_DEB NEW_DEB
inside() {
	local deb dsc pkg
	timed "apt-get update" "${APT[@]}" update
	case "$1" in
	install)
		deb=$2 dsc=$3
		shift 3
		pkg=$(dpkg-deb -f "$deb" Package)
		timed "apt-get install ./$(basename "$deb")" install_deb "$deb"
		ig_say "$pkg $(dpkg-query -W -f '${Version}' "$pkg") installed; it depends on $(dpkg-query -W -f '${Depends}' "$pkg")"
		timed "autopkgtest${*:+ ($*)}" autopkgtest_against "$dsc" "$@"
		timed "the quick start (scripts/demo.sh --installed)" bash "$HERE/../scripts/demo.sh" --installed
		timed "apt-get purge $pkg" purge_leaves_nothing "$pkg"
		;;
	upgrade) upgrade "$2" "$3" ;;
	esac
}

# --- here: build, make the root, go in ---------------------------------------------

[ "$(id -u)" -eq 0 ] || ig_die "run as root (debootstrap, chroot, apt-get)"
if [ "${1:-}" = --inside ]; then
	shift
	inside "$@"
	exit 0
fi
MAJOR='' FROM='' DEBS='' TESTS=()
while [ "$#" -gt 0 ]; do
	case "$1" in
	--pg) MAJOR=${2:-}; shift ;;
	--test) TESTS+=("${2:-}"); shift ;;
	--debs) DEBS=${2:-}; shift ;;
	--upgrade-from) FROM=${2:-}; shift ;;
	*) sed -n '5,12p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
	esac
	shift
done
case "$MAJOR" in
15) SUITE=bookworm ;;
17) SUITE=trixie ;;
18 | 19) SUITE=sid ;;
*) ig_die "--pg: 15, 17, 18 or 19" ;;
esac
ROOT=$(mktemp -d "/var/tmp/idle_guard_$SUITE.XXXXXX")
if [ -n "$DEBS" ]; then
	OUT=$(cd "$DEBS" && pwd -P) || ig_die "--debs: no directory $DEBS"
	ig_on_exit rm -rf --one-file-system "$ROOT"
else
	OUT=$(mktemp -d /var/tmp/idle_guard_packages.XXXXXX)
	ig_on_exit rm -rf --one-file-system "$ROOT" "$OUT"
	timed "scripts/package.sh --pg $MAJOR" bash "$HERE/../scripts/package.sh" --pg "$MAJOR" --out "$OUT"
fi
DEB=$(ls "$OUT"/postgresql-"$MAJOR"-idle-guard_*.deb 2>/dev/null || true)
[ "$(printf '%s' "$DEB" | grep -c .)" -eq 1 ] || ig_die "not one postgresql-$MAJOR-idle-guard_*.deb in $OUT: ${DEB:-none}"
VERSION=$(dpkg-deb -f "$DEB" Version)
if [ -n "$FROM" ]; then
	timed "scripts/package.sh --pg $MAJOR --ref $FROM" bash "$HERE/../scripts/package.sh" --pg "$MAJOR" --ref "$FROM" --out "$OUT"
	OLD=
	for deb in "$OUT/postgresql-$MAJOR-idle-guard_"*.deb; do
		case "$deb" in *"_${VERSION}_"*) ;; *) OLD=$deb ;; esac
	done
fi
timed "a fresh $SUITE in $ROOT" ig_fresh_root "$SUITE" "$ROOT"
if [ "$MAJOR" = 19 ]; then
	# 19 is in experimental, whose packages apt takes only when asked
	echo "deb $(ig_mirror) experimental main" >"$ROOT/etc/apt/sources.list.d/experimental.list"
	printf 'Package: postgresql-19* libpq5 libpq-dev\nPin: release a=experimental\nPin-Priority: 500\n' \
		>"$ROOT/etc/apt/preferences.d/postgresql-19"
fi
# the package, its source package, and these scripts (not the source tree)
mkdir -p "$ROOT/root/ci/test" "$ROOT/root/pkg"
cp -a "$HERE/../scripts" "$ROOT/root/ci/"
cp "${BASH_SOURCE[0]}" "$ROOT/root/ci/test/"
cp "$OUT"/*.deb "$OUT/build-$MAJOR-$VERSION"/*.{dsc,orig.tar.gz,debian.tar.xz} "$ROOT/root/pkg/"
ig_chroot_prefix "$ROOT"
in_root() { "${IG_IN[@]}" bash /root/ci/test/package_test.sh --inside "$@"; }
in_root install "/root/pkg/$(basename "$DEB")" "/root/pkg/idle-guard_$VERSION.dsc" "${TESTS[@]}"
[ -z "$FROM" ] || in_root upgrade "/root/pkg/$(basename "$OLD")" "/root/pkg/$(basename "$DEB")"
ig_say "PASS: postgresql-$MAJOR-idle-guard $VERSION${FROM:+, and the upgrade from $FROM}"
