# shellcheck shell=bash
# Shared by the service benchmarks (sourced, not run): starting and stopping
# a `kinesis-loader serve` and a replay endpoint of their own, counting rows
# and listing tables in PostgreSQL, CPU time and peak RSS of processes, small
# number helpers. Needs KL_TEST_PG_URL and KL_TEST_REDIS_URL
# (.run/services.env) and BIN (the kinesis-loader binary).

# A free TCP port on the loopback interface.
bench_free_port() {
    node -e 'const s = require("net").createServer().listen(0, "127.0.0.1", () => {
        console.log(s.address().port); s.close(); });'
}

# service_start ENDPOINT [WORKERS]: runs `kinesis-loader serve` against the
# Kinesis endpoint ENDPOINT with the local PostgreSQL and Redis (with
# BENCH_REDIS=0 the state stays in the process); waits until /readyz answers
# 200. Sets SERVICE_PID, SERVICE_URL, SERVICE_LOG and SERVICE_STATE.
# shellcheck disable=SC2034 # SERVICE_STATE is for the caller
service_start() {
    local endpoint=$1 workers=${2:-4} port redis=$KL_TEST_REDIS_URL
    SERVICE_STATE=Redis
    if [ "${BENCH_REDIS:-1}" = 0 ]; then
        redis=
        SERVICE_STATE=in-process
    fi
    port=$(bench_free_port)
    SERVICE_LOG=$(mktemp "${TMPDIR:-/tmp}/kl-bench-serve.XXXXXX")
    SERVICE_URL="http://127.0.0.1:$port"
    KL_LISTEN="127.0.0.1:$port" KL_WORKERS=$workers \
        KL_LOG_LEVEL=${BENCH_LOG_LEVEL:-warn} \
        DATABASE_URL=$KL_TEST_PG_URL REDIS_URL=$redis AWS_ENDPOINT_URL_KINESIS=$endpoint \
        "$BIN" serve >"$SERVICE_LOG" 2>&1 &
    SERVICE_PID=$!
    for _ in $(seq 200); do
        if curl -sf -o /dev/null "$SERVICE_URL/readyz"; then
            return 0
        fi
        if ! kill -0 "$SERVICE_PID" 2>/dev/null; then
            break
        fi
        sleep 0.05
    done
    echo "kinesis-loader serve did not become ready; its log:" >&2
    tail -20 "$SERVICE_LOG" >&2
    return 1
}

# Stops the service service_start started (SIGTERM, then waits for it).
service_stop() {
    if [ -n "${SERVICE_PID:-}" ] && kill -0 "$SERVICE_PID" 2>/dev/null; then
        kill -TERM "$SERVICE_PID" 2>/dev/null || true
        wait "$SERVICE_PID" 2>/dev/null || true
    fi
    SERVICE_PID=
    if [ -n "${SERVICE_LOG:-}" ]; then
        rm -f "$SERVICE_LOG"
        SERVICE_LOG=
    fi
}

# replay_start ARG...: runs the replay endpoint (bench/replay/server.js
# --port 0 ARG...) in the background and waits until it listens (it builds
# its pages first: up to a minute). Sets REPLAY_PID, REPLAY_INFO (the JSON
# line it prints) and REPLAY_URL.
# shellcheck disable=SC2034 # REPLAY_INFO and REPLAY_URL are for the caller
replay_start() {
    local port
    REPLAY_OUT=$(mktemp "${TMPDIR:-/tmp}/kl-bench-replay.XXXXXX")
    node bench/replay/server.js --port 0 "$@" >"$REPLAY_OUT" 2>&1 &
    REPLAY_PID=$!
    for _ in $(seq 1200); do
        [ -s "$REPLAY_OUT" ] && break
        kill -0 "$REPLAY_PID" 2>/dev/null || break
        sleep 0.05
    done
    REPLAY_INFO=$(head -1 "$REPLAY_OUT")
    if ! port=$(json_get "$REPLAY_INFO" 'j.port' 2>/dev/null); then
        echo "the replay endpoint did not start: $(cat "$REPLAY_OUT")" >&2
        return 1
    fi
    REPLAY_URL="http://127.0.0.1:$port"
}

# Stops the endpoint replay_start started (SIGTERM, then waits for it).
replay_stop() {
    if [ -n "${REPLAY_PID:-}" ]; then
        kill -TERM "$REPLAY_PID" 2>/dev/null || true
        wait "$REPLAY_PID" 2>/dev/null || true
    fi
    REPLAY_PID=
    if [ -n "${REPLAY_OUT:-}" ]; then
        rm -f "$REPLAY_OUT"
        REPLAY_OUT=
    fi
}

# bench_cleanup: for `trap bench_cleanup EXIT`: stops the service, drops the
# datasets named in the caller's array `datasets` and deletes the caller's
# stream $STREAM (both unless BENCH_KEEP=1).
# shellcheck disable=SC2154 # datasets and STREAM are the caller's
bench_cleanup() {
    service_stop
    for d in "${datasets[@]}"; do pg_drop "$d"; done
    if [ "${BENCH_KEEP:-0}" != 1 ]; then
        node tests/tools/delete-stream.js --stream "$STREAM" >/dev/null 2>&1 || true
    fi
}

# pg_counts DATASET TABLE: "rows distinct_msg_ids" of the loaded table.
pg_counts() {
    psql "$KL_TEST_PG_URL" -v ON_ERROR_STOP=1 -Atq -F ' ' \
        -c "SELECT count(*), count(DISTINCT _kinesis_msg_id) FROM \"$1\".\"$2\""
}

# pg_count DATASET TABLE: the rows of a table.
pg_count() {
    psql "$KL_TEST_PG_URL" -v ON_ERROR_STOP=1 -Atq -c "SELECT count(*) FROM \"$1\".\"$2\""
}

# pg_data_tables DATASET: the data tables a load wrote into the dataset,
# one a line, sorted: every table of its schema but the system tables, dlt's
# (_dlt_loads, _dlt_version, _dlt_pipeline_state) and the loader's own
# (_kinesis_checkpoints, _kinesis_runs, ...).
pg_data_tables() {
    psql "$KL_TEST_PG_URL" -v ON_ERROR_STOP=1 -Atq -c "SELECT table_name FROM information_schema.tables
        WHERE table_schema = '$1' AND table_type = 'BASE TABLE'
          AND table_name NOT IN ('_dlt_loads', '_dlt_version', '_dlt_pipeline_state')
          AND left(table_name, 9) <> '_kinesis_'
        ORDER BY table_name COLLATE \"C\""
}

# pg_drop DATASET: drops a benchmark's dataset (unless BENCH_KEEP=1).
pg_drop() {
    if [ "${BENCH_KEEP:-0}" != 1 ]; then
        psql "$KL_TEST_PG_URL" -Atq -c "DROP SCHEMA IF EXISTS \"$1\" CASCADE" >/dev/null 2>&1 || true
    fi
}

# json_get JSON EXPR: evaluates EXPR on the parsed JSON `j` (Node.js).
json_get() {
    node -e 'const j = JSON.parse(process.argv[1]); const v = (0, eval)("(j) => " + process.argv[2])(j);
        console.log(typeof v === "object" ? JSON.stringify(v) : v)' "$1" "$2"
}

# cpu_s PID...: the CPU seconds (user + system) the processes have used
# (0 for one that is gone).
cpu_s() {
    local total=0 t
    for pid in "$@"; do
        t=$(awk '{ print ($14 + $15) / 100 }' "/proc/$pid/stat" 2>/dev/null || echo 0)
        total=$(calc "$total + $t")
    done
    echo "$total"
}

# pg_cpu_s: the CPU seconds the local PostgreSQL has used (its processes run
# as the postgres user): every live process's own, plus what the exited ones
# used (their parent, the postmaster, counts what its children used), so
# that backends that came and went in between are counted.
pg_cpu_s() {
    local pid total=0 t
    for pid in $(pgrep -u postgres); do
        t=$(awk '{ print ($14 + $15 + $16 + $17) / 100 }' "/proc/$pid/stat" 2>/dev/null || echo 0)
        total=$(calc "$total + $t")
    done
    echo "$total"
}

# peak_rss_mib PID: the peak resident set size (VmHWM) of a running process
# of ours, in MiB.
peak_rss_mib() {
    awk '/^VmHWM:/ { printf "%.1f\n", $2 / 1024; found = 1 } END { exit !found }' "/proc/$1/status"
}

# calc EXPR: bc with decimals.
calc() { echo "$1" | bc -l; }

# max_of A B, min_of A B (decimals)
max_of() { calc "if ($1 > $2) $1 else $2"; }
min_of() { calc "if ($1 < $2) $1 else $2"; }

# median of the numbers given as arguments
median() {
    printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}
