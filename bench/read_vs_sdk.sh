#!/usr/bin/env bash
# Benchmark: `kinesis-loader read` against a bare AWS JS SDK read loop on the
# same 200k-record, 4-shard kinesalite stream. Prints both rates (records/s)
# and their ratio (goal >= 0.9). Each side runs RUNS times; the best counts.
# Needs the services of scripts/services.sh (make bench starts them).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
: "${KL_TEST_KINESALITE_URL:?source .run/services.env first (make bench does)}"
RECORDS=${RECORDS:-200000}
SHARDS=${SHARDS:-4}
RUNS=${RUNS:-3}
BIN=${KL_BIN:-build/kinesis-loader}
STREAM="kl-bench-read-$$"
export AWS_ENDPOINT_URL_KINESIS=$KL_TEST_KINESALITE_URL AWS_ACCESS_KEY_ID=AKIDBENCH \
    AWS_SECRET_ACCESS_KEY=bench AWS_REGION=us-east-1 NODE_PATH="$ROOT/tests/node_modules" \
    NODE_NO_WARNINGS=1

tools=tests/tools
node $tools/create-stream.js --stream "$STREAM" --shards "$SHARDS" >/dev/null
trap 'node $tools/delete-stream.js --stream "$STREAM" >/dev/null 2>&1 || true' EXIT
echo "putting $RECORDS records into $SHARDS shards of $STREAM ..."
node $tools/put-records.js --stream "$STREAM" --count "$RECORDS" --partition-keys 1000 >/dev/null

best_ours=0
best_sdk=0
for run in $(seq "$RUNS"); do
    start=$(date +%s.%N)
    lines=$("$BIN" read "$STREAM" --concurrency "$SHARDS" 2>/dev/null | wc -l)
    end=$(date +%s.%N)
    ours=$(echo "$lines / ($end - $start)" | bc -l)
    [ "$lines" -eq "$RECORDS" ] || { echo "kinesis-loader read printed $lines of $RECORDS" >&2; exit 1; }
    sdk_json=$(node bench/sdk-read.js "$KL_TEST_KINESALITE_URL" "$STREAM" 1000)
    sdk=$(node -e "const r=JSON.parse(process.argv[1]); if (r.records !== $RECORDS) process.exit(1); console.log(r.records / r.seconds)" "$sdk_json")
    printf 'run %d: kinesis-loader read %8.0f records/s   aws-sdk loop %8.0f records/s\n' "$run" "$ours" "$sdk"
    best_ours=$(echo "if ($ours > $best_ours) $ours else $best_ours" | bc -l)
    best_sdk=$(echo "if ($sdk > $best_sdk) $sdk else $best_sdk" | bc -l)
done
ratio=$(echo "$best_ours / $best_sdk" | bc -l)
printf 'read %d records over %d shards from kinesalite (best of %d)\n' "$RECORDS" "$SHARDS" "$RUNS"
printf '  kinesis-loader read (parses JSON, prints lines): %8.0f records/s\n' "$best_ours"
printf '  AWS JS SDK bare GetRecords loop:                 %8.0f records/s\n' "$best_sdk"
printf '  ratio: %.2f (goal >= 0.90)\n' "$ratio"
