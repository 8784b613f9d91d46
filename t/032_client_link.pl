# Copyright (c) 2026, idle_guard developers
#
# Why did the client go silent?  What the kernel's TCP state says of each
# silent session's client, on real TCP connections to 127.0.0.1 and ::1:
#	a. a client paused with SIGSTOP: its kernel still answers the
#	   keepalive probes idle_guard.tcp_keepalives asks for: "alive", and
#	   not ended at unreachable_timeout;
#	b. a client that stops reading a large result: "not reading";
#	c. a connection severed by an nftables drop rule on its port pair:
#	   "unreachable" once two probes go unanswered, then ended by the
#	   unreachable rule although nobody waits and idle_timeout is far; the
#	   record keeps the evidence;
#	d. a Unix-socket client: "local";
#	e. the same on IPv6 (alive, then severed);
#	f. one client of each kind at once, a client that sent FIN while its
#	   backend waits to write among them ("closed").
# The test runs in a user and network namespace of its own (unshare), so
# that its firewall rules need no root and cannot outlive it; the rules are
# also deleted on exit.  Every wait is bounded.

use strict;
use warnings FATAL => 'all';

use FindBin;
use lib $FindBin::RealBin;

use IdleGuardTest;
BEGIN { ig_enter_netns(); }
use IgWire;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

my $unreachable_ms = 3000;
my $have_ipv6 = (`ip -6 addr show dev lo 2>/dev/null` =~ /::1/);

my $node = ig_node('client_link',
	listen_addresses => $have_ipv6 ? "'127.0.0.1,::1'" : "'127.0.0.1'",
	'idle_guard.tcp_keepalives' => "'1s'",
	'idle_guard.unreachable_timeout' => "'${unreachable_ms}ms'");
$node->safe_psql('postgres',
	'CREATE TABLE t (a int); INSERT INTO t VALUES (1);');

ig_firewall();

is(ig_value($node, "SELECT current_setting('tcp_keepalives_idle')"),
	'0', "a Unix-socket session keeps PostgreSQL's keepalive settings");
{
	my $c = IgWire->connect($node, host => '127.0.0.1');
	is( $c->query_ok(
			"SELECT current_setting('tcp_keepalives_idle') || '/' || current_setting('tcp_keepalives_interval')"),
		'1/1', 'a TCP session gets idle_guard.tcp_keepalives, and SHOW says so');
	$c->close;
}

#
# a. Paused with SIGSTOP: alive, and spared by the unreachable rule.
#
my ($c_a, $pid_a) = ig_silent_tcp($node, '127.0.0.1', 'paused');
# the connection now belongs to a child process, which is stopped
my $child_a = $c_a->in_child(sub { sleep 600; return 0; });
kill 'STOP', $child_a;
ig_wait_sweep_after($node, $pid_a, $unreachable_ms + 2000);
is(ig_link_of($node, $pid_a), 'alive', 'a: a paused client is alive: its kernel answers');
ok(ig_pid_alive($node, $pid_a),
	'a: not ended past unreachable_timeout: alive never shortens a deadline');
kill 'CONT', $child_a;
kill 'KILL', $child_a;
IgWire->wait_child($child_a);
ig_value($node, "SELECT pg_terminate_backend($pid_a)");

#
# b. Not reading a large result: not reading.
#
{
	my $c = IgWire->connect($node, host => '127.0.0.1',
		application_name => 'not_reading');
	my $pid = $c->pid;
	$c->query_ok('BEGIN');
	$c->query_ok('SELECT * FROM t');
	$c->send_query("SELECT repeat('x', 10000) FROM generate_series(1, 200000)");
	ig_wait_client_write($node, $pid, 'b: the backend waits in ClientWrite');
	ig_wait_for($node,
		"SELECT client_link FROM idle_guard_report() WHERE pid = $pid",
		'not reading', 'b: a client that stops reading: not reading');
	ig_value($node, "SELECT pg_terminate_backend($pid)");
	ig_wait_gone($node, $pid, 'b: ended by the test');
	$c->close;
}

#
# c. Severed: unreachable, then ended by the unreachable rule.
#
my $offset = -s $node->logfile;
my ($c_c, $pid_c, $port_c) = ig_silent_tcp($node, '127.0.0.1', 'severed');
is(ig_link_of($node, $pid_c), 'alive', 'c: before the cut: alive');
ig_sever($node, $port_c);
ig_wait_for($node,
	"SELECT client_link = 'unreachable' OR pid IS NULL FROM "
	  . "(SELECT 1) one LEFT JOIN idle_guard_report() ON pid = $pid_c",
	't', 'c: after the cut: unreachable (or already ended)');
ig_wait_gone($node, $pid_c, 'c: ended by the unreachable rule');
my $line = (ig_log_lines($node, $offset,
		qr/idle_guard: terminating silent session pid=$pid_c /))[0] // '';
my $f = ig_parse_log_line($line) // {};
is(join('|', map { $f->{$_} // '' } qw(app rule action blocked link)),
	'severed|unreachable|terminate|0|unreachable',
	'c: LOG line: rule unreachable, nobody blocked, link unreachable');
ok( $node->log_contains(
		qr/\[$pid_c\] severed FATAL:  terminating connection because it was idle in transaction for [\d.]+ s while holding locks, its client unreachable\n.*DETAIL:  idle_guard ended it by its unreachable rule: idle_guard\.unreachable_timeout is 3s, counted from its client's last acknowledgement [\d.]+ s before\./,
		$offset),
	"c: the server log's FATAL says why (the client cannot read it)");
my ($h_rule, $h_link, $state, $probes, $ack_ms) = split /,/,
  ig_history($node, $pid_c, 'rule', 'client_link',
	"record->'client_link'->>'state'",
	"(record->'client_link'->>'probes')::int + (record->'client_link'->>'retransmits')::int",
	"record->'client_link'->>'last_ack_recv_ms'");
is("$h_rule,$h_link,$state", 'unreachable,unreachable,unreachable',
	'c: history: the unreachable rule, the link unreachable');
cmp_ok($probes, '>=', 1, 'c: the record shows unanswered probes');
cmp_ok($ack_ms, '>=', $unreachable_ms,
	'c: the record shows no ACK for unreachable_timeout');
cmp_ok($ack_ms, '<', $unreachable_ms + IG_LATE_MS,
	'c: acted on soon after unreachable_timeout');
ig_heal($c_c, $port_c);

#
# d. A Unix-socket client: local.
#
my ($s_d, $pid_d) = ig_silent_session($node, 'unix', 'BEGIN; SELECT * FROM t;');
is(ig_link_of($node, $pid_d), 'local', 'd: a Unix-socket client is local');
$s_d->quit;

#
# e. IPv6.
#
SKIP:
{
	skip 'no ::1 in this network namespace', 4 unless $have_ipv6;
	my ($c, $pid, $port) = ig_silent_tcp($node, '::1', 'ipv6');
	is(ig_link_of($node, $pid), 'alive', 'e: an IPv6 client is found: alive');
	ig_sever($node, $port);
	ig_wait_for($node,
		"SELECT client_link = 'unreachable' OR pid IS NULL FROM "
		  . "(SELECT 1) one LEFT JOIN idle_guard_report() ON pid = $pid",
		't', 'e: severed: unreachable');
	ig_wait_gone($node, $pid, 'e: ended by the unreachable rule');
	ig_heal($c, $port);
}

#
# f. One of each at once, for docs/design.md: the unreachable rule off, so
#    that the severed client stays.
#
$node->append_conf('postgresql.conf', "idle_guard.unreachable_timeout = 0\n");
$node->reload;
ig_wait_for($node, "SELECT current_setting('idle_guard.unreachable_timeout')",
	'0', 'f: the unreachable rule is off');
my ($f_alive, $f_alive_pid) = ig_silent_tcp($node, '127.0.0.1', 'paused-app');
my $f_child = $f_alive->in_child(sub { sleep 600; return 0; });
kill 'STOP', $f_child;
my ($f_cut, $f_cut_pid, $f_cut_port) = ig_silent_tcp($node, '127.0.0.1', 'lost-network');
ig_sever($node, $f_cut_port);
my %f_reader;
for my $app ('slow-reader', 'gone-reader')
{
	my $c = IgWire->connect($node, host => '127.0.0.1', application_name => $app);
	$c->query_ok('BEGIN');
	$c->query_ok('SELECT * FROM t');
	$c->send_query("SELECT repeat('x', 10000) FROM generate_series(1, 200000)");
	ig_wait_client_write($node, $c->pid, "f: $app waits in ClientWrite");
	$f_reader{$app} = $c;
}
$f_reader{'gone-reader'}->shutdown_write;
my ($f_unix, $f_unix_pid) = ig_silent_session($node, 'unix-app',
	'BEGIN; SELECT * FROM t;');
my $apps = "'paused-app', 'lost-network', 'slow-reader', 'gone-reader', 'unix-app'";
ig_wait_for($node,
	"SELECT string_agg(application_name || '=' || client_link, ' ' ORDER BY application_name) "
	  . "FROM idle_guard_report() WHERE application_name IN ($apps)",
	'gone-reader=closed lost-network=unreachable paused-app=alive slow-reader=not reading unix-app=local',
	'f: closed, unreachable, alive, not reading and local at once');
note("=# SELECT pid, application_name, client_addr, state, wait_event, silent_for, client_link\n"
	  . "   FROM idle_guard_report ORDER BY pid;\n"
	  . ig_psql_table($node,
		"SELECT pid, application_name, client_addr, state, wait_event, "
		  . "date_trunc('second', silent_for) AS silent_for, client_link "
		  . "FROM idle_guard_report WHERE application_name IN ($apps) ORDER BY pid"));
kill 'KILL', $f_child;
IgWire->wait_child($f_child);
ig_unsever();

$node->stop;
done_testing();
