#!/bin/sh
# Synchronous data-parallel SGD on Fashion-MNIST with W = 4 worker functions
# (LambdaML style): every step each worker computes its minibatch gradient,
# the workers average them through the cache with reduce-scatter, and all
# apply the same mean. Runs the two settings that reach the targets within
# 10 epochs and checks them:
#   softmax regression  lr 0.05, batch 64 per worker  -> test accuracy >= 83%
#   MLP, 128 hidden     lr 0.1,  batch 64 per worker  -> test accuracy >= 86%
# Needs the Fashion-MNIST files (Debian package dataset-fashion-mnist, or
# FLCACHE_DATA_DIR) and a build (cmake -S . -B build && cmake --build build).
# With FLCACHE_REDIS unset, flcache starts a private redis-server for each run.
# Knobs: FLCACHE (the binary), W, EPOCHS, COMM (reduce-scatter|allreduce-one).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
FLCACHE=${FLCACHE:-$here/../build/flcache}
W=${W:-4}
EPOCHS=${EPOCHS:-10}
COMM=${COMM:-reduce-scatter}

if [ ! -x "$FLCACHE" ]; then
    echo "sync_sgd.sh: $FLCACHE not found; build first:" >&2
    echo "  cmake -S . -B build && cmake --build build -j" >&2
    exit 1
fi

# run <name> <target %> <flcache train options...>
run() {
    name=$1 target=$2
    shift 2
    echo "== $name: $W workers, $COMM, $EPOCHS epochs (target >= $target%)"
    out=$("$FLCACHE" train --workers "$W" --epochs "$EPOCHS" --comm "$COMM" "$@")
    echo "$out"
    acc=$(echo "$out" | awk '/^accuracy/ { sub("%", "", $2); print $2 }')
    if awk -v a="$acc" -v t="$target" 'BEGIN { exit !(a + 0 >= t + 0) }'; then
        echo "== $name: $acc% >= $target%: target reached"
    else
        echo "== $name: $acc% < $target%: target missed" >&2
        return 1
    fi
    echo
}

status=0
run "softmax regression" 83 --model softmax --batch 64 --lr 0.05 || status=1
run "MLP (128 hidden)" 86 --model mlp --hidden 128 --batch 64 --lr 0.1 || status=1
exit $status
