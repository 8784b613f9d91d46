# Makefile for idle_guard (PGXS)
#
# Build and install:   make && make install
# Run every test:      make installcheck  (starts its own temporary servers;
#                      make -k runs every suite even if one fails; the server
#                      refuses to run as root: bash scripts/test.sh does it all)
# Static analysis:     make lint          (cppcheck, clang-tidy, pgindent,
#                      shellcheck, the file map, TAP warnings; -k runs all)
# Reindent:            make indent        (pgindent, PostgreSQL's layout)
# Sanitizers:          make sanitize      (test/sanitize.sh, PostgreSQL 18)
# Soak:                make soak [DURATION=SECONDS]   (test/soak/soak.sh)
# PGXN release:        make dist          (idle_guard-VERSION.zip of HEAD)

MODULE_big = idle_guard
OBJS = \
	src/policy.o \
	src/shmem.o \
	src/history.o \
	src/persist.o \
	src/settings.o \
	src/exempt.o \
	src/session_policy.o \
	src/keepalive.o \
	src/names.o \
	src/backends.o \
	src/prepared.o \
	src/gid.o \
	src/observe.o \
	src/replay.o \
	src/link.o \
	src/locks.o \
	src/pipeline.o \
	src/record.o \
	src/client_message.o \
	src/action.o \
	src/worker.o \
	src/gid_worker.o \
	src/report.o \
	src/idle_guard.o

EXTENSION = idle_guard
DATA = idle_guard--1.0.sql idle_guard--1.0--1.1.sql idle_guard--1.1--1.2.sql \
	idle_guard--1.2--1.3.sql idle_guard--1.3--1.4.sql \
	idle_guard--1.4--1.5.sql
PGFILEDESC = "idle_guard - end silent transactions that hold locks"

# The SQL API's version: the control file's default_version
IDLE_GUARD_VERSION := $(shell sed -n "s/^default_version = '\(.*\)'/\1/p" \
	$(dir $(lastword $(MAKEFILE_LIST)))idle_guard.control)
# The release, X.Y.Z: META.json's version (X.Y is default_version)
IDLE_GUARD_RELEASE := $(shell sed -n 's/^ \{1,3\}"version": *"\([^"]*\)".*/\1/p' \
	$(dir $(lastword $(MAKEFILE_LIST)))META.json | head -n 1)
PG_CPPFLAGS = -I$(srcdir)/src -DIDLE_GUARD_VERSION='"$(IDLE_GUARD_VERSION)"'
PG_CFLAGS = -Wall -Wextra -Wno-unused-parameter -Wno-sign-compare \
	-Wno-missing-field-initializers

# The regression suite runs against a temporary server with idle_guard
# preloaded (test/preload.conf).  Not "tmp_check": the TAP step deletes
# that directory.  IG_REGRESS_SERVER=running: against the server PGHOST and
# PGPORT name instead, which must preload idle_guard with those settings
# (pg_buildext installcheck in the package's autopkgtest, debian/tests).
REGRESS = setup gucs report privileges upgrade
IG_REGRESS_SERVER ?= temporary
ifeq ($(IG_REGRESS_SERVER),temporary)
REGRESS_OPTS = --temp-instance=./tmp_regress \
	--temp-config=$(srcdir)/test/preload.conf
else ifneq ($(IG_REGRESS_SERVER),running)
$(error IG_REGRESS_SERVER is "temporary" or "running", not "$(IG_REGRESS_SERVER)")
endif
TAP_TESTS = 1
# installcheck is defined below, one target per suite, so that make -k
# runs the TAP files even when a pg_regress suite fails.
NO_INSTALLCHECK = 1

EXTRA_CLEAN = tmp_regress tmp_nopreload output_nopreload test/policy_test

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# Every object depends on the shared headers (PGXS tracks them only when
# the server was configured with --enable-depend).
$(OBJS): $(wildcard $(srcdir)/src/*.h)

# Every suite: a second regression run against a server that does not
# preload the library (CREATE EXTENSION works, every function explains what
# is missing), the unit test, the main regression run, the TAP files; with
# IG_REGRESS_SERVER=running, the main regression run only.
.PHONY: installcheck-nopreload unittest installcheck-regress installcheck-tap
ifeq ($(IG_REGRESS_SERVER),temporary)
installcheck: installcheck-nopreload unittest installcheck-regress installcheck-tap
else
installcheck: installcheck-regress
endif

installcheck-nopreload:
	$(pg_regress_installcheck) --temp-instance=./tmp_nopreload \
		--outputdir=./output_nopreload nopreload

# The policy decision is a pure function: test it alone, table-driven,
# without a server.
test/policy_test: test/policy_test.c src/policy.c src/policy.h src/reasons.h src/rules.h
	$(CC) $(CPPFLAGS) $(CFLAGS) $(PG_CPPFLAGS) -I$(includedir_server) \
		-o $@ test/policy_test.c src/policy.c -L$(pkglibdir) -L$(libdir) -lpgport -lm

unittest: test/policy_test
	./test/policy_test

installcheck-regress: submake $(REGRESS_PREP)
	$(pg_regress_installcheck) $(REGRESS_OPTS) $(REGRESS)

installcheck-tap: submake
	$(prove_installcheck)

# Static analysis of src/; any finding fails.  cppcheck: real warnings, no
# style nits.  clang-tidy: the static analyzer and bug-prone patterns, less
# the checks that fire on PostgreSQL's own macros and idioms (implicit
# widening in ALLOCSET_DEFAULT_SIZES, reserved _PG_init, macro argument
# style, deliberately similar branches and parameter lists).
TIDY_CHECKS = -*,clang-analyzer-*,bugprone-*,-bugprone-easily-swappable-parameters,$\
	-bugprone-reserved-identifier,-bugprone-macro-parentheses,$\
	-bugprone-narrowing-conversions,-bugprone-branch-clone,$\
	-bugprone-assignment-in-if-condition,$\
	-bugprone-implicit-widening-of-multiplication-result,$\
	-clang-analyzer-security.insecureAPI.*
.PHONY: lint lint-cppcheck lint-clang-tidy lint-indent lint-shell lint-layers \
	lint-tap indent sanitize soak dist
lint: lint-cppcheck lint-clang-tidy lint-indent lint-shell lint-layers lint-tap

lint-cppcheck:
	cppcheck --quiet --error-exitcode=1 --enable=warning,performance,portability \
		--inline-suppr --std=c99 --suppress=missingIncludeSystem \
		-I src -I $(includedir_server) -D__GNUC__ src/*.c

# (clang counts the warnings it hides in PostgreSQL's headers: not shown)
lint-clang-tidy: SHELL = /bin/bash
lint-clang-tidy: .SHELLFLAGS = -o pipefail -c
lint-clang-tidy:
	clang-tidy --quiet --warnings-as-errors='*' -checks='$(TIDY_CHECKS)' src/*.c -- \
		-I src -I $(includedir_server) -I $(dir $(includedir_server))internal \
		-D_GNU_SOURCE -DIDLE_GUARD_VERSION='"$(IDLE_GUARD_VERSION)"' 2>&1 | \
		{ grep -v '^[0-9]* warnings\? generated\.$$' || true; }

# pgindent, PostgreSQL's own layout, with a typedefs list read from the
# sources (test/pgindent.sh builds the tools from the 16.2 source tarball):
# lint-indent shows what it would change and fails; indent applies it.
lint-indent:
	bash $(srcdir)/test/pgindent.sh --check

indent:
	bash $(srcdir)/test/pgindent.sh

# Every shell script, with the checks shellcheck enables by default
SHELL_SCRIPTS = $(wildcard $(srcdir)/scripts/*.sh $(srcdir)/test/*.sh \
	$(srcdir)/test/soak/*.sh) $(srcdir)/.ci/run \
	$(srcdir)/debian/tests/installcheck $(srcdir)/debian/tests/tap
lint-shell:
	shellcheck -x -P SCRIPTDIR -P $(srcdir) $(SHELL_SCRIPTS)

# src/ against the file map of docs/design.md: layers, includes, calls,
# no cycle (needs the objects)
lint-layers: all
	perl $(srcdir)/test/layers.pl $(srcdir)/docs/design.md $(srcdir)/src

# Every TAP file and module turns warnings into failures
lint-tap:
	@missing=$$(grep -L "^use warnings FATAL => 'all';" $(srcdir)/t/*.pl $(srcdir)/t/*.pm); \
	if [ -n "$$missing" ]; then \
		echo "without use warnings FATAL => 'all': $$missing"; exit 1; \
	fi

# The suite again, idle_guard built with ASan and UBSan, against the
# assert-enabled PostgreSQL 18 of scripts/pg.sh --assert 18; any report fails.
sanitize:
	bash test/sanitize.sh

# Many concurrent clients against a throwaway server, judged by an oracle
# (120 clients, 5 minutes unless DURATION=SECONDS).
soak:
	bash test/soak/soak.sh $(if $(DURATION),--duration $(DURATION))

# The PGXN release: the committed tree at HEAD, from git archive, as
# idle_guard-X.Y.Z.zip (META.json's version: the control file's X.Y, with a
# patch level).  test/dist_test.sh checks META.json and that the zip builds
# and installs with PGXS alone.
DIST = idle_guard-$(IDLE_GUARD_RELEASE)
dist:
	git -C $(srcdir) archive --format zip --prefix $(DIST)/ -o $(abspath $(DIST).zip) HEAD
