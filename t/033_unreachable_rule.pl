# Copyright (c) 2026, idle_guard developers
#
# The unreachable rule keeps its promise, and only on clients that are gone:
#	a. with blocking_timeout, idle_timeout and prepared_timeout at 0 (the
#	   unreachable rule alone), and again at their defaults: a silent lock
#	   holder whose TCP client is severed (an nftables drop rule on its
#	   port pair) is ended by the rule within naptime of its deadline,
#	   over IPv4 and IPv6, the evidence in its history record.  The worker
#	   has swept just before each client goes silent, so only a sleep
#	   bounded by unreachable_timeout brings it back in time.  A client
#	   lost during a long statement is given unreachable_timeout from the
#	   start of its silence;
#	b. live clients that stop reading a large result (a small receive
#	   buffer, so that their window closes) for three unreachable_timeouts
#	   are "not reading" at every sample, 50 ms apart, and never ended:
#	   their kernel answers the zero-window probes at most once per
#	   tcp_invalid_ratelimit, so one probe may go unanswered; 20 clients
#	   with the default rate limit (500 ms), 20 with 1000 ms.
# The test runs in a user and network namespace of its own (ig_enter_netns),
# so its firewall rules and sysctls need no root and die with it.  Every
# wait is bounded.

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
use Time::HiRes qw(time usleep);

my $have_ipv6 = (`ip -6 addr show dev lo 2>/dev/null` =~ /::1/);
my $naptime_ms = 500;

#
# a. A severed client, ended by the unreachable rule in time.
#
my $unreachable_ms = 3000;
my $node = ig_node('unreachable_rule',
	listen_addresses => $have_ipv6 ? "'127.0.0.1,::1'" : "'127.0.0.1'",
	'idle_guard.naptime' => "'${naptime_ms}ms'",
	'idle_guard.tcp_keepalives' => "'1s'",
	'idle_guard.unreachable_timeout' => "'${unreachable_ms}ms'",
	'idle_guard.blocking_timeout' => '0',
	'idle_guard.idle_timeout' => '0',
	'idle_guard.prepared_timeout' => '0');
$node->safe_psql('postgres',
	'CREATE TABLE t (a int PRIMARY KEY); INSERT INTO t VALUES (1), (2);');
ig_firewall();

# ended_within($pid, $seconds): has backend $pid exited within $seconds?
# Bounded well below what the old sleep bound would take (blocking_timeout
# 30 s by default, forever at 0), so that a miss fails quickly.
sub ended_within
{
	my ($pid, $seconds) = @_;
	my $until = time + $seconds;
	while (time < $until)
	{
		return 1 unless ig_pid_alive($node, $pid);
		usleep(100_000);
	}
	return 0;
}

# severed($label, $host): a client that locks a row, goes silent right
# after a sweep and is then severed; check it is ended by the unreachable
# rule no later than naptime (+ IG_LATE_MS for a loaded machine) after its
# deadline, and not before it.
sub severed
{
	my ($label, $host) = @_;
	my $offset = -s $node->logfile;
	ig_worker_looks_now($node, "$label: the worker sweeps just before");
	my ($c, $pid, $port) = ig_silent_tcp($node, $host, "severed",
		'SELECT * FROM t WHERE a = 1 FOR UPDATE');
	ig_sever($node, $port);
	ok(ended_within($pid, $unreachable_ms / 1000 + 15),
		"$label: the severed client's session is ended");
	my ($rule, $link, $late_ms, $ack_ms) = split /,/,
	  ig_history($node, $pid, 'rule', 'client_link',
		# the deadline is unreachable_timeout after the later of the last
		# ACK and the start of the silence; the record is the action's
		"least((record->'client_link'->>'last_ack_recv_ms')::int, "
		  . "extract(epoch FROM silent_for) * 1000)::int - $unreachable_ms",
		"record->'client_link'->>'last_ack_recv_ms'");
	is("$rule,$link", 'unreachable,unreachable',
		"$label: by the unreachable rule, the link unreachable in its record");
	ok(defined $late_ms && $late_ms >= 0
		  && $late_ms < $naptime_ms + IG_LATE_MS,
		"$label: acted on within naptime of its deadline (late by "
		  . ($late_ms // '?')
		  . " ms; no ACK for "
		  . ($ack_ms // '?') . " ms)");
	ok(scalar ig_log_lines($node, $offset,
			qr/idle_guard: terminating silent session pid=$pid .* rule=unreachable /),
		"$label: its LOG line names the unreachable rule");
	ig_heal($c, $port);
	return;
}

severed('timeouts at 0, IPv4', '127.0.0.1');
SKIP:
{
	skip 'no ::1 in this network namespace', 6 unless $have_ipv6;
	severed('timeouts at 0, IPv6', '::1');
}

# The same with blocking_timeout, idle_timeout and prepared_timeout at
# their defaults (30 s, 5 min, 30 min): nobody waits, so only the
# unreachable rule can act before a minute
$node->append_conf('postgresql.conf',
	"idle_guard.blocking_timeout = 30s\n"
	  . "idle_guard.idle_timeout = 5min\n"
	  . "idle_guard.prepared_timeout = 30min\n");
$node->reload;
ig_wait_for($node,
	"SELECT current_setting('idle_guard.blocking_timeout') || ' ' || "
	  . "current_setting('idle_guard.idle_timeout')",
	'30s 5min', 'the default timeouts are in force');
severed('default timeouts, IPv4', '127.0.0.1');
SKIP:
{
	skip 'no ::1 in this network namespace', 6 unless $have_ipv6;
	severed('default timeouts, IPv6', '::1');
}

# A client lost during a long statement: unreachable before its session
# goes silent, so its deadline counts from the start of the silence, and
# the FATAL's detail says so.  The premise, by the server's clock: the cut
# comes at least a second before the statement ends (so that its last ACK
# is well before the silence); else the scene is set up again.
{
	my $sleep_s = 4;
	my $offset = -s $node->logfile;
	my $scene = ig_setup_in_time(
		$node,
		'lost mid-statement: cut a second before the statement ends',
		sub {
			my $c = IgWire->connect($node, host => '127.0.0.1',
				application_name => 'lost-mid-statement');
			my $pid = $c->pid;
			$c->query_ok('BEGIN');
			$c->query_ok('SELECT * FROM t WHERE a = 2 FOR UPDATE');
			my $port = ig_value($node,
				"SELECT client_port FROM pg_stat_activity WHERE pid = $pid");
			$c->send_query("SELECT pg_sleep($sleep_s)");
			$node->poll_query_until('postgres',
				"SELECT state = 'active' FROM pg_stat_activity WHERE pid = $pid")
			  or die 'lost mid-statement: the statement did not start';
			ig_sever($node, $port);
			my $in_time = ig_value($node,
				"SELECT clock_timestamp() + interval '1 s' < query_start "
				  . "+ interval '$sleep_s s' FROM pg_stat_activity WHERE pid = $pid");
			return {
				ok => $in_time eq 't',
				c => $c, pid => $pid, port => $port,
				end => [$pid],
				undo => sub { ig_unsever(); $c->close; } };
		});
	my ($c, $pid, $port) = @$scene{qw(c pid port)};
	ok(ended_within($pid, $sleep_s + $unreachable_ms / 1000 + 15),
		'lost mid-statement: ended');
	my ($rule, $late_ms) = split /,/,
	  ig_history($node, $pid, 'rule',
		"(extract(epoch FROM silent_for) * 1000)::int - $unreachable_ms");
	is($rule, 'unreachable', 'lost mid-statement: by the unreachable rule');
	ok(defined $late_ms && $late_ms >= 0
		  && $late_ms < $naptime_ms + IG_LATE_MS,
		'lost mid-statement: unreachable_timeout after the silence began, '
		  . 'not after the last ACK (late by '
		  . ($late_ms // '?') . ' ms)');
	ok( $node->log_contains(
			qr/\[$pid\] lost-mid-statement DETAIL:  idle_guard ended it by its unreachable rule: idle_guard\.unreachable_timeout is 3s, counted from the start of its silence \(its client's last acknowledgement was [\d.]+ s before\)\./,
			$offset),
		'lost mid-statement: the detail says the deadline counted from the silence');
	ig_heal($c, $port);
}
$node->stop;

#
# b. Live clients that stop reading: not reading, never ended.
#
my $reader_unreachable_ms = 1000;
my $rounds = 2;    # of $per_round clients at once, per rate limit
my $per_round = 10;
my $reader = ig_node('not_reading',
	listen_addresses => "'127.0.0.1'",
	max_connections => 40,
	'idle_guard.tcp_keepalives' => "'1s'",
	'idle_guard.unreachable_timeout' => "'${reader_unreachable_ms}ms'",
	'idle_guard.blocking_timeout' => "'1h'",
	'idle_guard.idle_timeout' => "'1h'");
$reader->safe_psql('postgres',
	'CREATE TABLE r (a int PRIMARY KEY); '
	  . 'INSERT INTO r SELECT generate_series(1, 100);');

# readers($label): $per_round raw clients, each holding a row lock, send a
# query with a large result and read nothing; once each is "not reading",
# sample the report every 50 ms until each has been so for three
# unreachable_timeouts.  Returns the samples that were not "not reading"
# (pid=link), the pids, and how many samples were taken.
sub readers
{
	my ($label) = @_;
	my (@clients, %pid_of);
	for my $i (1 .. $per_round)
	{
		my $c = IgWire->connect($reader, host => '127.0.0.1',
			application_name => 'stopped-reading', rcvbuf => 4096);
		$c->query_ok('BEGIN');
		$c->query_ok("SELECT * FROM r WHERE a = $i FOR UPDATE");
		$c->send_query(
			"SELECT repeat('x', 10000) FROM generate_series(1, 200000)");
		push @clients, $c;
	}
	my @pids = map { $_->pid } @clients;
	my $list = join(',', @pids);
	my (%since, @bad);
	my $samples = 0;
	my $limit = time + 60;    # for all of them to stop and be sampled
	my $need_s = 3 * $reader_unreachable_ms / 1000;
	while (time < $limit)
	{
		my %link = map { split /=/ } split /\n/,
		  ig_value($reader,
			"SELECT string_agg(pid || '=' || coalesce(client_link, ''), E'\\n') "
			  . "FROM idle_guard_report() WHERE pid IN ($list)");
		my $now = time;
		$samples++;
		for my $pid (@pids)
		{
			my $l = $link{$pid} // 'gone';
			if ($l eq 'not reading') { $since{$pid} //= $now; }
			elsif (defined $since{$pid}) { push @bad, "$pid=$l"; }
		}
		last
		  if keys %since == @pids
		  && !grep { $now - $since{$_} < $need_s } @pids;
		usleep(50_000);
	}
	is(scalar(keys %since), scalar(@pids),
		"$label: every client that stopped reading is seen not reading");
	$_->close for @clients;
	ig_wait_for($reader,
		"SELECT count(*) = 0 FROM pg_stat_activity WHERE pid IN ($list)",
		't', "$label: the clients are gone once they close");
	return (\@bad, \@pids, $samples);
}

for my $ratelimit (500, 1000)
{
	SKIP:
	{
		if ($ratelimit != 500)
		{
			open(my $fh, '>', '/proc/sys/net/ipv4/tcp_invalid_ratelimit')
			  or skip "cannot set tcp_invalid_ratelimit: $!", 2 * $rounds + 3;
			print $fh "$ratelimit\n";
			close($fh)
			  or skip "cannot set tcp_invalid_ratelimit: $!", 2 * $rounds + 3;
		}
		is(slurp_file('/proc/sys/net/ipv4/tcp_invalid_ratelimit'),
			"$ratelimit\n", "tcp_invalid_ratelimit is $ratelimit ms here");
		my (@bad, @pids, $samples);
		for my $round (1 .. $rounds)
		{
			my ($b, $p, $n) = readers("rate limit ${ratelimit} ms, round $round");
			push @bad, @$b;
			push @pids, @$p;
			$samples += $n;
		}
		is(join(' ', @bad), '',
			"rate limit ${ratelimit} ms: "
			  . scalar(@pids)
			  . " clients, not reading at every one of $samples samples");
		my $list = join(',', @pids);
		is($reader->safe_psql('postgres',
				"SELECT count(*) FROM idle_guard_history() WHERE pid IN ($list)"),
			'0', "rate limit ${ratelimit} ms: none of them was acted on")
		  or diag $reader->safe_psql('postgres',
			"SELECT pid, rule, record->'client_link' FROM idle_guard_history() "
			  . "WHERE pid IN ($list)");
	}
}
$reader->stop;
done_testing();
