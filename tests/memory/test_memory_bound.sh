#!/usr/bin/env bash
# test_memory_bound: a load's memory is bounded by KL_MEMORY_MAX, not by the
# size of a GetRecords page. `kinesis-loader load` (4 workers, the default
# KL_MEMORY_MAX of 40 MiB, chunk_size 10000, milliseconds_behind_latest 0
# so that short pages do not end a shard, state in the process) loads
# from the replay endpoint (bench/replay/server.js) into the local
# PostgreSQL:
#   - 10 MiB records (Kinesis' largest), two per shard on 4 shards: every
#     one arrives whole;
#   - 10000-record pages of dlt-shaped messages, 4 shards x 20000: every
#     message once;
#   - the same with KL_MEMORY_MAX at its least (8 MiB), where every reader
#     waits for the page before it: the load still ends, every message once;
# and the process's peak RSS (getrusage of the child) stays within 64 MiB
# each time. Before pages were parsed as they arrive and held under
# KL_MEMORY_MAX, the same loads peaked at 120 to 210 MiB.
#
# usage: test_memory_bound.sh BINARY [SANITIZED]
#   SANITIZED ON: a sanitizer build, whose RSS says nothing; only the rows
#   are checked.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
BIN=$1
SANITIZED=${2:-OFF}
LIMIT_MIB=64
: "${KL_TEST_PG_URL:?source .run/services.env first (make test does)}"
export PGOPTIONS='-c client_min_messages=warning'
export AWS_ACCESS_KEY_ID=AKIDTEST AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1

replay_pid=
dataset=
out=$(mktemp "${TMPDIR:-/tmp}/kl-memtest.XXXXXX")
cleanup() {
    [ -n "$replay_pid" ] && kill "$replay_pid" 2>/dev/null && wait "$replay_pid" 2>/dev/null
    [ -n "$dataset" ] && psql -q "$KL_TEST_PG_URL" -c "DROP SCHEMA IF EXISTS $dataset CASCADE" \
        >/dev/null 2>&1
    rm -f "$out" "$out.load"
}
trap cleanup EXIT

fail() {
    echo "test_memory_bound: $*" >&2
    exit 1
}

# replay ARGS...: starts the endpoint; sets ENDPOINT.
replay() {
    : >"$out"
    node bench/replay/server.js --port 0 --stream memtest "$@" >"$out" 2>&1 &
    replay_pid=$!
    for _ in $(seq 1200); do
        [ -s "$out" ] && break
        kill -0 "$replay_pid" 2>/dev/null || break
        sleep 0.05
    done
    port=$(node -e 'console.log(JSON.parse(process.argv[1]).port)' "$(head -1 "$out")") ||
        fail "the replay endpoint did not start: $(cat "$out")"
    ENDPOINT="http://127.0.0.1:$port"
}

# load NAME: runs `kinesis-loader load` into dataset NAME; sets PEAK_MIB.
load() {
    dataset=$1
    PEAK_MIB=$(AWS_ENDPOINT_URL_KINESIS=$ENDPOINT DATABASE_URL=$KL_TEST_PG_URL REDIS_URL= \
        KL_LOG_LEVEL=warn python3 -c '
import resource, subprocess, sys
with open(sys.argv[1], "w") as log:
    rc = subprocess.run(sys.argv[2:], stdout=log, stderr=subprocess.STDOUT).returncode
print(rc, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024)
' "$out.load" "$BIN" load memtest --dataset-name "$dataset" --pipeline-name "$dataset" \
        --chunk-size 10000 --initial-at-timestamp null --milliseconds-behind-latest 0 \
        --timeout 300)
    local rc=${PEAK_MIB% *}
    PEAK_MIB=${PEAK_MIB#* }
    [ "$rc" = 0 ] || fail "the load into $dataset failed ($rc): $(tail -20 "$out.load")"
    kill "$replay_pid" 2>/dev/null
    wait "$replay_pid" 2>/dev/null || true
    replay_pid=
}

sql() {
    psql -qtAX "$KL_TEST_PG_URL" -c "$1"
}

check_peak() {
    echo "test_memory_bound: $1: peak RSS $PEAK_MIB MiB"
    if [ "$SANITIZED" != ON ] && [ "$PEAK_MIB" -gt "$LIMIT_MIB" ]; then
        fail "$1: peak RSS $PEAK_MIB MiB is over $LIMIT_MIB MiB"
    fi
}

# 10 MiB records: the body {"id","name","pad"} with a pad of 10 MiB less a
# little, so that the record is just under Kinesis' 10 MiB.
pad=$((10 * 1024 * 1024 - 64))
replay --shards 4 --records 2 --page 10000 --pad "$pad"
load kl_memtest_big_$$
got=$(sql "SELECT count(*), count(DISTINCT _kinesis_msg_id), min(length(pad)), max(length(pad))
           FROM $dataset.memtest")
[ "$got" = "8|8|$pad|$pad" ] || fail "10 MiB records: rows|ids|min|max length = $got"
check_peak "eight 10 MiB records"
sql "DROP SCHEMA $dataset CASCADE" >/dev/null

# 10000-record pages of nested messages (about 4.5 rows each).
replay --shards 4 --records 20000 --page 10000 --shape dlt
load kl_memtest_pages_$$
got=$(sql "SELECT count(*), count(DISTINCT _kinesis_msg_id) FROM $dataset.memtest")
[ "$got" = "80000|80000" ] || fail "10000-record pages: rows|ids = $got"
check_peak "80000 messages in 10000-record pages"
sql "DROP SCHEMA $dataset CASCADE" >/dev/null

# The smallest budget: no page fits beside another, so every GetRecords
# waits for the page before it to be loaded; the load still ends, whole.
replay --shards 4 --records 5000 --page 10000 --shape dlt
KL_MEMORY_MAX=8MiB load kl_memtest_small_$$
got=$(sql "SELECT count(*), count(DISTINCT _kinesis_msg_id) FROM $dataset.memtest")
[ "$got" = "20000|20000" ] || fail "KL_MEMORY_MAX 8 MiB: rows|ids = $got"
check_peak "KL_MEMORY_MAX 8 MiB"
echo "test_memory_bound: ok"
