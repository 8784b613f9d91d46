# Copyright (c) 2026, idle_guard developers
#
# Whatever bytes a role name, a database name, an application_name or a
# gid holds, each action is exactly one physical LOG line, and parsing it
# back (ig_parse_log_line) recovers every field, byte for byte:
#	a. a role whose name holds a newline, a tab, a carriage return, quotes,
#	   a backslash, a forged ' db="..."', other control characters (\x01,
#	   \x1b, DEL) and non-ASCII UTF-8 (U+00E9, U+2028) is terminated: its
#	   line spells the name with the documented escapes (\n \t \r \" \\
#	   and \xHH for every other byte) and parses back to its bytes, with
#	   no field but the documented ones (PostgreSQL 19 refuses newlines
#	   and carriage returns in role names: there a vertical tab and a form
#	   feed take their place);
#	b. an application_name with a tab, quotes, a backslash, a forged
#	   ' user="forged"' and non-ASCII: what arrives (PostgreSQL replaces
#	   some of it) is what pg_stat_activity shows, and the parse recovers
#	   exactly that, and the real user;
#	c. a prepared transaction, prepared by that role, whose gid holds a
#	   newline followed by the text of a whole forged action line: no line
#	   of the log starts with the forged text (every line starts with the
#	   log prefix), the gid parses back exactly, the history has it, and
#	   the tail after "; " is the ROLLBACK PREPARED with the gid as a SQL
#	   literal: run as it is, it ends the prepared transaction;
#	c2. an empty gid (valid) is gid="", and '' in the report and history;
#	d. in a SQL_ASCII database, whose own name holds bytes that are not
#	   UTF-8, a quote, a backslash and a tab, a role whose name is not
#	   UTF-8 either: its session is terminated and a gid of raw bytes is
#	   reported, and both lines parse back exactly, the tail naming the
#	   database as a quoted identifier.
# In each case the window of the log holds exactly one idle_guard line per
# action recorded in the history.

use strict;
use warnings FATAL => 'all';

use FindBin;
use lib $FindBin::RealBin;

use IdleGuardTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $blocking_ms = 3000;

# A UTF8 cluster with the C locale, so that a SQL_ASCII database can be
# created in it.  blocking_timeout 3s leaves the gid lookup (usually
# ~100 ms) time to finish before a prepared transaction's deadline.
my $node = ig_node_initdb(
	'log_escaping', [ '--encoding=UTF8', '--locale=C' ],
	max_prepared_transactions => 10,
	'idle_guard.blocking_timeout' => "'${blocking_ms}ms'");

my @session_keys = qw(pid user db app client silent_s locks blocked rule action reason link);
my @prepared_keys = qw(xid gid user db silent_s locks blocked rule action reason);

# A SQL string literal of any bytes that keeps the statement one printable
# line (log_statement = all logs it): E'...' with \xHH for every byte that
# is not printable ASCII, and for ' and \.
sub lit
{
	my ($bytes) = @_;
	(my $s = $bytes) =~ s/([^\x20-\x7e]|['\\])/sprintf('\\x%02x', ord $1)/ge;
	return "E'$s'";
}

# The bytes of a text value: $expr is read as hex, in database $db
# (postgres by default).
sub bytes_of
{
	my ($expr, $db) = @_;
	return pack('H*', $node->safe_psql($db // 'postgres',
		"SELECT encode(textsend(($expr)::text), 'hex')"));
}

sub hex_of { return unpack('H*', $_[0] // ''); }

# idle_guard's lines in the log after $offset: every line holding
# "idle_guard: " but the statements the test sent.
sub action_lines
{
	my ($offset) = @_;
	return grep { !/ LOG:  statement: / }
	  ig_log_lines($node, $offset, qr/idle_guard: /);
}

# How many history rows were added since history count $before.
sub history_since
{
	my ($before) = @_;
	return ig_value($node, 'SELECT count(*) FROM idle_guard_history()') - $before;
}

# Every physical line after $offset starts with the log prefix
# ('%m [%p] %q%a '): none is the continuation of a value.
sub all_lines_prefixed
{
	my ($offset, $what) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my @bad = grep { !/^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} \S+ \[\d+\] / }
	  ig_log_lines($node, $offset, qr/^/);
	is(scalar @bad, 0, $what) or diag explain \@bad;
}

# Check one session's terminate line: the fields, in their order, and the
# user, database and application, byte for byte.
sub check_session_line
{
	my ($line, $pid, $user, $db, $app, $label) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my $f = ig_parse_log_line($line);
	ok($f, "$label: the line parses") or diag explain $line;
	$f //= {};
	is($f->{_what}, 'terminating silent session', "$label: what it says");
	is_deeply($f->{_keys}, \@session_keys, "$label: exactly the documented keys, in order");
	is($f->{pid}, $pid, "$label: pid");
	is(hex_of($f->{user}), hex_of($user), "$label: user parses back to its bytes");
	is(hex_of($f->{db}), hex_of($db), "$label: db parses back to its bytes");
	is(hex_of($f->{app}), hex_of($app), "$label: app parses back to its bytes");
	is("$f->{client} $f->{rule} $f->{action}|$f->{reason}",
		'local blocking terminate|idle in transaction',
		"$label: client, rule, action, reason");
	ok(!exists $f->{_tail}, "$label: no tail");
	return $f;
}

# Check one prepared transaction's report line.
sub check_prepared_line
{
	my ($line, $xid, $gid, $user, $db, $tail, $label) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my $f = ig_parse_log_line($line);
	ok($f, "$label: the line parses") or diag explain $line;
	$f //= {};
	is($f->{_what}, 'prepared transaction holds locks', "$label: what it says");
	is_deeply($f->{_keys}, \@prepared_keys, "$label: exactly the documented keys, in order");
	is($f->{xid}, $xid, "$label: xid");
	is(hex_of($f->{gid}), hex_of($gid), "$label: gid parses back to its bytes");
	is(hex_of($f->{user}), hex_of($user), "$label: user parses back to its bytes");
	is(hex_of($f->{db}), hex_of($db), "$label: db parses back to its bytes");
	is("$f->{rule} $f->{action}|$f->{reason}", 'blocking report|prepared',
		"$label: rule, action, reason");
	is(hex_of($f->{_tail}), hex_of($tail),
		"$label: the tail parses back to the ROLLBACK PREPARED that ends it");
	return $f;
}

$node->safe_psql('postgres',
	'CREATE TABLE t (id int PRIMARY KEY, v int); INSERT INTO t VALUES (1, 0), (2, 0);');
is(ig_value($node, 'SELECT getdatabaseencoding()'), 'UTF8', 'database postgres is UTF8');

#
# a. A role with every kind of byte in its name.
#
# PostgreSQL 19 refuses newlines and carriage returns in role names: there
# a vertical tab and a form feed stand in for them (gids still carry
# newlines, in c and d).
my $nl_ok = ig_value($node, 'SHOW server_version_num') < 190000;
my ($NL, $CR, $NL_E, $CR_E) =
  $nl_ok ? ("\n", "\r", '\n', '\r') : ("\x0b", "\x0c", '\x0b', '\x0c');
my $role = "ig$NL\t\"q\" db=\"x\\ \xc3\xa9\xe2\x80\xa8\x01\x1b\x7f$CR.";
# The same, escaped as the LOG line must spell it, written out by hand.
my $role_escaped =
  'ig' . $NL_E . '\t\"q\" db=\"x\\\\ \xc3\xa9\xe2\x80\xa8\x01\x1b\x7f' . $CR_E . '.';
$node->safe_psql('postgres',
	'DO $$BEGIN '
	  . 'EXECUTE format(\'CREATE ROLE %I LOGIN\', ' . lit($role) . '); '
	  . 'EXECUTE format(\'GRANT SELECT, UPDATE ON t TO %I\', ' . lit($role) . '); '
	  . 'END$$');
is(hex_of(bytes_of('SELECT rolname FROM pg_roles WHERE rolname = ' . lit($role))),
	hex_of($role), 'a: the role exists with exactly those bytes');

my $offset = -s $node->logfile;
my $hist = ig_value($node, 'SELECT count(*) FROM idle_guard_history()');
my ($a_s, $a_pid) = ig_silent_session($node, 'role_case',
	'BEGIN; UPDATE t SET v = v + 1 WHERE id = 1;', user => $role);
is(hex_of(bytes_of("SELECT usename FROM pg_stat_activity WHERE pid = $a_pid")),
	hex_of($role), 'a: the session is logged in as that role');
# (on a loaded machine the waiter may come after the holder's deadline, and
# the holder be ended before the waiter is seen waiting: no failure here)
my ($a_w) = ig_waiting_session($node, 'w_role', 'UPDATE t SET v = 10 WHERE id = 1;',
	blocker => $a_pid);
ig_wait_gone($node, $a_pid, 'a: the session is terminated');
$node->wait_for_log(qr/idle_guard: terminating silent session pid=$a_pid /, $offset);

my @lines = action_lines($offset);
is(scalar @lines, 1, 'a: one idle_guard line');
is(history_since($hist), 1, 'a: one action in the history');
ok(index($lines[0] // '', " user=\"$role_escaped\" db=\"postgres\" ") >= 0,
	'a: the line spells the role name with the documented escapes')
  or diag explain \@lines;
check_session_line($lines[0] // '', $a_pid, $role, 'postgres', 'role_case', 'a');
is(hex_of(bytes_of("SELECT usename FROM idle_guard_history() WHERE pid = $a_pid")),
	hex_of($role), 'a: the history names the role with the same bytes');
all_lines_prefixed($offset, 'a: every log line starts with the log prefix');
ig_close($a_s);
$a_w->quit;

#
# b. An application_name with quotes, a backslash, control characters and
# non-ASCII.  PostgreSQL replaces what is not printable ASCII (15: by '?';
# 16 and later: by \xHH text); the LOG line carries what pg_stat_activity
# shows.
#
my $app = "app\t\"x\" user=\"forged\" \\ \xc3\xa9 end";
$offset = -s $node->logfile;
$hist = ig_value($node, 'SELECT count(*) FROM idle_guard_history()');
my ($b_s, $b_pid) = ig_silent_session($node, 'plain',
	"SELECT set_config('application_name', " . lit($app) . ', false); '
	  . 'BEGIN; UPDATE t SET v = v + 1 WHERE id = 1;');
my $b_app = bytes_of("SELECT application_name FROM pg_stat_activity WHERE pid = $b_pid");
ok(index($b_app, "\"x\" user=\"forged\" \\ ") >= 0,
	'b: quotes and backslash arrive as they are')
  or diag explain hex_of($b_app);
unlike($b_app, qr/[^\x20-\x7e]/, 'b: what arrives is printable ASCII');
my ($b_w) = ig_waiting_session($node, 'w_app', 'UPDATE t SET v = 10 WHERE id = 1;',
	blocker => $b_pid);
ig_wait_gone($node, $b_pid, 'b: the session is terminated');
$node->wait_for_log(qr/idle_guard: terminating silent session pid=$b_pid /, $offset);

@lines = action_lines($offset);
is(scalar @lines, 1, 'b: one idle_guard line');
is(history_since($hist), 1, 'b: one action in the history');
ok(index($lines[0] // '', '\"x\" user=\"forged\" \\\\ ') >= 0,
	'b: the line escapes the quotes and the backslash')
  or diag explain \@lines;
my $f = check_session_line($lines[0] // '', $b_pid, 'postgres', 'postgres', $b_app, 'b');
all_lines_prefixed($offset, 'b: every log line starts with the log prefix');
ig_close($b_s);
$b_w->quit;

#
# c. A gid that forges a whole line after a newline, prepared by the role
# of a.
#
my $forged = 'LOG:  idle_guard: terminating silent session pid=1 user="forged"';
my $gid = "x\n$forged db=\"postgres\" it's \\ \t\xc3\xa9";
$offset = -s $node->logfile;
$hist = ig_value($node, 'SELECT count(*) FROM idle_guard_history()');
$node->safe_psql('postgres',
	'BEGIN; UPDATE t SET v = v + 1 WHERE id = 2; PREPARE TRANSACTION ' . lit($gid) . ';',
	extra_params => [ '-U', $role ]);
my $xid = ig_value($node, 'SELECT transaction FROM pg_prepared_xacts WHERE gid = ' . lit($gid));
ok($xid, 'c: the transaction is prepared with that gid');
my ($c_w, $c_w_pid) = ig_waiting_session($node, 'w_prepared',
	'UPDATE t SET v = 10 WHERE id = 2;');
ig_wait_for($node,
	'SELECT count(*) = 1 FROM idle_guard_history() WHERE gid = ' . lit($gid),
	't', 'c: reported in the history, with its gid');
$node->wait_for_log(qr/idle_guard: prepared transaction holds locks xid=$xid /, $offset);

@lines = action_lines($offset);
is(scalar @lines, 1, 'c: one idle_guard line');
is(history_since($hist), 1, 'c: one action in the history');
my $c_tail = 'ROLLBACK PREPARED '
  . bytes_of('SELECT quote_literal(' . lit($gid) . ')')
  . ' in database postgres would end it';
$f = check_prepared_line($lines[0] // '', $xid, $gid, $role, 'postgres', $c_tail, 'c');
is(hex_of(bytes_of('SELECT usename FROM idle_guard_history() WHERE gid = ' . lit($gid))),
	hex_of($role), 'c: the history names the owner with the same bytes');

# No line begins with the forged text, after the log prefix or without
# one: in each line, the first "LOG:  " is not followed by it.
my @forged = grep {
	/LOG:  (.*)/ && index($1, 'idle_guard: terminating silent session pid=1 ') == 0
} ig_log_lines($node, $offset, qr/^/);
is(scalar @forged, 0, 'c: no line starts with the forged action') or diag explain \@forged;
is(scalar(grep { index($_, $forged) == 0 } ig_log_lines($node, $offset, qr/^/)),
	0, 'c: no line is the forged text alone');
all_lines_prefixed($offset, 'c: every log line starts with the log prefix');

# The statement of the tail, run as it is, ends the prepared transaction.
# (log_statement logs it over two lines: the newline is in the gid.)
my ($rollback) =
  ($f->{_tail} // '') =~ /\A(ROLLBACK PREPARED .*) in database postgres would end it\z/s;
ok(defined $rollback, 'c: the tail holds a ROLLBACK PREPARED statement');
$node->safe_psql('postgres', $rollback // 'SELECT 1');
is(ig_value($node, 'SELECT count(*) FROM pg_prepared_xacts'), '0',
	'c: that statement ended the prepared transaction');
# (If it did not, end it so that the rest can run.)
ig_value($node, 'ROLLBACK PREPARED ' . lit($gid))
  if ig_value($node, 'SELECT count(*) FROM pg_prepared_xacts') ne '0';
ig_wait_unblocked($node, $c_w_pid, 'c: the waiter proceeds');
$c_w->quit;

#
# c2. An empty gid is a gid: PREPARE TRANSACTION '' is valid.  It is named
# gid="" (not left out as unknown), the tail says how to end it, and the
# history and the report show '' (not NULL).
#
$offset = -s $node->logfile;
$hist = ig_value($node, 'SELECT count(*) FROM idle_guard_history()');
$node->safe_psql('postgres',
	"BEGIN; UPDATE t SET v = v + 1 WHERE id = 2; PREPARE TRANSACTION '';");
$xid = ig_value($node, "SELECT transaction FROM pg_prepared_xacts WHERE gid = ''");
ok($xid, 'c2: the transaction is prepared with an empty gid');
my ($c2_w, $c2_w_pid) = ig_waiting_session($node, 'w_empty_gid',
	'UPDATE t SET v = 10 WHERE id = 2;');
is(ig_value($node, "SELECT gid IS NOT NULL AND gid = '' FROM idle_guard_report() WHERE pid IS NULL"),
	't', "c2: the report shows the gid ''");
ig_wait_for($node,
	"SELECT count(*) = 1 FROM idle_guard_history() WHERE gid = ''",
	't', "c2: reported in the history with the gid ''");
$node->wait_for_log(qr/idle_guard: prepared transaction holds locks xid=$xid /, $offset);
@lines = action_lines($offset);
is(scalar @lines, 1, 'c2: one idle_guard line');
is(history_since($hist), 1, 'c2: one action in the history');
check_prepared_line($lines[0] // '', $xid, '', 'postgres', 'postgres',
	"ROLLBACK PREPARED '' in database postgres would end it", 'c2');
ig_value($node, "ROLLBACK PREPARED ''");
ig_wait_unblocked($node, $c2_w_pid, 'c2: the waiter proceeds');
$c2_w->quit;

#
# d. Bytes that are not UTF-8, in a SQL_ASCII database.
#
$node->safe_psql('postgres',
	"CREATE DATABASE ig_raw ENCODING 'SQL_ASCII' TEMPLATE template0 LOCALE 'C'");
my $raw_db = "raw\xff\"db\\\t\x80";
(my $raw_db_ident = $raw_db) =~ s/"/""/g;
$node->safe_psql('ig_raw',
	qq{CREATE DATABASE "$raw_db_ident" ENCODING 'SQL_ASCII' TEMPLATE template0 LOCALE 'C'});
is(hex_of(bytes_of('SELECT datname FROM pg_database WHERE datname::text NOT IN '
	  . "('postgres', 'template0', 'template1', 'ig_raw')")),
	hex_of($raw_db), 'd: the database exists with exactly those bytes');

my $raw_role = "raw$NL\xff\xfe\x80\xc3(\"r\\";
my $raw_gid = "g\xfe'\\\n\"end\xc3";
$node->safe_psql($raw_db,
	'CREATE TABLE t2 (id int PRIMARY KEY, v int); INSERT INTO t2 VALUES (1, 0), (2, 0); '
	  . 'DO $$BEGIN '
	  . 'EXECUTE format(\'CREATE ROLE %I LOGIN\', ' . lit($raw_role) . '); '
	  . 'EXECUTE format(\'GRANT SELECT, UPDATE ON t2 TO %I\', ' . lit($raw_role) . '); '
	  . 'END$$');
is(hex_of(bytes_of("SELECT rolname FROM pg_roles WHERE encode(textsend(rolname::text), 'hex') = '"
	  . hex_of($raw_role) . "'")),
	hex_of($raw_role), 'd: the role exists with exactly those bytes');

$offset = -s $node->logfile;
$hist = ig_value($node, 'SELECT count(*) FROM idle_guard_history()');
my ($d_s, $d_pid) = ig_silent_session($node, 'raw_case',
	'BEGIN; UPDATE t2 SET v = v + 1 WHERE id = 1;',
	user => $raw_role, dbname => $raw_db);
$node->safe_psql($raw_db,
	'BEGIN; UPDATE t2 SET v = v + 1 WHERE id = 2; PREPARE TRANSACTION ' . lit($raw_gid) . ';',
	extra_params => [ '-U', $raw_role ]);
my $d_xid = $node->safe_psql($raw_db,
	'SELECT transaction FROM pg_prepared_xacts WHERE gid = ' . lit($raw_gid));
ok($d_xid, 'd: the transaction is prepared with that gid');
my ($d_w1) = ig_waiting_session($node, 'w_raw1', 'UPDATE t2 SET v = 10 WHERE id = 1;',
	dbname => $raw_db, blocker => $d_pid);
my ($d_w2, $d_w2_pid) = ig_waiting_session($node, 'w_raw2',
	'UPDATE t2 SET v = 10 WHERE id = 2;', dbname => $raw_db);
ig_wait_gone($node, $d_pid, 'd: the session is terminated');
ig_wait_for($node,
	"SELECT count(*) = 1 FROM idle_guard_history() "
	  . "WHERE encode(textsend(gid), 'hex') = '" . hex_of($raw_gid) . "'",
	't', 'd: the prepared transaction is reported in the history, with its gid');
$node->wait_for_log(qr/idle_guard: terminating silent session pid=$d_pid /, $offset);
$node->wait_for_log(qr/idle_guard: prepared transaction holds locks xid=$d_xid /, $offset);

@lines = action_lines($offset);
is(scalar @lines, 2, 'd: two idle_guard lines');
is(history_since($hist), 2, 'd: two actions in the history');
my ($d_line) = grep { / pid=$d_pid / } @lines;
my ($p_line) = grep { / xid=$d_xid / } @lines;
check_session_line($d_line // '', $d_pid, $raw_role, $raw_db, 'raw_case', 'd session');
my $d_tail = 'ROLLBACK PREPARED '
  . bytes_of('SELECT quote_literal(' . lit($raw_gid) . ')', $raw_db)
  . ' in database '
  . bytes_of("SELECT quote_ident(datname::text) FROM pg_database "
	  . "WHERE encode(textsend(datname::text), 'hex') = '" . hex_of($raw_db) . "'")
  . ' would end it';
like($d_tail, qr/ in database "raw/, 'd: (the database is named by a quoted identifier)');
check_prepared_line($p_line // '', $d_xid, $raw_gid, $raw_role, $raw_db, $d_tail, 'd prepared');
all_lines_prefixed($offset, 'd: every log line starts with the log prefix');

$node->safe_psql($raw_db, 'ROLLBACK PREPARED ' . lit($raw_gid));
ig_wait_unblocked($node, $d_w2_pid, 'd: the waiter on the prepared transaction proceeds');
ig_close($d_s);
$d_w1->quit;
$d_w2->quit;

$node->stop;
done_testing();
