#!/usr/bin/env bash
#
# scripts/pg-build.sh -- build (once) and cache a PostgreSQL install of a
# given major version from Debian's source package, for testing idle_guard
# against majors Debian 12 has no binary packages for.
#
# Usage: bash scripts/pg-build.sh MAJOR
#        pgc=$(bash scripts/pg-build.sh 18 | tail -n 1)
#
#   MAJOR               17 (Debian trixie), 18 (sid), 19 (experimental, a
#                       release candidate); also 13 (bullseye) and 15
#                       (bookworm), though Debian 12 ships 15 as binaries
#   IG_PG_CACHE=DIR     where installs are kept, one per major, DIR/pg-MAJOR
#                       (default /var/cache/idle_guard/pg, outside the clone)
#   IG_PG_JOBS=N        make -jN (default: number of CPUs + 1)
#   IG_PG_KEEP_BUILD=1  keep the temporary source/build tree (its path is
#                       printed)
#
# Output: progress lines prefixed "pg-build:" on stdout; the LAST line of
# stdout is the path of the install's pg_config.  Compiler and apt output
# goes to a log file, DIR/logs/pg-MAJOR.log, whose tail is shown on stderr
# when a step fails.  Exit status 0 only on success: check it (with
# "set -o pipefail" when piping into tail).
#
# What it does, when DIR/pg-MAJOR has no pg_config with a stamp of a
# successful build made with the same configure options (otherwise it only
# prints the pg_config path):
#   1. installs the missing build dependencies (scripts/setup.sh --only
#      bison flex gcc make perl libipc-run-perl ...);
#   2. downloads the Debian source package postgresql-MAJOR with a private
#      apt state in a temporary directory (the system's apt lists and caches
#      are not touched) and extracts the upstream .orig.tar.* there;
#   3. configure --prefix=DIR/pg-MAJOR --enable-tap-tests --enable-cassert
#      --enable-debug --without-icu --without-readline --without-zlib
#      --without-llvm, make, make install, and also what PGXS's
#      "make installcheck" needs from an installed tree: pg_regress, the
#      isolation tester and the TAP Perl modules;
#   4. checks the result (TAP enabled in pgxs's Makefile.global, pg_regress
#      where pgxs.mk looks for it, the tree readable by the "postgres" user,
#      which runs the test servers), writes the stamp and removes the build
#      tree.
# Every step is bounded by a timeout.  Concurrent runs for the same major
# wait for each other (flock).

set -euo pipefail
umask 022

IG_LOG_PREFIX=pg-build
SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
# shellcheck source=scripts/lib.sh
. "$SCRIPT_DIR/lib.sh"

usage() { sed -n '3,23p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }
case "${1:-}" in -h | --help) usage; exit 0 ;; esac
[ "$#" -eq 1 ] || { usage >&2; exit 2; }
MAJOR=$1

# Debian suite that carries the source package postgresql-MAJOR.
case "$MAJOR" in
13) SUITE=bullseye ;;
15) SUITE=bookworm ;;
17) SUITE=trixie ;;
18) SUITE=sid ;;
19) SUITE=experimental ;;
*) ig_die "no Debian source package known for PostgreSQL '$MAJOR' (known: 13 15 17 18 19)" ;;
esac
SRC_PKG=postgresql-$MAJOR

CACHE=${IG_PG_CACHE:-/var/cache/idle_guard/pg}
case "$CACHE" in
/*) ;;
*) ig_die "IG_PG_CACHE must be an absolute path: $CACHE" ;;
esac
CACHE=${CACHE%/}
PREFIX=$CACHE/pg-$MAJOR
PG_CONFIG_PATH=$PREFIX/bin/pg_config
STAMP=$PREFIX/.idle_guard-pg-build
LOG_KEEP_DIR=$CACHE/logs
JOBS=${IG_PG_JOBS:-$(($(nproc 2>/dev/null || echo 2) + 1))}
[[ "$JOBS" =~ ^[1-9][0-9]*$ ]] || ig_die "IG_PG_JOBS must be a positive number"

# The configure options; the stamp records them, and a cached install made
# with other options is rebuilt.
CONFIGURE_OPTS=(
	"--prefix=$PREFIX"
	--enable-tap-tests
	--enable-cassert
	--enable-debug
	--without-icu
	--without-readline
	--without-zlib
	--without-llvm
)

# Packages the build and the TAP tests need.  bzip2/xz-utils unpack the
# tarball; libc6-dev is only a recommendation of gcc.
BUILD_DEPS=(bison flex gcc libc6-dev make perl libipc-run-perl bzip2 xz-utils)
command -v pkg-config >/dev/null 2>&1 || BUILD_DEPS+=(pkg-config)

# Per-step time limits, in seconds.
T_APT=600 T_CONFIGURE=900 T_MAKE=3600 T_INSTALL=900

# is_reusable: true when PREFIX holds a finished build made with the same
# configure options.
is_reusable() {
	[ -x "$PG_CONFIG_PATH" ] && [ -f "$STAMP" ] &&
		grep -qxF "configure=${CONFIGURE_OPTS[*]}" "$STAMP" &&
		grep -qx 'status=ok' "$STAMP"
}

# --- the cache directory and the lock ------------------------------------

mkdir -p "$CACHE" "$LOG_KEEP_DIR" || ig_die "cannot create $CACHE"
# The server user must reach the install (checked again, fully, at the end);
# say so now rather than after the build.
if ig_is_root && id "$IG_SERVER_USER" >/dev/null 2>&1 &&
	! runuser -u "$IG_SERVER_USER" -- test -r "$CACHE" -a -x "$CACHE"; then
	ig_die "user '$IG_SERVER_USER' cannot enter $CACHE (a parent directory is not world-searchable?); choose another IG_PG_CACHE"
fi

# Fast path, without the lock: nothing to do.
if is_reusable; then
	ig_say "reusing $("$PG_CONFIG_PATH" --version) in $PREFIX ($(sed -n 's/^built=//p' "$STAMP"))"
	printf '%s\n' "$PG_CONFIG_PATH"
	exit 0
fi

exec 9>"$CACHE/.pg-$MAJOR.lock"
if ! flock -n 9; then
	ig_say "another pg-build.sh is building $MAJOR; waiting for it (at most 1 hour)"
	flock -w 3600 9 || ig_die "timed out waiting for the lock $CACHE/.pg-$MAJOR.lock"
fi
# It may have finished while we waited.
if is_reusable; then
	ig_say "reusing $("$PG_CONFIG_PATH" --version) in $PREFIX, built meanwhile"
	printf '%s\n' "$PG_CONFIG_PATH"
	exit 0
fi

# --- temporary directory, log, cleanup -------------------------------------

WORK=$(mktemp -d "/tmp/pg-build-$MAJOR.XXXXXX")
LOG=$WORK/build.log
: >"$LOG"
START=$(date +%s)
SUCCESS=0

cleanup() {
	local rc=$?
	if [ -s "$LOG" ]; then
		if [ "$SUCCESS" -eq 1 ]; then
			cp "$LOG" "$LOG_KEEP_DIR/pg-$MAJOR.log" 2>/dev/null || true
		else
			cp "$LOG" "$LOG_KEEP_DIR/pg-$MAJOR.failed.log" 2>/dev/null &&
				ig_warn "build log kept in $LOG_KEEP_DIR/pg-$MAJOR.failed.log"
		fi
	fi
	if [ "${IG_PG_KEEP_BUILD:-0}" = 1 ]; then
		ig_warn "kept build tree $WORK"
	else
		rm -rf "$WORK"
	fi
	return "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# step SECONDS DESCRIPTION CMD...: one bounded step, output to the log;
# on failure, show the log's tail (and $STEP_HINT, if set) and exit.
STEP_HINT=
step() {
	local limit=$1 what=$2 t0 rc=0
	shift 2
	ig_say "$what"
	t0=$(date +%s)
	printf '\n===== %s: %s\n' "$what" "$*" >>"$LOG"
	timeout -k 30 "$limit" "$@" >>"$LOG" 2>&1 || rc=$?
	if [ "$rc" -ne 0 ]; then
		[ "$rc" -eq 124 ] && ig_warn "timed out after ${limit}s: $what"
		ig_warn "failed (exit status $rc): $what; last lines of the log:"
		tail -n 40 "$LOG" >&2
		[ -n "$STEP_HINT" ] && ig_warn "$STEP_HINT"
		ig_die "building PostgreSQL $MAJOR failed"
	fi
	ig_say "  done in $(($(date +%s) - t0))s"
}

ig_say "building PostgreSQL $MAJOR from Debian source package $SRC_PKG ($SUITE) into $PREFIX"
ig_say "work directory $WORK, log $LOG"

# --- 1. build dependencies --------------------------------------------------

bash "$SCRIPT_DIR/setup.sh" --only "${BUILD_DEPS[@]}"

# --- 2. the source ------------------------------------------------------------

# The archive the system already uses, from deb822 or one-line sources.
mirror_uri() {
	local uri=
	if [ -r /etc/apt/sources.list.d/debian.sources ]; then
		uri=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources)
	fi
	if [ -z "$uri" ] && [ -r /etc/apt/sources.list ]; then
		uri=$(awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { print $i; exit } }' \
			/etc/apt/sources.list)
	fi
	printf '%s\n' "${uri:-http://deb.debian.org/debian}"
}

APT_DIR=$WORK/apt
mkdir -p "$APT_DIR/lists/partial" "$APT_DIR/cache/archives/partial" "$WORK/download"
printf 'deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] %s %s main\n' \
	"$(mirror_uri)" "$SUITE" >"$APT_DIR/sources.list"
# Private sources, lists and caches: the system's apt state stays as it is.
APT_OPTS=(
	-o "Dir::Etc::sourcelist=$APT_DIR/sources.list"
	-o "Dir::Etc::sourceparts=-"
	-o "Dir::State::Lists=$APT_DIR/lists"
	-o "Dir::Cache=$APT_DIR/cache"
	-o "Acquire::Languages=none"
	-o "APT::Sandbox::User=root"
)
step "$T_APT" "fetching the $SUITE source index (private apt state)" \
	apt-get -q "${APT_OPTS[@]}" update
cd "$WORK/download" # apt-get source downloads into the current directory
STEP_HINT="if apt-get says 404 Not Found above, the archive lists $SRC_PKG in $SUITE's index but does not serve its files: there is nothing to build from until it does"
step "$T_APT" "downloading source package $SRC_PKG" \
	apt-get -q "${APT_OPTS[@]}" source --download-only "$SRC_PKG"
STEP_HINT=
cd /

shopt -s nullglob
origs=("$WORK/download/${SRC_PKG}_"*.orig.tar.{bz2,gz,xz})
dscs=("$WORK/download/${SRC_PKG}_"*.dsc)
shopt -u nullglob
[ "${#origs[@]}" -eq 1 ] || ig_die "expected one ${SRC_PKG}_*.orig.tar.* in $WORK/download, found ${#origs[@]}"
DEB_VERSION=
[ "${#dscs[@]}" -ge 1 ] && DEB_VERSION=$(sed -n 's/^Version: //p' "${dscs[0]}" | head -n 1)
ig_say "source: $(basename "${origs[0]}") (Debian $SRC_PKG ${DEB_VERSION:-version unknown})"

mkdir -p "$WORK/src"
step "$T_APT" "extracting $(basename "${origs[0]}")" tar -C "$WORK/src" -xf "${origs[0]}"
mapfile -t tops < <(find "$WORK/src" -mindepth 1 -maxdepth 1 -type d)
if [ "${#tops[@]}" -ne 1 ] || [ ! -x "${tops[0]}/configure" ]; then
	ig_die "the tarball did not unpack to one directory with a configure script"
fi
SRC=${tops[0]}
rm -f "${origs[@]}" # 20+ MB we no longer need

# --- 3. build and install -----------------------------------------------------

# A previous, unfinished or differently configured install goes first.
if [ -e "$PREFIX" ]; then
	ig_say "removing the previous install in $PREFIX (no stamp of a successful build with these options)"
	rm -rf "$PREFIX"
fi

cd "$SRC"
step "$T_CONFIGURE" "configure ${CONFIGURE_OPTS[*]}" ./configure "${CONFIGURE_OPTS[@]}"
# configure warns (but goes on) about options it does not know.
if grep -E 'WARNING: unrecognized options' "$LOG" >&2; then
	ig_warn "configure did not recognise some options (see above)"
fi
step "$T_MAKE" "make -j$JOBS" make -j"$JOBS"
step "$T_INSTALL" "make install" make install
# Not part of "make install", but PGXS's installcheck runs them from the
# installed tree ($pkglibdir/pgxs/src/test/...).
step "$T_INSTALL" "make -C src/test/regress install (pg_regress)" make -j"$JOBS" -C src/test/regress install
step "$T_INSTALL" "make -C src/test/isolation install (isolation tester)" make -j"$JOBS" -C src/test/isolation install
step "$T_INSTALL" "make -C src/test/perl install (TAP modules)" make -C src/test/perl install
cd /

# --- 4. check the result ----------------------------------------------------

[ -x "$PG_CONFIG_PATH" ] || ig_die "no pg_config at $PG_CONFIG_PATH after make install"
PGXS_MK=$("$PG_CONFIG_PATH" --pgxs)
PGXS_TOP=$(cd "$(dirname "$PGXS_MK")/../.." && pwd -P) # $pkglibdir/pgxs
GLOBAL=$PGXS_TOP/src/Makefile.global
[ -f "$PGXS_MK" ] || ig_die "pgxs.mk missing: $PGXS_MK"
grep -Eq '^enable_tap_tests[[:space:]]*=[[:space:]]*yes[[:space:]]*$' "$GLOBAL" ||
	ig_die "$GLOBAL does not say enable_tap_tests = yes"
grep -Eq '^PROVE[[:space:]]*=[[:space:]]*[^[:space:]]' "$GLOBAL" ||
	ig_die "$GLOBAL names no prove program"
for f in src/test/regress/pg_regress src/test/isolation/pg_isolation_regress \
	src/test/isolation/isolationtester; do
	[ -x "$PGXS_TOP/$f" ] || ig_die "missing from the install: $PGXS_TOP/$f"
done
if [ ! -f "$PGXS_TOP/src/test/perl/PostgreSQL/Test/Cluster.pm" ] &&
	[ ! -f "$PGXS_TOP/src/test/perl/PostgresNode.pm" ]; then
	ig_die "TAP modules missing from $PGXS_TOP/src/test/perl"
fi
ig_say "checked: enable_tap_tests = yes in $GLOBAL; pg_regress, isolation tester and TAP modules under $PGXS_TOP/src/test"

# Readable by the server user, who runs the test servers from this tree:
# every directory from / down, and every file in it.
chmod -R a+rX "$PREFIX"
if ig_is_root && id "$IG_SERVER_USER" >/dev/null 2>&1; then
	runuser -u "$IG_SERVER_USER" -- test -r "$GLOBAL" -a -x "$PREFIX/bin/postgres" ||
		ig_die "user '$IG_SERVER_USER' cannot read $PREFIX (check the permissions of its parent directories)"
	runuser -u "$IG_SERVER_USER" -- "$PREFIX/bin/postgres" --version >/dev/null ||
		ig_die "user '$IG_SERVER_USER' cannot run $PREFIX/bin/postgres"
fi

VERSION=$("$PG_CONFIG_PATH" --version)
ELAPSED=$(($(date +%s) - START))
{
	echo "# written by scripts/pg-build.sh after a successful build; delete to force a rebuild"
	echo "major=$MAJOR"
	echo "version=$VERSION"
	echo "debian_source=$SRC_PKG ${DEB_VERSION:-unknown} ($SUITE)"
	echo "configure=${CONFIGURE_OPTS[*]}"
	echo "built=$(date -u '+%Y-%m-%d %H:%M:%S UTC') in ${ELAPSED}s"
	echo "status=ok"
} >"$STAMP"
chmod a+r "$STAMP"
SUCCESS=1

ig_say "built $VERSION in ${ELAPSED}s; pg_config:"
printf '%s\n' "$PG_CONFIG_PATH"
