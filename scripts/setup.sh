#!/usr/bin/env bash
#
# scripts/setup.sh -- install what building and testing idle_guard needs.
#
# Usage: bash scripts/setup.sh
#
# Idempotent: it asks dpkg which of the required Debian 12 packages are
# missing and calls apt-get (update + install, non-interactive, no
# recommends) only when something is.  When packages are missing and we are
# not root it fails, naming them.  It exports nothing; scripts/test.sh and
# scripts/demo.sh call it first.
#
# Note: installing postgresql-15 makes Debian create and start a cluster
# "15/main" on port 5432.  Nothing in scripts/ uses or touches that cluster:
# the tests and the demo run their own temporary servers on other ports.

set -euo pipefail

# Everything needed to build the extension and run every test suite:
#   postgresql-15            server binaries (initdb, postgres, pg_ctl)
#   postgresql-server-dev-15 headers and pg_config for PGXS builds
#   postgresql-client-15     psql, pg_regress, the TAP modules, pgxs.mk
#   libipc-run-perl          IPC::Run, needed by PostgreSQL::Test::Cluster
#   libyaml-libyaml-perl     YAML::XS, for t/013 (parses contrib/*.yaml)
#   make gcc                 the build itself
REQUIRED_PACKAGES=(
	postgresql-15
	postgresql-server-dev-15
	postgresql-client-15
	libipc-run-perl
	libyaml-libyaml-perl
	make
	gcc
)

say() {
	printf 'setup: %s\n' "$*"
}

# is_installed PKG: true when dpkg reports PKG as fully installed.
is_installed() {
	local status
	status=$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null) || return 1
	[ "$status" = "install ok installed" ]
}

command -v dpkg-query >/dev/null 2>&1 ||
	{ echo "setup: ERROR: dpkg-query not found; this script supports Debian 12 only" >&2; exit 1; }

missing=()
for pkg in "${REQUIRED_PACKAGES[@]}"; do
	is_installed "$pkg" || missing+=("$pkg")
done

if [ "${#missing[@]}" -eq 0 ]; then
	say "all ${#REQUIRED_PACKAGES[@]} required packages are installed, nothing to do"
	exit 0
fi

say "missing packages: ${missing[*]}"
if [ "$(id -u)" -ne 0 ]; then
	echo "setup: ERROR: not root, cannot install: ${missing[*]}" >&2
	echo "setup: ERROR: run as root: apt-get install ${missing[*]}" >&2
	exit 1
fi

say "running apt-get update"
apt-get update -q
say "installing: ${missing[*]}"
DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"

# Check the result rather than trusting apt-get's exit status alone.
still_missing=()
for pkg in "${missing[@]}"; do
	is_installed "$pkg" || still_missing+=("$pkg")
done
if [ "${#still_missing[@]}" -ne 0 ]; then
	echo "setup: ERROR: still not installed after apt-get: ${still_missing[*]}" >&2
	exit 1
fi
say "installed: ${missing[*]}"
