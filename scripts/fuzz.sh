#!/bin/sh
# Builds the libFuzzer targets of fuzz/ with clang (libFuzzer + ASan) and
# runs each for a bounded time, starting from the seed corpus that
# flc_fuzz_seeds writes (values made by flcache's own encoders).
#
#   scripts/fuzz.sh                  every target for 10 min (FUZZ_SECONDS)
#   scripts/fuzz.sh --ci             every target, a fixed seed and 150k runs from
#                                    the seeds alone (the ctest test `fuzz`)
#   scripts/fuzz.sh fuzz_url 3600    one target for an hour
#
# Build: $FLCACHE_FUZZ_DIR (default build/fuzz), configured on the first run.
# fuzz/regress/<target>/ holds inputs that once found a bug: replayed first.
# Inputs that found new coverage accumulate in <dir>/corpus/<target>;
# --ci is deterministic instead (its own empty corpus, -seed=1, a number of
# runs, not a time): the same tree gives the same verdict on every machine,
# so CI fails on a change, never on a random walk that got further this time.
# The open-ended search is the timed run above (run it before a release).
# a crash, leak or timeout is written to <dir>/findings/<target>/ and makes
# the script exit 1. Exit 77 (ctest: skipped) when clang or libclang-rt-14-dev
# is missing (scripts/setup.sh installs them).
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
dir=${FLCACHE_FUZZ_DIR:-$root/build/fuzz}
secs=${FUZZ_SECONDS:-600}
only=""
ci=0
case "${1:-}" in
    --ci) ci=1 ;;
    fuzz_*) only=$1; secs=${2:-$secs} ;;
    "") ;;
    *) echo "usage: $0 [--ci | fuzz_TARGET [SECONDS]]" >&2; exit 2 ;;
esac

if ! command -v clang >/dev/null 2>&1; then
    echo "fuzz: skipped: no clang (install the Debian packages clang and libclang-rt-14-dev)"
    exit 77
fi
probe=$(mktemp -d)
trap 'rm -rf "$probe"' EXIT
printf '#include <stddef.h>\n#include <stdint.h>\nint LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) { return 0; }\n' >"$probe/p.c"
if ! clang -fsanitize=fuzzer,address "$probe/p.c" -o "$probe/p" 2>"$probe/err"; then
    echo "fuzz: skipped: clang cannot link libFuzzer (install libclang-rt-14-dev):"
    head -3 "$probe/err"
    exit 77
fi

t0=$(date +%s)
if [ ! -f "$dir/CMakeCache.txt" ]; then
    cmake -S "$root" -B "$dir" -DCMAKE_C_COMPILER=clang -DFLCACHE_FUZZ=ON \
        -DCMAKE_BUILD_TYPE=RelWithDebInfo >"$probe/configure.log" 2>&1 ||
        { cat "$probe/configure.log"; exit 1; }
fi
jobs=$(nproc 2>/dev/null || echo 2)
cmake --build "$dir" -j "$jobs" --target fuzzers >"$probe/build.log" 2>&1 ||
    { tail -40 "$probe/build.log"; exit 1; }
echo "fuzz: built in $dir ($(($(date +%s) - t0)) s)"
"$dir/fuzz/flc_fuzz_seeds" "$dir/seeds"

failed=""
for f in "$dir"/fuzz/fuzz_*; do
    [ -x "$f" ] || continue
    t=$(basename "$f")
    [ -z "$only" ] || [ "$t" = "$only" ] || continue
    mkdir -p "$dir/corpus/$t" "$dir/findings/$t"
    # Inputs that once found a bug (fuzz/regress/<target>/, committed) are
    # replayed first: a fix that comes undone fails here at once.
    if [ -d "$root/fuzz/regress/$t" ]; then
        if ! "$f" "$root/fuzz/regress/$t"/* >"$dir/findings/$t/regress.log" 2>&1; then
            echo "not ok - $t: a committed regression input fails again:"
            grep -E 'ERROR|SUMMARY|Running:' "$dir/findings/$t/regress.log" | head -8
            failed="$failed $t"
            continue
        fi
    fi
    log="$dir/findings/$t/last.log"
    corpus="$dir/corpus/$t"
    budget="-max_total_time=$secs"
    if [ "$ci" = 1 ]; then
        corpus="$probe/corpus-$t"
        mkdir -p "$corpus"
        budget="-seed=1 -runs=150000"
    fi
    t1=$(date +%s)
    # corpus first: libFuzzer writes new inputs into the first directory.
    # shellcheck disable=SC2086 # $budget is two options or one
    if "$f" $budget -timeout=10 -rss_limit_mb=2048 -max_len=8192 \
        -print_final_stats=1 -artifact_prefix="$dir/findings/$t/" \
        "$corpus" "$dir/seeds/$t" >"$log" 2>&1; then
        runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
        cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1)
        echo "ok - $t: ${runs:-?} runs in $(($(date +%s) - t1)) s, $cov, corpus $(ls "$corpus" | wc -l)"
    else
        echo "not ok - $t found a problem (input and report in $dir/findings/$t/):"
        grep -E 'ERROR|SUMMARY|==[0-9]+==|Test unit written' "$log" | head -12
        failed="$failed $t"
    fi
done
[ -z "$failed" ] || { echo "fuzz: failed:$failed"; exit 1; }
echo "fuzz: all targets clean ($(($(date +%s) - t0)) s)"
