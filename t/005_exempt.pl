# Copyright (c) 2026, idle_guard developers
#
# Exempt sessions are never acted on.  A silent session that blocks a
# writer past blocking_timeout is spared, and shown by idle_guard_report()
# with action 'exempt', when its role is in idle_guard.exempt_roles or its
# application_name matches idle_guard.exempt_applications: by an exact
# name, or by a prefix pattern ('etl_*').  Each exempt session is seen
# blocking past its deadline, the worker is seen sweeping after that
# deadline, and the session is still there and usable.  Non-exempt
# sessions blocking on the same node at the same time are terminated (so
# the worker does act there), including names that only nearly match an
# entry.  exempt_applications is empty by default: a client that names
# itself 'pg_dump' is not exempt (application_name is the client's choice).

use strict;
use warnings FATAL => 'all';

use FindBin;
use lib $FindBin::RealBin;

use IdleGuardTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

# The report row of one session: rule, action, blocked_total, and whether
# it has been silent for more than blocking_timeout (2s).
sub report_row
{
	my ($node, $pid) = @_;
	return $node->safe_psql('postgres',
		"SELECT rule, action, blocked_total, silent_for > interval '2 s' "
		  . "FROM idle_guard_report() WHERE pid = $pid");
}

sub logged_for
{
	my ($node, $pid) = @_;
	return slurp_file($node->logfile) =~ /idle_guard: .* pid=$pid\b/;
}

my $node = ig_node('exempt', 'idle_guard.exempt_roles' => "'batch'");
$node->safe_psql(
	'postgres', q{
	CREATE TABLE jobs (id int PRIMARY KEY, v int);
	INSERT INTO jobs SELECT g, 0 FROM generate_series(1, 10) g;
	CREATE TABLE dump_me (id int);
	CREATE ROLE batch LOGIN;
	GRANT SELECT, UPDATE ON jobs TO batch;
});

#
# Phase 1: exempt by role; no application is exempt by default.
#
is($node->safe_psql('postgres', 'SHOW idle_guard.exempt_applications'),
	'', 'exempt_applications is empty by default');

# The premise, on a loaded machine too: each row of the report is read
# once that session's waiter waits, before its deadline (by the server's
# clock: a session to be terminated is not in the report past it); else
# the scene is set up again.
my $scene = ig_setup_in_time(
	$node,
	'phase 1: each report row read before its session\'s deadline',
	sub {
		my ($attempt) = @_;
		my %sc = (terminated => ig_value($node, 'SELECT terminated FROM idle_guard_stats()'));
		my @rows;
		my $ok = 1;
		my ($by_role, $by_role_pid) = ig_silent_session($node, 'batch_loader',
			'BEGIN; UPDATE jobs SET v = v + 1 WHERE id = 1;',
			user => 'batch');
		$sc{by_role_user} = $node->safe_psql('postgres',
			"SELECT usename FROM pg_stat_activity WHERE pid = $by_role_pid");
		my ($w_role, $w_role_pid) = ig_waiting_session($node, 'w_role',
			'UPDATE jobs SET v = 10 WHERE id = 1;', blocker => $by_role_pid);
		# What pg_dump does: a repeatable-read snapshot and ACCESS SHARE
		# locks on the tables it dumps, which block DDL.  Any client may
		# call itself so.
		my ($dump, $dump_pid) = ig_silent_session($node, 'pg_dump',
			'BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY; SELECT count(*) FROM dump_me;'
		);
		my $dump_since = ig_silent_since($node, $dump_pid);
		my ($w_dump, $w_dump_pid) = ig_waiting_session($node, 'w_dump',
			"ALTER TABLE dump_me ADD COLUMN note$attempt text;", blocker => $dump_pid);
		my ($control, $control_pid) = ig_silent_session($node, 'webapp',
			'BEGIN; UPDATE jobs SET v = v + 1 WHERE id = 3;');
		my $control_since = ig_silent_since($node, $control_pid);
		my ($w_control, $w_control_pid) = ig_waiting_session($node, 'w_control',
			'UPDATE jobs SET v = 10 WHERE id = 3;', blocker => $control_pid);
		for my $pid ($by_role_pid, $dump_pid, $control_pid)
		{
			push @rows, $node->safe_psql('postgres',
				"SELECT application_name, usename, rule, action, blocked_total "
				  . "FROM idle_guard_report() WHERE pid = $pid");
		}
		$ok &&= ig_before_deadline($node, $_, 2000) for ($dump_since, $control_since);
		return {
			%sc,
			ok => $ok, rows => \@rows,
			by_role => $by_role, by_role_pid => $by_role_pid, w_role => $w_role,
			dump => $dump, dump_pid => $dump_pid, w_dump => $w_dump,
			control => $control, control_pid => $control_pid, w_control => $w_control,
			end => [ $w_role_pid, $w_dump_pid, $w_control_pid,
				$by_role_pid, $dump_pid, $control_pid ],
			sessions => [ $w_role, $w_dump, $w_control, $by_role, $dump, $control ] };
	});
my ($by_role, $by_role_pid, $w_role, $dump, $dump_pid, $w_dump, $control,
	$control_pid, $w_control) = @$scene{
	qw(by_role by_role_pid w_role dump dump_pid w_dump control control_pid w_control)};
is($scene->{by_role_user}, 'batch', 'role-exempt session runs as batch');
is( join("\n", @{ $scene->{rows} }),
	"batch_loader|batch|blocking|exempt|1\n"
	  . "pg_dump|postgres|blocking|terminate|1\n"
	  . "webapp|postgres|blocking|terminate|1",
	'report: role exempt, pg_dump by name and control to be terminated');
my $terminated1 = $scene->{terminated};

# Positive control: the worker acts on this node, on a session calling
# itself pg_dump as on any other.
ig_wait_gone($node, $control_pid, 'non-exempt blocking session terminated');
is(ig_history($node, $control_pid), 'terminated', 'control in history');
ig_wait_gone($node, $dump_pid, 'application pg_dump not exempt by default');
is(ig_history($node, $dump_pid), 'terminated', 'pg_dump by name in history');

for my $case ([ 'role batch', $by_role_pid ])
{
	my ($what, $pid) = @$case;
	ig_wait_sweep_after($node, $pid, 2000);
	ok(ig_pid_alive($node, $pid), "$what: alive after a sweep past its deadline");
	is(report_row($node, $pid), 'blocking|exempt|1|t',
		"$what: still blocking past blocking_timeout, action exempt");
	is(ig_history($node, $pid), '', "$what: no history entry");
	ok(!logged_for($node, $pid), "$what: no LOG line");
}

# The exempt sessions are intact: they can finish their work, and then the
# writers they blocked proceed.
$by_role->query_safe('COMMIT');
ig_wait_for($node,
	"SELECT count(*) = 0 FROM pg_stat_activity WHERE wait_event_type = 'Lock'",
	't', 'writers proceed once the exempt sessions commit');
is($node->safe_psql('postgres', 'SELECT v FROM jobs WHERE id = 1'),
	'10', 'role-exempt update committed, then the writer\'s');
$_->quit for ($by_role, $w_role, $w_dump, $w_control);
ig_close($control);
ig_close($dump);
is(ig_value($node, "SELECT terminated - $terminated1 FROM idle_guard_stats()"),
	'2', 'phase 1: only the two non-exempt sessions were terminated');

#
# Phase 2: an exact name and a prefix pattern.
#
$node->safe_psql('postgres',
	"ALTER SYSTEM SET idle_guard.exempt_applications = 'nightly_export, etl_*'"
);
# Wait until the worker judges with the new list: new sessions see it (the
# postmaster has reloaded and signalled its children), then a worker sweep
# starts after that moment.
$node->safe_psql('postgres', 'SELECT pg_reload_conf()');
ig_wait_for($node,
	"SELECT current_setting('idle_guard.exempt_applications') "
	  . "= 'nightly_export, etl_*'",
	't', 'reload: the new exempt_applications');
ig_worker_looks_now($node, 'worker swept with the reloaded configuration');

# The premise as in phase 1: each row read before that session's deadline.
my @apps = qw(nightly_export etl_nightly nightly_export_v2 etl pg_dump);
my %exempt = (nightly_export => 1, etl_nightly => 1);
$scene = ig_setup_in_time(
	$node,
	'phase 2: each report row read before its session\'s deadline',
	sub {
		my %sc = (terminated => ig_value($node, 'SELECT terminated FROM idle_guard_stats()'));
		my $ok = 1;
		my $id = 4;
		for my $app (@apps)
		{
			my ($h, $pid) = ig_silent_session($node, $app,
				"BEGIN; UPDATE jobs SET v = v + 1 WHERE id = $id;");
			my $since = ig_silent_since($node, $pid);
			my ($w, $w_pid) = ig_waiting_session($node, "w_$app",
				"UPDATE jobs SET v = 10 WHERE id = $id;", blocker => $pid);
			my $row = ig_value($node,
				"SELECT application_name, action FROM idle_guard_report() WHERE pid = $pid");
			$ok &&= $exempt{$app} || ig_before_deadline($node, $since, 2000);
			$sc{s}{$app} = { holder => $h, pid => $pid, waiter => $w, row => $row };
			unshift @{ $sc{end} }, $w_pid;
			push @{ $sc{end} }, $pid;
			push @{ $sc{sessions} }, $w, $h;
			$id++;
		}
		return { %sc, ok => $ok };
	});
my %s = %{ $scene->{s} };
my $terminated2 = $scene->{terminated};

is( join("\n", map { $s{$_}{row} } sort @apps),
	"etl|terminate\n"
	  . "etl_nightly|exempt\n"
	  . "nightly_export|exempt\n"
	  . "nightly_export_v2|terminate\n"
	  . "pg_dump|terminate",
	'report: exact name and prefix exempt, near misses and pg_dump not');

for my $app (qw(nightly_export_v2 etl pg_dump))
{
	ig_wait_gone($node, $s{$app}{pid}, "$app: not exempt, terminated");
}

for my $app (qw(nightly_export etl_nightly))
{
	my $pid = $s{$app}{pid};
	ig_wait_sweep_after($node, $pid, 2000);
	ok(ig_pid_alive($node, $pid), "$app: alive after a sweep past its deadline");
	is(report_row($node, $pid), 'blocking|exempt|1|t',
		"$app: still blocking past blocking_timeout, action exempt");
	is(ig_history($node, $pid), '', "$app: no history entry");
	ok(!logged_for($node, $pid), "$app: no LOG line");
	$s{$app}{holder}->query_safe('ROLLBACK');
}

is( $node->safe_psql('postgres',
		"SELECT terminated - $terminated2, skipped FROM idle_guard_stats()"),
	'3|0', 'phase 2: only the three non-exempt sessions were terminated');

for my $app (keys %s)
{
	ig_close($s{$app}{holder});
	ig_close($s{$app}{waiter});
}
$node->stop;
done_testing();
