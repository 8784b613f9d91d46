# Copyright (c) 2026, idle_guard developers
#
# The worker's memory stays flat: every sweep allocates in a context that
# is reset when the sweep ends.  Here the worker sweeps every 10 ms (a
# silent lock holder is past its blocking deadline, so the worker polls for
# waiters) and every sweep runs the whole pipeline, lock-table pass and wait
# graph included (another session waits on a lock).  Its private memory
# (RssAnon in /proc) after 1000 more sweeps must not have grown by more
# than a small allowance.

use strict;
use warnings FATAL => 'all';

use FindBin;
use lib $FindBin::RealBin;

use IdleGuardTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

plan skip_all => 'needs /proc/<pid>/status' unless -r '/proc/self/status';

my $node = ig_node('worker_memory',
	'idle_guard.action' => "'report'",
	'idle_guard.blocking_timeout' => "'100ms'",
	'idle_guard.naptime' => "'10ms'");
$node->safe_psql('postgres', 'CREATE TABLE t (a int); CREATE TABLE u (a int);');

# A silent holder that nobody waits on: past its blocking deadline, the
# worker looks for waiters every naptime.
my ($holder, $hpid) = ig_silent_session($node, 'holder', 'BEGIN; SELECT * FROM t;');
# An active session holding a lock, and a waiter on it: every sweep finds a
# lock waiter and runs the lock-table pass.
my ($active, $apid) = ig_silent_session($node, 'active', undef);
ig_send($active, 'BEGIN; LOCK TABLE u; SELECT pg_sleep(600);');
ig_wait_for($node,
	"SELECT wait_event = 'PgSleep' FROM pg_stat_activity WHERE pid = $apid",
	't', 'lock holder is active');
my ($waiter, $wpid) = ig_waiting_session($node, 'waiter', 'SELECT * FROM u;');

my $worker = $node->safe_psql('postgres', 'SELECT worker_pid FROM idle_guard_stats()');

# Private resident memory of the worker, in kB
sub rss_anon
{
	open(my $fh, '<', "/proc/$worker/status") or die "cannot read /proc/$worker/status: $!";
	while (<$fh>)
	{
		return $1 if /^RssAnon:\s+(\d+) kB/;
	}
	die "no RssAnon in /proc/$worker/status";
}

# Warm up: caches, the first allocations of every code path
my $s0 = $node->safe_psql('postgres', 'SELECT sweeps FROM idle_guard_stats()');
ig_wait_for($node, "SELECT sweeps >= $s0 + 200 FROM idle_guard_stats()",
	't', 'worker sweeps every naptime (warm-up)');
is($node->safe_psql('postgres',
		"SELECT (SELECT guarded_now FROM idle_guard_stats()), blocked_total, "
		  . "deadline > now() FROM idle_guard_report() WHERE pid = $hpid"),
	'1|0|t',
	'the holder is guarded, nobody waits on it, not due: the worker keeps polling');
my $rss1 = rss_anon();
my $s1 = $node->safe_psql('postgres', 'SELECT sweeps FROM idle_guard_stats()');

ig_wait_for($node, "SELECT sweeps >= $s1 + 1000 FROM idle_guard_stats()",
	't', '1000 more sweeps');
my $rss2 = rss_anon();
note("worker RssAnon: $rss1 kB after warm-up, $rss2 kB after 1000 more sweeps");
cmp_ok($rss2 - $rss1, '<', 256,
	'worker private memory flat over 1000 sweeps (growth under 256 kB)');
is($node->safe_psql('postgres', 'SELECT worker_pid FROM idle_guard_stats()'),
	$worker, 'same worker throughout');
ok(ig_pid_alive($node, $hpid), 'report mode: the holder was not terminated');

$node->safe_psql('postgres', "SELECT pg_cancel_backend($apid)");
ig_close($holder);
ig_close($active);
ig_close($waiter);
$node->stop;
done_testing();
