# Copyright (c) 2026, idle_guard developers
#
# IgWire.pm
#	A minimal PostgreSQL frontend speaking protocol 3.0 over a raw socket,
#	for tests that need a client that psql, the one client the test
#	framework drives, will not play: one that sends half of an
#	extended-protocol request and then nothing (libpq can, in pipeline
#	mode, but psql cannot before PostgreSQL 18), or one that reads a large
#	result a few bytes at a time, or not at all.
#
# Only what the tests need: trust authentication, the simple query
# protocol, Parse/Bind/Execute/Flush/Sync of the extended protocol with
# text parameters and results, and raw reads of the incoming byte stream.
#
# The format, as every message but the startup packet has it:
#	Byte1 type, Int32 length (of itself and the body, not of the type),
#	then the body.  Integers are big-endian; strings end with a zero byte.
# The startup packet has no type byte: Int32 length, Int32 protocol
# version (3 << 16), then name/value string pairs and a final zero byte.
#
# Every read has a deadline ($PostgreSQL::Test::Utils::timeout_default
# unless told otherwise) and dies when it passes; a test never hangs here.
#
# Usage:
#	my $c = IgWire->connect($node, application_name => 'raw');
#	$c->pid;                                # from BackendKeyData
#	my $r = $c->simple_query('BEGIN');      # {rows, tags, errors, status}
#	$c->parse('', 'UPDATE t SET v = v + 1 WHERE id = $1');
#	$c->bind('', '', 1);
#	$c->execute('', 0);
#	$c->flush;                              # and then, maybe, no Sync
#	$c->sync; $r = $c->read_until_ready;
#	$c->send_query('SELECT ...');           # and read nothing, or:
#	$c->read_some(8192);                    # read up to 8 kB now
#	$c->close;

package IgWire;

use strict;
use warnings FATAL => 'all';

use Carp;
use IO::Select;
use IO::Socket::IP;
use IO::Socket::UNIX;
use Socket ();
use POSIX ();
use Time::HiRes qw(time usleep);

use constant PROTOCOL_3_0 => 3 << 16;

# The test suite's patience for a single read, in seconds.
sub _default_timeout
{
	no warnings 'once';
	return $PostgreSQL::Test::Utils::timeout_default // 180;
}

# IgWire->connect($node, %opts) or IgWire->connect(undef, host => ..., port => ...)
#	Opens a session and reads up to its first ReadyForQuery.
#	$node: a PostgreSQL::Test::Cluster; its host (a socket directory, or an
#	address) and port are used unless host/port are given.
#	%opts: user (default $PGUSER or the OS user), dbname (default
#	'postgres'), application_name, timeout (seconds, per read), rcvbuf
#	(the socket's receive buffer in bytes, SO_RCVBUF: a small one makes
#	the client's window close soon after it stops reading).
#	Dies, naming the reason, if the server refuses or asks for a password.
sub connect
{
	my ($class, $node, %opts) = @_;
	my $host = $opts{host} // $node->host;
	my $port = $opts{port} // $node->port;
	my $user = $opts{user} // $ENV{PGUSER} // scalar getpwuid($<);
	my $self = bless {
		buf => '',              # bytes received and not yet consumed
		bytes_in => 0,          # bytes received in all
		rows_dropped => 0,      # DataRows read_some() consumed
		eof => 0,               # the server closed the connection
		params => {},           # ParameterStatus
		timeout => $opts{timeout} // _default_timeout(),
	}, $class;

	if ($host =~ m{^/})
	{
		# A Unix-socket directory, as libpq takes it.
		$self->{sock} = IO::Socket::UNIX->new(
			Type => IO::Socket::UNIX::SOCK_STREAM(),
			Peer => "$host/.s.PGSQL.$port")
		  or croak "IgWire: cannot connect to $host/.s.PGSQL.$port: $!";
	}
	else
	{
		# SO_RCVBUF before connect(): the window scale is agreed on then
		$self->{sock} = IO::Socket::IP->new(
			PeerHost => $host,
			PeerPort => $port,
			Proto => 'tcp',
			Sockopts => defined $opts{rcvbuf}
			? [ [ Socket::SOL_SOCKET(), Socket::SO_RCVBUF(), $opts{rcvbuf} ] ]
			: [])
		  or croak "IgWire: cannot connect to $host:$port: $!";
	}
	binmode $self->{sock};

	my %startup = (
		user => $user,
		database => $opts{dbname} // 'postgres');
	$startup{application_name} = $opts{application_name}
	  if defined $opts{application_name};
	my $body = pack('N', PROTOCOL_3_0)
	  . join('', map { "$_\0$startup{$_}\0" } sort keys %startup) . "\0";
	$self->_write(pack('N', length($body) + 4) . $body);

	# Authentication, then ParameterStatus and BackendKeyData, up to
	# ReadyForQuery.
	while (1)
	{
		my ($type, $msg) = $self->read_message;
		croak "IgWire: connection closed during startup" unless defined $type;
		if ($type eq 'R')
		{
			my $code = unpack('N', $msg);
			next if $code == 0;    # AuthenticationOk
			croak "IgWire: the server asks for authentication (request code $code); "
			  . "IgWire speaks only trust: check pg_hba.conf";
		}
		elsif ($type eq 'E')
		{
			croak "IgWire: connection refused: " . _error_text(_fields($msg));
		}
		elsif ($type eq 'S')
		{
			my ($name, $value) = split /\0/, $msg;
			$self->{params}{$name} = $value;
		}
		elsif ($type eq 'K')
		{
			# Int32 pid, then the cancel key (4 bytes in protocol 3.0).
			($self->{pid}, $self->{cancel_key}) = unpack('N N', $msg);
		}
		elsif ($type eq 'Z')
		{
			$self->{status} = $msg;
			last;
		}
		# NoticeResponse, NegotiateProtocolVersion: nothing to do.
	}
	croak "IgWire: no BackendKeyData received" unless defined $self->{pid};
	return $self;
}

# The backend's pid, from BackendKeyData.
sub pid { return $_[0]->{pid}; }

# Transaction status from the last ReadyForQuery: I, T or E.
sub status { return $_[0]->{status}; }

# Bytes received from the server so far, framed or not.
sub bytes_in { return $_[0]->{bytes_in}; }

# DataRow messages consumed (and thrown away) by read_some().
sub rows_dropped { return $_[0]->{rows_dropped}; }

# Has the server closed the connection?
sub eof { return $_[0]->{eof}; }

#
# Frontend messages.  None of them reads anything: replies wait in the
# socket until read_message() or read_until_ready() collects them.
#

# Query: one simple-protocol query string, possibly several statements.
sub send_query
{
	my ($self, $sql) = @_;
	$self->_send('Q', "$sql\0");
	return;
}

# Parse: prepare $sql as statement $name ('' for the unnamed one), with
# optional parameter type oids (unspecified ones are inferred).
sub parse
{
	my ($self, $name, $sql, @oids) = @_;
	$self->_send('P',
		"$name\0$sql\0" . pack('n', scalar @oids) . pack('N*', @oids));
	return;
}

# Bind: portal $portal ('' unnamed) of statement $stmt with text
# parameters (undef for NULL); results in text.
sub bind
{
	my ($self, $portal, $stmt, @params) = @_;
	my $body = "$portal\0$stmt\0"
	  . pack('n', 0)    # no parameter format codes: all text
	  . pack('n', scalar @params);
	for my $p (@params)
	{
		$body .= defined $p ? pack('N', length $p) . $p : pack('l>', -1);
	}
	$body .= pack('n', 0);    # no result format codes: all text
	$self->_send('B', $body);
	return;
}

# Execute: run portal $portal, returning at most $maxrows rows (0: all).
sub execute
{
	my ($self, $portal, $maxrows) = @_;
	$self->_send('E', "$portal\0" . pack('N', $maxrows // 0));
	return;
}

# Flush: ask the server to send what it has buffered, without ending the
# request as Sync does.
sub flush
{
	my ($self) = @_;
	$self->_send('H', '');
	return;
}

# Sync: the end of an extended-protocol request; the server answers with
# ReadyForQuery (after committing an implicit transaction).
sub sync
{
	my ($self) = @_;
	$self->_send('S', '');
	return;
}

#
# Reading.
#

# read_message([$timeout]): the next complete message as ($type, $body),
# or () once the server has closed the connection.  Dies after $timeout
# seconds without a complete message.
sub read_message
{
	my ($self, $timeout) = @_;
	my $deadline = time + ($timeout // $self->{timeout});
	return () unless $self->_fill(5, $deadline);
	my $len = unpack('N', substr($self->{buf}, 1, 4));
	croak "IgWire: bad message length $len" if $len < 4;
	return () unless $self->_fill(1 + $len, $deadline);
	my $type = substr($self->{buf}, 0, 1);
	my $body = substr($self->{buf}, 5, $len - 4);
	substr($self->{buf}, 0, 1 + $len, '');
	return ($type, $body);
}

# read_until_ready([$timeout]): collect messages up to ReadyForQuery.
# Returns a hash reference:
#	columns  => [names] of the last RowDescription
#	rows     => [[values]] of every DataRow (text, undef for NULL)
#	tags     => [command tags] of every CommandComplete
#	errors   => [messages] "SEVERITY:  text (SQLSTATE)" of ErrorResponses
#	sqlstates=> [codes] of the same
#	fields   => [{code => value}] of the same, every field by its one-letter
#	            code: S severity, V severity (untranslated), C SQLSTATE,
#	            M message, D detail, H hint, ...
#	types    => [every message type received, in order]
#	status   => transaction status of ReadyForQuery (I, T, E), or
#	eof      => 1 if the server closed the connection first.
sub read_until_ready
{
	my ($self, $timeout) = @_;
	my %r = (
		columns => [],
		rows => [],
		tags => [],
		errors => [],
		sqlstates => [],
		fields => [],
		types => []);
	while (1)
	{
		my ($type, $msg) = $self->read_message($timeout);
		if (!defined $type)
		{
			$r{eof} = 1;
			last;
		}
		push @{ $r{types} }, $type;
		if ($type eq 'T')
		{
			$r{columns} = _row_description($msg);
		}
		elsif ($type eq 'D')
		{
			push @{ $r{rows} }, _data_row($msg);
		}
		elsif ($type eq 'C')
		{
			push @{ $r{tags} }, unpack('Z*', $msg);
		}
		elsif ($type eq 'E')
		{
			my $f = _fields($msg);
			push @{ $r{errors} }, _error_text($f);
			push @{ $r{sqlstates} }, $f->{C} // '';
			push @{ $r{fields} }, $f;
		}
		elsif ($type eq 'Z')
		{
			$r{status} = $self->{status} = $msg;
			last;
		}
		# ParseComplete '1', BindComplete '2', CloseComplete '3', NoData 'n',
		# ParameterDescription 't', PortalSuspended 's', EmptyQueryResponse
		# 'I', NoticeResponse 'N', ParameterStatus 'S', NotificationResponse
		# 'A': only recorded in types.
	}
	return \%r;
}

# simple_query($sql): send it and read up to ReadyForQuery; dies if the
# connection is lost, returns read_until_ready()'s hash otherwise (check
# its errors).
sub simple_query
{
	my ($self, $sql) = @_;
	$self->send_query($sql);
	my $r = $self->read_until_ready;
	croak "IgWire: connection lost during: $sql" if $r->{eof};
	return $r;
}

# query_ok($sql): simple_query() that dies on any error; returns the
# first column of the first row (or undef).
sub query_ok
{
	my ($self, $sql) = @_;
	my $r = $self->simple_query($sql);
	croak "IgWire: $sql: @{$r->{errors}}" if @{ $r->{errors} };
	return @{ $r->{rows} } ? $r->{rows}[0][0] : undef;
}

# read_some($max[, $timeout]): one read of at most $max bytes from the
# socket, waiting up to $timeout seconds (default the read timeout) for
# something to arrive.  The RowDescription and DataRow messages complete
# at the head of what has been received are thrown away (the rows counted
# in rows_dropped), so that reading a huge result this way takes no memory
# and the stream stays framed for read_message() afterwards.  Returns the bytes read: 0 at the
# end of the connection (see eof()) or if nothing arrived in time.
sub read_some
{
	my ($self, $max, $timeout) = @_;
	my $sel = IO::Select->new($self->{sock});
	return 0 if $self->{eof};
	return 0 unless $sel->can_read($timeout // $self->{timeout});
	my $n = sysread($self->{sock}, my $chunk, $max);
	if (!$n)
	{
		# The end, or an error such as a reset by a terminated backend.
		$self->{eof} = 1;
		return 0;
	}
	$self->{buf} .= $chunk;
	$self->{bytes_in} += $n;
	$self->_drop_data_rows;
	return $n;
}

# result_done(): has the end of a result (CommandComplete, ErrorResponse,
# ReadyForQuery, EmptyQueryResponse, PortalSuspended) arrived after the
# rows read_some() consumed?  Then read_until_ready() finishes the request.
sub result_done
{
	my ($self) = @_;
	return length($self->{buf}) >= 1 && substr($self->{buf}, 0, 1) =~ /^[CEZIs]$/;
}

# drain_slowly(%opts): read like a slow client that keeps up a trickle:
# read_some(chunk) (default 8192 bytes) every pause seconds (default
# 0.025) for seconds seconds, or until the result is complete or the
# connection ends.  Returns the bytes read.
sub drain_slowly
{
	my ($self, %opts) = @_;
	my $chunk = $opts{chunk} // 8192;
	my $pause = $opts{pause} // 0.025;
	my $until = time + ($opts{seconds} // 1);
	my $total = 0;
	while (time < $until && !$self->{eof} && !$self->result_done)
	{
		# Wait at most until the end of the slow phase for the next bytes.
		$total += $self->read_some($chunk, _max(0.001, $until - time));
		usleep(int($pause * 1e6));
	}
	return $total;
}

# in_child($code): run $code->($self) in a child process, which owns the
# connection from now on; the parent must not use this object again, except
# for close().  The child's exit status is $code's return value (0 on
# success), 255 if it died (the reason goes to stderr).  The child leaves
# with POSIX::_exit, so that it runs none of the test's END blocks (Test::More's
# verdict, the test cluster's teardown).  Returns the child's pid; collect
# it with wait_child().
sub in_child
{
	my ($self, $code) = @_;
	my $child = fork;
	croak "IgWire: fork failed: $!" unless defined $child;
	return $child if $child;
	my $rc = eval { $code->($self) };
	if (!defined $rc)
	{
		print STDERR "IgWire child: $@" if $@;
		$rc = 255;
	}
	POSIX::_exit($rc);
}

# wait_child($pid[, $timeout]): wait for a child of in_child() to exit;
# returns its exit status, or undef if it has not exited by the deadline.
sub wait_child
{
	my ($class_or_self, $child, $timeout) = @_;
	my $deadline = time + ($timeout // _default_timeout());
	while (time < $deadline)
	{
		my $r = waitpid($child, POSIX::WNOHANG());
		return $? >> 8 if $r == $child;
		return undef if $r < 0;
		usleep(20_000);
	}
	return undef;
}

# shutdown_write(): close the sending side of the socket (the server reads
# end of file, the kernel sends FIN) and keep the receiving side open.
sub shutdown_write
{
	my ($self) = @_;
	shutdown($self->{sock}, 1) or croak "IgWire: shutdown: $!";
	return;
}

# close(): send Terminate if the connection still stands, and close the
# socket.  Safe to call more than once, and after the server has gone.
sub close
{
	my ($self) = @_;
	return unless $self->{sock};
	eval { $self->_send('X', '') unless $self->{eof}; };
	CORE::close($self->{sock});
	delete $self->{sock};
	return;
}

#
# Internals.
#

sub _max { return $_[0] > $_[1] ? $_[0] : $_[1]; }

# One message: type byte, Int32 length including itself, body.
sub _send
{
	my ($self, $type, $body) = @_;
	$self->_write($type . pack('N', length($body) + 4) . $body);
	return;
}

# Write all of $data.  A closed connection must fail the call, not kill the
# test with SIGPIPE.
sub _write
{
	my ($self, $data) = @_;
	croak "IgWire: connection already closed" unless $self->{sock};
	local $SIG{PIPE} = 'IGNORE';
	my $off = 0;
	while ($off < length $data)
	{
		my $n = syswrite($self->{sock}, $data, length($data) - $off, $off);
		croak "IgWire: write failed: $!" unless defined $n;
		$off += $n;
	}
	return;
}

# Receive until at least $n bytes are buffered; false at end of connection.
sub _fill
{
	my ($self, $n, $deadline) = @_;
	my $sel = IO::Select->new($self->{sock});
	while (length($self->{buf}) < $n)
	{
		return 0 if $self->{eof};
		my $left = $deadline - time;
		croak "IgWire: timed out waiting for the server (pid "
		  . ($self->{pid} // '?') . ")"
		  if $left <= 0;
		# a signal (SIGCHLD of a stopped child) ends the wait early
		next if !$sel->can_read($left);
		my $got = sysread($self->{sock}, my $chunk, 65536);
		if (!defined $got)
		{
			# A terminated backend may leave a reset connection.
			$self->{eof} = 1;
			return 0;
		}
		if ($got == 0)
		{
			$self->{eof} = 1;
			return 0;
		}
		$self->{buf} .= $chunk;
		$self->{bytes_in} += $got;
	}
	return 1;
}

# Throw away the complete RowDescription and DataRow messages at the head
# of the buffer, counting the rows.
sub _drop_data_rows
{
	my ($self) = @_;
	while (length($self->{buf}) >= 5 && substr($self->{buf}, 0, 1) =~ /^[TD]$/)
	{
		my $len = unpack('N', substr($self->{buf}, 1, 4));
		last if length($self->{buf}) < 1 + $len;
		$self->{rows_dropped}++ if substr($self->{buf}, 0, 1) eq 'D';
		substr($self->{buf}, 0, 1 + $len, '');
	}
	return;
}

# RowDescription: Int16 count, then per field: name, Int32 table oid,
# Int16 column, Int32 type oid, Int16 size, Int32 modifier, Int16 format.
sub _row_description
{
	my ($msg) = @_;
	my $n = unpack('n', $msg);
	my $pos = 2;
	my @names;
	for (1 .. $n)
	{
		my $end = index($msg, "\0", $pos);
		push @names, substr($msg, $pos, $end - $pos);
		$pos = $end + 1 + 18;
	}
	return \@names;
}

# DataRow: Int16 count, then per column Int32 length (-1: NULL) and bytes.
sub _data_row
{
	my ($msg) = @_;
	my $n = unpack('n', $msg);
	my $pos = 2;
	my @vals;
	for (1 .. $n)
	{
		my $len = unpack('l>', substr($msg, $pos, 4));
		$pos += 4;
		if ($len < 0)
		{
			push @vals, undef;
			next;
		}
		push @vals, substr($msg, $pos, $len);
		$pos += $len;
	}
	return \@vals;
}

# ErrorResponse and NoticeResponse: (Byte1 field code, string) pairs,
# then a zero byte.
sub _fields
{
	my ($msg) = @_;
	my %f;
	my $pos = 0;
	while ($pos < length($msg) && substr($msg, $pos, 1) ne "\0")
	{
		my $code = substr($msg, $pos, 1);
		my $end = index($msg, "\0", $pos + 1);
		last if $end < 0;
		$f{$code} = substr($msg, $pos + 1, $end - $pos - 1);
		$pos = $end + 1;
	}
	return \%f;
}

sub _error_text
{
	my ($f) = @_;
	return sprintf('%s:  %s (%s)',
		$f->{V} // $f->{S} // 'ERROR',
		$f->{M} // '?', $f->{C} // '?');
}

1;
