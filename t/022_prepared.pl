# Copyright (c) 2026, idle_guard developers
#
# A prepared transaction (two-phase commit) keeps its locks with no
# backend at all.  idle_guard reports it and never ends it, even with
# idle_guard.action = terminate:
#	a. prepared by another role, whose session then disconnects: the
#	   report lists it (pid NULL, state "prepared", its gid, owner,
#	   database, xid and locks) under the idle rule, prepared_timeout away;
#	b. a writer waits on its row: at blocking_timeout it is reported once
#	   (LOG line naming the gid and the ROLLBACK PREPARED that would end
#	   it; one history row, pid NULL, rule blocking, action reported) and
#	   not again on later sweeps; it still exists; the test's own ROLLBACK
#	   PREPARED lets the writer proceed;
#	c. with prepared_timeout 3s, one prepared in another database that
#	   nobody waits on is reported once by the idle rule, not before 3s;
#	   with prepared_timeout 0, never;
#	d. a read-only prepared transaction holds no lock but its own xid.
#	   An xid counts as holding locks (docs/design.md, "Words"): it is listed,
#	   with locks_held 0 and nobody blocked; and a prepared transaction
#	   that has been committed leaves the report.

use strict;
use warnings FATAL => 'all';

use FindBin;
use lib $FindBin::RealBin;

use IdleGuardTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $blocking_ms = 2000;
my $prepared_ms = 3000;

my $node = ig_node('prepared',
	max_prepared_transactions => 10,
	'idle_guard.blocking_timeout' => "'${blocking_ms}ms'");
$node->safe_psql('postgres',
	'CREATE ROLE alice LOGIN;'
	  . 'CREATE TABLE p (id int PRIMARY KEY, v int); INSERT INTO p VALUES (1, 0), (2, 0);'
	  . 'GRANT SELECT, UPDATE ON p TO alice;'
	  . 'CREATE DATABASE other;');
$node->safe_psql('other',
	'CREATE TABLE o (id int PRIMARY KEY, v int); INSERT INTO o VALUES (1, 0);');

sub history_count
{
	my ($gid) = @_;
	return ig_value($node, "SELECT count(*) FROM idle_guard_history() WHERE gid = '$gid'");
}

# Lines of the server log after $offset that idle_guard wrote (not the
# statements the test sent, which log_statement = all logs too).
sub idle_guard_lines
{
	my ($offset) = @_;
	my $log = slurp_file($node->logfile, $offset);
	return grep { /idle_guard: / && !/statement: / } split /\n/, $log;
}

sub set_prepared_timeout
{
	my ($value, $what) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	$node->append_conf('postgresql.conf', "idle_guard.prepared_timeout = '$value'\n");
	ig_worker_looks_now($node, $what);
}

is(ig_value($node, 'SHOW idle_guard.prepared_timeout'), '30min',
	'prepared_timeout defaults to 30min');
is(ig_value($node, 'SHOW idle_guard.action'), 'terminate', 'the action is terminate');

#
# a. Prepared by alice, who then disconnects.
#
my $offset = -s $node->logfile;
$node->safe_psql('postgres',
	"BEGIN; UPDATE p SET v = v + 1 WHERE id = 1; PREPARE TRANSACTION 'ig_test_gxact';",
	extra_params => [ '-U', 'alice' ]);
my ($xid, $prepared_at) = split /\|/, ig_value($node,
	"SELECT transaction, prepared FROM pg_prepared_xacts WHERE gid = 'ig_test_gxact'");
ok($xid, 'a: the transaction is prepared');
is( ig_value($node,
		"SELECT count(*) FROM pg_stat_activity WHERE usename = 'alice'"),
	'0', 'a: alice has no session left');

ig_wait_for($node,
	"SELECT count(*) = 1 FROM idle_guard_report() WHERE gid = 'ig_test_gxact'",
	't', 'a: the report lists the prepared transaction');
is( ig_value($node,
		"SELECT pid IS NULL, state, silent_reason, usename, datname, "
		  . "client_addr IS NULL, wait_event IS NULL, xact_start IS NULL, "
		  . "backend_xid = '$xid', locks_held >= 1, blocked_total, rule, action "
		  . "FROM idle_guard_report() WHERE gid = 'ig_test_gxact'"),
	't|prepared|prepared|alice|postgres|t|t|t|t|t|0|idle|report',
	'a: report: no pid, state prepared, owner, database, xid, locks, idle rule, report only'
);
is( ig_value($node,
		"SELECT coalesce(application_name, '<NULL>') "
		  . "FROM idle_guard_report() WHERE gid = 'ig_test_gxact'"),
	'<NULL>', 'a: report: application_name NULL (no backend, no application)');
# Its silence starts when it was prepared, or when idle_guard first saw it
# (a lower bound of its age); the idle rule's deadline is prepared_timeout
# after that.
is( ig_value($node,
		"SELECT silent_since >= '$prepared_at'::timestamptz "
		  . "AND silent_since <= clock_timestamp(), "
		  . "deadline = silent_since + interval '30 min' "
		  . "FROM idle_guard_report() WHERE gid = 'ig_test_gxact'"),
	't|t', 'a: silent since it was prepared (or first seen), deadline 30min later');

#
# b. A writer waits on its row.
#
my ($writer, $writer_pid) = ig_waiting_session($node, 'writer',
	'UPDATE p SET v = v + 10 WHERE id = 1;');
is( ig_value($node,
		"SELECT blocked_direct, blocked_total, blocked_pids, rule, action "
		  . "FROM idle_guard_report() WHERE gid = 'ig_test_gxact'"),
	"1|1|{$writer_pid}|blocking|report",
	'b: report: it blocks the writer, blocking rule, report only');

ig_wait_for($node,
	"SELECT count(*) = 1 FROM idle_guard_history() WHERE gid = 'ig_test_gxact'",
	't', 'b: reported in the history');
my ($h, $h_at) = split /\|/, ig_value($node,
	"SELECT (pid IS NULL) || ',' || usename || ',' || datname || ',' || rule "
	  . "|| ',' || action || ',' || silent_reason || ',' || blocked_total, at "
	  . "FROM idle_guard_history() WHERE gid = 'ig_test_gxact'");
is($h, 'true,alice,postgres,blocking,reported,prepared,1',
	'b: history: no pid, alice, blocking rule, reported, prepared, one blocked');
is( ig_value($node,
		"SELECT '$h_at'::timestamptz >= '$prepared_at'::timestamptz "
		  . "+ interval '$blocking_ms ms'"),
	't', 'b: not reported before blocking_timeout');

$node->wait_for_log(qr/idle_guard: [^\n]*gid="ig_test_gxact"/, $offset);
my @lines = grep { /gid="ig_test_gxact"/ } idle_guard_lines($offset);
is(scalar @lines, 1, 'b: one LOG line for it');
like($lines[0] // '', qr/rule=blocking action=report/, 'b: LOG line: blocking rule, report');
like($lines[0] // '', qr/ROLLBACK PREPARED 'ig_test_gxact'/,
	'b: LOG line: says which ROLLBACK PREPARED would end it');

# More sweeps, well past the deadline, with the writer still waiting.
ig_worker_looks_now($node, 'b: the worker looks again');
ig_wait_sweep_past($node, $h_at, $blocking_ms,
	'b: the worker swept again blocking_timeout after the report');
ig_worker_looks_now($node, 'b: and once more');
is(history_count('ig_test_gxact'), '1', 'b: still one history row: reported once');
is(scalar(grep { /gid="ig_test_gxact"/ } idle_guard_lines($offset)),
	1, 'b: still one LOG line');
is(ig_value($node, 'SELECT reported, terminated FROM idle_guard_stats()'), '1|0',
	'b: counters: one report, no termination');
is( ig_value($node,
		"SELECT count(*) FROM pg_prepared_xacts WHERE gid = 'ig_test_gxact'"),
	'1', 'b: the prepared transaction still exists');
is(ig_value($node, "SELECT wait_event_type FROM pg_stat_activity WHERE pid = $writer_pid"),
	'Lock', 'b: the writer still waits');

ig_value($node, "ROLLBACK PREPARED 'ig_test_gxact'");
ig_wait_unblocked($node, $writer_pid, 'b: the writer proceeds after ROLLBACK PREPARED');
$writer->query_safe('SELECT 1');
is(ig_value($node, 'SELECT v FROM p WHERE id = 1'), '10',
	'b: the prepared update rolled back, the writer committed');
is(ig_value($node, "SELECT count(*) FROM idle_guard_report() WHERE gid = 'ig_test_gxact'"),
	'0', 'b: no longer in the report');
$writer->quit;

#
# c. prepared_timeout 3s, in another database, nobody waiting.
#
set_prepared_timeout("${prepared_ms}ms", 'c: prepared_timeout 3s, reloaded');
# The premise, on a loaded machine too: the worker looks, and the report
# and the history are read, before prepared_timeout has passed since the
# PREPARE, by the server's clock; else it is prepared again, under a gid
# of its own.
my $scene = ig_setup_in_time(
	$node,
	'c: looked at before prepared_timeout',
	sub {
		my ($attempt) = @_;
		my %sc = (offset => -s $node->logfile, gid => "ig_idle_gxact$attempt");
		$node->safe_psql('other',
			"BEGIN; UPDATE o SET v = v + 1 WHERE id = 1; PREPARE TRANSACTION '$sc{gid}';");
		$sc{undo} = sub { $node->safe_psql('other', "ROLLBACK PREPARED '$sc{gid}'"); };
		$sc{idle_at} = ig_value($node,
			"SELECT prepared FROM pg_prepared_xacts WHERE gid = '$sc{gid}'");
		# the worker looks soon after PREPARE
		my $t = ig_value($node, 'SELECT clock_timestamp()');
		$node->safe_psql('postgres', 'SELECT pg_reload_conf()');
		$node->poll_query_until('postgres',
			"SELECT last_sweep_at > '$t' FROM idle_guard_stats()")
		  or die 'c: the worker did not look';
		$sc{row} = ig_value($node,
			"SELECT datname, blocked_total, rule, action, "
			  . "deadline = silent_since + interval '$prepared_ms ms' "
			  . "FROM idle_guard_report() WHERE gid = '$sc{gid}'");
		$sc{early} = ig_value($node,
			"SELECT last_sweep_at < '$sc{idle_at}'::timestamptz + interval '$prepared_ms ms' "
			  . "FROM idle_guard_stats()");
		$sc{count} = history_count($sc{gid});
		$sc{ok} = ig_before_deadline($node, $sc{idle_at}, $prepared_ms);
		return \%sc;
	});
my ($gid, $idle_at) = @$scene{qw(gid idle_at)};
$offset = $scene->{offset};
pass('c: the worker looks soon after PREPARE');
is($scene->{row}, 'other|0|idle|report|t',
	'c: report: database other, nobody blocked, idle rule at prepared_timeout');
is($scene->{count}, '0', 'c: not reported right away');
is($scene->{early}, 't', 'c: (that sweep was before prepared_timeout)');

ig_wait_for($node,
	"SELECT count(*) = 1 FROM idle_guard_history() WHERE gid = '$gid'",
	't', 'c: reported once prepared_timeout has passed');
my ($c_row, $c_late_ms) = split /\|/, ig_value($node,
	"SELECT (pid IS NULL) || ',' || datname || ',' || rule || ',' || action "
	  . "|| ',' || silent_reason || ',' || blocked_total, "
	  . "extract(epoch FROM at - '$idle_at'::timestamptz) * 1000 "
	  . "FROM idle_guard_history() WHERE gid = '$gid'");
is($c_row, 'true,other,idle,reported,prepared,0',
	'c: history: database other, idle rule, reported');
cmp_ok($c_late_ms, '>=', $prepared_ms, 'c: not reported before prepared_timeout');
# Timed from when idle_guard first saw it, which may be a sweep later.
cmp_ok($c_late_ms, '<', $prepared_ms + $blocking_ms + IG_LATE_MS,
	'c: reported soon after prepared_timeout');
$node->wait_for_log(qr/idle_guard: [^\n]*gid="$gid"/, $offset);
@lines = grep { /gid="$gid"/ } idle_guard_lines($offset);
like($lines[0] // '', qr/db="other".*rule=idle action=report/,
	'c: LOG line: database other, idle rule, report');
like($lines[0] // '', qr/ROLLBACK PREPARED '$gid'/,
	'c: LOG line: says which ROLLBACK PREPARED would end it');
ig_worker_looks_now($node, 'c: the worker looks again');
ig_worker_looks_now($node, 'c: and once more');
is(history_count($gid), '1', 'c: reported once');
$node->safe_psql('other', "ROLLBACK PREPARED '$gid'");

# prepared_timeout 0: never by the idle rule.
set_prepared_timeout('0', 'c: prepared_timeout 0, reloaded');
$node->safe_psql('postgres',
	"BEGIN; UPDATE p SET v = v + 1 WHERE id = 2; PREPARE TRANSACTION 'ig_never_gxact';");
my $never_at = ig_value($node,
	"SELECT prepared FROM pg_prepared_xacts WHERE gid = 'ig_never_gxact'");
ig_wait_sweep_past($node, $never_at, $prepared_ms + $blocking_ms + 500,
	'c: the worker swept well after 3s more of it');
is(history_count('ig_never_gxact'), '0', 'c: prepared_timeout 0: never reported');
is( ig_value($node,
		"SELECT rule IS NULL, action <> 'terminate', blocked_total "
		  . "FROM idle_guard_report() WHERE gid = 'ig_never_gxact'"),
	't|t|0', 'c: listed, with no rule that would fire');
ig_value($node, "ROLLBACK PREPARED 'ig_never_gxact'");

#
# d. A read-only prepared transaction, and one committed.
#
$node->safe_psql('postgres',
	"BEGIN; SELECT 1; PREPARE TRANSACTION 'ig_readonly_gxact';");
is( ig_value($node,
		"SELECT count(*) FROM pg_locks l JOIN pg_prepared_xacts x "
		  . "ON l.transactionid = x.transaction "
		  . "WHERE x.gid = 'ig_readonly_gxact' AND l.pid IS NULL AND l.locktype = 'transactionid'"),
	'1', 'd: the read-only prepared transaction holds its xid lock');
is( ig_value($node,
		"SELECT count(*) FROM pg_locks WHERE pid IS NULL AND locktype NOT IN ('transactionid', 'virtualxid')"),
	'0', 'd: and no other lock');
ig_wait_for($node,
	"SELECT count(*) = 1 FROM idle_guard_report() WHERE gid = 'ig_readonly_gxact'",
	't', 'd: the report lists it');
is( ig_value($node,
		"SELECT locks_held, blocked_total, action <> 'terminate' "
		  . "FROM idle_guard_report() WHERE gid = 'ig_readonly_gxact'"),
	'0|0|t', 'd: with no lock but its xid, nobody blocked');
ig_value($node, "COMMIT PREPARED 'ig_readonly_gxact'");
is( ig_value($node,
		"SELECT count(*) FROM idle_guard_report() WHERE state = 'prepared'"),
	'0', 'd: committed: no prepared transaction left in the report');

is(ig_value($node, 'SELECT terminated FROM idle_guard_stats()'), '0',
	'nothing was ever terminated');

$node->stop;
done_testing();
