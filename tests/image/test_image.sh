#!/usr/bin/env bash
# test_image: the repository's Dockerfile builds, and the image runs
# `kinesis-loader --help` as the chart's user. Built without a daemon:
# buildah with --isolation chroot and its own storage in a temporary
# directory, on a Debian 12 base made with debootstrap from a Debian mirror
# (so no container registry is needed). Not a test of the service itself.
#
# Skips (exit 77, which ctest reports as skipped) when buildah or
# debootstrap is missing or when not run as root: `apt-get install buildah
# debootstrap` enables it.
#
# usage: tests/image/test_image.sh [--cache DIR]
#   --cache DIR  keep the Debian base (a tar of the debootstrap'd tree) in
#                DIR between runs; without it the base is made every run
# Environment:
#   KL_DEBIAN_MIRROR  the mirror debootstrap and the build's apt-get use
#                     (default: the first .../debian source of /etc/apt, else
#                     http://deb.debian.org/debian)
#   KL_IMAGE_BASE     an image to build on instead of the debootstrap'd base,
#                     such as debian:12-slim when a registry is reachable
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
SUITE=bookworm
IMAGE=localhost/kinesis-loader:test

cache=""
while [ $# -gt 0 ]; do
    case "$1" in
    --cache)
        cache=$2
        shift 2
        ;;
    *)
        echo "test_image: unknown argument $1" >&2
        exit 2
        ;;
    esac
done

skip() {
    echo "test_image: SKIPPED: $*"
    exit 77
}
command -v buildah >/dev/null 2>&1 || skip "no buildah (apt-get install buildah)"
if [ -z "${KL_IMAGE_BASE:-}" ]; then
    command -v debootstrap >/dev/null 2>&1 || skip "no debootstrap (apt-get install debootstrap)"
fi
[ "$(id -u)" -eq 0 ] || skip "needs root (buildah --isolation chroot, debootstrap)"

# The first Debian archive among the machine's apt sources (one-line and
# deb822 formats), so that the build uses the mirror the machine uses.
debian_mirror() {
    local u
    if [ -n "${KL_DEBIAN_MIRROR:-}" ]; then
        echo "$KL_DEBIAN_MIRROR"
        return
    fi
    u=$({
        cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
            awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { print $i; break } }'
        cat /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '$1 == "URIs:" { for (i = 2; i <= NF; i++) print $i }'
    } | grep -m1 -E '/debian/?$' || true)
    echo "${u:-http://deb.debian.org/debian}"
}

tmp=$(mktemp -d)
b() { buildah --root "$tmp/storage" --runroot "$tmp/run" --storage-driver vfs "$@"; }
cleanup() {
    b rm --all >/dev/null 2>&1 || true
    rm -rf "$tmp"
}
trap cleanup EXIT

# ---- the base image ----
base=${KL_IMAGE_BASE:-}
if [ -z "$base" ]; then
    mirror=$(debian_mirror)
    dir=${cache:-$tmp/cache}
    mkdir -p "$dir"
    tarball="$dir/debian-$SUITE-minbase.tar"
    stamp="$tarball.mirror"
    if [ ! -s "$tarball" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$mirror" ]; then
        echo "test_image: debootstrap $SUITE from $mirror"
        rm -rf "$tmp/rootfs"
        debootstrap --variant=minbase "$SUITE" "$tmp/rootfs" "$mirror" >"$tmp/debootstrap.log" 2>&1 || {
            tail -20 "$tmp/debootstrap.log"
            echo "test_image: debootstrap failed"
            exit 1
        }
        rm -rf "$tmp/rootfs/var/cache/apt/archives/"*.deb "$tmp/rootfs/var/lib/apt/lists/"*
        tar --numeric-owner -C "$tmp/rootfs" -cf "$tarball.part" .
        mv "$tarball.part" "$tarball"
        echo "$mirror" >"$stamp"
        rm -rf "$tmp/rootfs"
    fi
    mkdir -p "$tmp/base"
    ln "$tarball" "$tmp/base/rootfs.tar" 2>/dev/null || cp "$tarball" "$tmp/base/rootfs.tar"
    printf 'FROM scratch\nADD rootfs.tar /\nCMD ["bash"]\n' >"$tmp/base/Containerfile"
    b bud --quiet --isolation chroot -f "$tmp/base/Containerfile" -t localhost/kl-debian:12 \
        "$tmp/base" >/dev/null
    base=localhost/kl-debian:12
fi

# ---- the image ----
echo "test_image: buildah bud on $base"
start=$(date +%s)
if ! b bud --isolation chroot --build-arg DEBIAN_IMAGE="$base" -t "$IMAGE" -f "$ROOT/Dockerfile" \
    "$ROOT" >"$tmp/bud.log" 2>&1; then
    tail -40 "$tmp/bud.log"
    echo "test_image: the image did not build"
    exit 1
fi
echo "test_image: built in $(($(date +%s) - start)) s"

failed=0
check() {
    local what=$1
    shift
    if "$@"; then
        echo "ok - $what"
    else
        echo "not ok - $what"
        failed=$((failed + 1))
    fi
}

ctr=$(b from --quiet "$IMAGE")
config=$(b inspect --format '{{.OCIv1.Config.User}} {{.OCIv1.Config.Entrypoint}} {{.OCIv1.Config.Cmd}}' "$ctr")
check "entrypoint kinesis-loader, command serve, user 10001:10001 (got: $config)" \
    test "$config" = "10001:10001 [kinesis-loader] [serve]"
help=$(b run --isolation chroot "$ctr" -- kinesis-loader --help 2>&1) || true
check "kinesis-loader --help runs in the image" grep -q '^usage: kinesis-loader COMMAND' <<<"$help"
check "--help lists the settings the chart sets" grep -q '^  KL_LISTEN ' <<<"$help"
version=$(b run --isolation chroot "$ctr" -- kinesis-loader --version 2>&1) || true
check "--version ($version)" grep -qE '^kinesis-loader [0-9]' <<<"$version"
check "runs as uid 10001" test "$(b run --isolation chroot "$ctr" -- id -u 2>&1)" = 10001
check "has the sleep of the chart's preStop hook" b run --isolation chroot "$ctr" -- sleep 0
check "can write its working directory /data" b run --isolation chroot "$ctr" -- \
    sh -c 'touch /data/.w && rm /data/.w'

total=7
echo "$((total - failed)) passed, $failed failed"
[ "$failed" -eq 0 ]
