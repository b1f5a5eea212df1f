#!/usr/bin/env bash
# Benchmark: continuous loads on kinesalite, with a producer writing the
# whole time. Two scenarios, each into a fresh stream and dataset:
#   (a) "latency": SHARDS_A (8) shards, RATE_A (2000) messages/s for SECONDS
#       (60), REPLICAS_A (2) replicas of `kinesis-loader serve` sharing
#       Redis, KL_WORKERS=WORKERS (4) each. Prints p50 and p99 of
#       arrival-to-commit latency from the replicas' summed
#       kl_record_commit_latency_seconds histograms (interpolated within a
#       bucket, as Prometheus' histogram_quantile does), against the goal
#       poll_interval_ms + max_commit_delay_ms + 500 ms.
#   (b) "wide": SHARDS_B (64) shards, RATE_B (1000) messages/s in all, one
#       replica with KL_WORKERS=WORKERS. Prints every shard's lag: once a
#       second while the producer writes, the age of the newest committed
#       record of each shard (now - max(_kinesis__ts) in PostgreSQL); the
#       worst sample of the worst shard, and the p99 over all samples,
#       against the goal of 2 s.
# Both: one continuous job (POST /streams/<stream>/loads with "continuous":
# true, poll_interval_ms POLL_MS (1000), initial_at_timestamp null), the
# producer tests/tools/put-records.js on a fixed beat of 20 calls a second;
# once it stops, the job must catch up to every message exactly once (the
# table's distinct _kinesis_msg_id), and cancel must end it `cancelled`.
# Fails only on wrong results, never on a time figure. The machine's cores
# are shared by kinesalite, the producer, PostgreSQL, Redis and the
# services: figures are noisy.
#
# Environment: SECONDS_RUN (60), POLL_MS (1000), WORKERS (4), SHARDS_A,
#   RATE_A, REPLICAS_A, SHARDS_B, RATE_B, SCENARIOS ("latency wide"),
#   KL_BIN (build/kinesis-loader), BENCH_KEEP=1 (keep datasets and streams).
# Needs the services of scripts/services.sh (make bench starts them).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
: "${KL_TEST_KINESALITE_URL:?source .run/services.env first (make bench does)}"
: "${KL_TEST_PG_URL:?source .run/services.env first}"
: "${KL_TEST_REDIS_URL:?source .run/services.env first}"
SECONDS_RUN=${SECONDS_RUN:-60}
POLL_MS=${POLL_MS:-1000}
COMMIT_DELAY_MS=1000
WORKERS=${WORKERS:-4}
SHARDS_A=${SHARDS_A:-8}
RATE_A=${RATE_A:-2000}
REPLICAS_A=${REPLICAS_A:-2}
SHARDS_B=${SHARDS_B:-64}
RATE_B=${RATE_B:-1000}
SCENARIOS=${SCENARIOS:-latency wide}
BIN=${KL_BIN:-build/kinesis-loader}
LAG_GOAL_MS=2000
CALLS_PER_S=20
export AWS_ENDPOINT_URL_KINESIS=$KL_TEST_KINESALITE_URL AWS_ACCESS_KEY_ID=AKIDBENCH \
    AWS_SECRET_ACCESS_KEY=bench AWS_REGION=us-east-1 NODE_NO_WARNINGS=1 NODE_PATH="$ROOT/tests/node_modules"
# shellcheck source=bench/lib/common.sh
source bench/lib/common.sh
[ -x "$BIN" ] || { echo "no $BIN: build first (make build) or set KL_BIN" >&2; exit 1; }

tools=tests/tools
datasets=()
streams=()
pids=()
logs=()
producer=
cleanup() {
    if [ -n "$producer" ]; then kill "$producer" 2>/dev/null || true; fi
    stop_replicas
    for d in "${datasets[@]}"; do pg_drop "$d"; done
    if [ "${BENCH_KEEP:-0}" != 1 ]; then
        for s in "${streams[@]}"; do node $tools/delete-stream.js --stream "$s" >/dev/null 2>&1 || true; done
    fi
}
trap cleanup EXIT

# start_replicas N: N services sharing Redis; their URLs in urls[].
start_replicas() {
    urls=()
    for _ in $(seq "$1"); do
        service_start "$KL_TEST_KINESALITE_URL" "$WORKERS"
        pids+=("$SERVICE_PID")
        logs+=("$SERVICE_LOG")
        urls+=("$SERVICE_URL")
    done
}

stop_replicas() {
    local i
    for i in "${!pids[@]}"; do
        SERVICE_PID=${pids[$i]} SERVICE_LOG=${logs[$i]} service_stop
    done
    pids=()
    logs=()
}

# latency_quantiles URL...: "p50_ms p99_ms count" of the summed
# kl_record_commit_latency_seconds histograms of the services.
latency_quantiles() {
    local u
    for u in "$@"; do curl -sf "$u/metrics"; done | node -e '
        const lines = require("fs").readFileSync(0, "utf8").split("\n");
        const buckets = new Map();
        for (const l of lines) {
            const m = /^kl_record_commit_latency_seconds_bucket\{le="([^"]+)"\} (\d+)/.exec(l);
            if (m) buckets.set(m[1], (buckets.get(m[1]) || 0) + Number(m[2]));
        }
        const les = [...buckets.keys()].map((k) => (k === "+Inf" ? Infinity : Number(k))).sort((a, b) => a - b);
        const cum = les.map((le) => buckets.get(le === Infinity ? "+Inf" : String(le)));
        const total = cum[cum.length - 1] || 0;
        const q = (p) => {
            const rank = p * total;
            for (let i = 0; i < les.length; i++) {
                if (cum[i] >= rank) {
                    const lo = i ? les[i - 1] : 0, below = i ? cum[i - 1] : 0;
                    if (les[i] === Infinity) return lo * 1000;
                    return (lo + (les[i] - lo) * ((rank - below) / Math.max(1, cum[i] - below))) * 1000;
                }
            }
            return NaN;
        };
        console.log(`${q(0.5).toFixed(0)} ${q(0.99).toFixed(0)} ${total}`);'
}

# shard_ages DATASET TABLE: "shard age_ms" lines, the age of each shard's
# newest committed record.
shard_ages() {
    psql "$KL_TEST_PG_URL" -X -Atq -F ' ' -c "SELECT _kinesis__shard_id,
        round(extract(epoch FROM clock_timestamp() - max(_kinesis__ts)) * 1000)
        FROM \"$1\".\"$2\" GROUP BY 1" 2>/dev/null || true
}

# job_messages URL JOB: what GET /jobs/JOB says was committed.
job_messages() {
    json_get "$(curl -sf "$1/jobs/$2")" 'j.progress.messages'
}

# run_scenario NAME SHARDS RATE REPLICAS
run_scenario() {
    local name=$1 shards=$2 rate=$3 replicas=$4
    local stream="kl-bench-cont-$name-$$" dataset="bench_cont_${name}_$$" table total batch job
    local t0 samples=() worst=0 worst_shard="" deadline got
    table=${stream//-/_}
    streams+=("$stream")
    datasets+=("$dataset")
    total=$((rate * SECONDS_RUN))
    batch=$((rate / CALLS_PER_S))
    node $tools/create-stream.js --stream "$stream" --shards "$shards" >/dev/null
    redis-cli -u "$KL_TEST_REDIS_URL" FLUSHALL >/dev/null
    start_replicas "$replicas"
    printf '\n%s: %d shards, %d messages/s for %d s, %d replica(s) with KL_WORKERS=%d, poll_interval_ms %d\n' \
        "$name" "$shards" "$rate" "$SECONDS_RUN" "$replicas" "$WORKERS" "$POLL_MS"
    job=$(curl -sf -X POST "${urls[0]}/streams/$stream/loads" -H 'Content-Type: application/json' \
        -d "{\"pipeline_name\":\"$dataset\",\"dataset_name\":\"$dataset\",\"table_name\":\"$table\",\"initial_at_timestamp\":null,\"continuous\":true,\"poll_interval_ms\":$POLL_MS}")
    job=$(json_get "$job" 'j.id')
    sleep 2
    t0=$(date +%s.%N)
    node $tools/put-records.js --stream "$stream" --count "$total" --batch "$batch" \
        --interval-ms $((1000 / CALLS_PER_S)) --partition-keys $((shards * 16)) >/dev/null &
    producer=$!
    # once a second while the producer writes (after 5 s of warm-up): each shard's age
    while kill -0 "$producer" 2>/dev/null; do
        sleep 1
        if [ "$(calc "$(date +%s.%N) - $t0 > 5")" = 1 ]; then
            while read -r shard age; do
                [ -n "$age" ] || continue
                samples+=("$age")
                if [ "$age" -gt "$worst" ]; then worst=$age worst_shard=$shard; fi
            done < <(shard_ages "$dataset" "$table")
        fi
    done
    wait "$producer" || { echo "$name: the producer failed" >&2; exit 1; }
    producer=
    printf '  produced %d messages in %.1f s (%.0f/s)\n' "$total" "$(calc "$(date +%s.%N) - $t0")" \
        "$(calc "$total / ($(date +%s.%N) - $t0)")"
    deadline=$(($(date +%s) + 120))
    got=0
    while [ "$(date +%s)" -lt "$deadline" ]; do
        got=$(job_messages "${urls[0]}" "$job")
        [ "$got" -ge "$total" ] && break
        sleep 0.5
    done
    [ "$got" -eq "$total" ] || { echo "$name: the job committed $got of $total messages" >&2; exit 1; }
    counts=$(pg_counts "$dataset" "$table")
    [ "$counts" = "$total $total" ] ||
        { echo "$name: $dataset.$table holds $counts (rows, distinct ids), not $total" >&2; exit 1; }
    read -r p50 p99 n <<<"$(latency_quantiles "${urls[@]}")"
    curl -sf -X POST "${urls[0]}/jobs/$job/cancel" >/dev/null
    for _ in $(seq 100); do
        [ "$(json_get "$(curl -sf "${urls[0]}/jobs/$job")" 'j.status')" = cancelled ] && break
        sleep 0.1
    done
    [ "$(json_get "$(curl -sf "${urls[0]}/jobs/$job")" 'j.status')" = cancelled ] ||
        { echo "$name: the job did not end cancelled" >&2; exit 1; }
    stop_replicas
    printf '  every message once: %d rows, %d distinct ids\n' "$total" "$total"
    printf '  arrival to commit (%d messages): p50 %d ms, p99 %d ms (goal p99 <= %d ms)\n' "$n" "$p50" "$p99" \
        $((POLL_MS + COMMIT_DELAY_MS + 500))
    if [ "${#samples[@]}" -gt 0 ]; then
        printf '  shard lag (age of the newest committed record, %d samples over %d shards): p99 %d ms, worst %d ms (%s); goal < %d ms\n' \
            "${#samples[@]}" "$shards" "$(printf '%s\n' "${samples[@]}" | sort -n | awk '{ a[NR] = $1 } END { i = int(NR * 0.99); if (i < 1) i = 1; print a[i] }')" \
            "$worst" "$worst_shard" "$LAG_GOAL_MS"
    fi
    summary+=("$(printf '  %-8s %6d %8d %8d %8d %8d %8d' "$name" "$shards" "$rate" "$replicas" "$p50" "$p99" "$worst")")
}

summary=()
for s in $SCENARIOS; do
    case $s in
        latency) run_scenario latency "$SHARDS_A" "$RATE_A" "$REPLICAS_A" ;;
        wide) run_scenario wide "$SHARDS_B" "$RATE_B" 1 ;;
        *) echo "unknown scenario $s (latency, wide)" >&2; exit 2 ;;
    esac
done
echo
printf 'continuous loads on kinesalite, KL_WORKERS=%d, poll_interval_ms %d, %d s of producing\n' "$WORKERS" "$POLL_MS" "$SECONDS_RUN"
printf '  %-8s %6s %8s %8s %8s %8s %8s\n' scenario shards "msgs/s" replicas "p50 ms" "p99 ms" "lag max"
printf '%s\n' "${summary[@]}"
printf '  goals: p99 <= %d ms (poll + commit delay + 500 ms); every shard lag < %d ms\n' \
    $((POLL_MS + COMMIT_DELAY_MS + 500)) "$LAG_GOAL_MS"
