#!/usr/bin/env bash
# Installs what building and testing kinesis-loader needs on Debian 12:
# the C toolchain and libraries, PostgreSQL, Redis, Node.js, and the Node
# test tools pinned in tests/package-lock.json. Idempotent: it asks apt only
# for packages that are missing and reruns `npm ci` only when the lock file
# changed. It does not start any service (see scripts/services.sh).
#
# usage: scripts/install-deps.sh [--lint] [--image] [--no-node]
#   --lint     also install clang-format, clang-tidy and cppcheck
#   --image    also install buildah and debootstrap (the image test)
#   --no-node  skip Node.js and tests/node_modules (C build only)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# Debian packages the build, the tests and the benchmarks use.
PACKAGES=(
    build-essential cmake pkg-config git
    libmicrohttpd-dev libcurl4-openssl-dev libssl-dev libcjson-dev
    libhiredis-dev libpq-dev libsqlite3-dev libcmocka-dev zlib1g-dev
    postgresql redis-server
    wrk bc
)
LINT_PACKAGES=(clang-format clang-tidy cppcheck)
# tests/image builds the Dockerfile without a daemon: buildah (chroot
# isolation, so no runtime is needed) on a debootstrap'd Debian base
IMAGE_PACKAGES=(buildah debootstrap)
NODE_MIN_MAJOR=20

want_lint=0
want_image=0
want_node=1
for arg in "$@"; do
    case "$arg" in
    --lint) want_lint=1 ;;
    --image) want_image=1 ;;
    --no-node) want_node=0 ;;
    -h | --help)
        sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'
        exit 0
        ;;
    *)
        echo "install-deps: unknown option $arg" >&2
        exit 2
        ;;
    esac
done

log() { echo "install-deps: $*" >&2; }

# Runs a command as root: directly when we are root, else through sudo.
as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        log "need root (or sudo) to run: $*"
        exit 1
    fi
}

is_installed() {
    [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" = "install ok installed" ]
}

# Installs the given Debian packages that are not installed yet. Package
# maintainer scripts must not start system-wide daemons (Debian's PostgreSQL
# cluster on 5432, redis on 6379): our tests run their own instances, and a
# test run must leave no process behind. A temporary policy-rc.d tells
# invoke-rc.d not to start anything; an existing one is left alone.
apt_install() {
    local missing=() pkg policy=/usr/sbin/policy-rc.d created_policy=0
    for pkg in "$@"; do
        is_installed "$pkg" || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if ! command -v apt-get >/dev/null 2>&1; then
        log "missing packages (${missing[*]}) and no apt-get: install them by hand"
        exit 1
    fi
    log "installing ${missing[*]}"
    if [ ! -e "$policy" ]; then
        as_root sh -c "printf '#!/bin/sh\nexit 101\n' > $policy && chmod 755 $policy"
        created_policy=1
        trap 'as_root rm -f /usr/sbin/policy-rc.d' EXIT
    fi
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${missing[@]}"
    if [ "$created_policy" -eq 1 ]; then
        as_root rm -f "$policy"
        trap - EXIT
    fi
}

# Node.js: only when `node`/`npm` are absent. A machine may carry a newer
# Node.js than Debian's (e.g. from another apt source, with npm inside):
# then Debian's npm package must not be installed over it.
install_node() {
    local need=() major
    command -v node >/dev/null 2>&1 || need+=(nodejs)
    command -v npm >/dev/null 2>&1 || need+=(npm)
    [ ${#need[@]} -eq 0 ] || apt_install "${need[@]}"
    major=$(node -p 'process.versions.node.split(".")[0]')
    if [ "$major" -lt "$NODE_MIN_MAJOR" ]; then
        log "warning: Node.js $(node --version) is older than $NODE_MIN_MAJOR;" \
            "@aws-sdk/client-kinesis and @redocly/cli need $NODE_MIN_MAJOR or newer"
    fi
}

# tests/node_modules from the lock file. A stamp inside node_modules holds
# the lock file's hash, so a changed lock file triggers a fresh `npm ci`.
# Install scripts are not run (--ignore-scripts): none of the pinned
# packages needs one at run time (leveldown ships prebuilt binaries and
# kinesalite stays in memory), and skipping them behaves the same on
# every npm version.
install_node_modules() {
    local dir="$ROOT/tests" stamp sum
    stamp="$dir/node_modules/.kl-lock.sha256"
    sum=$(sha256sum "$dir/package-lock.json" | cut -d' ' -f1)
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$sum" ]; then
        return 0
    fi
    log "npm ci in tests/"
    (cd "$dir" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
    echo "$sum" >"$stamp"
}

apt_install "${PACKAGES[@]}"
if [ "$want_lint" -eq 1 ]; then
    apt_install "${LINT_PACKAGES[@]}"
fi
if [ "$want_image" -eq 1 ]; then
    apt_install "${IMAGE_PACKAGES[@]}"
fi
if [ "$want_node" -eq 1 ]; then
    install_node
    install_node_modules
fi
log "ok"
