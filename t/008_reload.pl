# Copyright (c) 2026, idle_guard developers
#
# A reload changes the policy at once: a silent session that has blocked a
# writer for a while is spared under blocking_timeout = 1h (the worker is
# seen judging it so), and terminated right after blocking_timeout is
# lowered to 500ms with ALTER SYSTEM and pg_reload_conf().
#
# Bad values are rejected and leave the policy and the worker alone:
# ALTER SYSTEM refuses naptime = 5ms and exempt_applications = 'a*b';
# the same bad values for action and exempt_applications written into
# postgresql.conf are refused at reload (the server log says why, SHOW
# keeps the previous value), and the worker keeps running (same pid,
# sweeps advancing) and acting with the previous values.

use strict;
use warnings FATAL => 'all';

use FindBin;
use lib $FindBin::RealBin;

use IdleGuardTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

# exempt_applications is set (it is empty by default) so that the worker
# is seen keeping a previous value that exempts a session.
my $node = ig_node(
	'reload',
	'idle_guard.blocking_timeout' => "'1h'",
	'idle_guard.exempt_applications' => "'pg_dump'");
$node->safe_psql('postgres',
	'CREATE TABLE accounts (id int PRIMARY KEY, balance int);'
	  . 'INSERT INTO accounts VALUES (1, 100), (2, 100);');

#
# Lowering blocking_timeout applies at once.
#
my ($holder, $pid) = ig_silent_session($node, 'slowpoke',
	'BEGIN; UPDATE accounts SET balance = balance - 10 WHERE id = 1;');
my ($writer, $writer_pid) = ig_waiting_session($node, 'writer',
	'UPDATE accounts SET balance = balance + 1 WHERE id = 1;');

# Wait until it has blocked for more than 500ms, and make the worker judge
# it under the 1h timeout (a reload without changes makes it sweep).
ig_wait_for($node,
	"SELECT silent_for > interval '600 ms' AND blocked_total = 1 "
	  . "FROM idle_guard_report() WHERE pid = $pid",
	't', 'blocking for more than 500ms');
ig_worker_looks_now($node,
	'the worker judged it under blocking_timeout = 1h',
	guarded => 1);
ok(ig_pid_alive($node, $pid), 'spared under blocking_timeout = 1h');
is( $node->safe_psql('postgres',
		"SELECT rule, action, deadline - silent_since FROM idle_guard_report() WHERE pid = $pid"
	),
	'blocking|terminate|01:00:00',
	'report: deadline one hour after the silence');
is($node->safe_psql('postgres', 'SELECT count(*) FROM idle_guard_history()'),
	'0', 'nothing recorded');

my $t_reload = $node->safe_psql('postgres',
	"ALTER SYSTEM SET idle_guard.blocking_timeout = '500ms';"
	  . 'SELECT clock_timestamp() FROM pg_reload_conf();');
ig_wait_gone($node, $pid, 'terminated after blocking_timeout lowered to 500ms');
my ($action, $silent_ms, $after_reload_ms) = split /\|/, $node->safe_psql(
	'postgres',
	"SELECT action, (extract(epoch FROM silent_for) * 1000)::float8, "
	  . "(extract(epoch FROM at - '$t_reload') * 1000)::float8 "
	  . "FROM idle_guard_history() WHERE pid = $pid");
is($action, 'terminated', 'history records the termination');
cmp_ok($silent_ms, '>=', 600, 'after more than the new timeout of silence');
cmp_ok($after_reload_ms, '<', 3000,
	'at once after the reload (the old deadline was an hour away)');
$writer->query_safe('SELECT 1');
ig_close($holder);

#
# Bad values.
#
my ($ret, $stderr);
$ret = $node->psql('postgres', "ALTER SYSTEM SET idle_guard.naptime = '5ms'",
	stderr => \$stderr);
isnt($ret, 0, 'ALTER SYSTEM SET naptime = 5ms fails');
like(
	$stderr,
	qr/5 ms is outside the valid range for parameter "idle_guard.naptime" \(10( ms)? \.\. 3600000( ms)?\)/,
	'... with the valid range');
$ret = $node->psql('postgres',
	"ALTER SYSTEM SET idle_guard.exempt_applications = 'a*b'",
	stderr => \$stderr);
isnt($ret, 0, "ALTER SYSTEM SET exempt_applications = 'a*b' fails");
like(
	$stderr,
	qr/invalid value for parameter "idle_guard.exempt_applications": "a\*b".*\n.*"\*" is allowed only as the last character/,
	'... saying where "*" may go');
unlike(slurp_file($node->data_dir . '/postgresql.auto.conf'),
	qr/naptime|exempt_applications/, 'neither reached postgresql.auto.conf');

my ($worker_pid, $sweeps) = split /\|/,
  $node->safe_psql('postgres', 'SELECT worker_pid, sweeps FROM idle_guard_stats()');
my $offset = -s $node->logfile;

$node->append_conf('postgresql.conf', "idle_guard.action = 'bogus'");
$node->append_conf('postgresql.conf', "idle_guard.exempt_applications = 'a*b'");
$node->safe_psql('postgres', 'SELECT pg_reload_conf()');
$node->wait_for_log(
	qr/invalid value for parameter "idle_guard.action": "bogus"/, $offset);
pass('server log: invalid value for idle_guard.action');
$node->wait_for_log(
	qr/invalid value for parameter "idle_guard.exempt_applications": "a\*b"/,
	$offset);
pass('server log: invalid value for idle_guard.exempt_applications');
$node->wait_for_log(qr/contains errors; unaffected changes were applied/,
	$offset);
pass('server log: the file was processed, the bad values skipped');

# The postmaster logs that before it signals its children: a sweep that
# starts after this moment follows the worker's own reload.
ig_worker_looks_now($node, 'worker swept after the bad reload');
is($node->safe_psql('postgres', 'SHOW idle_guard.action'),
	'terminate', 'action keeps its previous value');
is($node->safe_psql('postgres', 'SHOW idle_guard.exempt_applications'),
	'pg_dump', 'exempt_applications keeps its previous value');

# The worker survived the reload and keeps sweeping.
ig_wait_for($node,
	"SELECT sweeps >= $sweeps + 2 FROM idle_guard_stats()",
	't', 'sweeps advance after the bad reload');
is($node->safe_psql('postgres', 'SELECT worker_pid FROM idle_guard_stats()'),
	$worker_pid, 'same worker');

# ... and still acts with the previous values: it terminates a blocking
# session (action is still terminate) and spares one named pg_dump
# (exempt_applications is still pg_dump).
my ($h2, $pid2) = ig_silent_session($node, 'slowpoke2',
	'BEGIN; UPDATE accounts SET balance = balance - 10 WHERE id = 2;');
my ($dump, $dump_pid) = ig_silent_session($node, 'pg_dump',
	'BEGIN; LOCK accounts IN ACCESS SHARE MODE;');
# (slowpoke2 may be past its 500ms deadline already on a loaded machine,
# and ended as soon as writer2 waits, before writer2 is seen waiting)
my ($w2) = ig_waiting_session($node, 'writer2',
	'UPDATE accounts SET balance = balance + 1 WHERE id = 2;', blocker => $pid2);
my ($w3) = ig_waiting_session($node, 'ddl',
	'ALTER TABLE accounts ADD COLUMN note text;');
ig_wait_gone($node, $pid2, 'blocking session terminated after the bad reload');
ig_wait_sweep_after($node, $dump_pid, 500);
ok(ig_pid_alive($node, $dump_pid), 'pg_dump still exempt');
is( $node->safe_psql('postgres',
		"SELECT action FROM idle_guard_report() WHERE pid = $dump_pid"),
	'exempt',
	'report: pg_dump exempt');
$dump->query_safe('COMMIT');
$w3->quit;
$w2->quit;
ig_close($h2);
$writer->quit;
$node->stop;
done_testing();
