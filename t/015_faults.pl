# Copyright (c) 2026, idle_guard developers
#
# Faults under load, part 1 (issue 7):
#
# 1. The worker is terminated while sessions are silent.  It restarts after
#    its restart interval; the new worker terminates the blocking session
#    whose deadline passed while no worker ran, and leaves alone the
#    silent holder nobody waits on, the silent session without locks, and
#    the blocking session that woke up during the gap.
# 2. A bad value for every idle_guard setting is written into
#    postgresql.conf and reloaded while sessions are silent.  Each one is
#    rejected in the log, the old value stays in force, and the worker
#    keeps running: it still terminates a blocking session at the old
#    blocking_timeout and spares a holder nobody waits on.
# 3. max_connections is reached.  The worker is a background worker, not a
#    client connection: it still terminates the blocking session; the
#    report still works through a superuser connection in a reserved slot;
#    the other sessions are untouched.

use strict;
use warnings FATAL => 'all';

use FindBin;
use lib $FindBin::RealBin;

use IdleGuardTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

# max_connections 10 with 3 reserved for superusers: 7 ordinary slots.
my $node = ig_node('faults', max_connections => '10');
$node->safe_psql('postgres',
	'CREATE TABLE accounts (id int PRIMARY KEY, balance int);'
	  . 'INSERT INTO accounts SELECT g, 100 FROM generate_series(1, 10) g;'
	  . 'CREATE ROLE app LOGIN; GRANT ALL ON accounts TO app;');

# silent_ms($pid): how long that backend has been in its current state
sub silent_ms
{
	my ($pid) = @_;
	return $node->safe_psql('postgres',
		"SELECT (extract(epoch FROM clock_timestamp() - state_change) * 1000)::int "
		  . "FROM pg_stat_activity WHERE pid = $pid");
}

# -----------------------------------------------------------------------
# 1. The worker terminated while sessions are silent
# -----------------------------------------------------------------------
# The scene's premises, each checked with the server's clock, are the
# test's speed, not idle_guard's behaviour; on a loaded machine the scene
# is set up again (ig_setup_in_time):
#  - the worker is terminated before the blocker's deadline (2 s after its
#    silence began), so that no worker ran when it became due;
#  - the waker goes silent past its deadline and wakes up before the next
#    worker starts (5 s restart interval), so that no worker saw it due.
my $blocking_ms = 2000;
my $scene = ig_setup_in_time(
	$node,
	'1. the worker ended before the deadline, the waker woke in the gap',
	sub {
		$node->poll_query_until('postgres',
			'SELECT worker_pid IS NOT NULL FROM idle_guard_stats()')
		  or die 'no worker runs';
		my %sc = (worker1 => ig_value($node, 'SELECT worker_pid FROM idle_guard_stats()'));
		my ($blocker, $blocker_pid) = ig_silent_session($node, 'blocker',
			'BEGIN; UPDATE accounts SET balance = balance - 1 WHERE id = 1;');
		my $since = ig_silent_since($node, $blocker_pid);
		my ($b_waiter, $b_waiter_pid) = ig_waiting_session($node, 'blocker_waiter',
			'UPDATE accounts SET balance = balance + 1 WHERE id = 1;',
			blocker => $blocker_pid);
		my ($waker, $waker_pid) = ig_silent_session($node, 'waker',
			'BEGIN; UPDATE accounts SET balance = balance - 1 WHERE id = 2;');
		my ($w_waiter, $w_waiter_pid) = ig_waiting_session($node, 'waker_waiter',
			'UPDATE accounts SET balance = balance + 1 WHERE id = 2;',
			blocker => $waker_pid);
		my ($lonely, $lonely_pid) = ig_silent_session($node, 'lonely',
			'BEGIN; UPDATE accounts SET balance = balance - 1 WHERE id = 3;');
		my ($nolock, $nolock_pid) = ig_silent_session($node, 'nolock', 'BEGIN; SELECT 1;');
		%sc = (%sc,
			blocker => $blocker, blocker_pid => $blocker_pid,
			b_waiter => $b_waiter, b_waiter_pid => $b_waiter_pid,
			waker => $waker, waker_pid => $waker_pid,
			w_waiter => $w_waiter, w_waiter_pid => $w_waiter_pid,
			lonely => $lonely, lonely_pid => $lonely_pid,
			nolock => $nolock, nolock_pid => $nolock_pid,
			end => [ $b_waiter_pid, $w_waiter_pid, $blocker_pid, $waker_pid,
				$lonely_pid, $nolock_pid ],
			sessions => [ $b_waiter, $w_waiter, $blocker, $waker, $lonely, $nolock ],
			ok => 0);

		# Terminate the worker before the blocking deadline of the first
		# two.  pg_terminate_backend() signals and returns; the clock read
		# after it bounds when the signal was sent.  A sweep judges by its
		# start: the worker, which checks for the signal before each sweep,
		# cannot find the blocker due if signalled before its deadline.
		# 300 ms of margin for a worker descheduled between that check and
		# its sweep's first clock read.
		$sc{offset} = -s $node->logfile;
		my $in_time = ig_value($node,
			"SELECT pg_terminate_backend($sc{worker1}) "
			  . "AND clock_timestamp() + interval '300 ms' "
			  . "< '$since'::timestamptz + interval '$blocking_ms ms'");
		$node->poll_query_until('postgres',
			'SELECT worker_pid IS NULL FROM idle_guard_stats()')
		  or die 'the worker was not terminated';
		if ($in_time ne 't')
		{
			$sc{why} = 'the worker was terminated after the blocker\'s deadline';
			return \%sc;
		}
		# What the terminated worker did to the blocker: nothing is
		# expected (asserted below).
		$sc{blocker_history} = ig_history($node, $blocker_pid);

		# The waker stays silent past its deadline while no worker runs,
		# then wakes
		my $waker_due = "SELECT state_change < clock_timestamp() - interval '2500 ms' "
		  . "FROM pg_stat_activity WHERE pid = $waker_pid";
		$node->poll_query_until('postgres',
			"SELECT ($waker_due) OR worker_pid IS NOT NULL FROM idle_guard_stats()")
		  or die 'neither the waker silent nor a new worker';
		$sc{waker_silent_ms} = silent_ms($waker_pid);
		(undef, $sc{commit_failed}, my $err) = ig_try_query($waker, 'COMMIT;');
		# No worker yet once the commit returned: the next one, started
		# after that, cannot have seen the waker silent
		my $no_worker = ig_value($node, 'SELECT worker_pid IS NULL FROM idle_guard_stats()');
		if ($no_worker ne 't')
		{
			$sc{why} = 'the next worker started before the waker woke';
			return \%sc;
		}
		$sc{ok} = 1;
		return \%sc;
	});
my $worker1 = $scene->{worker1};
my ($blocker, $blocker_pid) = @$scene{qw(blocker blocker_pid)};
my ($b_waiter, $b_waiter_pid) = @$scene{qw(b_waiter b_waiter_pid)};
my ($waker, $waker_pid) = @$scene{qw(waker waker_pid)};
my ($w_waiter, $w_waiter_pid) = @$scene{qw(w_waiter w_waiter_pid)};
my ($lonely, $lonely_pid) = @$scene{qw(lonely lonely_pid)};
my ($nolock, $nolock_pid) = @$scene{qw(nolock nolock_pid)};
my $offset = $scene->{offset};
pass('worker terminated before the blocking deadline: no worker runs');
is($scene->{blocker_history}, '',
	'the terminated worker had not acted on the blocker, not yet due');
cmp_ok($scene->{waker_silent_ms}, '>=', 2500,
	'waker silent past its deadline during the gap');
is($scene->{commit_failed}, 0, 'the waker woke up and committed, with no worker running');
$w_waiter->query_safe('SELECT 1;');
pass('its waiter proceeded');

ig_wait_for($node,
	"SELECT worker_pid IS NOT NULL AND worker_pid <> $worker1 FROM idle_guard_stats()",
	't', 'a new worker has started');
my $worker2 = $node->safe_psql('postgres', 'SELECT worker_pid FROM idle_guard_stats()');
ig_wait_gone($node, $blocker_pid,
	'the new worker terminates the blocking session that became due in the gap');
$b_waiter->query_safe('SELECT 1;');
pass('its waiter proceeded');
is(ig_history($node, $blocker_pid, 'action', 'rule'), 'terminated,blocking',
	'history: blocker terminated');
$node->wait_for_log(
	qr/\[$worker2\] LOG:  idle_guard: terminating silent session pid=$blocker_pid /,
	$offset);
pass('by the new worker');

ig_wait_sweep_after($node, $lonely_pid, 2500);
ok(ig_pid_alive($node, $lonely_pid), 'lonely holder (nobody waits) not terminated');
ok(ig_pid_alive($node, $nolock_pid), 'silent session without locks not terminated');
ok(ig_pid_alive($node, $waker_pid), 'the session that woke during the gap not terminated');
is(join('', map { ig_history($node, $_) } $waker_pid, $lonely_pid, $nolock_pid),
	'', 'history: nothing for the sessions that must be left alone');
is(ig_query($waker, 'SELECT 42;'), '42', 'the waker still works');

ig_close($blocker);
$_->quit for ($b_waiter, $w_waiter, $waker);
ig_close($lonely);
ig_close($nolock);

# -----------------------------------------------------------------------
# 2. A bad value reloaded into every setting, under load
# -----------------------------------------------------------------------
my %before = map { split /\|/, $_, -1 } split /\n/, $node->safe_psql('postgres',
	"SELECT name, setting FROM pg_settings WHERE name LIKE 'idle_guard.%'");
my %bad = (
	'idle_guard.action' => "'explode'",
	'idle_guard.blocking_timeout' => "'-5'",
	'idle_guard.idle_timeout' => "'soon'",
	'idle_guard.naptime' => "'5ms'",
	'idle_guard.exempt_roles' => "'\"unterminated'",
	'idle_guard.exempt_applications' => "'etl*nightly'",
	'idle_guard.history_size' => "'-3'",
	'idle_guard.prepared_timeout' => "'-1'",
	'idle_guard.session_locks' => "'maybe'",
	'idle_guard.terminate_sqlstate' => "'08006'",
	'idle_guard.unreachable_timeout' => "'-1s'",
	'idle_guard.tcp_keepalives' => "'3h'");
is_deeply([ sort keys %bad ], [ sort keys %before ], 'a bad value for every setting');

# Load: a silent holder nobody waits on, and a few idle clients
my ($holder2, $holder2_pid) = ig_silent_session($node, 'holder2',
	'BEGIN; UPDATE accounts SET balance = balance - 1 WHERE id = 5;');
my @idlers = map { [ ig_silent_session($node, "idler$_", 'SELECT 1;') ] } 1 .. 3;

my $conf = $node->data_dir . '/postgresql.conf';
my $good_conf = slurp_file($conf);
$offset = -s $node->logfile;
my $t_reload = $node->safe_psql('postgres', 'SELECT clock_timestamp()');
$node->append_conf('postgresql.conf',
	join('', map { "$_ = $bad{$_}\n" } sort keys %bad));
$node->reload;
ig_wait_sweep_past($node, $t_reload, 0, 'the worker swept after the bad reload');
for my $name (sort keys %bad)
{
	$node->wait_for_log(
		qr/(invalid value for parameter "\Q$name\E"|\S+ is outside the valid range for parameter "\Q$name\E"|parameter "\Q$name\E" requires a Boolean value|parameter "\Q$name\E" cannot be changed without restarting)/,
		$offset);
	pass("$name: the bad value is rejected in the log");
}
ok($node->log_contains(qr/configuration file .* contains errors/, $offset),
	'the postmaster says the file contains errors');
my %after = map { split /\|/, $_, -1 } split /\n/, $node->safe_psql('postgres',
	"SELECT name, setting FROM pg_settings WHERE name LIKE 'idle_guard.%'");
is_deeply(\%after, \%before, 'every setting keeps its old value');
is($node->safe_psql('postgres', 'SELECT worker_pid FROM idle_guard_stats()'),
	$worker2, 'the worker keeps running (same pid)');

# The old policy still holds: blocking after 2 s, idle after 1 h.  The
# premise: the waiter waits before the blocker's deadline, so that the
# blocker is ended at that deadline, not when the waiter came.
$scene = ig_setup_in_time(
	$node,
	'2. the waiter waits before the blocker\'s deadline',
	sub {
		my ($b, $b_pid) = ig_silent_session($node, 'bad_blocker',
			'BEGIN; UPDATE accounts SET balance = balance - 1 WHERE id = 6;');
		my $since = ig_silent_since($node, $b_pid);
		my ($w, $w_pid) = ig_waiting_session($node, 'bad_waiter',
			'UPDATE accounts SET balance = balance + 1 WHERE id = 6;',
			blocker => $b_pid);
		return {
			ok => ig_before_deadline($node, $since, $blocking_ms),
			why => 'the waiter came after the deadline',
			blocker => $b, blocker_pid => $b_pid, waiter => $w,
			end => [ $w_pid, $b_pid ], sessions => [ $w, $b ] };
	});
my ($bad_blocker, $bad_blocker_pid, $bad_waiter) =
  @$scene{qw(blocker blocker_pid waiter)};
ig_wait_gone($node, $bad_blocker_pid,
	'after the bad reload, a blocking session is still terminated');
my $silent_for = $node->safe_psql('postgres',
	"SELECT extract(epoch FROM silent_for) FROM idle_guard_history() "
	  . "WHERE pid = $bad_blocker_pid AND action = 'terminated' AND rule = 'blocking'");
ok($silent_for >= 2 && $silent_for < 10,
	"... at the old blocking_timeout of 2 s (silent_for $silent_for s)");
ig_wait_sweep_after($node, $holder2_pid, 2500);
ok(ig_pid_alive($node, $holder2_pid), 'a holder nobody waits on is spared');
ok(ig_pid_alive($node, $_->[1]), "idle client $_->[1] untouched") for @idlers;
is($node->safe_psql('postgres', 'SELECT worker_pid FROM idle_guard_stats()'),
	$worker2, 'the worker still runs');

# Back to a good file: no error, the worker still the same
open(my $fh, '>', $conf) or die "cannot write $conf: $!";
print $fh $good_conf;
close($fh);
$offset = -s $node->logfile;
$node->reload;
ig_worker_looks_now($node, 'the worker sweeps after the good reload');
ok(!$node->log_contains(qr/idle_guard\.\w+/, $offset),
	'no complaint about idle_guard settings after the good reload');

$bad_waiter->quit;
ig_close($holder2);
ig_close($_->[0]) for @idlers;
ig_close($bad_blocker);
ig_wait_for($node,
	"SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'",
	'1', 'every session of part 2 has ended');

# -----------------------------------------------------------------------
# 3. max_connections reached
# -----------------------------------------------------------------------
# 7 ordinary slots: a blocking holder, a holder nobody waits on, a silent
# session without locks and 3 idle clients; the waiter, a superuser, in a
# reserved slot.  The blocker goes silent last, and the premise is that
# the slots and the report are checked before its deadline: it still
# holds its slot, and is still there to report.
$scene = ig_setup_in_time(
	$node,
	'3. every slot taken, the report read before the deadline',
	sub {
		my %sc;
		my ($lonely, $lonely_pid) = ig_silent_session($node, 'full_lonely',
			'BEGIN; UPDATE accounts SET balance = balance - 1 WHERE id = 8;', user => 'app');
		my ($nolock, $nolock_pid) = ig_silent_session($node, 'full_nolock',
			'BEGIN; SELECT 1;', user => 'app');
		my @fillers = map { [ ig_silent_session($node, "filler$_", 'SELECT 1;', user => 'app') ] } 1 .. 3;
		my ($blocker, $blocker_pid) = ig_silent_session($node, 'full_blocker',
			'BEGIN; UPDATE accounts SET balance = balance - 1 WHERE id = 7;', user => 'app');
		my $since = ig_silent_since($node, $blocker_pid);
		my ($waiter, $waiter_pid) = ig_waiting_session($node, 'full_waiter',
			'UPDATE accounts SET balance = balance + 1 WHERE id = 7;',
			blocker => $blocker_pid);
		@sc{qw(ret out err)} = $node->psql('postgres', 'SELECT 1', extra_params => [ '-U', 'app' ]);
		$sc{report} = ig_value($node,
			"SELECT blocked_total, action FROM idle_guard_report() WHERE pid = $blocker_pid");
		return {
			%sc,
			ok => ig_before_deadline($node, $since, $blocking_ms),
			why => 'the blocker\'s deadline came during the setup',
			blocker_pid => $blocker_pid, waiter => $waiter,
			lonely => $lonely, lonely_pid => $lonely_pid,
			nolock => $nolock, nolock_pid => $nolock_pid,
			fillers => \@fillers,
			end => [ $waiter_pid, $blocker_pid, $lonely_pid, $nolock_pid,
				map { $_->[1] } @fillers ],
			sessions => [ $waiter, $blocker, $lonely, $nolock, map { $_->[0] } @fillers ] };
	});
my ($full_blocker_pid, $full_waiter) = @$scene{qw(blocker_pid waiter)};
my ($full_lonely, $full_lonely_pid) = @$scene{qw(lonely lonely_pid)};
my ($full_nolock, $full_nolock_pid) = @$scene{qw(nolock nolock_pid)};
my @fillers = @{ $scene->{fillers} };
my ($ret, $out, $err) = @$scene{qw(ret out err)};
isnt($ret, 0, 'every ordinary slot is taken: an ordinary connection is refused');
like($err, qr/remaining connection slots are reserved/, '... for lack of a slot');

# The report through a superuser connection in a reserved slot
is($scene->{report}, '1|terminate',
	'the report works through a reserved superuser connection');

ig_wait_gone($node, $full_blocker_pid,
	'with every slot taken, the worker still terminates the blocking session');
is(ig_history($node, $full_blocker_pid, 'action', 'rule'), 'terminated,blocking',
	'history: terminated');
$full_waiter->query_safe('SELECT 1;');
pass('its waiter proceeded');
ig_wait_sweep_after($node, $full_lonely_pid, 2500);
ok(ig_pid_alive($node, $full_lonely_pid), 'the holder nobody waits on is spared');
ok(ig_pid_alive($node, $full_nolock_pid), 'the silent session without locks is spared');
ok(ig_pid_alive($node, $_->[1]), "filler $_->[1] untouched") for @fillers;
($ret, $out, $err) = $node->psql('postgres', 'SELECT 1', extra_params => [ '-U', 'app' ]);
is($ret, 0, 'the freed slot takes an ordinary connection again');

$full_waiter->quit;
ig_close($_) for ($full_lonely, $full_nolock, map { $_->[0] } @fillers);
ok($node->safe_psql('postgres', 'SELECT worker_pid FROM idle_guard_stats()') == $worker2,
	'no worker restart in the whole test but those it caused');
$node->stop;
done_testing();
