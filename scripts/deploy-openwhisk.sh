#!/bin/sh
# Deploys flcache-fn to Apache OpenWhisk as a native action: the zip
# `flcache package openwhisk` built (exec + flcache-fn + its libraries) on the
# dockerskeleton image, then checks it with a blocking `echo` activation.
# Every wsk call is printed before it runs; DRY_RUN=1 only prints them.
#
#   scripts/deploy-openwhisk.sh [ZIP]          (default dist/flcache-fn-ow.zip)
#
# Settings (environment; wsk itself reads ~/.wskprops: APIHOST, AUTH):
#   ACTION          action name (default flcache-fn; the driver's FLCACHE_FUNCTION,
#                   "package/action" works too)
#   MEMORY          MB (default 512, the usual operator limit)
#   TIMEOUT_MS      ms (default 300000, the usual limit; a blocking invoke waits
#                   60 s, after which the driver polls the activation record)
#   FLCACHE_REDIS   the cache URL, bound as an action parameter: OpenWhisk has no
#                   per-action environment, flcache-fn reads FLCACHE_* parameters
#                   as its variables (docs/functions.md). The invokers' network
#                   must reach it (a private address; never expose Redis).
#   (OpenBLAS reads OPENBLAS_CORETYPE from the environment at start, which a
#   bound parameter is not: on OpenWhisk the kernels follow the invoker's CPU,
#   so models match a local run's to float rounding, not bit for bit.)
#   INSECURE=1      wsk -i (a self-signed controller certificate)
#
# The driver then runs with WSK_APIHOST, WSK_AUTH (and WSK_NAMESPACE):
#   flcache simulate --platform openwhisk ...
set -eu

ZIP=${1:-dist/flcache-fn-ow.zip}
ACTION=${ACTION:-flcache-fn}
MEMORY=${MEMORY:-512}
TIMEOUT_MS=${TIMEOUT_MS:-300000}
DRY_RUN=${DRY_RUN:-0}
I=""
[ "${INSECURE:-0}" = 1 ] && I="-i"

run() {
    # the cache URL may carry its AUTH token: never printed
    echo "+ $*" | sed -E 's#(rediss?://[^:/@]*:)[^@]*@#\1***@#g' >&2
    [ "$DRY_RUN" = 1 ] || "$@"
}

[ -f "$ZIP" ] || { echo "deploy-openwhisk: no $ZIP: run flcache package openwhisk first" >&2; exit 1; }
[ "$DRY_RUN" = 1 ] || command -v wsk >/dev/null ||
    { echo "deploy-openwhisk: needs the OpenWhisk CLI (wsk)" >&2; exit 1; }
: "${FLCACHE_REDIS:?set FLCACHE_REDIS to the cache URL the actions open}"

# --native: the dockerskeleton image runs the zip's exec with the event as
# argv[1] and takes the last stdout line as the result. `update` creates the
# action when it does not exist.
# shellcheck disable=SC2086
run wsk $I action update "$ACTION" --native "$ZIP" --memory "$MEMORY" --timeout "$TIMEOUT_MS" \
    --param FLCACHE_REDIS "$FLCACHE_REDIS"
# shellcheck disable=SC2086
run wsk $I action invoke "$ACTION" --blocking --result --param role echo --param deployed true
echo "deployed action $ACTION; run the driver with: FLCACHE_FUNCTION=$ACTION flcache ... --platform openwhisk" >&2
