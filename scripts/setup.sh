#!/usr/bin/env bash
#
# scripts/setup.sh -- install what building and testing idle_guard needs.
#
# Usage: bash scripts/setup.sh [--only] [PACKAGE...]
#
# Asks dpkg which of the Debian packages below (with --only: none of them)
# and PACKAGE... are missing and calls apt-get (update, then a
# non-interactive install without recommends) only when some are.  Not
# root and something missing: it fails, naming them.  apt-get's output goes to stderr, so that stdout
# keeps the "setup:" lines only.  Installing postgresql-15 makes Debian
# start a cluster 15/main on port 5432; nothing here uses or touches it.

set -euo pipefail

# postgresql-N (initdb, postgres), -server-dev-N (headers, pg_config,
# PGXS), -client-N (psql, pg_regress, the TAP modules), IPC::Run for
# PostgreSQL::Test::Cluster, YAML::XS for t/013 (reads contrib/*.yaml), ip
# and nft for t/032 (a network namespace with a firewall of its own); N
# is this Debian release's major (15 on Debian 12, 17 on Debian 13), or
# IG_PG_MAJOR.
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
N=${IG_PG_MAJOR:-$(ig_distro_major)}
if [ -z "$N" ] && [ "$(id -u)" -eq 0 ]; then # sid: ask apt, once it has lists
	timeout -k 10 600 apt-get update -q >&2 && N=$(ig_distro_major)
fi
[ -n "$N" ] || { echo "setup: ERROR: no PostgreSQL major known for this release; set IG_PG_MAJOR" >&2; exit 1; }
PACKAGES=("postgresql-$N" "postgresql-server-dev-$N" "postgresql-client-$N"
	libipc-run-perl libyaml-libyaml-perl make gcc iproute2 nftables)
[ "${1:-}" = --only ] && shift && PACKAGES=()
PACKAGES+=("$@")

say() { printf 'setup: %s\n' "$*"; }
die() { printf 'setup: ERROR: %s\n' "$*" >&2; exit 1; }
installed() { [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" = "install ok installed" ]; }

command -v dpkg-query >/dev/null || die "dpkg-query not found; this script supports Debian only"
missing=()
for pkg in "${PACKAGES[@]}"; do
	installed "$pkg" || missing+=("$pkg")
done
if [ "${#missing[@]}" -eq 0 ]; then
	say "all ${#PACKAGES[@]} required packages are installed, nothing to do"
	exit 0
fi
say "missing packages: ${missing[*]}"
[ "$(id -u)" -eq 0 ] || die "not root, cannot install them (as root: apt-get install ${missing[*]})"
# one apt at a time: CI builds packages in the background while it tests
exec 9>/tmp/idle_guard-setup.lock
flock -w 1800 9 || die "timed out waiting for /tmp/idle_guard-setup.lock"
timeout -k 10 600 apt-get update -q >&2 || die "apt-get update failed"
DEBIAN_FRONTEND=noninteractive timeout -k 10 1200 \
	apt-get install -y -q --no-install-recommends "${missing[@]}" >&2 || die "apt-get install failed"
for pkg in "${missing[@]}"; do
	installed "$pkg" || die "still not installed after apt-get: $pkg"
done
say "installed: ${missing[*]}"
