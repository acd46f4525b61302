#!/bin/sh
# Installs the Debian packages flcache needs (only when some are missing)
# and configures and builds it with CMake. python3-botocore, clang and
# libclang-rt-14-dev are for the tests only: tests/sigv4_check.py checks
# libcurl's SigV4 signatures with botocore, and the ctest test `fuzz`
# (scripts/fuzz.sh) builds the libFuzzer targets of fuzz/ with clang.
# `flcache run` (docs/workloads.md) needs libpng-dev (mandelbrot's PNG) and
# fortunes (wordcount's corpus); python3-sklearn is the forest's reference in
# its test and bench.
#
#   ./scripts/setup.sh                  optimized build (RelWithDebInfo) in build/
#   BUILD_DIR=build-asan ./scripts/setup.sh -DFLCACHE_SANITIZE=ON
#
# Extra arguments go to the CMake configure step.
set -eu

cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}

PACKAGES="build-essential cmake pkg-config
  libhiredis-dev libcurl4-openssl-dev libcjson-dev libopenblas-dev libuv1-dev
  libprotobuf-c-dev protobuf-c-compiler zlib1g-dev libssl-dev
  redis-server redis-tools dataset-fashion-mnist iproute2
  python3-botocore clang libclang-rt-14-dev
  libpng-dev fortunes python3-sklearn"

missing=""
for p in $PACKAGES; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
    echo "setup: installing$missing"
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update
    # The tests start their own redis-server; do not let the package start
    # (or fail to start) a system one where there is no init system.
    DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 $SUDO apt-get install -y --no-install-recommends $missing
fi

cmake -S . -B "$BUILD_DIR" "$@"
cmake --build "$BUILD_DIR" -j "$(nproc)"
echo "setup: built $BUILD_DIR/flcache"
