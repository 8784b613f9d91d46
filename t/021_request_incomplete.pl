# Copyright (c) 2026, idle_guard developers
#
# A client that sends part of an extended-protocol request and then
# nothing is silent.  After Parse/Bind/Execute without Sync its backend is
# "active", waiting in ClientRead, with the transaction still open: the
# built-in idle_in_transaction_session_timeout and statement_timeout do
# not see it.  libpq itself can send such a request: in pipeline mode,
# PQsendFlushRequest (PostgreSQL 14 and later) sends a Flush without a
# Sync.  But the tests reach libpq only through psql, which has no way to
# before PostgreSQL 18 (\flushrequest), and they run on 15 too: hence a
# raw protocol client (t/IgWire.pm).  blocking_timeout 2s, idle_timeout 5s:
#	a. inside BEGIN, an UPDATE sent as Parse/Bind/Execute/Flush and no
#	   Sync, with a writer waiting on the row: reported as "request
#	   incomplete", terminated at blocking_timeout (the client gets the
#	   FATAL), the writer proceeds, the history says why;
#	b. the same in the implicit transaction of the extended protocol (no
#	   BEGIN): a SELECT ... FOR UPDATE whose request never ends;
#	c. a healthy client that pauses 0.5 s between the messages of every
#	   request, round after round, while its transaction holds a row lock
#	   a writer waits on: never touched, for more than three times
#	   blocking_timeout;
#	d. an unfinished request that holds no lock (SELECT 1 without Sync):
#	   never touched, after sweeps past idle_timeout.

use strict;
use warnings FATAL => 'all';

use FindBin;
use lib $FindBin::RealBin;

use IdleGuardTest;
use IgWire;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

my $blocking_ms = 2000;
my $idle_ms = 5000;

my $node = ig_node('request_incomplete',
	'idle_guard.blocking_timeout' => "'${blocking_ms}ms'",
	'idle_guard.idle_timeout' => "'${idle_ms}ms'");
$node->safe_psql('postgres',
	'CREATE TABLE t (id int PRIMARY KEY, v int); INSERT INTO t VALUES (1, 0);'
	  . 'CREATE TABLE u (id int PRIMARY KEY, v int); INSERT INTO u VALUES (1, 0);'
	  . 'CREATE TABLE h (id int PRIMARY KEY, v int); INSERT INTO h VALUES (1, 0);');

sub backend_shape
{
	my ($pid) = @_;
	return ig_value($node, "SELECT state || '/' || coalesce(wait_event, '') "
		  . "FROM pg_stat_activity WHERE pid = $pid");
}

# Read the replies the server flushed: $n messages, their types.
sub replies
{
	my ($c, $n) = @_;
	my @types;
	for (1 .. $n)
	{
		my ($type) = $c->read_message;
		last unless defined $type;
		push @types, $type;
	}
	return join(' ', @types);
}

#
# a. Parse/Bind/Execute of an UPDATE inside BEGIN, and no Sync.
#
{
	# The premise, on a loaded machine too: the writer waits and the report
	# is read before the deadline, blocking_timeout after idle_guard first
	# saw the silence (its silent_since), by the server's clock; else the
	# scene is set up again.  (An attempt that came too late may have let
	# its writer commit: the value is counted from this attempt's start.)
	my $scene = ig_setup_in_time(
		$node,
		'a: the writer waits, and the report is read, before the deadline',
		sub {
			my %sc = (offset => -s $node->logfile,
				v => ig_value($node, 'SELECT v FROM t WHERE id = 1'));
			my $c = IgWire->connect($node, application_name => 'half_request');
			my $pid = $c->pid;
			$sc{undo} = sub { $c->close; };
			$c->query_ok('BEGIN');
			$c->parse('', 'UPDATE t SET v = v + 1 WHERE id = $1');
			$c->bind('', '', 1);
			$c->execute('', 0);
			$c->flush;
			# ParseComplete, BindComplete, CommandComplete: the UPDATE ran.
			$sc{replies} = replies($c, 3);
			$node->poll_query_until('postgres',
				"SELECT state = 'active' AND wait_event = 'ClientRead' AND backend_xid IS NOT NULL "
				  . "FROM pg_stat_activity WHERE pid = $pid")
			  or die 'a: not active in ClientRead';
			my $since = ig_report_silent_since($node, $pid, 'a');
			my ($writer, $writer_pid) = ig_waiting_session($node, 'writer_a',
				'UPDATE t SET v = v + 10 WHERE id = 1;', blocker => $pid);
			$sc{row} = ig_value($node,
				"SELECT state, wait_event, silent_reason, gid IS NULL, "
				  . "backend_xid IS NOT NULL, blocked_direct, blocked_total, blocked_pids, "
				  . "rule, action FROM idle_guard_report() WHERE pid = $pid");
			return {
				%sc,
				ok => ig_before_deadline($node, $since, $blocking_ms),
				c => $c, pid => $pid, writer => $writer, writer_pid => $writer_pid,
				end => [ $writer_pid, $pid ], sessions => [$writer] };
		});
	my ($offset, $c, $pid, $writer, $writer_pid) = @$scene{qw(offset c pid writer writer_pid)};
	is($scene->{replies}, '1 2 C', 'a: Parse, Bind and Execute done, the UPDATE ran');
	pass('a: the backend is active, waiting in ClientRead, with an xid');
	is($scene->{row},
		"active|ClientRead|request incomplete|t|t|1|1|{$writer_pid}|blocking|terminate",
		'a: report: active, ClientRead, request incomplete, blocking the writer');

	ig_wait_gone($node, $pid, 'a: the backend is terminated');
	ig_wait_unblocked($node, $writer_pid, 'a: the writer no longer waits');
	$writer->query_safe('SELECT 1');
	is(ig_value($node, 'SELECT v FROM t WHERE id = 1'), $scene->{v} + 10,
		'a: the unfinished UPDATE was rolled back, the writer committed');

	# The client is told, as a client of an idle session would be.
	my $r = $c->read_until_ready;
	ok($r->{eof}, 'a: the client sees its connection closed');
	is("@{$r->{sqlstates}}", '57P01',
		'a: after FATAL 57P01 (terminating connection due to administrator command)');

	ig_check_terminated($node, $pid,
		offset => $offset,
		app => 'half_request',
		reason => 'request incomplete',
		timeout_ms => $blocking_ms,
		label => 'a');
	$c->close;
	$writer->quit;
}

#
# b. The implicit transaction of an unfinished request.
#
{
	# The premise as in a.
	my $scene = ig_setup_in_time(
		$node,
		'b: the writer waits, and the report is read, before the deadline',
		sub {
			my %sc = (v => ig_value($node, 'SELECT v FROM u WHERE id = 1'));
			my $c = IgWire->connect($node, application_name => 'half_implicit');
			my $pid = $c->pid;
			$sc{undo} = sub { $c->close; };
			$c->parse('', 'SELECT * FROM u WHERE id = 1 FOR UPDATE');
			$c->bind('', '');
			$c->execute('', 0);
			$c->flush;
			$sc{replies} = replies($c, 4);
			$node->poll_query_until('postgres',
				"SELECT state = 'active' AND wait_event = 'ClientRead' "
				  . "FROM pg_stat_activity WHERE pid = $pid")
			  or die 'b: not active in ClientRead';
			my $since = ig_report_silent_since($node, $pid, 'b');
			my ($writer, $writer_pid) = ig_waiting_session($node, 'writer_b',
				'UPDATE u SET v = v + 10 WHERE id = 1;', blocker => $pid);
			$sc{row} = ig_value($node,
				"SELECT state, wait_event, silent_reason, blocked_total, rule, action "
				  . "FROM idle_guard_report() WHERE pid = $pid");
			return {
				%sc,
				ok => ig_before_deadline($node, $since, $blocking_ms),
				c => $c, pid => $pid, writer => $writer, writer_pid => $writer_pid,
				end => [ $writer_pid, $pid ], sessions => [$writer] };
		});
	my ($c, $pid, $writer, $writer_pid) = @$scene{qw(c pid writer writer_pid)};
	is($scene->{replies}, '1 2 D C', 'b: the SELECT FOR UPDATE ran');
	pass('b: the backend is active in ClientRead');
	is($scene->{row}, 'active|ClientRead|request incomplete|1|blocking|terminate',
		'b: report: request incomplete, blocking the writer');

	ig_wait_gone($node, $pid, 'b: the backend is terminated');
	ig_wait_unblocked($node, $writer_pid, 'b: the writer no longer waits');
	$writer->query_safe('SELECT 1');
	is(ig_value($node, 'SELECT v FROM u WHERE id = 1'), $scene->{v} + 10,
		'b: the writer committed');
	is(ig_history($node, $pid, 'rule', 'action', 'silent_reason'),
		'blocking,terminated,request incomplete',
		'b: history: terminated, request incomplete');
	$c->close;
	$writer->quit;
}

my $terminated_before = ig_value($node, 'SELECT terminated FROM idle_guard_stats()');

#
# d (started now, checked after c). An unfinished request holding nothing:
# the implicit transaction of SELECT 1 has only its virtual xid.
#
my $d = IgWire->connect($node, application_name => 'half_nolock');
my $d_pid = $d->pid;
$d->parse('', 'SELECT 1');
$d->bind('', '');
$d->execute('', 0);
$d->flush;
is(replies($d, 4), '1 2 D C', 'd: SELECT 1 ran, without Sync');
ig_wait_for($node,
	"SELECT state = 'active' AND wait_event = 'ClientRead' FROM pg_stat_activity WHERE pid = $d_pid",
	't', 'd: the backend is active in ClientRead');
is( ig_value($node,
		"SELECT count(*) FROM pg_locks WHERE pid = $d_pid AND locktype <> 'virtualxid'"),
	'0', 'd: it holds no lock but its virtual xid');
my $d_since = ig_value($node, "SELECT clock_timestamp()");

#
# c. A healthy client, slow between the messages of its requests.
#
my $c = IgWire->connect($node, application_name => 'deliberate');
my $c_pid = $c->pid;
$c->query_ok('BEGIN');
$c->query_ok('UPDATE h SET v = v + 1 WHERE id = 1');
my ($writer, $writer_pid) = ig_waiting_session($node, 'writer_c',
	'UPDATE h SET v = v + 100 WHERE id = 1;');
my $c_start = ig_value($node, 'SELECT clock_timestamp()');
my $sweeps_before = ig_value($node, 'SELECT sweeps FROM idle_guard_stats()');

# One message, then a 0.5 s pause during which the backend is looked at:
# active in ClientRead (mid-request), still there.
my ($mid_request, $alive, $rounds) = (0, 1, 0);
sub send_and_pause
{
	my ($send) = @_;
	my $t0 = time;
	$send->();
	$c->flush;
	$mid_request++ if backend_shape($c_pid) eq 'active/ClientRead';
	$alive &&= ig_pid_alive($node, $c_pid);
	my $left = 0.5 - (time - $t0);
	usleep(int($left * 1e6)) if $left > 0;
	return;
}

my $until = "SELECT last_sweep_at > '$c_start'::timestamptz + interval '"
  . (3 * $blocking_ms) . " ms' FROM idle_guard_stats()";
my $deadline = time + $PostgreSQL::Test::Utils::timeout_default;
my $all_ok = 1;
while ($alive && time < $deadline)
{
	send_and_pause(sub { $c->parse('', 'UPDATE h SET v = v + 1 WHERE id = $1') });
	send_and_pause(sub { $c->bind('', '', 1) });
	send_and_pause(sub { $c->execute('', 0) });
	$c->sync;
	my $r = $c->read_until_ready;
	$rounds++;
	if ($r->{eof} || "@{$r->{types}}" ne '1 2 C Z' || $r->{status} ne 'T')
	{
		$all_ok = 0;
		diag("c: round $rounds: @{$r->{types}} @{$r->{errors}}");
		last;
	}
	last if ig_value($node, $until) eq 't';
}
ok($all_ok, "c: $rounds requests, each answered in full, the transaction still open");
cmp_ok($rounds, '>=', 3, 'c: at least three requests took their time');
ok($alive && ig_pid_alive($node, $c_pid), 'c: the deliberate client was never terminated');
is(ig_value($node, $until), 't', 'c: the worker swept three blocking_timeouts after it began');
cmp_ok(ig_value($node, 'SELECT sweeps FROM idle_guard_stats()'), '>', $sweeps_before,
	'c: the worker swept meanwhile');
cmp_ok($mid_request, '>=', 3 * $rounds - 1,
	'c: between messages, the backend was seen active in ClientRead');
is(ig_value($node, "SELECT wait_event_type FROM pg_stat_activity WHERE pid = $writer_pid"),
	'Lock', 'c: the writer still waits behind it');
$c->query_ok('COMMIT');
ig_wait_unblocked($node, $writer_pid, 'c: the writer proceeds after COMMIT');
$writer->query_safe('SELECT 1');
is(ig_value($node, 'SELECT v FROM h WHERE id = 1'), 1 + $rounds + 100,
	'c: every update of the deliberate client and the writer committed');
is(ig_history($node, $c_pid), '', 'c: never in the history');
$c->close;
$writer->quit;

#
# d. Checked now: swept past idle_timeout, untouched.
#
ig_wait_sweep_past($node, $d_since, $idle_ms + 500,
	'd: the worker swept after idle_timeout of its silence');
ok(ig_pid_alive($node, $d_pid), 'd: the lock-free unfinished request is alive');
is(backend_shape($d_pid), 'active/ClientRead', 'd: still waiting for the rest of its request');
is(ig_value($node, "SELECT count(*) FROM idle_guard_report() WHERE pid = $d_pid"), '0',
	'd: not in the report');
is(ig_history($node, $d_pid), '', 'd: never in the history');
$d->sync;
my $r = $d->read_until_ready;
is($r->{status}, 'I', 'd: Sync ends the request normally');
$d->close;

is(ig_value($node, 'SELECT terminated FROM idle_guard_stats()'), $terminated_before,
	'c, d: no termination after a and b');

$node->stop;
done_testing();
