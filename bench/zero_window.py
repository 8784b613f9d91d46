#!/usr/bin/env python3
#
# bench/zero_window.py -- what the kernel shows of a live peer that stopped
# reading: the zero-window probes, their backoff, and how long the peer's
# ACKs can be apart, as idle_guard's link classification reads them.
#
# Usage: python3 bench/zero_window.py [--seconds S] [--rcvbuf BYTES]
#                                     [--ratelimit MS] [--every MS]
#
#   --seconds S     how long to watch (default 8)
#   --rcvbuf BYTES  the reader's SO_RCVBUF, set before connect (default
#                   4096; 0 = the kernel's default)
#   --ratelimit MS  net.ipv4.tcp_invalid_ratelimit in the namespace
#                   (default: leave it, 500 ms unless changed)
#   --every MS      sampling interval (default 50)
#
# Runs itself in a user and network namespace of its own (unshare, as any
# user), so the sysctl and the sockets touch nothing else.  A sender writes
# without pause to a reader on 127.0.0.1 that never reads; every --every ms
# the sender's socket is read with "ss -tinoH" and one line printed: time
# since the start, the timer (persist = zero-window probes) and its count
# (for persist: probes sent and not answered), backoff, ms since the last
# ACK.  The last lines: the longest time without an ACK while one probe was
# unanswered, and the most probes unanswered at once.  docs/design.md ("The
# client link") quotes a run of it.

import os
import re
import socket
import subprocess
import sys
import threading
import time
import argparse


def parse_args():
    """The command line, checked."""
    p = argparse.ArgumentParser(
        description='the kernel view of a live peer that stopped reading')
    p.add_argument('--seconds', type=float, default=8.0)
    p.add_argument('--rcvbuf', type=int, default=4096)
    p.add_argument('--ratelimit', type=int)
    p.add_argument('--every', type=int, default=50)
    a = p.parse_args()
    if not 1 <= a.seconds <= 600 or a.every < 10 or a.rcvbuf < 0:
        p.error('--seconds 1 to 600, --every at least 10, --rcvbuf >= 0')
    return a


def enter_namespace():
    """Re-run this script in a new user and network namespace, lo up."""
    if os.environ.get('IG_ZW_NETNS'):
        return
    os.environ['IG_ZW_NETNS'] = '1'
    os.environ['PATH'] += ':/usr/sbin:/sbin'
    os.execvp('unshare', ['unshare', '--user', '--net', '--map-root-user',
                          'sh', '-c', 'ip link set lo up && exec "$@"', 'sh',
                          sys.executable] + sys.argv)


def sample(port):
    """(timer, count, backoff, lastack) of the sender's socket, or None."""
    out = subprocess.run(['ss', '-tinoH', 'sport = :%d' % port],
                         capture_output=True, text=True, timeout=5).stdout
    timer = re.search(r'timer:\((\w+),[^,]*,(\d+)\)', out)
    backoff = re.search(r'backoff:(\d+)', out)
    lastack = re.search(r'lastack:(\d+)', out)
    if not out.strip():
        return None
    return (timer.group(1) if timer else '-',
            int(timer.group(2)) if timer else 0,
            int(backoff.group(1)) if backoff else 0,
            int(lastack.group(1)) if lastack else 0)


def main():
    """Set up the sender and the reader, watch, print."""
    a = parse_args()
    enter_namespace()
    if a.ratelimit is not None:
        with open('/proc/sys/net/ipv4/tcp_invalid_ratelimit', 'w') as f:
            f.write('%d\n' % a.ratelimit)
    with open('/proc/sys/net/ipv4/tcp_invalid_ratelimit') as f:
        ratelimit = f.read().strip()

    listener = socket.socket()
    listener.bind(('127.0.0.1', 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    reader = socket.socket()
    if a.rcvbuf:
        reader.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, a.rcvbuf)
    reader.connect(('127.0.0.1', port))
    sender, _ = listener.accept()
    sender.settimeout(a.seconds + 5)

    def pump():
        """Write until the socket blocks for good, or the end."""
        chunk = b'x' * 65536
        try:
            while True:
                sender.sendall(chunk)
        except OSError:
            pass

    threading.Thread(target=pump, daemon=True).start()
    print('# rcvbuf %s, tcp_invalid_ratelimit %s ms, sample every %d ms'
          % (a.rcvbuf or 'default', ratelimit, a.every))
    print('%7s %-8s %5s %7s %8s' % ('t_s', 'timer', 'count', 'backoff',
                                    'lastack'))
    longest_one = 0
    most = 0
    start = time.monotonic()
    while time.monotonic() - start < a.seconds:
        s = sample(port)
        if s is not None:
            timer, count, backoff, lastack = s
            print('%7.2f %-8s %5d %7d %8d' % (time.monotonic() - start, timer,
                                              count, backoff, lastack))
            if timer == 'persist':
                most = max(most, count)
                if count == 1:
                    longest_one = max(longest_one, lastack)
        time.sleep(a.every / 1000.0)
    print('# longest without an ACK with one probe unanswered: %d ms'
          % longest_one)
    print('# most zero-window probes unanswered at once: %d' % most)
    return 0


if __name__ == '__main__':
    sys.exit(main())
