# Copyright (c) 2026, idle_guard developers
#
# Faults, part 2 (issue 7):
#
# 1. The history ring wraps many times: with history_size 8, one session
#    is reported in 50 silences, then terminated.  The history holds
#    exactly the newest 8 actions, oldest first, and the counters count
#    all of them.  A silent session without locks never appears.
# 2. The server is restarted, fast and immediate, several times, while
#    silent sessions and their waiters are connected.  No server process
#    crashes, recovery after the immediate stops is clean, the history and
#    counters survive the fast restarts only, and after every restart the
#    worker runs and acts.
# 3. Targets that exit between the check and the signal.  There is no
#    injection point, so: rounds of silent lock holders that each end on
#    their own, by PostgreSQL's idle_in_transaction_session_timeout, at a
#    moment spread around idle_guard's deadline (idle_timeout).  Those
#    that end well before the deadline have no history entry; those that
#    end well after it are terminated by idle_guard; every backend that
#    died of a SIGTERM has its "terminated" history entry (nobody else was
#    signalled); bystanders, the worker and the postmaster are untouched.

use strict;
use warnings FATAL => 'all';

use FindBin;
use lib $FindBin::RealBin;

use IdleGuardTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = ig_node('faults_restart',
	'idle_guard.history_size' => '8',
	'idle_guard.action' => "'report'",
	'idle_guard.idle_timeout' => "'200ms'",
	'idle_guard.blocking_timeout' => "'1h'");
$node->safe_psql('postgres',
	'CREATE TABLE t (a int); INSERT INTO t VALUES (1);'
	  . 'CREATE TABLE accounts (id int PRIMARY KEY, balance int);'
	  . 'INSERT INTO accounts SELECT g, 100 FROM generate_series(1, 10) g;');

# set_policy(%settings): ALTER SYSTEM each setting, reload, wait until the
# worker has swept with the new values
sub set_policy
{
	my (%settings) = @_;
	$node->safe_psql('postgres', "ALTER SYSTEM SET $_ = '$settings{$_}'")
	  for sort keys %settings;
	ig_worker_looks_now($node, 'policy: '
		  . join(', ', map { "$_ = $settings{$_}" } sort keys %settings));
}

# -----------------------------------------------------------------------
# 1. The history ring wraps
# -----------------------------------------------------------------------
my ($bystander, $bystander_pid) = ig_silent_session($node, 'bystander', 'BEGIN; SELECT 1;');
my ($s, $pid) = ig_silent_session($node, 'wrapper', 'BEGIN; SELECT * FROM t;');
my @since;    # start of each silence, as the server shows it
my $n = 50;
for my $i (1 .. $n)
{
	$s->query_safe('SELECT * FROM t;') if $i > 1;
	push @since, $node->safe_psql('postgres',
		"SELECT state_change FROM pg_stat_activity WHERE pid = $pid");
	# one report per silence: poll without a test assertion per round
	$node->poll_query_until('postgres',
		"SELECT reported >= $i FROM idle_guard_stats()")
	  or die "silence $i was not reported";
}
pass("$n silences reported");
is($node->safe_psql('postgres', 'SELECT reported FROM idle_guard_stats()'),
	$n, "stats count all $n reports");
# The last silence escalates once from report to terminate
set_policy('idle_guard.action' => 'terminate');
ig_wait_gone($node, $pid, 'the last silence is terminated after the switch to terminate');
ig_close($s);

my @hist = split /\n/, $node->safe_psql('postgres',
	"SELECT pid, action, (record->>'silent_since')::timestamptz FROM idle_guard_history()");
is(scalar(@hist), 8, 'the history holds exactly history_size (8) entries');
# silences 44 to 50 reported, then silence 50 terminated
my @want = ((map { "$pid|reported|$since[$_]" } ($n - 7) .. ($n - 1)),
	"$pid|terminated|$since[-1]");
is_deeply(\@hist, \@want,
	'the newest 8 actions, oldest first: the last 7 reports and the termination');
is($node->safe_psql('postgres',
		"SELECT bool_and(a < b) FROM (SELECT at AS a, lead(at) OVER (ORDER BY at) AS b "
		  . "FROM idle_guard_history()) x WHERE b IS NOT NULL"),
	't', 'history in order of time');
is($node->safe_psql('postgres', 'SELECT reported, terminated FROM idle_guard_stats()'),
	"$n|1", 'stats count every action, not only those the ring keeps');
ok(ig_pid_alive($node, $bystander_pid), 'silent session without locks untouched');
is($node->safe_psql('postgres',
		"SELECT count(*) FROM idle_guard_history() WHERE pid = $bystander_pid"),
	'0', '... and never in the history');
ig_close($bystander);

# -----------------------------------------------------------------------
# 2. Fast and immediate restarts with silent sessions connected
# -----------------------------------------------------------------------
set_policy('idle_guard.idle_timeout' => '1h', 'idle_guard.blocking_timeout' => '2s');
my $hist_before = $node->safe_psql('postgres',
	'SELECT string_agg(pid || action || at, \',\' ORDER BY at) FROM idle_guard_history()');

# some_load(): silent sessions, one blocking another, left connected
sub some_load
{
	my ($tag) = @_;
	my ($h, $hpid) = ig_silent_session($node, "holder_$tag",
		'BEGIN; UPDATE accounts SET balance = balance - 1 WHERE id = 1;');
	# (on a loaded machine the waiter may come after the holder's
	# deadline, and the holder be ended before the waiter is seen waiting)
	my ($w) = ig_waiting_session($node, "waiter_$tag",
		'UPDATE accounts SET balance = balance + 1 WHERE id = 1;', blocker => $hpid);
	my ($l) = ig_silent_session($node, "lonely_$tag", 'BEGIN; SELECT * FROM t;');
	return ($h, $w, $l);
}

# worker_acts($tag): after a restart, the worker terminates a blocking
# session and spares a holder nobody waits on
sub worker_acts
{
	my ($tag) = @_;
	ig_wait_for($node, 'SELECT worker_pid IS NOT NULL AND sweeps > 0 FROM idle_guard_stats()',
		't', "$tag: the worker runs");
	my ($h, $hpid) = ig_silent_session($node, "after_$tag",
		'BEGIN; UPDATE accounts SET balance = balance - 1 WHERE id = 2;');
	my ($l, $lpid) = ig_silent_session($node, "after_lonely_$tag",
		'BEGIN; UPDATE accounts SET balance = balance - 1 WHERE id = 3;');
	my ($w) = ig_waiting_session($node, "after_waiter_$tag",
		'UPDATE accounts SET balance = balance + 1 WHERE id = 2;', blocker => $hpid);
	ig_wait_gone($node, $hpid, "$tag: the worker terminates a blocking session");
	$w->query_safe('SELECT 1;');
	ig_wait_sweep_after($node, $lpid, 2500);
	ok(ig_pid_alive($node, $lpid), "$tag: and spares a holder nobody waits on");
	$w->quit;
	ig_close($_) for ($h, $l);
}

my $offset = -s $node->logfile;
for my $round (1 .. 2)
{
	my @load = some_load("fast$round");
	$node->restart;
	ig_close($_) for @load;
	is($node->safe_psql('postgres',
			'SELECT string_agg(pid || action || at, \',\' ORDER BY at) FROM idle_guard_history()'),
		$hist_before, "fast restart $round: the history survives");
	is($node->safe_psql('postgres', 'SELECT reported, terminated FROM idle_guard_stats()'),
		"$n|1", "fast restart $round: the counters survive");
}
worker_acts('after the fast restarts');

for my $round (1 .. 3)
{
	my @load = some_load("immediate$round");
	$node->stop('immediate');
	$node->start;
	ig_close($_) for @load;
	ig_wait_for($node, 'SELECT worker_pid IS NOT NULL FROM idle_guard_stats()',
		't', "immediate restart $round: the worker starts after recovery");
}
ok($node->log_contains(qr/database system was not properly shut down; automatic recovery in progress/, $offset),
	'the immediate stops went through crash recovery');
# After an immediate stop the postmaster still exits normally and writes
# its state file, from shared memory that processes killed mid-update may
# have left torn; pg_control says the stop was not clean, so the next
# start ignores the file.
is($node->safe_psql('postgres', 'SELECT count(*) FROM idle_guard_history()'),
	'0', 'after an immediate stop the history is empty (it survives clean restarts only)');
ok($node->log_contains(qr/idle_guard: ignoring file "pg_stat\/idle_guard.stat"\n.*DETAIL:  The server did not shut down cleanly\./, $offset),
	'... and the log says why');
worker_acts('after the immediate restarts');
my $log = slurp_file($node->logfile, $offset);
unlike($log, qr/terminated by signal|PANIC|TRAP:|was terminated by exception/,
	'no server process crashed over the restarts');

# -----------------------------------------------------------------------
# 3. Targets that exit on their own around the deadline
# -----------------------------------------------------------------------
# a history large enough for every racer
$node->safe_psql('postgres', "ALTER SYSTEM SET idle_guard.history_size = 200");
$node->restart;
set_policy('idle_guard.idle_timeout' => '2s', 'idle_guard.blocking_timeout' => '0');
$node->safe_psql('postgres', 'SELECT idle_guard_reset()');
my $worker = $node->safe_psql('postgres', 'SELECT worker_pid FROM idle_guard_stats()');
my $postmaster = $node->safe_psql('postgres', 'SELECT pg_postmaster_start_time()');
my @bystanders = (
	[ ig_silent_session($node, 'quiet_nolock', 'BEGIN; SELECT 1;') ],
	[ ig_silent_session($node, 'quiet_idle', 'SELECT 1;') ]);

# builtin timeout - idle_guard deadline, in ms
my @jitter = (-500, -300, -150, -20, -5, -2, 0, 1, 2, 3, 4, 6, 10, 20, 150, 300, 500);
my (%jit, %fate);
$offset = -s $node->logfile;
for my $round (1 .. 3)
{
	my @sessions;
	for my $j (@jitter)
	{
		my $ms = 2000 + $j;
		my ($h, $hpid) = ig_silent_session($node, "racer_${round}_$j",
			"SET idle_in_transaction_session_timeout = '${ms}ms'; BEGIN; SELECT * FROM t;");
		$jit{$hpid} = $j;
		push @sessions, $h;
	}
	my $pids = join(',', grep { defined $jit{$_} } keys %jit);
	ig_wait_for($node,
		"SELECT count(*) = 0 FROM pg_stat_activity WHERE pid IN ($pids)",
		't', "round $round: every racer has ended");
	ig_close($_) for @sessions;
}

my $racer_log = slurp_file($node->logfile, $offset);
my %hist_of = map { my ($p, $a) = split /\|/; ($p => $a) } split /\n/,
  $node->safe_psql('postgres',
	"SELECT pid, string_agg(action, ',') FROM idle_guard_history() GROUP BY pid");
my ($early_quiet, $late_acted, $either) = (0, 0, 0);
for my $p (sort keys %jit)
{
	my $j = $jit{$p};
	my $h = $hist_of{$p} // '';
	if ($j <= -150)
	{
		$early_quiet++ if $h eq '';
		is($h, '', "pid $p ended ${j}ms before its deadline: no history entry");
	}
	elsif ($j >= 150)
	{
		$late_acted++ if $h eq 'terminated';
		is($h, 'terminated', "pid $p would end ${j}ms after its deadline: terminated");
	}
	else
	{
		$either++;
		like($h, qr/^(|terminated|skipped)$/, "pid $p ends ${j}ms from its deadline: '$h'");
	}
}
note("racers: $early_quiet quiet before, $late_acted terminated after, $either close calls");
my @sigtermed = $racer_log =~ /\[(\d+)\] \S+ FATAL:  terminating connection due to administrator command/g;
my @wrong = grep { ($hist_of{$_} // '') !~ /terminated/ } @sigtermed;
is_deeply(\@wrong, [], 'every backend that got a SIGTERM has its "terminated" entry');
ok(!(grep { !defined $jit{$_} } keys %hist_of), 'the history names racers only');
ok(ig_pid_alive($node, $_->[1]), "bystander $_->[1] untouched") for @bystanders;
is($node->safe_psql('postgres', 'SELECT worker_pid FROM idle_guard_stats()'),
	$worker, 'the worker kept running');
is($node->safe_psql('postgres', 'SELECT pg_postmaster_start_time()'),
	$postmaster, 'the postmaster kept running (no crash and restart)');
unlike($racer_log, qr/terminated by signal|PANIC|TRAP:/, 'no server process crashed');

ig_close($_->[0]) for @bystanders;
$node->stop;
done_testing();
