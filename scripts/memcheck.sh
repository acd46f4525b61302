#!/bin/sh
# Runs the CLI's main paths under valgrind (definite/indirect leaks and
# invalid accesses are errors): simulate (clients in process, and as
# flcache-fn functions with valgrind following them), train, every query
# kind, store stats, the cold tier (spill and fetch-back), flcache-fn over
# good and malformed events, and the usage and configuration errors (exit 2).
# Needs a built build/ (./scripts/setup.sh).
#   ./scripts/memcheck.sh          exit 0 when all are clean
set -eu
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { echo "memcheck: valgrind is not installed" >&2; exit 1; }
dir=$(mktemp -d)
trap 'build/flcache down --dir "$dir/srv" >/dev/null 2>&1
      build/flcache down --dir "$dir/small" >/dev/null 2>&1; rm -rf "$dir"' EXIT
eval "$(build/flcache up --dir "$dir/srv" 2>/dev/null | tail -1)"
export FLCACHE_REDIS
VG="valgrind -q --leak-check=full --errors-for-leak-kinds=definite,indirect --show-leak-kinds=definite,indirect --error-exitcode=9"
fail=0
# run ARGS...: flcache ARGS must exit $want (default 0) with no valgrind
# error (with -q valgrind writes only errors). Set before the call and
# cleared after it: $envs (NAME=value words for the process), $bin (instead
# of build/flcache), $in (stdin), $kids=1 (valgrind follows the flcache-fn
# processes too, each logging to a file, since their stderr goes to the pool).
run() {
    rc=0
    rm -f "$dir"/vg.*.log
    log=""
    [ -z "${kids:-}" ] || log="--trace-children=yes --trace-children-skip=*redis-server* --log-file=$dir/vg.%p.log"
    # shellcheck disable=SC2086
    env ${envs:-} $VG $log "${bin:-build/flcache}" "$@" <"${in:-/dev/null}" >/dev/null 2>"$dir/vg.txt" || rc=$?
    if [ "$rc" -eq "${want:-0}" ] && ! grep -q '^==[0-9]*==' "$dir/vg.txt" &&
        ! cat "$dir"/vg.*.log 2>/dev/null | grep -q '^==[0-9]*=='; then
        echo "clean: ${envs:+$envs }${bin:-flcache} $*"
    else
        echo "FAILED (exit $rc, want ${want:-0}): ${envs:+$envs }${bin:-flcache} $*"
        cat "$dir/vg.txt"
        cat "$dir"/vg.*.log 2>/dev/null || true
        fail=1
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
# The evaluation kinds on an mlp job with 3 shards (unit columns cut by the
# shards' edges, the kept products, the personalized model), cold and warm
# (the second personalize reads the model the first one cached).
run simulate --clients 10 --per-round 5 --rounds 2 --job vge --subset 2000 --test-subset 500 \
    --model mlp --hidden 24 --shards 3 --inproc --quiet
for q in "accuracy --job vge --round 2 --no-cache" "accuracy --job vge --round 2" \
         "contribution --by accuracy --job vge --round 2" "faults --job vge --rounds 1:2" \
         "personalize --by accuracy --job vge --round 2 --k 3 --out $dir/p.bin" \
         "personalize --by accuracy --job vge --round 2 --k 3 --out $dir/p2.bin"; do
    # shellcheck disable=SC2086
    run query $q
done
# Client and aggregator functions in flcache-fn processes, valgrind in each
# (the pool's rlimit would stop valgrind; its watchdog stays).
envs=FLCACHE_POOL_MEM=watch kids=1
run simulate --clients 8 --per-round 4 --rounds 2 --job vgp --subset 1000 --test-subset 500 \
    --strategy krum --memory 4096 --quiet
envs="" kids=""
# The cold tier: a server under a small maxmemory spills to files; queries
# fetch back.
small=$(build/flcache up --dir "$dir/small" --maxmemory 4000000 2>/dev/null | tail -1)
small=${small#*FLCACHE_REDIS=}
envs="FLCACHE_REDIS=$small FLCACHE_COLD=file://$dir/cold FLCACHE_POLICY=workload"
run simulate --clients 10 --per-round 5 --rounds 3 --job vgc --subset 2000 --test-subset 500 \
    --model mlp --hidden 32 --inproc --quiet
run query norms --job vgc --round 1
run query contribution --job vgc --rounds 1:3
run store stats
envs=""
# flcache-fn's one event reader, on good and malformed events of every role.
cat >"$dir/events" <<'EVENTS'
{"role":"probe","v":1}
{"role":"probe","alloc_mb":1.5}
not json
[1,2]
{"role":3}
{"role":"nobody"}
{"role":"worker","job":"j","rank":0,"workers":2,"epochs":1.5}
{"role":"worker","job":"j","rank":0,"workers":1,"model":"softmax","epochs":1,"batch":32,"lr":0.1,"comm":"nope"}
{"role":"client","job":"j","round":1,"client":"c1","indices":[1,2.5]}
{"role":"client","job":"vg","round":4,"client":"c1","indices":[1,2,3],"model":"softmax","lr":0.1,"fault":"noise"}
{"role":"aggregator","job":"j","round":1,"shard":0,"num_shards":1,"model_size":10,"rule":"fedavg","expected":["a",3]}
{"role":"aggregator","job":"vgq","round":1,"shard":0,"num_shards":1,"model_size":10,"rule":"median","expected":["a","b"],"deadline_ms":50}
{"role":"query","kind":"nope","job":"vg"}
{"role":"query","kind":"norms","job":"vg","round":1e300}
{"role":"query","kind":"clusters","job":"vg","round":2,"k":2}
EVENTS
bin=build/flcache-fn-test in="$dir/events" # the shipped roles and the test-only probe
run --local
bin="" in=""
# Usage and configuration errors: exit 2, nothing leaked on the way out.
want=2
run simulate --clients
run simulate --per-round 4 --strategy krum --krum-f 3
run query clusters --job vg --round 2 --k 0
run store nope
envs=FLCACHE_CHUNK=12q
run store stats
envs=FLCACHE_POOL_MEM=zz
run store stats
exit $fail
