# Copyright (c) 2026, idle_guard developers
#
# The worker stays quiet when it must.  With blocking_timeout 1s and
# idle_timeout 4s:
#	a. a silent lock holder nobody waits on is spared at blocking_timeout
#	   (the report shows it under the idle rule) and terminated at
#	   idle_timeout: the positive control that the worker does kill;
#	b. a silent session holding no lock is never touched;
#	c. a session in "idle in transaction (aborted)" is never touched;
#	d. an active query holding a lock someone waits on is never touched.
# Each "never touched" is checked after the worker has swept past the
# deadline that would apply, with the worker running and its sweep counter
# advancing, so that it cannot pass because nobody looked.

use strict;
use warnings FATAL => 'all';

use FindBin;
use lib $FindBin::RealBin;

use IdleGuardTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $blocking_ms = 1000;
my $idle_ms = 4000;
my $margin_ms = 500;

my $node = ig_node('quiet',
	'idle_guard.blocking_timeout' => "'${blocking_ms}ms'",
	'idle_guard.idle_timeout' => "'${idle_ms}ms'");
$node->safe_psql('postgres',
	'CREATE TABLE t (a int); INSERT INTO t VALUES (1), (2);'
	  . 'CREATE TABLE u (a int); INSERT INTO u VALUES (1);');

# The worker runs: idle_guard_stats() names the idle_guard background
# process that pg_stat_activity shows.
ig_wait_for($node,
	"SELECT s.worker_pid = a.pid FROM idle_guard_stats() s "
	  . "JOIN pg_stat_activity a ON a.backend_type = 'idle_guard'",
	't', 'the idle_guard worker is running');

sub sweeps
{
	return $node->safe_psql('postgres', 'SELECT sweeps FROM idle_guard_stats()');
}

# Locks a backend holds besides its own virtualxid/transactionid.
sub locks_of
{
	my ($pid) = @_;
	return $node->safe_psql('postgres',
		"SELECT count(*) FROM pg_locks WHERE pid = $pid "
		  . "AND locktype NOT IN ('virtualxid', 'transactionid')");
}

sub in_report
{
	my ($pid) = @_;
	return $node->safe_psql('postgres',
		"SELECT count(*) FROM idle_guard_report() WHERE pid = $pid");
}

# ig_wait_sweep_after() waits for a sweep that ended after $pid's silence
# plus the margin; check that the latest sweep also began after the
# deadline itself, i.e. the worker judged the session past its deadline.
sub sweep_began_after
{
	my ($pid, $deadline_ms, $what) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	is( $node->safe_psql('postgres',
			"SELECT s.last_sweep_at - s.last_sweep_ms * interval '1 ms' "
			  . "  > a.state_change + interval '$deadline_ms ms' "
			  . "FROM idle_guard_stats() s, pg_stat_activity a WHERE a.pid = $pid"),
		't', $what);
}

sub state_of
{
	my ($pid) = @_;
	return $node->safe_psql('postgres',
		"SELECT state FROM pg_stat_activity WHERE pid = $pid");
}

my $sweeps_start = sweeps();

# b. silent, holding no lock at all.
my ($nolock, $nolock_pid) = ig_silent_session($node, 'nolock',
	'BEGIN; SELECT 1;');
is(locks_of($nolock_pid), '0', 'b: the lock-free session holds no lock');

# c. silent in a failed transaction: the abort released its lock on t.
my ($aborted, $aborted_pid) = ig_silent_session($node, 'aborted',
	'BEGIN; SELECT * FROM t;');
my (undef, $failed) = ig_try_query($aborted, 'SELECT 1/0;');
is($failed, 1, 'c: division by zero failed the transaction');
is(state_of($aborted_pid), 'idle in transaction (aborted)',
	'c: session is idle in transaction (aborted)');
is(locks_of($aborted_pid), '0', 'c: the abort released its locks');

# a. silent lock holder that nobody waits on.  Past blocking_timeout,
# with nobody waiting: spared, and the report shows why: only the idle
# rule applies.  The premise: the worker's sweep past blocking_timeout and
# what is read after it all come before idle_timeout, by the server's
# clock; on a loaded machine that misses it, the scene is set up again.
my $scene = ig_setup_in_time(
	$node,
	'a: the holder seen past blocking_timeout before idle_timeout',
	sub {
		my %sc;
		$sc{terminated} = $node->safe_psql('postgres', 'SELECT terminated FROM idle_guard_stats()');
		my ($holder, $holder_pid) = ig_silent_session($node, 'holder',
			'BEGIN; SELECT * FROM t;');
		my $since = ig_silent_since($node, $holder_pid);
		$sc{locks} = locks_of($holder_pid);
		$node->poll_query_until('postgres',
			"SELECT last_sweep_at > '$since'::timestamptz "
			  . "+ interval '@{[ $blocking_ms + $margin_ms ]} ms' FROM idle_guard_stats()")
		  or die 'a: no sweep after blocking_timeout';
		$sc{began_after} = $node->safe_psql('postgres',
			"SELECT s.last_sweep_at - s.last_sweep_ms * interval '1 ms' "
			  . "  > '$since'::timestamptz + interval '$blocking_ms ms' "
			  . "FROM idle_guard_stats() s");
		$sc{alive} = ig_pid_alive($node, $holder_pid);
		$sc{row} = $node->safe_psql('postgres',
			"SELECT blocked_total, rule, action, "
			  . "deadline = silent_since + interval '$idle_ms ms', "
			  . "silent_for < interval '$idle_ms ms' "
			  . "FROM idle_guard_report() WHERE pid = $holder_pid");
		$sc{guarded} = $node->safe_psql('postgres', 'SELECT guarded_now FROM idle_guard_stats()');
		return {
			%sc,
			ok => ig_before_deadline($node, $since, $idle_ms),
			holder => $holder, holder_pid => $holder_pid,
			end => [$holder_pid], sessions => [$holder] };
	});
my ($holder, $holder_pid) = @$scene{qw(holder holder_pid)};
cmp_ok($scene->{locks}, '>', 0, 'a: the holder holds a lock');
is($scene->{began_after}, 't', 'a: that sweep began after blocking_timeout');
ok($scene->{alive}, 'a: holder alive after a sweep past blocking_timeout');
is($scene->{row}, '0|idle|terminate|t|t',
	'a: report shows the idle rule, deadline silent_since + idle_timeout');
is($scene->{guarded}, '1', 'a: the worker guards one session (not the lock-free ones)');
my $sweeps_a = sweeps();
cmp_ok($sweeps_a, '>', $sweeps_start, 'a: the worker has been sweeping');

# a: positive control: at idle_timeout the worker does terminate it.
ig_wait_gone($node, $holder_pid, 'a: holder terminated at idle_timeout');
my ($h_ms, $h) = split /,/, ig_history($node, $holder_pid,
	'extract(epoch FROM silent_for) * 1000', 'rule', 'action', 'blocked_total'), 2;
is($h, 'idle,terminated,0',
	'a: history: terminated by the idle rule, nobody blocked');
cmp_ok($h_ms, '>=', $idle_ms, 'a: not acted on before idle_timeout');
cmp_ok($h_ms, '<', $idle_ms + IG_LATE_MS, 'a: acted on soon after idle_timeout');

# b and c: the worker has swept past idle_timeout and they are untouched.
ig_wait_sweep_after($node, $nolock_pid, $idle_ms + $margin_ms);
ig_wait_sweep_after($node, $aborted_pid, $idle_ms + $margin_ms);
sweep_began_after($nolock_pid, $idle_ms,
	'b: that sweep began after idle_timeout');
sweep_began_after($aborted_pid, $idle_ms,
	'c: that sweep began after idle_timeout');
ok(ig_pid_alive($node, $nolock_pid),
	'b: lock-free session alive after a sweep past idle_timeout');
ok(ig_pid_alive($node, $aborted_pid),
	'c: aborted session alive after a sweep past idle_timeout');
is(state_of($nolock_pid), 'idle in transaction', 'b: still idle in transaction');
is(state_of($aborted_pid), 'idle in transaction (aborted)',
	'c: still idle in transaction (aborted)');
is(in_report($nolock_pid), '0', 'b: not in the report');
is(in_report($aborted_pid), '0', 'c: not in the report');
is( $node->safe_psql('postgres',
		"SELECT count(*) FROM idle_guard_history() "
		  . "WHERE pid IN ($nolock_pid, $aborted_pid)"),
	'0',
	'b, c: never in the history');
# A sweep after a's end, whatever the sweeps above saw (b and c went
# silent before a, and before any attempt of a that came too late): it
# guards neither.
ig_worker_looks_now($node, 'b, c: the worker guards no session', guarded => 0);
my $sweeps_bc = sweeps();
cmp_ok($sweeps_bc, '>', $sweeps_a, 'b, c: the worker kept sweeping');

# d. an active query that holds an AccessExclusiveLock on u, and a session
# waiting for it.  The sleep is long and is cancelled below, so the
# transaction never goes silent while it holds the lock.
my ($active, $active_pid) = ig_silent_session($node, 'active', undef);
ig_send($active,
	'BEGIN; LOCK TABLE u IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(600);');
ig_wait_for($node,
	"SELECT state = 'active' AND wait_event = 'PgSleep' "
	  . "FROM pg_stat_activity WHERE pid = $active_pid",
	't', 'd: the locking query is active, sleeping');
my ($reader, $reader_pid) = ig_waiting_session($node, 'u_reader',
	'SELECT count(*) FROM u;');
is($node->safe_psql('postgres', "SELECT pg_blocking_pids($reader_pid)"),
	"{$active_pid}", 'd: the reader waits on the active session');

ig_wait_sweep_after($node, $active_pid, $blocking_ms + $margin_ms);
sweep_began_after($active_pid, $blocking_ms,
	'd: that sweep began after blocking_timeout');
ok(ig_pid_alive($node, $active_pid),
	'd: active session alive after a sweep past blocking_timeout');
is( $node->safe_psql('postgres',
		"SELECT state, wait_event FROM pg_stat_activity WHERE pid = $active_pid"),
	'active|PgSleep',
	'd: its query is still running');
is($node->safe_psql('postgres', "SELECT pg_blocking_pids($reader_pid)"),
	"{$active_pid}", 'd: the reader still waits on it');
is(in_report($active_pid), '0', 'd: not in the report');
cmp_ok(sweeps(), '>', $sweeps_bc, 'd: the worker kept sweeping');

# d: cancel the sleep; the failed transaction releases the lock and the
# reader proceeds.
is($node->safe_psql('postgres', "SELECT pg_cancel_backend($active_pid)"),
	't', 'd: cancel the sleep');
ig_wait_unblocked($node, $reader_pid, 'd: the reader no longer waits');
is(ig_query($reader, "SELECT 'reader done'"),
	"1\nreader done", 'd: the reader got its result');
ok(ig_pid_alive($node, $active_pid), 'd: the cancelled session is still connected');

# Nothing but the positive control was ever acted on.
is( $node->safe_psql('postgres',
		"SELECT terminated - $scene->{terminated}, reported, skipped FROM idle_guard_stats()"),
	'1|0|0', 'counters: one termination (a), nothing else');
ok(ig_pid_alive($node, $nolock_pid), 'b: lock-free session alive at the end');
ok(ig_pid_alive($node, $aborted_pid), 'c: aborted session alive at the end');

$nolock->query_safe('COMMIT');
$nolock->quit;
$aborted->query('ROLLBACK');
$aborted->quit;
$active->query('ROLLBACK');
$active->quit;
$reader->quit;
ig_close($holder);
$node->stop;
done_testing();
