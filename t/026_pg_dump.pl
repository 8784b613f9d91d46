# Copyright (c) 2026, idle_guard developers
#
# pg_dump under the default idle_guard.exempt_applications (empty: a
# client chooses its own application_name, so that name exempts nothing).
# A real pg_dump writes a table of several MB into a pipe nobody reads:
# its backend stalls in ClientWrite, in the middle of the COPY, holding
# ACCESS SHARE on the table, and an ALTER TABLE queues behind it.
#	a. run as an ordinary role: the dump's backend is terminated at
#	   blocking_timeout, reason "client not reading" (LOG line, history
#	   row), the ALTER completes, and pg_dump fails with part of the rows
#	   (its backend, blocked writing, exits without sending the FATAL
#	   message: pg_dump sees the connection closed);
#	b. with idle_guard.exempt_roles = 'backup', run as role backup: the
#	   report shows it exempt, it is alive after the worker swept past its
#	   deadline, with no history row and no LOG line; once its output is
#	   read it completes (every row dumped), and then the ALTER;
#	c. a psql session that merely calls itself pg_dump, holding a lock in a
#	   silent transaction with a waiter, is terminated like any other.

use strict;
use warnings FATAL => 'all';

use FindBin;
use lib $FindBin::RealBin;

use IdleGuardTest;
use IO::Select;
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Symbol qw(gensym);
use Test::More;
use Time::HiRes qw(time usleep);

my $blocking_ms = 2000;
my $rows = 200_000;

# Every pg_dump started, killed at the end whatever happened.
my @dumps;

END
{
	for my $d (@dumps)
	{
		eval { $d->{run}->kill_kill; };
		close $d->{out} if $d->{out};
	}
}

my $node = ig_node('pg_dump',
	'idle_guard.blocking_timeout' => "'${blocking_ms}ms'");
my $tmp = PostgreSQL::Test::Utils::tempdir();

# About 8 MB of COPY output: far more than a pipe and a socket buffer hold.
$node->safe_psql('postgres',
	'CREATE TABLE big (id int PRIMARY KEY, md5 text); '
	  . "INSERT INTO big SELECT g, md5(g::text) FROM generate_series(1, $rows) g; "
	  . 'CREATE ROLE dumper LOGIN; CREATE ROLE backup LOGIN; '
	  . 'GRANT SELECT ON big TO dumper, backup;');

# Start pg_dump of table big as $user, its output into a pipe that the
# test holds and does not read.  Returns the dump (a hashref) and the pid
# of its backend.
sub start_dump
{
	my ($user, $label) = @_;
	my $d = { out => gensym, err => "$tmp/$label.err" };
	# The test framework sets PGAPPNAME; without it pg_dump names itself
	# pg_dump, as it does in real life.
	local $ENV{PGAPPNAME};
	delete $ENV{PGAPPNAME};
	$d->{run} = IPC::Run::start(
		[
			$node->installed_command('pg_dump'), '-d', $node->connstr('postgres'),
			'-U', $user, '-t', 'big'
		],
		'<', '/dev/null', '>pipe', $d->{out}, '2>', $d->{err},
		IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default));
	push @dumps, $d;
	ig_wait_for($node,
		"SELECT count(*) = 1 FROM pg_stat_activity WHERE usename = '$user' "
		  . "AND application_name = 'pg_dump' AND query LIKE 'COPY %'",
		't', "$label: pg_dump is copying table big");
	my $pid = ig_value($node,
		"SELECT pid FROM pg_stat_activity WHERE usename = '$user' AND application_name = 'pg_dump'");
	return ($d, $pid);
}

# Read the dump's output to its end (bounded), then wait for pg_dump to
# exit.  Returns (wait status, output, stderr).
sub finish_dump
{
	my ($d) = @_;
	my ($output, $buf) = ('', '');
	my $sel = IO::Select->new($d->{out});
	my $deadline = time + $PostgreSQL::Test::Utils::timeout_default;
	while (time < $deadline)
	{
		next unless $sel->can_read(1);
		my $n = sysread($d->{out}, $buf, 1 << 16);
		last if !$n;
		$output .= $buf;
	}
	close $d->{out};
	$d->{out} = undef;
	my $status = eval { $d->{run}->finish; ($d->{run}->full_results)[0]; }
	  // 'timed out';
	return ($status, $output, slurp_file($d->{err}));
}

# The number of rows in the COPY data of table big in a dump.
sub copy_rows
{
	my ($output) = @_;
	my ($data) = $output =~ /^COPY public\.big \([^)]*\) FROM stdin;\n(.*?)^\\\.$/ms;
	return scalar(() = ($data // '') =~ /\n/g);
}

# The backend of a dump: stalled in ClientWrite, holding ACCESS SHARE on big.
sub check_stalled
{
	my ($pid, $label) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	ig_wait_client_write($node, $pid, "$label: its backend stalls in ClientWrite");
	is( ig_value($node,
			"SELECT string_agg(mode || ',' || granted, ';') FROM pg_locks "
			  . "WHERE pid = $pid AND relation = 'big'::regclass"),
		'AccessShareLock,true', "$label: holding ACCESS SHARE on big");
}

is(ig_value($node, 'SHOW idle_guard.exempt_applications'), '',
	'exempt_applications is empty by default');
is(ig_value($node, 'SHOW idle_guard.exempt_roles'), '', 'exempt_roles is empty by default');

#
# a. pg_dump as an ordinary role, under the defaults.
#
{
	# The premise, on a loaded machine too: the ALTER waits and the report
	# is read before the deadline, blocking_timeout after idle_guard first
	# saw the silence (its silent_since), by the server's clock; else the
	# scene is set up again, with a column of its own.
	my $scene = ig_setup_in_time(
		$node,
		'a: the ALTER waits, and the report is read, before the deadline',
		sub {
			my ($attempt) = @_;
			my %sc = (offset => -s $node->logfile, column => "ca$attempt");
			my ($d, $pid) = start_dump('dumper', 'a');
			$sc{undo} = sub { eval { $d->{run}->kill_kill; }; };
			check_stalled($pid, 'a');
			my $since = ig_report_silent_since($node, $pid, 'a');
			my ($alter, $alter_pid) = ig_waiting_session($node, 'migration',
				"ALTER TABLE big ADD COLUMN $sc{column} int;", blocker => $pid);
			$sc{row} = ig_value($node,
				"SELECT usename, application_name, wait_event, silent_reason, blocked_pids, "
				  . "rule, action FROM idle_guard_report() WHERE pid = $pid");
			return {
				%sc,
				ok => ig_before_deadline($node, $since, $blocking_ms),
				d => $d, pid => $pid, alter => $alter, alter_pid => $alter_pid,
				end => [ $alter_pid, $pid ], sessions => [$alter] };
		});
	my ($offset, $d, $pid, $alter, $alter_pid) = @$scene{qw(offset d pid alter alter_pid)};
	is($scene->{row},
		"dumper|pg_dump|ClientWrite|client not reading|{$alter_pid}|blocking|terminate",
		'a: report: client not reading, blocking the ALTER, to be terminated');
	ig_wait_gone($node, $pid, 'a: the dump\'s backend is terminated');
	ig_wait_unblocked($node, $alter_pid, 'a: the ALTER no longer waits');
	$alter->query_safe('SELECT 1');
	is( ig_value($node,
			"SELECT count(*) FROM pg_attribute WHERE attrelid = 'big'::regclass "
			  . "AND attname = '$scene->{column}'"),
		'1', 'a: the ALTER TABLE completed');
	ig_check_terminated($node, $pid,
		offset => $offset,
		app => 'pg_dump',
		user => 'dumper',
		reason => 'client not reading',
		timeout_ms => $blocking_ms,
		label => 'a');
	my ($line) = grep { / pid=$pid / }
	  ig_log_lines($node, $offset, qr/idle_guard: terminating silent session/);
	my $f = ig_parse_log_line($line // '') // {};
	is("$f->{user} $f->{app}|$f->{reason}", 'dumper pg_dump|client not reading',
		'a: LOG line: user dumper, app pg_dump, client not reading');

	my ($status, $output, $err) = finish_dump($d);
	isnt($status, 0, 'a: pg_dump fails');
	# Its backend, blocked writing, cannot send the FATAL message: pg_dump
	# sees the connection closed ("server closed the connection
	# unexpectedly" with PostgreSQL 15's libpq).
	like($err, qr/Dumping the contents of table "big" failed/,
		'a: pg_dump says the dump of big failed');
	my $got = copy_rows($output);
	ok($got > 0 && $got < $rows, "a: the dump has only part of the rows ($got)");
	# (ok, not unlike: a failure would print megabytes)
	ok($output !~ /PostgreSQL database dump complete/, 'a: the dump is not complete');
	$alter->quit;
}

my $terminated_a = ig_value($node, 'SELECT terminated FROM idle_guard_stats()');

#
# b. The backup role exempt, pg_dump run as backup.
#
{
	$node->safe_psql('postgres', "ALTER SYSTEM SET idle_guard.exempt_roles = 'backup'");
	$node->safe_psql('postgres', 'SELECT pg_reload_conf()');
	ig_wait_for($node,
		"SELECT current_setting('idle_guard.exempt_roles') = 'backup'",
		't', 'b: reload: exempt_roles = backup');
	ig_worker_looks_now($node, 'b: worker swept with the reloaded configuration');

	my $offset = -s $node->logfile;
	my ($d, $pid) = start_dump('backup', 'b');
	check_stalled($pid, 'b');
	my ($alter, $alter_pid) = ig_waiting_session($node, 'migration',
		'ALTER TABLE big ADD COLUMN c2 int;');
	is( ig_value($node,
			"SELECT usename, application_name, wait_event, silent_reason, blocked_pids, "
			  . "rule, action FROM idle_guard_report() WHERE pid = $pid"),
		"backup|pg_dump|ClientWrite|client not reading|{$alter_pid}|blocking|exempt",
		'b: report: client not reading, blocking the ALTER, exempt');

	my $since = ig_value($node, "SELECT silent_since FROM idle_guard_report() WHERE pid = $pid");
	ig_wait_sweep_past($node, $since, $blocking_ms + 500,
		'b: the worker swept after blocking_timeout of its silence');
	ok(ig_pid_alive($node, $pid), 'b: the exempt dump is alive');
	is( ig_value($node,
			"SELECT wait_event, action, silent_for > interval '$blocking_ms ms' "
			  . "FROM idle_guard_report() WHERE pid = $pid"),
		'ClientWrite|exempt|t', 'b: still stalled past blocking_timeout, exempt');
	is(ig_history($node, $pid), '', 'b: no history row');
	is(scalar(ig_log_lines($node, $offset, qr/idle_guard: .* pid=$pid /)),
		0, 'b: no LOG line');
	is(ig_value($node, "SELECT wait_event_type FROM pg_stat_activity WHERE pid = $alter_pid"),
		'Lock', 'b: the ALTER still waits');

	# Its reader catches up: the dump completes, then the ALTER.
	my ($status, $output, $err) = finish_dump($d);
	is($status, 0, 'b: pg_dump completes') or diag $err;
	is(copy_rows($output), $rows, "b: the dump has all $rows rows");
	ok($output =~ /PostgreSQL database dump complete/, 'b: the dump is complete');
	ig_wait_unblocked($node, $alter_pid, 'b: then the ALTER proceeds');
	$alter->query_safe('SELECT 1');
	$alter->quit;
}

is(ig_value($node, "SELECT terminated - $terminated_a FROM idle_guard_stats()"), '0',
	'no termination in b: the exempt dump');

#
# c. A client that calls itself pg_dump.
#
my $terminated_c;
{
	# The premise as in a: the ALTER waits, and the report is read, before
	# the deadline (each attempt with a column of its own).
	my $scene = ig_setup_in_time(
		$node,
		'c: the ALTER waits, and the report is read, before the deadline',
		sub {
			my ($attempt) = @_;
			my %sc = (offset => -s $node->logfile,
				terminated => ig_value($node, 'SELECT terminated FROM idle_guard_stats()'));
			my ($s, $pid) = ig_silent_session($node, 'pg_dump',
				'BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY; LOCK TABLE big IN ACCESS SHARE MODE;',
				user => 'dumper');
			my $since = ig_silent_since($node, $pid);
			my ($alter, $alter_pid) = ig_waiting_session($node, 'migration',
				"ALTER TABLE big ADD COLUMN c3_$attempt int;", blocker => $pid);
			$sc{row} = ig_value($node,
				"SELECT usename, application_name, blocked_pids, rule, action "
				  . "FROM idle_guard_report() WHERE pid = $pid");
			return {
				%sc,
				ok => ig_before_deadline($node, $since, $blocking_ms),
				s => $s, pid => $pid, alter => $alter, alter_pid => $alter_pid,
				end => [ $alter_pid, $pid ], sessions => [ $alter, $s ] };
		});
	my ($offset, $s, $pid, $alter, $alter_pid) = @$scene{qw(offset s pid alter alter_pid)};
	$terminated_c = $scene->{terminated};
	is($scene->{row}, "dumper|pg_dump|{$alter_pid}|blocking|terminate",
		'c: report: application pg_dump, blocking the ALTER, to be terminated');
	ig_wait_gone($node, $pid, 'c: the session named pg_dump is terminated');
	ig_check_terminated($node, $pid,
		offset => $offset,
		app => 'pg_dump',
		user => 'dumper',
		timeout_ms => $blocking_ms,
		label => 'c');
	ig_wait_unblocked($node, $alter_pid, 'c: the ALTER proceeds');
	$alter->query_safe('SELECT 1');
	ig_close($s);
	$alter->quit;
}

is(ig_value($node, "SELECT terminated - $terminated_c FROM idle_guard_stats()"), '1',
	'one termination in c: the session named pg_dump');

$node->stop;
done_testing();
