# Copyright (c) 2026, idle_guard developers
#
# The postmortem record of each action (extension 1.2), and history that
# survives a restart:
#  - a row-lock case and a lock-queue case: the record names the silent
#    session's last query, the locks it held (relation names resolved),
#    every waiter with its query, requested mode, wait time and whether it
#    waited directly, and the policy that applied;
#  - the record hides queries and applications from a caller who may not
#    see those sessions;
#  - history and counters survive pg_ctl restart; a corrupt state file is
#    ignored with a LOG line;
#  - idle_guard_reset() clears them, and is refused to a plain user.

use strict;
use warnings FATAL => 'all';

use FindBin;
use lib $FindBin::RealBin;

use IdleGuardTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = ig_node('history');
$node->safe_psql('postgres', q{
	CREATE TABLE accounts (id int PRIMARY KEY, balance int);
	INSERT INTO accounts VALUES (1, 100), (2, 100);
	CREATE TABLE t (a int);
	CREATE ROLE reader LOGIN;
	GRANT EXECUTE ON FUNCTION idle_guard_history() TO reader;
});

# A value of the latest record of a pid, by JSON path
sub rec
{
	my ($pid, $path) = @_;
	return $node->safe_psql('postgres',
		"SELECT record #>> '$path' FROM idle_guard_history() "
		  . "WHERE pid = $pid ORDER BY at DESC LIMIT 1");
}

#
# Row lock: one writer waits on the silent session's xid.
#
# The premise, by the server's clock: the writer waits, and the holder's
# last query is read, before its deadline; on a loaded machine that
# misses it, the scene is set up again.
my $scene = ig_setup_in_time(
	$node,
	'row lock: the writer waits before the deadline',
	sub {
		my ($holder, $hpid) = ig_silent_session($node, 'billing',
			'BEGIN; UPDATE accounts SET balance = balance - 10 WHERE id = 1;');
		my $since = ig_silent_since($node, $hpid);
		my ($writer, $wpid) = ig_waiting_session($node, 'checkout',
			'UPDATE accounts SET balance = balance + 1 WHERE id = 1;', blocker => $hpid);
		# the last query as pg_stat_activity shows it (the test's psql sends
		# a separator after each command, so it is not the UPDATE)
		my $last_query = $node->safe_psql('postgres',
			"SELECT query FROM pg_stat_activity WHERE pid = $hpid");
		return {
			ok => ig_before_deadline($node, $since, 2000),
			holder => $holder, hpid => $hpid, writer => $writer, wpid => $wpid,
			last_query => $last_query,
			end => [ $wpid, $hpid ], sessions => [ $writer, $holder ] };
	});
my ($holder, $hpid, $writer, $wpid, $last_query) =
  @$scene{qw(holder hpid writer wpid last_query)};
ig_wait_gone($node, $hpid, 'row-lock holder terminated');

is(rec($hpid, '{query}'), $last_query,
	'record: the last query of the silent session, as pg_stat_activity showed it');
isnt(rec($hpid, '{xact_start}'), '', 'record: xact_start');
is($node->safe_psql('postgres',
		"SELECT (record->>'silent_since')::timestamptz + silent_for = at "
		  . "FROM idle_guard_history() WHERE pid = $hpid"),
	't', 'record: silent_since plus silent_for is the time of the action');
is($node->safe_psql('postgres',
		"SELECT string_agg(l->>'relation_name' || ':' || (l->'modes'->>0), ',' "
		  . "ORDER BY l->>'relation_name') "
		  . "FROM idle_guard_history() h, jsonb_array_elements(h.record->'locks') l "
		  . "WHERE pid = $hpid"),
	'accounts:RowExclusiveLock,accounts_pkey:RowExclusiveLock',
	'record: the locks held, with relation names');
is(rec($hpid, '{waiters,0,pid}'), $wpid, 'record: the waiter');
is(rec($hpid, '{waiters,0,application_name}'), 'checkout', 'record: its application');
is(rec($hpid, '{waiters,0,query}'),
	'UPDATE accounts SET balance = balance + 1 WHERE id = 1;',
	'record: its query');
is(rec($hpid, '{waiters,0,locktype}') . '/' . rec($hpid, '{waiters,0,mode_requested}'),
	'transactionid/ShareLock', 'record: what it waited for');
is(rec($hpid, '{waiters,0,direct}'), 'true', 'record: it waited directly');
cmp_ok(rec($hpid, '{waiters,0,waited_s}'), '>', 0, 'record: how long it had waited');
cmp_ok(rec($hpid, '{waiters,0,waited_s}'), '<', 10, 'record: ... plausibly');
is(rec($hpid, '{policy,action}') . '/' . rec($hpid, '{policy,blocking_timeout_ms}')
	  . '/' . rec($hpid, '{policy,source}'),
	'terminate/2000/default', 'record: the policy that applied');
$writer->query_safe('SELECT 1');
ig_close($holder);

#
# Lock queue: the ALTER waits directly, the SELECT behind it through the
# queue.
#
# The premise: both wait before the queue head's deadline (each attempt
# adds a column of its own: an earlier one's ALTER may have gone through).
$scene = ig_setup_in_time(
	$node,
	'lock queue: both wait before the deadline',
	sub {
		my ($attempt) = @_;
		my $actions = $node->safe_psql('postgres', 'SELECT count(*) FROM idle_guard_history()');
		my ($s1, $s1pid) = ig_silent_session($node, 'reporting', 'BEGIN; SELECT * FROM t;');
		my $since = ig_silent_since($node, $s1pid);
		my ($s2, $s2pid) = ig_waiting_session($node, 'migration',
			"ALTER TABLE t ADD COLUMN b$attempt int;", blocker => $s1pid);
		my ($s3, $s3pid) = ig_waiting_session($node, 'dashboard', 'SELECT count(*) FROM t;',
			blocker => $s1pid);
		return {
			ok => ig_before_deadline($node, $since, 2000),
			actions => $actions,
			s1 => $s1, s1pid => $s1pid, s2 => $s2, s2pid => $s2pid, s3 => $s3, s3pid => $s3pid,
			end => [ $s3pid, $s2pid, $s1pid ], sessions => [ $s3, $s2, $s1 ] };
	});
my ($s1, $s1pid, $s2, $s2pid, $s3, $s3pid) = @$scene{qw(s1 s1pid s2 s2pid s3 s3pid)};
# The actions before the restart: those before this scene (the row lock's,
# and any of an attempt that came too late), and this one
my $actions = $scene->{actions} + 1;
ig_wait_gone($node, $s1pid, 'queue head terminated');
is($node->safe_psql('postgres',
		"SELECT string_agg(w->>'application_name' || ':' || (w->>'direct') || ':' "
		  . "|| (w->>'mode_requested'), ',' ORDER BY (w->>'pid')::int) "
		  . "FROM idle_guard_history() h, jsonb_array_elements(h.record->'waiters') w "
		  . "WHERE pid = $s1pid"),
	'migration:true:AccessExclusiveLock,dashboard:false:AccessShareLock',
	'record: a direct and a queued waiter');
is(rec($s1pid, '{locks,0,relation_name}'), 't', 'record: the relation it held');
$s2->query_safe('SELECT 1');
$s3->query_safe('SELECT 1');

# Visibility: a role that may not see others' sessions gets no queries
is($node->safe_psql('postgres',
		"SET ROLE reader; SELECT record->>'query' IS NULL, "
		  . "record->'waiters'->0->>'query' IS NULL, "
		  . "record->'waiters'->0->>'application_name' IS NULL, "
		  . "record->'waiters'->0->>'pid' IS NOT NULL "
		  . "FROM idle_guard_history() WHERE pid = $hpid"),
	't|t|t|t', 'record: queries and applications hidden from a plain reader');

#
# Restart: history and counters survive; a corrupt file is ignored.
#
my $before = $node->safe_psql('postgres',
	'SELECT count(*), string_agg(pid::text, \',\' ORDER BY at), '
	  . 'max(record::text) FROM idle_guard_history()');
my $counters = $node->safe_psql('postgres',
	'SELECT terminated, reported, skipped, stats_reset FROM idle_guard_stats()');
like($before, qr/^$actions\|/, "$actions actions before the restart");
$node->restart;
is($node->safe_psql('postgres',
		'SELECT count(*), string_agg(pid::text, \',\' ORDER BY at), '
		  . 'max(record::text) FROM idle_guard_history()'),
	$before, 'history, records included, survives a restart');
is($node->safe_psql('postgres',
		'SELECT terminated, reported, skipped, stats_reset FROM idle_guard_stats()'),
	$counters, 'counters and stats_reset survive a restart');
ok($node->log_contains(qr/idle_guard: restored $actions history entries/),
	'the restore is logged');

$node->stop;
my $file = $node->data_dir . '/pg_stat/idle_guard.stat';
ok(-f $file, 'a clean shutdown writes the state file');
open(my $fh, '+<', $file) or die "could not open $file: $!";
binmode $fh;
seek($fh, 200, 0);
print $fh 'not what was written';
close($fh);
my $offset = -s $node->logfile;
$node->start;
$node->wait_for_log(
	qr/idle_guard: ignoring file "pg_stat\/idle_guard.stat"\n.*DETAIL:  The file's checksum does not match\./,
	$offset);
pass('a corrupt state file is ignored with a LOG line');
is($node->safe_psql('postgres', 'SELECT count(*) FROM idle_guard_history()'),
	'0', 'and history starts empty');
ok(!-f $file, 'the file is removed once read');

# A file written for another PostgreSQL major (its header's pg_major, after
# the 1.5 header's 56 bytes) is discarded before its entries are read.
$node->stop;
ok(-f $file, 'a clean shutdown writes the state file, empty history or not');
open($fh, '+<', $file) or die "could not open $file: $!";
binmode $fh;
seek($fh, 56, 0);
print $fh pack('V', 99);
close($fh);
$offset = -s $node->logfile;
$node->start;
$node->wait_for_log(
	qr/idle_guard: ignoring file "pg_stat\/idle_guard.stat"\n.*DETAIL:  The file was written for another major version of PostgreSQL\./,
	$offset);
pass('a state file of another PostgreSQL major is ignored with a LOG line');

#
# Reset: refused to a plain user, done for a superuser.
#
my ($holder2, $h2pid) = ig_silent_session($node, 'again',
	'BEGIN; UPDATE accounts SET balance = 0 WHERE id = 2;');
# (On a loaded machine the writer may come after the holder's deadline,
# and not be seen waiting: it is ended all the same.)
my ($writer2, $w2pid) = ig_waiting_session($node, 'again_writer',
	'UPDATE accounts SET balance = 1 WHERE id = 2;', blocker => $h2pid);
ig_wait_gone($node, $h2pid, 'another termination');
my ($ret, $out, $err) = $node->psql('postgres', 'SELECT idle_guard_reset()',
	extra_params => [ '-U', 'reader' ]);
like($err, qr/permission denied for function idle_guard_reset/,
	'a plain user may not reset');
is($node->safe_psql('postgres', 'SELECT count(*) FROM idle_guard_history()'),
	'1', 'history intact after the refused reset');
my $reset_before = $node->safe_psql('postgres',
	'SELECT stats_reset FROM idle_guard_stats()');
$node->safe_psql('postgres', 'SELECT idle_guard_reset()');
is($node->safe_psql('postgres',
		"SELECT count(*) FROM idle_guard_history()"),
	'0', 'reset clears the history');
is($node->safe_psql('postgres',
		"SELECT terminated, reported, skipped, stats_reset > '$reset_before' "
		  . "FROM idle_guard_stats()"),
	'0|0|0|t', 'reset clears the counters and records when');
$writer2->query_safe('SELECT 1');
ig_close($holder2);
$writer2->quit;
$s2->quit;
$s3->quit;
$writer->quit;
$node->stop;
done_testing();
