# Copyright (c) 2026, idle_guard developers
#
# The worker is a background worker of type 'idle_guard', visible in
# pg_stat_activity and named by idle_guard_stats().  When it is terminated
# with pg_terminate_backend(), idle_guard_stats() shows no worker, the
# postmaster starts a new one (another pid) after the restart interval of
# 5 seconds, the counters carry on, and the new worker acts: a blocking
# silent session is terminated afterwards.  While no worker runs, the
# report says its action is not enforced.

use strict;
use warnings FATAL => 'all';

use FindBin;
use lib $FindBin::RealBin;

use IdleGuardTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = ig_node('worker_restart');
$node->safe_psql('postgres',
	'CREATE TABLE accounts (id int PRIMARY KEY, balance int);'
	  . 'INSERT INTO accounts VALUES (1, 100);');

ig_wait_for($node,
	"SELECT worker_pid IS NOT NULL AND sweeps > 0 FROM idle_guard_stats()",
	't', 'worker running and sweeping');
my ($old_pid, $old_started, $sweeps) = split /\|/,
  $node->safe_psql('postgres',
	'SELECT worker_pid, worker_started_at, sweeps FROM idle_guard_stats()');

is( $node->safe_psql('postgres',
		"SELECT backend_type, application_name, datname IS NULL "
		  . "FROM pg_stat_activity WHERE pid = $old_pid"),
	'idle_guard|idle_guard worker|t',
	'pg_stat_activity: backend_type idle_guard, connected to no database');
is( $node->safe_psql('postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'idle_guard'"),
	'1',
	'exactly one worker');
ok($node->log_contains(qr/idle_guard worker started/), 'start is logged');

#
# Terminate the worker.
#
my $offset = -s $node->logfile;
my $t_kill = $node->safe_psql('postgres',
	"SELECT clock_timestamp() FROM pg_terminate_backend($old_pid) AS t WHERE t");
isnt($t_kill, '', 'pg_terminate_backend(worker_pid) succeeded');

# The restart interval is 5s, so the gap is visible.
ig_wait_for($node,
	"SELECT worker_pid IS NULL FROM idle_guard_stats()",
	't', 'no worker right after the termination');
ig_wait_for($node,
	"SELECT count(*) = 0 FROM pg_stat_activity WHERE backend_type = 'idle_guard'",
	't', 'no worker in pg_stat_activity');
$node->wait_for_log(
	qr/background worker "idle_guard" \(PID $old_pid\) exited with exit code 1/,
	$offset);
pass('the postmaster saw the worker exit');

ig_wait_for($node,
	"SELECT worker_pid IS NOT NULL AND worker_pid <> $old_pid "
	  . "FROM idle_guard_stats()",
	't', 'a new worker has started');
my ($new_pid, $new_started) = split /\|/, $node->safe_psql('postgres',
	'SELECT worker_pid, worker_started_at FROM idle_guard_stats()');
is( $node->safe_psql('postgres',
		"SELECT string_agg(pid::text, ',') FROM pg_stat_activity "
		  . "WHERE backend_type = 'idle_guard'"),
	$new_pid,
	'pg_stat_activity shows the new worker only');
my $gap_ms = $node->safe_psql('postgres',
	"SELECT (extract(epoch FROM '$new_started'::timestamptz - '$t_kill') * 1000)::float8"
);
cmp_ok($gap_ms, '>=', 4500, 'restarted after the restart interval (5s) ...');
cmp_ok($gap_ms, '<', 30000, '... not much later');
$node->wait_for_log(qr/idle_guard worker started/, $offset);
pass('the new worker logs its start');

ig_wait_for($node, "SELECT sweeps > $sweeps FROM idle_guard_stats()",
	't', 'the sweep counter carries on');

#
# The new worker acts.
#
my ($holder, $pid) = ig_silent_session($node, 'forgetful',
	'BEGIN; UPDATE accounts SET balance = balance - 10 WHERE id = 1;');
# On a loaded machine the writer may come after the holder's deadline: the
# holder is then ended as soon as the writer waits, and the writer may not
# be seen waiting.  That is no failure here: this part checks who ends it.
my ($writer, $writer_pid) = ig_waiting_session($node, 'writer',
	'UPDATE accounts SET balance = balance + 1 WHERE id = 1;',
	blocker => $pid);
ig_wait_gone($node, $pid, 'blocking silent session terminated by the new worker');
$node->wait_for_log(
	qr/\[$new_pid\] LOG:  idle_guard: terminating silent session pid=$pid /,
	$offset);
pass('the LOG line comes from the new worker');
is(ig_history($node, $pid), 'terminated', 'history records it');
is($node->safe_psql('postgres', 'SELECT terminated FROM idle_guard_stats()'),
	'1', 'stats count it');
$writer->query_safe('SELECT 1');
is($node->safe_psql('postgres', 'SELECT balance FROM accounts'),
	'101', 'the writer proceeded');

ig_close($holder);
$writer->quit;

#
# A restarted worker remembers what it did: in report mode, a silent
# episode reported before the restart is not reported again after it.
#
$node->safe_psql('postgres', "ALTER SYSTEM SET idle_guard.action = 'report'");
$node->safe_psql('postgres', 'SELECT pg_reload_conf()');
ig_wait_for($node, "SELECT current_setting('idle_guard.action')",
	'report', 'reloaded into report mode');
$offset = -s $node->logfile;
my ($quiet, $quiet_pid) = ig_silent_session($node, 'reported_once',
	'BEGIN; UPDATE accounts SET balance = balance - 10 WHERE id = 1;');
my ($waiter, $waiter_pid) = ig_waiting_session($node, 'waiter2',
	'UPDATE accounts SET balance = balance + 1 WHERE id = 1;');
ig_wait_for($node,
	"SELECT count(*) FROM idle_guard_history() WHERE pid = $quiet_pid",
	'1', 'reported once');

is( $node->safe_psql('postgres',
		"SELECT action, enforced FROM idle_guard_report() WHERE pid = $quiet_pid"),
	'report|t', 'report: the action is enforced while a worker runs');
$node->safe_psql('postgres', "SELECT pg_terminate_backend($new_pid)");
# Between workers, the report says so: nothing carries out its action.
ig_wait_for($node, 'SELECT worker_pid IS NULL FROM idle_guard_stats()',
	't', 'no worker between the two');
is( $node->safe_psql('postgres',
		"SELECT action, enforced FROM idle_guard_report() WHERE pid = $quiet_pid"),
	'report|f', 'report: with no worker, the action is not enforced');
ig_wait_for($node,
	"SELECT worker_pid IS NOT NULL AND worker_pid <> $new_pid "
	  . "FROM idle_guard_stats()",
	't', 'a third worker has started');
my $third_pid = $node->safe_psql('postgres',
	'SELECT worker_pid FROM idle_guard_stats()');
# it sweeps at once when it starts, and again at least every naptime while
# a session past its blocking deadline is silent
my $restarted = $node->safe_psql('postgres',
	'SELECT worker_started_at FROM idle_guard_stats()');
ig_wait_sweep_past($node, $restarted, 300,
	'the new worker has swept the still-silent session');
ok(ig_pid_alive($node, $quiet_pid), 'report mode: still not terminated');
is( $node->safe_psql('postgres',
		"SELECT count(*) FROM idle_guard_history() WHERE pid = $quiet_pid"),
	'1', 'not reported a second time after the worker restart');
my @lines = grep { /silent session holds locks pid=$quiet_pid / }
  split /\n/, slurp_file($node->logfile, $offset);
is(scalar(@lines), 1, 'one LOG line for the episode, across workers');

ig_close($quiet);
ig_close($waiter);
$node->stop;
done_testing();
