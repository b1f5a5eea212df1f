#!/usr/bin/env bash
# Benchmark: the whole service, end to end, on kinesalite. RECORDS JSON
# messages (put-records.js bodies {"id","name","pad"}, PARTITION_KEYS keys)
# go into a SHARDS-shard kinesalite stream; `kinesis-loader serve` (the local
# PostgreSQL and Redis, KL_WORKERS=SHARDS) loads them: POST
# /streams/<stream>/loads, GET /jobs/<id> until succeeded. Prints, per run:
#   - messages/s end to end (from the POST to the poll that sees succeeded),
#     each run into a fresh dataset; the table must hold exactly RECORDS rows
#     (RECORDS distinct _kinesis_msg_id) and row_counts must say so;
#   - with wrk hammering GET /jobs/<id> during the load (WRK_SECONDS, -t
#     WRK_THREADS -c WRK_CONNECTIONS): req/s and latency percentiles, goal
#     >= 10,000 req/s (printed as a ratio), and the load's own rate under it;
#   - `kinesis-loader read` of the same stream (records/s), so that the cost
#     of loading against reading shows (ratio).
# Fails only on wrong results (row counts, failed jobs, HTTP errors under
# wrk), never on a time figure. The machine's cores are shared by the
# emulator, PostgreSQL, Redis, the service and wrk: figures are noisy.
#
# Environment: RECORDS (200000), SHARDS (4), PARTITION_KEYS (256: an even
#   spread over 4 shards; kinesalite hashes keys with MD5 as AWS does),
#   PAD (40: characters of "pad"), RUNS (3: loads without wrk, and reads),
#   WRK_RUNS (2: loads with wrk), WRK_SECONDS (5), WRK_THREADS (2),
#   WRK_CONNECTIONS (32), KL_BIN (build/kinesis-loader), BENCH_KEEP=1 (keep
#   the datasets and the stream), BENCH_REDIS=0 (the service keeps its
#   state in the process instead of Redis).
# Needs the services of scripts/services.sh (make bench starts them).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
: "${KL_TEST_KINESALITE_URL:?source .run/services.env first (make bench does)}"
: "${KL_TEST_PG_URL:?source .run/services.env first}"
: "${KL_TEST_REDIS_URL:?source .run/services.env first}"
RECORDS=${RECORDS:-200000}
SHARDS=${SHARDS:-4}
PARTITION_KEYS=${PARTITION_KEYS:-256}
PAD=${PAD:-40}
RUNS=${RUNS:-3}
WRK_RUNS=${WRK_RUNS:-2}
WRK_SECONDS=${WRK_SECONDS:-5}
WRK_THREADS=${WRK_THREADS:-2}
WRK_CONNECTIONS=${WRK_CONNECTIONS:-32}
WRK_GOAL=10000
BIN=${KL_BIN:-build/kinesis-loader}
STREAM="kl-bench-e2e-$$"
TABLE=events
export AWS_ENDPOINT_URL_KINESIS=$KL_TEST_KINESALITE_URL AWS_ACCESS_KEY_ID=AKIDBENCH \
    AWS_SECRET_ACCESS_KEY=bench AWS_REGION=us-east-1 NODE_PATH="$ROOT/tests/node_modules" \
    NODE_NO_WARNINGS=1
# shellcheck source=bench/lib/common.sh
source bench/lib/common.sh
command -v wrk >/dev/null || { echo "wrk is missing (scripts/install-deps.sh installs it)" >&2; exit 1; }
[ -x "$BIN" ] || { echo "no $BIN: build first (make build) or set KL_BIN" >&2; exit 1; }

datasets=()
tools=tests/tools
trap bench_cleanup EXIT

node $tools/create-stream.js --stream "$STREAM" --shards "$SHARDS" >/dev/null
echo "putting $RECORDS records into $SHARDS shards of $STREAM (kinesalite) ..."
put_json=$(node $tools/put-records.js --stream "$STREAM" --count "$RECORDS" \
    --partition-keys "$PARTITION_KEYS" --pad "$PAD")
put_rate=$(calc "$RECORDS / $(json_get "$put_json" 'j.elapsed_ms') * 1000")
spread=$(json_get "$put_json" 'Object.keys(j.shards).sort().map((s) => j.shards[s].count).join("/")')
printf 'put: %.0f records/s (PutRecords, 500 a call); records per shard: %s\n' "$put_rate" "$spread"

# kinesis-loader read, for comparison
read_rates=()
for run in $(seq "$RUNS"); do
    start=$(date +%s.%N)
    lines=$("$BIN" read "$STREAM" --concurrency "$SHARDS" 2>/dev/null | wc -l)
    end=$(date +%s.%N)
    [ "$lines" -eq "$RECORDS" ] || { echo "kinesis-loader read printed $lines of $RECORDS lines" >&2; exit 1; }
    rate=$(calc "$lines / ($end - $start)")
    read_rates+=("$rate")
    printf 'read run %d: %8.0f records/s\n' "$run" "$rate"
done

service_start "$KL_TEST_KINESALITE_URL" "$SHARDS"
echo "service: $SERVICE_URL, KL_WORKERS=$SHARDS, PostgreSQL, state: $SERVICE_STATE"

# one_load NAME WRK_SECONDS: a job into a fresh dataset; checks the rows.
# Sets LOAD_JSON.
one_load() {
    local dataset="bench_e2e_$$_$1" counts
    datasets+=("$dataset")
    LOAD_JSON=$(node bench/lib/loadjob.js --base "$SERVICE_URL" --stream "$STREAM" \
        --body "{\"pipeline_name\":\"$dataset\",\"dataset_name\":\"$dataset\",\"table_name\":\"$TABLE\",\"initial_at_timestamp\":null,\"milliseconds_behind_latest\":0}" \
        --table "$TABLE" --expect "$RECORDS" --wrk-seconds "$2" --wrk-threads "$WRK_THREADS" \
        --wrk-connections "$WRK_CONNECTIONS") || { echo "load $1 failed: $LOAD_JSON" >&2; return 1; }
    counts=$(pg_counts "$dataset" "$TABLE")
    if [ "$counts" != "$RECORDS $RECORDS" ]; then
        echo "load $1: $dataset.$TABLE holds $counts (rows, distinct ids), not $RECORDS" >&2
        return 1
    fi
    pg_drop "$dataset"
}

load_rates=()
for run in $(seq "$RUNS"); do
    one_load "$run" 0
    s=$(json_get "$LOAD_JSON" 'j.seconds')
    rate=$(calc "$RECORDS / $s")
    load_rates+=("$rate")
    printf 'load run %d: %8.0f messages/s (%.2f s POST to succeeded, %.2f s in the job; %d rows checked)\n' \
        "$run" "$rate" "$s" "$(json_get "$LOAD_JSON" 'j.server_seconds')" "$RECORDS"
done

wrk_rps=() wrk_p50=() wrk_p99=() wrk_load_rates=()
for run in $(seq "$WRK_RUNS"); do
    one_load "wrk$run" "$WRK_SECONDS"
    err=$(json_get "$LOAD_JSON" 'j.wrk.error || ""')
    [ -z "$err" ] || { echo "$err" >&2; exit 1; }
    bad=$(json_get "$LOAD_JSON" 'Object.values(j.wrk.errors).reduce((a, b) => a + b, 0)')
    if [ "$bad" -ne 0 ]; then
        echo "wrk saw errors: $(json_get "$LOAD_JSON" 'j.wrk.errors')" >&2
        exit 1
    fi
    s=$(json_get "$LOAD_JSON" 'j.seconds')
    rate=$(calc "$RECORDS / $s")
    rps=$(json_get "$LOAD_JSON" 'j.wrk.rps')
    wrk_rps+=("$rps")
    wrk_p50+=("$(json_get "$LOAD_JSON" 'j.wrk.latency_ms.p50')")
    wrk_p99+=("$(json_get "$LOAD_JSON" 'j.wrk.latency_ms.p99')")
    wrk_load_rates+=("$rate")
    printf 'wrk run %d: GET /jobs/{id} %8.0f req/s, latency p50 %s ms p90 %s ms p99 %s ms max %s ms (%s s of %s s during the load); load %8.0f messages/s meanwhile\n' \
        "$run" "$rps" "${wrk_p50[-1]}" "$(json_get "$LOAD_JSON" 'j.wrk.latency_ms.p90')" "${wrk_p99[-1]}" \
        "$(json_get "$LOAD_JSON" 'j.wrk.latency_ms.max')" "$(json_get "$LOAD_JSON" 'j.wrk_during_load')" \
        "$WRK_SECONDS" "$rate"
done

best_read=$(printf '%s\n' "${read_rates[@]}" | sort -g | tail -1)
best_load=$(printf '%s\n' "${load_rates[@]}" | sort -g | tail -1)
echo
printf 'service end to end: %d messages, %d kinesalite shards (%s), KL_WORKERS=%d, state: %s, best of %d (median)\n' \
    "$RECORDS" "$SHARDS" "$spread" "$SHARDS" "$SERVICE_STATE" "$RUNS"
printf '  %-44s %10s %10s\n' "" "best" "median"
printf '  %-44s %10.0f %10.0f\n' "kinesis-loader read, records/s" "$best_read" "$(median "${read_rates[@]}")"
printf '  %-44s %10.0f %10.0f\n' "service load (POST to succeeded), messages/s" "$best_load" "$(median "${load_rates[@]}")"
if [ "$WRK_RUNS" -gt 0 ]; then
    best_rps=$(printf '%s\n' "${wrk_rps[@]}" | sort -g | tail -1)
    printf '  %-44s %10.0f %10.0f\n' "  the same under wrk, messages/s" \
        "$(printf '%s\n' "${wrk_load_rates[@]}" | sort -g | tail -1)" "$(median "${wrk_load_rates[@]}")"
    printf '  %-44s %10.0f %10.0f\n' "GET /jobs/{id} during a load (wrk), req/s" "$best_rps" "$(median "${wrk_rps[@]}")"
    printf '  %-44s %10.2f %10.2f\n' "  latency p50, ms" "$(printf '%s\n' "${wrk_p50[@]}" | sort -g | head -1)" "$(median "${wrk_p50[@]}")"
    printf '  %-44s %10.2f %10.2f\n' "  latency p99, ms" "$(printf '%s\n' "${wrk_p99[@]}" | sort -g | head -1)" "$(median "${wrk_p99[@]}")"
fi
printf '  ratio load / read: %.2f (what loading into PostgreSQL costs over reading)\n' "$(calc "$best_load / $best_read")"
if [ "$WRK_RUNS" -gt 0 ]; then
    printf '  ratio GET /jobs/{id} req/s / %d: %.2f (goal >= 1.00; wrk -t%d -c%d)\n' "$WRK_GOAL" \
        "$(calc "$best_rps / $WRK_GOAL")" "$WRK_THREADS" "$WRK_CONNECTIONS"
fi
