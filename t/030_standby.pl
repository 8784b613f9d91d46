# Copyright (c) 2026, idle_guard developers
#
# A hot standby, where a silent reader stops WAL replay.  A primary and a
# streaming standby, idle_guard preloaded on both; the standby waits
# forever for conflicting queries (max_standby_streaming_delay = -1), so
# only idle_guard can end the outage.
#
#	A. A silent reader of t on the standby; ALTER TABLE t on the primary.
#	   Replay waits for an AccessExclusiveLock, and a reader that comes
#	   later queues behind it.  The report counts replay (and the late
#	   reader) as blocked, names the relation, and the silent reader is
#	   ended at blocking_timeout by PostgreSQL's recovery-conflict signal:
#	   its client reads 40001, in idle_guard's words; replay catches up and
#	   the late reader completes.
#	B. The same with an active query in the conflict too: idle_guard ends
#	   only the silent reader; the active query runs to its end untouched,
#	   and replay goes on after it.
#	C. A silent session in no conflict is spared until idle_timeout, then
#	   ended with SIGTERM.
#	D. A snapshot conflict (REPEATABLE READ reader, VACUUM on the primary)
#	   is shown in idle_guard_stats() and never acted on as a lock
#	   conflict; the reader's xmin age is in the report.
#	E. action = report only reports: replay stays stopped.
#	F. Promotion during a silence: the same worker carries on and acts on
#	   the episode once.

use strict;
use warnings FATAL => 'all';

use FindBin;
use lib $FindBin::RealBin;

use IdleGuardTest;
use IgWire;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

# Long enough that the report is read before the deadline on a loaded
# machine: the ALTER must be replayed and a reader queue first.
my $timeout_ms = 4000;
my $idle_ms = 9000;

my $primary = ig_primary('primary',
	'idle_guard.blocking_timeout' => "'${timeout_ms}ms'");
$primary->safe_psql('postgres',
	join('', map { "CREATE TABLE $_ (a int); INSERT INTO $_ SELECT generate_series(1, 100);" }
		qw(t u v w x)));
my $standby = ig_standby($primary, 'standby',
	listen_addresses => "'127.0.0.1'",
	max_standby_streaming_delay => '-1',
	hot_standby_feedback => 'off',
	'idle_guard.idle_timeout' => "'${idle_ms}ms'");

# The worker runs during recovery.
ig_wait_for($standby,
	"SELECT worker_pid IS NOT NULL AND in_recovery FROM idle_guard_stats()",
	't', 'the worker runs on the hot standby');
my $startup_pid = ig_value($standby,
	"SELECT pid FROM pg_stat_activity WHERE backend_type = 'startup'");
is(ig_value($standby, 'SELECT replay_pid, replay_wait IS NULL FROM idle_guard_stats()'),
	"$startup_pid|t", 'stats name the startup process, waiting for nothing');

# replay_caught_up($what): wait until the standby has replayed all the
# primary has written; one test assertion.
sub replay_caught_up
{
	my ($what) = @_;
	my $lsn = $primary->lsn('insert');
	ig_wait_for($standby,
		"SELECT pg_last_wal_replay_lsn() >= '$lsn'::pg_lsn", 't', $what);
}

# replay_waits_on($table): wait until replay waits for a lock on $table.
sub replay_waits_on
{
	my ($table) = @_;
	ig_wait_for($standby,
		"SELECT replay_wait = 'lock' AND replay_wait_relation = '$table' "
		  . "AND replay_wait_since IS NOT NULL FROM idle_guard_stats()",
		't', "replay waits for a lock on $table");
}

# show($sql): print what psql shows for $sql on the standby, expanded, as
# a note in the TAP output (docs/design.md's example comes from it).
sub show
{
	my ($sql) = @_;
	note("standby=# $sql\n" . ig_psql_table($standby, $sql, expanded => 1));
}

#
# A. A silent reader blocks replay and a late reader.
#
# The premise, on a loaded machine too: replay waits, the late reader
# queues, and the report is read before the reader's deadline, by the
# server's clock; else the scene is set up again, with an ALTER adding a
# column of its own.
my $scene = ig_setup_in_time(
	$standby,
	'A: replay and the late reader wait, and the report is read, before the deadline',
	sub {
		my ($attempt) = @_;
		my %sc = (offset => -s $standby->logfile, column => "c$attempt");
		my ($s1, $s1_pid) = ig_silent_session($standby, 'reader',
			"\\set VERBOSITY verbose\nBEGIN; SELECT count(*) FROM t;");
		my $since = ig_silent_since($standby, $s1_pid);
		$sc{undo} = sub {
			my $lsn = $primary->lsn('insert');
			$standby->poll_query_until('postgres',
				"SELECT pg_last_wal_replay_lsn() >= '$lsn'::pg_lsn")
			  or die 'A: replay did not catch up';
		};
		$primary->safe_psql('postgres', "ALTER TABLE t ADD COLUMN $sc{column} int");
		# replay waits for a lock on t, unless the reader is gone
		$standby->poll_query_until('postgres',
			"SELECT coalesce((SELECT replay_wait = 'lock' AND replay_wait_relation = 't' "
			  . "AND replay_wait_since IS NOT NULL FROM idle_guard_stats()), false) "
			  . "OR NOT EXISTS (SELECT FROM pg_stat_activity WHERE pid = $s1_pid)")
		  or die 'A: replay never waited';
		my ($late, $late_pid) = ig_waiting_session($standby, 'late',
			'SELECT count(*) FROM t;', blocker => $s1_pid);
		$sc{replay_blockers} = ig_value($standby, "SELECT pg_blocking_pids($startup_pid)");
		$sc{row} = ig_value($standby,
			"SELECT blocked_direct, blocked_total, blocked_pids, blocks_replay, "
			  . "replay_relation, rule, action, enforced, xmin_age IS NULL, "
			  . "silent_for < interval '$timeout_ms ms', client_link "
			  . "FROM idle_guard_report() WHERE pid = $s1_pid");
		return {
			%sc,
			ok => ig_before_deadline($standby, $since, $timeout_ms),
			s1 => $s1, s1_pid => $s1_pid, late => $late, late_pid => $late_pid,
			end => [ $late_pid, $s1_pid ], sessions => [ $late, $s1 ] };
	});
my ($offset, $s1, $s1_pid, $late, $late_pid) = @$scene{qw(offset s1 s1_pid late late_pid)};
pass('replay waits for a lock on t');
is($scene->{replay_blockers}, '{}',
	'pg_blocking_pids() does not see what replay waits for');

my $pids = join(',', sort { $a <=> $b } ($startup_pid, $late_pid));
is($scene->{row},
	"1|2|{$pids}|t|t|blocking|terminate|t|t|t|local",
	'report: the reader blocks replay and, behind it, the late reader');
show('SELECT pid, application_name, silent_for, blocked_total, blocked_pids, rule, '
	  . 'action, blocks_replay, replay_relation, xmin_age, enforced FROM idle_guard_report');
show('SELECT worker_pid, in_recovery, replay_pid, replay_wait, replay_wait_since, '
	  . 'replay_wait_relation FROM idle_guard_stats()');
note("startup process: $startup_pid, late reader: $late_pid");

ig_wait_gone($standby, $s1_pid, 'the silent reader is ended');
ig_check_terminated($standby, $s1_pid,
	offset => $offset,
	app => 'reader',
	timeout_ms => $timeout_ms,
	blocked => 2,
	blocks_replay => 1,
	detail => 'recovery conflict signal sent',
	label => 'A');
my ($first, $second) = sort { $a <=> $b } ($startup_pid, $late_pid);
my %tag = ($startup_pid => ' (WAL replay)', $late_pid => '');
my $s1_error = ig_client_error($s1);
note("the reader's psql:\n$s1_error");
like(
	$s1_error,
	qr/FATAL:  40001: terminating connection because it was idle in transaction for [\d.]+ s while blocking WAL replay and 1 other session\nDETAIL:  idle_guard ended it by its blocking rule: idle_guard\.blocking_timeout is 4s\. It held 1 lock, the strongest AccessShareLock; waiting on it: pids $first\Q$tag{$first}\E, $second\Q$tag{$second}\E\.\nHINT:  On a standby an open transaction holds back WAL replay: commit or roll back promptly\. You can reconnect and repeat your command\./,
	'the client reads 40001, as for a recovery conflict, with why: WAL replay and a reader waited'
);
is( ig_history($standby, $s1_pid,
		"record->'standby'->>'blocks_replay'",
		"record->'standby'->>'replay_wait'",
		"record->'standby'->>'relation_name'",
		"record->'standby'->>'mode_requested'",
		"(SELECT string_agg(w->>'wal_replay', '/' ORDER BY (w->>'pid')::int) "
		  . "FROM jsonb_array_elements(record->'waiters') w)",
		"record->'xmin_age' = 'null'::jsonb"),
	'true,lock,t,AccessExclusiveLock,'
	  . ($startup_pid < $late_pid ? 'true/false' : 'false/true') . ',true',
	'the record says replay waited, for AccessExclusiveLock on t');

ig_wait_unblocked($standby, $late_pid, 'the late reader proceeds');
replay_caught_up('replay catches up with the primary');
is( ig_value($standby,
		"SELECT count(*) FROM pg_attribute WHERE attrelid = 't'::regclass "
		  . "AND attname = '$scene->{column}'"),
	'1', 'the ALTER has been replayed');
is(ig_query($late, 'SELECT 1'), "100\n1",
	'the late reader got its answer and goes on');
is(ig_value($standby, 'SELECT replay_wait IS NULL FROM idle_guard_stats()'),
	't', 'stats: replay waits for nothing any more');

#
# B. An active query in the same conflict is PostgreSQL's business.
#
$offset = -s $standby->logfile;
my ($s2, $s2_pid) = ig_silent_session($standby, 'reader2',
	'BEGIN; SELECT count(*) FROM u;');
my ($a1, $a1_pid) = ig_silent_session($standby, 'active', undef);
ig_send($a1, 'SELECT count(*), pg_sleep(8) FROM u;');
ig_wait_for($standby,
	"SELECT state = 'active' AND wait_event = 'PgSleep' FROM pg_stat_activity WHERE pid = $a1_pid",
	't', 'the active query runs');
$primary->safe_psql('postgres', 'ALTER TABLE u ADD COLUMN c int');
replay_waits_on('u');
ig_wait_gone($standby, $s2_pid, 'the silent reader is ended');
ok(ig_pid_alive($standby, $a1_pid), 'the active query is not touched');
is(ig_value($standby, "SELECT replay_wait FROM idle_guard_stats()"),
	'lock', 'replay still waits for the active query');
is(ig_query($a1, 'SELECT 1'), "100|\n1",
	'the active query ran to its end without error');
replay_caught_up('replay catches up once the active query ends');
is(ig_history($standby, $a1_pid), '',
	'idle_guard did nothing to the active query');
is(ig_history($standby, $s2_pid, 'action', 'detail'),
	'terminated,recovery conflict signal sent',
	'only the silent reader was ended');
ig_close($s2);
$a1->quit;

#
# C. A silent session in no conflict is spared until idle_timeout.
#
# The premise: the worker's sweep past blocking_timeout, and the look
# after it, come before idle_timeout, by the server's clock; else the
# scene is set up again.
$scene = ig_setup_in_time(
	$standby,
	'C: spared past blocking_timeout, seen before idle_timeout',
	sub {
		my %sc = (offset => -s $standby->logfile);
		my ($s3, $s3_pid) = ig_silent_session($standby, 'quiet',
			"\\set VERBOSITY verbose\nBEGIN; SELECT count(*) FROM v;");
		my $since = ig_silent_since($standby, $s3_pid);
		my $tcp = IgWire->connect($standby, host => '127.0.0.1', application_name => 'tcp');
		$sc{undo} = sub { $tcp->close; };
		$tcp->query_ok('BEGIN');
		$tcp->query_ok('SELECT count(*) FROM v');
		$sc{link} = ig_value($standby,
			'SELECT client_link FROM idle_guard_report() WHERE pid = ' . $tcp->pid);
		$standby->poll_query_until('postgres',
			"SELECT last_sweep_at > '$since'::timestamptz "
			  . "+ interval '@{[ $timeout_ms + 500 ]} ms' FROM idle_guard_stats()")
		  or die 'C: no sweep past blocking_timeout';
		$sc{alive} = ig_pid_alive($standby, $s3_pid);
		return {
			%sc,
			ok => ig_before_deadline($standby, $since, $idle_ms),
			s3 => $s3, s3_pid => $s3_pid, tcp => $tcp,
			end => [ $tcp->pid, $s3_pid ], sessions => [$s3] };
	});
$offset = $scene->{offset};
my ($s3, $s3_pid, $tcp) = @$scene{qw(s3 s3_pid tcp)};
is($scene->{link}, 'alive', "the kernel's view of a TCP client works on a standby too");
ok($scene->{alive}, 'a silent session in no conflict is spared past blocking_timeout');
ig_wait_gone($standby, $s3_pid, 'it is ended at idle_timeout');
$tcp->close;
my ($h_ms, $h) = split /,/,
  ig_history($standby, $s3_pid, 'extract(epoch FROM silent_for) * 1000',
	'rule', 'action', 'detail', "record->'standby'->>'blocks_replay'"), 2;
is($h, 'idle,terminated,SIGTERM sent,false',
	'by the idle rule, with SIGTERM: no conflict, no conflict message');
cmp_ok($h_ms, '>=', $idle_ms, 'not before idle_timeout');
like(
	ig_client_error($s3),
	qr/FATAL:  57P01: terminating connection because it was idle in transaction for [\d.]+ s while holding locks\nDETAIL:  idle_guard ended it by its idle rule: idle_guard\.idle_timeout is 9s\. It held 1 lock, the strongest AccessShareLock; nobody waited on it\./,
	'its client reads 57P01, and why');

#
# D. A snapshot conflict is reported, never acted on as a lock conflict.
#
my ($s4, $s4_pid) = ig_silent_session($standby, 'snapshot',
	'BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT count(*) FROM x;');
$primary->safe_psql('postgres',
	'DELETE FROM x; VACUUM (TRUNCATE false) x;');
ig_wait_for($standby,
	"SELECT replay_wait = 'snapshot' AND replay_wait_since IS NOT NULL "
	  . "AND replay_wait_relation IS NULL FROM idle_guard_stats()",
	't', 'stats: replay waits on a snapshot conflict');
ig_wait_sweep_after($standby, $s4_pid, $timeout_ms + 500);
is( ig_value($standby,
		"SELECT blocked_total, blocks_replay, rule IS DISTINCT FROM 'blocking', "
		  . "xmin_age > 0 FROM idle_guard_report() WHERE pid = $s4_pid"),
	'0|f|t|t',
	'report: the reader is not guessed to block replay; its xmin age shows');
ok(ig_pid_alive($standby, $s4_pid),
	'the snapshot holder is not ended at blocking_timeout');
is(ig_value($standby, 'SELECT replay_wait FROM idle_guard_stats()'),
	'snapshot', 'replay still waits on the snapshot');
$s4->query_safe('ROLLBACK');
replay_caught_up('replay goes on once the snapshot is gone');
is(ig_history($standby, $s4_pid), '', 'nothing was done to it');
$s4->quit;

#
# E. Report mode only reports.
#
$standby->append_conf('postgresql.conf', "idle_guard.action = 'report'\n");
$standby->reload;
$offset = -s $standby->logfile;
my ($s5, $s5_pid) = ig_silent_session($standby, 'reported',
	'BEGIN; SELECT count(*) FROM w;');
$primary->safe_psql('postgres', 'ALTER TABLE w ADD COLUMN c int');
replay_waits_on('w');
$standby->wait_for_log(
	qr/idle_guard: silent session holds locks pid=$s5_pid .* rule=blocking action=report reason="idle in transaction" blocks_replay=true link="local"\n/,
	$offset);
pass('report mode: one LOG line, blocks_replay=true');
ig_wait_sweep_after($standby, $s5_pid, $timeout_ms + 500);
ok(ig_pid_alive($standby, $s5_pid), 'report mode: the reader is not ended');
is(ig_value($standby, 'SELECT replay_wait FROM idle_guard_stats()'),
	'lock', 'report mode: replay stays stopped');
is(ig_history($standby, $s5_pid), 'reported', 'history: reported once');
$s5->query_safe('COMMIT');
replay_caught_up('replay goes on once the reader commits');
$s5->quit;

#
# F. Promotion during a silence: one worker, one action.
#
$standby->append_conf('postgresql.conf', "idle_guard.action = 'terminate'\n");
$standby->reload;
my $worker_pid = ig_value($standby, 'SELECT worker_pid FROM idle_guard_stats()');
$offset = -s $standby->logfile;
my ($s6, $s6_pid) = ig_silent_session($standby, 'promoted',
	'BEGIN; SELECT count(*) FROM v;');
ig_worker_looks_now($standby, 'the worker has seen the silence before promotion',
	guarded => 1);
$standby->promote;
is(ig_value($standby, 'SELECT pg_is_in_recovery()'), 'f', 'promoted');
ig_wait_gone($standby, $s6_pid, 'the silent session is ended after promotion');
is(ig_value($standby, 'SELECT worker_pid, in_recovery FROM idle_guard_stats()'),
	"$worker_pid|f", 'the same worker carried on through promotion');
ig_worker_looks_now($standby, 'the worker swept again after the action');
is(ig_history($standby, $s6_pid, 'rule', 'action'), 'idle,terminated',
	'one action in the history');
my @lines = ig_log_lines($standby, $offset, qr/idle_guard: .* pid=$s6_pid /);
is(scalar @lines, 1, 'one LOG line');

$standby->stop;
$primary->stop;
done_testing();
