#!/usr/bin/env bash
# `make run`: installs what is missing, builds, and runs `kinesis-loader serve`
# on the embedded default (SQLite file + in-process state). Without any AWS
# settings it first starts a local Kinesis emulator (kinesalite, on loopback)
# with a small demo stream and prints the curl commands to load it and read
# the job; with AWS settings it talks to AWS. Extra arguments go to the binary
# (`make run ARGS="read my-stream"` runs another command instead).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
BUILD_DIR=${BUILD_DIR:-build}
RUN_DIR=${KL_RUN_DIR:-$ROOT/.run}

scripts/install-deps.sh
make --no-print-directory build

if [ $# -gt 0 ]; then
    exec "./$BUILD_DIR/kinesis-loader" "$@"
fi

has_aws_settings() {
    local v
    for v in AWS_REGION AWS_DEFAULT_REGION AWS_PROFILE AWS_ACCESS_KEY_ID AWS_ENDPOINT_URL \
        AWS_ENDPOINT_URL_KINESIS AWS_WEB_IDENTITY_TOKEN_FILE AWS_CONTAINER_CREDENTIALS_FULL_URI \
        AWS_CONTAINER_CREDENTIALS_RELATIVE_URI; do
        [ -n "${!v:-}" ] && return 0
    done
    [ -f "${AWS_SHARED_CREDENTIALS_FILE:-$HOME/.aws/credentials}" ] && return 0
    [ -f "${AWS_CONFIG_FILE:-$HOME/.aws/config}" ] && return 0
    return 1
}

mkdir -p "$RUN_DIR"
export KL_SQLITE_PATH=${KL_SQLITE_PATH:-$RUN_DIR/kinesis-loader.db}
listen=${KL_LISTEN:-0.0.0.0:8080}
port=${listen##*:}

if ! has_aws_settings; then
    scripts/services.sh start kinesalite
    # shellcheck source=/dev/null
    source "$RUN_DIR/services.env"
    export AWS_ENDPOINT_URL_KINESIS=$KL_TEST_KINESALITE_URL AWS_REGION=us-east-1 \
        AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local NODE_NO_WARNINGS=1
    node tests/tools/create-stream.js --stream demo --shards 2 >/dev/null
    node tests/tools/put-records.js --stream demo --count 1000 --partition-keys 50 >/dev/null
    cat <<TXT

No AWS settings found: serving a local Kinesis emulator ($AWS_ENDPOINT_URL_KINESIS)
with a stream "demo" of 1000 JSON messages (stop it with scripts/services.sh stop).
Rows go to the SQLite file $KL_SQLITE_PATH.

Load the stream and follow the job:
  curl -si -X POST localhost:$port/streams/demo/loads -H 'Content-Type: application/json' \\
       -d '{"initial_at_timestamp": null}'
  curl -s localhost:$port/jobs/<id from the Location header>
Then look at the rows:
  sqlite3 $KL_SQLITE_PATH 'SELECT count(*) FROM "kinesis.demo"'
More: curl -s localhost:$port/openapi.yaml

TXT
fi
exec "./$BUILD_DIR/kinesis-loader" serve
