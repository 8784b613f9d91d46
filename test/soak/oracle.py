#!/usr/bin/python3
#
# test/soak/oracle.py -- judge a soak run (test/soak/soak.sh) from its logs.
#
# Usage: oracle.py DIR [--rss-bound-kb N] [--late-grace S]
#
# Reads what test/soak/driver.py wrote into DIR (sessions.jsonl,
# episodes.jsonl, errors.jsonl, meta.json) and decides, for every silence
# a client kept (an "episode"), what idle_guard had to do:
#
#   must      the policy in force made the session due, and the client
#             stayed silent long enough after that (the deadline plus
#             --late-grace) for the worker to act: it must be terminated;
#   must_not  no lock held, aborted, exempt, active, or the client woke
#             (plus a margin for its command to reach the backend) before
#             the earliest moment the session could have been due;
#   either    anything in between: a wake close to the deadline, or a
#             deadline that moved with a reload while the worker was
#             switching.
#
# The due moment follows README's rules: silent since S, holding locks,
# due at S + idle_timeout, or at max(S + blocking_timeout, first waiter)
# while someone waits.  A reload switches the policy at some moment in
# [t_asked, t_applied] of the reload log; the oracle takes both policies as
# possible in that window: the earliest due moment uses whichever is
# stricter, the latest the one that is laxer.
#
# Two scenarios have rules of their own.  A severed client (its packets
# dropped from cut_at on) must be ended by the unreachable rule, between
# S + unreachable_timeout (its deadline is never earlier) and max(S,
# cut_at) + unreachable_timeout + naptime + PROMISE_SLACK (its last ACK
# came before the cut); ended by another rule, or too early, is a wrong
# kill, too late a failure.  A client that stopped reading (not_reading) is
# live: the unreachable rule must never end it, nor anything else, as its
# silence ends before idle_timeout and nobody waits on it.  The unreachable
# rule on any other session is a wrong kill.
#
# The server's side is idle_guard_history() (every action, with pid, time,
# rule, and the silence's start), matched to the sessions by pid and time
# (a session is pid + backend start, so a reused pid is another session),
# and to an episode by the silence's start.  The clients' side is whether
# each session saw itself terminated.
#
# The report's promises, an invariant over the driver's samples of
# idle_guard_report() (samples.jsonl): a row whose deadline has passed
# (deadline < the sample's now()), with enforced and action terminate or
# report, is a promise about its episode (pid, backend start, start of the
# silence), kept by naptime + PROMISE_SLACK after the moment it became
# due: its deadline, if an earlier sample showed the same rule and
# deadline before it passed (the facts held then), else the first sample
# that showed it (a waiter that came late, a reload that moved the
# deadline into the past, evidence that just arrived: it became due
# between two samples).  A terminate promise is broken when a sample taken
# later than that still shows the episode with a passed deadline and
# action terminate; a report promise when the history has no "reported"
# row for the episode by then.  Each sample is judged by the deadline it
# shows, so a reload that moves a deadline makes a new promise, not a
# broken one.  Exempt and "none" rows promise nothing.  Sessions of the
# report role must be reported, never terminated.
#
# Prints a report and exits 1 on any wrong kill, missed action, broken
# promise, or worker RSS growth over --rss-bound-kb between warm-up and
# end; 0 otherwise.

import argparse
import json
import os
import sys

# A wake this long before the earliest due moment cannot be acted on: the
# client's command reaches the backend within it.
WAKE_MARGIN = 0.25
# The waiter is counted as waiting from when it sent its statement, at the
# latest this much later.
WAITER_DELAY = 0.2
# Beyond naptime, how long after a deadline the worker may take to keep
# the report's promise, as the sampler sees it: the signal's delivery, the
# backend's exit (its row leaves the report only once it is gone) and the
# history entry, on a loaded 2-core machine with some 150 clients, where
# a process may wait several hundred milliseconds for a core; and the
# sampler's own query, whose now() precedes the report it reads.
PROMISE_SLACK = 1.5


def load_jsonl(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


class Policies:
    """The policy in force over time: policy0, then each reload's, with
    both possible inside a reload's window."""

    def __init__(self, meta):
        self.p0 = (meta['policy0']['blocking'], meta['policy0']['idle'])
        self.reloads = [(r['t_asked'], r['t_applied'] + 0.05, (r['blocking'], r['idle']))
                        for r in meta['reloads']]

    def at(self, t):
        """The policies that may be in force at t."""
        cur = self.p0
        for t0, t1, p in self.reloads:
            if t < t0:
                return [cur]
            if t < t1:
                return [cur, p]
            cur = p
        return [cur]

    def switched(self, t, late):
        """The one policy in force at t if every reload switched at the
        start (late False) or at the end (late True) of its window."""
        cur = self.p0
        for t0, t1, p in self.reloads:
            if t < (t1 if late else t0):
                return cur
            cur = p
        return cur

    def all(self):
        return [self.p0] + [p for _, _, p in self.reloads]

    def edges(self):
        return [t for t0, t1, _ in self.reloads for t in (t0, t1)]


def due(policy, S, t, waiter):
    """Is a silent lock holder due at t under policy (blocking, idle)?"""
    blocking, idle = policy
    if idle > 0 and t - S >= idle:
        return True
    return blocking > 0 and waiter is not None and t >= waiter and t - S >= blocking


def candidates(ep, pol):
    """The moments at which the episode's due condition may change."""
    S = ep['S']
    w = ep.get('waiter_at')
    cands = {S}
    for b, i in pol.all():
        cands.update((S + b, S + i))
    if w is not None:
        cands.update((w, w + WAITER_DELAY))
    cands.update(t for t in pol.edges() if t > S)
    return sorted(cands)


def explained_due(ep, pol, at):
    """The due moment that best explains an action at `at`: the later of
    the due moments with every reload switching at the start or at the end
    of its window, if not after the action; what lateness is measured
    from."""
    w = ep.get('waiter_at')
    ds = [next((t for t in candidates(ep, pol) if due(pol.switched(t, late), ep['S'], t, w)),
               None) for late in (False, True)]
    ds = [d for d in ds if d is not None]
    if not ds:
        return None
    before = [d for d in ds if d <= at]
    return max(before) if before else min(ds)


def due_moments(ep, pol):
    """(earliest, latest) moment the episode may have become due (None:
    never).  earliest: the stricter policy of a reload window, the waiter
    from when it sent its statement; latest: the laxer policy, the waiter
    WAITER_DELAY later."""
    S = ep['S']
    w = ep.get('waiter_at')
    w_late = w + WAITER_DELAY if w is not None else None
    cands = candidates(ep, pol)
    early = next((t for t in cands if any(due(p, S, t, w) for p in pol.at(t))), None)
    late = next((t for t in cands if all(due(p, S, t, w_late) for p in pol.at(t))), None)
    return early, late


def severed_window(ep, unreachable, naptime):
    """(earliest, latest) moment a severed client's session may be ended
    by the unreachable rule: not before the silence's start plus
    unreachable_timeout, nor later than naptime + PROMISE_SLACK after
    max(start, cut) + unreachable_timeout (its last ACK came before the
    cut)."""
    return (ep['S'] + unreachable - 0.01,
            max(ep['S'], ep['cut_at']) + unreachable + naptime + PROMISE_SLACK)


def classify(ep, pol, grace, unreachable=None, naptime=None):
    """('must' | 'must_not' | 'either', due moment or None, reason); the
    due moment is the earliest one (see due_moments)."""
    if ep.get('severed'):
        early, late = severed_window(ep, unreachable, naptime)
        if ep['E'] > late:
            return 'must', early, 'severed past unreachable_timeout'
        return 'either', early, 'severed, healed early'
    if ep.get('active'):
        return 'must_not', None, 'active query'
    if not ep.get('locks'):
        return 'must_not', None, 'aborted' if ep.get('aborted') else 'holds no lock'
    if ep.get('exempt'):
        return 'must_not', None, 'exempt ' + ep['exempt']
    early, late = due_moments(ep, pol)
    E = ep['E']
    if early is None or E + WAKE_MARGIN < early:
        return 'must_not', early, 'woke before the deadline'
    if late is not None and E > late + grace:
        return 'must', early, 'silent past the deadline'
    return 'either', early, 'woke close to the deadline'


def check_promises(samples, hist, naptime):
    """Judge the report's promises (see the header).  Returns (counts of
    promises by action, the broken ones as lines, count of rows shown with
    enforced false, the longest a terminate promise was seen unkept after
    it became due)."""
    bound = naptime + PROMISE_SLACK
    reported = {}
    for h in hist:
        if h['action'] == 'reported' and h['pid'] is not None:
            since = h['silent_since'] if h['silent_since'] is not None \
                else h['at'] - h['silent_for']
            reported.setdefault(h['pid'], []).append((since, h['at']))
    # every row, by episode (pid, start of the silence), in sample order
    by_episode = {}
    unenforced = 0
    for smp in samples:
        for row in smp['rows']:
            r = dict(zip(('pid', 'backend_start', 'since', 'reason', 'rule', 'deadline',
                          'action', 'enforced', 'link', 'blocked'), row))
            r['t'] = smp['t']
            unenforced += r['enforced'] is False
            if r['since'] is not None:
                by_episode.setdefault((r['pid'], round(r['since'], 6)), []).append(r)
    counts = {'terminate': 0, 'report': 0}
    broken = []
    longest = 0.0
    for (pid, since), rows in by_episode.items():
        shown = []     # [rule, action, deadline, first sample showing it, judged]
        for i, r in enumerate(rows):
            if not (r['enforced'] and r['action'] in counts and r['deadline'] is not None):
                continue
            p = next((x for x in shown if x[0] == r['rule'] and x[1] == r['action']
                      and abs(x[2] - r['deadline']) <= 0.01), None)
            if p is None:
                p = [r['rule'], r['action'], r['deadline'], r['t'], False]
                shown.append(p)
            if r['deadline'] >= r['t'] or p[4]:
                continue  # not passed yet, or judged already
            p[4] = True
            counts[r['action']] += 1
            # due at its deadline if the same promise was shown before it
            # passed, else at the latest when first shown
            ref = p[2] if p[3] <= p[2] else p[3]
            if r['action'] == 'terminate':
                longest = max([longest] + [x['t'] - ref for x in rows[i:]
                                           if x['action'] == 'terminate' and x['enforced']
                                           and x['deadline'] is not None
                                           and x['deadline'] < x['t']])
            later = next((x for x in rows[i + 1:] if x['t'] > ref + bound), None)
            if later is None:
                continue  # the episode ended in time: nothing to hold it to
            what = (f"pid {pid} (backend start {r['backend_start'] or 0:.3f}), silent since "
                    f"{since:.3f}, rule {r['rule']}, deadline {p[2]:.3f} "
                    f"(+{p[2] - since:.3f}s), action {r['action']}, due at {ref:.3f}")
            if r['action'] == 'terminate':
                if later['action'] == 'terminate' and later['enforced'] and \
                        later['deadline'] is not None and later['deadline'] < later['t']:
                    broken.append(f"{what}: still there {later['t'] - ref:.3f}s later "
                                  f"(rule {later['rule']}, link {later['link']})")
            elif not any(abs(s - since) <= 0.002 and at <= ref + bound
                         for s, at in reported.get(pid, [])):
                broken.append(f"{what}: no report in the history by +{bound:.1f}s, "
                              f"still silent {later['t'] - ref:.3f}s later")
    return counts, broken, unenforced, longest


def pct(values, p):
    if not values:
        return None
    v = sorted(values)
    return v[min(len(v) - 1, int(round(p / 100.0 * (len(v) - 1))))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('dir')
    ap.add_argument('--rss-bound-kb', type=int, default=1024)
    ap.add_argument('--late-grace', type=float, default=1.0)
    args = ap.parse_args()

    meta = json.load(open(os.path.join(args.dir, 'meta.json')))
    sessions = load_jsonl(os.path.join(args.dir, 'sessions.jsonl'))
    episodes = load_jsonl(os.path.join(args.dir, 'episodes.jsonl'))
    errors = load_jsonl(os.path.join(args.dir, 'errors.jsonl'))
    samples = load_jsonl(os.path.join(args.dir, 'samples.jsonl'))
    pol = Policies(meta)
    naptime = meta['naptime']
    unreachable = meta.get('unreachable')
    problems = []      # lines explaining each failure
    wrong = []         # wrong kills
    anomalies = []     # odd but not failing on its own

    by_pid = {}
    for s in sessions:
        by_pid.setdefault(s['pid'], []).append(s)
    eps_by_sid = {}
    for ep in episodes:
        eps_by_sid.setdefault(ep['sid'], []).append(ep)
    for lst in eps_by_sid.values():
        lst.sort(key=lambda e: e['S'])

    def session_of(pid, t):
        for s in by_pid.get(pid, []):
            if s['backend_start'] - 0.01 <= t <= s['t_end'] + 1.0:
                return s
        return None

    # Classify every episode
    for ep in episodes:
        ep['class'], ep['due'], ep['why'] = classify(ep, pol, args.late_grace,
                                                     unreachable, naptime)
        ep['actions'] = []

    # Match the history to sessions and episodes
    hist = meta['history']
    acted = [h for h in hist if h['action'] in ('terminated', 'reported')]
    skipped = [h for h in hist if h['action'] == 'skipped']
    for h in hist:
        s = session_of(h['pid'], h['at'])
        h['sid'] = s['sid'] if s else None
        ep = None
        if s is not None:
            since = h['silent_since'] if h['silent_since'] is not None else h['at'] - h['silent_for']
            cands = [e for e in eps_by_sid.get(s['sid'], []) if e['S'] <= since + 0.01]
            ep = cands[-1] if cands else None
            if ep is not None and ep['E'] + 1.0 < since:
                ep = None  # a silence the client did not log
        h['episode'] = ep
        if ep is not None:
            ep['actions'].append(h)
        if h['action'] not in ('terminated', 'reported'):
            continue
        where = (f"pid {h['pid']} at {h['at']:.3f} rule={h['rule']} "
                 f"silent_for={h['silent_for']:.3f}s app={h['app']}")
        if s is None:
            wrong.append(f'{where}: no client session had that pid then')
        elif ep is None:
            wrong.append(f"{where}: a {s['kind']} session, in no logged silence")
        elif h['rule'] == 'unreachable' and not ep.get('severed'):
            wrong.append(f"{where}: {ep['scenario']}: rule unreachable, but nothing cut its "
                         f"client off (link {h['client_link']})")
        elif ep.get('severed') and h['rule'] != 'unreachable':
            wrong.append(f"{where}: a severed client, ended by rule {h['rule']}, "
                         'not unreachable')
        elif ep.get('severed') and h['at'] < severed_window(ep, unreachable, naptime)[0]:
            wrong.append(f"{where}: a severed client, ended {h['at'] - ep['S']:.3f}s into "
                         f'its silence, before unreachable_timeout')
        elif ep.get('report') and h['action'] == 'terminated':
            wrong.append(f"{where}: terminated, but its role's action is report")
        elif ep['class'] == 'must_not':
            wrong.append(f"{where}: {ep['scenario']} ({ep['why']}), woke "
                         f"{ep['E'] - ep['S']:.3f}s into the silence, due "
                         + (f"{ep['due'] - ep['S']:.3f}s" if ep['due'] else 'never'))
        elif h['at'] > ep['E'] + WAKE_MARGIN + 0.5:
            wrong.append(f"{where}: acted {h['at'] - ep['E']:.3f}s after the client woke")
        elif h['rule'] == 'blocking' and ep.get('waiter_at') is None:
            wrong.append(f'{where}: rule blocking, but nobody waited on it')

    # The clients' own view: every termination a client saw must be in the
    # history, and a session the history terminated must have seen it.
    terminated_sids = {h['sid'] for h in hist if h['action'] == 'terminated'}
    for s in sessions:
        if s['killed_at'] is not None and s['sid'] not in terminated_sids:
            wrong.append(f"session {s['sid']} ({s['kind']}, client {s['client']}) saw "
                         f"'{s['kill_msg']}' with no termination in the history")
    for h in hist:
        if h['action'] == 'terminated' and h['sid'] is not None:
            s = next(x for x in sessions if x['sid'] == h['sid'])
            if s['killed_at'] is None:
                anomalies.append(f"pid {h['pid']} terminated at {h['at']:.3f}, "
                                 "but its client did not see it")

    # Missed and late actions
    must = [e for e in episodes if e['class'] == 'must']
    either = [e for e in episodes if e['class'] == 'either']
    must_not = [e for e in episodes if e['class'] == 'must_not']
    missed = []
    lateness = []
    latest = []  # (lateness, episode, history entry)
    unreach_late = []  # severed: the action after its deadline (from the record)
    severed_late = []  # severed: ended after its window
    for e in episodes:
        expected = 'reported' if e.get('report') else 'terminated'
        acts = [h for h in e['actions'] if h['action'] == expected]
        if e['class'] == 'must' and not acts:
            missed.append(f"{e['scenario']} pid {e['pid']} silent {e['E'] - e['S']:.3f}s, "
                          f"due at +{e['due'] - e['S']:.3f}s, killed seen: {e.get('killed')}")
        if e.get('severed'):
            for h in acts[:1]:
                if h['at'] > severed_window(e, unreachable, naptime)[1]:
                    severed_late.append(
                        f"severed pid {e['pid']}: cut at +{e['cut_at'] - e['S']:.3f}s, ended "
                        f"at +{h['at'] - e['S']:.3f}s, later than max(start, cut) + "
                        f"unreachable_timeout + naptime + {PROMISE_SLACK}s")
                if h['rule'] == 'unreachable' and h['last_ack_recv_ms'] is not None:
                    since = h['silent_since'] if h['silent_since'] is not None else e['S']
                    d = max(h['at'] - h['last_ack_recv_ms'] / 1000.0, since) + unreachable
                    unreach_late.append(h['at'] - d)
            continue  # not timed by the idle and blocking rules
        if acts and e['due'] is not None and e['class'] != 'must_not':
            d = explained_due(e, pol, acts[0]['at'])
            lateness.append(acts[0]['at'] - d)
            latest.append((acts[0]['at'] - d, e, acts[0], d))
    late_bound = naptime + 0.5
    late = [x for x in lateness if x > late_bound]
    latest.sort(key=lambda x: -x[0])

    # Bookkeeping of the server
    stats = meta['stats']
    n_term = sum(1 for h in hist if h['action'] == 'terminated')
    if stats['terminated'] != n_term:
        problems.append(f"stats count {stats['terminated']} terminations, "
                        f"the history {n_term} (history_size too small?)")
    n_rep = sum(1 for h in hist if h['action'] == 'reported')
    if stats['reported'] != n_rep:
        problems.append(f"stats count {stats['reported']} reports, "
                        f"the history {n_rep} (history_size too small?)")
    if meta['worker_pid_start'] != meta['worker_pid_end']:
        problems.append(f"the worker changed: pid {meta['worker_pid_start']} at the start, "
                        f"{meta['worker_pid_end']} at the end")
    if meta['stuck_clients']:
        problems.append(f"clients still running at the end: {meta['stuck_clients']}")
    if meta['failed_clients']:
        problems.append(f"clients that failed: {meta['failed_clients']}")
    rss_growth = None
    if meta['rss_warm_kb'] is not None and meta['rss_end_kb'] is not None:
        rss_growth = meta['rss_end_kb'] - meta['rss_warm_kb']
        if rss_growth > args.rss_bound_kb:
            problems.append(f'worker RssAnon grew by {rss_growth} kB after the warm-up '
                            f'(bound {args.rss_bound_kb} kB)')
    if missed:
        problems.append(f'{len(missed)} missed action(s)')
    if wrong:
        problems.append(f'{len(wrong)} wrong kill(s)')
    if severed_late:
        problems.append(f'{len(severed_late)} severed client(s) ended late')
    promises, broken, unenforced, unkept = check_promises(samples, hist, naptime)
    if broken:
        problems.append(f'{len(broken)} broken promise(s) of the report')
    if not samples:
        problems.append('no sample of the report')
    if meta.get('severed_scenario') and not any(e.get('severed') for e in episodes):
        problems.append('no severed client ran')
    if not any(e.get('not_reading') for e in episodes):
        problems.append('no not_reading client ran')

    # What the samples saw of the clients that stopped reading
    seen_by_pid = {}
    for smp in samples:
        for row in smp['rows']:
            seen_by_pid.setdefault(row[0], []).append((smp['t'], row[3], row[8]))
    nr_eps = [e for e in episodes if e.get('not_reading')]
    nr_seen = 0
    nr_links = {}
    for e in nr_eps:
        rows = [x for x in seen_by_pid.get(e['pid'], []) if e['S'] <= x[0] <= e['E']]
        nr_seen += any(reason == 'client not reading' for _, reason, _ in rows)
        for t, _, link in rows:
            nr_links[link] = nr_links.get(link, 0) + 1
            if link == 'unreachable':
                # not a failure unless it was ended (a wrong kill above),
                # but evidence a live client should not produce
                anomalies.append(f"not_reading pid {e['pid']} ({e['mode']}) shown unreachable "
                                 f"{t - e['S']:.3f}s into its pause of {e['E'] - e['S']:.3f}s")

    # Report
    holders = [s for s in sessions if s['kind'] == 'holder']
    by_scen = {}
    for e in episodes:
        d = by_scen.setdefault(e['scenario'], {'must': 0, 'must_not': 0, 'either': 0,
                                               'acted': 0, 'reported': 0})
        d[e['class']] += 1
        d['acted'] += any(h['action'] == 'terminated' for h in e['actions'])
        d['reported'] += any(h['action'] == 'reported' for h in e['actions'])
    rules = {}
    for h in acted:
        rules[h['rule']] = rules.get(h['rule'], 0) + 1

    def ms(x):
        return '-' if x is None else f'{1000 * x:.0f} ms'

    def sms(x):
        return f'{1000 * x:+.0f} ms'

    p0 = meta['policy0']
    print()
    print(f"Soak: {meta['clients']} clients, {meta['t_end'] - meta['t_start']:.0f} s "
          f"(seed {meta['seed']}), action terminate, naptime {ms(naptime)}")
    print(f"policy: blocking_timeout {p0['blocking']:g}s, idle_timeout {p0['idle']:g}s"
          + ''.join(f"; reload at +{r['t_asked'] - meta['t_start']:.0f}s -> "
                    f"{r['blocking']:g}s/{r['idle']:g}s "
                    f"(applied within {ms(r['t_applied'] - r['t_asked'])})"
                    for r in meta['reloads']))
    print()
    print(f"{'scenario':<16} {'episodes':>8} {'must':>6} {'either':>6} {'must_not':>8} "
          f"{'terminated':>10} {'reported':>8}")
    for name in sorted(by_scen):
        d = by_scen[name]
        print(f"{name:<16} {sum(d[c] for c in ('must', 'either', 'must_not')):>8} "
              f"{d['must']:>6} {d['either']:>6} {d['must_not']:>8} {d['acted']:>10} "
              f"{d['reported']:>8}")
    print()
    print(f'sessions:          {len(sessions)} ({len(holders)} holders, '
          f'{len(sessions) - len(holders)} waiters)')
    print(f'episodes:          {len(episodes)}')
    print(f'expected actions:  {len(must)} must, {len(either)} either way, '
          f'{len(must_not)} must not')
    print(f"actions seen:      {len(acted)} in the history ({', '.join(f'{k} {v}' for k, v in sorted(rules.items()))}), "
          f'{len(skipped)} skipped by the re-check; '
          f"{sum(1 for s in sessions if s['killed_at'])} terminations seen by clients")
    print(f'wrong kills:       {len(wrong)}')
    print(f'missed actions:    {len(missed)}')
    print(f'lateness:          min {ms(min(lateness) if lateness else None)}, '
          f'p50 {ms(pct(lateness, 50))}, p99 {ms(pct(lateness, 99))}, '
          f'max {ms(max(lateness) if lateness else None)} (after the deadline, or after the first '
          f'waiter if later; {len(late)} over naptime + 500 ms)')
    timed = [x for x, e, h, d in latest if e.get('waiter_at') != d]
    polled = [x for x, e, h, d in latest if e.get('waiter_at') == d]
    print(f'  at a deadline:   {len(timed)} actions, p50 {ms(pct(timed, 50))}, '
          f'p99 {ms(pct(timed, 99))}, max {ms(max(timed) if timed else None)}')
    print(f'  at a late waiter: {len(polled)} actions (found by polling every naptime), '
          f'p50 {ms(pct(polled, 50))}, p99 {ms(pct(polled, 99))}, '
          f'max {ms(max(polled) if polled else None)}')
    print(f"worker:            pid {meta['worker_pid_start']} throughout: "
          f"{meta['worker_pid_start'] == meta['worker_pid_end']}; "
          f"{stats['sweeps']} sweeps; RssAnon {meta['rss_start_kb']} kB at the start, "
          f"{meta['rss_warm_kb']} kB after warm-up, {meta['rss_end_kb']} kB at the end")
    for x, e, h, d in latest[:3]:
        print(f"  late by {ms(x)}: {e['scenario']} pid {e['pid']} rule {h['rule']}, "
              f"waiter at {sms(e['waiter_at'] - e['S']) if e.get('waiter_at') else '-'}, "
              f"due at +{ms(d - e['S'])}, acted at +{ms(h['at'] - e['S'])}")
    sev = [e for e in episodes if e.get('severed')]
    sev_unreach = sum(any(h['action'] == 'terminated' and h['rule'] == 'unreachable'
                          for h in e['actions']) for e in sev)
    print(f'severed:           {len(sev)} clients cut off, {sev_unreach} ended by rule '
          f'unreachable, {len(severed_late)} late; after the unreachable deadline '
          f'(last ACK or start of silence, + {unreachable}s): '
          f'p50 {ms(pct(unreach_late, 50))}, max {ms(max(unreach_late) if unreach_late else None)}')
    print(f"not reading:       {len(nr_eps)} clients ("
          f"{sum(e.get('mode') == 'resumes' for e in nr_eps)} resumed, "
          f"{sum(e.get('mode') == 'closes' for e in nr_eps)} closed), "
          f"{nr_seen} seen by the report as 'client not reading', "
          f"{sum(bool(e['actions']) for e in nr_eps)} acted on; their link in the samples: "
          + (', '.join(f'{k} {v}' for k, v in sorted(nr_links.items(), key=str)) or '-'))
    print(f"promises:          {len(samples)} samples of the report, "
          f"{sum(len(x['rows']) for x in samples)} rows; {promises['terminate']} passed "
          f"terminate deadlines (seen unkept at most {ms(unkept)} after due), "
          f"{promises['report']} passed report deadlines; {unenforced} rows not enforced")
    print(f'broken promises: {len(broken)} (each kept within naptime + {PROMISE_SLACK}s of its '
          'deadline, or of the first sample showing it due)')
    print(f'client errors:     {len(errors)}')
    for x in errors[:10]:
        print(f"  client {x['client']}: {x['what']}")
    for title, lst in (('WRONG KILL', wrong), ('MISSED', missed), ('LATE', severed_late),
                       ('BROKEN PROMISE', broken), ('ANOMALY', anomalies),
                       ('FAIL', problems)):
        for x in lst[:30]:
            print(f'{title}: {x}')
    verdict = 'PASS' if not problems else 'FAIL'
    print(f'soak: {verdict}: {len(wrong)} wrong kills, {len(missed)} missed, '
          f'{len(broken)} broken promises, '
          f'{len(must)} must / {len(acted)} acted, RSS growth '
          f"{rss_growth if rss_growth is not None else '?'} kB")
    return 0 if not problems else 1


if __name__ == '__main__':
    sys.exit(main())
