#!/usr/bin/env bash
# Starts, stops and reports the local services the integration tests and
# benchmarks talk to: PostgreSQL, Redis, the two Kinesis emulators
# (kinesalite, kinesis-local) and a signature-checking proxy in front of
# each emulator. Everything listens on 127.0.0.1 only and lives in the
# private run directory .run/ (data, sockets, logs, PID files). It never
# touches a process it did not start: stop signals only the PIDs recorded
# in .run/*.pid, and only when that PID still runs the expected program.
#
# usage: scripts/services.sh start|stop|restart|status [service...]
#   services: postgres redis kinesalite kinesis-local proxy proxy-local
#             (default: all)
# `start` writes .run/services.env (export lines for the tests); source it.
#
# Ports (env overrides):
#   KL_PG_PORT 55432             KL_REDIS_PORT 56379
#   KL_KINESALITE_PORT 45671     KL_KINESIS_LOCAL_PORT 45672
#   KL_KINESIS_LOCAL_TLS_PORT 45673
#   KL_PROXY_PORT 45680 (-> kinesalite)  KL_PROXY_LOCAL_PORT 45681 (-> kinesis-local)
# Other settings: KL_PROXY_SECRET (the secret the proxies accept),
#   KL_SERVICE_TIMEOUT (seconds to wait for readiness, default 60),
#   KL_RUN_DIR (default: .run at the repository root).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RUN=${KL_RUN_DIR:-$ROOT/.run}
NODE_DIR=$ROOT/tests
NODE_MODULES=$NODE_DIR/node_modules
LOOPBACK_PRELOAD=$NODE_DIR/proxy/loopback-only.js

PG_PORT=${KL_PG_PORT:-55432}
REDIS_PORT=${KL_REDIS_PORT:-56379}
KINESALITE_PORT=${KL_KINESALITE_PORT:-45671}
KINESIS_LOCAL_PORT=${KL_KINESIS_LOCAL_PORT:-45672}
KINESIS_LOCAL_TLS_PORT=${KL_KINESIS_LOCAL_TLS_PORT:-45673}
PROXY_PORT=${KL_PROXY_PORT:-45680}
PROXY_LOCAL_PORT=${KL_PROXY_LOCAL_PORT:-45681}
PROXY_SECRET=${KL_PROXY_SECRET:-kl-test-secret}
TIMEOUT=${KL_SERVICE_TIMEOUT:-60}

ALL_SERVICES=(postgres redis kinesalite kinesis-local proxy proxy-local)
PG_DB=kl_test
PG_USER=postgres

log() { echo "services: $*" >&2; }
die() {
    log "$*"
    exit 1
}

usage() {
    sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'
}

# --- helpers ---------------------------------------------------------------

port_of() {
    case "$1" in
    postgres) echo "$PG_PORT" ;;
    redis) echo "$REDIS_PORT" ;;
    kinesalite) echo "$KINESALITE_PORT" ;;
    kinesis-local) echo "$KINESIS_LOCAL_PORT" ;;
    proxy) echo "$PROXY_PORT" ;;
    proxy-local) echo "$PROXY_LOCAL_PORT" ;;
    esac
}

# A string the service's command line contains: guards against a recycled PID.
marker_of() {
    case "$1" in
    postgres) echo "postgres" ;;
    redis) echo "redis-server" ;;
    kinesalite) echo "kinesalite/cli.js" ;;
    kinesis-local) echo "kinesis-local/main.js" ;;
    proxy | proxy-local) echo "sigproxy.js" ;;
    esac
}

pidfile_of() { echo "$RUN/$1.pid"; }
logfile_of() { echo "$RUN/$1.log"; }

# True when something accepts TCP connections on 127.0.0.1:$1.
port_open() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# The recorded PID of a service if that process is alive and is the service.
live_pid() {
    local svc=$1 file pid
    file=$(pidfile_of "$svc")
    [ -s "$file" ] || return 1
    pid=$(head -n 1 "$file" | tr -dc '0-9')
    [ -n "$pid" ] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$(marker_of "$svc")" || return 1
    echo "$pid"
}

show_log_tail() {
    local file
    file=$(logfile_of "$1")
    if [ -s "$file" ]; then
        log "last lines of $file:"
        tail -n 30 "$file" | sed 's/^/    /' >&2
    else
        log "$file is empty"
    fi
}

# Appends a start marker, so a log tail shows where this start began.
mark_log() {
    echo "--- $(date -u +%Y-%m-%dT%H:%M:%SZ) services.sh starting $2" >>"$1"
}

# Waits until `check` succeeds, the process `pid` dies, or TIMEOUT passes.
wait_ready() {
    local svc=$1 pid=$2 deadline
    shift 2
    deadline=$((SECONDS + TIMEOUT))
    while ! "$@"; do
        if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
            log "$svc exited during start-up"
            show_log_tail "$svc"
            return 1
        fi
        if [ "$SECONDS" -ge "$deadline" ]; then
            log "$svc not ready after ${TIMEOUT}s"
            show_log_tail "$svc"
            return 1
        fi
        sleep 0.1
    done
}

# Refuses to start when the port is taken by a process that is not ours.
require_free_port() {
    local svc=$1 port=$2
    if port_open "$port"; then
        die "cannot start $svc: 127.0.0.1:$port is already in use by another process" \
            "(set KL_$(echo "$svc" | tr 'a-z-' 'A-Z_')_PORT to move it)"
    fi
}

require_node_modules() {
    [ -d "$NODE_MODULES" ] || die "tests/node_modules is missing: run scripts/install-deps.sh"
    command -v node >/dev/null 2>&1 || die "node is not installed: run scripts/install-deps.sh"
}

# Starts a program in the background in its own session, logging to
# .run/<svc>.log, and records its PID. Without job control the background
# child is not a process-group leader, so setsid(1) execs in place and $!
# is the program's own PID.
spawn() {
    local svc=$1
    shift
    mark_log "$(logfile_of "$svc")" "$svc"
    setsid "$@" >>"$(logfile_of "$svc")" 2>&1 </dev/null 9>&- &
    echo $! >"$(pidfile_of "$svc")"
}

# --- PostgreSQL -------------------------------------------------------------

pg_bindir() {
    local dir
    dir=$(pg_config --bindir 2>/dev/null || true)
    if [ -n "$dir" ] && [ -x "$dir/initdb" ]; then
        echo "$dir"
        return
    fi
    # Highest installed major version.
    dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
    [ -n "$dir" ] && [ -x "$dir/initdb" ] || die "PostgreSQL server binaries not found: run scripts/install-deps.sh"
    echo "$dir"
}

# PostgreSQL refuses to run as root: as root it runs as `postgres`, else as us.
as_pg() {
    if [ "$(id -u)" -eq 0 ]; then
        runuser -u "$PG_USER" -- "$@"
    else
        "$@"
    fi
}

# The cluster lives in .run/pg unless the postgres user cannot reach .run
# (a checkout under a private home directory); then under /tmp, in a
# directory named after the run directory.
pg_base() {
    local base=$RUN/pg
    mkdir -p "$base"
    if [ "$(id -u)" -eq 0 ]; then chown "$PG_USER:" "$base"; fi
    if ! as_pg test -w "$base" 2>/dev/null; then
        base=/tmp/kl-pg-$(id -u)-$(printf '%s' "$RUN" | sha256sum | cut -c1-12)
        mkdir -p "$base"
        if [ "$(id -u)" -eq 0 ]; then chown "$PG_USER:" "$base"; fi
        chmod 700 "$base"
    fi
    echo "$base"
}

# The server log: .run/postgres.log, or beside the cluster (with a symlink
# in .run) when the postgres user cannot write into .run.
pg_log() {
    local base=$1
    if [ "$base" = "$RUN/pg" ]; then
        echo "$RUN/postgres.log"
    else
        ln -sfn "$base/postgres.log" "$RUN/postgres.log"
        echo "$base/postgres.log"
    fi
}

pg_ready() {
    "$1/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" -U "$PG_USER" -d postgres
}

start_postgres() {
    local bin base data logf pid
    bin=$(pg_bindir)
    base=$(pg_base)
    data=$base/data
    logf=$(pg_log "$base")
    if pid=$(live_pid postgres); then
        log "postgres already running (pid $pid, port $PG_PORT)"
        return 0
    fi
    require_free_port postgres "$PG_PORT"
    mark_log "$logf" postgres
    if [ "$(id -u)" -eq 0 ]; then chown "$PG_USER:" "$logf"; fi
    if [ ! -f "$data/PG_VERSION" ]; then
        log "initdb $data"
        if ! as_pg "$bin/initdb" -D "$data" -U "$PG_USER" -A trust -E UTF8 --no-locale \
            --no-sync >>"$logf" 2>&1; then
            log "initdb failed"
            show_log_tail postgres
            return 1
        fi
        echo "include = 'kl_test.conf'" | as_pg tee -a "$data/postgresql.conf" >/dev/null
    fi
    # Settings for a throwaway test cluster, rewritten on every start so the
    # port and paths follow the environment.
    as_pg tee "$data/kl_test.conf" >/dev/null <<EOF
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$base'
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 200
EOF
    if ! as_pg "$bin/pg_ctl" -D "$data" -l "$logf" -w -t "$TIMEOUT" start >/dev/null 2>&1 9>&-; then
        log "postgres failed to start"
        show_log_tail postgres
        return 1
    fi
    head -n 1 "$data/postmaster.pid" >"$(pidfile_of postgres)"
    pid=$(live_pid postgres) || die "postgres started but its PID is unknown"
    wait_ready postgres "$pid" pg_ready "$bin" || return 1
    if [ "$("$bin/psql" -h 127.0.0.1 -p "$PG_PORT" -U "$PG_USER" -d postgres -tAc \
        "SELECT 1 FROM pg_database WHERE datname = '$PG_DB'")" != 1 ]; then
        "$bin/psql" -q -h 127.0.0.1 -p "$PG_PORT" -U "$PG_USER" -d postgres \
            -c "CREATE DATABASE $PG_DB" >/dev/null
    fi
    log "postgres ready (pid $pid, port $PG_PORT, database $PG_DB)"
}

stop_postgres() {
    local bin base pid
    pid=$(live_pid postgres) || {
        rm -f "$(pidfile_of postgres)"
        return 0
    }
    bin=$(pg_bindir)
    base=$(pg_base)
    if ! as_pg "$bin/pg_ctl" -D "$base/data" -m fast -w -t 30 stop >/dev/null 2>&1; then
        stop_pid postgres "$pid"
    fi
    rm -f "$(pidfile_of postgres)"
    log "postgres stopped"
}

# --- Redis ------------------------------------------------------------------

redis_ready() {
    if command -v redis-cli >/dev/null 2>&1; then
        [ "$(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null)" = PONG ]
    else
        port_open "$REDIS_PORT"
    fi
}

start_redis() {
    local pid deadline
    if pid=$(live_pid redis); then
        log "redis already running (pid $pid, port $REDIS_PORT)"
        return 0
    fi
    command -v redis-server >/dev/null 2>&1 || die "redis-server not found: run scripts/install-deps.sh"
    require_free_port redis "$REDIS_PORT"
    rm -f "$(pidfile_of redis)"
    mkdir -p "$RUN/redis"
    mark_log "$(logfile_of redis)" redis
    # No persistence at all: no RDB snapshots, no AOF.
    if ! redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --protected-mode yes \
        --save '' --appendonly no --dir "$RUN/redis" \
        --daemonize yes --pidfile "$(pidfile_of redis)" \
        --logfile "$(logfile_of redis)" >>"$(logfile_of redis)" 2>&1 9>&-; then
        log "redis-server failed to start"
        show_log_tail redis
        return 1
    fi
    # The daemon writes its pidfile shortly after forking.
    deadline=$((SECONDS + TIMEOUT))
    until pid=$(live_pid redis); do
        if [ "$SECONDS" -ge "$deadline" ]; then
            log "redis wrote no pidfile"
            show_log_tail redis
            return 1
        fi
        sleep 0.1
    done
    wait_ready redis "$pid" redis_ready || return 1
    log "redis ready (pid $pid, port $REDIS_PORT)"
}

# --- Node services (emulators and proxies) ------------------------------------

start_node_service() {
    local svc=$1 port=$2 pid
    shift 2
    if pid=$(live_pid "$svc"); then
        log "$svc already running (pid $pid, port $port)"
        return 0
    fi
    require_node_modules
    require_free_port "$svc" "$port"
    spawn "$svc" "$@"
    pid=$(head -n 1 "$(pidfile_of "$svc")")
    wait_ready "$svc" "$pid" port_open "$port" || return 1
    log "$svc ready (pid $pid, port $port)"
}

start_kinesalite() {
    start_node_service kinesalite "$KINESALITE_PORT" \
        node -r "$LOOPBACK_PRELOAD" "$NODE_MODULES/kinesalite/cli.js" \
        --port "$KINESALITE_PORT" --shardLimit 1000 \
        --createStreamMs 0 --deleteStreamMs 0 --updateStreamMs 0
}

start_kinesis_local() {
    if ! live_pid kinesis-local >/dev/null; then
        require_free_port kinesis-local-tls "$KINESIS_LOCAL_TLS_PORT"
    fi
    # Durations are Scala duration strings. kinesis-mock keeps its state in
    # memory (SHOULD_PERSIST_DATA defaults to false).
    start_node_service kinesis-local "$KINESIS_LOCAL_PORT" \
        env KINESIS_MOCK_PLAIN_PORT="$KINESIS_LOCAL_PORT" \
        KINESIS_MOCK_TLS_PORT="$KINESIS_LOCAL_TLS_PORT" \
        KINESIS_MOCK_CERT_PATH="$NODE_MODULES/kinesis-local/server.json" \
        SHARD_LIMIT=1000 ON_DEMAND_STREAM_COUNT_LIMIT=100 \
        CREATE_STREAM_DURATION=10ms DELETE_STREAM_DURATION=10ms \
        REGISTER_STREAM_CONSUMER_DURATION=10ms DEREGISTER_STREAM_CONSUMER_DURATION=10ms \
        START_STREAM_ENCRYPTION_DURATION=10ms STOP_STREAM_ENCRYPTION_DURATION=10ms \
        MERGE_SHARDS_DURATION=10ms SPLIT_SHARD_DURATION=10ms \
        UPDATE_SHARD_COUNT_DURATION=10ms UPDATE_STREAM_MODE_DURATION=10ms \
        LOG_LEVEL=WARN SHOULD_PERSIST_DATA=false \
        node -r "$LOOPBACK_PRELOAD" "$NODE_MODULES/kinesis-local/main.js"
}

start_proxy() {
    local svc=$1 port=$2 upstream=$3
    start_node_service "$svc" "$port" \
        env KL_PROXY_SECRET="$PROXY_SECRET" \
        node "$NODE_DIR/proxy/sigproxy.js" --port "$port" \
        --upstream "http://127.0.0.1:$upstream" --name "$svc"
}

# Sends SIGTERM, waits up to 10 s, then SIGKILL: only to the given PID.
stop_pid() {
    local svc=$1 pid=$2 i
    kill -TERM "$pid" 2>/dev/null || return 0
    for i in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    log "$svc (pid $pid) ignored SIGTERM; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
}

stop_simple() {
    local svc=$1 pid
    if pid=$(live_pid "$svc"); then
        stop_pid "$svc" "$pid"
        log "$svc stopped"
    fi
    rm -f "$(pidfile_of "$svc")"
}

# --- commands ----------------------------------------------------------------

write_env() {
    local tmp=$RUN/services.env.tmp
    cat >"$tmp" <<EOF
# Written by scripts/services.sh start; source it before running the tests.
export KL_TEST_PG_URL='postgresql://$PG_USER@127.0.0.1:$PG_PORT/$PG_DB'
export KL_TEST_REDIS_URL='redis://127.0.0.1:$REDIS_PORT'
export KL_TEST_KINESALITE_URL='http://127.0.0.1:$KINESALITE_PORT'
export KL_TEST_KINESIS_LOCAL_URL='http://127.0.0.1:$KINESIS_LOCAL_PORT'
export KL_TEST_KINESIS_LOCAL_TLS_URL='https://127.0.0.1:$KINESIS_LOCAL_TLS_PORT'
export KL_TEST_PROXY_URL='http://127.0.0.1:$PROXY_PORT'
export KL_TEST_PROXY_LOCAL_URL='http://127.0.0.1:$PROXY_LOCAL_PORT'
export KL_TEST_PROXY_SECRET='$PROXY_SECRET'
export KL_TEST_NODE_TOOLS='$NODE_DIR/tools'
EOF
    mv "$tmp" "$RUN/services.env"
}

start_one() {
    case "$1" in
    postgres) start_postgres ;;
    redis) start_redis ;;
    kinesalite) start_kinesalite ;;
    kinesis-local) start_kinesis_local ;;
    proxy) start_proxy proxy "$PROXY_PORT" "$KINESALITE_PORT" ;;
    proxy-local) start_proxy proxy-local "$PROXY_LOCAL_PORT" "$KINESIS_LOCAL_PORT" ;;
    esac
}

stop_one() {
    case "$1" in
    postgres) stop_postgres ;;
    *) stop_simple "$1" ;;
    esac
}

status_one() {
    local svc=$1 pid
    if pid=$(live_pid "$svc"); then
        printf '%-14s running  pid %-8s 127.0.0.1:%s\n' "$svc" "$pid" "$(port_of "$svc")"
    else
        printf '%-14s stopped\n' "$svc"
        return 1
    fi
}

main() {
    local cmd=${1:-} svc rc=0 services=() reversed=()
    [ $# -gt 0 ] && shift
    case "$cmd" in
    start | stop | restart | status) ;;
    -h | --help | help)
        usage
        exit 0
        ;;
    *)
        usage >&2
        exit 2
        ;;
    esac
    if [ $# -eq 0 ]; then
        services=("${ALL_SERVICES[@]}")
    else
        for svc in "$@"; do
            [ -n "$(port_of "$svc")" ] || die "unknown service '$svc' (known: ${ALL_SERVICES[*]})"
            services+=("$svc")
        done
    fi
    for ((i = ${#services[@]} - 1; i >= 0; i--)); do
        reversed+=("${services[i]}")
    done

    mkdir -p "$RUN"
    chmod 755 "$RUN"
    # One services.sh at a time per run directory. The services it starts
    # must not inherit this descriptor (see `9>&-`), or they would hold the lock.
    exec 9>"$RUN/.lock"
    flock -w "$TIMEOUT" 9 || die "another services.sh holds $RUN/.lock"

    case "$cmd" in
    start)
        for svc in "${services[@]}"; do
            start_one "$svc" || die "start failed: $svc"
        done
        write_env
        log "environment for tests: source $RUN/services.env"
        ;;
    stop)
        for svc in "${reversed[@]}"; do
            stop_one "$svc" || rc=1
        done
        ;;
    restart)
        for svc in "${reversed[@]}"; do
            stop_one "$svc" || rc=1
        done
        for svc in "${services[@]}"; do
            start_one "$svc" || die "start failed: $svc"
        done
        write_env
        ;;
    status)
        for svc in "${services[@]}"; do
            status_one "$svc" || rc=3
        done
        ;;
    esac
    exit "$rc"
}

main "$@"
