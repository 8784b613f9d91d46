# Copyright (c) 2026, idle_guard developers
#
# Session-level advisory locks (pg_advisory_lock()) outlive transactions:
# a session in plain "idle" can hold one.  Leader election and job queues
# do that on purpose, so such a session is judged only while someone waits
# on its lock, only by the blocking rule, and terminated only with
# idle_guard.session_locks = on.  blocking_timeout 2s, idle_timeout 4s:
#	b. an idle session holding a session lock nobody waits on is not
#	   listed, and left alone past idle_timeout;
#	a. once someone waits (session_locks off, the default): listed (state
#	   idle, "session lock", blocking rule, action report), reported once
#	   at blocking_timeout, left alone, the waiter still waiting; the same
#	   for one holding its session lock in an aborted transaction ("idle in
#	   transaction (aborted)");
#	c. reload with session_locks = on: both terminated, their waiters get
#	   the locks, the history says "session lock";
#	d. with session_locks on, a session lock nobody waits on is still left
#	   alone past idle_timeout;
#	e. a session of an exempt role holding a session lock someone waits on
#	   is never terminated (action exempt).

use strict;
use warnings FATAL => 'all';

use FindBin;
use lib $FindBin::RealBin;

use IdleGuardTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $blocking_ms = 2000;
my $idle_ms = 4000;

my $node = ig_node('session_locks',
	'idle_guard.blocking_timeout' => "'${blocking_ms}ms'",
	'idle_guard.idle_timeout' => "'${idle_ms}ms'",
	'idle_guard.exempt_roles' => "'leader'");
$node->safe_psql('postgres', 'CREATE ROLE leader LOGIN;');

# What the history says of a pid: action, rule and reason of each action.
my @history_columns = ('action', 'rule', 'silent_reason');

sub in_report
{
	my ($pid) = @_;
	return ig_value($node, "SELECT count(*) FROM idle_guard_report() WHERE pid = $pid");
}

sub advisory_locks_of
{
	my ($pid) = @_;
	return ig_value($node, "SELECT string_agg(objid::text, ',' ORDER BY objid) FROM pg_locks "
		  . "WHERE pid = $pid AND locktype = 'advisory' AND granted");
}

is(ig_value($node, 'SHOW idle_guard.session_locks'), 'off', 'session_locks defaults to off');

# The holders, all between transactions: A (lock 42), N (lock 50, nobody
# will wait), E (lock 60, exempt role), X (lock 43, then a failed
# transaction).
my ($sa, $a_pid) = ig_silent_session($node, 'leader_a', 'SELECT pg_advisory_lock(42);');
my ($sn, $n_pid) = ig_silent_session($node, 'lonely_n', 'SELECT pg_advisory_lock(50);');
my ($se, $e_pid) = ig_silent_session($node, 'exempt_e', 'SELECT pg_advisory_lock(60);',
	user => 'leader');
my ($sx, $x_pid) = ig_silent_session($node, 'aborted_x',
	'SELECT pg_advisory_lock(43); BEGIN;');
my (undef, $failed) = ig_try_query($sx, 'SELECT 1/0;');
is($failed, 1, 'X: division by zero failed its transaction');

is( ig_value($node,
		"SELECT string_agg(state, ',' ORDER BY pid) FROM pg_stat_activity "
		  . "WHERE pid IN ($a_pid, $n_pid, $e_pid)"),
	'idle,idle,idle', 'A, N, E are plain idle');
is(ig_value($node, "SELECT state FROM pg_stat_activity WHERE pid = $x_pid"),
	'idle in transaction (aborted)', 'X is idle in transaction (aborted)');
is(advisory_locks_of($a_pid) . '|' . advisory_locks_of($x_pid),
	'42|43', 'A holds lock 42, X still holds lock 43 after its abort');

#
# b. Nobody waits: not listed, left alone past idle_timeout.
#
ig_wait_sweep_after($node, $a_pid, $idle_ms + 500);
ok(ig_pid_alive($node, $a_pid), 'b: A alive after a sweep past idle_timeout');
is(in_report($a_pid) . in_report($n_pid) . in_report($x_pid), '000',
	'b: no session lock holder is listed while nobody waits');
is(ig_value($node, 'SELECT guarded_now FROM idle_guard_stats()'), '0',
	'b: the worker guards nobody');

#
# a. Waiters arrive; session_locks off.
#
my $offset = -s $node->logfile;
my ($wa, $wa_pid) = ig_waiting_session($node, 'wait_a', 'SELECT pg_advisory_lock(42);');
my ($wx, $wx_pid) = ig_waiting_session($node, 'wait_x', 'SELECT pg_advisory_lock(43);');
my ($we, $we_pid) = ig_waiting_session($node, 'wait_e', 'SELECT pg_advisory_lock(60);');

ig_wait_for($node,
	"SELECT count(*) = 3 FROM idle_guard_report() WHERE pid IN ($a_pid, $x_pid, $e_pid)",
	't', 'a: the three holders someone waits on are listed');
is( ig_value($node,
		"SELECT state, silent_reason, gid IS NULL, locks_held, strongest_lock, "
		  . "blocked_direct, blocked_total, blocked_pids, rule, action "
		  . "FROM idle_guard_report() WHERE pid = $a_pid"),
	"idle|session lock|t|1|ExclusiveLock|1|1|{$wa_pid}|blocking|report",
	'a: report: A idle, session lock, blocking its waiter, action report');
is( ig_value($node,
		"SELECT state, silent_reason, blocked_pids, rule, action "
		  . "FROM idle_guard_report() WHERE pid = $x_pid"),
	"idle in transaction (aborted)|session lock|{$wx_pid}|blocking|report",
	'a: report: X in its aborted transaction, session lock, action report');
is( ig_value($node,
		"SELECT silent_reason, blocked_pids, rule, action "
		  . "FROM idle_guard_report() WHERE pid = $e_pid"),
	"session lock|{$we_pid}|blocking|exempt",
	'a: report: E of an exempt role: exempt');
is(in_report($n_pid), '0', 'a: N, whom nobody waits on, is not listed');

ig_wait_for($node,
	"SELECT count(*) = 2 FROM idle_guard_history() WHERE pid IN ($a_pid, $x_pid)",
	't', 'a: A and X are reported');
is(ig_history($node, $a_pid, @history_columns), 'reported,blocking,session lock',
	'a: history: A reported, session lock');
is(ig_history($node, $x_pid, @history_columns), 'reported,blocking,session lock',
	'a: history: X reported, session lock');
$node->wait_for_log(qr/idle_guard: [^\n]*pid=$a_pid\b[^\n]*rule=blocking action=report/,
	$offset);
pass('a: LOG line for A: blocking rule, report');

# Sweeps well after the reports: still there, reported once, still waited on.
my $reported_at = ig_value($node, "SELECT max(at) FROM idle_guard_history() WHERE pid = $a_pid");
ig_wait_sweep_past($node, $reported_at, $blocking_ms,
	'a: the worker swept blocking_timeout after the report');
ig_worker_looks_now($node, 'a: and once more');
ok(ig_pid_alive($node, $a_pid) && ig_pid_alive($node, $x_pid),
	'a: A and X alive (session_locks off)');
is(ig_history($node, $a_pid, @history_columns) . ';' . ig_history($node, $x_pid, @history_columns),
	'reported,blocking,session lock;reported,blocking,session lock',
	'a: each reported once');
is( ig_value($node,
		"SELECT string_agg(wait_event_type, ',') FROM pg_stat_activity "
		  . "WHERE pid IN ($wa_pid, $wx_pid, $we_pid)"),
	'Lock,Lock,Lock', 'a: the waiters still wait');
is(ig_value($node, 'SELECT terminated FROM idle_guard_stats()'), '0', 'a: nothing terminated');

#
# c. session_locks = on.
#
$offset = -s $node->logfile;
$node->append_conf('postgresql.conf', "idle_guard.session_locks = on\n");
$node->reload;
ig_wait_gone($node, $a_pid, 'c: A terminated once session_locks is on');
ig_wait_gone($node, $x_pid, 'c: X terminated too');
is(ig_value($node, 'SHOW idle_guard.session_locks'), 'on', 'c: session_locks is on');
ig_wait_unblocked($node, [ $wa_pid, $wx_pid ], 'c: their waiters no longer wait');
$wa->query_safe('SELECT 1');
$wx->query_safe('SELECT 1');
is(advisory_locks_of($wa_pid) . '|' . advisory_locks_of($wx_pid),
	'42|43', 'c: the waiters got locks 42 and 43');
like(ig_history($node, $a_pid, @history_columns), qr/;terminated,blocking,session lock$/,
	'c: history: A terminated, session lock');
like(ig_history($node, $x_pid, @history_columns), qr/;terminated,blocking,session lock$/,
	'c: history: X terminated, session lock');
$node->wait_for_log(qr/idle_guard: [^\n]*pid=$a_pid\b[^\n]*rule=blocking action=terminate/,
	$offset);
pass('c: LOG line for A: blocking rule, terminate');

#
# d. With session_locks on, N (nobody waits) is still left alone.
#
ig_wait_sweep_after($node, $n_pid, $idle_ms + 500);
ok(ig_pid_alive($node, $n_pid), 'd: N alive after a sweep past idle_timeout');
is(in_report($n_pid), '0', 'd: N not listed');
is(ig_history($node, $n_pid, @history_columns), '', 'd: N never in the history');

#
# e. E, exempt, is never terminated.
#
my $e_deadline = ig_value($node,
	"SELECT deadline FROM idle_guard_report() WHERE pid = $e_pid");
ig_wait_sweep_past($node, $e_deadline, 500,
	'e: the worker swept past E\'s deadline with session_locks on');
ok(ig_pid_alive($node, $e_pid), 'e: E (exempt role) alive');
is(ig_value($node, "SELECT action FROM idle_guard_report() WHERE pid = $e_pid"),
	'exempt', 'e: still reported as exempt');
is(ig_value($node, "SELECT wait_event_type FROM pg_stat_activity WHERE pid = $we_pid"),
	'Lock', 'e: its waiter still waits');
unlike(ig_history($node, $e_pid, @history_columns) // '', qr/terminated/, 'e: never terminated');

is(ig_value($node, 'SELECT terminated FROM idle_guard_stats()'), '2',
	'counters: A and X terminated, nobody else');

ig_close($sa);
ig_close($sx);
$sn->quit;
$se->quit;
$wa->quit;
$wx->quit;
ig_close($we);
$node->stop;
done_testing();
