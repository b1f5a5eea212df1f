#!/usr/bin/env bash
# Benchmark: a load as fast as COPY of its own rows, in bounded memory. A
# replay endpoint (bench/replay/server.js --shape dlt) serves MESSAGES
# dlt-shaped messages (put-records.js --shape dlt: a nested order, about 4.5
# rows each in several child tables) over SHARDS shards. For each chunk size
# of CHUNK_SIZES, with an endpoint whose pre-built pages are that many
# records and a fresh `kinesis-loader serve` (the local PostgreSQL and Redis,
# KL_WORKERS=WORKERS):
#   - one job loads the stream (POST /streams/replay/loads with that
#     chunk_size, GET /jobs/<id> until succeeded) into a fresh dataset: rows/s
#     of all data tables from the POST to the poll that sees it succeeded;
#     the root table must hold exactly MESSAGES distinct _kinesis_msg_id and
#     the job's row_counts must equal the table counts;
#   - the service's peak RSS (VmHWM at the end of the job; goal <= 64 MiB);
#   - the same rows by plain COPY: every data table of the dataset (all but
#     dlt's _dlt_loads, _dlt_version, _dlt_pipeline_state and the loader's
#     _kinesis_* bookkeeping) is dumped with COPY TO
#     STDOUT, truncated, and copied back by WORKERS psql connections at once,
#     the dumps cut into WORKERS runs of equal row count (a big table is
#     split across connections, so all of them work even with fewer tables);
#     the tables must hold the same counts again;
#   - the ratio of the load's rows/s to COPY's (goal >= 0.9), and the CPU
#     seconds the service, PostgreSQL and the endpoint spent in the load.
# Each chunk size runs RUNS times (a fresh service and dataset each time);
# the summary gives the medians of rows/s and ratio, and the highest peak
# RSS: on a small machine the service, PostgreSQL and psql share the cores,
# and one run's figures move by 10 %.
# Fails only on wrong results, never on a time or memory figure.
#
# Environment: MESSAGES (200000), SHARDS (4), WORKERS (4), CHUNK_SIZES
#   ("1000 10000"), RUNS (3), LATENCY_MS (0: the endpoint holds each
#   GetRecords answer that long, as the network to a region would), KL_BIN (build/kinesis-loader), BENCH_KEEP=1 (keep the
#   datasets, reloaded by COPY), BENCH_REDIS=0 (state in the process).
# Needs PostgreSQL and Redis of scripts/services.sh (make bench starts them).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
: "${KL_TEST_PG_URL:?source .run/services.env first (make bench does)}"
: "${KL_TEST_REDIS_URL:?source .run/services.env first}"
MESSAGES=${MESSAGES:-200000}
SHARDS=${SHARDS:-4}
WORKERS=${WORKERS:-4}
CHUNK_SIZES=${CHUNK_SIZES:-1000 10000}
RUNS=${RUNS:-3}
LATENCY_MS=${LATENCY_MS:-0}
BIN=${KL_BIN:-build/kinesis-loader}
STREAM=replay
TABLE=orders
RATIO_GOAL=0.9
RSS_GOAL_MIB=64
PER_SHARD=$((MESSAGES / SHARDS))
[ $((PER_SHARD * SHARDS)) -eq "$MESSAGES" ] || { echo "MESSAGES must be a multiple of SHARDS" >&2; exit 2; }
export AWS_ACCESS_KEY_ID=AKIDBENCH AWS_SECRET_ACCESS_KEY=bench AWS_REGION=us-east-1
# shellcheck source=bench/lib/common.sh
source bench/lib/common.sh
[ -x "$BIN" ] || { echo "no $BIN: build first (make build) or set KL_BIN" >&2; exit 1; }

datasets=()
copy_dir=$(mktemp -d "${TMPDIR:-/tmp}/kl-bench-copy.XXXXXX")
cleanup() {
    service_stop
    replay_stop
    for d in "${datasets[@]}"; do pg_drop "$d"; done
    rm -rf "$copy_dir"
}
trap cleanup EXIT

psql_q() { psql "$KL_TEST_PG_URL" -X -v ON_ERROR_STOP=1 -Atq "$@"; }

# copy_back DATASET TABLE...: dumps the tables, truncates them and copies the
# dumps back through WORKERS connections at once. Prints "rows seconds
# postgres_cpu_s" of the copy back; checks that every table holds its rows
# again.
copy_back() {
    local ds=$1 t i k p total=0 start end from to first last cpu0 list
    shift
    local -a tables=("$@") trows=() pids_copy=()
    rm -rf "${copy_dir:?}"/*
    for i in "${!tables[@]}"; do
        psql_q -c "COPY \"$ds\".\"${tables[$i]}\" TO STDOUT" >"$copy_dir/t$i.copy" || return 1
        # COPY's text format escapes newlines in values: one line a row
        trows[i]=$(wc -l <"$copy_dir/t$i.copy")
        total=$((total + trows[i]))
    done
    # Connection k takes rows [k*total/WORKERS, (k+1)*total/WORKERS) of the
    # dumps one after another: whole tables, or the parts of one.
    for k in $(seq 0 $((WORKERS - 1))); do
        : >"$copy_dir/w$k.sql"
        from=$((k * total / WORKERS))
        to=$(((k + 1) * total / WORKERS))
        first=0
        for i in "${!tables[@]}"; do
            last=$((first + trows[i]))
            if [ "$from" -lt "$last" ] && [ "$to" -gt "$first" ]; then
                sed -n "$((from > first ? from - first + 1 : 1)),$((to < last ? to - first : trows[i]))p" \
                    "$copy_dir/t$i.copy" >"$copy_dir/w$k.t$i.part" || return 1
                printf '\\copy "%s"."%s" FROM '"'"'%s'"'"'\n' "$ds" "${tables[$i]}" \
                    "$copy_dir/w$k.t$i.part" >>"$copy_dir/w$k.sql"
            fi
            first=$last
        done
    done
    list=
    for t in "${tables[@]}"; do list+="${list:+, }\"$ds\".\"$t\""; done
    psql_q -c "TRUNCATE $list" || return 1
    cpu0=$(pg_cpu_s)
    start=$(date +%s.%N)
    for k in $(seq 0 $((WORKERS - 1))); do
        psql_q -f "$copy_dir/w$k.sql" &
        pids_copy+=($!)
    done
    for p in "${pids_copy[@]}"; do
        wait "$p" || { echo "a COPY connection failed" >&2; return 1; }
    done
    end=$(date +%s.%N)
    cpu0=$(calc "$(pg_cpu_s) - $cpu0")
    for i in "${!tables[@]}"; do
        t=$(pg_count "$ds" "${tables[$i]}") || return 1
        [ "$t" -eq "${trows[i]}" ] ||
            { echo "$ds.${tables[$i]} holds $t rows after COPY, not ${trows[i]}" >&2; return 1; }
    done
    rm -f "$copy_dir"/*
    echo "$total $(calc "$end - $start") $cpu0"
}

# replay_served: "records GetRecords_calls" the endpoint has served so far.
replay_served() {
    json_get "$(curl -sf "$REPLAY_URL/__stats")" 'j.records + " " + (j.requests.GetRecords || 0)'
}

# one_run CHUNK RUN: a fresh service loads the stream from the replay
# endpoint into a fresh dataset, then the rows are copied back by COPY; sets
# load_rate, copy_rate, ratio, rss and rows, and prints the run's figures.
one_run() {
    local chunk=$1 run=$2 dataset job cpu_before cpu_line served counts tables t n c named load_s
    local copy_out copy_s copy_cpu copy_rows served_before
    service_start "$REPLAY_URL" "$WORKERS"
    echo "run $run: service $SERVICE_URL, KL_WORKERS=$WORKERS, PostgreSQL, state: $SERVICE_STATE"

    dataset="bench_copy_$$_${chunk}_$run"
    datasets+=("$dataset")
    cpu_before=("$(cpu_s "$SERVICE_PID")" "$(pg_cpu_s)" "$(cpu_s "$REPLAY_PID")")
    served_before=$(replay_served)
    job=$(node bench/lib/loadjob.js --base "$SERVICE_URL" --stream "$STREAM" \
        --body "{\"pipeline_name\":\"$dataset\",\"dataset_name\":\"$dataset\",\"table_name\":\"$TABLE\",\"initial_at_timestamp\":null,\"milliseconds_behind_latest\":0,\"chunk_size\":$chunk}" \
        --table "$TABLE" --expect "$MESSAGES") ||
        { echo "chunk_size $chunk: the job did not load all $MESSAGES messages: $job" >&2; exit 1; }
    rss=$(peak_rss_mib "$SERVICE_PID")
    cpu_line=$(printf 'CPU s in the load: kinesis-loader %.1f, PostgreSQL %.1f, replay endpoint %.1f' \
        "$(calc "$(cpu_s "$SERVICE_PID") - ${cpu_before[0]}")" \
        "$(calc "$(pg_cpu_s) - ${cpu_before[1]}")" \
        "$(calc "$(cpu_s "$REPLAY_PID") - ${cpu_before[2]}")")
    served=$(replay_served)
    service_stop

    counts=$(pg_counts "$dataset" "$TABLE")
    [ "$counts" = "$MESSAGES $MESSAGES" ] ||
        { echo "chunk_size $chunk: $dataset.$TABLE holds $counts (rows, distinct ids), not $MESSAGES" >&2; exit 1; }
    mapfile -t tables < <(pg_data_tables "$dataset")
    rows=0
    for t in "${tables[@]}"; do
        n=$(pg_count "$dataset" "$t")
        c=$(json_get "$job" "j.row_counts[\"$t\"]")
        [ "$c" = "$n" ] || { echo "chunk_size $chunk: $dataset.$t holds $n rows, row_counts says $c" >&2; exit 1; }
        rows=$((rows + n))
    done
    named=$(json_get "$job" 'Object.keys(j.row_counts).filter((t) => !t.startsWith("_dlt_")).sort().join(" ")')
    [ "$named" = "${tables[*]}" ] ||
        { echo "chunk_size $chunk: row_counts names the tables $named, $dataset holds ${tables[*]}" >&2; exit 1; }
    load_s=$(json_get "$job" 'j.seconds')
    load_rate=$(calc "$rows / $load_s")
    printf 'load: %d messages, %d rows in %d tables (%s) in %.2f s (POST to succeeded): %.0f rows/s, %.0f messages/s\n' \
        "$MESSAGES" "$rows" "${#tables[@]}" "${tables[*]}" "$load_s" "$load_rate" "$(calc "$MESSAGES / $load_s")"
    printf '  %s; %.2f records served per message in %d GetRecords calls\n' "$cpu_line" \
        "$(calc "(${served% *} - ${served_before% *}) / $MESSAGES")" "$((${served#* } - ${served_before#* }))"
    printf 'peak RSS of the service: %.1f MiB (goal <= %d MiB)\n' "$rss" "$RSS_GOAL_MIB"

    copy_out=$(copy_back "$dataset" "${tables[@]}")
    read -r copy_rows copy_s copy_cpu <<<"$copy_out"
    [ "$copy_rows" -eq "$rows" ] || { echo "COPY moved $copy_rows rows, not $rows" >&2; exit 1; }
    copy_rate=$(calc "$copy_rows / $copy_s")
    ratio=$(calc "$load_rate / $copy_rate")
    printf 'COPY of the same rows, %d connections: %.2f s, %.0f rows/s (PostgreSQL CPU %.1f s)\n' \
        "$WORKERS" "$copy_s" "$copy_rate" "$copy_cpu"
    printf 'ratio load / COPY: %.2f (goal >= %s)\n' "$ratio" "$RATIO_GOAL"
    pg_drop "$dataset"
}

summary=()
for chunk in $CHUNK_SIZES; do
    replay_start --stream "$STREAM" --shards "$SHARDS" --records "$PER_SHARD" --page "$chunk" --shape dlt \
        --latency-ms "$LATENCY_MS"
    printf '\nchunk_size %d: replay endpoint %s, %d shards x %d dlt-shaped messages, %d-record pages built in %d ms, GetRecords latency %d ms\n' \
        "$chunk" "$REPLAY_URL" "$SHARDS" "$PER_SHARD" "$chunk" "$(json_get "$REPLAY_INFO" 'j.build_ms')" "$LATENCY_MS"
    load_rates=() copy_rates=() ratios=() rss_max=0
    for run in $(seq "$RUNS"); do
        one_run "$chunk" "$run"
        load_rates+=("$load_rate") copy_rates+=("$copy_rate") ratios+=("$ratio")
        rss_max=$(max_of "$rss" "$rss_max")
    done
    replay_stop
    summary+=("$(printf '  %-10d %10d %12.0f %12.0f %8.2f %10.1f' "$chunk" "$rows" \
        "$(median "${load_rates[@]}")" "$(median "${copy_rates[@]}")" "$(median "${ratios[@]}")" "$rss_max")")
done

echo
printf 'load vs COPY of its own rows: %d dlt-shaped messages, %d shards, KL_WORKERS=%d, %d COPY connections, state: %s, median of %d runs\n' \
    "$MESSAGES" "$SHARDS" "$WORKERS" "$WORKERS" "$SERVICE_STATE" "$RUNS"
printf '  %-10s %10s %12s %12s %8s %10s\n' chunk_size rows "load rows/s" "COPY rows/s" ratio "peak MiB"
printf '%s\n' "${summary[@]}"
printf '  goals: ratio load / COPY >= %s, peak RSS <= %d MiB\n' "$RATIO_GOAL" "$RSS_GOAL_MIB"
