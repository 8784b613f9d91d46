#!/usr/bin/env bash
#
# scripts/package.sh -- build the Debian package postgresql-NN-idle-guard.
#
# Usage: bash scripts/package.sh --pg MAJOR [--ref REF] [--out DIR]
#
#   --pg MAJOR   15 (Debian 12's packages), 17 (trixie), 18 (sid) or 19
#                (experimental), where scripts/pg.sh provides them: the
#                host's own major here, the others in its chroots
#   --ref REF    build the tree of this git commit or tag (e.g. v1.5)
#                instead of the working tree; a tree without debian/ gets
#                this one's, its changelog cut to that release
#   --out DIR    where the packages go (default IG_PACKAGE_DIR, else
#                /var/tmp/idle_guard-packages): the .deb files, and per
#                build in DIR/build-MAJOR-VERSION the source package, the
#                .changes, the .buildinfo and lintian's verdict
#
# Builds the source package (3.0 (quilt), its .orig.tar.gz from the tree
# without debian/) and the binary package for that one major
# (PG_SUPPORTED_VERSIONS=MAJOR pg_buildext updatecontrol, dpkg-buildpackage
# -us -uc), then runs lintian (-I --pedantic); any error, warning or info
# tag fails (with --ref, it is only reported).  Installs what building
# needs where it builds.  The last line of stdout is the path of the .deb.

set -euo pipefail
umask 022
IG_LOG_PREFIX=package
SCRIPTS=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
# shellcheck source=scripts/lib.sh
. "$SCRIPTS/lib.sh"

usage() { sed -n '5,23p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }
MAJOR='' REF='' OUT=${IG_PACKAGE_DIR:-/var/tmp/idle_guard-packages}
while [ "$#" -gt 0 ]; do
	case "$1" in
	--pg) MAJOR=${2:-}; shift ;;
	--ref) REF=${2:-}; shift ;;
	--out) OUT=${2:-}; shift ;;
	-h | --help) usage; exit 0 ;;
	*) usage >&2; exit 2 ;;
	esac
	shift
done
[[ "$MAJOR" =~ ^1[5-9]$ ]] || { usage >&2; exit 2; }
[ "$MAJOR" != 16 ] || ig_die "no Debian release here packages PostgreSQL 16 (scripts/pg.sh builds it from source): no package for 16"
[ -n "$OUT" ] || ig_die "--out needs a directory"
REPO=$(ig_repo_root)
case "$(cd "$(dirname "$OUT")" 2>/dev/null && pwd -P)/" in
"$REPO"/*) ig_die "--out must lie outside the source tree ($REPO)" ;;
esac
ig_is_root || ig_die "building in a chroot and installing the build tools needs root"

# What building needs besides the major's server-dev package: the compiler
# and make (build-essential), debhelper and the pgxs debhelper sequence
# (postgresql-server-dev-all on Debian 12; from Debian 13 it is in
# postgresql-common-dev, which postgresql-server-dev-all depends on),
# lintian.
BUILD_TOOLS="build-essential dpkg-dev debhelper postgresql-server-dev-all lintian"

# Where the major lives: here (its pg_config) or ROOT:PG_CONFIG
where=$(bash "$SCRIPTS/pg.sh" "$MAJOR" | tee >(cat >&2) | tail -n 1)
ROOT=
case "$where" in *:*) ROOT=${where%%:*} ;; esac
IN=()
if [ -n "$ROOT" ]; then
	ig_chroot_prefix "$ROOT"
	IN=("${IG_IN[@]}")
	# shellcheck disable=SC2086
	if ! ig_has_packages "$ROOT" $BUILD_TOOLS; then
		ig_say "installing the build tools in $ROOT"
		"${IN[@]}" timeout -k 10 600 apt-get -q update >&2
		# shellcheck disable=SC2086
		"${IN[@]}" timeout -k 10 1200 apt-get install -y -q --no-install-recommends $BUILD_TOOLS >&2
	fi
else
	# shellcheck disable=SC2086
	bash "$SCRIPTS/setup.sh" $BUILD_TOOLS >&2
fi

# release_commit vX.Y[.Z]: without the tag (a clone that did not fetch
# tags), the last commit of release X.Y.Z (X.Y: X.Y.0), by its META.json's
# version, or before there was one, its control file's default_version.
release_commit() {
	local want=${1#v} c version newer=
	[[ "$want" =~ ^[0-9]+\.[0-9]+(\.[0-9]+)?$ ]] || return 1
	[[ "$want" =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || want=$want.0
	for c in $(git -C "$REPO" log --format=%H HEAD -- idle_guard.control META.json); do
		if git -C "$REPO" cat-file -e "$c:META.json" 2>/dev/null; then
			version=$(git -C "$REPO" show "$c:META.json" | ig_meta_version)
		else
			version=$(git -C "$REPO" show "$c:idle_guard.control" | ig_default_version).0
		fi
		if [ "$version" = "$want" ]; then
			# the release ends where the next change of the control file begins
			if [ -n "$newer" ]; then git -C "$REPO" rev-parse "$newer^"; else git -C "$REPO" rev-parse HEAD; fi
			return 0
		fi
		newer=$c
	done
	return 1
}

mkdir -p "$ROOT/tmp"
WORK=$(mktemp -d "$ROOT/tmp/idle_guard_package.XXXXXX")
chmod 755 "$WORK" # lintian runs as nobody
ig_on_exit rm -rf "$WORK"
TREE=$WORK/tree

# The tree: the working tree, or REF's
mkdir -p "$TREE"
if [ -z "$REF" ]; then
	ig_copy_source "$REPO" "$TREE" >/dev/null
else
	commit=$(git -C "$REPO" rev-parse --verify -q "$REF^{commit}") || commit=$(release_commit "$REF") ||
		ig_die "no commit '$REF' in $REPO (nor, for vX.Y, a commit at version X.Y: a shallow clone?)"
	git -C "$REPO" archive "$commit" | tar -C "$TREE" -xf -
	ig_say "the tree of $REF ($(git -C "$REPO" rev-parse --short "$commit"))"
fi
EXT_VERSION=$(ig_default_version "$TREE/idle_guard.control")
[[ "$EXT_VERSION" =~ ^[0-9]+\.[0-9]+$ ]] || ig_die "idle_guard.control: no default_version MAJOR.MINOR"
UPSTREAM=$(ig_release_version "$TREE") # the release, X.Y.Z, as in META.json
if [ ! -d "$TREE/debian" ]; then
	# an older release: this tree's packaging, its changelog from that release down
	cp -a "$REPO/debian" "$TREE/debian"
	awk -v want="$UPSTREAM" '
		/^[a-z0-9][a-z0-9.+-]* \(/ { v = $2; gsub(/[()]/, "", v); sub(/-[^-]*$/, "", v); keep = keep || v == want }
		keep' "$REPO/debian/changelog" >"$TREE/debian/changelog"
	[ -s "$TREE/debian/changelog" ] || ig_die "debian/changelog has no entry for $UPSTREAM"
fi
DEB_VERSION=$(dpkg-parsechangelog -l "$TREE/debian/changelog" -S Version)
[ "${DEB_VERSION%-*}" = "$UPSTREAM" ] ||
	ig_die "debian/changelog is at $DEB_VERSION, the release at $UPSTREAM (expected $UPSTREAM-N)"
SRC=$WORK/idle-guard-$UPSTREAM
mv "$TREE" "$SRC"
tar -C "$WORK" --exclude="idle-guard-$UPSTREAM/debian" -czf "$WORK/idle-guard_$UPSTREAM.orig.tar.gz" "idle-guard-$UPSTREAM"

# Build, as seen where the major lives
D=${SRC#"$ROOT"}
ig_say "building idle-guard $DEB_VERSION for PostgreSQL $MAJOR${ROOT:+ in $ROOT}"
t0=$SECONDS
# shellcheck disable=SC2016 # expanded by that sh
if ! "${IN[@]}" sh -c 'cd "$1" && PG_SUPPORTED_VERSIONS=$2 pg_buildext updatecontrol &&
	PG_SUPPORTED_VERSIONS=$2 DEB_BUILD_OPTIONS=nocheck timeout -k 10 1200 dpkg-buildpackage -us -uc' \
	sh "$D" "$MAJOR" >"$WORK/build.log" 2>&1; then
	tail -n 60 "$WORK/build.log" >&2
	ig_die "dpkg-buildpackage failed"
fi
ig_say "  built in $((SECONDS - t0))s"
CHANGES=idle-guard_${DEB_VERSION}_$("${IN[@]}" dpkg --print-architecture).changes
# Errors, warnings and info tags fail; pedantic ones are shown.  One tag is
# not judged: the Standards-Version is Debian 12's (4.6.2), the oldest
# release built for, which Debian 13's and sid's lintian call out of date.
ig_say "lintian -I --pedantic $CHANGES"
lintian_rc=0
# shellcheck disable=SC2016 # expanded by that sh
"${IN[@]}" sh -c 'cd "$1" && runuser -u nobody -- lintian -I --pedantic --fail-on error,warning,info \
	--suppress-tags out-of-date-standards-version "$2"' \
	sh "${WORK#"$ROOT"}" "$CHANGES" >"$WORK/lintian.txt" 2>&1 || lintian_rc=$?
sed 's/^/  lintian: /' "$WORK/lintian.txt"
[ -s "$WORK/lintian.txt" ] || ig_say "  lintian: no tag"
if [ "$lintian_rc" -ne 0 ]; then
	# an older release is built to test upgrades; its tags are history
	[ -n "$REF" ] || ig_die "lintian failed (exit status $lintian_rc)"
	ig_warn "lintian tags on $REF, an older release: reported, not fatal"
fi

DEB=postgresql-$MAJOR-idle-guard_${DEB_VERSION}_$("${IN[@]}" dpkg --print-architecture).deb
[ -f "$WORK/$DEB" ] || ig_die "no $DEB was built"
KEEP=$OUT/build-$MAJOR-$DEB_VERSION
rm -rf "$KEEP"
mkdir -p "$KEEP"
cp "$WORK/$DEB" "$OUT/"
cp "$WORK"/*.dsc "$WORK"/*.orig.tar.gz "$WORK"/*.debian.tar.* "$WORK"/*.changes "$WORK"/*.buildinfo \
	"$WORK"/*-dbgsym_*.deb "$WORK/lintian.txt" "$WORK/build.log" "$KEEP/"
ig_say "$DEB: $(du -k "$OUT/$DEB" | cut -f1) kB, installed $(dpkg-deb -f "$OUT/$DEB" Installed-Size) kB; source package and lintian's verdict in $KEEP"
printf '%s\n' "$OUT/$DEB"
