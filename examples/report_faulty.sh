#!/bin/sh
# A simulation with faulty clients, and its report: one HTML page to open in
# a browser (docs/report.md says how to read it).
#
#   ./examples/report_faulty.sh [build-dir] [page.html]   (default: ./build report-faulty.html)
#
# 30 clients on non-IID Fashion-MNIST, 10 per round for 20 rounds; 20% of
# them flip the sign of their update (x4) and the rounds are merged with the
# coordinate-wise median. The report shows the faulty clients in the
# outlier heat map (red triangles: the simulation's ground truth), apart on
# the map of the last round, and at the ends of the contribution ranking.
#
# The report is made from what the cache holds, so the cache must outlive
# the simulation: with FLCACHE_REDIS set the job stays there (as job
# report-faulty); otherwise this script starts a redis-server of its own on
# a unix socket and stops it at the end. Needs the Debian package
# dataset-fashion-mnist and a built tree (./scripts/setup.sh).
set -eu
B=${1:-./build}
OUT=${2:-report-faulty.html}
FLCACHE="$B/flcache"
JOB=report-faulty
[ -x "$FLCACHE" ] || { echo "no $FLCACHE: build first (./scripts/setup.sh)" >&2; exit 2; }

if [ -z "${FLCACHE_REDIS:-}" ]; then
    dir=$(mktemp -d /tmp/flcache-example-XXXXXX)
    trap 'kill "$(cat "$dir/redis.pid" 2>/dev/null)" 2>/dev/null; sleep 0.2; rm -rf "$dir"' EXIT
    redis-server --port 0 --unixsocket "$dir/redis.sock" --save '' --appendonly no \
        --daemonize yes --pidfile "$dir/redis.pid" --dir "$dir" >/dev/null
    i=0
    while [ ! -S "$dir/redis.sock" ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
    FLCACHE_REDIS="unix://$dir/redis.sock"
    export FLCACHE_REDIS
fi

echo "== 30 clients, 10 per round, 20 rounds; 20% flip the sign of their update; median"
"$FLCACHE" simulate --clients 30 --per-round 10 --rounds 20 --alpha 0.5 --model softmax \
    --strategy median --faulty 0.2 --fault sign-flip --seed 1 --job "$JOB"

echo
echo "== the report"
"$FLCACHE" report --job "$JOB" -o "$OUT"
echo "open $OUT in a browser (it loads nothing from the network)"
