#!/usr/bin/env bash
# The whole test suite, as `make test` and CI run it: installs what is
# missing, builds build/ and the sanitizer build build-asan/ with -Werror,
# starts the local services, runs the proxy's own tests and ctest in both
# build directories, and stops the services again, also on failure or
# interrupt. Exits non-zero when anything failed.
#
# Environment: CTEST_ARGS (extra ctest arguments, e.g. "-R test_services"
#   or "-L unit"), JOBS (build parallelism), KL_KEEP_SERVICES=1 (leave the
#   services running afterwards), KL_SKIP_ASAN=1 (plain build only),
#   KL_LINT=1 (the strict static checks, as CI=true runs them).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
JOBS=${JOBS:-$(nproc 2>/dev/null || echo 2)}
read -r -a ctest_args <<<"${CTEST_ARGS:-}"

step() { printf '\n=== %s\n' "$*"; }

build() {
    local dir=$1
    shift
    step "build $dir"
    cmake -S . -B "$dir" -DKL_WERROR=ON "$@" >/dev/null
    cmake --build "$dir" -j "$JOBS"
}

stop_services() {
    if [ "${KL_KEEP_SERVICES:-0}" = 1 ]; then
        echo "test: services left running (KL_KEEP_SERVICES=1); stop them with scripts/services.sh stop"
        return
    fi
    step "stop services"
    scripts/services.sh stop || true
}

step "install dependencies"
scripts/install-deps.sh --lint --image

build build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DKL_SANITIZE=OFF
if [ "${KL_SKIP_ASAN:-0}" != 1 ]; then
    build build-asan -DCMAKE_BUILD_TYPE=Debug -DKL_SANITIZE=ON
fi

# From here on the services run: stop them however this script ends.
trap stop_services EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
step "start services"
scripts/services.sh start
# shellcheck source=/dev/null
source "${KL_RUN_DIR:-.run}/services.env"

failed=()

step "signature proxy tests (node --test)"
node --test tests/proxy/ || failed+=("proxy tests")

case "${CI:-}${KL_LINT:-}" in
*true* | *1* | *yes*)
    step "static checks (scripts/lint.sh: clang-tidy, cppcheck, clang-format; strict)"
    KL_LINT_STRICT=1 BUILD_DIR=build scripts/lint.sh || failed+=("lint")
    ;;
esac

step "openapi.yaml lint (@redocly/cli, settings in redocly.yaml)"
NODE_NO_WARNINGS=1 tests/node_modules/.bin/redocly lint openapi.yaml || failed+=("openapi lint")

step "ctest build/"
ctest --test-dir build --output-on-failure "${ctest_args[@]}" || failed+=("ctest build/")

if [ "${KL_SKIP_ASAN:-0}" != 1 ]; then
    step "ctest build-asan/ (AddressSanitizer, UndefinedBehaviorSanitizer)"
    ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:strict_string_checks=1} \
        UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1} \
        ctest --test-dir build-asan --output-on-failure "${ctest_args[@]}" || failed+=("ctest build-asan/")
fi

if [ ${#failed[@]} -gt 0 ]; then
    printf '\ntest: FAILED: %s\n' "${failed[*]}"
    exit 1
fi
printf '\ntest: all passed\n'
