# Copyright (c) 2026, idle_guard developers
#
# A client that stops reading its results is silent.  Its backend is
# "active", waiting in ClientWrite on a full socket, and keeps its
# transaction's locks; only SIGTERM frees it.
#	a. psql, stopped with SIGSTOP while it fetches a large result, inside a
#	   transaction holding a table lock that an ALTER TABLE waits for: the
#	   report shows it ("client not reading", blocking the ALTER), it is
#	   terminated at blocking_timeout, the ALTER proceeds, and the history
#	   says why;
#	b. the same with a raw protocol client (t/IgWire.pm) that reads the
#	   first 64 kB of the result and then nothing, holding a row lock an
#	   UPDATE waits for; its update is rolled back, the connection closed;
#	c. a slow client that keeps reading (8 kB every 25 ms, so the backend
#	   spends nearly all its time in ClientWrite but makes progress), with
#	   a waiter, is never touched, for three times blocking_timeout;
#	d. a client that stopped reading, holding a lock nobody waits on, is
#	   only under the idle rule (idle_timeout 1h): alive after sweeps past
#	   blocking_timeout.

use strict;
use warnings FATAL => 'all';

use FindBin;
use lib $FindBin::RealBin;

use IdleGuardTest;
use IgWire;
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

my $blocking_ms = 2000;

my $node = ig_node('client_write',
	'idle_guard.blocking_timeout' => "'${blocking_ms}ms'");
$node->safe_psql('postgres',
	'CREATE TABLE t (id int PRIMARY KEY, v int); INSERT INTO t VALUES (1, 0);'
	  . 'CREATE TABLE r (id int PRIMARY KEY, v int); INSERT INTO r VALUES (1, 0), (2, 0);'
	  . 'CREATE TABLE s (id int PRIMARY KEY, v int); INSERT INTO s VALUES (1, 0);'
	  . 'CREATE TABLE q (id int PRIMARY KEY, v int); INSERT INTO q VALUES (1, 0);');

# A result far larger than any socket buffer: 2 GB for psql, which reads as
# fast as it can until stopped; 40 MB for the raw clients.
my $huge = "SELECT repeat('x', 10000) FROM generate_series(1, 200000)";
my $big_rows = 40000;
my $big = "SELECT repeat('x', 1000) FROM generate_series(1, $big_rows)";

# Wait until idle_guard_report() lists $pid.
sub wait_in_report
{
	my ($pid, $what) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	ig_wait_for($node,
		"SELECT count(*) = 1 FROM idle_guard_report() WHERE pid = $pid",
		't', $what);
}

#
# a. psql stopped while fetching.
#
{
	# The premise, on a loaded machine too: the ALTER waits and the report
	# is read before the deadline, blocking_timeout after idle_guard first
	# saw the silence (its silent_since), by the server's clock; else the
	# scene is set up again, with a column of its own.
	my $scene = ig_setup_in_time(
		$node,
		'a: the ALTER waits, and the report is read, before the deadline',
		sub {
			my ($attempt) = @_;
			my %sc = (offset => -s $node->logfile, column => "w$attempt");
			my $script = PostgreSQL::Test::Utils::tempdir() . '/stalled.sql';
			append_to_file($script, "BEGIN;\nLOCK TABLE t IN ROW EXCLUSIVE MODE;\n$huge;\n");
			my $err = '';
			my $psql = IPC::Run::start(
				[
					$node->installed_command('psql'), '-X', '-q', '-v', 'ON_ERROR_STOP=1',
					'-d', $node->connstr('postgres') . ' application_name=stalled_psql',
					'-f', $script
				],
				'<', '/dev/null', '>', '/dev/null', '2>', \$err);
			$sc{psql} = $psql;
			$sc{undo} = sub { $psql->signal('CONT'); eval { $psql->kill_kill; }; };

			ig_wait_for($node,
				"SELECT count(*) = 1 FROM pg_stat_activity WHERE application_name = 'stalled_psql' "
				  . "AND state = 'active' AND query LIKE 'SELECT repeat%'",
				't', 'a: psql is fetching the large result');
			$psql->signal('STOP');
			my $pid = ig_value($node, "SELECT pid FROM pg_stat_activity WHERE application_name = 'stalled_psql'");
			ig_wait_client_write($node, $pid, 'a: the stopped psql leaves its backend active in ClientWrite');
			$sc{locks} = ig_value($node,
				"SELECT count(*) FROM pg_locks WHERE pid = $pid AND relation = 't'::regclass");
			my $since = ig_report_silent_since($node, $pid, 'a');

			my ($alter, $alter_pid) = ig_waiting_session($node, 'migration',
				"ALTER TABLE t ADD COLUMN $sc{column} int;", blocker => $pid);
			$sc{row} = ig_value($node,
				"SELECT state, wait_event, silent_reason, gid IS NULL, locks_held > 0, "
				  . "blocked_direct, blocked_total, blocked_pids, rule, action, "
				  . "silent_since >= xact_start "
				  . "FROM idle_guard_report() WHERE pid = $pid");
			return {
				%sc,
				ok => ig_before_deadline($node, $since, $blocking_ms),
				pid => $pid, alter => $alter, alter_pid => $alter_pid,
				end => [ $alter_pid, $pid ], sessions => [$alter] };
		});
	my ($offset, $psql, $pid, $alter, $alter_pid) = @$scene{qw(offset psql pid alter alter_pid)};
	cmp_ok($scene->{locks}, '>=', 1, 'a: it holds its lock on t');
	is($scene->{row},
		"active|ClientWrite|client not reading|t|t|1|1|{$alter_pid}|blocking|terminate|t",
		'a: report: active, ClientWrite, client not reading, blocking the ALTER');

	ig_wait_gone($node, $pid, 'a: the stalled backend is terminated');
	ig_wait_unblocked($node, $alter_pid, 'a: the ALTER no longer waits');
	$alter->query_safe('SELECT 1');
	is(ig_value($node, "SELECT count(*) FROM pg_attribute WHERE attrelid = 't'::regclass AND attname = '$scene->{column}'"),
		'1', 'a: the ALTER TABLE committed');

	ig_check_terminated($node, $pid,
		offset => $offset,
		app => 'stalled_psql',
		reason => 'client not reading',
		timeout_ms => $blocking_ms,
		label => 'a');

	$psql->signal('CONT');
	eval { $psql->kill_kill; };
	$alter->quit;
}

#
# b. A raw client that reads a little and stops.
#
{
	# The premise as in a.  (An attempt that came too late may have let
	# its writer commit: the value is counted from this attempt's start.)
	my $scene = ig_setup_in_time(
		$node,
		'b: the writer waits, and the report is read, before the deadline',
		sub {
			my %sc = (v => ig_value($node, 'SELECT v FROM r WHERE id = 1'));
			my $c = IgWire->connect($node, application_name => 'raw_stalled');
			my $pid = $c->pid;
			$sc{undo} = sub { $c->close; };
			$c->query_ok('BEGIN');
			$c->query_ok('UPDATE r SET v = v + 1 WHERE id = 1');
			$c->send_query($big);
			my $got = 0;
			while ($got < 65536)
			{
				my $n = $c->read_some(65536 - $got);
				last if $n == 0;
				$got += $n;
			}
			$sc{got} = $got;
			ig_wait_client_write($node, $pid, 'b: then its backend sits in ClientWrite');
			my $since = ig_report_silent_since($node, $pid, 'b');

			my ($writer, $writer_pid) = ig_waiting_session($node, 'raw_writer',
				'UPDATE r SET v = v + 10 WHERE id = 1;', blocker => $pid);
			$sc{row} = ig_value($node,
				"SELECT state, wait_event, silent_reason, backend_xid IS NOT NULL, "
				  . "blocked_total, blocked_pids, rule, action "
				  . "FROM idle_guard_report() WHERE pid = $pid");
			return {
				%sc,
				ok => ig_before_deadline($node, $since, $blocking_ms),
				c => $c, pid => $pid, writer => $writer, writer_pid => $writer_pid,
				end => [ $writer_pid, $pid ], sessions => [$writer] };
		});
	my ($c, $pid, $writer, $writer_pid) = @$scene{qw(c pid writer writer_pid)};
	is($scene->{got}, 65536, 'b: the raw client read 64 kB of the result');
	is($scene->{row},
		"active|ClientWrite|client not reading|t|1|{$writer_pid}|blocking|terminate",
		'b: report: client not reading, blocking the writer');

	ig_wait_gone($node, $pid, 'b: the backend is terminated');
	ig_wait_unblocked($node, $writer_pid, 'b: the writer no longer waits');
	$writer->query_safe('SELECT 1');
	is(ig_value($node, 'SELECT v FROM r WHERE id = 1'), $scene->{v} + 10,
		'b: the stalled transaction was rolled back, the writer committed');

	# The client finds its connection closed once it reads again: what was
	# in flight, then the end.
	my $reads = 0;
	$reads++ while !$c->eof && $c->read_some(65536) > 0 && $reads < 100_000;
	ok($c->eof, 'b: the raw client sees its connection closed');

	is(ig_history($node, $pid, 'rule', 'action', 'silent_reason'),
		'blocking,terminated,client not reading',
		'b: history: terminated, client not reading');
	$c->close;
	$writer->quit;
}

#
# d (started first, checked after c). A client that stopped reading while
# holding a lock that nobody waits on.
#
my $d = IgWire->connect($node, application_name => 'raw_unread');
my $d_pid = $d->pid;
$d->query_ok('BEGIN');
$d->query_ok('LOCK TABLE q IN SHARE MODE');
$d->send_query($big);
ig_wait_client_write($node, $d_pid, 'd: the unread client leaves its backend in ClientWrite');
wait_in_report($d_pid, 'd: the report lists it');

#
# c. A slow client that keeps reading.
#
my $terminated_before = ig_value($node, 'SELECT terminated FROM idle_guard_stats()');
my $c = IgWire->connect($node, application_name => 'slow_reader');
my $c_pid = $c->pid;
$c->query_ok('BEGIN');
$c->query_ok('UPDATE s SET v = v + 1 WHERE id = 1');
my ($slow_waiter, $slow_waiter_pid) = ig_waiting_session($node, 'slow_waiter',
	'UPDATE s SET v = v + 10 WHERE id = 1;');
$c->send_query($big);

# The child reads slowly until told to stop (SIGUSR1), then reads the rest
# at full speed, checks it got every row, and commits.  Exit 0 when all went
# well, 1 if the rows were not all there, 2 if the connection was lost.
my $child = $c->in_child(
	sub {
		my ($w) = @_;
		my $stop = 0;
		local $SIG{USR1} = sub { $stop = 1; };
		my $until = time + $PostgreSQL::Test::Utils::timeout_default;
		while (!$stop && time < $until && !$w->eof && !$w->result_done)
		{
			$w->drain_slowly(chunk => 8192, pause => 0.025, seconds => 0.2);
		}
		while (!$w->eof && !$w->result_done)
		{
			$w->read_some(65536);
		}
		my $r = $w->read_until_ready;
		return 2 if $r->{eof};
		my $rows = $w->rows_dropped + @{ $r->{rows} };
		return 1 unless $rows == $big_rows && "@{$r->{tags}}" eq "SELECT $big_rows";
		$w->send_query('COMMIT');
		$r = $w->read_until_ready;
		return 2 if $r->{eof} || @{ $r->{errors} };
		return 0;
	});

my $slow_start = ig_value($node, 'SELECT clock_timestamp()');
my $sweeps_before = ig_value($node, 'SELECT sweeps FROM idle_guard_stats()');
# While the worker sweeps for three times blocking_timeout: the backend is
# seen in ClientWrite, it stays, and whenever the report lists it, it has
# not been silent for as long as blocking_timeout.
my ($seen_cw, $max_silent_ms, $alive) = (0, 0, 1);
my $cond = "SELECT last_sweep_at > '$slow_start'::timestamptz + interval '"
  . (3 * $blocking_ms) . " ms' FROM idle_guard_stats()";
my $deadline = time + $PostgreSQL::Test::Utils::timeout_default;
while (time < $deadline)
{
	my ($state, $ms) = split /\|/, ig_value($node,
		"SELECT (SELECT wait_event FROM pg_stat_activity WHERE pid = $c_pid), "
		  . "(SELECT extract(epoch FROM silent_for) * 1000 FROM idle_guard_report() "
		  . " WHERE pid = $c_pid)");
	$seen_cw = 1 if ($state // '') eq 'ClientWrite';
	$max_silent_ms = $ms if defined $ms && $ms ne '' && $ms > $max_silent_ms;
	$alive &&= ig_pid_alive($node, $c_pid);
	last if ig_value($node, $cond) eq 't';
	usleep(100_000);
}
ok(ig_value($node, $cond) eq 't', 'c: the worker swept three blocking_timeouts after the slow read began');
ok($seen_cw, 'c: the slow reader\'s backend was seen in ClientWrite');
ok($alive && ig_pid_alive($node, $c_pid), 'c: the slow reader was never terminated');
cmp_ok($max_silent_ms, '<', $blocking_ms,
	'c: its silence, when listed, never lasted blocking_timeout');
is( ig_value($node,
		"SELECT wait_event_type FROM pg_stat_activity WHERE pid = $slow_waiter_pid"),
	'Lock', 'c: the waiter still waits behind it');
cmp_ok(ig_value($node, 'SELECT sweeps FROM idle_guard_stats()'), '>', $sweeps_before,
	'c: the worker swept meanwhile');

kill 'USR1', $child;
is(IgWire->wait_child($child), 0,
	'c: the slow reader got every row and committed');
ig_wait_unblocked($node, $slow_waiter_pid, 'c: the waiter proceeds once the reader commits');
$slow_waiter->query_safe('SELECT 1');
is(ig_value($node, 'SELECT v FROM s WHERE id = 1'), '11', 'c: both updates committed');
is(ig_history($node, $c_pid), '', 'c: never in the history');
$c->close;

#
# d. Checked now: swept past blocking_timeout since its silence began,
# still there, under the idle rule.
#
my $d_since = ig_value($node, "SELECT silent_since FROM idle_guard_report() WHERE pid = $d_pid");
ig_wait_sweep_past($node, $d_since, $blocking_ms + 500,
	'd: the worker swept after blocking_timeout of its silence');
ok(ig_pid_alive($node, $d_pid), 'd: the unread client nobody waits on is alive');
is( ig_value($node,
		"SELECT wait_event, silent_reason, blocked_total, rule, "
		  . "deadline = silent_since + interval '1 hour', action "
		  . "FROM idle_guard_report() WHERE pid = $d_pid"),
	'ClientWrite|client not reading|0|idle|t|terminate',
	'd: report: client not reading, nobody blocked, idle rule in 1h');
is(ig_history($node, $d_pid), '', 'd: never in the history');
$d->close;

is(ig_value($node, 'SELECT terminated FROM idle_guard_stats()'), $terminated_before,
	'c, d: no termination after a and b');

$node->stop;
done_testing();
