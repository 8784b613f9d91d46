# Copyright (c) 2026, idle_guard developers
#
# A silent session holding a row lock that a writer waits for is
# terminated at blocking_timeout; the writer then proceeds and the silent
# session's own update is rolled back.

use strict;
use warnings FATAL => 'all';

use FindBin;
use lib $FindBin::RealBin;

use IdleGuardTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = ig_node('row_lock');
$node->safe_psql('postgres',
	'CREATE TABLE accounts (id int PRIMARY KEY, balance int);'
	  . 'INSERT INTO accounts VALUES (1, 100), (2, 100);');
# The premise, on a loaded machine too: the writer waits and the report
# is read before the holder's deadline (else the scene is set up again).
my $scene = ig_setup_in_time(
	$node,
	'the writer waits and the report is read before the deadline',
	sub {
		my $offset = -s $node->logfile;
		# What an attempt that came too late may have left: the counters and
		# the balance this one starts from
		my ($balance, $terminated, $skipped) = split /\|/, $node->safe_psql('postgres',
			'SELECT (SELECT balance FROM accounts WHERE id = 1), terminated, skipped '
			  . 'FROM idle_guard_stats()');
		my ($holder, $holder_pid) = ig_silent_session($node, 'forgetful',
			'BEGIN; UPDATE accounts SET balance = balance - 10 WHERE id = 1;');
		my $since = ig_silent_since($node, $holder_pid);
		my ($writer, $writer_pid) = ig_waiting_session($node, 'writer',
			'UPDATE accounts SET balance = balance + 1 WHERE id = 1;',
			blocker => $holder_pid);
		# While it waits, the report names the holder as blocking the writer.
		my $row = $node->safe_psql('postgres',
			"SELECT state, wait_event, locks_held > 0, backend_xid IS NOT NULL, "
			  . "blocked_direct, blocked_total, blocked_pids, rule, action "
			  . "FROM idle_guard_report() WHERE pid = $holder_pid");
		return {
			ok => ig_before_deadline($node, $since, 2000),
			offset => $offset,
			holder => $holder, holder_pid => $holder_pid,
			writer => $writer, writer_pid => $writer_pid,
			row => $row,
			balance => $balance, terminated => $terminated, skipped => $skipped,
			end => [ $writer_pid, $holder_pid ],
			sessions => [ $writer, $holder ] };
	});
my ($offset, $holder, $holder_pid, $writer, $writer_pid) =
  @$scene{qw(offset holder holder_pid writer writer_pid)};
is($scene->{row},
	"idle in transaction|ClientRead|t|t|1|1|{$writer_pid}|blocking|terminate",
	'report shows the silent row-lock holder blocking the writer');

ig_wait_gone($node, $holder_pid, 'silent holder terminated');

# Terminated at the deadline, and said so: the LOG line names the session,
# the rule and the action; the history records the termination, after
# blocking_timeout of silence but not much more.
ig_check_terminated($node, $holder_pid,
	offset => $offset,
	app => 'forgetful',
	timeout_ms => 2000);

# The writer got its lock and finished.
ig_wait_unblocked($node, $writer_pid, 'writer no longer waits');
$writer->query_safe('SELECT 1');

# The holder's update was rolled back: only the writer's +1 is there.
is($node->safe_psql('postgres', 'SELECT balance FROM accounts WHERE id = 1'),
	$scene->{balance} + 1, 'silent transaction rolled back, writer committed');

is( $node->safe_psql('postgres',
		"SELECT terminated - $scene->{terminated}, skipped - $scene->{skipped} "
		  . 'FROM idle_guard_stats()'),
	'1|0', 'counters: one more termination');

ig_close($holder);
$writer->quit;
$node->stop;
done_testing();
