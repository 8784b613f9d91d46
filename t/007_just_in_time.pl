# Copyright (c) 2026, idle_guard developers
#
# Deadlines count from the start of the current silence only.
#
# A client that commits shortly before its deadline is not hit: the writer
# it blocked proceeds, nothing is logged or recorded, and the client is
# still connected after the worker has swept past the old deadline.
#
# A client that wakes up before its deadline and goes silent again in the
# same transaction starts a new episode: the report's silent_since and
# deadline move, the worker sweeps at the old deadline and spares it, and
# it is terminated only at the new deadline, with silent_for measured from
# the new silence.

use strict;
use warnings FATAL => 'all';

use FindBin;
use lib $FindBin::RealBin;

use IdleGuardTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

# Milliseconds between two timestamps (text), computed by the server.
sub ms_between
{
	my ($node, $from, $to) = @_;
	return $node->safe_psql('postgres',
		"SELECT (extract(epoch FROM '$to'::timestamptz - '$from'::timestamptz) * 1000)::float8"
	);
}

# Wait until the session has been silent (in its current episode) for
# more than 2 seconds, one second before its 3 second deadline.
sub wait_silent_2s
{
	my ($node, $pid, $what) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	ig_wait_for($node,
		"SELECT now() - state_change > interval '2 s' "
		  . "FROM pg_stat_activity WHERE pid = $pid",
		't', $what);
}

my $node = ig_node('just_in_time', 'idle_guard.blocking_timeout' => "'3s'");

# looks_now(): ig_worker_looks_now without a test assertion, for a setup
# (ig_setup_in_time): make the worker sweep now, wait for a sweep that
# started after that, and return how many silent lock holders it guarded.
sub looks_now
{
	my $t = $node->safe_psql('postgres', 'SELECT clock_timestamp()');
	$node->safe_psql('postgres', 'SELECT pg_reload_conf()');
	$node->poll_query_until('postgres',
		"SELECT last_sweep_at > '$t' FROM idle_guard_stats()")
	  or die 'the worker did not sweep';
	return $node->safe_psql('postgres', 'SELECT guarded_now FROM idle_guard_stats()');
}
$node->safe_psql('postgres',
	'CREATE TABLE accounts (id int PRIMARY KEY, balance int);'
	  . 'INSERT INTO accounts VALUES (1, 100), (2, 100);');
my $offset = -s $node->logfile;

#
# 1. Commit one second before the deadline.
#
# The premises, on a loaded machine too, by the server's clock: the
# setup is done, and the client commits, before its deadline; else the
# scene is set up again.
my $scene = ig_setup_in_time(
	$node,
	'1: set up, and committed, before the deadline',
	sub {
		my %sc;
		@sc{qw(balance acted)} = split /\|/, $node->safe_psql('postgres',
			'SELECT (SELECT balance FROM accounts WHERE id = 1), '
			  . 'reported + terminated + skipped FROM idle_guard_stats()');
		my ($early, $early_pid) = ig_silent_session($node, 'early_bird',
			'BEGIN; UPDATE accounts SET balance = balance - 10 WHERE id = 1;');
		my $silent = ig_silent_since($node, $early_pid);
		my ($writer, $writer_pid) = ig_waiting_session($node, 'writer',
			'UPDATE accounts SET balance = balance + 1 WHERE id = 1;',
			blocker => $early_pid);
		%sc = (%sc, early => $early, early_pid => $early_pid,
			writer => $writer, writer_pid => $writer_pid,
			end => [ $writer_pid, $early_pid ], sessions => [ $writer, $early ]);
		# Without this, a session silent for less than blocking_timeout may
		# never have been seen by the worker, which sweeps every
		# blocking_timeout when idle, and its deadline not be in the
		# worker's schedule.
		$sc{guarded} = looks_now();
		@sc{qw(since deadline)} = split /\|/, $node->safe_psql('postgres',
			"SELECT silent_since, deadline FROM idle_guard_report() WHERE pid = $early_pid"
		);
		# Silent for 2s, one second before its deadline, then it commits
		$node->poll_query_until('postgres',
			"SELECT coalesce((SELECT now() - state_change > interval '2 s' "
			  . "FROM pg_stat_activity WHERE pid = $early_pid), true)")
		  or die 'not silent for 2s';
		$sc{silent_ms} = ig_value($node,
			"SELECT extract(epoch FROM clock_timestamp() - '$silent'::timestamptz) * 1000");
		(undef, $sc{commit_failed}) = ig_try_query($early, 'COMMIT');
		$sc{ok} = ig_before_deadline($node, $silent, 3000);
		$sc{why} = 'the commit came after the deadline';
		return \%sc;
	});
my ($early, $early_pid, $writer, $writer_pid, $since, $deadline) =
  @$scene{qw(early early_pid writer writer_pid since deadline)};
is($scene->{guarded}, '1', 'the worker has seen the silent session');
is(ms_between($node, $since, $deadline), '3000', 'deadline is 3s after silence');
cmp_ok($scene->{silent_ms}, '>=', 2000, 'silent for 2s');
is($scene->{commit_failed}, 0, 'committed before the deadline');

ig_wait_unblocked($node, $writer_pid, 'writer proceeds after the commit');
$writer->query_safe('SELECT 1');

# The worker had this deadline in its schedule: it sweeps then and finds
# nothing to do (the session is no longer silent).
ig_wait_sweep_past($node, $deadline, 0, 'worker swept after the old deadline');
ok(ig_pid_alive($node, $early_pid), 'committed client still connected');
is(ig_query($early, 'SELECT 42;'), '42', 'and usable');
is( $node->safe_psql('postgres',
		"SELECT count(*) FROM idle_guard_history() WHERE pid = $early_pid"),
	'0',
	'no history entry');
unlike(slurp_file($node->logfile, $offset),
	qr/idle_guard: [^\n]*pid=$early_pid\b/, 'no LOG line');
is( $node->safe_psql('postgres',
		"SELECT reported + terminated + skipped - $scene->{acted} FROM idle_guard_stats()"),
	'0',
	'no action at all');
is($node->safe_psql('postgres', 'SELECT balance FROM accounts WHERE id = 1'),
	$scene->{balance} - 9, 'both updates committed');

#
# 2. Wake up before the deadline, go silent again in the same transaction.
#
# The premises, by the server's clock: the setup is done, and the client
# wakes, before the first deadline; the worker's sweep after the old
# deadline and what is read after it come before the new one.  Else the
# scene is set up again.
$scene = ig_setup_in_time(
	$node,
	'2: woke before the old deadline, looked at before the new one',
	sub {
		my %sc;
		my ($dozer, $dozer_pid) = ig_silent_session($node, 'dozer',
			'BEGIN; UPDATE accounts SET balance = balance - 10 WHERE id = 2;');
		my $silent1 = ig_silent_since($node, $dozer_pid);
		my ($writer2, $writer2_pid) = ig_waiting_session($node, 'writer2',
			'UPDATE accounts SET balance = balance + 1 WHERE id = 2;',
			blocker => $dozer_pid);
		%sc = (dozer => $dozer, dozer_pid => $dozer_pid,
			writer2 => $writer2, writer2_pid => $writer2_pid,
			end => [ $writer2_pid, $dozer_pid ], sessions => [ $writer2, $dozer ]);
		$sc{guarded} = looks_now();
		@sc{qw(since1 deadline1 xact1)} = split /\|/, $node->safe_psql('postgres',
			"SELECT silent_since, deadline, xact_start FROM idle_guard_report() WHERE pid = $dozer_pid"
		);
		$node->poll_query_until('postgres',
			"SELECT coalesce((SELECT now() - state_change > interval '2 s' "
			  . "FROM pg_stat_activity WHERE pid = $dozer_pid), true)")
		  or die 'not silent for 2s';
		(undef, $sc{wake_failed}) = ig_try_query($dozer, 'SELECT 1;');
		if (!ig_before_deadline($node, $silent1, 3000))
		{
			$sc{why} = 'it woke after the old deadline';
			return \%sc;
		}
		my $silent2 = ig_silent_since($node, $dozer_pid);
		@sc{qw(since2 deadline2 xact2 rule2)} = split /\|/, $node->safe_psql('postgres',
			"SELECT silent_since, deadline, xact_start, rule FROM idle_guard_report() WHERE pid = $dozer_pid"
		);
		# The worker had the old deadline in its schedule: it sweeps then,
		# finds a new episode that is not due, and spares it.
		$node->poll_query_until('postgres',
			"SELECT last_sweep_at > '$sc{deadline1}'::timestamptz FROM idle_guard_stats()")
		  or die 'no sweep after the old deadline';
		$sc{alive} = ig_pid_alive($node, $dozer_pid);
		$sc{recorded} = $node->safe_psql('postgres',
			"SELECT count(*) FROM idle_guard_history() WHERE pid = $dozer_pid");
		$sc{ok} = $silent2 eq '' || ig_before_deadline($node, $silent2, 3000);
		$sc{why} = 'looked at after the new deadline';
		return \%sc;
	});
my ($dozer, $dozer_pid, $writer2, $writer2_pid) = @$scene{qw(dozer dozer_pid writer2 writer2_pid)};
my ($since1, $deadline1, $xact1) = @$scene{qw(since1 deadline1 xact1)};
my ($since2, $deadline2, $xact2, $rule2) = @$scene{qw(since2 deadline2 xact2 rule2)};
is($scene->{guarded}, '1', 'the worker has seen the silent session');
is($scene->{wake_failed}, 0, 'it woke before the deadline');
is($xact2, $xact1, 'same transaction');
is($rule2, 'blocking', 'still blocking the writer');
cmp_ok(ms_between($node, $since1, $since2), '>=', 2000,
	'silent_since moved to the new silence');
is(ms_between($node, $since2, $deadline2), '3000',
	'new deadline is 3s after the new silence');
pass('worker swept after the old deadline');
ok($scene->{alive}, 'alive after the old deadline');
is($scene->{recorded}, '0', 'nothing recorded at the old deadline');

ig_wait_gone($node, $dozer_pid, 'terminated at the new deadline');
my ($at, $silent_ms) = split /\|/, $node->safe_psql('postgres',
	"SELECT at, (extract(epoch FROM silent_for) * 1000)::float8 FROM idle_guard_history() "
	  . "WHERE pid = $dozer_pid AND action = 'terminated'");
cmp_ok(ms_between($node, $deadline2, $at), '>=', 0,
	'not terminated before the new deadline');
cmp_ok(ms_between($node, $since1, $at), '>=', 3000 + 2000,
	'terminated more than blocking_timeout + the nap after the first silence');
cmp_ok($silent_ms, '>=', 3000, 'silent_for counts from the new silence ...');
cmp_ok($silent_ms, '<', 3000 + IG_LATE_MS, '... not from the first one');
$node->wait_for_log(
	qr/idle_guard: terminating silent session pid=$dozer_pid .* silent_s=3\.\d+ .* rule=blocking action=terminate/,
	$offset);
pass('LOG line says it was silent for 3s');
is( $node->safe_psql('postgres',
		"SELECT count(*) FROM idle_guard_history() WHERE pid = $dozer_pid"),
	'1',
	'one history entry for the dozer');

ig_wait_unblocked($node, $writer2_pid, 'second writer proceeds');
$writer2->query_safe('SELECT 1');

ig_close($dozer);
$early->quit;
$writer->quit;
$writer2->quit;
$node->stop;
done_testing();
