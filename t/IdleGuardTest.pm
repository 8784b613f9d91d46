# Copyright (c) 2026, idle_guard developers
#
# IdleGuardTest.pm
#	Helpers shared by idle_guard's TAP tests: a node with idle_guard
#	preloaded, client sessions that go silent or wait, and polls with a
#	deadline (never bare sleeps).
#
# Every wait here polls a condition until it holds or
# $PostgreSQL::Test::Utils::timeout_default passes, then fails the test.

package IdleGuardTest;

use strict;
use warnings;

use Exporter 'import';
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

our @EXPORT = qw(
  ig_node
  ig_silent_session
  ig_waiting_session
  ig_wait_for
  ig_pid_alive
  ig_wait_gone
  ig_wait_sweep_after
  ig_worker_looks_now
  ig_close
  ig_check_terminated
  ig_node_initdb
  ig_parse_log_line
  ig_log_lines
);

# ig_node($name, %settings): init and start a node with idle_guard preloaded
# and the extension created in "postgres".  %settings are postgresql.conf
# lines (values quoted as needed) that override the test defaults: action
# terminate, blocking_timeout 2s, idle_timeout 1h, naptime 100ms.
# Autovacuum is off: its table locks would add waits the tests don't plan.
sub ig_node
{
	my ($name, %settings) = @_;
	return ig_node_initdb($name, [], %settings);
}

# ig_node_initdb($name, \@initdb_args, %settings): ig_node, with extra
# initdb arguments, e.g. [ '--encoding=UTF8', '--locale=C' ].
sub ig_node_initdb
{
	my ($name, $initdb_args, %settings) = @_;
	my %conf = (
		shared_preload_libraries => "'idle_guard'",
		autovacuum => 'off',
		'idle_guard.action' => "'terminate'",
		'idle_guard.blocking_timeout' => "'2s'",
		'idle_guard.idle_timeout' => "'1h'",
		'idle_guard.naptime' => "'100ms'",
		%settings);
	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init(extra => $initdb_args);
	$node->append_conf('postgresql.conf',
		join('', map { "$_ = $conf{$_}\n" } sort keys %conf));
	$node->start;
	$node->safe_psql('postgres', 'CREATE EXTENSION idle_guard');
	return $node;
}

# ig_silent_session($node, $app, $sql, %opts): a psql session named $app
# that runs $sql (e.g. "BEGIN; SELECT ... FOR UPDATE;") and then stays
# connected without sending anything.  Returns ($session, $pid).
# $opts{user} connects as another role, $opts{dbname} to another database,
# $opts{host} to that address instead of the node's Unix socket directory
# (e.g. '127.0.0.1', with listen_addresses set, for a session that has a
# client_addr).
sub ig_silent_session
{
	my ($node, $app, $sql, %opts) = @_;
	# background_psql connects through $node->connstr, whose host is the
	# node's; a -h among extra_params would not override it.
	local $node->{_host} = $opts{host} // $node->host;
	my @extra = defined $opts{user} ? ('-U', $opts{user}) : ();
	my $s = $node->background_psql($opts{dbname} // 'postgres',
		on_error_stop => 0,
		extra_params => \@extra);
	my $pid = $s->query_safe("SET application_name = '$app'; SELECT pg_backend_pid();");
	$pid =~ s/\s+//g;
	$s->query_safe($sql) if defined $sql && $sql ne '';
	return ($s, $pid);
}

# ig_waiting_session($node, $app, $sql): a session that sends $sql, which
# is expected to block on a lock, and returns once the backend is seen
# waiting on a lock.  Returns ($session, $pid).
sub ig_waiting_session
{
	my ($node, $app, $sql) = @_;
	my $s = $node->background_psql('postgres', on_error_stop => 0);
	my $pid = $s->query_safe("SET application_name = '$app'; SELECT pg_backend_pid();");
	$pid =~ s/\s+//g;
	$s->{stdin} .= "$sql\n";
	$s->{run}->pump_nb();
	ig_wait_for($node,
		"SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = $pid",
		't', "$app is waiting on a lock");
	return ($s, $pid);
}

# ig_wait_for($node, $query, $expected, $what): poll $query until it
# returns $expected; one test assertion named $what.
sub ig_wait_for
{
	my ($node, $query, $expected, $what) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	ok($node->poll_query_until('postgres', $query, $expected), $what);
}

# ig_pid_alive($node, $pid): is that backend still connected?
sub ig_pid_alive
{
	my ($node, $pid) = @_;
	return $node->safe_psql('postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE pid = $pid") eq '1';
}

# ig_wait_gone($node, $pid, $what): wait until the backend has exited.
sub ig_wait_gone
{
	my ($node, $pid, $what) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	ig_wait_for($node,
		"SELECT count(*) = 0 FROM pg_stat_activity WHERE pid = $pid",
		't', $what);
}

# ig_wait_sweep_after($node, $pid, $ms): wait until the worker has swept
# at a moment when $pid had been silent for more than $ms milliseconds.
# A test that expects a session to be spared calls this, then checks the
# session is still there: the worker has looked past the deadline.
sub ig_wait_sweep_after
{
	my ($node, $pid, $ms) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my $since = $node->safe_psql('postgres',
		"SELECT state_change FROM pg_stat_activity WHERE pid = $pid");
	ig_wait_for($node,
		"SELECT last_sweep_at > '$since'::timestamptz + interval '$ms ms' "
		  . "FROM idle_guard_stats()",
		't', "worker swept after ${ms}ms of silence of $pid");
}

# ig_worker_looks_now($node, $what, %opts): make the worker look now and
# wait until it has.  A reload makes the worker sweep at once (it sweeps on
# every reload, with or without a change of the configuration, after
# processing any reload signalled before); wait for a sweep that started
# after the reload was asked for.  last_sweep_at is the sweep's start (when
# it read the sessions), so "last_sweep_at > that moment" suffices.  With
# guarded => $n, that sweep must also have seen $n silent lock holders
# (guarded_now): from then on the worker has their deadlines in its
# schedule.  One test assertion named $what.
sub ig_worker_looks_now
{
	my ($node, $what, %opts) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my $t = $node->safe_psql('postgres', 'SELECT clock_timestamp()');
	$node->safe_psql('postgres', 'SELECT pg_reload_conf()');
	my $cond = "last_sweep_at > '$t'";
	$cond .= " AND guarded_now = $opts{guarded}" if defined $opts{guarded};
	ig_wait_for($node, "SELECT $cond FROM idle_guard_stats()", 't', $what);
}

# ig_check_terminated($node, $offset, $pid, $app, $reason, $timeout_ms, $label):
# after the worker terminated backend $pid (application $app) by the
# blocking rule, with one waiter, check its LOG line (after log offset
# $offset) and its history row: rule, action, silent_reason $reason, no
# gid, and that it came at or after $timeout_ms of silence but not long
# after.  Test names start with $label.
sub ig_check_terminated
{
	my ($node, $offset, $pid, $app, $reason, $timeout_ms, $label) = @_;

	$node->wait_for_log(
		qr/idle_guard: .*pid=$pid\b.*app="\Q$app\E".* rule=blocking action=terminate/,
		$offset);
	pass("$label: LOG line names the backend, rule blocking, action terminate");
	my ($h, $h_ms) = split /\|/, $node->safe_psql('postgres',
		"SELECT rule || ',' || action || ',' || silent_reason || ',' || (gid IS NULL) "
		  . "|| ',' || blocked_total, extract(epoch FROM silent_for) * 1000 "
		  . "FROM idle_guard_history() WHERE pid = $pid");
	is($h, "blocking,terminated,$reason,true,1",
		"$label: history: terminated by the blocking rule, $reason");
	cmp_ok($h_ms, '>=', $timeout_ms, "$label: not acted on before blocking_timeout");
	cmp_ok($h_ms, '<', $timeout_ms + 1500, "$label: acted on soon after the deadline");
	return;
}

# ig_close($session): end a session whatever state it is in (it may have
# been terminated by idle_guard, or still be waiting).
sub ig_close
{
	my ($s) = @_;
	eval { $s->{run}->kill_kill; };
	return;
}

# ig_parse_log_line($line): the fields of one idle_guard action line (README,
# "The log line"), or undef if the line does not have that exact shape.
# Returns a hashref: key => value for every " key=value" pair, the value
# either a double-quoted escaped string, returned unescaped (bytes), or a
# bare token up to the next blank; _keys, the keys in their order; _what,
# the text between "idle_guard: " and the first key; _tail, the unescaped
# text after "; ", if any.  Escaped text holds printable ASCII but for \ and
# ", which must be escaped as \\ and \"; \n, \r, \t and \xHH (two lowercase
# hex digits) stand for their byte.  Anything else fails the parse.
sub ig_parse_log_line
{
	my ($line) = @_;
	my $esc = qr/(?:[\x20\x21\x23-\x5b\x5d-\x7e]|\\[\\"nrt]|\\x[0-9a-f]{2})*/;
	my $bare = qr/[\x21\x23-\x7e]+/;
	my $pair = qr/ [a-z_]+=(?:"$esc"|$bare)/;
	my $unescape = sub {
		my ($s) = @_;
		my %byte = ('\\' => '\\', '"' => '"', n => "\n", r => "\r", t => "\t");
		$s =~ s/\\(x([0-9a-f]{2})|.)/defined $2 ? chr(hex $2) : $byte{$1}/ge;
		return $s;
	};

	# From the first "idle_guard: " on: a quoted value may hold that text too.
	my $at = index($line, 'idle_guard: ');
	return undef if $at < 0;
	$line = substr($line, $at);
	$line =~ s/\n\z//;
	return undef
	  unless $line =~ /\Aidle_guard: ([^=]*?)((?:$pair)+)(?:; ($esc))?\z/;
	my %f = (_what => $1, _keys => []);
	my ($pairs, $tail) = ($2, $3);
	$f{_tail} = $unescape->($tail) if defined $tail;
	while ($pairs =~ / ([a-z_]+)=(?:"($esc)"|($bare))/g)
	{
		push @{ $f{_keys} }, $1;
		$f{$1} = defined $2 ? $unescape->($2) : $3;
	}
	return \%f;
}

# ig_log_lines($node, $offset, $regex): the complete physical lines (without
# their newline) of the server log after byte $offset that match $regex.
# A last line not yet ended by a newline is left out.
sub ig_log_lines
{
	my ($node, $offset, $regex) = @_;
	my $log = slurp_file($node->logfile, $offset);
	$log =~ s/[^\n]*\z//;
	return grep { /$regex/ } split /\n/, $log;
}

1;
