#!/usr/bin/env bash
#
# test/dist_test.sh -- the PGXN release: META.json and make dist.
#
# Usage: bash test/dist_test.sh   (in a git clone; PG_CONFIG as for
#                                   scripts/test.sh)
#
# META.json must parse, have the fields the PGXN meta spec 1.0.0 requires,
# and give, as its version and the version of what it provides, the release
# X.Y.Z, whose X.Y is the control file's default_version and whose entry
# tops debian/changelog.  make dist's zip, unpacked in an
# empty directory, must build and install (into a staging directory) with
# PGXS alone: make, make install.

set -euo pipefail
IG_LOG_PREFIX=dist_test
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
# shellcheck source=scripts/lib.sh
. "$HERE/../scripts/lib.sh"
REPO=$(ig_repo_root)

bash "$REPO/scripts/setup.sh" unzip
PG_CONFIG=$(ig_pg_config)
want=$(ig_release_version "$REPO")
deb=$(sed -n '1s/^idle-guard (\([^)]*\)).*/\1/p' "$REPO/debian/changelog")
[ "${deb%-*}" = "$want" ] || ig_die "debian/changelog is at $deb, META.json at $want"

# META.json: JSON::PP is in perl's core
perl -MJSON::PP -e '
	my ($file, $want) = @ARGV;
	open my $fh, "<", $file or die "$file: $!\n";
	my $meta = eval { JSON::PP->new->decode(do { local $/; <$fh> }) }
		or die "$file does not parse: $@";
	my @missing = grep { !defined $meta->{$_} }
		qw(name abstract version maintainer license provides meta-spec);
	die "$file lacks @missing\n" if @missing;
	die "$file: meta-spec $meta->{q(meta-spec)}{version}, not 1.0.0\n"
		unless $meta->{"meta-spec"}{version} eq "1.0.0";
	die "$file: version $meta->{version}, not $want\n"
		unless $meta->{version} eq $want;
	my $p = $meta->{provides}{idle_guard} or die "$file provides no idle_guard\n";
	die "$file: idle_guard is at $p->{version}, the release at $want\n"
		unless $p->{version} eq $want;
	die "$file: $p->{file} does not exist\n" unless -e "$ARGV[2]/$p->{file}";
	die "$file: no PostgreSQL prerequisite\n"
		unless $meta->{prereqs}{runtime}{requires}{PostgreSQL};
	print "dist_test: META.json parses; $meta->{name} $meta->{version}, as the control file and debian/changelog say\n";
' "$REPO/META.json" "$want" "$REPO"

WORK=$(mktemp -d /tmp/idle_guard_dist.XXXXXX)
ig_on_exit rm -rf "$WORK" "$REPO/idle_guard-$want.zip"
make -C "$REPO" --no-print-directory PG_CONFIG="$PG_CONFIG" dist >/dev/null
zip=$REPO/idle_guard-$want.zip
ig_say "make dist: $(basename "$zip"), $(du -k "$zip" | cut -f1) kB, $(unzip -Z1 "$zip" | grep -vc '/$') files"
(cd "$WORK" && unzip -q "$zip")
[ -d "$WORK/idle_guard-$want" ] || ig_die "the zip does not unpack into idle_guard-$want/"
ig_build_install "$WORK/idle_guard-$want" "$PG_CONFIG" "$WORK/build.log" DESTDIR="$WORK/staging" ||
	ig_die "the release does not build and install with PGXS"
for f in "$("$PG_CONFIG" --pkglibdir)/idle_guard.so" \
	"$("$PG_CONFIG" --sharedir)/extension/idle_guard.control" \
	"$("$PG_CONFIG" --sharedir)/extension/idle_guard--1.0.sql"; do
	[ -f "$WORK/staging$f" ] || ig_die "make install put no $f"
done
ig_say "PASS: the release builds and installs with PGXS alone"
