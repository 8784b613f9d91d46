#!/usr/bin/env bash
#
# scripts/pg.sh -- provide a PostgreSQL major to build and test idle_guard
# against, made once and cached outside the clone.
#
# Usage: bash scripts/pg.sh MAJOR              (15, 16, 17, 18, 19)
#        bash scripts/pg.sh --assert MAJOR     (a build with assertions)
#        bash scripts/pg.sh --tarball FILE     (any release tarball)
#
# The last line of stdout says where it is: the path of its pg_config, or,
# for a major that runs in a chroot, ROOT:PG_CONFIG (the path inside ROOT).
#   - the host's own major (Debian 12: 15; Debian 13: 17): its packages;
#   - 16: built from IG_PG16_TARBALL (default: the 16.2 release tarball in
#     ../shared/pg-src beside the clone), checked against the SHA256SUMS
#     file beside it, or against IG_PG_TARBALL_SHA256;
#   - 17, 18, 19: Debian's binary packages in a debootstrap chroot (17 from
#     trixie, 18 from sid, 19 from sid with experimental, a release
#     candidate);
#   - --assert MAJOR: built from Debian's source package, with assertions
#     (--enable-cassert), for the sanitizer run (18: sid);
#   - --tarball FILE: built from that tarball (its checksum as above).
# Cache: IG_PG_CACHE (default /var/cache/idle_guard): pg/NAME for builds,
# chroot/NAME for chroots, each with a stamp written when it is complete;
# delete a directory to force a rebuild.  Concurrent runs wait for each
# other.  Needs root for apt, debootstrap and chroot.

set -euo pipefail
umask 022
IG_LOG_PREFIX=pg
SCRIPTS=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
# shellcheck source=scripts/lib.sh
. "$SCRIPTS/lib.sh"

usage() { sed -n '5,25p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }
MODE=package ARG=
case "${1:-}" in
--assert) MODE=assert ARG=${2:-} ;;
--tarball) MODE=tarball ARG=${2:-} ;;
-h | --help) usage; exit 0 ;;
*) ARG=${1:-} ;;
esac
[ -n "$ARG" ] || { usage >&2; exit 2; }
CACHE=${IG_PG_CACHE:-/var/cache/idle_guard}
MIRROR=$(ig_mirror)
CONFIGURE=(--enable-tap-tests --enable-cassert --enable-debug --without-icu
	--without-readline --without-zlib --without-llvm)

# locked NAME: hold CACHE/NAME.lock until exit (one builder at a time).
locked() {
	mkdir -p "$CACHE"
	exec 9>"$CACHE/$1.lock"
	flock -w 3600 9 || ig_die "timed out waiting for $CACHE/$1.lock"
}

# run LIMIT WHAT CMD...: one bounded step, its output in $LOG (tail on failure).
run() {
	local limit=$1 what=$2 t0=$SECONDS
	shift 2
	ig_say "$what"
	printf '\n===== %s\n' "$*" >>"$LOG"
	if ! timeout -k 30 "$limit" "$@" >>"$LOG" 2>&1; then
		tail -n 40 "$LOG" >&2
		ig_die "failed: $what (log: $LOG)"
	fi
	ig_say "  done in $((SECONDS - t0))s"
}

# checksum FILE: the tarball's SHA-256 must match IG_PG_TARBALL_SHA256 or
# its line in the SHA256SUMS file beside it.
checksum() {
	local want=${IG_PG_TARBALL_SHA256:-} sums
	sums=$(dirname "$1")/SHA256SUMS
	[ -n "$want" ] || [ ! -r "$sums" ] || want=$(awk -v f="$(basename "$1")" '$2 == f {print $1}' "$sums")
	[ -n "$want" ] || ig_die "no checksum for $1 (IG_PG_TARBALL_SHA256, or SHA256SUMS beside it)"
	[ "$(sha256sum "$1" | cut -d' ' -f1)" = "$want" ] || ig_die "$1 does not match its SHA-256 $want"
	ig_say "checked the SHA-256 of $(basename "$1")"
}

# build NAME SRCDIR: configure, make and install a source tree into
# CACHE/pg/NAME, with what PGXS's installcheck needs from the build tree.
build() {
	local prefix=$CACHE/pg/$1 src=$2 jobs=$(($(nproc) + 1))
	rm -rf "$prefix"
	cd "$src"
	run 900 "configure" ./configure --prefix="$prefix" "${CONFIGURE[@]}"
	run 3600 "make -j$jobs" make -j"$jobs"
	run 900 "make install" make install
	for d in src/test/regress src/test/isolation src/test/perl; do
		run 900 "make -C $d install" make -C "$d" install
	done
	cd /
	chmod -R a+rX "$prefix"
	grep -Eq '^enable_tap_tests[[:space:]]*=[[:space:]]*yes' "$(dirname "$("$prefix/bin/pg_config" --pgxs)")/../Makefile.global" ||
		ig_die "TAP tests not enabled in $prefix"
	date -u '+built %F %T UTC' >"$prefix/.idle_guard-ready"
}

# from_source NAME: the tree of the tarball or Debian source package, built.
from_source() {
	local name=$1 tarball apt
	WORK=$(mktemp -d /tmp/idle_guard_pg.XXXXXX)
	LOG=$WORK/log
	ig_on_exit rm -rf "$WORK"
	bash "$SCRIPTS/setup.sh" --only bison flex gcc libc6-dev make perl libipc-run-perl bzip2 xz-utils pkg-config
	if [ "$MODE" = assert ]; then
		apt=$WORK/apt
		mkdir -p "$apt/lists/partial" "$apt/cache/archives/partial" "$WORK/dl"
		echo "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $MIRROR sid main" >"$apt/sources.list"
		local o=(-o "Dir::Etc::sourcelist=$apt/sources.list" -o Dir::Etc::sourceparts=-
			-o "Dir::State::Lists=$apt/lists" -o "Dir::Cache=$apt/cache" -o APT::Sandbox::User=root)
		run 600 "sid's source index (private apt state)" apt-get -q "${o[@]}" update
		(cd "$WORK/dl" && run 600 "source package postgresql-$ARG" apt-get -q "${o[@]}" source --download-only "postgresql-$ARG")
		tarball=$(ls "$WORK/dl/postgresql-${ARG}"_*.orig.tar.*)
	else
		tarball=$ARG
		checksum "$tarball"
	fi
	run 600 "unpacking $(basename "$tarball")" tar -C "$WORK" -xf "$tarball"
	build "$name" "$(find "$WORK" -mindepth 2 -maxdepth 2 -name configure -printf '%h\n' | head -n 1)"
}

# What the tests need in a chroot besides PostgreSQL and the build tools:
# ip and nft for the network tests (t/032)
CHROOT_EXTRAS="iproute2 nftables"

# in_chroot MAJOR: a chroot with Debian's packages of that major.
in_chroot() {
	local major=$1 root=$CACHE/chroot/pg-$1 suite=sid pkgs t
	pkgs="postgresql-$major postgresql-client-$major postgresql-server-dev-$major"
	[ "$major" = 17 ] && suite=trixie
	if [ "$major" = 19 ]; then
		pkgs=""
		for t in postgresql-19 postgresql-client-19 postgresql-server-dev-19 libpq5 libpq-dev; do
			pkgs="$pkgs $t/experimental"
		done
	fi
	if [ ! -f "$root/.idle_guard-ready" ]; then
		mkdir -p "$CACHE/chroot"
		LOG=$CACHE/chroot/pg-$major.log
		: >"$LOG"
		bash "$SCRIPTS/setup.sh" --only debootstrap
		rm -rf "$root"
		run 900 "debootstrap $suite into $root" debootstrap --variant=minbase "$suite" "$root" "$MIRROR"
		printf '127.0.0.1\tlocalhost\n::1\tlocalhost\n' >"$root/etc/hosts"
		printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d" # start no service
		chmod 755 "$root/usr/sbin/policy-rc.d"
		echo 'Acquire::Check-Valid-Until "false";' >"$root/etc/apt/apt.conf.d/99idle-guard"
		[ "$major" != 19 ] || echo "deb $MIRROR experimental main" >"$root/etc/apt/sources.list.d/experimental.list"
		ig_chroot_prefix "$root"
		run 600 "apt-get update in the chroot" "${IG_IN[@]}" apt-get -q update
		run 600 "postgresql-common" "${IG_IN[@]}" apt-get install -y -q --no-install-recommends postgresql-common
		sed -i 's/^#\?create_main_cluster.*/create_main_cluster = false/' "$root/etc/postgresql-common/createcluster.conf"
		# shellcheck disable=SC2086
		run 900 "$pkgs" "${IG_IN[@]}" apt-get install -y -q --no-install-recommends $pkgs \
			make gcc libc6-dev perl libipc-run-perl libyaml-libyaml-perl $CHROOT_EXTRAS
		date -u '+installed %F %T UTC' >"$root/.idle_guard-ready"
	fi
	# a chroot cached before the network tests needed them
	ig_chroot_prefix "$root"
	# shellcheck disable=SC2086
	if ! ig_has_packages "$root" $CHROOT_EXTRAS; then
		LOG=$CACHE/chroot/pg-$major.log
		run 600 "apt-get update in the chroot" "${IG_IN[@]}" apt-get -q update
		run 600 "$CHROOT_EXTRAS" "${IG_IN[@]}" apt-get install -y -q --no-install-recommends $CHROOT_EXTRAS
	fi
	printf '%s:%s\n' "$root" "/usr/lib/postgresql/$major/bin/pg_config"
}

if [ "$MODE" = tarball ]; then
	name=$(basename "$ARG" | sed -E 's/\.tar\.(gz|bz2|xz)$//')
	locked "$name"
	[ -f "$CACHE/pg/$name/.idle_guard-ready" ] || from_source "$name"
	printf '%s\n' "$CACHE/pg/$name/bin/pg_config"
	exit 0
fi
[[ "$ARG" =~ ^1[5-9]$ ]] || ig_die "supported majors: 15 to 19, not '$ARG'"
if [ "$MODE" = assert ]; then
	locked "pg-$ARG-assert"
	[ -f "$CACHE/pg/pg-$ARG-assert/.idle_guard-ready" ] || from_source "pg-$ARG-assert"
	printf '%s\n' "$CACHE/pg/pg-$ARG-assert/bin/pg_config"
elif [ "$ARG" = "$(ig_distro_major)" ]; then
	bash "$SCRIPTS/setup.sh" >&2
	printf '%s\n' "/usr/lib/postgresql/$ARG/bin/pg_config"
elif [ "$ARG" = 16 ]; then
	MODE=tarball ARG=${IG_PG16_TARBALL:-$(ig_repo_root)/../shared/pg-src/postgresql-16.2.tar.gz}
	exec bash "${BASH_SOURCE[0]}" --tarball "$ARG"
else
	locked "chroot-$ARG"
	in_chroot "$ARG"
fi
