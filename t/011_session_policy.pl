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
use warnings FATAL => 'all';

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
is(policy_of($patient_pid), '01:00:00|role|terminate',
	'report: the role setting applies to its session');
# The premise, on a loaded machine too: the report is read before the
# default deadline, by the server's clock; else it is set up again.
my $scene = ig_setup_in_time(
	$node,
	'1: the default session read before its deadline',
	sub {
		my ($dflt, $dflt_pid) = ig_silent_session($node, 'default_app',
			'BEGIN; SELECT * FROM t;');
		my $since = ig_silent_since($node, $dflt_pid);
		my $policy = policy_of($dflt_pid);
		return {
			ok => ig_before_deadline($node, $since, $idle_ms),
			dflt => $dflt, dflt_pid => $dflt_pid, policy => $policy,
			end => [$dflt_pid], sessions => [$dflt] };
	});
my ($dflt, $dflt_pid) = @$scene{qw(dflt dflt_pid)};
is($scene->{policy}, '00:00:02|default|terminate',
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
	# The premise: the report after $end is read before the default
	# deadline, by the server's clock; else it is set up again.
	my $scene = ig_setup_in_time(
		$node,
		"3: after $end, read before the default deadline",
		sub {
			my %sc;
			my ($s, $pid) = ig_silent_session($node, "local_$end",
				"BEGIN; SET LOCAL idle_guard.idle_timeout = '1h'; SELECT * FROM t;");
			my $since = ig_silent_since($node, $pid);
			$sc{policy1} = policy_of($pid);
			$node->poll_query_until('postgres',
				"SELECT last_sweep_at > '$since'::timestamptz "
				  . "+ interval '@{[ $idle_ms + 500 ]} ms' FROM idle_guard_stats()")
			  or die 'no sweep past the default deadline';
			$sc{spared} = ig_pid_alive($node, $pid);
			(undef, $sc{failed}) = ig_try_query($s, "$end; BEGIN; SELECT * FROM t;");
			my $since2 = ig_silent_since($node, $pid);
			$sc{policy2} = policy_of($pid);
			return {
				%sc,
				ok => $since2 eq '' || ig_before_deadline($node, $since2, $idle_ms),
				s => $s, pid => $pid, end => [$pid], sessions => [$s] };
		});
	my ($s, $pid) = @$scene{qw(s pid)};
	is($scene->{policy1}, '01:00:00|session|terminate',
		"SET LOCAL applies inside the transaction ($end)");
	ok($scene->{spared}, "SET LOCAL session spared past the default deadline ($end)");
	is($scene->{failed}, 0, "$end and a new transaction");
	is($scene->{policy2}, '00:00:02|default|terminate',
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
#    The premise: the next backend's report is read before its deadline,
#    by the server's clock; else both are set up again.
$scene = ig_setup_in_time(
	$node,
	'6: the next backend read before its deadline',
	sub {
		my ($off, $off_pid) = ig_silent_session($node, 'leaving',
			"SET idle_guard.action = 'off'; SELECT 1;");
		$off->quit;
		$node->poll_query_until('postgres',
			"SELECT count(*) = 0 FROM pg_stat_activity WHERE pid = $off_pid")
		  or die 'the session with action = off did not exit';
		my ($next, $next_pid) = ig_silent_session($node, 'next',
			'BEGIN; SELECT * FROM t;');
		my $since = ig_silent_since($node, $next_pid);
		my $policy = policy_of($next_pid);
		return {
			ok => ig_before_deadline($node, $since, $idle_ms),
			next => $next, next_pid => $next_pid, policy => $policy,
			end => [$next_pid], sessions => [$next] };
	});
my ($next, $next_pid) = @$scene{qw(next next_pid)};
pass('session with action = off has exited');
is($scene->{policy}, '00:00:02|default|terminate',
	'the next backend is on the default, not the stale slot');
ig_wait_gone($node, $next_pid, 'and is terminated at the default deadline');
ig_close($next);

$node->stop;
done_testing();
