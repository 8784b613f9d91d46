# Copyright (c) 2026, idle_guard developers
#
# The client idle_guard ends is told why: its FATAL carries idle_guard's
# message (the shape of the silence and its figures), detail (the rule,
# the setting and its value, the locks, the waiters) and hint, read here
# through psql (libpq) and through the raw protocol client; the server
# log's FATAL line has the same words.  idle_guard.terminate_sqlstate
# switches an idle transaction's 57P01 to 25P03.  Nothing else changes:
#	- a DBA's pg_terminate_backend(), after idle_guard only reported the
#	  session, PostgreSQL's idle_in_transaction_session_timeout and a fast
#	  shutdown give PostgreSQL's own words;
#	- with log_min_messages = panic the hook does not run: the session is
#	  ended all the same, the server goes on, and the next backend ended by
#	  a DBA reads PostgreSQL's words, not a note left for the first.

use strict;
use warnings FATAL => 'all';

use FindBin;
use lib $FindBin::RealBin;

use IdleGuardTest;
use IgWire;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = ig_node('client_message');
$node->safe_psql('postgres',
	'CREATE TABLE t (id int PRIMARY KEY, v int); INSERT INTO t VALUES (1, 0), (2, 0);');

my $pg_words = qr/FATAL:  57P01: terminating connection due to administrator command\n/;

# set_conf($name, $value): change a setting in postgresql.auto.conf and
# wait until the worker has it.
sub set_conf
{
	my ($name, $value) = @_;
	$node->safe_psql('postgres', "ALTER SYSTEM SET $name = '$value'");
	ig_worker_looks_now($node, "$name = $value in force");
}

#
# 1. The blocking rule, idle in transaction, through psql.
#
# (Here and below, on a loaded machine a writer may come after its
# holder's deadline, and the holder be ended before the writer is seen
# waiting: ig_waiting_session with blocker does not fail for that.)
my $offset = -s $node->logfile;
my ($s1, $pid1) = ig_silent_session($node, 'forgetful',
	"\\set VERBOSITY verbose\nBEGIN; UPDATE t SET v = v + 1 WHERE id = 1;");
my ($w1, $wpid1) = ig_waiting_session($node, 'writer',
	'UPDATE t SET v = v + 10 WHERE id = 1;', blocker => $pid1);
ig_wait_gone($node, $pid1, '1: ended at blocking_timeout');
my $message1 = 'terminating connection because it was idle in transaction '
  . 'for [\d.]+ s while blocking 1 other session';
my $detail1 = 'idle_guard ended it by its blocking rule: idle_guard\.blocking_timeout '
  . "is 2s\\. It held 2 locks, the strongest RowExclusiveLock; waiting on it: pid $wpid1\\.";
my $hint1 = 'Commit or roll back each transaction promptly; do not keep one open '
  . 'while waiting for a user or another service\.';
my $error1 = ig_client_error($s1);
note("forgetful's psql (the writer is pid $wpid1):\n$error1");
like($error1,
	qr/FATAL:  57P01: $message1\nDETAIL:  $detail1\nHINT:  $hint1\n/,
	'1: psql reads 57P01 with why, the rule and figures, and a hint');
# from 18 on the log's detail also names the signal's sender
$node->wait_for_log(
	qr/\[$pid1\] forgetful FATAL:  $message1\n.*DETAIL:  $detail1(?: Signal sent by PID \d+, UID \d+\.)?\n.*HINT:  $hint1\n/,
	$offset);
pass("1: the server log's FATAL line has the same words");
$w1->quit;

#
# 2. The idle rule and terminate_sqlstate = 25P03, through the raw client.
#
set_conf('idle_guard.terminate_sqlstate', '25P03');
my $c2 = IgWire->connect($node, application_name => 'raw_idle');
my $pid2 = $c2->pid;
$c2->query_ok("SET idle_guard.idle_timeout = '3s'");
$c2->query_ok('BEGIN');
$c2->query_ok('SELECT v FROM t WHERE id = 2 FOR UPDATE');
ig_wait_gone($node, $pid2, '2: ended at idle_timeout');
my $r2 = $c2->read_until_ready;
ok($r2->{eof}, '2: the raw client sees its connection closed');
my $f2 = $r2->{fields}[0] // {};
is(join('|', map { $f2->{$_} // '' } qw(S V C)), 'FATAL|FATAL|25P03',
	'2: severity FATAL, SQLSTATE 25P03 (terminate_sqlstate)');
like($f2->{M} // '',
	qr/^terminating connection because it was idle in transaction for [\d.]+ s while holding locks$/,
	'2: the message says idle in transaction, holding locks');
like($f2->{D} // '',
	qr/^idle_guard ended it by its idle rule: idle_guard\.idle_timeout is 3s\. It held \d+ locks?, the strongest RowShareLock; nobody waited on it\.$/,
	"2: the detail gives the rule, the session's own value, the locks");
like($f2->{H} // '', qr/^Commit or roll back each transaction promptly/, '2: the hint');
$c2->close;

# 2b. The blocking rule with 25P03, through the raw client.
my $c2b = IgWire->connect($node, application_name => 'raw_blocking');
my $pid2b = $c2b->pid;
$c2b->query_ok('BEGIN');
$c2b->query_ok('UPDATE t SET v = v + 1 WHERE id = 2');
my ($w2b, $wpid2b) = ig_waiting_session($node, 'writer2b',
	'UPDATE t SET v = v + 10 WHERE id = 2;', blocker => $pid2b);
ig_wait_gone($node, $pid2b, '2b: ended at blocking_timeout');
my $f2b = $c2b->read_until_ready->{fields}[0] // {};
is(join('|', map { $f2b->{$_} // '' } qw(S C)), 'FATAL|25P03',
	'2b: the blocking rule reads 25P03 too');
like($f2b->{M} // '',
	qr/^terminating connection because it was idle in transaction for [\d.]+ s while blocking 1 other session$/,
	'2b: the message says blocking 1 other session');
is($f2b->{D},
	'idle_guard ended it by its blocking rule: idle_guard.blocking_timeout is 2s. '
	  . "It held 2 locks, the strongest RowExclusiveLock; waiting on it: pid $wpid2b.",
	'2b: the detail names the waiter');
$c2b->close;
$w2b->quit;

#
# 3. A request without Sync, through the raw client: 57P01 whatever
#    terminate_sqlstate says (it is no idle transaction).
#
my $c3 = IgWire->connect($node, application_name => 'half_request');
my $pid3 = $c3->pid;
$c3->query_ok('BEGIN');
$c3->parse('', 'UPDATE t SET v = v + 1 WHERE id = $1');
$c3->bind('', '', 1);
$c3->execute('', 0);
$c3->flush;
my ($w3, $wpid3) = ig_waiting_session($node, 'writer3',
	'UPDATE t SET v = v + 10 WHERE id = 1;', blocker => $pid3);
ig_wait_gone($node, $pid3, '3: ended at blocking_timeout');
my $r3 = $c3->read_until_ready;
my ($f3) = grep { ($_->{S} // '') eq 'FATAL' } @{ $r3->{fields} };
$f3 //= {};
is($f3->{C}, '57P01', '3: SQLSTATE 57P01');
like($f3->{M} // '',
	qr/^terminating connection because it waited for the rest of its client's request for [\d.]+ s while blocking 1 other session$/,
	'3: the message says the request was left incomplete');
like($f3->{H} // '', qr/^End each extended-query request with Sync/, '3: the hint');
$c3->close;
$w3->quit;
set_conf('idle_guard.terminate_sqlstate', '57P01');

#
# 4. A session-level lock, with session_locks = on.
#
set_conf('idle_guard.session_locks', 'on');
my ($s4, $pid4) = ig_silent_session($node, 'advisory',
	"\\set VERBOSITY verbose\nSELECT pg_advisory_lock(42);");
my ($w4) = ig_waiting_session($node, 'waiter4', 'SELECT pg_advisory_lock(42);',
	blocker => $pid4);
ig_wait_gone($node, $pid4, '4: ended at blocking_timeout');
like(ig_client_error($s4),
	qr/FATAL:  57P01: terminating connection because it was idle holding a session-level lock for [\d.]+ s while blocking 1 other session\n.*HINT:  Release session-level locks/s,
	'4: the message says a session-level lock');
$w4->quit;

#
# 5. Report mode, then a DBA's pg_terminate_backend(): PostgreSQL's words.
#
set_conf('idle_guard.action', 'report');
my ($s5, $pid5) = ig_silent_session($node, 'reported',
	"\\set VERBOSITY verbose\nBEGIN; UPDATE t SET v = v + 1 WHERE id = 2;");
my ($w5) = ig_waiting_session($node, 'writer5',
	'UPDATE t SET v = v + 10 WHERE id = 2;');
ig_wait_for($node, "SELECT count(*) FROM idle_guard_history() WHERE pid = $pid5",
	'1', '5: reported');
ig_value($node, "SELECT pg_terminate_backend($pid5)");
ig_wait_gone($node, $pid5, '5: ended by the DBA');
like(ig_client_error($s5), $pg_words,
	"5: a DBA's pg_terminate_backend() gives PostgreSQL's words");
$w5->quit;
set_conf('idle_guard.action', 'terminate');

# 5b. PostgreSQL's own idle_in_transaction_session_timeout keeps its words.
my ($s5b, $pid5b) = ig_silent_session($node, 'builtin_timeout',
	"\\set VERBOSITY verbose\nSET idle_in_transaction_session_timeout = '1s'; BEGIN; SELECT 1;");
ig_wait_gone($node, $pid5b, '5b: ended by the built-in timeout');
like(ig_client_error($s5b),
	qr/FATAL:  25P03: terminating connection due to idle-in-transaction timeout\n/,
	"5b: the built-in timeout gives PostgreSQL's words");

#
# 6. log_min_messages = panic: the hook does not run.
#
set_conf('log_min_messages', 'panic');
my ($s6, $pid6) = ig_silent_session($node, 'unhooked',
	"\\set VERBOSITY verbose\nBEGIN; UPDATE t SET v = v + 1 WHERE id = 1;");
my ($w6) = ig_waiting_session($node, 'writer6',
	'UPDATE t SET v = v + 10 WHERE id = 1;', blocker => $pid6);
ig_wait_gone($node, $pid6, '6: ended all the same');
like(ig_client_error($s6), $pg_words,
	"6: with no hook, the client reads PostgreSQL's words");
is(ig_history($node, $pid6), 'terminated', '6: history: terminated');
$w6->quit;
set_conf('log_min_messages', 'warning');
# The next backends may take the PGPROC of the one just ended, whose note
# was never taken: a DBA's termination of each still reads PostgreSQL's
# words.
for my $i (1 .. 3)
{
	my ($s, $pid) = ig_silent_session($node, "next$i",
		"\\set VERBOSITY verbose\nBEGIN; SELECT 1;");
	ig_value($node, "SELECT pg_terminate_backend($pid)");
	ig_wait_gone($node, $pid, "6: next backend $i ended by the DBA");
	like(ig_client_error($s), $pg_words,
		"6: next backend $i reads PostgreSQL's words, no stale note");
}
is(ig_value($node, 'SELECT 1'), '1', '6: the server goes on');

#
# 7. A fast shutdown: PostgreSQL's words.
#
my ($s7, $pid7) = ig_silent_session($node, 'at_shutdown',
	"\\set VERBOSITY verbose\nBEGIN; UPDATE t SET v = v + 1 WHERE id = 2;");
$node->stop('fast');
like(ig_client_error($s7), $pg_words,
	"7: a fast shutdown gives PostgreSQL's words");

done_testing();
