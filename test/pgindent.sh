#!/usr/bin/env bash
#
# test/pgindent.sh -- run PostgreSQL's pgindent over the C sources.
#
# Usage: bash test/pgindent.sh [--check]
#
#   (no option)  reindent src/*.[ch] and test/*.c in place ("make indent")
#   --check      change nothing; show what pgindent would change and fail
#                if anything ("make lint-indent", part of "make lint")
#
# pgindent and pg_bsd_indent come from PostgreSQL's own source, the 16.2
# release tarball (IG_PG16_TARBALL, by default ../shared/pg-src beside the
# clone, checked against its SHA256SUMS), built once into
# IG_PG_CACHE/tools (default /var/cache/idle_guard).  pg_bsd_indent is
# compiled against the server headers and libpgport of PG_CONFIG (default
# the first pg_config on PATH, else this Debian release's PostgreSQL).
# The typedefs are PostgreSQL's list followed by every typedef the sources
# declare, read from them, so the list cannot be incomplete.

set -euo pipefail

CHECK=0
case "${1:-}" in
--check) CHECK=1 ;;
'') ;;
*) sed -n '5,9p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac

IG_LOG_PREFIX="pgindent"
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"
REPO=$(ig_repo_root)
TARBALL=${IG_PG16_TARBALL:-$REPO/../shared/pg-src/postgresql-16.2.tar.gz}
TOOLS=${IG_PG_CACHE:-/var/cache/idle_guard}/tools/pgindent-16.2
PG_CONFIG=${PG_CONFIG:-$(command -v pg_config || ig_pg_config)}

# Build the tools once
if [ ! -x "$TOOLS/pg_bsd_indent" ] || [ ! -f "$TOOLS/pgindent" ]; then
	[ -f "$TARBALL" ] || ig_die "no PostgreSQL 16.2 source tarball at $TARBALL (set IG_PG16_TARBALL)"
	sums=$(dirname "$TARBALL")/SHA256SUMS
	if [ -f "$sums" ]; then
		(cd "$(dirname "$TARBALL")" && grep " $(basename "$TARBALL")\$" SHA256SUMS | sha256sum -c --quiet -) ||
			ig_die "$TARBALL does not match its SHA256SUMS"
	fi
	ig_say "building pg_bsd_indent and pgindent from $(basename "$TARBALL") into $TOOLS"
	work=$(mktemp -d)
	ig_on_exit rm -rf "$work"
	tar -xzf "$TARBALL" -C "$work" postgresql-16.2/src/tools/pgindent postgresql-16.2/src/tools/pg_bsd_indent
	bsd=$work/postgresql-16.2/src/tools/pg_bsd_indent
	mkdir -p "$TOOLS"
	cc -O2 -w -I"$bsd" -I"$("$PG_CONFIG" --includedir-server)" -o "$TOOLS/pg_bsd_indent.part" \
		"$bsd"/{args,err,indent,io,lexi,parse,pr_comment}.c \
		-L"$("$PG_CONFIG" --pkglibdir)" -L"$("$PG_CONFIG" --libdir)" -lpgcommon -lpgport -lm
	cp "$work/postgresql-16.2/src/tools/pgindent/pgindent" "$TOOLS/pgindent.part"
	cp "$work/postgresql-16.2/src/tools/pgindent/typedefs.list" "$TOOLS/typedefs.list"
	mv "$TOOLS/pg_bsd_indent.part" "$TOOLS/pg_bsd_indent"
	mv "$TOOLS/pgindent.part" "$TOOLS/pgindent"
fi

# PostgreSQL's typedefs, then ours, from the sources
cd "$REPO"
files=(src/*.c src/*.h test/*.c)
typedefs=$(mktemp)
ig_on_exit rm -f "$typedefs"
{
	cat "$TOOLS/typedefs.list"
	perl -0777 -ne '
		print "$1\n" while /typedef\s+(?:struct|enum|union)\s*\w*\s*\{.*?\}\s*(\w+)\s*;/gs;
		print "$1\n" while /typedef\s+[\w\s\*]+\(\s*\*\s*(\w+)\s*\)/g;
	' "${files[@]}" | sort -u
} >"$typedefs"

if [ "$CHECK" -eq 0 ]; then
	perl "$TOOLS/pgindent" --indent="$TOOLS/pg_bsd_indent" --typedefs="$typedefs" "${files[@]}"
	exit 0
fi
diff=$(perl "$TOOLS/pgindent" --indent="$TOOLS/pg_bsd_indent" --typedefs="$typedefs" --show-diff "${files[@]}")
if [ -n "$diff" ]; then
	printf '%s\n' "$diff"
	ig_die "the C sources are not pgindent-clean: run \"make indent\""
fi
ig_say "the C sources are pgindent-clean (${#files[@]} files)"
