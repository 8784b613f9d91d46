#!/usr/bin/env bash
#
# bench/standby.sh -- a silent session on a hot standby holds a lock that WAL
# replay needs, and the standby's readers of the table queue behind replay:
# how fast do the reads recover with each contender, and what does it end or
# cancel on the way?
#
#   bash bench/standby.sh [--rounds N] [--quick]     (default 3 rounds; --quick: 1)
#
# A primary and a streaming hot standby (pg_basebackup -R), idle_guard
# preloaded on both, autovacuum off; pgbench -S on the standby (4 clients,
# 1000 transactions/s on pgbench_accounts), 200 inserts/s into another
# table on the primary to keep WAL coming.  In each trial, on the standby:
#   t =  0     the silent reader runs BEGIN; SELECT ... FROM pgbench_accounts
#              and goes silent;
#   t = +1 s   the primary's ALTER TABLE pgbench_accounts ADD COLUMN: replay
#              waits for its AccessExclusiveLock, the readers behind replay;
#   t = +40 s  end of the window: the harness ends the silent reader if need be.
# Contenders (the standby's settings; idle_guard.action = off but for idle_guard):
#   default     max_standby_streaming_delay = 30s (PostgreSQL's default);
#   forever     max_standby_streaming_delay = -1;
#   delay2s     max_standby_streaming_delay = 2s;
#   idle_guard  max_standby_streaming_delay = -1, action = terminate,
#               blocking_timeout = 2s, naptime 1 s (default).
# A second, separate scenario, delay2s_active and idle_guard_active: the
# same, plus an active SELECT pg_sleep(4), count(*) FROM pgbench_accounts
# from +0.8 s, in the same conflict; a 12 s window.
# All interleaved, their order rotating from round to round.  Per 100 ms:
# reads committed on the standby (pgbench -l) and replay lag (the primary's
# pg_current_wal_lsn() minus the standby's pg_last_wal_replay_lsn(), each
# polled every 100 ms, the last sample by the end of the bucket).  Recovery:
# from the ALTER to the first bucket, after the stall (below 50% of the
# baseline, the median reads before the ALTER), with >= 80% of the baseline
# and a lag under LAG_MAX.  From the standby's log of the trial: statements
# cancelled for a recovery conflict (its ERROR lines "canceling statement
# due to conflict with recovery", any session, pgbench's included), and
# sessions ended, by idle_guard (its LOG line "idle_guard: terminating
# silent session pid=...") or by PostgreSQL (a FATAL "terminating connection
# due to conflict with recovery" of another pid); from pgbench's output, its
# failed transactions and aborted clients.  Writes bench/results/standby.csv
# (a line per trial), standby_buckets.csv, standby_plot.csv (medians of the
# main four) and standby.png.  Talks to Unix sockets only; every wait is
# bounded.

set -euo pipefail

IG_LOG_PREFIX=standby
SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
# shellcheck source=scripts/lib.sh
. "$SCRIPT_DIR/../scripts/lib.sh"
# shellcheck source=bench/common.sh
. "$SCRIPT_DIR/common.sh"
bench_parse_rounds "$@"

MAIN=(default forever delay2s idle_guard)
CONTENDERS=("${MAIN[@]}" delay2s_active idle_guard_active)
WINDOW_S=40       # seconds after the silence that are plotted and judged
ACTIVE_WINDOW_S=12 # the same, for the *_active pair
TPS=1000          # pgbench -S --rate on the standby
LAG_MAX=16384     # replay lag (bytes) under which replay has caught up

PIDS=()
BUILD_DIR=
RUN_DIR=
# cleanup: stop every client and both clusters we started
cleanup() {
	local p
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	[ -n "$RUN_DIR" ] && ig_stop_servers_under "$RUN_DIR" "$PG_CONFIG"
	rm -rf "$BUILD_DIR" "$RUN_DIR"
}
trap cleanup EXIT
# a timeout or ^C: leave through the EXIT trap, so nothing is left running
trap 'exit 143' TERM INT

ig_bench_prepare idle_guard_bench gnuplot-nox
ig_start_cluster "$RUN_DIR" "$BINDIR" 55450 "shared_preload_libraries = 'idle_guard'
autovacuum = off
idle_guard.action = 'off'" || ig_die "could not start the primary"
bench_sql "CREATE EXTENSION idle_guard; CREATE TABLE wlog (v int)" >/dev/null
"$BINDIR/pgbench" -h "$RUN_DIR" -p "$IG_CLUSTER_PORT" -U postgres -i -s 1 -q postgres \
	>"$RUN_DIR/pgbench_init.log" 2>&1 || ig_die "pgbench -i failed"
bench_start_standby "$RUN_DIR/standby" 55460 "hot_standby_feedback = off
idle_guard.blocking_timeout = '2s'
idle_guard.naptime = '1s'" || ig_die "could not start the standby"
SB_PORT=$BENCH_STANDBY_PORT
SB_LOG="$RUN_DIR/standby/server.log"
printf '%s\n' '\set v random(1, 1000000)' 'INSERT INTO wlog VALUES (:v);' >"$RUN_DIR/writer.sql"

# sb_sql SQL, sb_wait_for SQL [TENTHS]: bench_sql and bench_wait_for on the standby
sb_sql() { IG_CLUSTER_PORT=$SB_PORT bench_sql "$1"; }
sb_wait_for() { IG_CLUSTER_PORT=$SB_PORT bench_wait_for "$@"; }

# configure CONTENDER: the standby's settings for CONTENDER, reloaded
configure() {
	local delay=-1 action=off q
	case "$1" in
	default) delay=30000 ;;
	delay2s*) delay=2000 ;;
	idle_guard*) action=terminate ;;
	esac
	for q in "ALTER SYSTEM SET max_standby_streaming_delay = $delay" \
		"ALTER SYSTEM SET idle_guard.action = '$action'" "SELECT pg_reload_conf()"; do sb_sql "$q" >/dev/null; done
	sb_wait_for "SELECT current_setting('idle_guard.action') = '$action' AND setting = '$delay'
		FROM pg_settings WHERE name = 'max_standby_streaming_delay'" 50 ||
		ig_die "the reload did not take effect"
}

# poll_lsn FILE PORT SQL_LSN WINDOW: every 100 ms, "epoch,lsn" lines from
# one session, for the length of a trial
poll_lsn() {
	printf '%s\n' "SELECT extract(epoch FROM clock_timestamp()), $3 - '0/0';" '\watch 0.1' |
		timeout $(($4 + 4)) "$BINDIR/psql" -X -At -F, -h "$RUN_DIR" -p "$2" -U postgres \
			-d postgres >"$1" 2>&1 &
	PIDS+=("$!")
}

# buckets SILENCE_EPOCH DIR WINDOW: "t_s,reads,lag_bytes" per 100 ms from
# -1.5 s to +WINDOW s around the silence (lag empty until both are polled)
buckets() {
	local last=$(($3 * 10 - 1))
	paste -d, <(bench_commit_buckets "$1" -15 "$last" "$2"/pgb.*) <(awk -F, -v s="$1" -v last="$last" '
		FNR == 1 { src++ }
		NF == 2 && $2 ~ /^[0-9]+$/ { i = int(($1 - s + 100) * 10) - 1000; if (src == 1) p[i] = $2; else q[i] = $2 }
		END {
			for (i = -15; i <= last; i++) {
				if (i in p) pv = p[i]
				if (i in q) qv = q[i]
				print (pv == "" || qv == "") ? "" : (pv > qv ? pv - qv : 0)
			}
		}' "$2/lsn_primary" "$2/lsn_standby")
}

# trial CONTENDER ROUND: one outage; appends to the two CSV files
trial() {
	local c=$1 r=$2 win=$WINDOW_S dir t0 silence silence_us ddl_us pid end='' state off
	local cancelled ig_pids by_ig by_pg failed aborted p harness=
	[ "${c%_active}" = "$c" ] || win=$ACTIVE_WINDOW_S
	dir="$RUN_DIR/trial_${c}_$r"
	mkdir -p "$dir"
	off=$(stat -c %s "$SB_LOG")
	configure "$c"
	t0=$(bench_now_us)
	poll_lsn "$dir/lsn_primary" "$IG_CLUSTER_PORT" "pg_current_wal_lsn()" "$win"
	poll_lsn "$dir/lsn_standby" "$SB_PORT" "pg_last_wal_replay_lsn()" "$win"
	"$BINDIR/pgbench" -h "$RUN_DIR" -p "$SB_PORT" -U postgres -n -S -c 4 -j 2 -R "$TPS" \
		-T $((2 + win)) -l --log-prefix="$dir/pgb" postgres >"$dir/pgbench.out" 2>&1 &
	PIDS+=("$!")
	"$BINDIR/pgbench" -h "$RUN_DIR" -p "$IG_CLUSTER_PORT" -U postgres -n -c 1 -R 200 \
		-T $((2 + win)) -f "$RUN_DIR/writer.sql" postgres >"$dir/writer.out" 2>&1 &
	PIDS+=("$!")

	# the silent reader: silent until the file "speak" appears (90 s at most)
	bench_sleep_until $((t0 + 1500000))
	bench_silent_client "$dir" culprit "host=$RUN_DIR port=$SB_PORT user=postgres dbname=postgres" \
		"\\set VERBOSITY verbose
BEGIN; SELECT abalance FROM pgbench_accounts WHERE aid = 1;" 90
	PIDS+=("$!")
	sb_wait_for "SELECT count(*) = 1 FROM pg_stat_activity WHERE application_name = 'culprit'
		AND state = 'idle in transaction'" 50 || ig_die "the silent reader did not go silent ($c)"
	read -r pid silence < <(sb_sql "SELECT pid, extract(epoch FROM state_change) FROM pg_stat_activity
		WHERE application_name = 'culprit'" | tr '|' ' ')
	silence_us=$(awk -v s="$silence" 'BEGIN { printf "%.0f", s * 1000000 }')

	if [ "$win" = "$ACTIVE_WINDOW_S" ]; then # the second scenario: a long active query too
		bench_sleep_until $((silence_us + 800000))
		timeout 60 "$BINDIR/psql" -X -At -v VERBOSITY=verbose \
			"host=$RUN_DIR port=$SB_PORT user=postgres dbname=postgres application_name=active" \
			-c "SELECT pg_sleep(4), count(*) FROM pgbench_accounts" >"$dir/active.out" 2>&1 &
		PIDS+=("$!")
		sb_wait_for "SELECT count(*) = 1 FROM pg_stat_activity WHERE application_name = 'active'
			AND wait_event = 'PgSleep'" 10 || ig_warn "the active query is not running yet ($c)"
	fi
	bench_sleep_until $((silence_us + 1000000))
	ddl_us=$(bench_now_us)
	bench_sql "ALTER TABLE pgbench_accounts ADD COLUMN mig int" >/dev/null

	# the end of the window: is the silent reader still there?
	bench_sleep_until $((silence_us + win * 1000000))
	if [ "$(sb_sql "SELECT count(*) FROM pg_stat_activity WHERE pid = $pid")" != 0 ]; then
		sb_sql "SELECT pg_terminate_backend($pid)" >/dev/null
		harness=1
	fi
	touch "$dir/speak"
	for p in "${PIDS[@]}"; do
		wait "$p" 2>/dev/null || true # each is bounded by timeout or -T
	done
	PIDS=()
	bench_standby_caught_up || ig_die "the standby did not catch up ($c)"
	bench_sql "ALTER TABLE pgbench_accounts DROP COLUMN mig" >/dev/null
	bench_standby_caught_up || ig_die "the standby did not catch up ($c)"

	# what the standby cancelled and ended during the trial, and by whom
	tail -c +$((off + 1)) "$SB_LOG" >"$dir/standby.log"
	cancelled=$(grep -acE 'ERROR: +([0-9A-Z]{5}: +)?canceling statement due to conflict with recovery' \
		"$dir/standby.log" || true)
	ig_pids=$(grep -aoE 'idle_guard: terminating silent session pid=[0-9]+' "$dir/standby.log" |
		grep -oE '[0-9]+$' | sort -u) || true
	by_ig=$(printf '%s' "$ig_pids" | grep -c . || true)
	by_pg=$(grep -aE 'FATAL: +([0-9A-Z]{5}: +)?terminating connection due to conflict with recovery' \
		"$dir/standby.log" | grep -oE '^[^[]*\[[0-9]+\]' | grep -oE '[0-9]+\]$' | tr -d ']' | sort -u |
		grep -cvxF -e "${ig_pids:-none}" || true)
	failed=$(sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p' "$dir/pgbench.out" | head -1)
	aborted=$(grep -cE 'client [0-9]+ aborted' "$dir/pgbench.out" || true)
	state=$(grep -oE 'FATAL:  [0-9A-Z]{5}' "$dir/culprit.out" | head -1 | cut -c9-) || true
	[ -n "$harness" ] || end=$(bench_log_epoch "$dir/standby.log" "\[$pid\] .*FATAL:  ")
	[ -z "$end" ] || end=$(awk -v e="$end" -v d="$ddl_us" 'BEGIN { printf "%.2f", e - d / 1000000 }')
	buckets "$silence" "$dir" "$win" | sed "s/^/$c,$r,/" >>"$BUCKETS_CSV"
	echo "$c,$r,$win,$(awk -v s="$silence" -v d="$ddl_us" 'BEGIN { printf "%.3f", d / 1000000 - s }'),$end,$state,$cancelled,$by_pg,$by_ig,${failed:-0},$aborted" >>"$CSV"
	ig_say "round $r $c: statements cancelled: $cancelled; sessions ended by PostgreSQL: $by_pg," \
		"by idle_guard: $by_ig; the silent reader's FATAL${end:+ at +$end s after the ALTER}:" \
		"$(grep -m1 'FATAL:' "$dir/culprit.out" | cut -c9-); pgbench failed: ${failed:-0}, aborted: $aborted"
}

mkdir -p "$REPO/bench/results"
CSV="$REPO/bench/results/standby.csv"
BUCKETS_CSV="$REPO/bench/results/standby_buckets.csv"
PLOT_CSV="$REPO/bench/results/standby_plot.csv"
echo "contender,round,window_s,ddl_s,reader_fatal_s,reader_sqlstate,statements_cancelled,ended_by_postgres,ended_by_idle_guard,pgbench_failed,pgbench_aborted" >"$CSV"
echo "contender,round,t_s,reads,lag_bytes" >"$BUCKETS_CSV"
ig_say "$ROUNDS rounds x ${#CONTENDERS[@]} contenders, about $((WINDOW_S + 6)) s each (the *_active pair $((ACTIVE_WINDOW_S + 6)) s)"
bench_interleave trial "${CONTENDERS[@]}"

bench_sql "CREATE TABLE tr (contender text, round int, win int, ddl_s float8, fatal_s float8, sqlstate text,
	cancelled int, by_pg int, by_ig int, pgbench_failed int, pgbench_aborted int);
CREATE TABLE b (contender text, round int, t_s numeric, reads int, lag_bytes bigint);" >/dev/null
bench_load_csv tr "$CSV"
bench_load_csv b "$BUCKETS_CSV"
# per trial: the baseline (median reads before the ALTER), the first bucket
# below half of it, the recovery after that (from the ALTER), the peak lag
bench_sql "CREATE VIEW bt AS SELECT * FROM b JOIN tr USING (contender, round);
CREATE VIEW per_trial AS SELECT tr.*, CASE WHEN stall IS NULL THEN 0 ELSE rec - tr.ddl_s END AS recovery_s,
    (SELECT max(lag_bytes) FROM b WHERE (b.contender, b.round) = (tr.contender, tr.round)) AS peak_lag
FROM tr,
LATERAL (SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY reads) AS base
         FROM bt WHERE (bt.contender, bt.round) = (tr.contender, tr.round) AND t_s < ddl_s - 0.1) m,
LATERAL (SELECT min(t_s) AS stall FROM bt WHERE (bt.contender, bt.round) = (tr.contender, tr.round)
         AND t_s >= ddl_s - 0.1 AND reads < 0.5 * base) st,
LATERAL (SELECT min(t_s) AS rec FROM bt WHERE (bt.contender, bt.round) = (tr.contender, tr.round)
         AND t_s > stall AND reads >= 0.8 * base AND lag_bytes < $LAG_MAX) rc" >/dev/null

# table CONTENDER...: the summary of these contenders, in this order
table() {
	local list
	list=$(printf "'%s'," "$@")
	list="ARRAY[${list%,}]"
	bench_table "
WITH s AS (
    SELECT contender, count(*) AS rounds, count(recovery_s) AS recovered, max(win) AS win,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY recovery_s) AS rec,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY recovery_s + ddl_s) AS rec_silence,
           to_char(min(recovery_s), 'FM990.0') || ' .. ' || to_char(max(recovery_s), 'FM990.0') AS range_s,
           sum(cancelled) AS cancelled, sum(by_pg) AS by_pg, sum(by_ig) AS by_ig,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY fatal_s) AS fatal_s,
           sum(pgbench_failed + pgbench_aborted) AS pgbench_failed,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY peak_lag) / 1024 AS peak_lag_kb
    FROM per_trial WHERE contender = ANY ($list) GROUP BY contender)
SELECT contender, rounds,
       CASE WHEN recovered < rounds THEN '> ' || (win - 1) ELSE to_char(rec, 'FM990.0') END AS recovery_s,
       CASE WHEN recovered < rounds THEN '-' ELSE range_s END AS range_s,
       CASE WHEN recovered < rounds THEN '-' ELSE to_char(rec_silence, 'FM990.0') END AS from_silence_s,
       CASE WHEN recovered < rounds THEN '-' ELSE to_char(rec / nullif((SELECT rec FROM s i
           WHERE i.contender = ($list)[array_length($list, 1)]), 0), 'FM990.00') END AS vs_idle_guard,
       cancelled AS queries_cancelled, pgbench_failed, by_pg AS ended_by_postgres, by_ig AS ended_by_idle_guard,
       coalesce(to_char(fatal_s, 'FM990.0'), '-') AS reader_ended_s, to_char(peak_lag_kb, 'FM99990') AS peak_lag_kb
FROM s ORDER BY array_position($list, contender)"
}

echo
echo "Hot standby: a silent reader holds a lock that WAL replay needs; the primary's ALTER TABLE arrives at +1 s, the standby's readers queue behind replay"
echo "($ROUNDS interleaved rounds; pgbench -S -R $TPS -c 4 on the standby, 200 inserts/s on the primary;"
echo " recovery_s: from the ALTER to the first 100 ms with >= 80% of the baseline reads and replay lag < $((LAG_MAX / 1024)) kB, after the stall"
echo " (from_silence_s: the same from the start of the silence; goal: blocking_timeout + naptime = 3 s); median over the rounds;"
echo " queries_cancelled: the standby log's ERROR \"canceling statement due to conflict with recovery\", any session, summed over the rounds;"
echo " pgbench_failed: pgbench's failed transactions and aborted clients; ended_by_*: sessions ended, from the standby log (idle_guard's LOG line,"
echo " else PostgreSQL's FATAL \"terminating connection due to conflict with recovery\"), summed; reader_ended_s: the silent reader's FATAL after the ALTER,"
echo " if it came before the end of the ${WINDOW_S} s window, where the harness ends it)"
bench_machine
echo
table "${MAIN[@]}"
echo
echo "Second scenario, apart: the same plus an active SELECT pg_sleep(4), count(*) FROM pgbench_accounts from +0.8 s, in the same conflict (${ACTIVE_WINDOW_S} s window)"
echo
table delay2s_active idle_guard_active

# the plot: median reads and replay lag per 100 ms over the rounds (main scenario)
cols=
for c in "${MAIN[@]}"; do
	cols+=", percentile_cont(0.5) WITHIN GROUP (ORDER BY reads) FILTER (WHERE contender = '$c') AS $c"
	cols+=", round(percentile_cont(0.5) WITHIN GROUP (ORDER BY lag_bytes) FILTER (WHERE contender = '$c') / 1024) AS ${c}_lag_kb"
done
bench_sql "COPY (SELECT t_s$cols FROM b GROUP BY t_s ORDER BY t_s) TO STDOUT WITH (FORMAT csv, HEADER)" >"$PLOT_CSV"
gnuplot <<GP || ig_warn "gnuplot failed, no standby.png"
set terminal pngcairo size 1000,1000 font ",11" noenhanced
set output "$REPO/bench/results/standby.png"
set datafile separator ","
set multiplot layout ${#MAIN[@]},1 title "Hot standby: reads per 100 ms on the standby, and replay lag (median of $ROUNDS rounds; catch-up bursts clipped)"
set xrange [-1.5:$WINDOW_S]
set yrange [0:$((TPS / 4))]
set y2range [0:*]
set ytics nomirror
set y2tics
set grid
set key top right
set ylabel "reads / 100 ms"
set y2label "replay lag, kB"
set arrow 1 from 0, graph 0 to 0, graph 1 nohead dashtype 2 lc rgb "gray30"
set arrow 2 from 1, graph 0 to 1, graph 1 nohead dashtype 2 lc rgb "gray30"
set label 1 "silence" at -0.1, graph 0.9 right
set label 2 "ALTER" at 1.2, graph 0.9
set tmargin 1.5
set bmargin 1.5
do for [i=0:$((${#MAIN[@]} - 1))] {
    if (i == $((${#MAIN[@]} - 1))) { set xlabel "seconds since the standby session went silent"; set bmargin 3.5 }
    plot "$PLOT_CSV" using 1:2*i+2 with steps lw 2 lc rgb word("black dark-violet orange-red web-blue", i + 1) title columnheader(2*i+2), \
         "" using 1:2*i+3 axes x1y2 with lines lw 1 dashtype 2 lc rgb "gray40" title "replay lag"
}
unset multiplot
GP
ig_say "per-trial figures: bench/results/standby.csv, standby_buckets.csv; plot: bench/results/standby.png"
