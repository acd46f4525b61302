#!/bin/sh
# FedAvg on non-IID Fashion-MNIST, then the same with 20% sign-flipping
# clients under FedAvg and under coordinate-wise median, side by side.
#
#   ./examples/fedavg_noniid.sh [build-dir]      (default: ./build)
#
# Needs the Debian package dataset-fashion-mnist and a built tree
# (./scripts/setup.sh). Each run starts its own private redis-server unless
# FLCACHE_REDIS points at one; with FLCACHE_REDIS set, the round history
# stays in that cache under the job names printed below.
set -eu
B=${1:-./build}
FLCACHE="$B/flcache"
ROUNDS=${ROUNDS:-50}
[ -x "$FLCACHE" ] || { echo "no $FLCACHE: build first (cmake -S . -B $B && cmake --build $B)" >&2; exit 2; }

common="--clients 100 --per-round 10 --rounds $ROUNDS --alpha 0.5 --local-epochs 1 --model softmax --seed 1"

echo "== clean FedAvg: N=100 clients, K=10 per round, Dirichlet alpha=0.5"
"$FLCACHE" simulate $common --strategy fedavg --job noniid-clean

echo
echo "== 20% of the clients flip the sign of their update (x4): FedAvg"
"$FLCACHE" simulate $common --strategy fedavg --faulty 0.2 --fault sign-flip --job noniid-fedavg-flip

echo
echo "== the same attack under coordinate-wise median"
"$FLCACHE" simulate $common --strategy median --faulty 0.2 --fault sign-flip --job noniid-median-flip

echo
echo "== dropouts and stragglers: 10% never report, 20% wait 3 s, the round closes after 2 s"
"$FLCACHE" simulate $common --rounds 5 --strategy fedavg --dropout 0.1 \
    --straggler-ms slow:0.2:3000 --deadline-ms 2000 --concurrency 10 --job noniid-faults
