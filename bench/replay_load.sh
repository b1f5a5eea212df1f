#!/usr/bin/env bash
# Benchmark: kinesis-loader's own speed, past what the emulators serve. A
# replay endpoint (bench/replay/server.js) answers the Kinesis JSON protocol
# from GetRecords pages built once at start: SHARDS shards, RECORDS messages
# in all (put-records.js bodies {"id","name","pad"}), 1000 records a page.
# Against it, per run:
#   - `kinesis-loader read` of the whole stream (records/s; every line
#     counted);
#   - a full load by `kinesis-loader serve` (the local PostgreSQL and Redis,
#     KL_WORKERS=SHARDS): POST /streams/replay/loads, GET /jobs/<id> until
#     succeeded (messages/s from the POST to the poll that sees it), each run
#     into a fresh dataset; the table must hold exactly RECORDS rows (RECORDS
#     distinct _kinesis_msg_id) and row_counts must say so.
# Also shows how many records the endpoint served per message (1.00: nothing
# read twice), and how fast the endpoint alone serves pages (wrk posting
# GetRecords for 2 s, bench/lib/wrk-getrecords.lua), to show it is not what
# limits the loader. Fails only on wrong results, never on a time figure.
#
# Environment: RECORDS (400000), SHARDS (4), PAD (40), RUNS (3),
#   REPLAY_CLOSED=1 (closed shards: the last page has no NextShardIterator;
#   default open shards ending in an empty page at the tip), KL_BIN
#   (build/kinesis-loader), BENCH_KEEP=1 (keep the datasets), BENCH_REDIS=0
#   (the service keeps its state in the process instead of Redis).
# Needs PostgreSQL and Redis of scripts/services.sh (make bench starts them).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
: "${KL_TEST_PG_URL:?source .run/services.env first (make bench does)}"
: "${KL_TEST_REDIS_URL:?source .run/services.env first}"
RECORDS=${RECORDS:-400000}
SHARDS=${SHARDS:-4}
PAD=${PAD:-40}
RUNS=${RUNS:-3}
BIN=${KL_BIN:-build/kinesis-loader}
STREAM=replay
TABLE=events
PER_SHARD=$((RECORDS / SHARDS))
[ $((PER_SHARD * SHARDS)) -eq "$RECORDS" ] || { echo "RECORDS must be a multiple of SHARDS" >&2; exit 2; }
export AWS_ACCESS_KEY_ID=AKIDBENCH AWS_SECRET_ACCESS_KEY=bench AWS_REGION=us-east-1
# shellcheck source=bench/lib/common.sh
source bench/lib/common.sh
[ -x "$BIN" ] || { echo "no $BIN: build first (make build) or set KL_BIN" >&2; exit 1; }

datasets=()
cleanup() {
    service_stop
    for d in "${datasets[@]}"; do pg_drop "$d"; done
    replay_stop
}
trap cleanup EXIT

closed=()
[ "${REPLAY_CLOSED:-0}" = 1 ] && closed=(--closed)
replay_start --stream "$STREAM" --shards "$SHARDS" --records "$PER_SHARD" --pad "$PAD" "${closed[@]}"
info=$REPLAY_INFO
ENDPOINT=$REPLAY_URL
printf 'replay endpoint %s: %d shards x %d records, %d pages built in %d ms%s\n' "$ENDPOINT" "$SHARDS" \
    "$PER_SHARD" "$(json_get "$info" 'j.pages')" "$(json_get "$info" 'j.build_ms')" \
    "$([ ${#closed[@]} -gt 0 ] && echo ', closed shards' || echo ', open shards')"

served() { json_get "$(curl -sf "$ENDPOINT/__stats")" 'j.records'; }

# The endpoint alone: whole pages of 1000 records, as fast as wrk asks.
endpoint_rate=
if command -v wrk >/dev/null; then
    line=$(wrk -t1 -c2 -d2s -s bench/lib/wrk-getrecords.lua "$ENDPOINT/" | grep '^WRK_JSON ' || true)
    if [ -n "$line" ] && [ "$(json_get "${line#WRK_JSON }" 'j.status_errors')" = 0 ]; then
        endpoint_rate=$(calc "$(json_get "${line#WRK_JSON }" 'j.rps') * $(json_get "$info" 'Math.min(1000, j.records_per_shard)')")
        printf 'replay endpoint alone (wrk, GetRecords pages): %.0f records/s\n' "$endpoint_rate"
    fi
fi

read_rates=() read_served=()
for run in $(seq "$RUNS"); do
    before=$(served)
    start=$(date +%s.%N)
    lines=$(AWS_ENDPOINT_URL_KINESIS=$ENDPOINT "$BIN" read "$STREAM" --concurrency "$SHARDS" 2>/dev/null | wc -l)
    end=$(date +%s.%N)
    [ "$lines" -eq "$RECORDS" ] || { echo "kinesis-loader read printed $lines of $RECORDS lines" >&2; exit 1; }
    rate=$(calc "$lines / ($end - $start)")
    read_rates+=("$rate")
    read_served+=("$(calc "($(served) - $before) / $RECORDS")")
    printf 'read run %d: %9.0f records/s (%.2f records served per message)\n' "$run" "$rate" "${read_served[-1]}"
done

service_start "$ENDPOINT" "$SHARDS"
echo "service: $SERVICE_URL, KL_WORKERS=$SHARDS, PostgreSQL, state: $SERVICE_STATE"
load_rates=() load_served=()
for run in $(seq "$RUNS"); do
    dataset="bench_replay_$$_$run"
    datasets+=("$dataset")
    before=$(served)
    job=$(node bench/lib/loadjob.js --base "$SERVICE_URL" --stream "$STREAM" \
        --body "{\"pipeline_name\":\"$dataset\",\"dataset_name\":\"$dataset\",\"table_name\":\"$TABLE\",\"initial_at_timestamp\":null,\"milliseconds_behind_latest\":0}" \
        --table "$TABLE" --expect "$RECORDS") || { echo "load $run failed: $job" >&2; exit 1; }
    counts=$(pg_counts "$dataset" "$TABLE")
    if [ "$counts" != "$RECORDS $RECORDS" ]; then
        echo "load $run: $dataset.$TABLE holds $counts (rows, distinct ids), not $RECORDS" >&2
        exit 1
    fi
    pg_drop "$dataset"
    s=$(json_get "$job" 'j.seconds')
    rate=$(calc "$RECORDS / $s")
    load_rates+=("$rate")
    load_served+=("$(calc "($(served) - $before) / $RECORDS")")
    printf 'load run %d: %9.0f messages/s (%.2f s POST to succeeded, %.2f s in the job; %d rows checked; %.2f records served per message)\n' \
        "$run" "$rate" "$s" "$(json_get "$job" 'j.server_seconds')" "$RECORDS" "${load_served[-1]}"
done

best_read=$(printf '%s\n' "${read_rates[@]}" | sort -g | tail -1)
best_load=$(printf '%s\n' "${load_rates[@]}" | sort -g | tail -1)
echo
printf 'replay endpoint: %d messages, %d shards, KL_WORKERS=%d, state: %s, best of %d (median)\n' \
    "$RECORDS" "$SHARDS" "$SHARDS" "$SERVICE_STATE" "$RUNS"
printf '  %-44s %10s %10s\n' "" "best" "median"
printf '  %-44s %10.0f %10.0f\n' "kinesis-loader read, records/s" "$best_read" "$(median "${read_rates[@]}")"
printf '  %-44s %10.0f %10.0f\n' "service load (POST to succeeded), messages/s" "$best_load" "$(median "${load_rates[@]}")"
if [ -n "$endpoint_rate" ]; then
    printf '  %-44s %10.0f\n' "replay endpoint alone (wrk), records/s" "$endpoint_rate"
fi
printf '  ratio load / read: %.2f (what loading into PostgreSQL costs over reading)\n' "$(calc "$best_load / $best_read")"
if [ -n "$endpoint_rate" ]; then
    printf '  ratio read / endpoint alone: %.2f (well below 1: the endpoint is not the limit)\n' \
        "$(calc "$best_read / $endpoint_rate")"
fi
