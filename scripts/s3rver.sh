#!/bin/sh
# Installs s3rver (an S3-protocol server in Node.js, npm package "s3rver") for
# the cold-tier tests, which run flcache's S3 backend against it on loopback.
#
#   ./scripts/s3rver.sh install   install when missing, print the s3rver binary path
#   ./scripts/s3rver.sh path      print the binary path, exit 1 when not installed
#
# It goes to $FLCACHE_S3RVER_PREFIX (default ~/.cache/flcache/s3rver) through the
# machine's npm; nothing is installed globally. Exit status 1 (with a reason on
# stderr) when node/npm are missing or the install fails: the tests then skip
# the S3 cases and say why.
set -eu

PREFIX=${FLCACHE_S3RVER_PREFIX:-${HOME:-/tmp}/.cache/flcache/s3rver}
VERSION=${FLCACHE_S3RVER_VERSION:-3.7.1}
BIN="$PREFIX/node_modules/.bin/s3rver"

case "${1:-install}" in
path)
    [ -x "$BIN" ] || { echo "s3rver is not installed in $PREFIX" >&2; exit 1; }
    echo "$BIN"
    ;;
install)
    if [ ! -x "$BIN" ]; then
        command -v node >/dev/null 2>&1 || { echo "s3rver: node is not installed" >&2; exit 1; }
        command -v npm >/dev/null 2>&1 || { echo "s3rver: npm is not installed" >&2; exit 1; }
        mkdir -p "$PREFIX"
        # A lock so parallel test runs do not install into the same tree at once.
        (
            flock 9 2>/dev/null || true
            if [ ! -x "$BIN" ]; then
                npm install --prefix "$PREFIX" --no-audit --no-fund --loglevel=error \
                    "s3rver@$VERSION" >"$PREFIX/npm.log" 2>&1 ||
                    { echo "s3rver: npm install failed (see $PREFIX/npm.log)" >&2; exit 1; }
            fi
        ) 9>"$PREFIX/.lock"
    fi
    [ -x "$BIN" ] || { echo "s3rver: not installed after npm install" >&2; exit 1; }
    echo "$BIN"
    ;;
*)
    echo "usage: $0 [install|path]" >&2
    exit 2
    ;;
esac
