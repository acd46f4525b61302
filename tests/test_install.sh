#!/bin/sh
# test_install.sh - the ctest test install_c_client: libflcache as a user
# gets it (issue 15 point 4).
#
# Installs the build into a temporary prefix (cmake --install: the build is
# reused, nothing is compiled again), then checks what is there: the public
# header alone compiles (C99 pedantic, C++), the shared library's SONAME is
# libflcache.so.0 and it exports exactly the functions the header declares.
# Then it copies examples/c_client out of the source tree, builds it with
# its Makefile, which knows only `pkg-config ... flcache`
# (PKG_CONFIG_PATH=<prefix>), linked once with libflcache.so and once with
# libflcache.a, runs both against a redis-server it starts on a unix socket
# in the temporary directory, and checks the model each pulled: the FedAvg
# of the two clients' updates, i + 7.5 for i = 0..9.
#
# Usage: tests/test_install.sh <build dir> <source dir>   (TAP on stdout;
# exit 0 passed, 1 failed, 77 skipped: no make or redis-server).
set -u
build=$(cd "${1:?usage: test_install.sh BUILD SRC}" && pwd)
src=$(cd "${2:?usage: test_install.sh BUILD SRC}" && pwd)

n=0
bad=0
ok() { n=$((n + 1)); echo "ok $n - $*"; }
notok() { n=$((n + 1)); echo "not ok $n - $*"; bad=1; }
# check "what was checked" command...: ok or not ok by the command's status.
check() { what=$1; shift; if "$@"; then ok "$what"; else notok "$what"; fi; }
finish() { echo "1..$n"; exit $bad; }

redis=$(command -v redis-server || echo /usr/bin/redis-server)
for tool in make cc pkg-config readelf nm "$redis"; do
    command -v "$tool" >/dev/null 2>&1 || { echo "1..0 # SKIP no $tool"; exit 77; }
done

tmp=$(mktemp -d /tmp/flc-install.XXXXXX)
rpid=""
cleanup() {
    [ -n "$rpid" ] && kill "$rpid" 2>/dev/null && wait "$rpid" 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM
t0=$(date +%s)

# ---- install -------------------------------------------------------------
if ! cmake --install "$build" --prefix "$tmp/p" >"$tmp/install.log" 2>&1; then
    cat "$tmp/install.log"
    notok "cmake --install $build --prefix <tmp>"
    finish
fi
ok "cmake --install into $tmp/p ($(wc -l <"$tmp/install.log") lines of log)"
pc=$(find "$tmp/p" -name flcache.pc | head -n 1)
[ -n "$pc" ] || { notok "flcache.pc installed"; finish; }
PKG_CONFIG_PATH=$(dirname "$pc")
export PKG_CONFIG_PATH
want_version=$(sed -n 's/^CMAKE_PROJECT_VERSION:STATIC=//p' "$build/CMakeCache.txt")
got_version=$(pkg-config --modversion flcache)
check "pkg-config finds flcache $got_version (project version $want_version)" \
    test "$got_version" = "$want_version" -a -n "$want_version"
libdir=$(pkg-config --variable=libdir flcache)
includedir=$(pkg-config --variable=includedir flcache)
hdr="$includedir/flcache/flcache.h"
check "installed: flcache/flcache.h, libflcache.so.0, libflcache.so.$want_version, libflcache.a" \
    test -f "$hdr" -a -L "$libdir/libflcache.so.0" -a -f "$libdir/libflcache.so.$want_version" \
    -a -f "$libdir/libflcache.a"

soname=$(readelf -d "$libdir/libflcache.so" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
check "SONAME of libflcache.so is libflcache.so.0 (got '$soname')" test "$soname" = libflcache.so.0

# ---- the public header -----------------------------------------------------
incs=$(sed -n 's/^#include[[:space:]]*//p' "$hdr" | tr '\n' ' ')
check "the header includes only standard headers ($incs)" \
    test "$incs" = "<stddef.h> <stdint.h> "
echo '#include <flcache/flcache.h>' >"$tmp/h.c"
# shellcheck disable=SC2046
check "the header alone compiles as C99 with -Wall -Wextra -pedantic -Werror" \
    cc -std=c99 -Wall -Wextra -pedantic -Werror -fsyntax-only $(pkg-config --cflags flcache) "$tmp/h.c"
if command -v c++ >/dev/null 2>&1; then
    cp "$tmp/h.c" "$tmp/h.cc"
    # shellcheck disable=SC2046
    check "the header compiles as C++ (extern \"C\")" \
        c++ -Wall -Wextra -Werror -fsyntax-only $(pkg-config --cflags flcache) "$tmp/h.cc"
fi
# Functions the header declares (comments removed) vs symbols the library exports.
sed 's,/\*.*\*/,,; /\/\*/,/\*\//d' "$hdr" | grep -o 'flc_[a-z0-9_]*(' | tr -d '(' | sort -u \
    >"$tmp/declared"
nm -D --defined-only "$libdir/libflcache.so" | awk '$2 == "T" { print $3 }' | sed 's/@.*//' \
    | sort -u >"$tmp/exported"
nm -D --defined-only "$libdir/libflcache.so" | awk '$2 != "T" && $2 != "A"' >"$tmp/other"
if cmp -s "$tmp/declared" "$tmp/exported" && [ ! -s "$tmp/other" ]; then
    ok "libflcache.so exports exactly the $(wc -l <"$tmp/declared") functions the header declares"
else
    diff "$tmp/declared" "$tmp/exported" | sed 's/^/# /'
    sed 's/^/# also exported: /' "$tmp/other"
    notok "libflcache.so exports exactly the functions the header declares (< header, > library)"
fi

# ---- the example, out of tree ----------------------------------------------
cp -R "$src/examples/c_client" "$tmp/c_client"
rm -f "$tmp/c_client/c_client" "$tmp/c_client/c_client_static"
if make -s -C "$tmp/c_client" c_client CFLAGS="-O2 -Wall -Wextra -Werror" >"$tmp/make.log" 2>&1; then
    ok "examples/c_client built out of tree with pkg-config (shared)"
else
    sed 's/^/# /' "$tmp/make.log"
    notok "examples/c_client built out of tree with pkg-config (shared)"
    finish
fi
check "c_client needs libflcache.so.0" \
    sh -c "readelf -d '$tmp/c_client/c_client' | grep -q 'NEEDED.*\[libflcache.so.0\]'"
static=0
if make -s -C "$tmp/c_client" static CFLAGS="-O2 -Wall -Wextra -Werror" >"$tmp/make_static.log" 2>&1
then
    static=1
    ok "examples/c_client built with libflcache.a (make static)"
    check "c_client_static does not need libflcache.so" \
        sh -c "! readelf -d '$tmp/c_client/c_client_static' | grep -q 'NEEDED.*libflcache'"
else
    sed 's/^/# /' "$tmp/make_static.log"
    notok "examples/c_client built with libflcache.a (make static)"
fi

# ---- a round against a real redis-server -----------------------------------
sock="$tmp/redis.sock"
"$redis" --port 0 --unixsocket "$sock" --unixsocketperm 700 --save '' --appendonly no \
    --dir "$tmp" --logfile "$tmp/redis.log" --daemonize no --protected-mode no &
rpid=$!
i=0
while [ ! -S "$sock" ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i + 1)); done
[ -S "$sock" ] || { sed 's/^/# /' "$tmp/redis.log"; notok "redis-server up on $sock"; finish; }

want="model: 7.5 8.5 9.5 10.5 11.5 12.5 13.5 14.5 15.5 16.5"
run_client() { # label binary job [env...]
    label=$1 bin=$2 job=$3
    shift 3
    if env "$@" "$bin" "unix://$sock" "$job" >"$tmp/$label.out" 2>&1; then
        ok "$label: c_client exited 0 (its own FedAvg check passed)"
    else
        sed 's/^/# /' "$tmp/$label.out"
        notok "$label: c_client exited 0"
    fi
    got=$(grep '^model:' "$tmp/$label.out")
    check "$label: pulled '$got', want '$want'" test "$got" = "$want"
    check "$label: the history query answers as JSON for job $job, round 1" \
        grep -q "^history: {\"job\":\"$job\",\"kind\":\"history\"" "$tmp/$label.out"
}
run_client shared "$tmp/c_client/c_client" job-shared LD_LIBRARY_PATH="$libdir"
[ $static = 1 ] && run_client static "$tmp/c_client/c_client_static" job-static

echo "# $(($(date +%s) - t0)) s"
finish
