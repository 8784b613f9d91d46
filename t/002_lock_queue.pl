# Copyright (c) 2026, idle_guard developers
#
# A silent session blocks through the lock queue: s1 holds only an
# AccessShareLock, s2's ALTER TABLE waits on it for an AccessExclusiveLock,
# and s3's plain SELECT queues behind s2.  pg_blocking_pids(s3) names only
# s2, but idle_guard counts s3 as blocked by s1 too (blocked_direct 1,
# blocked_total 2), terminates s1 at blocking_timeout, and then both s2's
# ALTER and s3's SELECT complete.  Then a silent snapshot holder that holds
# no lock but its virtual transaction blocks CREATE INDEX CONCURRENTLY,
# and is terminated too.

use strict;
use warnings FATAL => 'all';

use FindBin;
use lib $FindBin::RealBin;

use IdleGuardTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

# Long enough that the report below is read well before the deadline even
# on a loaded machine: three sessions must connect first.
my $timeout_ms = 4000;

my $node = ig_node('lock_queue',
	'idle_guard.blocking_timeout' => "'${timeout_ms}ms'");
$node->safe_psql('postgres',
	'CREATE TABLE t (a int, b text);'
	  . "INSERT INTO t VALUES (1, 'one'), (2, 'two'), (3, 'three');");
# Before the deadline: the report names s1 as the blocker of both.  The
# row must come from before the deadline, or the assertions below would
# race with the termination.  That is the premise, checked with the
# server's clock; on a loaded machine that misses it, the scene is set up
# again (each attempt adds a column of its own: an earlier one's ALTER
# may have gone through).
my $scene = ig_setup_in_time(
	$node,
	's2 and s3 wait, and the report is read, before s1\'s deadline',
	sub {
		my ($attempt) = @_;
		my %sc = (column => "c$attempt", offset => -s $node->logfile);
		@sc{qw(terminated skipped)} = split /\|/,
		  $node->safe_psql('postgres', 'SELECT terminated, skipped FROM idle_guard_stats()');
		my ($s1, $s1_pid) = ig_silent_session($node, 'reader',
			'BEGIN; SELECT * FROM t;');
		my $since = ig_silent_since($node, $s1_pid);
		my ($s2, $s2_pid) = ig_waiting_session($node, 'alterer',
			"ALTER TABLE t ADD COLUMN $sc{column} int;", blocker => $s1_pid);
		my ($s3, $s3_pid) = ig_waiting_session($node, 'queued',
			'SELECT count(*) FROM t;', blocker => $s1_pid);
		$sc{row} = $node->safe_psql('postgres',
			"SELECT state, wait_event, locks_held, strongest_lock, backend_xid IS NULL, "
			  . "blocked_direct, blocked_total, blocked_pids, rule, action, "
			  . "deadline = silent_since + interval '$timeout_ms ms', "
			  . "silent_for < interval '$timeout_ms ms' "
			  . "FROM idle_guard_report() WHERE pid = $s1_pid");
		$sc{s2_blockers} = $node->safe_psql('postgres', "SELECT pg_blocking_pids($s2_pid)");
		$sc{s3_blockers} = $node->safe_psql('postgres', "SELECT pg_blocking_pids($s3_pid)");
		$sc{waiters_listed} = $node->safe_psql('postgres',
			"SELECT count(*) FROM idle_guard_report() WHERE pid IN ($s2_pid, $s3_pid)");
		return {
			%sc,
			ok => ig_before_deadline($node, $since, $timeout_ms),
			s1 => $s1, s1_pid => $s1_pid, s2 => $s2, s2_pid => $s2_pid,
			s3 => $s3, s3_pid => $s3_pid,
			end => [ $s3_pid, $s2_pid, $s1_pid ], sessions => [ $s3, $s2, $s1 ] };
	});
my ($offset, $s1, $s1_pid, $s2, $s2_pid, $s3, $s3_pid) =
  @$scene{qw(offset s1 s1_pid s2 s2_pid s3 s3_pid)};

my $pids = join(',', sort { $a <=> $b } ($s2_pid, $s3_pid));
is($scene->{row},
	"idle in transaction|ClientRead|1|AccessShareLock|t|1|2|{$pids}|blocking|terminate|t|t",
	'report shows s1 blocking s2 directly and s3 through the queue, before its deadline'
);

# What PostgreSQL itself says: s2 waits on s1, s3 waits on s2 only.
is($scene->{s2_blockers}, "{$s1_pid}", 'pg_blocking_pids(s2) is s1');
is($scene->{s3_blockers}, "{$s2_pid}",
	'pg_blocking_pids(s3) is s2 only: s1 is not named');

# The waiters are not reported as silent sessions themselves.
is($scene->{waiters_listed}, '0', 'the waiting sessions are not in the report');

# At the deadline s1 is terminated.
ig_wait_gone($node, $s1_pid, 's1 terminated');
# The LOG line and the history: one termination by the blocking rule, one
# lock held, both waiters counted.
ig_check_terminated($node, $s1_pid,
	offset => $offset,
	app => 'reader',
	timeout_ms => $timeout_ms,
	locks => 1,
	blocked => 2,
	label => 's1');

# s2's ALTER and then s3's SELECT complete.
ig_wait_unblocked($node, [ $s2_pid, $s3_pid ],
	'neither s2 nor s3 waits any more');
is(ig_query($s2, "SELECT 'alter done'"),
	'alter done', 's2 finished its ALTER without error');
is( $node->safe_psql('postgres',
		"SELECT count(*) FROM pg_attribute "
		  . "WHERE attrelid = 't'::regclass AND attname = '$scene->{column}' "
		  . 'AND NOT attisdropped'),
	'1',
	"column $scene->{column} was added");

# s3's pending result arrives ahead of the next query's output.
is(ig_query($s3, "SELECT 'select done'"),
	"3\nselect done", 's3 got the result of its SELECT');

is( $node->safe_psql('postgres',
		"SELECT terminated - $scene->{terminated}, skipped - $scene->{skipped} "
		  . 'FROM idle_guard_stats()'),
	'1|0', 'counters: one more termination, nothing skipped');

ig_close($s1);
$s2->quit;
$s3->quit;

# A silent snapshot blocks CREATE INDEX CONCURRENTLY, which waits on the
# virtual transaction of every older snapshot.  The silent session holds
# no lock but its own vxid, yet someone waits on it: it is blocking.
# The premise as above: the report is read before the deadline (each
# attempt builds an index of its own).
$scene = ig_setup_in_time(
	$node,
	'CREATE INDEX CONCURRENTLY waits, and the report is read, before the deadline',
	sub {
		my ($attempt) = @_;
		my $index = "t_a_idx$attempt";
		my ($rr, $rr_pid) = ig_silent_session($node, 'snapshot',
			'BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT 1;');
		my $since = ig_silent_since($node, $rr_pid);
		my ($cic, $cic_pid) = ig_waiting_session($node, 'cic',
			"CREATE INDEX CONCURRENTLY $index ON t (a);", blocker => $rr_pid);
		my $row = $node->safe_psql('postgres',
			"SELECT locks_held, backend_xid IS NULL, blocked_direct, "
			  . "blocked_pids, rule, action "
			  . "FROM idle_guard_report() WHERE pid = $rr_pid");
		return {
			ok => ig_before_deadline($node, $since, $timeout_ms),
			index => $index, row => $row,
			rr => $rr, rr_pid => $rr_pid, cic => $cic, cic_pid => $cic_pid,
			end => [ $cic_pid, $rr_pid ], sessions => [ $cic, $rr ] };
	});
my ($rr, $rr_pid, $cic, $cic_pid) = @$scene{qw(rr rr_pid cic cic_pid)};
is($scene->{row}, "0|t|1|{$cic_pid}|blocking|terminate",
	'report: a snapshot that blocks CREATE INDEX CONCURRENTLY');
ig_wait_gone($node, $rr_pid, 'silent snapshot terminated');
ig_wait_for($node,
	"SELECT count(*) FROM pg_indexes WHERE indexname = '$scene->{index}'",
	'1', 'CREATE INDEX CONCURRENTLY completed');
is(ig_history($node, $rr_pid, 'rule', 'action', 'locks_held', 'blocked_total'),
	'blocking,terminated,0,1', 'history: the snapshot holder');

ig_close($rr);
$cic->quit;
$node->stop;
done_testing();
