#!/usr/bin/env bash
# Runs every benchmark program, one after another, with the local services
# up (and stopped again afterwards): the executable files directly under
# bench/, and the programs the CMake build makes from bench/ (named bench_*
# in build/ or build/bench/). Benchmarks read the same .run/services.env
# ($KL_RUN_DIR/services.env when KL_RUN_DIR is set) as
# the tests. Exits non-zero when a benchmark fails.
#
# Environment: BENCH_FILTER (run only programs whose name contains it),
#   KL_KEEP_SERVICES=1 (leave the services running afterwards).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

scripts/install-deps.sh
make --no-print-directory build

programs=()
while IFS= read -r -d '' f; do
    programs+=("$f")
done < <(find bench -maxdepth 1 -type f -perm -u+x -print0 2>/dev/null | sort -z;
    find build build/bench -maxdepth 1 -type f -name 'bench_*' -perm -u+x -print0 2>/dev/null | sort -z)

if [ -n "${BENCH_FILTER:-}" ]; then
    filtered=()
    for p in "${programs[@]}"; do
        [[ $(basename "$p") == *"$BENCH_FILTER"* ]] && filtered+=("$p")
    done
    programs=("${filtered[@]}")
fi

if [ ${#programs[@]} -eq 0 ]; then
    echo "bench: no benchmark programs under bench/ yet; nothing to run"
    exit 0
fi

stop_services() {
    if [ "${KL_KEEP_SERVICES:-0}" != 1 ]; then
        scripts/services.sh stop || true
    fi
}
trap stop_services EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
scripts/services.sh start
# shellcheck source=/dev/null
source "${KL_RUN_DIR:-.run}/services.env"

failed=()
for p in "${programs[@]}"; do
    printf '\n=== bench %s\n' "$p"
    "./$p" || failed+=("$p")
done
if [ ${#failed[@]} -gt 0 ]; then
    echo "bench: FAILED: ${failed[*]}"
    exit 1
fi
