# Copyright (c) 2026, idle_guard developers
#
# Policy per role, database and session (extension 1.1): each session is
# judged by its own values of idle_guard.action, blocking_timeout and
# idle_timeout, which only superusers or roles granted SET may change.
#
# Cluster default here: action terminate, idle_timeout 2s.  Every check
# that a session is spared waits for a sweep after that session passed the
# default deadline, and sits beside a session on default policy that is
# terminated, so the worker is seen to act.

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use IdleGuardTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $idle_ms = 2000;
my $node = ig_node('session_policy',
	'idle_guard.idle_timeout' => "'${idle_ms}ms'");

$node->safe_psql('postgres', q{
	CREATE TABLE t (id int);
	GRANT SELECT ON t TO PUBLIC;
	CREATE ROLE patient LOGIN;
	ALTER ROLE patient SET idle_guard.idle_timeout = '1h';
	CREATE ROLE plain LOGIN;
	CREATE ROLE granted LOGIN;
	GRANT SET ON PARAMETER idle_guard.idle_timeout TO granted;
	CREATE DATABASE reportdb;
	ALTER DATABASE reportdb SET idle_guard.action = 'report';
	CREATE DATABASE olddb;
});
$node->safe_psql('reportdb', 'CREATE TABLE r (id int); CREATE EXTENSION idle_guard');
$node->safe_psql('olddb', "CREATE EXTENSION idle_guard VERSION '1.0'");

# The report row of a session: its policy columns and the verdict
sub policy_of
{
	my ($pid) = @_;
	return $node->safe_psql('postgres',
		"SELECT idle_timeout, policy_source, action "
		  . "FROM idle_guard_report() WHERE pid = $pid");
}

# 1. A role with a longer idle_timeout keeps its session past the default
#    deadline; a session on the default beside it is terminated.
my ($patient, $patient_pid) = ig_silent_session($node, 'patient_app',
	'BEGIN; SELECT * FROM t;', user => 'patient');
my ($dflt, $dflt_pid) = ig_silent_session($node, 'default_app',
	'BEGIN; SELECT * FROM t;');
is(policy_of($patient_pid), '01:00:00|role|terminate',
	'report: the role setting applies to its session');
is(policy_of($dflt_pid), '00:00:02|default|terminate',
	'report: the default applies to the other');

# 2. A database-level action = report only reports.
my $offset = -s $node->logfile;
my ($rep, $rep_pid) = ig_silent_session($node, 'report_app',
	'BEGIN; SELECT * FROM r;', dbname => 'reportdb');
is($node->safe_psql('reportdb',
		"SELECT policy_source, action FROM idle_guard_report() "
		  . "WHERE pid = $rep_pid"),
	'database|report', 'report: the database setting applies');

# The 1.0 API, from a database still on extension version 1.0, answers
# with its own 20 columns.
my $old_row = $node->safe_psql('olddb',
	"SELECT * FROM idle_guard_report() WHERE pid = $patient_pid");
is(scalar(split(/\|/, $old_row, -1)), 20, 'version 1.0 report: 20 columns');

ig_wait_gone($node, $dflt_pid, 'default-policy session terminated');
ig_wait_sweep_after($node, $patient_pid, $idle_ms + 500);
ok(ig_pid_alive($node, $patient_pid), 'role with a longer idle_timeout spared');

$node->wait_for_log(
	qr/idle_guard: silent session holds locks pid=$rep_pid .* rule=idle action=report/,
	$offset);
pass('database with action = report: LOG line');
ig_wait_sweep_after($node, $rep_pid, $idle_ms + 500);
ok(ig_pid_alive($node, $rep_pid), 'database with action = report: not terminated');
is(ig_history($node, $rep_pid), 'reported', 'history: reported');
ig_close($patient);
ig_close($dflt);
ig_close($rep);

# 3. SET LOCAL applies to its transaction only: after COMMIT, and after
#    ROLLBACK, the next transaction is on the default again.
for my $end ('COMMIT', 'ROLLBACK')
{
	my ($s, $pid) = ig_silent_session($node, "local_$end",
		"BEGIN; SET LOCAL idle_guard.idle_timeout = '1h'; SELECT * FROM t;");
	is(policy_of($pid), '01:00:00|session|terminate',
		"SET LOCAL applies inside the transaction ($end)");
	ig_wait_sweep_after($node, $pid, $idle_ms + 500);
	ok(ig_pid_alive($node, $pid), "SET LOCAL session spared ($end)");

	$s->query_safe("$end; BEGIN; SELECT * FROM t;");
	is(policy_of($pid), '00:00:02|default|terminate',
		"after $end the default applies again");
	ig_wait_gone($node, $pid, "terminated after $end on the default");
	ig_close($s);
}

# 4. An ordinary role cannot change any of them, for itself or its role.
for my $setting ('action', 'blocking_timeout', 'idle_timeout')
{
	my $value = $setting eq 'action' ? 'off' : '0';
	my ($ret, $out, $err) = $node->psql('postgres',
		"SET idle_guard.$setting = '$value'",
		extra_params => [ '-U', 'plain' ]);
	like($err, qr/permission denied to set parameter "idle_guard.$setting"/,
		"plain role cannot SET idle_guard.$setting");
	($ret, $out, $err) = $node->psql('postgres',
		"ALTER ROLE plain SET idle_guard.$setting = '$value'",
		extra_params => [ '-U', 'plain' ]);
	like($err, qr/permission denied to set parameter "idle_guard.$setting"/,
		"plain role cannot ALTER ROLE ... SET idle_guard.$setting");
}

# 5. A role granted SET on idle_timeout can use it, for that setting only.
my ($g, $g_pid) = ig_silent_session($node, 'granted_app',
	"SET idle_guard.idle_timeout = '1h'; BEGIN; SELECT * FROM t;",
	user => 'granted');
is(policy_of($g_pid), '01:00:00|session|terminate',
	'granted role: its SET applies');
my ($ret, $out, $err) = $node->psql('postgres',
	"SET idle_guard.action = 'off'", extra_params => [ '-U', 'granted' ]);
like($err, qr/permission denied to set parameter "idle_guard.action"/,
	'granted role cannot set another setting');
ig_wait_sweep_after($node, $g_pid, $idle_ms + 500);
ok(ig_pid_alive($node, $g_pid), 'granted role session spared');
ig_close($g);

# 6. A backend that exits leaves its slot behind; the next backend in the
#    same PGPROC (the free list is last in, first out) must not inherit it.
my ($off, $off_pid) = ig_silent_session($node, 'leaving',
	"SET idle_guard.action = 'off'; SELECT 1;");
$off->quit;
ig_wait_gone($node, $off_pid, 'session with action = off has exited');
my ($next, $next_pid) = ig_silent_session($node, 'next',
	'BEGIN; SELECT * FROM t;');
is(policy_of($next_pid), '00:00:02|default|terminate',
	'the next backend is on the default, not the stale slot');
ig_wait_gone($node, $next_pid, 'and is terminated at the default deadline');
ig_close($next);

$node->stop;
done_testing();
