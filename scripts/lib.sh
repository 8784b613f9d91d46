# shellcheck shell=bash
#
# scripts/lib.sh -- helpers of scripts/test.sh, scripts/demo.sh,
# scripts/pg.sh, the benchmarks (bench/) and the soak (test/soak/).
# Source it; it only defines functions and constants.  Messages are
# prefixed with "$IG_LOG_PREFIX: " (default: the calling script's name).
#
# As root, the servers run as IG_SERVER_USER: initdb and postgres refuse
# root, and they need a directory they can write, hence the copy of the
# source tree in a temporary directory.

set -euo pipefail

IG_SERVER_USER=postgres

# A build these scripts start (PostgreSQL's, idle_guard's) must not inherit
# the state of a make that started the script (make sanitize, make soak):
# PostgreSQL's Makefile.global generates its headers first only at
# MAKELEVEL 0, and a jobserver in MAKEFLAGS would not be ours.
unset MAKELEVEL MAKEFLAGS MFLAGS MAKEOVERRIDES
: "${IG_LOG_PREFIX:=$(basename "${0%.sh}")}"

ig_say() { printf '%s: %s\n' "$IG_LOG_PREFIX" "$*"; }
ig_warn() { printf '%s: %s\n' "$IG_LOG_PREFIX" "$*" >&2; }
ig_die() { printf '%s: ERROR: %s\n' "$IG_LOG_PREFIX" "$*" >&2; exit 1; }
ig_is_root() { [ "$(id -u)" -eq 0 ]; }
ig_repo_root() { (cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P); }

# ig_on_exit CMD [ARG...]: run CMD at this shell's exit, however it ends
# (done, failed, interrupted: INT and TERM exit 130 and 143), after every
# command registered later; each runs even if another fails, and the exit
# status is kept.  The one cleanup trap of every script.  CMD's arguments
# are taken as they are now; for a value known only later, register a
# function that reads it (IG_EXIT_STATUS holds the exit status then).  A
# subshell starts its own list.
IG_EXIT_CMDS=()
IG_EXIT_OWNER=
ig_on_exit() {
	local cmd
	printf -v cmd '%q ' "$@"
	if [ "$IG_EXIT_OWNER" != "$BASHPID" ]; then
		IG_EXIT_OWNER=$BASHPID IG_EXIT_CMDS=()
		trap ig_run_exit EXIT
		trap 'exit 130' INT
		trap 'exit 143' TERM
	fi
	IG_EXIT_CMDS=("$cmd" "${IG_EXIT_CMDS[@]}")
}
# shellcheck disable=SC2317 # called by the EXIT trap
ig_run_exit() {
	local rc=$? cmd
	trap - EXIT
	set +e
	# shellcheck disable=SC2034 # read by the functions registered
	IG_EXIT_STATUS=$rc
	for cmd in "${IG_EXIT_CMDS[@]}"; do eval "$cmd"; done
	IG_EXIT_CMDS=()
	exit "$rc"
}

# ig_pg_config: $PG_CONFIG (default: this Debian release's major) if it can
# be run, or die.
ig_pg_config() {
	local want=${PG_CONFIG:-/usr/lib/postgresql/$(ig_distro_major)/bin/pg_config} pgc
	pgc=$want
	[ -x "$pgc" ] || pgc=$(command -v "$pgc") || ig_die "pg_config not found: $want (set PG_CONFIG)"
	printf '%s\n' "$pgc"
}

# ig_as_server_user CMD...: run CMD as the server user when root.
ig_as_server_user() {
	if ig_is_root; then runuser -u "$IG_SERVER_USER" -- "$@"; else "$@"; fi
}

# ig_give_to_server_user DIR: when root, chown -R DIR to the server user.
ig_give_to_server_user() {
	ig_is_root || return 0
	id "$IG_SERVER_USER" >/dev/null 2>&1 || ig_die "no user '$IG_SERVER_USER' (is PostgreSQL installed?)"
	chown -R "$IG_SERVER_USER:$IG_SERVER_USER" "$1"
}

# ig_copy_source SRC DEST: copy the source tree at SRC into the directory
# DEST: in a git work tree its tracked and untracked but not ignored files,
# else every file; never .git nor what a build or a test run leaves.
ig_copy_source() {
	local src=$1 dest=$2 top path
	[ -f "$src/Makefile" ] || ig_die "no Makefile in $src"
	top=$(git -C "$src" rev-parse --show-toplevel 2>/dev/null) || top=
	if [ -n "$top" ] && [ "$(cd "$top" && pwd -P)" = "$(cd "$src" && pwd -P)" ]; then
		git -C "$src" ls-files -z -co --exclude-standard
	else
		(cd "$src" && find . -name .git -prune -o \( -type f -o -type l \) -print0 | sed -z 's|^\./||')
	fi | while IFS= read -r -d '' path; do
		case "$path" in
		.git | .git/* | */.git/* | *.o | *.so | *.bc | *.a | .deps/* | */.deps/*) continue ;;
		results/* | log/* | tmp_check/* | tmp_regress/* | tmp_nopreload/*) continue ;;
		output_nopreload/* | output_iso/* | tmp_check_iso/*) continue ;;
		regression.diffs | regression.out | test/policy_test) continue ;;
		esac
		# ls-files -c also lists tracked files deleted from the work tree
		if [ -e "$src/$path" ] || [ -L "$src/$path" ]; then printf '%s\0' "$path"; fi
	done | tar -C "$src" --null -T - -cf - | tar -C "$dest" -xf -
	ig_say "copied $(find "$dest" -type f | wc -l) files from $src to $dest"
}

# ig_build_install DIR PG_CONFIG [LOG [MAKEARG...]]: make COPT=-Werror, then
# make install, in DIR, each bounded by a timeout, with MAKEARGs (e.g.
# DESTDIR=...); output appended to LOG (its tail shown on failure), or to
# stdout.
ig_build_install() {
	local dir=$1 pgc=$2 log=${3:-} limit goal
	shift 2
	[ "$#" -eq 0 ] || shift
	ig_say "building in $dir ($("$pgc" --version), -Werror)"
	if [ -n "$log" ]; then exec 8>>"$log"; else exec 8>&1; fi
	for goal in "900 all" "300 install"; do
		read -r limit goal <<<"$goal"
		[ "$goal" = all ] || ig_say "installing into $("$pgc" --pkglibdir) and $("$pgc" --sharedir)/extension"
		if ! timeout -k 10 "$limit" make -C "$dir" -j"$(nproc)" "PG_CONFIG=$pgc" COPT=-Werror "$@" "$goal" >&8 2>&1; then
			exec 8>&-
			[ -n "$log" ] && tail -n 60 "$log" >&2
			ig_warn "make $goal failed${log:+ (log: $log)}"
			[ "$goal" = all ] || ig_is_root || ig_warn "not root: make install needs write access to $("$pgc" --pkglibdir) and $("$pgc" --sharedir)/extension"
			return 1
		fi
	done
	exec 8>&-
}

# ig_stop_servers_under DIR PG_CONFIG: stop (immediate mode) every server
# whose data directory lies under DIR, so that DIR can be removed.
ig_stop_servers_under() {
	local pidfile datadir owner pg_ctl
	[ -d "$1" ] || return 0
	pg_ctl="$("$2" --bindir)/pg_ctl"
	while IFS= read -r -d '' pidfile; do
		datadir=$(dirname "$pidfile")
		owner=$(stat -c %U "$datadir")
		ig_say "stopping leftover server in $datadir"
		if ig_is_root && [ "$owner" != root ]; then
			runuser -u "$owner" -- "$pg_ctl" -D "$datadir" -m immediate -w -t 20 stop >/dev/null 2>&1 || true
		else
			"$pg_ctl" -D "$datadir" -m immediate -w -t 20 stop >/dev/null 2>&1 || true
		fi
	done < <(find "$1" -name postmaster.pid -print0 2>/dev/null)
}

# ig_port_free PORT: true when nothing listens on 127.0.0.1:PORT.
ig_port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# ig_start_cluster DIR BINDIR FIRST_PORT EXTRA_CONF: initdb DIR/data as the
# server user (DIR must be theirs) and start it on 127.0.0.1 and a socket
# in DIR, on the first free port from FIRST_PORT (IG_CLUSTER_PORT), logging
# to DIR/server.log with millisecond timestamps and pids; EXTRA_CONF
# (lines) is appended to postgresql.conf.
ig_start_cluster() {
	local dir=$1 bindir=$2 first=$3 p
	IG_CLUSTER_PORT=
	for p in $(seq "$first" $((first + 70))); do
		if ig_port_free "$p"; then IG_CLUSTER_PORT=$p && break; fi
	done
	[ -n "$IG_CLUSTER_PORT" ] || { ig_warn "no free port in $first-$((first + 70))"; return 1; }
	ig_say "creating a throwaway cluster in $dir/data (port $IG_CLUSTER_PORT)"
	if ! ig_as_server_user timeout 60 "$bindir/initdb" -D "$dir/data" -U postgres -A trust \
		--no-locale -E UTF8 --no-sync >"$dir/initdb.log" 2>&1; then
		cat "$dir/initdb.log" >&2
		ig_warn "initdb failed"
		return 1
	fi
	printf '\n# --- added by %s ---\n%s\n' "$IG_LOG_PREFIX" "listen_addresses = '127.0.0.1'
port = $IG_CLUSTER_PORT
unix_socket_directories = '$dir'
fsync = off
log_line_prefix = '%m [%p] %q[%a] '
$4" >>"$dir/data/postgresql.conf"
	ig_as_server_user "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 20 start >/dev/null ||
		{ ig_warn "the server did not start"; return 1; }
}

# ig_distro_major: the PostgreSQL major this Debian release packages.
ig_distro_major() {
	case "$(. /etc/os-release 2>/dev/null && echo "${VERSION_CODENAME:-}")" in
	bookworm) echo 15 ;;
	trixie) echo 17 ;;
	*) apt-cache show postgresql 2>/dev/null | sed -nE 's/^Depends:.*postgresql-([0-9]+).*/\1/p' | head -n 1 ;;
	esac
}

# ig_chroot_prefix ROOT: set IG_IN to the command prefix that runs a
# command in the chroot ROOT, with /proc, /sys, /dev and a POSIX
# shared-memory tmpfs mounted in a mount namespace of its own: the mounts
# vanish with it whatever happens, and runs in the same chroot at the same
# time do not disturb each other.  The root is switched with pivot_root, not
# chroot: a process under chroot may not create a user namespace, which the
# network tests (t/032) do to get a network namespace of their own.
# shellcheck disable=SC2016,SC2034 # the script is sh's; IG_IN is the result
ig_chroot_prefix() {
	IG_IN=(unshare --mount --propagation private -- sh -c 'r=$1; shift
		mount --bind "$r" "$r" &&
		mount -t proc proc "$r/proc" && mount -t sysfs sysfs "$r/sys" &&
		mount --rbind /dev "$r/dev" && mount -t tmpfs -o mode=1777,size=1g shm "$r/dev/shm" &&
		cd "$r" && pivot_root . mnt && umount -l /mnt && cd / &&
		exec env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 \
			DEBIAN_FRONTEND=noninteractive "$@"' sh "$1")
}

# ig_mirror: the Debian mirror this machine's apt uses.
ig_mirror() {
	local m
	m=$(awk '/^URIs:/ && $2 !~ /security/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
	printf '%s\n' "${m:-http://deb.debian.org/debian}"
}

# ig_fresh_root SUITE ROOT: make the empty directory ROOT a new minimal
# Debian SUITE (bookworm, trixie, sid), as a new server has it:
# debootstrap's minbase, no service started by a package, apt reading the
# release, its updates and its security archive (sid: sid only), its lists
# not fetched yet.  debootstrap's output is cached in
# IG_PG_CACHE/base/SUITE.tar.gz (delete it to refresh); ROOT is a copy.
ig_fresh_root() {
	local suite=$1 root=$2 cache=${IG_PG_CACHE:-/var/cache/idle_guard}/base mirror security tmp
	mirror=$(ig_mirror)
	security=$(awk '/^URIs:/ && $2 ~ /security/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
	mkdir -p "$cache"
	(
		flock -w 1800 9 || ig_die "timed out waiting for $cache/$suite.lock"
		[ -s "$cache/$suite.tar.gz" ] && exit 0
		bash "$(ig_repo_root)/scripts/setup.sh" --only debootstrap >&2
		tmp=$(mktemp -d "/var/tmp/idle_guard_base_$suite.XXXXXX")
		ig_say "debootstrap $suite (cached in $cache/$suite.tar.gz)"
		if ! timeout -k 10 900 debootstrap --variant=minbase "$suite" "$tmp" "$mirror" >"$tmp.log" 2>&1; then
			tail -n 20 "$tmp.log" >&2
			rm -rf --one-file-system "$tmp" "$tmp.log"
			ig_die "debootstrap $suite failed"
		fi
		tar -C "$tmp" -czf "$cache/$suite.tar.gz.part" . && mv "$cache/$suite.tar.gz.part" "$cache/$suite.tar.gz"
		rm -rf --one-file-system "$tmp" "$tmp.log"
	) 9>"$cache/$suite.lock" || return 1
	tar -C "$root" -xzf "$cache/$suite.tar.gz"
	chmod 755 "$root" # it becomes /, which every user must enter
	printf '127.0.0.1\tlocalhost\n::1\tlocalhost\n' >"$root/etc/hosts"
	printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
	chmod 755 "$root/usr/sbin/policy-rc.d"
	# the mirror may be a snapshot, whose sid Release file has expired
	echo 'Acquire::Check-Valid-Until "false";' >"$root/etc/apt/apt.conf.d/99idle-guard"
	if [ "$suite" = sid ]; then
		printf 'deb %s sid main\n' "$mirror"
	else
		printf 'deb %s %s main\ndeb %s %s-updates main\ndeb %s %s-security main\n' "$mirror" "$suite" \
			"$mirror" "$suite" "${security:-http://deb.debian.org/debian-security}" "$suite"
	fi >"$root/etc/apt/sources.list"
}

# ig_default_version [FILE]: default_version of the control file FILE (or
# of the one on stdin), e.g. 1.5.
ig_default_version() { sed -n "s/^default_version = '\(.*\)'/\1/p" "$@"; }

# ig_meta_version [FILE]: the version of a META.json (or standard input),
# the release's X.Y.Z: X.Y is the control file's default_version (the SQL
# API), Z the patch level.
ig_meta_version() { sed -n 's/^ \{1,3\}"version": *"\([^"]*\)".*/\1/p' "$@" | head -n 1; }

# ig_release_version DIR: the release version of the tree in DIR: its
# META.json's, or for a tree without one (1.4 and older) default_version
# with patch level 0.  Dies unless it is default_version with a patch level.
ig_release_version() {
	local sql version
	sql=$(ig_default_version "$1/idle_guard.control")
	if [ -f "$1/META.json" ]; then
		version=$(ig_meta_version "$1/META.json")
	else
		version=$sql.0
	fi
	[[ "$version" =~ ^${sql//./\\.}\.[0-9]+$ ]] ||
		ig_die "META.json's version ${version:-(none)} is not default_version ${sql:-(none)} with a patch level"
	printf '%s\n' "$version"
}

# ig_installed_package: the one installed postgresql-NN-idle-guard, or fail.
ig_installed_package() {
	local pkgs
	pkgs=$(dpkg-query -W -f '${db:Status-Status} ${Package}\n' 'postgresql-*-idle-guard' 2>/dev/null |
		awk '$1 == "installed" {print $2}')
	[ -n "$pkgs" ] && [ "$(printf '%s\n' "$pkgs" | wc -l)" -eq 1 ] && printf '%s\n' "$pkgs"
}

# ig_package_major PACKAGE: NN of postgresql-NN-idle-guard.
ig_package_major() { local m=${1#postgresql-}; printf '%s\n' "${m%%-*}"; }

# ig_has_packages ROOT PKG...: true when every PKG is installed in the
# system at ROOT ("" for this one).
ig_has_packages() {
	local root=$1 n
	shift
	n=$(dpkg-query --admindir="$root/var/lib/dpkg" -W -f '${db:Status-Status}\n' "$@" 2>/dev/null | grep -cx installed || true)
	[ "$n" -eq "$#" ]
}
