#!/bin/sh
# Runs the CLI's main paths under valgrind (definite/indirect leaks and
# invalid accesses are errors): simulate (clients in process), train, every
# query kind, store stats. Needs a built build/ (./scripts/setup.sh).
#   ./scripts/memcheck.sh          exit 0 when all are clean
set -eu
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { echo "memcheck: valgrind is not installed" >&2; exit 1; }
dir=$(mktemp -d)
trap 'build/flcache down --dir "$dir/srv" >/dev/null 2>&1; rm -rf "$dir"' EXIT
eval "$(build/flcache up --dir "$dir/srv" 2>/dev/null | tail -1)"
export FLCACHE_REDIS
VG="valgrind -q --leak-check=full --errors-for-leak-kinds=definite,indirect --show-leak-kinds=definite,indirect --error-exitcode=9"
fail=0
run() {
    if $VG build/flcache "$@" >/dev/null 2>"$dir/vg.txt"; then
        echo "clean: flcache $*"
    else
        echo "FAILED: flcache $*"; cat "$dir/vg.txt"; fail=1
    fi
}
run simulate --clients 20 --per-round 4 --rounds 3 --job vg --subset 2000 --inproc --faulty 0.25 --fault sign-flip
run train --workers 2 --epochs 1 --subset 2000 --job vgt
for q in "history --job vg" "client --job vg --client c1" "norms --job vg --round 3" \
         "similarity --job vg --round 3" "outliers --job vg --round 3 --no-cache" \
         "clusters --job vg --round 2 --k 2" "personalize --job vg --round 3 --k 2 --out $dir/m.bin" \
         "contribution --job vg --rounds 1:3" "schedule --job vg --k 3"; do
    # shellcheck disable=SC2086
    run query $q
done
run store stats
run --help
exit $fail
