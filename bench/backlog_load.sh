#!/usr/bin/env bash
# Benchmark: one job loads a whole backlog with the default parameters. RECORDS
# dlt-shaped messages (put-records.js --shape dlt: a nested order, about 4.5
# rows each) go into a SHARDS-shard kinesalite stream. kinesalite reports
# MillisBehindLatest 0 on every page, so a job that trusted that alone would
# load one page per shard. `kinesis-loader serve` (the local PostgreSQL and
# Redis) loads the stream with one POST /streams/<stream>/loads whose body
# sets nothing but the start (`initial_at_timestamp: null`, the stream's
# beginning) and the dataset: milliseconds_behind_latest 1000, chunk_size
# 1000. Prints, per run:
#   - the bare AWS JS SDK GetRecords loop over the same stream (records/s);
#   - the job: messages/s from the POST to succeeded; the root table must hold
#     exactly RECORDS rows (distinct _kinesis_msg_id) and row_counts say so;
#   - the ratio of the two (goal >= 0.9: loading costs little over reading,
#     kinesalite is the limit);
#   - the CPU seconds kinesalite, PostgreSQL and the service spent in the job,
#     so that a ratio below the goal says where the cores went (on a 2-core
#     machine kinesalite, one single-threaded process, needs one of them).
# Fails only on wrong results (a job that loaded less, rows doubled), never
# on a time figure.
#
# Environment: RECORDS (100000), SHARDS (2), PARTITION_KEYS (256), RUNS (3),
#   KL_BIN (build/kinesis-loader), BENCH_KEEP=1 (keep datasets and stream),
#   BENCH_REDIS=0 (state in the process).
# Needs the services of scripts/services.sh (make bench starts them).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
: "${KL_TEST_KINESALITE_URL:?source .run/services.env first (make bench does)}"
: "${KL_TEST_PG_URL:?source .run/services.env first}"
: "${KL_TEST_REDIS_URL:?source .run/services.env first}"
RECORDS=${RECORDS:-100000}
SHARDS=${SHARDS:-2}
PARTITION_KEYS=${PARTITION_KEYS:-256}
RUNS=${RUNS:-3}
BIN=${KL_BIN:-build/kinesis-loader}
STREAM="kl-bench-backlog-$$"
TABLE=orders
GOAL=0.9
export AWS_ENDPOINT_URL_KINESIS=$KL_TEST_KINESALITE_URL AWS_ACCESS_KEY_ID=AKIDBENCH \
    AWS_SECRET_ACCESS_KEY=bench AWS_REGION=us-east-1 NODE_PATH="$ROOT/tests/node_modules" \
    NODE_NO_WARNINGS=1
# shellcheck source=bench/lib/common.sh
source bench/lib/common.sh
[ -x "$BIN" ] || { echo "no $BIN: build first (make build) or set KL_BIN" >&2; exit 1; }

datasets=()
tools=tests/tools
trap bench_cleanup EXIT

node $tools/create-stream.js --stream "$STREAM" --shards "$SHARDS" >/dev/null
echo "putting $RECORDS dlt-shaped records into $SHARDS shards of $STREAM (kinesalite) ..."
put_json=$(node $tools/put-records.js --stream "$STREAM" --count "$RECORDS" \
    --partition-keys "$PARTITION_KEYS" --shape dlt)
spread=$(json_get "$put_json" 'Object.keys(j.shards).sort().map((s) => j.shards[s].count).join("/")')
echo "records per shard: $spread"

service_start "$KL_TEST_KINESALITE_URL"
echo "service: $SERVICE_URL, KL_WORKERS=4, PostgreSQL, state: $SERVICE_STATE"

kinesalite_pid=$(cat "${KL_RUN_DIR:-.run}/kinesalite.pid" 2>/dev/null || echo)

sdk_rates=() load_rates=()
for run in $(seq "$RUNS"); do
    sdk_json=$(node bench/sdk-read.js "$KL_TEST_KINESALITE_URL" "$STREAM" 1000)
    [ "$(json_get "$sdk_json" 'j.records')" -eq "$RECORDS" ] ||
        { echo "the SDK loop read $(json_get "$sdk_json" 'j.records') of $RECORDS" >&2; exit 1; }
    sdk=$(calc "$RECORDS / $(json_get "$sdk_json" 'j.seconds')")
    sdk_rates+=("$sdk")

    dataset="bench_backlog_$$_$run"
    datasets+=("$dataset")
    pg_pids=$(pgrep -u postgres | tr '\n' ' ')
    # shellcheck disable=SC2086 # word splitting: a list of PIDs
    cpu_before=("$(cpu_s $kinesalite_pid)" "$(cpu_s $pg_pids)" "$(cpu_s "$SERVICE_PID")")
    load_json=$(node bench/lib/loadjob.js --base "$SERVICE_URL" --stream "$STREAM" \
        --body "{\"pipeline_name\":\"$dataset\",\"dataset_name\":\"$dataset\",\"table_name\":\"$TABLE\",\"initial_at_timestamp\":null}" \
        --table "$TABLE" --expect "$RECORDS") ||
        { echo "run $run: the job did not load all $RECORDS messages: $load_json" >&2; exit 1; }
    counts=$(pg_counts "$dataset" "$TABLE")
    [ "$counts" = "$RECORDS $RECORDS" ] ||
        { echo "run $run: $dataset.$TABLE holds $counts (rows, distinct ids), not $RECORDS" >&2; exit 1; }
    pg_pids=$(pgrep -u postgres | tr '\n' ' ')
    # shellcheck disable=SC2086
    cpu_line=$(printf 'CPU s in the job: kinesalite %.1f, PostgreSQL %.1f, kinesis-loader %.1f' \
        "$(calc "$(cpu_s $kinesalite_pid) - ${cpu_before[0]}")" \
        "$(calc "$(cpu_s $pg_pids) - ${cpu_before[1]}")" \
        "$(calc "$(cpu_s "$SERVICE_PID") - ${cpu_before[2]}")")
    rows=$(json_get "$load_json" 'Object.entries(j.row_counts).filter(([t]) => !t.startsWith("_dlt")).reduce((a, [, n]) => a + n, 0)')
    s=$(json_get "$load_json" 'j.seconds')
    rate=$(calc "$RECORDS / $s")
    load_rates+=("$rate")
    printf 'run %d: SDK loop %8.0f records/s   one job %8.0f messages/s (%.2f s, %d rows in all tables, %d root rows checked; %s)\n' \
        "$run" "$sdk" "$rate" "$s" "$rows" "$RECORDS" "$cpu_line"
    pg_drop "$dataset"
done

best_sdk=$(printf '%s\n' "${sdk_rates[@]}" | sort -g | tail -1)
best_load=$(printf '%s\n' "${load_rates[@]}" | sort -g | tail -1)
echo
printf 'backlog in one job: %d dlt-shaped messages, %d kinesalite shards (%s), default parameters, best of %d (median)\n' \
    "$RECORDS" "$SHARDS" "$spread" "$RUNS"
printf '  %-40s %10s %10s\n' "" "best" "median"
printf '  %-40s %10.0f %10.0f\n' "AWS JS SDK GetRecords loop, records/s" "$best_sdk" "$(median "${sdk_rates[@]}")"
printf '  %-40s %10.0f %10.0f\n' "one job, POST to succeeded, messages/s" "$best_load" "$(median "${load_rates[@]}")"
printf '  ratio job / SDK read: %.2f (goal >= %s)\n' "$(calc "$best_load / $best_sdk")" "$GOAL"
