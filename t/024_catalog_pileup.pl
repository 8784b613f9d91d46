# Copyright (c) 2026, idle_guard developers
#
# A catalog pile-up: a silent superuser session A runs "BEGIN; LOCK TABLE
# pg_authid;" and goes quiet, and every new login queues behind it.  The
# worker names the role and database of a session it acts on from that
# catalog; had it queued there too, it would guard nothing until A left on
# its own.  Once with pg_authid locked, once (on a fresh node) with
# pg_database, and roles and a database the worker has never named:
#	- an unrelated silent blocker B (a row lock, a waiter W) is terminated
#	  at its blocking_timeout; its LOG line, one physical line, gives
#	  user_oid=N (pg_authid locked) or db_oid=N (pg_database locked) for
#	  the name that cannot be read without waiting;
#	- a new login L queues behind A, so A is blocking: A is terminated at
#	  its own deadline, its line likewise, and then L and new logins get in;
#	- the worker, polled every 50 ms from a connection opened before the
#	  lock (pg_stat_get_activity(), not the pg_stat_activity view, which
#	  reads pg_authid and pg_database and would queue), is never seen
#	  waiting on a lock;
#	- idle_guard_report() on that connection, during the pile-up, answers
#	  within a second and shows the OID in place of the unreadable name;
#	- afterwards the history has both terminations at their deadlines, and
#	  names the roles and the database again.

use strict;
use warnings FATAL => 'all';

use FindBin;
use lib $FindBin::RealBin;

use IdleGuardTest;
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

my $timeout_ms = 2000;    # ig_node's blocking_timeout
my $timeout_s = $PostgreSQL::Test::Utils::timeout_default;

# pileup($n, $catalog, $attempt): the whole scenario on a fresh node, with
# roles locker_$n (superuser, A) and blocker_$n (B) and database db_$n.
# Its premises, on a loaded machine too, by the server's clock: W waits
# before B's deadline, and L queues and the report is read before A's.
# When they do not hold, it stops the node and returns 0, having asserted
# nothing that its slowness could fail: the caller tries again on a fresh
# node.  Returns 1 once it ran.
sub pileup
{
	my ($n, $catalog, $attempt) = @_;
	my $locker = "locker_$n";
	my $blocker = "blocker_$n";
	my $db = "db_$n";
	my $authid = $catalog eq 'pg_authid';

	my $node = ig_node("catalog_pileup_${n}_$attempt");
	$node->safe_psql('postgres',
		"CREATE ROLE $locker SUPERUSER LOGIN; CREATE ROLE $blocker LOGIN;");
	$node->safe_psql('postgres', "CREATE DATABASE $db");
	$node->safe_psql($db,
		'CREATE TABLE t (id int PRIMARY KEY, v int);'
		  . 'INSERT INTO t VALUES (1, 0), (2, 0);'
		  . "GRANT SELECT, UPDATE ON t TO $blocker;");
	my ($locker_oid, $blocker_oid, $db_oid, $catalog_oid) = split /\|/,
	  $node->safe_psql('postgres',
		"SELECT '$locker'::regrole::oid, '$blocker'::regrole::oid, "
		  . "(SELECT oid FROM pg_database WHERE datname = '$db'), "
		  . "'$catalog'::regclass::oid");
	my $worker_pid =
	  $node->safe_psql('postgres', 'SELECT worker_pid FROM idle_guard_stats()');

	# What the LOG line and the report show for a role and for db_$n: the
	# OID where the locked catalog would have to be read.
	my $log_user = sub {
		my ($name, $oid) = @_;
		return $authid ? "user_oid=$oid" : "user=\"$name\"";
	};
	my $log_db = $authid ? "db=\"$db\"" : "db_oid=$db_oid";
	my $report_user = sub {
		my ($name, $oid) = @_;
		return $authid ? $oid : $name;
	};
	my $report_db = $authid ? $db : $db_oid;

	# Every connection is made before the lock: a new one would queue.
	my $monitor = $node->background_psql('postgres', on_error_stop => 0);
	my ($sb, $b_pid) = ig_silent_session($node, "blocker_$n", undef,
		user => $blocker,
		dbname => $db);
	my ($sa, $a_pid) = ig_silent_session($node, "locker_$n", undef,
		user => $locker,
		dbname => $db);
	my ($sw, $w_pid) = ig_silent_session($node, "waiter_$n", undef, dbname => $db);

	# What the monitor asks during the pile-up, asked once before it, so
	# that nothing it needs (the library, the functions, its own role's
	# superuser status) has to be read then.  No silent session holds
	# locks yet: the monitor has named none of their roles.  Its statements
	# are cut short if they ever wait: a report that waited on the catalog
	# lock fails below instead of hanging the test.
	my $sample_sql =
	    "SELECT coalesce((SELECT coalesce(wait_event_type, '') "
	  . "FROM pg_stat_get_activity($worker_pid)), 'no worker'), "
	  . "(SELECT count(*) FROM pg_stat_get_activity(NULL) WHERE pid = $b_pid), "
	  . "(SELECT count(*) FROM pg_stat_get_activity(NULL) WHERE pid = $a_pid), "
	  . "extract(epoch FROM clock_timestamp())";
	my $silent_since_sql = sub {
		return "SELECT extract(epoch FROM state_change) "
		  . "FROM pg_stat_get_activity($_[0]) WHERE state = 'idle in transaction'";
	};
	my $queued_sql =
	    "SELECT string_agg(pid::text, ',') FROM pg_lock_status() "
	  . "WHERE locktype = 'relation' AND relation = $catalog_oid AND NOT granted";
	my $report_sql =
	  'SELECT pid, usename, datname FROM idle_guard_report() ORDER BY pid';
	$monitor->query_safe($_)
	  for ("SET statement_timeout = '5s'", $sample_sql, $queued_sql, $report_sql,
		"SELECT wait_event_type FROM pg_stat_get_activity($w_pid)",
		"SELECT pg_blocking_pids($w_pid)", $silent_since_sql->($b_pid));
	is(ig_query($monitor, $report_sql),
		'', "$catalog: nobody in the report before the scenario");

	# Poll the worker's wait event, and whether B and A are still there.
	my %worker_waits;
	my $samples = 0;
	my $sample = sub {
		my ($wait, $b_here, $a_here, $now) =
		  split /\|/, ig_query($monitor, $sample_sql), -1;
		$wait = 'none' if $wait eq '';
		$worker_waits{$wait}++;
		$samples++;
		return ($wait, $b_here, $a_here, $now);
	};

	my $offset = -s $node->logfile;

	# B holds a row lock and goes silent; W waits on it.
	$sb->query_safe('BEGIN; UPDATE t SET v = v + 1 WHERE id = 1;');
	my $b_silent = ig_query($monitor, $silent_since_sql->($b_pid));
	ig_send($sw, 'UPDATE t SET v = v + 10 WHERE id = 1;');
	# (until W waits, or B is gone: a premise that failed, see below)
	my $w_blockers;
	{
		my $deadline = time + $timeout_s;
		while (1)
		{
			my (undef, $b_here) = $sample->();
			$w_blockers = ig_query($monitor, "SELECT pg_blocking_pids($w_pid)");
			last if $w_blockers eq "{$b_pid}" || $b_here == 0 || time > $deadline;
			usleep(50_000);
		}
	}
	# $before->($since, $ms): is the server's clock still before $since
	# (epoch seconds) plus $ms?  Asked on the monitor: a new connection
	# would queue.
	my $before = sub {
		my ($since, $ms) = @_;
		return ig_query($monitor,
			"SELECT extract(epoch FROM clock_timestamp()) < $since + $ms / 1000.0") eq 't';
	};
	my $w_in_time = $before->($b_silent, $timeout_ms);

	# A locks the catalog and goes silent.
	$sa->query_safe("BEGIN; LOCK TABLE $catalog;");
	my $a_silent = ig_query($monitor, $silent_since_sql->($a_pid));

	# L, a new login, queues behind A: A is now blocking someone.
	my ($l_out, $l_err) = ('', '');
	my $l = IPC::Run::start(
		[
			$node->installed_command('psql'), '-XAtq',
			'-d', $node->connstr('postgres') . " application_name=login_$n",
			'-c', 'SELECT 42'
		],
		'<', \undef, '>', \$l_out, '2>', \$l_err,
		IPC::Run::timeout($timeout_s));
	my $l_pid;
	{
		my $deadline = time + $timeout_s;
		while (1)
		{
			my (undef, undef, $a_here) = $sample->();
			$l_pid = ig_query($monitor, $queued_sql);
			last if $l_pid ne '' || $a_here == 0 || time > $deadline;
			usleep(50_000);
		}
	}
	my $l_blockers =
	  $l_pid =~ /^\d+$/ ? ig_query($monitor, "SELECT pg_blocking_pids($l_pid)") : '';

	# The report, from the connection opened before the lock, during the
	# pile-up (A is ended only blocking_timeout after its LOCK): at once,
	# the OID in place of the name it cannot read.  B's deadline may have
	# passed already on a slow machine; if B is there, it is shown so too.
	my $t0 = time;
	my ($report, $report_failed, $report_err) = ig_try_query($monitor, $report_sql);
	my $report_s = time - $t0;
	my $l_in_time = $before->($a_silent, $timeout_ms);

	if (!$w_in_time || !$l_in_time)
	{
		note("$catalog: attempt $attempt was not ready in time ("
			  . ($w_in_time ? 'L queued' : 'W waited')
			  . ' after the deadline): a loaded machine; on a fresh node again');
		eval { $l->kill_kill; };
		ig_close($_) for ($sa, $sb, $sw, $monitor);
		$node->stop('immediate');
		return 0;
	}

	is($w_blockers, "{$b_pid}", "$catalog: W waits on B");
	like($l_pid, qr/^\d+$/,
		"$catalog: a new login queues on the lock of $catalog");
	is($l_blockers, "{$a_pid}", "$catalog: the login waits on A");
	ok(!$report_failed, "$catalog: idle_guard_report() answers during the pile-up")
	  or diag($report_err);
	cmp_ok($report_s, '<', 1,
		"$catalog: idle_guard_report() answers within a second during the pile-up"
	);
	my %rows = map { (split /\|/)[0] => $_ } split /\n/, $report;
	is( $rows{$a_pid},
		"$a_pid|" . $report_user->($locker, $locker_oid) . "|$report_db",
		"$catalog: report: A with "
		  . ($authid ? 'its role OID' : 'its database OID'));
	note(exists $rows{$b_pid}
		? 'B was still in the report'
		: 'B was not in the report: its deadline had passed')
	  unless $report_failed;
	is( $rows{$b_pid}
		  // "$b_pid|" . $report_user->($blocker, $blocker_oid) . "|$report_db",
		"$b_pid|" . $report_user->($blocker, $blocker_oid) . "|$report_db",
		"$catalog: report: B, if still there, likewise");
	is( join(',', grep { $_ != $a_pid && $_ != $b_pid } sort keys %rows),
		'', "$catalog: report: nobody else");

	# B and then A are ended; meanwhile the worker never waits on a lock.
	# A worker seen waiting on a lock is the failure: stop there.  When
	# each was first seen gone (server clock) tells that the worker ended
	# it at its deadline: the history's silent_for is taken when the worker
	# decides, before it names the session, so it would not show a worker
	# that waited to name it.
	my ($b_here, $a_here) = (1, 1);
	my ($b_gone, $a_gone);
	{
		my $deadline = time + $timeout_s;
		while (time <= $deadline)
		{
			my ($wait, $now);
			($wait, $b_here, $a_here, $now) = $sample->();
			$b_gone //= $now if $b_here == 0;
			$a_gone //= $now if $a_here == 0;
			last if ($b_here == 0 && $a_here == 0) || $wait eq 'Lock';
			usleep(50_000);
		}
	}
	note("$catalog: worker wait event types in $samples samples: "
		  . join(', ', map { "$_ x$worker_waits{$_}" } sort keys %worker_waits));
	ok(!exists $worker_waits{Lock},
		"$catalog: the worker was never seen waiting on a lock");
	cmp_ok($worker_waits{'no worker'} // 0,
		'==', 0, "$catalog: the worker was there throughout");
	is($b_here, 0, "$catalog: B was terminated");
	is($a_here, 0, "$catalog: A was terminated");
	note(sprintf('%s: B seen gone after %s ms of silence, A after %s ms',
			$catalog,
			map { defined $_->[0] ? int(($_->[0] - $_->[1]) * 1000) : 'never' }
			  ([ $b_gone, $b_silent ], [ $a_gone, $a_silent ])));
	cmp_ok(defined $b_gone ? ($b_gone - $b_silent) * 1000 : 1e9,
		'<', $timeout_ms + IG_LATE_MS,
		"$catalog: B seen gone soon after its deadline");
	cmp_ok(defined $a_gone ? ($a_gone - $a_silent) * 1000 : 1e9,
		'<', $timeout_ms + IG_LATE_MS,
		"$catalog: A seen gone soon after its deadline");

	# If A is still there (the worker stuck), end the pile-up so that the
	# rest of the test reports instead of hanging.
	ig_close($sa) if $a_here;

	# L gets in, and so does a new login.
	my $l_done = eval { $l->finish; 1 };
	ok($l_done && $l->result == 0, "$catalog: the queued login completed")
	  or diag("login: $@ $l_err");
	$l->kill_kill unless $l_done;
	is($l_out, "42\n", "$catalog: the queued login ran its query");
	is($node->safe_psql('postgres', 'SELECT 1', timeout => $timeout_s),
		'1', "$catalog: new logins get in");

	# W got B's row.
	is(ig_query($sw, 'SELECT v FROM t WHERE id = 1'),
		'10', "$catalog: W's update went through after B's end");

	# The LOG lines: one physical line each, with the OID for the name the
	# worker could not read.  Each is written before the signal, so it is
	# in the log once its session is gone.
	my @log = split /\n/, slurp_file($node->logfile, $offset);
	for my $t (
		[ 'B', $b_pid, $blocker, $blocker_oid ],
		[ 'A', $a_pid, $locker, $locker_oid ])
	{
		my ($who, $pid, $role, $role_oid) = @$t;
		my @lines = grep { /idle_guard: terminating silent session pid=$pid / }
		  @log;
		is(scalar @lines, 1, "$catalog: one LOG line for $who");
		like(
			$lines[0] // '',
			qr/^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} \S+ \[$worker_pid\] LOG:  idle_guard: terminating silent session pid=$pid \Q@{[ $log_user->($role, $role_oid) ]} $log_db\E app="\Q$role\E" client=local silent_s=\d+\.\d{3} locks=\d+ blocked=1 rule=blocking action=terminate reason="idle in transaction" link="local"$/,
			"$catalog: ${who}'s LOG line: "
			  . $log_user->($role, $role_oid)
			  . " $log_db, the whole line");
	}

	# The history: both at their deadlines; the names read now that they
	# can be.
	for my $t ([ 'B', $b_pid, $blocker ], [ 'A', $a_pid, $locker ])
	{
		my ($who, $pid, $role) = @$t;
		my ($h, $h_ms) = split /\|/,
		  $node->safe_psql('postgres',
			"SELECT action || ',' || rule || ',' || usename || ',' || datname, "
			  . "extract(epoch FROM silent_for) * 1000 "
			  . "FROM idle_guard_history() WHERE pid = $pid");
		is($h, "terminated,blocking,$role,$db",
			"$catalog: history: $who terminated, named once the catalog is free");
		cmp_ok($h_ms // 0, '>=', $timeout_ms,
			"$catalog: $who not ended before its deadline");
		cmp_ok($h_ms // 1e9, '<', $timeout_ms + IG_LATE_MS,
			"$catalog: $who ended soon after its deadline");
	}

	ig_close($sa);
	ig_close($sb);
	$sw->quit;
	$monitor->quit;
	$node->stop;
	return 1;
}

for my $case ([ 1, 'pg_authid' ], [ 2, 'pg_database' ])
{
	my $attempts = 4;
	my $ran = 0;
	for my $attempt (1 .. $attempts)
	{
		$ran = pileup(@$case, $attempt) and last;
	}
	ok($ran, "$case->[1]: the setup was ready in time in one of $attempts attempts")
	  or diag('the machine is too slow for this test (no verdict on idle_guard)');
}

done_testing();
