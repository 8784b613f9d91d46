# Copyright (c) 2026, idle_guard developers
#
# The monitoring files in contrib/ work as shipped.  Both are parsed with a
# real YAML parser: contrib/postgres_exporter.yaml (custom queries for
# prometheus-community/postgres_exporter) and contrib/pgwatch/idle_guard.yaml
# (pgwatch v3 metric definitions).  Their shape is what those tools read:
# query names, metrics with a usage and a description, valid and
# Prometheus-style metric names (counters end in _total), pgwatch sqls per
# PostgreSQL version, gauges and presets.  Then, on a node in report mode,
# every query of both files runs as a role that is only a member of
# pg_monitor.  The scene: two silent sessions have updated rows of a table
# whose ALTER TABLE waits on both of them, and a third silent session holds
# a lock nobody waits for.  Each query returns exactly one row, with exactly
# the declared columns (exporter) or the same columns as its exporter twin
# plus epoch_ns (pgwatch), all of integer or floating-point types, none
# NULL, and values that fit the scene: three silent sessions, two of them
# blocking, one blocked session (counted once although it waits on both),
# silent for more than blocking_timeout, two reported, worker up.
# Finally idle_guard_reset() moves the stats_reset gauge to the time of the
# reset and the reported counter drops (a counter reset, as Prometheus
# sees it).
#
# Needs YAML::XS (Debian package libyaml-libyaml-perl) and idle_guard 1.2
# (stats_reset, idle_guard_reset()).

use strict;
use warnings FATAL => 'all';

use FindBin;
use lib $FindBin::RealBin;

use IdleGuardTest;
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

BEGIN
{
	eval { require YAML::XS; 1 }
	  or die "t/013_monitoring.pl needs the Perl module YAML::XS "
	  . "(Debian package libyaml-libyaml-perl): $@";
}

my $contrib = "$FindBin::RealBin/../contrib";
my $exporter_file = "$contrib/postgres_exporter.yaml";
my $pgwatch_file = "$contrib/pgwatch/idle_guard.yaml";

# Column types the tools turn into numbers.  pgwatch stores only text,
# integers, booleans and floats; the exporter parses numbers from any of
# these.  Numeric is refused: pgwatch would not store it as a number.
my %numeric_type = map { $_ => 1 }
  ('smallint', 'integer', 'bigint', 'real', 'double precision');

# Which pgwatch metric is the twin of which exporter query.
my %twin = (
	idle_guard_stats => 'idle_guard',
	idle_guard_report => 'idle_guard_report');

#
# The files, statically.
#

my $exporter = YAML::XS::LoadFile($exporter_file);
my $pgwatch = YAML::XS::LoadFile($pgwatch_file);
my $exporter_text = slurp_file($exporter_file);

is_deeply([ sort keys %$exporter ], [ 'idle_guard', 'idle_guard_report' ],
	'exporter file: two queries, idle_guard and idle_guard_report');

# $declared{$query} = [ [ column, usage ], ... ] in file order.
my %declared;
foreach my $ns (sort keys %$exporter)
{
	my $spec = $exporter->{$ns};
	ok(defined $spec->{query} && !ref $spec->{query} && $spec->{query} =~ /\S/,
		"exporter $ns: has a query");
	ok($spec->{master}, "exporter $ns: master: true (runs once, on the DSN's database)");
	ok(ref $spec->{metrics} eq 'ARRAY' && @{ $spec->{metrics} },
		"exporter $ns: metrics is a non-empty list");
	foreach my $m (@{ $spec->{metrics} // [] })
	{
		ok(ref $m eq 'HASH' && keys %$m == 1,
			"exporter $ns: each metrics entry is one column: {usage, description}")
		  or next;
		my ($col) = keys %$m;
		my $usage = $m->{$col}{usage} // '';
		my $name = "${ns}_$col";
		like($usage, qr/^(COUNTER|GAUGE|LABEL)$/, "exporter $name: usage $usage");
		like($m->{$col}{description} // '', qr/\S/, "exporter $name: description");
		like($name, qr/^[a-zA-Z_:][a-zA-Z0-9_:]*$/, "exporter $name: valid metric name");
		if ($usage eq 'COUNTER')
		{
			like($name, qr/_total$/, "exporter $name: counter name ends in _total");
		}
		else
		{
			unlike($name, qr/_total$/, "exporter $name: only counters end in _total");
		}
		# The header comment lists every metric the file produces.
		like($exporter_text, qr/^#\s+\Q$name\E\s/m,
			"exporter $name: named in the file's header comment");
		push @{ $declared{$ns} }, [ $col, $usage ];
	}
}

is_deeply([ sort keys %{ $pgwatch->{metrics} // {} } ],
	[ sort keys %twin ],
	'pgwatch file: metrics idle_guard_report and idle_guard_stats');
foreach my $metric (sort keys %{ $pgwatch->{metrics} // {} })
{
	my $def = $pgwatch->{metrics}{$metric};
	my $sqls = $def->{sqls};
	ok( ref $sqls eq 'HASH'
		  && %$sqls
		  && !grep({ !/^\d+$/ || $sqls->{$_} !~ /\S/ } keys %$sqls),
		"pgwatch $metric: sqls keyed by PostgreSQL major version");
	ok(ref $def->{gauges} eq 'ARRAY', "pgwatch $metric: gauges is a list");
	like($def->{description} // '', qr/\S/, "pgwatch $metric: description");
}
foreach my $preset (sort keys %{ $pgwatch->{presets} // {} })
{
	my $metrics = $pgwatch->{presets}{$preset}{metrics} // {};
	ok( %$metrics
		  && !grep({ !exists $pgwatch->{metrics}{$_} || $metrics->{$_} !~ /^[1-9]\d*$/ }
			keys %$metrics),
		"pgwatch preset $preset: defined metrics, intervals in seconds");
}

#
# A node in report mode: two silent sessions block an ALTER TABLE, a
# third is silent and blocks nobody.
#

my $node = ig_node(
	'monitoring',
	'idle_guard.action' => "'report'",
	'idle_guard.blocking_timeout' => "'1s'");
my $major = $node->safe_psql('postgres',
	"SELECT current_setting('server_version_num')::int / 10000");
ok( $node->safe_psql('postgres',
		"SELECT string_to_array(extversion, '.')::int[] >= '{1,2}' "
		  . "FROM pg_extension WHERE extname = 'idle_guard'") eq 't',
	'extension version 1.2 or later (stats_reset)');

$node->safe_psql('postgres',
	'CREATE ROLE monitor LOGIN; GRANT pg_monitor TO monitor;'
	  . 'CREATE TABLE accounts (id int PRIMARY KEY, balance int);'
	  . 'INSERT INTO accounts VALUES (1, 100), (2, 100);'
	  . 'CREATE TABLE notes (id int PRIMARY KEY, body text);'
	  . "INSERT INTO notes VALUES (1, 'x');");
is( $node->safe_psql('postgres',
		"SELECT rolsuper, string_agg(m.roleid::regrole::text, ',') "
		  . "FROM pg_roles r JOIN pg_auth_members m ON m.member = r.oid "
		  . "WHERE rolname = 'monitor' GROUP BY rolsuper"),
	'f|pg_monitor',
	'the monitoring role is only a member of pg_monitor');

my ($quiet, $quiet_pid) = ig_silent_session($node, 'quiet',
	"BEGIN; UPDATE notes SET body = 'y' WHERE id = 1;");
my ($holder1, $pid1) = ig_silent_session($node, 'forgetful1',
	'BEGIN; UPDATE accounts SET balance = balance - 10 WHERE id = 1;');
my ($holder2, $pid2) = ig_silent_session($node, 'forgetful2',
	'BEGIN; UPDATE accounts SET balance = balance - 10 WHERE id = 2;');
my ($waiter, $waiter_pid) = ig_waiting_session($node, 'migration',
	'ALTER TABLE accounts ADD COLUMN note text;');
is( $node->safe_psql('postgres',
		"SELECT string_agg(pid || ':' || blocked_pids::text, ',' ORDER BY pid) "
		  . "FROM idle_guard_report() WHERE blocked_total > 0"),
	join(',', map { "$_:{$waiter_pid}" } sort { $a <=> $b } $pid1, $pid2),
	'both row-lock holders block the ALTER TABLE');
ig_wait_for($node,
	"SELECT count(DISTINCT pid) = 2 FROM idle_guard_history() "
	  . "WHERE pid IN ($pid1, $pid2) AND action = 'reported'",
	't', 'both silent blocking sessions reported');
ok( ig_pid_alive($node, $pid1) && ig_pid_alive($node, $pid2)
	  && ig_pid_alive($node, $quiet_pid),
	'report mode: the sessions stay');

# run_as_monitor($sql, $what): run one query of the files as the
# monitoring role.  Returns ([ [column, type], ... ], [ {row}, ... ]), or
# () after a failed assertion if it does not run.
sub run_as_monitor
{
	my ($sql, $what) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	(my $query = $sql) =~ s/;\s*\z//;
	my ($ret, $out, $err) = $node->psql(
		'postgres',
		"CREATE TEMP VIEW q AS $query;\n"
		  . "SELECT jsonb_agg(jsonb_build_array(attname, format_type(atttypid, atttypmod)) "
		  . "ORDER BY attnum) FROM pg_attribute "
		  . "WHERE attrelid = 'q'::regclass AND attnum > 0;\n"
		  . "SELECT coalesce(jsonb_agg(to_jsonb(q)), '[]') FROM q;\n",
		extra_params => [ '-U', 'monitor' ]);
	is($ret, 0, "$what: runs as a member of pg_monitor") or diag($err);
	return () if $ret != 0;
	my @lines = split /\n/, $out;
	return (decode_json($lines[0]), decode_json($lines[1]));
}

# The values expected in the scene, per column.
my $now = sub {
	$node->safe_psql('postgres', 'SELECT extract(epoch FROM clock_timestamp())');
};
my %plausible = (
	sweeps_total => sub { $_[0] >= 1 },
	reported_total => sub { $_[0] == 2 },
	terminated_total => sub { $_[0] == 0 },
	skipped_total => sub { $_[0] == 0 },
	guarded_now => sub { $_[0] == 3 },
	last_sweep_duration_seconds => sub { $_[0] >= 0 && $_[0] < 10 },
	worker_up => sub { $_[0] == 1 },
	stats_reset_timestamp_seconds => sub { $_[0] > 0 && $_[0] <= $now->() },
	silent_sessions => sub { $_[0] == 3 },
	silent_blocking_sessions => sub { $_[0] == 2 },
	blocked_sessions => sub { $_[0] == 1 },
	oldest_silence_seconds => sub { $_[0] >= 1 && $_[0] < 3600 },
	epoch_ns => sub { abs($_[0] / 1e9 - $now->()) < 60 });

# check_result($what, \@columns_expected, $types, $rows): one row, exactly
# the expected columns, numeric types, no NULL, plausible values.
sub check_result
{
	my ($what, $expected, $types, $rows) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	is_deeply([ sort map { $_->[0] } @$types ], [ sort @$expected ],
		"$what: returns exactly the columns " . join(', ', @$expected));
	is(scalar @$rows, 1, "$what: one row");
	foreach my $t (@$types)
	{
		my ($col, $type) = @$t;
		ok($numeric_type{$type}, "$what: $col is a number ($type)");
		foreach my $row (@$rows)
		{
			my $v = $row->{$col};
			ok(defined $v, "$what: $col is not NULL") or next;
			ok(!exists $plausible{$col} || $plausible{$col}->($v),
				"$what: $col = $v fits the scene");
		}
	}
	return;
}

# Every exporter query.  $exporter_rows{$ns} = its row.
my %exporter_rows;
foreach my $ns (sort keys %declared)
{
	my ($types, $rows) =
	  run_as_monitor($exporter->{$ns}{query}, "exporter $ns");
	next unless $types;
	check_result("exporter $ns", [ map { $_->[0] } @{ $declared{$ns} } ],
		$types, $rows);
	$exporter_rows{$ns} = $rows->[0];
}

# Every pgwatch SQL a PostgreSQL of this major version could be given.
foreach my $metric (sort keys %{ $pgwatch->{metrics} // {} })
{
	my $def = $pgwatch->{metrics}{$metric};
	my $ns = $twin{$metric} // next;
	my @cols = map { $_->[0] } @{ $declared{$ns} };
	my @counters = sort map { $_->[1] eq 'COUNTER' ? $_->[0] : () } @{ $declared{$ns} };
	my @gauges = @{ $def->{gauges} // [] };
	my %is_gauge = map { $_ => 1 } @gauges;

	# Columns that are not gauges are counters for pgwatch: the same ones
	# as in the exporter file.
	my @pgwatch_counters =
	  $is_gauge{'*'} ? () : sort grep { !$is_gauge{$_} } @cols;
	is_deeply(\@pgwatch_counters, \@counters,
		"pgwatch $metric: the columns not in gauges are the exporter's counters");
	my %has_col = map { $_ => 1 } @cols;
	ok(!grep({ $_ ne '*' && !$has_col{$_} } @gauges),
		"pgwatch $metric: every gauge is a column");

	my @versions = sort { $a <=> $b } grep { $_ <= $major } keys %{ $def->{sqls} };
	ok(@versions, "pgwatch $metric: an SQL for PostgreSQL $major");
	foreach my $v (@versions)
	{
		my ($types, $rows) =
		  run_as_monitor($def->{sqls}{$v}, "pgwatch $metric (sqls $v)");
		next unless $types;
		is($types->[0][0] . ' ' . $types->[0][1], 'epoch_ns bigint',
			"pgwatch $metric (sqls $v): epoch_ns bigint comes first");
		check_result("pgwatch $metric (sqls $v)", [ 'epoch_ns', @cols ],
			$types, $rows);
	}
}

#
# idle_guard_reset(): the stats_reset gauge moves to the reset, and the
# reported counter drops.
#

my $stats_query = $exporter->{idle_guard}{query};
$stats_query =~ s/;\s*\z//;
my $reported_before = $exporter_rows{idle_guard}{reported_total} // 0;
my $before = $now->();
$node->safe_psql('postgres', 'SELECT idle_guard_reset()');
my $after = $now->();
ig_wait_for($node,
	"SELECT stats_reset_timestamp_seconds >= $before FROM ($stats_query) q",
	't', 'stats_reset_timestamp_seconds moves to the reset');
my ($types, $rows) = run_as_monitor($stats_query, 'exporter idle_guard after the reset');
if ($types)
{
	cmp_ok($rows->[0]{stats_reset_timestamp_seconds}, '<=', $after + 1,
		'stats_reset_timestamp_seconds is the time of the reset');
	cmp_ok($rows->[0]{reported_total}, '<', $reported_before,
		'reported_total dropped: a counter reset');
	is($rows->[0]{worker_up}, 1, 'worker still up after the reset');
}

ig_close($_) foreach ($quiet, $holder1, $holder2, $waiter);
$node->stop;
done_testing();
