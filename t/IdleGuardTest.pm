# Copyright (c) 2026, idle_guard developers
#
# IdleGuardTest.pm
#	Helpers shared by idle_guard's TAP tests: a node with idle_guard
#	preloaded; client sessions that go silent or wait on a lock, and what
#	the tests send them; the value of a query, and the history of a
#	backend; the check of a termination (its LOG line, its history row,
#	its timing within IG_LATE_MS of the deadline); polls with a deadline
#	(never bare sleeps); the premises of a test on a loaded machine (its
#	setup done before a deadline, or set up again); the parsing of
#	idle_guard's LOG lines; and a network namespace of the test's own,
#	with a firewall to sever TCP clients.
#
# Every wait here polls a condition until it holds or
# $PostgreSQL::Test::Utils::timeout_default passes, then fails the test.
#
# Sessions are PostgreSQL::Test::BackgroundPsql objects, used through its
# methods (query_safe, query_until, quit) and through ig_send, ig_query,
# ig_try_query and ig_close here.  Two of those reach into the object, each
# for want of a method, as said there: ig_try_query empties its stderr,
# ig_close kills its psql.

package IdleGuardTest;

use strict;
use warnings FATAL => 'all';

use Exporter 'import';
use IgWire;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

our @EXPORT = qw(
  IG_LATE_MS
  ig_node
  ig_node_initdb
  ig_primary
  ig_standby
  ig_silent_session
  ig_waiting_session
  ig_send
  ig_query
  ig_try_query
  ig_close
  ig_client_error
  ig_value
  ig_psql_table
  ig_history
  ig_wait_for
  ig_pid_alive
  ig_wait_gone
  ig_wait_unblocked
  ig_wait_client_write
  ig_wait_sweep_after
  ig_wait_sweep_past
  ig_worker_looks_now
  ig_silent_since
  ig_report_silent_since
  ig_before_deadline
  ig_setup_in_time
  ig_check_terminated
  ig_parse_log_line
  ig_log_lines
  ig_enter_netns
  ig_firewall
  ig_sever
  ig_unsever
  ig_heal
  ig_silent_tcp
  ig_link_of
);

# How late after its deadline an action may come and still count as "at
# the deadline", in milliseconds: the worker naps 100ms (ig_node's
# naptime); the rest is slack for a loaded CI machine.
use constant IG_LATE_MS => 1500;

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
	return _ig_start_node($name, { extra => $initdb_args }, %settings);
}

# ig_primary($name, %settings): ig_node, initialised to stream WAL to
# standbys (PostgreSQL::Test::Cluster's allows_streaming).
sub ig_primary
{
	my ($name, %settings) = @_;
	return _ig_start_node($name, { allows_streaming => 1 }, %settings);
}

# ig_standby($primary, $name, %settings): a hot standby of $primary made
# from a fresh base backup, streaming from it, started and caught up.  Its
# postgresql.conf is the primary's (idle_guard preloaded, the test
# defaults) with %settings appended.  The extension is there already: it
# was created on the primary.
sub ig_standby
{
	my ($primary, $name, %settings) = @_;
	$primary->backup("backup_$name");
	my $standby = PostgreSQL::Test::Cluster->new($name);
	$standby->init_from_backup($primary, "backup_$name", has_streaming => 1);
	$standby->append_conf('postgresql.conf',
		join('', map { "$_ = $settings{$_}\n" } sort keys %settings));
	$standby->start;
	$primary->wait_for_catchup($standby);
	return $standby;
}

# _ig_start_node($name, \%init_opts, %settings): init a node with
# %init_opts (PostgreSQL::Test::Cluster's init), write the test defaults
# and %settings to its postgresql.conf, start it and create the extension.
sub _ig_start_node
{
	my ($name, $init_opts, %settings) = @_;
	my %conf = (
		shared_preload_libraries => "'idle_guard'",
		autovacuum => 'off',
		'idle_guard.action' => "'terminate'",
		'idle_guard.blocking_timeout' => "'2s'",
		'idle_guard.idle_timeout' => "'1h'",
		'idle_guard.naptime' => "'100ms'",
		# the prefix of PostgreSQL::Test::Cluster up to 18 (19 adds %b),
		# and no lock-wait lines (on by default from 19): the same log
		# on every major
		log_line_prefix => "'%m [%p] %q%a '",
		log_lock_waits => 'off',
		%settings);
	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init(%$init_opts);
	$node->append_conf('postgresql.conf',
		join('', map { "$_ = $conf{$_}\n" } sort keys %conf));
	$node->start;
	$node->safe_psql('postgres', 'CREATE EXTENSION idle_guard');
	return $node;
}

#
# Sessions
#

# ig_silent_session($node, $app, $sql, %opts): a psql session named $app
# that runs $sql (e.g. "BEGIN; SELECT ... FOR UPDATE;") and then stays
# connected without sending anything.  Returns ($session, $pid).
# $opts{user} connects as another role, $opts{dbname} to another database,
# $opts{hostaddr} over TCP to that address instead of through the node's
# Unix socket directory (e.g. '127.0.0.1', with listen_addresses set, for a
# session that has a client_addr).
sub ig_silent_session
{
	my ($node, $app, $sql, %opts) = @_;
	# background_psql connects with $node->connstr, whose host is the
	# node's socket directory.  PostgreSQL 15's background_psql has no
	# option to connect elsewhere, and a -h among extra_params would not
	# override the host of the connection string; libpq's PGHOSTADDR does:
	# given a hostaddr, libpq connects to it and keeps host only as a name.
	local %ENV = %ENV;
	$ENV{PGHOSTADDR} = $opts{hostaddr} if defined $opts{hostaddr};
	my @extra = defined $opts{user} ? ('-U', $opts{user}) : ();
	my $s = $node->background_psql($opts{dbname} // 'postgres',
		on_error_stop => 0,
		extra_params => \@extra);
	my $pid = $s->query_safe("SET application_name = '$app'; SELECT pg_backend_pid();");
	$pid =~ s/\s+//g;
	$s->query_safe($sql) if defined $sql && $sql ne '';
	return ($s, $pid);
}

# ig_waiting_session($node, $app, $sql, %opts): a session named $app that
# sends $sql, which is expected to block on a lock, and returns once the
# backend is seen waiting on a lock (one test assertion).  %opts as for
# ig_silent_session.  Returns ($session, $pid).
#
# With $opts{blocker} (the pid of the session it should wait on), it makes
# no assertion: it stops waiting as soon as the blocker is gone, and
# returns ($session, $pid, 1 if it was seen waiting on a lock, else 0).
# For a setup that may be too slow on a loaded machine (ig_setup_in_time):
# a blocker ended at its deadline before the waiter was seen waiting is a
# premise that failed, not a product failure, and must not cost a
# timeout_default of polling.
sub ig_waiting_session
{
	my ($node, $app, $sql, %opts) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my $blocker = delete $opts{blocker};
	my ($s, $pid) = ig_silent_session($node, $app, undef, %opts);
	ig_send($s, $sql);
	my $waits = "SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = $pid";
	if (!defined $blocker)
	{
		ig_wait_for($node, $waits, 't', "$app is waiting on a lock");
		return ($s, $pid);
	}
	my $deadline = time + $PostgreSQL::Test::Utils::timeout_default;
	while (time < $deadline)
	{
		my ($waiting, $blocker_here) = split /\|/, ig_value($node,
			"SELECT coalesce(($waits), false), "
			  . "(SELECT count(*) FROM pg_stat_activity WHERE pid = $blocker)");
		return ($s, $pid, 1) if $waiting eq 't';
		last if $blocker_here eq '0';
		usleep(20_000);
	}
	note("$app was not seen waiting on a lock: its blocker $blocker is gone");
	return ($s, $pid, 0);
}

# ig_send($session, $sql): hand $sql to the session's psql and return
# without waiting for its result: for a statement that blocks, or runs for
# long.  query_until returns once psql has printed a marker sent just
# before $sql: psql has run all that came before, and reads $sql next.
# The output of $sql, when it comes, is part of the next query's output.
sub ig_send
{
	my ($s, $sql) = @_;
	my $marker = 'idle_guard_test: sending';
	$s->query_until(qr/\Q$marker\E\r?\n/, "\\echo $marker\n$sql\n");
	return;
}

# _trimmed($text): $text without its trailing white space, nor the query
# separator that 16.2's BackgroundPsql leaves in the output of a query that
# returns nothing.
sub _trimmed
{
	my ($text) = @_;
	return $text unless defined $text;
	$text =~ s/\A\s*background_psql: QUERY_SEPARATOR\s*\z//;
	$text =~ s/\s+\z//;
	return $text;
}

# ig_query($session, $sql): $session->query_safe($sql), without the
# trailing newline that BackgroundPsql's query leaves in some releases
# (16.2) and strips in others.  Compare only what this returns.
sub ig_query
{
	my ($s, $sql) = @_;
	return _trimmed($s->query_safe($sql));
}

# ig_try_query($session, $sql): run $sql, which may fail.  Returns (its
# output without trailing white space, 1 if psql wrote to stderr else 0,
# what it wrote there).  BackgroundPsql keeps what psql wrote to stderr
# across queries, so that after one error every later query_safe dies, and
# it has no method to forget it: this empties $session->{stderr}.
sub ig_try_query
{
	my ($s, $sql) = @_;
	my ($out, $failed) = $s->query($sql);
	my $err = $s->{stderr};
	$s->{stderr} = '';
	return (_trimmed($out), $failed, $err);
}

# ig_close($session): end a session whatever state it is in (it may have
# been terminated by idle_guard, or still be waiting).  BackgroundPsql's
# quit sends \q and waits for psql to exit, which hangs while a statement
# waits on a lock; it has no method to kill psql, so this kills the
# session's IPC::Run harness.
sub ig_close
{
	my ($s) = @_;
	eval { $s->{run}->kill_kill; };
	return;
}

# ig_client_error($session): what the session's client printed when its
# connection was ended: psql notices only when it next sends something, so
# this sends one more query and waits for psql to exit, then returns all
# it wrote to stderr.  BackgroundPsql has no method to send without
# waiting for a result, nor to wait for psql's exit: this uses its stdin,
# harness and stderr.
sub ig_client_error
{
	my ($s) = @_;
	$s->{stdin} .= "SELECT 1;\n";
	eval { $s->{run}->finish; };
	return $s->{stderr};
}

#
# Queries
#

# ig_value($node, $sql): what $sql returns in database postgres, as psql
# prints it unaligned and without headers (columns joined by '|', rows by
# newlines).
sub ig_value
{
	my ($node, $sql) = @_;
	return $node->safe_psql('postgres', $sql);
}

# ig_psql_table($node, $sql, %opts): what an interactive psql shows for
# $sql in database postgres, aligned with its header and row count (with
# expanded => 1, one record per block, as \x does), for a note in the TAP
# output that the docs quote.
sub ig_psql_table
{
	my ($node, $sql, %opts) = @_;
	my @params = ('-P', 'format=aligned', '-P', 'tuples_only=off');
	push @params, '-x' if $opts{expanded};
	return $node->safe_psql('postgres', $sql, extra_params => \@params);
}

# ig_history($node, $pid, @columns): what idle_guard_history() holds for
# backend $pid, oldest first: for each action, its @columns (SQL
# expressions; by default action) joined by ',', NULL as ''; the actions
# joined by ';'.  '' when it holds nothing for $pid.
sub ig_history
{
	my ($node, $pid, @columns) = @_;
	@columns = ('action') unless @columns;
	my $row = 'array_to_string(ARRAY['
	  . join(', ', map { "($_)::text" } @columns) . "], ',', '')";
	return $node->safe_psql('postgres',
		"SELECT string_agg($row, ';' ORDER BY at) FROM idle_guard_history() "
		  . "WHERE pid = $pid");
}

#
# Waits
#

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

# ig_wait_unblocked($node, $pids, $what): wait until backend $pids (a pid,
# or a reference to a list of pids) no longer waits on a lock; one test
# assertion named $what.
sub ig_wait_unblocked
{
	my ($node, $pids, $what) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my $list = join(', ', ref $pids ? @$pids : ($pids));
	ig_wait_for($node,
		"SELECT count(*) = 0 FROM pg_stat_activity "
		  . "WHERE pid IN ($list) AND wait_event_type = 'Lock'",
		't', $what);
}

# ig_wait_client_write($node, $pid, $what): wait until backend $pid is
# active in ClientWrite (its client does not read), and stays there (two
# reads 200 ms apart); one test assertion named $what.
sub ig_wait_client_write
{
	my ($node, $pid, $what) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my $q = "SELECT state = 'active' AND wait_event = 'ClientWrite' "
	  . "FROM pg_stat_activity WHERE pid = $pid";
	my $ok = 0;
	my $deadline = time + $PostgreSQL::Test::Utils::timeout_default;
	while (time < $deadline)
	{
		if (ig_value($node, $q) eq 't')
		{
			usleep(200_000);
			if (ig_value($node, $q) eq 't') { $ok = 1; last; }
		}
		usleep(50_000);
	}
	ok($ok, $what);
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
	ig_wait_sweep_past($node, $since, $ms,
		"worker swept after ${ms}ms of silence of $pid");
}

# ig_wait_sweep_past($node, $ts, $ms, $what): wait until the worker has
# begun a sweep more than $ms milliseconds after the moment $ts (a
# timestamp as the server prints it; last_sweep_at is a sweep's start); one
# test assertion named $what.
sub ig_wait_sweep_past
{
	my ($node, $ts, $ms, $what) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	ig_wait_for($node,
		"SELECT last_sweep_at > '$ts'::timestamptz + interval '$ms ms' "
		  . "FROM idle_guard_stats()",
		't', $what);
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

#
# Premises
#
# A test that reads or does something before a session's deadline (the
# report while a blocker is still there, a commit just before the
# deadline) assumes its setup was done in time.  On a loaded machine it
# may not be: the test then sets up again (ig_setup_in_time), and never
# fails idle_guard for its own slowness.  The premise is checked with the
# server's clock against the session's own silence (state_change), never
# by whether the session is still there: a session ended before its
# deadline is the product's failure, and the assertions that follow, left
# as they are, must see it.

# ig_silent_since($node, $pid): when backend $pid entered its current
# state (pg_stat_activity's state_change), as the server prints it; '' if
# it is gone.  Read right after the session went silent: the start of its
# silence, from which its deadline counts.
sub ig_silent_since
{
	my ($node, $pid) = @_;
	return $node->safe_psql('postgres',
		"SELECT state_change FROM pg_stat_activity WHERE pid = $pid");
}

# ig_report_silent_since($node, $pid, $what): wait until backend $pid is in
# idle_guard_report(), and return its silent_since there: the start of a
# silence that only idle_guard times (client not reading, request
# incomplete), from which its deadline counts.  Dies naming $what if it
# never shows.
sub ig_report_silent_since
{
	my ($node, $pid, $what) = @_;
	$node->poll_query_until('postgres',
		"SELECT count(*) = 1 FROM idle_guard_report() WHERE pid = $pid")
	  or die "$what: not in the report";
	return ig_value($node,
		"SELECT silent_since FROM idle_guard_report() WHERE pid = $pid");
}

# ig_before_deadline($node, $since, $ms, $margin_ms): is the server's clock
# now still more than $margin_ms (default 0) before $since (a timestamp as
# the server prints it, e.g. from ig_silent_since) plus $ms?  Checked after
# a setup and the reads that must come before the deadline: when it holds,
# every one of them came before it.
sub ig_before_deadline
{
	my ($node, $since, $ms, $margin_ms) = @_;
	$margin_ms //= 0;
	return $node->safe_psql('postgres',
		"SELECT clock_timestamp() + interval '$margin_ms ms' "
		  . "< '$since'::timestamptz + interval '$ms ms'") eq 't';
}

# ig_setup_in_time($node, $what, $setup, %opts): run $setup->($attempt)
# until the scene it builds was ready in time; return that scene.  $setup
# makes no test assertion that its slowness could fail (it uses
# ig_waiting_session with blocker, ig_value, ig_try_query, ...; a wait
# that holds whatever the time, such as ig_wait_client_write, may stay),
# and returns a hash ref: ok, true if its premise held (typically
# ig_before_deadline, checked last); why, what was late, for the note;
# end, the pids of the backends it started, in the order to end them
# (waiters before their blockers, so that no waiter's statement runs once
# its blocker is gone); sessions, its sessions; undo, a sub that ends
# whatever else it started (a client process, a raw connection); anything
# else the test needs.  After a failed attempt those backends are ended
# and waited for, the sessions closed, undo run, and the setup runs again,
# at most $opts{attempts} times (default 4).  What a late attempt may
# have left (the worker may have acted on its sessions, its waiters'
# statements run) is the test's to allow for: counters and values taken
# at the start of an attempt, names of its own for what it creates.  If
# the premise never held, one failing assertion says so (the machine is
# too slow for the test: no verdict on idle_guard) and the test stops.
sub ig_setup_in_time
{
	my ($node, $what, $setup, %opts) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my $attempts = $opts{attempts} // 4;
	for my $attempt (1 .. $attempts)
	{
		my $scene = $setup->($attempt);
		return $scene if $scene->{ok};
		note("$what: attempt $attempt of $attempts was not ready in time ("
			  . ($scene->{why} // 'the deadline came first')
			  . '): a loaded machine; setting up again');
		for my $pid (@{ $scene->{end} // [] })
		{
			$node->safe_psql('postgres',
				"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid = $pid");
			$node->poll_query_until('postgres',
				"SELECT count(*) = 0 FROM pg_stat_activity WHERE pid = $pid")
			  or die "$what: backend $pid did not end";
		}
		ig_close($_) for @{ $scene->{sessions} // [] };
		$scene->{undo}->() if $scene->{undo};
	}
	fail("$what: the setup was never ready in time in $attempts attempts: "
		  . 'the machine is too slow for this test (no verdict on idle_guard)');
	done_testing();
	exit 1;
}

#
# Actions
#

# ig_check_terminated($node, $pid, %opts): backend $pid was terminated by
# the blocking rule at its deadline.  Checks its LOG line (after log offset
# $opts{offset}), the whole action, of the documented shape
#	idle_guard: terminating silent session pid=P user="U" db="D" app="A"
#	client=C silent_s=S locks=L blocked=B rule=blocking action=terminate
#	reason="R" [blocks_replay=true] link="K"
# and its history row: rule blocking, action terminated, silent_reason R,
# no gid, blocked_total B (and locks_held L if given), silent for at least
# $opts{timeout_ms} and less than IG_LATE_MS more.  Options: offset, app
# and timeout_ms (required); reason (default 'idle in transaction');
# blocked (1); locks (any number if not given); user (a plain \w+ name if
# not given); db ('postgres'); client ('local'); blocks_replay (false: the
# line has no blocks_replay, else " blocks_replay=true" after reason); link
# (the client link, 'local', or 'alive' when client is given); detail (the
# history's detail, 'SIGTERM sent' if not given); label, a prefix for the
# test names.  Four test assertions.
sub ig_check_terminated
{
	my ($node, $pid, %opts) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my $reason = $opts{reason} // 'idle in transaction';
	my $blocked = $opts{blocked} // 1;
	my $timeout_ms = $opts{timeout_ms};
	my $label = defined $opts{label} ? "$opts{label}: " : '';
	my $user = defined $opts{user} ? quotemeta($opts{user}) : '\w+';
	my $locks = defined $opts{locks} ? quotemeta($opts{locks}) : '\d+';
	my $db = quotemeta($opts{db} // 'postgres');
	my $client = quotemeta($opts{client} // 'local');
	my $tail = $opts{blocks_replay} ? ' blocks_replay=true' : '';
	my $link = $opts{link} // ($opts{client} ? 'alive' : 'local');
	my $detail = $opts{detail} // 'SIGTERM sent';

	$node->wait_for_log(
		qr/idle_guard: terminating silent session pid=$pid user="$user" db="$db" app="\Q$opts{app}\E" client=$client silent_s=[\d.]+ locks=$locks blocked=$blocked rule=blocking action=terminate reason="\Q$reason\E"$tail link="\Q$link\E"\n/,
		$opts{offset});
	pass("${label}LOG line names the backend, rule blocking, action terminate");

	my @columns = ('rule', 'action', 'detail', 'silent_reason', 'gid IS NULL',
		'blocked_total');
	my $expected = "blocking,terminated,$detail,$reason,true,$blocked";
	if (defined $opts{locks})
	{
		push @columns, 'locks_held';
		$expected .= ",$opts{locks}";
	}
	my ($h_ms, $h) = split /,/,
	  ig_history($node, $pid, 'extract(epoch FROM silent_for) * 1000', @columns), 2;
	is($h, $expected, "${label}history: terminated by the blocking rule, $reason");
	cmp_ok($h_ms, '>=', $timeout_ms, "${label}not acted on before blocking_timeout");
	cmp_ok($h_ms, '<', $timeout_ms + IG_LATE_MS,
		"${label}acted on soon after the deadline");
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

#
# A network of the test's own: TCP clients whose packets a firewall drops
#

# ig_enter_netns(): re-run the calling test file in a new user and network
# namespace, with the loopback interface up, as the same user: the server,
# the clients and the firewall rules then live in it alone, the rules need
# no root and die with the test.  Call it in a BEGIN block right after
# "use IdleGuardTest", before any test runs (it execs).
sub ig_enter_netns
{
	return if $ENV{IG_NETNS};
	$ENV{IG_NETNS} = 1;
	$ENV{PATH} .= ':/usr/sbin:/sbin';
	my ($gid) = split ' ', $(;
	exec('unshare', '--user', '--net', "--map-user=$<", "--map-group=$gid",
		'--keep-caps', 'sh', '-c', 'ip link set lo up && exec "$@"', 'sh',
		$^X, (map { "-I$_" } grep { !ref } @INC), $0, @ARGV);
	die "cannot run unshare: $!";
}

my $ig_firewall_made = 0;

# _ig_nft(@args): run nft with @args, or die.
sub _ig_nft
{
	system('nft', @_) == 0 or die "nft @_ failed";
	return;
}

# ig_firewall(): the namespace's firewall, one table with an input chain,
# deleted at exit whatever happens (and gone with the namespace anyway).
sub ig_firewall
{
	die "ig_firewall: not in the test's network namespace (ig_enter_netns)"
	  unless $ENV{IG_NETNS};
	_ig_nft('add', 'table', 'inet', 'ig_test');
	_ig_nft('add', 'chain', 'inet', 'ig_test', 'in',
		'{ type filter hook input priority 0; }');
	$ig_firewall_made = 1;
	return;
}

END { system('nft', 'delete', 'table', 'inet', 'ig_test') if $ig_firewall_made; }

# ig_sever($node, $client_port): drop every packet between $node and that
# client port, both ways.
sub ig_sever
{
	my ($node, $client_port) = @_;
	my $port = $node->port;
	_ig_nft('add', 'rule', 'inet', 'ig_test', 'in', 'tcp', 'sport', $port,
		'tcp', 'dport', $client_port, 'drop');
	_ig_nft('add', 'rule', 'inet', 'ig_test', 'in', 'tcp', 'sport',
		$client_port, 'tcp', 'dport', $port, 'drop');
	return;
}

# ig_unsever(): undo every ig_sever: no packet is dropped any more.
sub ig_unsever
{
	_ig_nft('flush', 'chain', 'inet', 'ig_test', 'in');
	return;
}

# ig_heal($client, $client_port): undo every ig_sever, close the IgWire
# $client, and wait until the kernel has no socket left on that port: the
# server's side of a severed connection may linger (unacknowledged data,
# FIN), and a new connection from the same port would collide with it.
# One test assertion.
sub ig_heal
{
	my ($client, $client_port) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	ig_unsever();
	$client->close;
	my $left = 1;
	my $deadline = time + 30;
	while (time < $deadline)
	{
		$left = `ss -Htan '( sport = :$client_port or dport = :$client_port )'`;
		last if $left !~ /\S/;
		usleep(100_000);
	}
	is($left, '', "no socket is left on port $client_port");
	return;
}

# ig_silent_tcp($node, $host, $app, $sql): a raw client (IgWire) over TCP
# to $host that runs BEGIN and $sql (default: a read of table t) and goes
# silent holding their locks.  Returns (the client, the backend pid, the
# client port).
sub ig_silent_tcp
{
	my ($node, $host, $app, $sql) = @_;
	my $c = IgWire->connect($node, host => $host, application_name => $app);
	my $pid = $c->pid;
	$c->query_ok('BEGIN');
	$c->query_ok($sql // 'SELECT * FROM t');
	my $port = ig_value($node,
		"SELECT client_port FROM pg_stat_activity WHERE pid = $pid");
	return ($c, $pid, $port);
}

# ig_link_of($node, $pid): the client_link idle_guard_report() gives
# backend $pid ('' if it shows none).
sub ig_link_of
{
	my ($node, $pid) = @_;
	return ig_value($node,
		"SELECT client_link FROM idle_guard_report() WHERE pid = $pid");
}

1;
