# Copyright (c) 2026, idle_guard developers
#
# idle_guard.action = report: a silent session that blocks a writer past
# blocking_timeout is reported (one LOG line with action=report, a history
# entry 'reported', stats.reported) and never terminated; it is reported
# exactly once per silent episode however many times the worker sweeps
# afterwards, and once more when it runs a statement and goes silent again
# (a new episode).  A reload to action = terminate escalates: the same
# session is then terminated.  With action = off nothing is logged,
# recorded or killed even well past the deadline (the worker either stops
# sweeping or is seen sweeping past it), while the report says action
# 'none'; switching back to terminate acts on the session at once.

use strict;
use warnings FATAL => 'all';

use FindBin;
use lib $FindBin::RealBin;

use IdleGuardTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

# How many lines of the server log, from $offset on, match $re.
sub log_count
{
	my ($node, $offset, $re) = @_;
	my $log = slurp_file($node->logfile, $offset);
	my $n = () = $log =~ /$re/g;
	return $n;
}

sub sweeps
{
	my ($node) = @_;
	return $node->safe_psql('postgres', 'SELECT sweeps FROM idle_guard_stats()');
}

# Wait until the worker has swept $n more times.
sub wait_sweeps
{
	my ($node, $n, $what) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my $target = sweeps($node) + $n;
	ig_wait_for($node, "SELECT sweeps >= $target FROM idle_guard_stats()",
		't', $what);
}

# Set idle_guard.action and reload; wait until new sessions see it.
sub set_action
{
	my ($node, $action) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	$node->safe_psql('postgres',
		"ALTER SYSTEM SET idle_guard.action = '$action'; SELECT pg_reload_conf();"
	);
	ig_wait_for($node, "SELECT current_setting('idle_guard.action') = '$action'",
		't', "reloaded with action = $action");
}

my $node = ig_node(
	'report_mode',
	'idle_guard.action' => "'report'",
	'idle_guard.blocking_timeout' => "'1s'");
$node->safe_psql('postgres',
	'CREATE TABLE accounts (id int PRIMARY KEY, balance int);'
	  . 'INSERT INTO accounts VALUES (1, 100), (2, 100);');
my $offset = -s $node->logfile;

my ($holder, $pid) = ig_silent_session($node, 'forgetful',
	'BEGIN; UPDATE accounts SET balance = balance - 10 WHERE id = 1;');
my ($writer, $writer_pid) = ig_waiting_session($node, 'writer',
	'UPDATE accounts SET balance = balance + 1 WHERE id = 1;');

is( $node->safe_psql('postgres',
		"SELECT rule, action FROM idle_guard_report() WHERE pid = $pid"),
	'blocking|report',
	'report: the blocking silent session will be reported');

#
# Episode 1: reported once.
#
my $report_re =
  qr/idle_guard: silent session holds locks pid=$pid user="\w+" db="postgres" app="forgetful" client=local silent_s=[\d.]+ locks=\d+ blocked=1 rule=blocking action=report reason="idle in transaction" link="local"\n/;
my $any_re = qr/idle_guard: [^\n]* pid=$pid\b/;

$node->wait_for_log($report_re, $offset);
pass('LOG line with action=report');
ig_wait_for($node,
	"SELECT count(*) = 1 FROM idle_guard_history() WHERE pid = $pid",
	't', 'history entry written');
my ($action, $rule, $silent_ms) = split /\|/, $node->safe_psql('postgres',
	"SELECT action, rule, extract(epoch FROM silent_for) * 1000 "
	  . "FROM idle_guard_history() WHERE pid = $pid");
is("$action|$rule", 'reported|blocking', 'history: reported, rule blocking');
cmp_ok($silent_ms, '>=', 1000, 'not reported before blocking_timeout');

# The worker keeps sweeping while the session stays silent and blocking,
# and does not log it again.
wait_sweeps($node, 3, 'worker swept 3 more times');
ok(ig_pid_alive($node, $pid), 'reported session not terminated');
is(log_count($node, $offset, $any_re), 1, 'logged once in its episode');
is(ig_history($node, $pid), 'reported', 'recorded once in its episode');
is( $node->safe_psql('postgres',
		'SELECT reported, terminated, skipped FROM idle_guard_stats()'),
	'1|0|0',
	'stats: one report');
is( $node->safe_psql('postgres',
		"SELECT wait_event_type FROM pg_stat_activity WHERE pid = $writer_pid"),
	'Lock',
	'the writer still waits');

#
# Episode 2: the client runs a statement in the same transaction and goes
# silent again.
#
my $woke_at = ig_query($holder, 'SELECT clock_timestamp();');
ig_wait_for($node,
	"SELECT count(*) = 2 FROM idle_guard_history() WHERE pid = $pid",
	't', 'new silent episode reported');
is(log_count($node, $offset, $report_re), 2, 'second LOG line with action=report');
ok( $node->safe_psql('postgres',
		"SELECT max(at) >= '$woke_at'::timestamptz + interval '1 s' "
		  . "FROM idle_guard_history() WHERE pid = $pid") eq 't',
	'second report at blocking_timeout after the new silence began');
wait_sweeps($node, 3, 'worker swept 3 more times');
ok(ig_pid_alive($node, $pid), 'still not terminated');
is(log_count($node, $offset, $any_re), 2, 'logged once per episode');
is(ig_history($node, $pid), 'reported;reported', 'recorded once per episode');

#
# Escalation: action = terminate terminates the reported session.
#
set_action($node, 'terminate');
ig_wait_gone($node, $pid, 'reported session terminated after reload');
$node->wait_for_log(
	qr/idle_guard: terminating silent session pid=$pid .* rule=blocking action=terminate/,
	$offset);
pass('LOG line for the termination');
is(ig_history($node, $pid), 'reported;reported;terminated',
	'history: reported twice, then terminated');
is( $node->safe_psql('postgres',
		'SELECT reported, terminated, skipped FROM idle_guard_stats()'),
	'2|1|0',
	'stats after escalation');
ig_wait_unblocked($node, $writer_pid, 'writer proceeds');
$writer->query_safe('SELECT 1');
ig_close($holder);

#
# action = off: nothing at all, even well past the deadline.  Version 1.0
# of the worker does not sweep then (it sleeps until the next reload), so
# quietness is shown by the absence of sweeps, log lines and history while
# the session is silent for twice blocking_timeout; with report or
# terminate it sweeps at least every blocking_timeout and at the session's
# deadline.  A worker that does sweep with action = off (1.1 judges each
# session by its own policy, so it keeps sweeping) must be seen sweeping
# past the deadline, and leaving the session alone.
#
set_action($node, 'off');
my $sweeps_off = sweeps($node);
my $history_off =
  $node->safe_psql('postgres', 'SELECT count(*) FROM idle_guard_history()');
my $offset_off = -s $node->logfile;

my ($holder2, $pid2) = ig_silent_session($node, 'forgetful2',
	'BEGIN; UPDATE accounts SET balance = balance - 10 WHERE id = 2;');
my ($writer2, $writer2_pid) = ig_waiting_session($node, 'writer2',
	'UPDATE accounts SET balance = balance + 1 WHERE id = 2;');
is( $node->safe_psql('postgres',
		"SELECT rule, action, deadline = silent_since + interval '1 s' "
		  . "FROM idle_guard_report() WHERE pid = $pid2"),
	'blocking|none|t',
	'report with action = off: rule blocking, action none');
ig_wait_for($node,
	"SELECT silent_for > interval '2 s' AND blocked_total = 1 "
	  . "FROM idle_guard_report() WHERE pid = $pid2",
	't', 'blocking silent session twice past its deadline');
if (sweeps($node) - $sweeps_off <= 1)
{
	pass('action = off: the worker does not sweep');
}
else
{
	ig_wait_sweep_after($node, $pid2, 1000);
}
ok(ig_pid_alive($node, $pid2), 'action = off: not terminated');
is($node->safe_psql('postgres', 'SELECT count(*) FROM idle_guard_history()'),
	$history_off, 'action = off: no history entry');
is(log_count($node, $offset_off, qr/idle_guard: /), 0,
	'action = off: no LOG line');
ok( $node->safe_psql('postgres',
		"SELECT worker_pid IN (SELECT pid FROM pg_stat_activity "
		  . "WHERE backend_type = 'idle_guard') FROM idle_guard_stats()") eq 't',
	'action = off: the worker still runs');

# Switching back on acts on it at once: it has been due all along.
set_action($node, 'terminate');
ig_wait_gone($node, $pid2, 'terminated once action = terminate');
my ($actions2, $silent2_ms) = split /\|/, $node->safe_psql('postgres',
	"SELECT string_agg(action, ','), max(extract(epoch FROM silent_for) * 1000) "
	  . "FROM idle_guard_history() WHERE pid = $pid2");
is($actions2, 'terminated', 'history: only the termination');
cmp_ok($silent2_ms, '>', 2000, 'it had been left alone past its deadline');
$writer2->query_safe('SELECT 1');

ig_close($holder2);
$writer->quit;
$writer2->quit;
$node->stop;
done_testing();
