#!/bin/sh
# check_layers.sh - fails on an #include that points up a layer.
#
# The rules are not written here: they are the "Layers" table of
# docs/architecture.md (folder | what lives there | may include), so the
# document and the check cannot drift apart. For every .c/.h file in a layer
# folder, each `#include "X/..."` must name the folder itself or one the
# table allows. Two more rules from the same document:
#   - only cache/ includes hiredis (the only folder that speaks Redis);
#   - only cache/, tests/ and bench/ include cache/store_raw.h (raw Redis
#     commands): the layers above use the store's named operations;
#   - only the programs (cli/, tests/, bench/) read the environment
#     (getenv, secure_getenv), so libraries get their values passed in.
#     Not flagged: runtime/pool_proc.c hands this process's environ on to
#     function instances whole (inheritance, as a platform does, not a
#     setting read), and runtime/lambda_runtime.c publishes _X_AMZN_TRACE_ID
#     because the Lambda custom-runtime contract says so.)
# Usage: scripts/check_layers.sh [repository root]   (exit 0 clean, 1 violations)
set -eu
root=${1:-$(cd "$(dirname "$0")/.." && pwd)}
doc="$root/docs/architecture.md"
[ -f "$doc" ] || { echo "check_layers: $doc not found" >&2; exit 2; }

# "| `cache/` | ... | base, proto |" -> "cache base proto"; "everything" -> "*".
rules=$(awk -F'|' '
    /^## Layers/ { on = 1; next }
    /^## / && on { exit }
    on && $2 ~ /`[a-z]+\/`/ {
        dir = $2; gsub(/[ `\/]/, "", dir)
        allow = $4; gsub(/,/, " ", allow); gsub(/—|-|`|\//, " ", allow)
        if (allow ~ /everything/) allow = "*"
        print dir, allow
    }' "$doc")
[ -n "$rules" ] || { echo "check_layers: no Layers table in $doc" >&2; exit 2; }

bad=0
checked=0
echo "$rules" | {
    while read -r dir allow; do
        [ -d "$root/$dir" ] || { echo "not ok - layer $dir/ in the table has no folder"; bad=1; continue; }
        for f in "$root/$dir"/*.c "$root/$dir"/*.h; do
            [ -f "$f" ] || continue
            checked=$((checked + 1))
            rel=${f#"$root"/}
            if [ "$allow" != "*" ]; then
                for inc in $(sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"\([a-z_]*\)\/.*/\1/p' "$f" | sort -u); do
                    ok=0
                    for a in "$dir" $allow; do [ "$inc" = "$a" ] && ok=1; done
                    if [ $ok = 0 ]; then
                        echo "not ok - $rel includes $inc/, which $dir/ may not (allowed: ${allow:-nothing})"
                        bad=1
                    fi
                done
            fi
            if [ "$dir" != cache ] && grep -q '#[[:space:]]*include[[:space:]]*<hiredis/' "$f"; then
                echo "not ok - $rel includes hiredis: only cache/ speaks Redis"
                bad=1
            fi
            case $dir in cache|tests|bench) ;; *)
                if grep -q '#[[:space:]]*include[[:space:]]*"cache/store_raw\.h"' "$f"; then
                    echo "not ok - $rel includes cache/store_raw.h: raw Redis commands only in cache/, tests/, bench/"
                    bad=1
                fi ;;
            esac
            case $dir in cli|tests|bench) ;; *)
                if grep -nE '\b(secure_)?getenv[[:space:]]*\(' "$f" >/dev/null; then
                    echo "not ok - $rel reads the environment: only the programs (cli/) may"
                    bad=1
                fi ;;
            esac
        done
    done
    if [ $bad = 0 ]; then
        echo "ok - $checked files: every include points down the layers of docs/architecture.md, hiredis only in cache/, store_raw.h only in cache/, tests/, bench/, the environment only in cli/"
    fi
    exit $bad
}
