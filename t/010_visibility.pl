# Copyright (c) 2026, idle_guard developers
#
# Who may call idle_guard's functions, and what they see of other users'
# sessions.  A role without pg_monitor (or a grant) gets "permission
# denied".  A plain role granted EXECUTE sees another user's silent
# session, but without its application_name and client_addr; members of
# pg_monitor (which includes pg_read_all_stats), of pg_read_all_stats, or
# of the session's own role see both.  The same rule holds for
# idle_guard_history() once the session has been acted on.  The silent
# session connects over TCP (127.0.0.1) so that it has a client address
# to hide.

use strict;
use warnings FATAL => 'all';

use FindBin;
use lib $FindBin::RealBin;

use IdleGuardTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

# Run $sql as $role (a separate login); returns (exit code, stdout, stderr).
sub psql_as
{
	my ($node, $role, $sql) = @_;
	my ($out, $err);
	my $ret = $node->psql('postgres', $sql,
		extra_params => [ '-U', $role ],
		stdout => \$out,
		stderr => \$err);
	return ($ret, $out, $err);
}

my $node = ig_node('visibility', listen_addresses => "'127.0.0.1'");
$node->safe_psql(
	'postgres', q{
	CREATE TABLE orders (id int PRIMARY KEY, qty int);
	INSERT INTO orders VALUES (1, 1);
	CREATE ROLE app_user LOGIN;
	GRANT SELECT, UPDATE ON orders TO app_user;
	CREATE ROLE nobody LOGIN;
	CREATE ROLE plain_reader LOGIN;
	CREATE ROLE monitor LOGIN;
	GRANT pg_monitor TO monitor;
	CREATE ROLE stats_reader LOGIN;
	GRANT pg_read_all_stats TO stats_reader;
	CREATE ROLE app_admin LOGIN;
	GRANT app_user TO app_admin;
	GRANT EXECUTE ON FUNCTION idle_guard_report(), idle_guard_history(),
		idle_guard_stats() TO plain_reader, stats_reader, app_admin;
});

#
# No privilege, no access.
#
for my $f (qw(idle_guard_report idle_guard_history idle_guard_stats))
{
	my ($ret, $out, $err) = psql_as($node, 'nobody', "SELECT * FROM $f()");
	isnt($ret, 0, "nobody: $f() fails");
	like($err, qr/permission denied for function $f\b/,
		"nobody: permission denied for function $f");
}
{
	my ($ret, $out, $err) =
	  psql_as($node, 'nobody', 'SELECT * FROM idle_guard_report');
	like($err, qr/permission denied for view idle_guard_report/,
		'nobody: permission denied for the view');
}

#
# A silent session of app_user over TCP.
#
my ($holder, $pid) = ig_silent_session($node, 'secret_app',
	'BEGIN; UPDATE orders SET qty = qty + 1 WHERE id = 1;',
	user => 'app_user',
	hostaddr => '127.0.0.1');
is( $node->safe_psql('postgres',
		"SELECT usename, application_name, client_addr FROM pg_stat_activity WHERE pid = $pid"
	),
	'app_user|secret_app|127.0.0.1',
	'the silent session is app_user over TCP from 127.0.0.1');

my $report_q =
  "SELECT usename, application_name, client_addr, state, locks_held > 0 "
  . "FROM idle_guard_report() WHERE pid = $pid";
my %sees_all = (
	monitor => 'pg_monitor member',
	stats_reader => 'pg_read_all_stats member',
	app_admin => "member of the session's role",
	postgres => 'superuser');

my ($ret, $out, $err) = psql_as($node, 'plain_reader', $report_q);
is($ret, 0, 'plain_reader may call idle_guard_report()');
is($out, 'app_user|||idle in transaction|t',
	'plain_reader: session shown without application_name and client_addr');
for my $role (sort keys %sees_all)
{
	($ret, $out, $err) = psql_as($node, $role, $report_q);
	is( $out,
		'app_user|secret_app|127.0.0.1|idle in transaction|t',
		"$role ($sees_all{$role}): application_name and client_addr shown");
}
($ret, $out, $err) = psql_as($node, 'monitor',
	"SELECT application_name, client_addr FROM idle_guard_report WHERE pid = $pid");
is($out, 'secret_app|127.0.0.1', 'monitor: the view shows the same');

#
# Someone waits: the session is terminated and recorded.  Same rule for
# idle_guard_history().
#
# The session is past its blocking deadline by now: it is ended as soon
# as the writer waits, which may be too soon to see the writer waiting.
my ($writer) = ig_waiting_session($node, 'writer',
	'UPDATE orders SET qty = 0 WHERE id = 1;', blocker => $pid);
ig_wait_gone($node, $pid, 'silent TCP session terminated');
$node->wait_for_log(
	qr/idle_guard: terminating silent session pid=$pid user="app_user" db="postgres" app="secret_app" client=127\.0\.0\.1 /
);
pass('the LOG line names the client address');

my $history_q =
  "SELECT usename, application_name, client_addr, action "
  . "FROM idle_guard_history() WHERE pid = $pid";
($ret, $out, $err) = psql_as($node, 'plain_reader', $history_q);
is($ret, 0, 'plain_reader may call idle_guard_history()');
is($out, 'app_user|||terminated',
	'plain_reader: history without application_name and client_addr');
for my $role (sort keys %sees_all)
{
	($ret, $out, $err) = psql_as($node, $role, $history_q);
	is( $out,
		'app_user|secret_app|127.0.0.1|terminated',
		"$role ($sees_all{$role}): history with application_name and client_addr");
}

# Counters hide nothing and are readable by every grantee.
for my $role (qw(plain_reader monitor))
{
	($ret, $out, $err) =
	  psql_as($node, $role, 'SELECT terminated FROM idle_guard_stats()');
	is($out, '1', "$role may read idle_guard_stats()");
}

$writer->query_safe('SELECT 1');
ig_close($holder);
$writer->quit;
$node->stop;
done_testing();
