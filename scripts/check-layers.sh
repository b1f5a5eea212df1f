#!/usr/bin/env bash
# The layering rules, checked (ctest runs it as test_layers):
#   - core/ includes nothing of api/ or server/;
#   - api/ includes no libpq, hiredis or curl header (it talks to core
#     through its interfaces);
#   - in api/ and server/, only server/backends.c includes the concrete
#     store and destination headers (core/store/redis.h, memory.h,
#     core/dest/pg.h, sqlite.h).
# Prints each breach as file:line and exits 1 when there is one.
# --root DIR checks another tree (the check's own test uses it).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [ "${1:-}" = --root ]; then
    cd "$2"
fi
mkdir -p core api server

breaches=0
breach() {
    printf '%s: %s\n' "$1" "$2"
    breaches=$((breaches + 1))
}

while IFS= read -r hit; do
    breach "$hit" "core/ must not include api/ or server/"
done < <(grep -rnE '^\s*#\s*include\s*"(api|server)/' core --include='*.[ch]' || true)

while IFS= read -r hit; do
    breach "$hit" "api/ must not include libpq, hiredis or curl"
done < <(grep -rnE '^\s*#\s*include\s*[<"](libpq-fe\.h|libpq/|hiredis/|curl/)' api --include='*.[ch]' || true)

while IFS= read -r hit; do
    case "$hit" in
    server/backends.c:*) ;;
    *) breach "$hit" "only server/backends.c picks the concrete backends" ;;
    esac
done < <(grep -rnE '^\s*#\s*include\s*"core/(store/(redis|memory)|dest/(pg|sqlite))\.h"' api server \
    --include='*.[ch]' || true)

if [ "$breaches" -gt 0 ]; then
    echo "check-layers: $breaches breach(es) of the layering rules"
    exit 1
fi
echo "check-layers: 1 passed, 0 failed"
