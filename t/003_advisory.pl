# Copyright (c) 2026, idle_guard developers
#
# Locks that live only in the main lock table count.  A silent session
# whose only lock is a transaction-level advisory lock (no xid, no
# fast-path lock) is seen holding it, is seen blocking a session that waits
# for the same advisory lock, and is terminated at blocking_timeout; the
# waiter then gets the lock.  And locks_held counts what pg_locks shows,
# but its own virtualxid/transactionid rows, for a session that holds
# several kinds of locks at once (fast-path, main-table relation, advisory,
# and an xid).

use strict;
use warnings FATAL => 'all';

use FindBin;
use lib $FindBin::RealBin;

use IdleGuardTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $timeout_ms = 3000;

# idle_timeout stays at the default 1h: a session nobody waits on sits
# untouched for the whole test.
my $node = ig_node('advisory',
	'idle_guard.blocking_timeout' => "'${timeout_ms}ms'");
$node->safe_psql('postgres',
	'CREATE TABLE a (id int PRIMARY KEY);'
	  . 'CREATE TABLE b (id int PRIMARY KEY);'
	  . 'CREATE TABLE c (id int PRIMARY KEY);'
	  . 'INSERT INTO a VALUES (1); INSERT INTO b VALUES (1); INSERT INTO c VALUES (1);'
);

# The locks of a backend as pg_locks shows them, less the locks every
# transaction holds on its own virtual and real transaction id.
sub pg_locks_count
{
	my ($pid) = @_;
	return $node->safe_psql('postgres',
		"SELECT count(*) FROM pg_locks WHERE pid = $pid AND granted "
		  . "AND locktype NOT IN ('virtualxid', 'transactionid')");
}

# A session holding several kinds of locks, that nobody waits on.
my ($multi, $multi_pid) = ig_silent_session($node, 'multi',
	'BEGIN; LOCK TABLE a IN SHARE MODE; SELECT * FROM b; '
	  . 'SELECT pg_advisory_xact_lock(1); SELECT * FROM c FOR UPDATE;');

my $multi_count = pg_locks_count($multi_pid);
# a ShareLock; b and b_pkey AccessShareLock; c and c_pkey RowShareLock (the
# planner locks a table's indexes too); advisory lock 1 ExclusiveLock.
is($multi_count, '6', 'the several-locks session holds six locks');
is( $node->safe_psql('postgres',
		"SELECT string_agg(DISTINCT locktype, ',' ORDER BY locktype) FROM pg_locks WHERE pid = $multi_pid"
	),
	'advisory,relation,transactionid,virtualxid',
	'pg_locks shows relation, advisory and xid locks for it');
is( $node->safe_psql('postgres',
		"SELECT bool_or(fastpath) AND bool_or(NOT fastpath) FROM pg_locks "
		  . "WHERE pid = $multi_pid AND locktype = 'relation'"),
	't',
	'some of its relation locks are fast-path, some in the main table');

is( $node->safe_psql('postgres',
		"SELECT locks_held, strongest_lock, blocked_total, backend_xid IS NOT NULL, "
		  . "rule, action, deadline = silent_since + interval '1 hour' "
		  . "FROM idle_guard_report() WHERE pid = $multi_pid"),
	"$multi_count|ExclusiveLock|0|t|idle|terminate|t",
	'report: locks_held equals the pg_locks count, strongest ExclusiveLock, idle rule in 1h'
);

# The advisory-only holder and a session waiting for the same lock.  The
# premise: the waiter waits and the report is read before the holder's
# deadline, by the server's clock; on a loaded machine that misses it, the
# scene is set up again.
my $scene = ig_setup_in_time(
	$node,
	'the waiter waits, and the report is read, before the holder\'s deadline',
	sub {
		my %sc = (offset => -s $node->logfile);
		@sc{qw(terminated skipped)} = split /\|/,
		  $node->safe_psql('postgres', 'SELECT terminated, skipped FROM idle_guard_stats()');
		my ($holder, $holder_pid) = ig_silent_session($node, 'advisory_holder',
			'BEGIN; SELECT pg_advisory_xact_lock(42);');
		my $since = ig_silent_since($node, $holder_pid);
		$sc{locks} = $node->safe_psql('postgres',
			"SELECT string_agg(locktype || ':' || mode || ':' || fastpath, ',' ORDER BY locktype) "
			  . "FROM pg_locks WHERE pid = $holder_pid");
		my ($waiter, $waiter_pid) = ig_waiting_session($node, 'advisory_waiter',
			'SELECT pg_advisory_xact_lock(42);', blocker => $holder_pid);
		$sc{row} = $node->safe_psql('postgres',
			"SELECT locks_held, strongest_lock, blocked_direct, blocked_total, blocked_pids, "
			  . "backend_xid IS NULL, rule, action, silent_for < interval '$timeout_ms ms' "
			  . "FROM idle_guard_report() WHERE pid = $holder_pid");
		$sc{count} = pg_locks_count($holder_pid);
		return {
			%sc,
			ok => ig_before_deadline($node, $since, $timeout_ms),
			holder => $holder, holder_pid => $holder_pid,
			waiter => $waiter, waiter_pid => $waiter_pid,
			end => [ $waiter_pid, $holder_pid ], sessions => [ $waiter, $holder ] };
	});
my ($offset, $holder, $holder_pid, $waiter, $waiter_pid) =
  @$scene{qw(offset holder holder_pid waiter waiter_pid)};
is($scene->{locks}, 'advisory:ExclusiveLock:false,virtualxid:ExclusiveLock:true',
	'the holder has no xid and no fast-path lock: only the advisory lock in the main table'
);
is($scene->{row}, "1|ExclusiveLock|1|1|{$waiter_pid}|t|blocking|terminate|t",
	'report shows the advisory-only holder blocking the waiter, before its deadline'
);
is($scene->{count}, '1', 'pg_locks agrees: one lock besides its virtualxid');

ig_wait_gone($node, $holder_pid, 'advisory holder terminated');

# The waiter got the advisory lock and its statement finished.
ig_wait_unblocked($node, $waiter_pid, 'waiter no longer waits');
is(ig_query($waiter, "SELECT 'waiter done'"),
	"\nwaiter done", 'waiter finished pg_advisory_xact_lock(42)');

# The LOG line and the history: one lock, one blocked session, terminated
# by the blocking rule at its deadline.
ig_check_terminated($node, $holder_pid,
	offset => $offset,
	app => 'advisory_holder',
	timeout_ms => $timeout_ms,
	locks => 1,
	label => 'advisory holder');

# Nobody waits on the several-locks session: it is still there, untouched,
# with the same count, after all that.
ok(ig_pid_alive($node, $multi_pid), 'the several-locks session is spared');
is( $node->safe_psql('postgres',
		"SELECT locks_held FROM idle_guard_report() WHERE pid = $multi_pid"),
	pg_locks_count($multi_pid),
	'its locks_held still equals the pg_locks count');
is( $node->safe_psql('postgres',
		"SELECT terminated - $scene->{terminated}, skipped - $scene->{skipped} "
		  . 'FROM idle_guard_stats()'),
	'1|0', 'counters: one more termination');

$multi->query_safe('ROLLBACK');
$multi->quit;
ig_close($holder);
$waiter->quit;
$node->stop;
done_testing();
