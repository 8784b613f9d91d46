#!/usr/bin/python3
#
# test/soak/driver.py -- the client side of the soak (test/soak/soak.sh).
#
# Usage: driver.py --port P --duration S --clients N --out DIR
#                  --blocking-ms B --idle-ms I --naptime-ms T
#                  --unreachable-ms U [--sever OUTER_NETNS]
#
# Connects to 127.0.0.1:P (trust authentication, a throwaway cluster that
# test/soak/soak.sh made), creates the roles and tables the clients use, then
# runs N client threads for S seconds.  Each client plays random scenarios
# (see SCENARIOS) and logs, with timestamps, every session it opened and
# every silence it kept.  Meanwhile the main thread reloads a changed policy
# twice and logs when, and a sampler thread reads idle_guard_report() every
# SAMPLE_EVERY seconds on a connection of its own and logs what it promises
# (rule, deadline, action of each silent session) for the oracle to hold
# the worker to.  At the end it dumps idle_guard_history(),
# idle_guard_stats() and the worker's memory into DIR, for test/soak/oracle.py:
#
#   DIR/sessions.jsonl  one line per connection: pid, backend start, end
#   DIR/episodes.jsonl  one line per silence (or would-be silence)
#   DIR/samples.jsonl   one line per sample of idle_guard_report()
#   DIR/meta.json       policies, reloads, history, stats, worker RSS
#
# Two scenarios speak the protocol themselves (RawSession, a minimal
# protocol 3.0 client over a socket of its own), for what psycopg2 will not
# do: "not_reading" stops reading a large result for longer than
# unreachable_timeout (a live client: never unreachable), and "severed"
# (only with --sever) has its packets dropped by an nftables rule on its
# port pair, so that the unreachable rule must end it.  --sever needs root
# (or CAP_NET_ADMIN) in a network namespace of the soak's own, which
# soak.sh makes: the driver refuses to touch the firewall of the namespace
# soak.sh started in (OUTER_NETNS) or of pid 1's, and deletes its table
# when it ends (the table dies with the namespace anyway).
#
# Time stamps are seconds since the epoch.  The start of a silence is read
# from the server (clock_timestamp() in the last statement before it); the
# other moments from the client's clock, which is the same clock: both run
# on this machine.
#
# Needs Debian's python3-psycopg2.  Every wait is bounded.

import argparse
import json
import os
import random
import socket
import struct
import subprocess
import sys
import threading
import time

import psycopg2
import psycopg2.extensions

# The roles and names the clients use.  soak_exempt is listed in
# idle_guard.exempt_roles, soak_etl_* in idle_guard.exempt_applications
# (test/soak/soak.sh sets both).
ROLE = 'soak'
EXEMPT_ROLE = 'soak_exempt'
EXEMPT_APP_PREFIX = 'soak_etl_'
# Sessions of this role have idle_guard.action = 'report' (ALTER ROLE ...
# SET, in setup()): the worker reports them at their deadline and never
# terminates them.
REPORT_ROLE = 'soak_report'

# The severed client waits this long past the latest moment its unreachable
# deadline can fall plus naptime before it heals the link: more than the
# oracle's slack (PROMISE_SLACK in oracle.py, 1.5 s), so that a session
# still there then is a missed action, and little enough that its silence
# ends before idle_timeout (7 s at the least in the soak).
SEVER_MARGIN = 1.8

# scenario name -> weight.  What each one does is in Client.run_scenario.
SCENARIOS = {
    'short': 3,           # one-round-trip transaction, never silent
    'quiet_nolock': 1,    # silent in a transaction that holds no lock
    'holder_idle': 2,     # silent with locks, nobody waits: idle rule
    'holder_blocking': 5, # silent with locks and a waiter: blocking rule
    'aborted': 1,         # silent in a failed transaction: holds nothing
    'exempt': 1,          # silent blocking holder of an exempt role or app
    'active': 1,          # a long query holding locks, with a waiter
    'twostep': 1,         # wakes before the deadline, goes silent again
    'reported': 1,        # like holder_blocking, for a role in report mode
    'not_reading': 1,     # stops reading a large result, raw protocol
    'severed': 1,         # its packets dropped: the unreachable rule (--sever)
}

# What the not_reading client asks for: more than the server's send buffer
# and the client's 4 kB receive buffer hold, so that the backend waits in
# ClientWrite; small enough to read to the end in well under a second.
BIG_RESULT = "SELECT repeat('x', 10000) FROM generate_series(1, 1000)"
RCVBUF_NOT_READING = 4096

# The sampler's pace, in seconds: several samples per naptime-and-slack
# window of the oracle's promise check.
SAMPLE_EVERY = 0.2

# The sampler's query: each row of the report with what identifies its
# episode (pid, backend start, start of the silence) and what it promises.
# now() is the sampling query's start, before the report is computed: a
# deadline before it had passed when the row was made.
REPORT_SQL = '''
SELECT r.pid, extract(epoch FROM a.backend_start)::float8,
       extract(epoch FROM r.silent_since)::float8, r.silent_reason, r.rule,
       extract(epoch FROM r.deadline)::float8, r.action, r.enforced,
       r.client_link, r.blocked_total, extract(epoch FROM now())::float8 AS sampled_at
FROM idle_guard_report() r LEFT JOIN pg_stat_activity a ON a.pid = r.pid
WHERE r.pid IS NOT NULL'''

# How the holder takes its lock, and how a waiter waits on it.  {k} is the
# client's number.
LOCKS = {
    'row': ('UPDATE soak_rows SET v = v + 1 WHERE id = {k}',
            'UPDATE soak_rows SET v = v + 1 WHERE id = {k}'),
    'relation': ('SELECT count(*) FROM soak_t{k}',
                 'BEGIN; LOCK TABLE soak_t{k} IN ACCESS EXCLUSIVE MODE; COMMIT'),
    'advisory': ('SELECT pg_advisory_xact_lock(100000 + {k})',
                 'SELECT pg_advisory_xact_lock(100000 + {k})'),
}

NOW_SQL = 'SELECT extract(epoch FROM clock_timestamp())::float8'


class Policy:
    """The policy in force as the clients believe it (seconds).  The main
    thread changes it at a reload; the oracle does not trust it, it uses
    the reload log."""

    def __init__(self, blocking, idle):
        self.lock = threading.Lock()
        self.blocking = blocking
        self.idle = idle

    def get(self):
        with self.lock:
            return self.blocking, self.idle

    def set(self, blocking, idle):
        with self.lock:
            self.blocking, self.idle = blocking, idle


class Log:
    """Thread-safe line logs (JSON lines), flushed as they come."""

    def __init__(self, out):
        self.lock = threading.Lock()
        self.files = {name: open(os.path.join(out, name + '.jsonl'), 'w')
                      for name in ('sessions', 'episodes', 'errors', 'samples')}

    def write(self, name, rec):
        with self.lock:
            f = self.files[name]
            f.write(json.dumps(rec) + '\n')
            f.flush()

    def close(self):
        for f in self.files.values():
            f.close()


def is_termination(err):
    """True when a psycopg2 error means the server ended the connection."""
    if getattr(err, 'pgcode', None) == '57P01':
        return True
    text = str(err)
    return ('terminating connection' in text or
            'server closed the connection' in text or
            'connection already closed' in text)


class Session:
    """One connection, with its identity (pid + backend start) logged."""

    def __init__(self, ctx, client, kind, user=ROLE, app=None):
        self.ctx = ctx
        self.client = client
        self.kind = kind
        self.t_connect = time.time()
        self.conn = psycopg2.connect(host='127.0.0.1', port=ctx.port,
                                     dbname='postgres', user=user,
                                     application_name=app or f'soak_c{client}',
                                     connect_timeout=20)
        self.conn.autocommit = True
        self.user = user
        self.app = app or f'soak_c{client}'
        with self.conn.cursor() as cur:
            cur.execute('SELECT pg_backend_pid(), extract(epoch FROM backend_start)::float8 '
                        'FROM pg_stat_activity WHERE pid = pg_backend_pid()')
            self.pid, self.backend_start = cur.fetchone()
        self.sid = f'{self.pid}@{self.backend_start:.6f}'
        self.killed_at = None
        self.kill_msg = None
        self.closed = False

    def execute(self, sql, fetch=False):
        """Run sql (may be several statements); return the first column of
        the last result row when fetch.  A termination by the server is
        noted and re-raised as Terminated."""
        try:
            with self.conn.cursor() as cur:
                cur.execute(sql)
                if fetch:
                    return cur.fetchone()[0]
                return None
        except (psycopg2.OperationalError, psycopg2.InterfaceError,
                psycopg2.errors.AdminShutdown) as e:
            if is_termination(e) or self.conn.closed:
                self.killed_at = time.time()
                self.kill_msg = str(e).strip().splitlines()[0] if str(e).strip() else 'closed'
                self.close()
                raise Terminated(self) from e
            raise

    def disconnect(self):
        """Close the connection itself (errors ignored)."""
        try:
            self.conn.close()
        except Exception:
            pass

    def close(self):
        if self.closed:
            return
        self.closed = True
        t_end = time.time()
        self.disconnect()
        self.ctx.log.write('sessions', {
            'sid': self.sid, 'pid': self.pid, 'backend_start': self.backend_start,
            'client': self.client, 'kind': self.kind, 'user': self.user,
            'app': self.app, 't_connect': self.t_connect, 't_end': t_end,
            'killed_at': self.killed_at, 'kill_msg': self.kill_msg})


class Terminated(Exception):
    """The server ended a session (its Session has the details)."""

    def __init__(self, session):
        super().__init__(session.kill_msg)
        self.session = session


class WireError(Exception):
    """The server sent an ErrorResponse below FATAL (the session lives)."""


class WireClosed(Exception):
    """The server ended the connection: a FATAL, end of file or a reset."""


class Wire:
    """A minimal PostgreSQL frontend speaking protocol 3.0 over a TCP socket
    of its own: trust authentication and the simple query protocol, no
    more.  Every message but the startup packet is a type byte, an Int32
    length (of itself and the body) and the body, big-endian.  Every read
    has a deadline (the socket's timeout), so nothing here hangs."""

    def __init__(self, port, user, app, rcvbuf=None, timeout=20.0):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            # before connect(): the window scale is chosen at the handshake
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect(('127.0.0.1', port))
        self.port = self.sock.getsockname()[1]
        self.buf = bytearray()
        body = struct.pack('!I', 3 << 16)
        for k, v in (('user', user), ('database', 'postgres'), ('application_name', app)):
            body += k.encode() + b'\0' + v.encode() + b'\0'
        body += b'\0'
        self.sock.sendall(struct.pack('!I', len(body) + 4) + body)
        self.pid = None
        while True:
            t, m = self.read_message(time.time() + timeout)
            if t == b'R' and struct.unpack('!I', m[:4])[0] != 0:
                raise RuntimeError('the server asks for a password (trust expected)')
            if t == b'K':
                self.pid = struct.unpack('!I', m[:4])[0]
            if t == b'E':
                raise WireClosed(self.error_text(m))
            if t == b'Z':
                return

    @staticmethod
    def error_text(m):
        """'SEVERITY SQLSTATE: message' of an ErrorResponse body."""
        f = {}
        for part in bytes(m).split(b'\0'):
            if part:
                f[chr(part[0])] = part[1:].decode(errors='replace')
        return f"{f.get('V', f.get('S', '?'))} {f.get('C', '?')}: {f.get('M', '')}"

    def _fill(self, deadline):
        left = deadline - time.time()
        if left <= 0:
            raise TimeoutError('no answer from the server in time')
        self.sock.settimeout(left)
        try:
            data = self.sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError) as e:
            raise WireClosed(f'connection reset ({e.strerror})') from e
        except socket.timeout as e:
            raise TimeoutError('no answer from the server in time') from e
        if not data:
            raise WireClosed('server closed the connection')
        self.buf += data

    def read_message(self, deadline):
        """(type, body) of the next message."""
        while len(self.buf) < 5:
            self._fill(deadline)
        n = struct.unpack('!I', self.buf[1:5])[0]
        while len(self.buf) < n + 1:
            self._fill(deadline)
        t, m = bytes(self.buf[:1]), self.buf[5:n + 1]
        del self.buf[:n + 1]
        return t, m

    def send_query(self, sql):
        q = sql.encode() + b'\0'
        try:
            self.sock.sendall(b'Q' + struct.pack('!I', len(q) + 4) + q)
        except (ConnectionResetError, BrokenPipeError) as e:
            raise WireClosed(f'connection reset ({e.strerror})') from e

    def read_result(self, deadline):
        """Read up to ReadyForQuery; return the first column of the last
        row (text), or None.  An error below FATAL raises WireError after
        ReadyForQuery, a FATAL (or the end of the connection) WireClosed."""
        last = None
        error = None
        while True:
            t, m = self.read_message(deadline)
            if t == b'D':
                ncols = struct.unpack('!H', m[:2])[0]
                if ncols:
                    ln = struct.unpack('!i', m[2:6])[0]
                    last = None if ln < 0 else bytes(m[6:6 + ln]).decode()
            elif t == b'E':
                text = self.error_text(m)
                if text.startswith(('FATAL', 'PANIC')):
                    raise WireClosed(text)
                error = text
            elif t == b'Z':
                if error:
                    raise WireError(error)
                return last

    def close(self, reset=False):
        """Close; with reset, at once with an RST (SO_LINGER 0), else with
        a Terminate message first."""
        try:
            if reset:
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                     struct.pack('ii', 1, 0))
            else:
                self.sock.sendall(b'X' + struct.pack('!I', 4))
        except OSError:
            pass
        self.sock.close()


class RawSession(Session):
    """A Session over Wire instead of psycopg2, logged the same way; it
    knows its own client port (for the firewall)."""

    def __init__(self, ctx, client, kind, user=ROLE, app=None, rcvbuf=None):
        self.ctx = ctx
        self.client = client
        self.kind = kind
        self.t_connect = time.time()
        self.user = user
        self.app = app or f'soak_r{client}'
        self.conn = Wire(ctx.port, user, self.app, rcvbuf=rcvbuf)
        self.port = self.conn.port
        self.pid = self.conn.pid
        self.killed_at = None
        self.kill_msg = None
        self.closed = False
        self.reset_on_close = False
        # provisional, in case the server ends the session at once
        self.backend_start = self.t_connect
        self.sid = f'{self.pid}@{self.backend_start:.6f}'
        self.backend_start = float(self.execute(
            'SELECT extract(epoch FROM backend_start)::float8 FROM pg_stat_activity '
            'WHERE pid = pg_backend_pid()', fetch=True))
        self.sid = f'{self.pid}@{self.backend_start:.6f}'

    def execute(self, sql, fetch=False, timeout=20.0):
        """As Session.execute; the value is text."""
        self.send(sql)
        return self.wait_result(timeout, fetch)

    def send(self, sql):
        """Send a query, read nothing."""
        try:
            self.conn.send_query(sql)
        except WireClosed as e:
            self.ended(e)

    def wait_result(self, timeout, fetch=False):
        """Read the result of the query sent (see Wire.read_result)."""
        try:
            v = self.conn.read_result(time.time() + timeout)
        except WireClosed as e:
            self.ended(e)
        return v if fetch else None

    def ended(self, e):
        """The server ended the session: note it, raise Terminated."""
        self.killed_at = time.time()
        self.kill_msg = str(e)
        self.close()
        raise Terminated(self) from e

    def disconnect(self):
        self.conn.close(reset=self.reset_on_close)


class Waiter:
    """A second connection of a client that sends one statement expected
    to wait on the client's holder, in a thread of its own."""

    def __init__(self, session, sql):
        self.session = session
        self.sql = sql
        self.t_sent = None
        self.t_done = None
        self.error = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self):
        self.t_sent = time.time()
        self.thread.start()

    def _run(self):
        try:
            self.session.execute(self.sql)
        except Exception as e:  # reported by the client thread
            self.error = f'{type(e).__name__}: {e}'.strip()
        self.t_done = time.time()

    def join(self, timeout):
        self.thread.join(timeout)
        return not self.thread.is_alive()


class Firewall:
    """The soak's nftables table: drops every packet between the server's
    port and each client port in the set "severed", both ways, in the
    input hook (on loopback each packet passes it once).  Only in a network
    namespace of the soak's own, which soak.sh makes for the run: not the
    one soak.sh started in (outer_netns, as /proc/self/ns/net names it),
    nor pid 1's when that can be read.  So the host's firewall is never
    touched, and the table dies with the namespace even if the driver is
    killed; close() deletes it anyway."""

    TABLE = 'idle_guard_soak'

    def __init__(self, server_port, outer_netns):
        mine = os.readlink('/proc/self/ns/net')
        try:
            host = os.readlink('/proc/1/ns/net')
        except OSError:
            host = None
        if not outer_netns or mine in (outer_netns, host):
            raise RuntimeError(f'--sever: not in a network namespace of the soak\'s own ({mine}; '
                               'test/soak/soak.sh makes one): the firewall is left alone')
        self.lock = threading.Lock()
        self.nft(f"""add table inet {self.TABLE}
add set inet {self.TABLE} severed {{ type inet_service; }}
add chain inet {self.TABLE} in {{ type filter hook input priority 0; }}
add rule inet {self.TABLE} in tcp sport {server_port} tcp dport @severed drop
add rule inet {self.TABLE} in tcp dport {server_port} tcp sport @severed drop
""")
        self.open = True

    def nft(self, script):
        """Run an nft script (one transaction); raise on failure."""
        with self.lock:
            p = subprocess.run(['nft', '-f', '-'], input=script, text=True,
                               capture_output=True, timeout=20)
        if p.returncode != 0:
            raise RuntimeError(f'nft failed: {p.stderr.strip()} (script: {script.strip()})')

    def sever(self, port):
        self.nft(f'add element inet {self.TABLE} severed {{ {port} }}\n')

    def heal(self, port):
        self.nft(f'delete element inet {self.TABLE} severed {{ {port} }}\n')

    def close(self):
        if self.open:
            self.open = False
            self.nft(f'delete table inet {self.TABLE}\n')


class Sampler(threading.Thread):
    """Reads idle_guard_report() every SAMPLE_EVERY seconds, on a
    connection of its own, until stopped (at the latest at `until`), and
    logs each sample: its time (the server's now()) and every row, for the
    oracle's check that the worker keeps what the report promises."""

    def __init__(self, ctx, until):
        super().__init__(daemon=True)
        self.ctx = ctx
        self.until = until
        self.stop = threading.Event()
        self.samples = 0
        self.rows = 0
        self.failed = None

    def run(self):
        try:
            conn = admin_connect(self.ctx.port, 'soak_sampler')
            while not self.stop.is_set() and time.time() < self.until:
                t0 = time.time()
                rows = q(conn, REPORT_SQL)
                if rows:
                    self.ctx.log.write('samples', {'t': rows[0][-1],
                                                   'rows': [list(r[:-1]) for r in rows]})
                else:
                    t = q(conn, 'SELECT extract(epoch FROM now())::float8')[0][0]
                    self.ctx.log.write('samples', {'t': t, 'rows': []})
                self.samples += 1
                self.rows += len(rows)
                self.stop.wait(max(0.0, SAMPLE_EVERY - (time.time() - t0)))
            conn.close()
        except Exception as e:
            self.failed = f'{type(e).__name__}: {e}'
            self.ctx.log.write('errors', {'client': 0, 'at': time.time(),
                                          'what': 'sampler: ' + self.failed})


class Client(threading.Thread):
    """One client: plays random scenarios until the run's end."""

    def __init__(self, ctx, k):
        super().__init__(daemon=True)
        self.ctx = ctx
        self.k = k
        self.rng = random.Random(ctx.seed * 1000 + k)
        self.holder = None
        self.waiter_session = None
        self.episodes = 0
        self.failed = None

    # -- helpers --

    def sleep_until(self, t):
        """Sleep until the clock reads t (bounded by the scenario itself)."""
        d = t - time.time()
        if d > 0:
            time.sleep(d)

    def get_holder(self, user=ROLE, app=None):
        if user != ROLE or app is not None:
            return Session(self.ctx, self.k, 'holder', user=user, app=app)
        if self.holder is None or self.holder.closed:
            self.holder = Session(self.ctx, self.k, 'holder')
        return self.holder

    def get_waiter_session(self):
        if self.waiter_session is None or self.waiter_session.closed:
            self.waiter_session = Session(self.ctx, self.k, 'waiter',
                                          app=f'soak_w{self.k}')
        return self.waiter_session

    def episode(self, sess, scenario, start, end, **kw):
        rec = {'sid': sess.sid, 'pid': sess.pid, 'client': self.k,
               'scenario': scenario, 'S': start, 'E': end}
        rec.update(kw)
        self.ctx.log.write('episodes', rec)
        self.episodes += 1

    def finish_waiter(self, w, what):
        """Wait for a waiter to get its lock (the holder has ended)."""
        if w is None:
            return
        if not w.join(30):
            raise RuntimeError(f'client {self.k}: waiter still waiting 30 s after '
                               f'the holder ended ({what})')
        if w.error:
            self.ctx.log.write('errors', {'client': self.k, 'at': time.time(),
                                          'what': f'waiter ({what}): {w.error}'})

    # -- the scenarios --

    def run_scenario(self, name):
        B, I = self.ctx.policy.get()
        r = self.rng
        lockkind = r.choice(list(LOCKS))
        take, wait = (s.format(k=self.k) for s in LOCKS[lockkind])

        if name == 'short':
            s = self.get_holder()
            s.execute(f'BEGIN; {take}; COMMIT')
            time.sleep(r.uniform(0.05, 0.5))
            return

        if name == 'quiet_nolock':
            s = self.get_holder()
            S = s.execute(f'BEGIN; SELECT 1; {NOW_SQL}', fetch=True)
            self.silent(s, name, S, S + r.uniform(0.5, I + 2.0), locks=False)
            return

        if name == 'aborted':
            s = self.get_holder()
            try:
                s.execute(f'BEGIN; {take}; SELECT 1/0')
            except psycopg2.errors.DivisionByZero:
                pass
            S = time.time()
            self.silent(s, name, S, S + r.uniform(1.0, I + 2.0), locks=False,
                        aborted=True, lock=lockkind, rollback=True)
            return

        if name == 'holder_idle':
            s = self.get_holder()
            S = s.execute(f'BEGIN; {take}; {NOW_SQL}', fetch=True)
            if r.random() < 0.5:
                mode, length = 'before', r.uniform(0.3, I - 1.0)
            else:
                mode, length = 'after', I + r.uniform(1.2, 2.5)
            self.silent(s, name, S, S + length, locks=True, lock=lockkind, mode=mode)
            return

        if name in ('holder_blocking', 'exempt', 'reported'):
            why = None
            if name == 'exempt':
                if r.random() < 0.5:
                    s = self.get_holder(user=EXEMPT_ROLE)
                    why = 'role'
                else:
                    s = self.get_holder(app=f'{EXEMPT_APP_PREFIX}{self.k}')
                    why = 'application'
            elif name == 'reported':
                s = self.get_holder(user=REPORT_ROLE)
            else:
                s = self.get_holder()
            try:
                S = s.execute(f'BEGIN; {take}; {NOW_SQL}', fetch=True)
                w_off = r.uniform(0.0, B + 1.5) if name != 'exempt' else 0.2
                D = S + max(B, w_off)
                mode = r.choice(['before', 'near', 'after', 'after']) \
                    if name != 'exempt' else 'after'
                if mode == 'before':
                    E = max(D - r.uniform(0.4, 1.2), S + 0.2)
                elif mode == 'near':
                    E = D + r.uniform(-0.15, 0.15)
                else:
                    E = D + r.uniform(1.2, 2.5)
                if name == 'exempt' and r.random() < 0.5:
                    E = S + I + r.uniform(1.0, 2.0)  # past idle_timeout too
                w = None
                if S + w_off < E:
                    self.sleep_until(S + w_off)
                    w = Waiter(self.get_waiter_session(), wait)
                    w.start()
                self.silent(s, name, S, E, locks=True, lock=lockkind, mode=mode,
                            waiter_at=w.t_sent if w else None, exempt=why,
                            report=(name == 'reported'),
                            after_wake=lambda: self.finish_waiter(w, name))
            finally:
                if s is not self.holder:
                    s.close()
            return

        if name == 'active':
            s = self.get_holder()
            w = Waiter(self.get_waiter_session(), wait)
            S = time.time()
            t = threading.Timer(0.3, w.start)
            t.start()
            try:
                s.execute(f'BEGIN; {take}; SELECT pg_sleep({B + 1.0:.3f}); COMMIT')
                E = time.time()
                self.episode(s, name, S, E, locks=True, lock=lockkind, active=True,
                             waiter_at=w.t_sent)
            except Terminated:
                self.episode(s, name, S, s.killed_at, locks=True, lock=lockkind,
                             active=True, waiter_at=w.t_sent, killed=True)
            t.join()
            self.finish_waiter(w, name)
            return

        if name == 'twostep':
            s = self.get_holder()
            S = s.execute(f'BEGIN; {take}; {NOW_SQL}', fetch=True)
            self.sleep_until(S + 0.2)
            w = Waiter(self.get_waiter_session(), wait)
            w.start()
            # first silence: wake well before the blocking deadline
            E1 = S + max(B - 0.8, 0.5)
            self.sleep_until(E1)
            try:
                S2 = s.execute(NOW_SQL, fetch=True)
            except Terminated:
                self.episode(s, name, S, E1, locks=True, lock=lockkind, mode='before',
                             waiter_at=w.t_sent, step=1, killed=True)
                self.finish_waiter(w, name)
                return
            self.episode(s, name, S, E1, locks=True, lock=lockkind, mode='before',
                         waiter_at=w.t_sent, step=1)
            # second silence, judged from its own start, waiter already there
            if r.random() < 0.5:
                mode, E2 = 'before', S2 + max(B - 0.8, 0.5)
            else:
                mode, E2 = 'after', S2 + B + r.uniform(1.2, 2.0)
            self.silent(s, name, S2, E2, locks=True, lock=lockkind, mode=mode,
                        waiter_at=w.t_sent, step=2,
                        after_wake=lambda: self.finish_waiter(w, name))
            return

        if name == 'not_reading':
            # A live client that stops reading a large result for longer
            # than unreachable_timeout, then reads it to the end and
            # commits, or closes.  It holds a lock nobody waits on and its
            # silence ends before idle_timeout: it must not be touched, by
            # the unreachable rule least of all (its kernel answers the
            # zero-window probes, if rate-limited).
            U = self.ctx.unreachable
            s = RawSession(self.ctx, self.k, 'holder', app=f'soak_n{self.k}',
                           rcvbuf=RCVBUF_NOT_READING)
            try:
                s.execute(f'BEGIN; {take}')
                s.send(BIG_RESULT)
                S = time.time()  # the backend blocks in ClientWrite from about now
                E = S + r.uniform(U + 0.5, max(U + 0.5, min(U + 2.5, I - 1.5)))
                self.sleep_until(E)
                t_wake = time.time()
                mode = r.choice(['resumes', 'closes'])
                killed = False
                if mode == 'resumes':
                    try:
                        s.wait_result(60)
                        s.execute('COMMIT')
                    except Terminated:
                        killed = True
                self.episode(s, name, S, t_wake, killed=killed, locks=True, lock=lockkind,
                             mode=mode, not_reading=True)
            finally:
                s.close()
            return

        if name == 'severed':
            # A client whose packets are dropped both ways (a partition, a
            # host gone) while it is silent holding a lock nobody waits on,
            # from a moment after its silence began.  The unreachable rule
            # must end it: its deadline is max(last ACK, start of silence)
            # + unreachable_timeout, and the last ACK came before the cut.
            # The client waits past that, naptime and SEVER_MARGIN, heals
            # the link and sends COMMIT: a backend still there commits, one
            # that was ended answers with its FATAL or a reset.  Its silence
            # ends before idle_timeout, so no other rule may end it.
            U = self.ctx.unreachable
            s = RawSession(self.ctx, self.k, 'holder', app=f'soak_s{self.k}')
            s.reset_on_close = True  # the server's side must not linger
            try:
                S = float(s.execute(f'BEGIN; {take}; {NOW_SQL}', fetch=True))
                self.sleep_until(S + r.uniform(0.3, 1.0))
                self.ctx.firewall.sever(s.port)
                C = time.time()
                try:
                    self.sleep_until(max(S, C) + U + self.ctx.naptime + SEVER_MARGIN)
                finally:
                    self.ctx.firewall.heal(s.port)
                E = time.time()
                killed = False
                try:
                    s.execute('COMMIT', timeout=15)
                except Terminated:
                    killed = True
                except TimeoutError:
                    killed = None
                    self.ctx.log.write('errors', {'client': self.k, 'at': time.time(),
                                                  'what': f'severed pid {s.pid}: no answer '
                                                          '15 s after the link was healed'})
                self.episode(s, name, S, E, killed=killed, locks=True, lock=lockkind,
                             severed=True, cut_at=C)
            finally:
                s.close()
            return

        raise ValueError(name)

    def silent(self, s, name, S, E, rollback=False, after_wake=None, **kw):
        """Keep s silent until E, then end its transaction; log the
        episode, and whether the server had ended the session."""
        self.sleep_until(E)
        t_wake = time.time()
        killed = False
        try:
            s.execute('ROLLBACK' if rollback else 'COMMIT')
        except Terminated:
            killed = True
        self.episode(s, name, S, t_wake, killed=killed, **kw)
        if after_wake:
            after_wake()

    def run(self):
        names = [n for n in SCENARIOS if n != 'severed' or self.ctx.firewall]
        weights = [SCENARIOS[n] for n in names]
        try:
            # spread the clients' starts over the first 2 s
            time.sleep(self.rng.uniform(0, 2.0))
            while time.time() < self.ctx.stop_at:
                name = self.rng.choices(names, weights)[0]
                try:
                    self.run_scenario(name)
                except Terminated:
                    pass  # logged by the Session; the next scenario reconnects
        except Exception as e:
            self.failed = f'{type(e).__name__}: {e}'
            self.ctx.log.write('errors', {'client': self.k, 'at': time.time(),
                                          'what': self.failed})
        finally:
            for s in (self.holder, self.waiter_session):
                if s is not None:
                    s.close()


class Context:
    def __init__(self, args, log):
        self.port = args.port
        self.seed = args.seed
        self.log = log
        self.policy = Policy(args.blocking_ms / 1000.0, args.idle_ms / 1000.0)
        self.unreachable = args.unreachable_ms / 1000.0
        self.naptime = args.naptime_ms / 1000.0
        self.firewall = None
        self.stop_at = None


def admin_connect(port, app='soak_admin'):
    conn = psycopg2.connect(host='127.0.0.1', port=port, dbname='postgres',
                            user='postgres', application_name=app,
                            connect_timeout=20)
    conn.autocommit = True
    return conn


def q(conn, sql, *params):
    with conn.cursor() as cur:
        cur.execute(sql, params)
        return cur.fetchall() if cur.description else None


def worker_rss_kb(conn):
    """(worker pid, RssAnon in kB) of the idle_guard worker."""
    pid = q(conn, 'SELECT worker_pid FROM idle_guard_stats()')[0][0]
    if pid is None:
        return None, None
    with open(f'/proc/{pid}/status') as f:
        for line in f:
            if line.startswith('RssAnon:'):
                return pid, int(line.split()[1])
    return pid, None


def wait_until(pred, seconds, what):
    end = time.time() + seconds
    while time.time() < end:
        if pred():
            return
        time.sleep(0.05)
    raise RuntimeError(f'timed out after {seconds}s waiting for {what}')


def setup(conn, clients):
    q(conn, 'CREATE EXTENSION IF NOT EXISTS idle_guard')
    roles = (ROLE, EXEMPT_ROLE, REPORT_ROLE)
    for role in roles:
        q(conn, f'CREATE ROLE {role} LOGIN')
    q(conn, f"ALTER ROLE {REPORT_ROLE} SET idle_guard.action = 'report'")
    q(conn, 'CREATE TABLE soak_rows (id int PRIMARY KEY, v int NOT NULL)')
    q(conn, 'INSERT INTO soak_rows SELECT g, 0 FROM generate_series(1, %s) g', clients)
    q(conn, f"GRANT ALL ON soak_rows TO {', '.join(roles)}")
    for k in range(1, clients + 1):
        q(conn, f'CREATE TABLE soak_t{k} (a int); INSERT INTO soak_t{k} VALUES (1);'
                f"GRANT ALL ON soak_t{k} TO {', '.join(roles)}")


def reload_policy(conn, ctx, blocking_ms, idle_ms):
    """ALTER SYSTEM + pg_reload_conf(); returns the reload's log entry with
    the window [t_asked, t_applied] in which the worker switched."""
    q(conn, f"ALTER SYSTEM SET idle_guard.blocking_timeout = '{blocking_ms}ms'")
    q(conn, f"ALTER SYSTEM SET idle_guard.idle_timeout = '{idle_ms}ms'")
    ctx.policy.set(blocking_ms / 1000.0, idle_ms / 1000.0)
    t_asked = time.time()
    q(conn, 'SELECT pg_reload_conf()')
    # the worker sweeps at once after a reload, with the new values
    wait_until(lambda: q(conn, 'SELECT extract(epoch FROM last_sweep_at)::float8 > %s '
                               'FROM idle_guard_stats()', t_asked)[0][0],
               60, 'a sweep after the reload')
    t_applied = time.time()
    return {'t_asked': t_asked, 't_applied': t_applied,
            'blocking': blocking_ms / 1000.0, 'idle': idle_ms / 1000.0}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--port', type=int, required=True)
    ap.add_argument('--duration', type=float, default=300)
    ap.add_argument('--clients', type=int, default=120)
    ap.add_argument('--out', required=True)
    ap.add_argument('--blocking-ms', type=int, default=2500)
    ap.add_argument('--idle-ms', type=int, default=8000)
    ap.add_argument('--naptime-ms', type=int, default=200)
    ap.add_argument('--unreachable-ms', type=int, default=3000)
    ap.add_argument('--sever', metavar='OUTER_NETNS',
                    help='play the severed scenario (nftables); the driver must run in a '
                         'network namespace other than OUTER_NETNS (as /proc/self/ns/net '
                         'names it), which soak.sh makes')
    ap.add_argument('--seed', type=int, default=int(time.time()))
    args = ap.parse_args()

    log = Log(args.out)
    ctx = Context(args, log)
    conn = admin_connect(args.port)
    setup(conn, args.clients)
    wait_until(lambda: q(conn, 'SELECT worker_pid IS NOT NULL FROM idle_guard_stats()')[0][0],
               30, 'the worker')
    worker0, rss0 = worker_rss_kb(conn)
    if args.sever:
        ctx.firewall = Firewall(args.port, args.sever)
    try:
        return run(args, ctx, conn, log, worker0, rss0)
    finally:
        if ctx.firewall:
            ctx.firewall.close()


def run(args, ctx, conn, log, worker0, rss0):
    """Run the clients, the sampler and the reloads; dump what the
    oracle needs."""
    # Every scenario lasts less than idle timeout + 6 s; then give up.
    longest = (args.idle_ms + 1000) / 1000.0 + 30
    t_start = time.time()
    ctx.stop_at = t_start + args.duration
    sampler = Sampler(ctx, ctx.stop_at + longest)
    sampler.start()
    clients = [Client(ctx, k) for k in range(1, args.clients + 1)]
    for c in clients:
        c.start()
    print(f'soak: {args.clients} clients started (seed {args.seed}), '
          f'running for {args.duration:.0f} s'
          + ('' if ctx.firewall else ' (without the severed scenario)'), flush=True)

    # Two reloads with a changed policy, at about 1/3 and 2/3 of the run;
    # the worker's memory after a warm-up of a tenth of the run, but at
    # least 20 s when the run is long enough (at most 3/10 of it).
    warm = min(max(0.1, 20.0 / args.duration), 0.3)
    plan = [(warm, 'rss', None),
            (0.35, 'reload', (args.blocking_ms + 1000, args.idle_ms - 1000)),
            (0.7, 'reload', (max(args.blocking_ms - 500, 1000), args.idle_ms + 1000))]
    reloads = []
    rss_warm = None
    for frac, what, arg in plan:
        time.sleep(max(0.0, t_start + frac * args.duration - time.time()))
        if what == 'rss':
            rss_warm = worker_rss_kb(conn)[1]
        else:
            r = reload_policy(conn, ctx, *arg)
            reloads.append(r)
            print(f'soak: reloaded blocking_timeout={arg[0]}ms idle_timeout={arg[1]}ms '
                  f'(applied within {1000 * (r["t_applied"] - r["t_asked"]):.0f} ms)',
                  flush=True)
        alive = sum(c.is_alive() for c in clients)
        print(f'soak: t+{time.time() - t_start:.0f}s, {alive} clients running', flush=True)

    for c in clients:
        c.join(max(0.0, ctx.stop_at + longest - time.time()))
    stuck = [c.k for c in clients if c.is_alive()]
    failed = {c.k: c.failed for c in clients if c.failed}
    t_end = time.time()
    # one more sample after the last client: the promises of the end too
    time.sleep(2 * SAMPLE_EVERY)
    sampler.stop.set()
    sampler.join(30)
    if sampler.is_alive() or sampler.failed:
        failed[0] = f'sampler: {sampler.failed or "still running"}'

    worker1, rss1 = worker_rss_kb(conn)
    hist = q(conn, """
        SELECT pid, extract(epoch FROM at)::float8, action, rule,
               extract(epoch FROM silent_for)::float8,
               extract(epoch FROM (record->>'silent_since')::timestamptz)::float8,
               detail, usename, application_name, blocked_total, client_link,
               (record->'client_link'->>'last_ack_recv_ms')::float8
        FROM idle_guard_history()""")
    stats = q(conn, 'SELECT sweeps, reported, terminated, skipped, '
                    'extract(epoch FROM worker_started_at)::float8 FROM idle_guard_stats()')[0]
    conn.close()
    log.close()

    meta = {
        'clients': args.clients, 'duration': args.duration, 'seed': args.seed,
        't_start': t_start, 't_end': t_end,
        'policy0': {'blocking': args.blocking_ms / 1000.0, 'idle': args.idle_ms / 1000.0},
        'naptime': args.naptime_ms / 1000.0,
        'unreachable': args.unreachable_ms / 1000.0,
        'severed_scenario': bool(ctx.firewall),
        'sample_every': SAMPLE_EVERY, 'samples': sampler.samples, 'sample_rows': sampler.rows,
        'reloads': reloads,
        'worker_pid_start': worker0, 'worker_pid_end': worker1,
        'rss_start_kb': rss0, 'rss_warm_kb': rss_warm, 'rss_end_kb': rss1,
        'history': [dict(zip(('pid', 'at', 'action', 'rule', 'silent_for', 'silent_since',
                              'detail', 'usename', 'app', 'blocked_total', 'client_link',
                              'last_ack_recv_ms'), h))
                    for h in hist],
        'stats': dict(zip(('sweeps', 'reported', 'terminated', 'skipped',
                           'worker_started_at'), stats)),
        'stuck_clients': stuck, 'failed_clients': failed,
    }
    with open(os.path.join(args.out, 'meta.json'), 'w') as f:
        json.dump(meta, f, indent=1)
    print(f'soak: clients done after {t_end - t_start:.0f} s '
          f'({len(stuck)} stuck, {len(failed)} failed)', flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
