#!/usr/bin/env bash
# test_layers: the project keeps its layering rules (scripts/check-layers.sh),
# and the check finds each kind of breach in a tree made to break them.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
check=scripts/check-layers.sh

"$check"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/core/load" "$tmp/api" "$tmp/server"
printf '#include "server/config.h"\n' >"$tmp/core/load/x.c"
printf '#include <hiredis/hiredis.h>\n' >"$tmp/api/y.c"
printf '#include "core/dest/pg.h"\n' >"$tmp/server/z.c"
printf '#include "core/store/redis.h"\n' >"$tmp/server/backends.c"
if out=$("$check" --root "$tmp"); then
    echo "test_layers: a broken tree passed the check"
    exit 1
fi
for want in "core/load/x.c:1" "api/y.c:1" "server/z.c:1" "3 breach"; do
    if ! grep -q "$want" <<<"$out"; then
        printf 'test_layers: "%s" missing from:\n%s\n' "$want" "$out"
        exit 1
    fi
done
if grep -q "^server/backends.c:" <<<"$out"; then
    echo "test_layers: server/backends.c may include the backends"
    exit 1
fi
echo "test_layers: 2 passed, 0 failed"
