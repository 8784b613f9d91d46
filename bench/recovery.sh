#!/usr/bin/env bash
#
# bench/recovery.sh -- the outage and how fast each contender ends it.
#
#   bash bench/recovery.sh [--rounds N] [--quick]     (default 3 rounds; --quick: 1)
#
# Read/write pgbench traffic (8 clients, 1000 transactions/s, through a
# PgBouncer in transaction pooling mode, as an application would) runs on
# pgbench_accounts.  In each trial:
#   t = -1 s  four harmless sessions go silent in a transaction: two hold a
#             lock nobody waits for (a row lock, a table lock on another
#             table), two hold no lock at all (BEGIN; SELECT 1);
#   t =  0    the culprit runs BEGIN; SELECT ... FROM pgbench_accounts and
#             goes silent, holding its AccessShareLock;
#   t = +1 s  a migration's ALTER TABLE pgbench_accounts ADD COLUMN arrives,
#             queues for its AccessExclusiveLock, and the traffic queues
#             behind it;
#   t = +8 s  end of the window: whoever is still there is ended by the
#             harness, the harmless sessions and the culprit try to speak.
# Every contender has the same limit of 2 s:
#   none        nothing ends the culprit (idle_guard loaded, action off);
#   builtin     idle_in_transaction_session_timeout = 2s;
#   pgbouncer   PgBouncer's idle_transaction_timeout = 2;
#   poller      a script that every second terminates the sessions idle in
#               transaction for more than 2 s (the usual cron/pg_cron job);
#   idle_guard  idle_guard.blocking_timeout = 2s, naptime 1 s (default),
#               idle_timeout 5 min (default), action terminate.
# Contenders run interleaved, their order rotating from round to round.
#
# Recovery time: from the start of the silence to the start of the first
# 100 ms bucket, after the stall, with at least 80% of the baseline commits
# (the median of the buckets before the ALTER).  Collateral kills: harmless
# sessions that lost their connection (their last SELECT failed) plus
# pgbench clients aborted.  Writes bench/results/recovery.csv (one line per
# trial), recovery_tps.csv (commits per 100 ms per trial), recovery_plot.csv
# (median over rounds, one column per contender) and recovery.png.  Talks
# to 127.0.0.1 and a Unix socket only; every wait is bounded.

set -euo pipefail

IG_LOG_PREFIX=recovery
SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
# shellcheck source=scripts/lib.sh
. "$SCRIPT_DIR/../scripts/lib.sh"
# shellcheck source=bench/common.sh
. "$SCRIPT_DIR/common.sh"
bench_parse_rounds "$@"

CONTENDERS=(none builtin pgbouncer poller idle_guard)
LIMIT_S=2         # every contender's limit
WINDOW_S=8        # seconds after the silence that are plotted and judged
ALTER_AFTER_S=1   # the ALTER arrives this long after the silence
TPS=1000          # pgbench --rate
PGB_PORT=55410    # our PgBouncer (the cluster takes the first free port from 55400)

PIDS=()
BUILD_DIR=
RUN_DIR=
# cleanup: stop every client, PgBouncer and the cluster we started
cleanup() {
	local p
	for p in "${PIDS[@]}"; do
		kill "$p" 2>/dev/null || true
	done
	[ -n "$RUN_DIR" ] && bench_pgbouncer_stop "$RUN_DIR/pgbouncer"
	[ -n "$RUN_DIR" ] && ig_stop_servers_under "$RUN_DIR" "$PG_CONFIG"
	rm -rf "$BUILD_DIR" "$RUN_DIR"
}
trap cleanup EXIT
# a timeout or ^C: leave through the EXIT trap, so nothing is left running
trap 'exit 143' TERM INT

ig_bench_prepare idle_guard_bench pgbouncer gnuplot-nox
ig_port_free "$PGB_PORT" || ig_die "port $PGB_PORT is taken"
ig_start_cluster "$RUN_DIR" "$BINDIR" 55400 "shared_preload_libraries = 'idle_guard'
max_connections = 100
idle_guard.action = 'off'
idle_guard.blocking_timeout = '${LIMIT_S}s'
idle_guard.idle_timeout = '5min'
idle_guard.naptime = '1s'" || ig_die "could not start the cluster"
mkdir -p "$RUN_DIR/pgbouncer"

bench_sql "CREATE EXTENSION idle_guard; CREATE TABLE side (id int PRIMARY KEY, v int);
INSERT INTO side SELECT g, 0 FROM generate_series(1, 10) g;" >/dev/null
"$BINDIR/pgbench" -h "$RUN_DIR" -p "$IG_CLUSTER_PORT" -U postgres -i -s 1 -q postgres \
	>"$RUN_DIR/pgbench_init.log" 2>&1 || ig_die "pgbench -i failed"
cat >"$RUN_DIR/traffic.sql" <<'SQL'
\set aid random(1, 100000)
\set delta random(-5000, 5000)
BEGIN;
UPDATE pgbench_accounts SET abalance = abalance + :delta WHERE aid = :aid;
SELECT abalance FROM pgbench_accounts WHERE aid = :aid;
END;
SQL

# configure CONTENDER: set the server's policy for CONTENDER and reload; a
# new PgBouncer per trial means fresh server connections that read it
configure() {
	local itx=0 action=off
	[ "$1" = builtin ] && itx="${LIMIT_S}s"
	[ "$1" = idle_guard ] && action=terminate
	bench_sql "ALTER SYSTEM SET idle_in_transaction_session_timeout = '$itx'" >/dev/null
	bench_sql "ALTER SYSTEM SET idle_guard.action = '$action'" >/dev/null
	bench_sql "SELECT pg_reload_conf()" >/dev/null
	bench_wait_for "SELECT current_setting('idle_guard.action') = '$action'
		AND current_setting('idle_in_transaction_session_timeout') = '$itx'" 50 ||
		ig_die "the reload did not take effect"
}

# session DIR NAME SQL: a client of PgBouncer named NAME that runs SQL,
# stays silent until the file DIR/speak appears (30 s at most), then runs
# SELECT 'alive' and COMMIT; its output goes to DIR/NAME.out ("alive" in
# it: it was never ended)
session() {
	local dir=$1 name=$2 sql=$3
	{
		printf '%s\n' "$sql"
		for _ in $(seq 1 600); do
			{ [ -e "$dir/speak" ] || [ ! -d "$dir" ]; } && break
			sleep 0.05
		done
		printf '%s\n' "SELECT 'alive'; COMMIT;"
	} 2>/dev/null | timeout 60 "$BINDIR/psql" -X -At \
		"host=127.0.0.1 port=$PGB_PORT user=postgres dbname=postgres application_name=$name" \
		>"$dir/$name.out" 2>&1 &
	PIDS+=("$!")
	SESSIONS+=("$!")
}

# poller UNTIL_US: the polling contender: every second, terminate every
# client session idle in transaction for more than the limit, until UNTIL_US
poller() {
	local until=$1 n=0
	while [ "$(bench_now_us)" -lt "$until" ] && [ "$n" -lt 100 ]; do
		bench_sql "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
			WHERE state = 'idle in transaction' AND backend_type = 'client backend'
			AND state_change < clock_timestamp() - interval '$LIMIT_S s'" >/dev/null || true
		n=$((n + 1))
		sleep 1
	done
}

# buckets SILENCE_EPOCH FILES...: commits per 100 ms from pgbench's
# per-transaction logs, from -1.5 s to +WINDOW_S s around the silence
# (missing buckets as 0); prints "t_s,commits" lines
buckets() {
	local silence=$1
	shift
	cat "$@" | awk -v s="$silence" -v last=$((WINDOW_S * 10 - 1)) '
		$3 ~ /^[0-9]+$/ {
			t = $5 + $6 / 1000000 - s
			i = int((t + 100) * 10) - 1000
			if (i >= -15 && i <= last) n[i]++
		}
		END { for (i = -15; i <= last; i++) printf "%.1f,%d\n", i / 10, n[i] + 0 }'
}

# trial CONTENDER ROUND: one outage; appends to the two CSV files
trial() {
	local c=$1 r=$2 dir t0 silence silence_us alter_us end_us alter_done
	local ended harmless_killed aborted poller_pid='' pgb_pid mig_pid h
	dir="$RUN_DIR/trial_${c}_$r"
	SESSIONS=()
	mkdir -p "$dir"
	configure "$c"
	local timeout_s=0
	[ "$c" = pgbouncer ] && timeout_s=$LIMIT_S
	bench_pgbouncer_start "$RUN_DIR/pgbouncer" "$PGB_PORT" "$timeout_s"

	t0=$(bench_now_us)
	end_us=$((t0 + (3 + WINDOW_S) * 1000000))
	"$BINDIR/pgbench" -h 127.0.0.1 -p "$PGB_PORT" -U postgres -n -c 8 -j 2 -R "$TPS" \
		-T $((3 + WINDOW_S)) -f "$RUN_DIR/traffic.sql" -l --log-prefix="$dir/pgb" postgres \
		>"$dir/pgbench.out" 2>&1 &
	pgb_pid=$!
	PIDS+=("$pgb_pid")
	if [ "$c" = poller ]; then
		# a random phase, as a cron job's would be
		sleep "0.$(printf '%03d' $((RANDOM % 1000)))"
		poller "$end_us" </dev/null >/dev/null 2>&1 &
		poller_pid=$!
		PIDS+=("$poller_pid")
	fi

	bench_sleep_until $((t0 + 1000000))
	session "$dir" harmless_row "BEGIN; SELECT v FROM side WHERE id = 1 FOR UPDATE;"
	session "$dir" harmless_table "BEGIN; SELECT count(*) FROM side;"
	session "$dir" harmless_nolock1 "BEGIN; SELECT 1;"
	session "$dir" harmless_nolock2 "BEGIN; SELECT 1;"
	bench_sleep_until $((t0 + 2000000))
	session "$dir" culprit "BEGIN; SELECT abalance FROM pgbench_accounts WHERE aid = 1;"
	bench_wait_for "SELECT count(*) = 1 FROM pg_stat_activity WHERE application_name = 'culprit'
		AND state = 'idle in transaction'" 50 || ig_die "the culprit did not go silent ($c)"
	silence=$(bench_sql "SELECT extract(epoch FROM state_change) FROM pg_stat_activity
		WHERE application_name = 'culprit'")
	silence_us=$(awk -v s="$silence" 'BEGIN { printf "%.0f", s * 1000000 }')

	bench_sleep_until $((silence_us + ALTER_AFTER_S * 1000000))
	alter_us=$(bench_now_us)
	timeout 60 "$BINDIR/psql" -X -At -q -h "$RUN_DIR" -p "$IG_CLUSTER_PORT" -U postgres \
		-d postgres -c "SET application_name = 'migration'" \
		-c "ALTER TABLE pgbench_accounts ADD COLUMN mig int" \
		-c "SELECT extract(epoch FROM clock_timestamp())" >"$dir/alter.out" 2>&1 &
	mig_pid=$!
	PIDS+=("$mig_pid")

	# the end of the window: is the culprit still there?
	bench_sleep_until $((silence_us + WINDOW_S * 1000000))
	if [ "$(bench_sql "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'culprit'")" = 0 ]; then
		ended=1
	else
		ended=0
		bench_sql "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
			WHERE application_name = 'culprit'" >/dev/null
	fi
	wait "$mig_pid" || ig_die "the migration failed ($c): $(cat "$dir/alter.out")"
	alter_done=$(tail -1 "$dir/alter.out")
	touch "$dir/speak"
	# each session ends within a second of "speak" (and within 60 s anyway)
	wait "${SESSIONS[@]}" || true
	wait "$pgb_pid" || true
	[ -n "$poller_pid" ] && { kill "$poller_pid" 2>/dev/null || true; wait "$poller_pid" 2>/dev/null || true; }
	bench_pgbouncer_stop "$RUN_DIR/pgbouncer"
	bench_sql "ALTER TABLE pgbench_accounts DROP COLUMN mig" >/dev/null

	harmless_killed=0
	for h in "$dir"/harmless_*.out; do
		grep -qx alive "$h" || harmless_killed=$((harmless_killed + 1))
	done
	aborted=$(grep -cE 'client [0-9]+ aborted' "$dir/pgbench.out" || true)
	buckets "$silence" "$dir"/pgb.* | sed "s/^/$c,$r,/" >>"$TPS_CSV"
	awk -v c="$c" -v r="$r" -v s="$silence" -v a="$alter_us" -v d="$alter_done" \
		-v e="$ended" -v h="$harmless_killed" -v p="$aborted" 'BEGIN {
		printf "%s,%d,%.3f,%.3f,%d,%d,%d\n", c, r, a / 1000000 - s, d - s, e, h, p }' >>"$CSV"
	ig_say "round $r $c: culprit ended by the contender: $ended, harmless killed: $harmless_killed/4," \
		"pgbench clients aborted: $aborted, ALTER done at +$(awk -v d="$alter_done" -v s="$silence" 'BEGIN { printf "%.2f", d - s }') s"
}

mkdir -p "$REPO/bench/results"
CSV="$REPO/bench/results/recovery.csv"
TPS_CSV="$REPO/bench/results/recovery_tps.csv"
PLOT_CSV="$REPO/bench/results/recovery_plot.csv"
echo "contender,round,alter_s,alter_done_s,culprit_ended,harmless_killed,pgbench_aborted" >"$CSV"
echo "contender,round,t_s,commits" >"$TPS_CSV"
ig_say "$ROUNDS rounds x ${#CONTENDERS[@]} contenders, about $((WINDOW_S + 5)) s each"
bench_interleave trial "${CONTENDERS[@]}"

bench_sql "CREATE TABLE tr (contender text, round int, alter_s float8, alter_done_s float8,
	culprit_ended int, harmless_killed int, pgbench_aborted int);
CREATE TABLE b (contender text, round int, t_s numeric, commits int);" >/dev/null
bench_load_csv tr "$CSV"
bench_load_csv b "$TPS_CSV"
# per trial: baseline, start of the stall, recovery, time stalled
bench_sql "CREATE VIEW per_trial AS
WITH base AS (
    SELECT b.contender, b.round, percentile_cont(0.5) WITHIN GROUP (ORDER BY commits) AS base
    FROM b JOIN tr USING (contender, round)
    WHERE b.t_s < tr.alter_s - 0.1 GROUP BY 1, 2),
stall AS (
    SELECT b.contender, b.round, min(b.t_s) AS stall_s
    FROM b JOIN tr USING (contender, round) JOIN base USING (contender, round)
    WHERE b.t_s >= tr.alter_s - 0.1 AND b.commits < 0.5 * base.base GROUP BY 1, 2),
rec AS (
    SELECT b.contender, b.round, min(b.t_s) AS recovery_s
    FROM b JOIN stall USING (contender, round) JOIN base USING (contender, round)
    WHERE b.t_s > stall.stall_s AND b.commits >= 0.8 * base.base GROUP BY 1, 2),
slow AS (
    SELECT b.contender, b.round, count(*) / 10.0 AS stalled_s
    FROM b JOIN base USING (contender, round)
    WHERE b.t_s >= 0 AND b.commits < 0.5 * base.base GROUP BY 1, 2)
SELECT tr.*, base.base, rec.recovery_s, coalesce(slow.stalled_s, 0) AS stalled_s
FROM tr JOIN base USING (contender, round)
LEFT JOIN rec USING (contender, round) LEFT JOIN slow USING (contender, round)" >/dev/null

echo
echo "Outage recovery: a silent transaction holds a lock, an ALTER TABLE queues behind it at +${ALTER_AFTER_S} s, traffic queues behind the ALTER"
echo "(limit ${LIMIT_S} s for every contender; idle_guard naptime 1 s; $ROUNDS interleaved rounds; pgbench -R $TPS -c 8 through PgBouncer;"
echo " recovery = silence to the first 100 ms with >= 80% of the baseline commits; stalled = time below 50% of the baseline in the ${WINDOW_S} s after the silence;"
echo " collateral = harmless sessions (4 per round, silent longer than the limit, blocking no one) and pgbench clients ended)"
bench_machine
echo
bench_table "
WITH s AS (
    SELECT contender, count(*) AS rounds,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY recovery_s) AS rec,
           min(recovery_s) AS rec_min, max(recovery_s) AS rec_max,
           count(recovery_s) AS recovered,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY stalled_s) AS stalled,
           sum(culprit_ended) AS ended,
           sum(harmless_killed) AS harmless, sum(pgbench_aborted) AS aborted
    FROM per_trial GROUP BY contender)
SELECT contender, rounds,
       CASE WHEN recovered < rounds THEN '> $WINDOW_S' ELSE to_char(rec, 'FM990.0') END AS recovery_s,
       CASE WHEN recovered < rounds THEN '-' ELSE to_char(rec_min, 'FM990.0') || ' .. ' || to_char(rec_max, 'FM990.0') END AS range_s,
       CASE WHEN recovered < rounds THEN '-' ELSE to_char(rec / nullif((SELECT rec FROM s WHERE contender = 'idle_guard'), 0), 'FM990.00') END AS vs_idle_guard,
       to_char(stalled, 'FM990.0') AS stalled_s,
       ended || '/' || rounds AS culprit_ended,
       harmless || '/' || 4 * rounds AS harmless_killed,
       aborted AS clients_aborted,
       harmless + aborted AS collateral_kills
FROM s
ORDER BY array_position(ARRAY['none', 'builtin', 'pgbouncer', 'poller', 'idle_guard'], contender)"

# the plot: median commits per 100 ms over the rounds, one column per contender
cols=
for c in "${CONTENDERS[@]}"; do
	cols+=", percentile_cont(0.5) WITHIN GROUP (ORDER BY commits) FILTER (WHERE contender = '$c') AS $c"
done
bench_sql "COPY (
    SELECT t_s$cols
    FROM b GROUP BY t_s ORDER BY t_s) TO STDOUT WITH (FORMAT csv, HEADER)" >"$PLOT_CSV"
gnuplot <<GP || ig_warn "gnuplot failed, no recovery.png"
set terminal pngcairo size 1000,1100 font ",11" noenhanced
set output "$REPO/bench/results/recovery.png"
set datafile separator ","
set multiplot layout ${#CONTENDERS[@]},1 title "Outage recovery: committed transactions per 100 ms (median of $ROUNDS rounds; limit ${LIMIT_S} s for every contender)"
set xrange [-1.5:$WINDOW_S]
set yrange [0:$(awk -F, 'NR > 1 { for (i = 2; i <= NF; i++) if ($i + 0 > m) m = $i + 0 } END { print int(m * 1.1) + 1 }' "$PLOT_CSV")]
set grid
set key top right
set ylabel "commits / 100 ms"
set arrow 1 from 0, graph 0 to 0, graph 1 nohead dashtype 2 lc rgb "gray30"
set arrow 2 from $ALTER_AFTER_S, graph 0 to $ALTER_AFTER_S, graph 1 nohead dashtype 2 lc rgb "gray30"
set arrow 3 from $LIMIT_S, graph 0 to $LIMIT_S, graph 1 nohead dashtype 3 lc rgb "gray50"
set label 1 "silence" at 0.05, graph 0.9
set label 2 "ALTER queues" at $ALTER_AFTER_S.05, graph 0.9
set label 3 "limit" at $LIMIT_S.05, graph 0.72
set tmargin 1.5
set bmargin 1.5
do for [i=2:$((${#CONTENDERS[@]} + 1))] {
    if (i == $((${#CONTENDERS[@]} + 1))) { set xlabel "seconds since the client went silent"; set bmargin 3.5 }
    plot "$PLOT_CSV" using 1:i with steps lw 2 lc rgb word("black red orange-red dark-violet web-blue", i - 1) title columnheader(i)
}
unset multiplot
GP
ig_say "per-trial figures: bench/results/recovery.csv, recovery_tps.csv; plot: bench/results/recovery.png"
