#!/bin/sh
# A Redis Cluster of several nodes on one machine, for scale-out tests and
# experiments: every cache node (master or replica) is a Linux network
# namespace running its own redis-server in cluster mode, every namespace has
# a veth link to a bridge, and each node link is rate-limited with tc tbf on
# both ends, so a test sees a network of known bandwidth between the nodes
# and a "client" namespace that hosts drivers, functions and baselines.
#
#   scripts/testbed.sh up [--masters 3] [--replicas 0] [--rate 10gbit] ...
#   scripts/testbed.sh status | env | down
#   scripts/testbed.sh kill|start NODE      SIGKILL / restart a node's server
#   scripts/testbed.sh link NODE up|down    partition a node (or the client)
#   scripts/testbed.sh rate NODE RATE|none  reshape a link
#   scripts/testbed.sh wait [SECONDS]       until the cluster is whole and in sync
#   scripts/testbed.sh ns NODE              the namespace, for ip netns exec
#   scripts/testbed.sh exec NODE CMD ...    run CMD in NODE's namespace
#
# (scripts/testbed.sh --help lists the options.) NODE is n1, n2, ... or client.
#
# Why a "switch" namespace for the bridge instead of the root namespace: the
# veth pairs are created directly with both ends inside namespaces this script
# made, so nothing of a testbed ever appears in the host's own interfaces,
# routes or firewall (a host FORWARD policy of DROP, as Docker sets, would
# otherwise apply to bridged traffic); two testbeds can use the same subnet
# since each lives on its own bridge; and deleting the namespaces removes
# every link. No namespace has a default route, so no packet can leave.
#
# Delay and loss would need netem (sch_netem), which the kernel of the
# machine this was built on does not have: --delay takes only 0.
set -euf # -f: no globbing; slot lists in CLUSTER NODES can hold [ ]

PROG=testbed.sh
NAME=flt
DIR=""
MASTERS=3
REPLICAS=0
RATE=10gbit
CLIENT_RATE=none
DELAY=0
PASSWORD=""
SUBNET=10.213.0.0/24
PERSIST=0
NODE_TIMEOUT=2000
PORT=6379
WAIT_S=60

usage() {
    cat <<EOF
usage: $PROG [options] VERB [args]
verbs:
  up                 build the namespaces, links and servers, form the cluster,
                     wait for cluster_state:ok on every node, print the seed URL
  down               remove everything the testbed NAME made (also after a crash)
  status             one line per node: namespace, address, role, slots, pid, up/down
  env                shell lines (export ...) with the seed URL, password, namespaces
  kill NODE          SIGKILL NODE's redis-server
  start NODE         start NODE's redis-server again (it rejoins the cluster)
  link NODE up|down  bring NODE's link (n1, ..., or client) up or down
  rate NODE RATE     shape NODE's link at RATE (tc units: 200mbit, 1gbit; none: unshaped)
  wait [SECONDS]     wait (default 60 s) until every node is up and says cluster_state:ok
                     and every replica's master link is up; exit 1 otherwise
  ns NODE            print NODE's namespace name (ip netns exec NAME ...)
  exec NODE CMD ...  run CMD inside NODE's namespace
options (up uses all; the other verbs need only --name / --state-dir):
  --name NAME        prefix of the namespaces, so testbeds can coexist ([a-z0-9], 1-8; default flt)
  --state-dir DIR    state, configs, sockets, logs (default \${TMPDIR:-/tmp}/flc-testbed-NAME)
  --masters N        masters (default 3; redis-cli needs at least 3)
  --replicas R       replicas per master (default 0)
  --rate RATE        rate of every node link, both directions (default 10gbit)
  --client-rate RATE rate of the client link (default none: unshaped)
  --delay D          only 0: this kernel has no netem, so delay/loss cannot be emulated
  --password P       [A-Za-z0-9._~-]; default: generated, in DIR/password (mode 0600)
  --subnet A.B.C.0/24  addresses (default 10.213.0.0/24): client .2, nodes .11, .12, ...
  --node-timeout MS  cluster-node-timeout (default 2000: a failover takes seconds)
  --persist          RDB and AOF persistence on (default off)
environment:
  FLCACHE_TB_MALLOC_CONF  MALLOC_CONF of every redis-server (default
                     dirty_decay_ms:5000,muzzy_decay_ms:-1: freed pages kept 5 s,
                     then given back lazily; see start_node; "" gives
                     jemalloc's defaults)
EOF
}

die() {
    echo "$PROG: $*" >&2
    exit 1
}

need_val() {
    [ "$2" -ge 2 ] || die "$1 needs a value (--help lists the options)"
}

# ---- arguments: options anywhere before the verb's own words; for exec,
# everything after NODE is the command.
VERB=""
ARG1=""
ARG2=""
NPOS=0
while [ $# -gt 0 ]; do
    if [ "$VERB" = exec ] && [ "$NPOS" -ge 1 ]; then
        break
    fi
    case $1 in
    -h | --help) usage; exit 0 ;;
    --name) need_val "$1" $#; NAME=$2; shift 2 ;;
    --state-dir | --dir) need_val "$1" $#; DIR=$2; shift 2 ;;
    --masters) need_val "$1" $#; MASTERS=$2; shift 2 ;;
    --replicas) need_val "$1" $#; REPLICAS=$2; shift 2 ;;
    --rate) need_val "$1" $#; RATE=$2; shift 2 ;;
    --client-rate) need_val "$1" $#; CLIENT_RATE=$2; shift 2 ;;
    --delay) need_val "$1" $#; DELAY=$2; shift 2 ;;
    --password) need_val "$1" $#; PASSWORD=$2; shift 2 ;;
    --subnet) need_val "$1" $#; SUBNET=$2; shift 2 ;;
    --node-timeout) need_val "$1" $#; NODE_TIMEOUT=$2; shift 2 ;;
    --persist) PERSIST=1; shift ;;
    -*) die "unknown option $1 (--help lists them)" ;;
    *)
        if [ -z "$VERB" ]; then
            VERB=$1
        elif [ "$NPOS" -eq 0 ]; then
            ARG1=$1; NPOS=1
        elif [ "$NPOS" -eq 1 ]; then
            ARG2=$1; NPOS=2
        else
            die "$VERB: too many arguments ($1)"
        fi
        shift
        ;;
    esac
done
[ -n "$VERB" ] || { usage >&2; exit 2; }

case $NAME in
"" | *[!a-z0-9]*) die "--name '$NAME': use 1-8 of [a-z0-9]" ;;
esac
[ ${#NAME} -le 8 ] || die "--name '$NAME': use 1-8 of [a-z0-9] (namespace names stay short)"
DIR=${DIR:-${TMPDIR:-/tmp}/flc-testbed-$NAME}
SW=$NAME-sw
CLIENT_NS=$NAME-client

if [ "$(id -u)" -ne 0 ]; then
    echo "$PROG: needs root (ip netns, tc)" >&2
    exit 2
fi
for tool in ip:iproute2 tc:iproute2 redis-server:redis-server redis-cli:redis-tools awk:mawk; do
    command -v "${tool%%:*}" >/dev/null 2>&1 ||
        die "'${tool%%:*}' not found: install the Debian package ${tool#*:}"
done

umask 077 # the configs and the state hold the password

# ---- helpers

is_uint() {
    case $1 in "" | *[!0-9]*) return 1 ;; esac
}

# Bytes per second of a tc rate ("200mbit", "10gbit", "1.5gbit", "800kbit").
rate_bytes() {
    echo "$1" | awk '
        /^[0-9]+(\.[0-9]+)?(bit|kbit|mbit|gbit|tbit)$/ {
            n = $0; sub(/[a-z]+$/, "", n); u = $0; sub(/^[0-9.]+/, "", u)
            m = 1; if (u == "kbit") m = 1e3; if (u == "mbit") m = 1e6
            if (u == "gbit") m = 1e9; if (u == "tbit") m = 1e12
            printf "%.0f\n", n * m / 8; exit 0 }
        { exit 1 }'
}

check_rate() {
    [ "$1" = none ] && return 0
    b=$(rate_bytes "$1") || die "rate '$1': use tc units such as 200mbit, 1gbit, 10gbit (or none)"
    [ "$b" -ge 125 ] || die "rate '$1' is too small"
}

# Shapes the egress of DEV in namespace NS at RATE with tbf, or removes the
# shaping for none. The burst is at least one 64 KiB GSO packet (smaller ones
# make tbf split every packet) and 1 ms at the rate (the timer granularity
# stays below it); the queue holds 20 ms, which kept a 50 MB transfer at
# 200 Mbit/s within 10-20 % of the rate in both directions on this machine.
shape() {
    if [ "$3" = none ]; then
        tc -n "$1" qdisc del dev "$2" root 2>/dev/null || true
        return 0
    fi
    b=$(rate_bytes "$3")
    burst=$((b / 1000))
    [ "$burst" -ge 65536 ] || burst=65536
    tc -n "$1" qdisc replace dev "$2" root tbf rate "$3" burst "$burst" latency 20ms
}

ns_of() {
    case $1 in
    client) echo "$CLIENT_NS" ;;
    sw | switch) echo "$SW" ;;
    n[0-9]*) is_uint "${1#n}" && echo "$NAME-$1" || return 1 ;;
    *) return 1 ;;
    esac
}

load_state() {
    [ -f "$DIR/state" ] || die "no testbed '$NAME' (no $DIR/state; up makes one, --state-dir points at another)"
    . "$DIR/state"
    PASSWORD=$(cat "$DIR/password")
}

# A node known to the state: n1 .. n$NODES.
check_node() {
    case $1 in
    n[0-9]*)
        k=${1#n}
        is_uint "$k" && [ "$k" -ge 1 ] && [ "$k" -le "$NODES" ] && return 0 ;;
    esac
    die "no node '$1' in testbed $NAME (n1 .. n$NODES)"
}

addr_of() {
    case $1 in
    client) echo "$PREFIX.2" ;;
    *) echo "$PREFIX.$((10 + ${1#n}))" ;;
    esac
}

# redis-cli on a node's unix socket (a path, so it works from any namespace);
# the password goes in the environment, not on a command line ps shows.
rcli() {
    n=$1
    shift
    REDISCLI_AUTH=$PASSWORD redis-cli -s "$DIR/$n/redis.sock" "$@"
}

# The pid of NODE's server when it runs inside NODE's namespace (a recycled
# pid in a pidfile never gets signalled).
pid_of() {
    f=$DIR/$1/redis.pid
    [ -f "$f" ] || return 1
    p=$(cat "$f" 2>/dev/null) || return 1
    is_uint "$p" || return 1
    kill -0 "$p" 2>/dev/null || return 1
    [ "$(ip netns identify "$p" 2>/dev/null)" = "$NAME-$1" ] || return 1
    echo "$p"
}

# Each node's redis-server keeps the pages it frees for 5 s and then gives
# them back lazily (MADV_FREE: the kernel takes them only when it needs
# memory, so a page used again costs nothing) instead of jemalloc's
# MADV_DONTNEED after 10 s: a node of ElastiCache is a machine of its own,
# but here three servers, the clients and the mergers share two
# paravirtualized vCPUs, on which every page fault traps to the hypervisor,
# and a server that gave its freed pages back faulted them in again for the
# next round's values and reply buffers (perf: about a fifth of
# redis-server's time). Measured 2026-11-30, bench/cluster, 3 nodes:
#   jemalloc's defaults            round 2.09x one node; query case (N = 100,
#                                  25 MB) next to the data 0.29-0.36x central
#   dirty_decay_ms:5000,muzzy -1   round 2.33x; query 0.23-0.31x, RSS ~1.1 GB
#                                  a node (what it holds)
#   never purging (-1, -1)         round 2.50-2.70x; but the query case grew
#                                  each server to 8 GB (jemalloc reused too
#                                  little of what it kept) and slowed it 3x
# FLCACHE_TB_MALLOC_CONF replaces it ("" for jemalloc's defaults).
REDIS_MALLOC_CONF=${FLCACHE_TB_MALLOC_CONF-dirty_decay_ms:5000,muzzy_decay_ms:-1}

start_node() {
    ip netns exec "$NAME-$1" env MALLOC_CONF="$REDIS_MALLOC_CONF" redis-server "$DIR/$1/redis.conf" ||
        die "$1: redis-server did not start (see $DIR/$1/redis.log)"
    i=0
    until [ "$(rcli "$1" ping 2>/dev/null)" = PONG ]; do
        i=$((i + 1))
        [ $i -le 100 ] || die "$1: redis-server does not answer on $DIR/$1/redis.sock after 10 s (see $DIR/$1/redis.log)"
        sleep 0.1
    done
}

# Our namespaces, also those of a half-made testbed that has no state file.
our_namespaces() {
    ip netns list 2>/dev/null | awk '{print $1}' | grep -E "^$NAME-(sw|client|n[0-9]+)\$" || true
}

# Removes everything of testbed NAME: the servers (every process inside our
# namespaces), the namespaces (their veths and the bridge go with them) and
# the state directory. Safe to run again and after a crash.
teardown() {
    nss=$(our_namespaces)
    for ns in $nss; do
        pids=$(ip netns pids "$ns" 2>/dev/null || true)
        [ -z "$pids" ] || kill -9 $pids 2>/dev/null || true
    done
    for ns in $nss; do
        i=0
        while [ -n "$(ip netns pids "$ns" 2>/dev/null || true)" ] && [ $i -lt 50 ]; do
            sleep 0.1
            i=$((i + 1))
        done
        ip netns del "$ns" 2>/dev/null || true
    done
    # Only a directory this script made (it has the marker) is removed whole.
    if [ -f "$DIR/.flc-testbed" ]; then
        rm -rf "$DIR"
    elif [ -d "$DIR" ]; then
        rmdir "$DIR" 2>/dev/null || true
    fi
    left=$(our_namespaces)
    [ -z "$left" ] || die "down: namespaces left: $left"
}

# ---- verbs

verb_up() {
    is_uint "$MASTERS" && [ "$MASTERS" -ge 3 ] ||
        die "--masters $MASTERS: redis-cli --cluster create needs at least 3 masters"
    is_uint "$REPLICAS" || die "--replicas $REPLICAS: a count (0, 1, ...)"
    is_uint "$NODE_TIMEOUT" && [ "$NODE_TIMEOUT" -ge 100 ] || die "--node-timeout $NODE_TIMEOUT: milliseconds, at least 100"
    NODES=$((MASTERS * (1 + REPLICAS)))
    [ "$NODES" -le 240 ] || die "$NODES nodes: at most 240 fit in a /24"
    check_rate "$RATE"
    check_rate "$CLIENT_RATE"
    case $DELAY in
    0 | 0ms | 0us | 0s) ;;
    *)
        if ip netns add "$NAME-probe" 2>/dev/null; then
            has_netem=0
            tc -n "$NAME-probe" qdisc add dev lo root netem delay 1ms 2>/dev/null && has_netem=1
            ip netns del "$NAME-probe"
        fi
        if [ "${has_netem:-0}" = 1 ]; then
            die "--delay $DELAY: delay emulation (netem) is not built into testbed.sh yet; only --delay 0"
        fi
        die "--delay $DELAY: this kernel has no netem (sch_netem), so delay and loss cannot be emulated; only --delay 0 is accepted (the links are rate-limited with tbf only)"
        ;;
    esac
    case $PASSWORD in
    *[!A-Za-z0-9._~-]*) die "--password: use [A-Za-z0-9._~-] (it goes into a URL and a config unquoted)" ;;
    esac
    PREFIX=$(echo "$SUBNET" | awk -F'[./]' 'NF == 5 && $4 == 0 && $5 == 24 &&
        ($1 == 10 || ($1 == 172 && $2 >= 16 && $2 < 32) || ($1 == 192 && $2 == 168)) &&
        $2 < 256 && $3 < 256 { print $1 "." $2 "." $3 }')
    [ -n "$PREFIX" ] || die "--subnet $SUBNET: give a private A.B.C.0/24 (10/8, 172.16/12, 192.168/16)"
    # The addresses live only in our namespaces, but one the host also routes
    # would make every reading of 'ip route' ambiguous: refuse it.
    clash=$(ip -4 route show match "$SUBNET" 2>/dev/null | grep -v '^default' || true)
    [ -z "$clash" ] || die "--subnet $SUBNET collides with the host route '$clash': pick another with --subnet"
    if [ -e "$DIR" ] || [ -n "$(our_namespaces)" ]; then
        die "testbed '$NAME' exists ($DIR or namespaces $NAME-*): '$PROG down --name $NAME' first"
    fi

    trap 'rc=$?; trap - EXIT; if [ $rc -ne 0 ]; then echo "$PROG: up failed; removing what it made" >&2; teardown || true; fi; exit $rc' EXIT
    trap 'exit 130' INT TERM HUP

    mkdir -p "$DIR"
    : >"$DIR/.flc-testbed"
    if [ -z "$PASSWORD" ]; then
        PASSWORD=$(tr -dc 'A-Za-z0-9' </dev/urandom | head -c 24)
    fi
    printf '%s\n' "$PASSWORD" >"$DIR/password"
    chmod 600 "$DIR/password"
    cat >"$DIR/state" <<EOF
NAME=$NAME
PREFIX=$PREFIX
SUBNET=$SUBNET
MASTERS=$MASTERS
REPLICAS=$REPLICAS
NODES=$NODES
RATE=$RATE
CLIENT_RATE=$CLIENT_RATE
PORT=$PORT
EOF

    # The switch: a bridge in its own namespace.
    ip netns add "$SW"
    ip -n "$SW" link set lo up
    ip -n "$SW" link add br0 type bridge
    ip -n "$SW" link set br0 up
    # Bridged frames skip iptables here (the switch has no rules anyway).
    ip netns exec "$SW" sh -c 'echo 0 >/proc/sys/net/bridge/bridge-nf-call-iptables' 2>/dev/null || true

    # attach NS PORTNAME ADDR RATE: a veth from the switch's PORTNAME to NS's eth0.
    attach() {
        ip netns add "$1"
        ip -n "$1" link set lo up
        ip link add "$2" netns "$SW" type veth peer name eth0 netns "$1"
        ip -n "$SW" link set "$2" master br0 up
        ip -n "$1" addr add "$3/24" dev eth0
        ip -n "$1" link set eth0 up
        shape "$1" eth0 "$4"
        shape "$SW" "$2" "$4"
    }
    attach "$CLIENT_NS" client "$PREFIX.2" "$CLIENT_RATE"

    k=1
    addrs=""
    while [ $k -le "$NODES" ]; do
        n=n$k
        a=$(addr_of $n)
        attach "$NAME-$n" $n "$a" "$RATE"
        mkdir -p "$DIR/$n"
        if [ "$PERSIST" = 1 ]; then
            persist='appendonly yes'
        else
            persist='save ""
appendonly no'
        fi
        cat >"$DIR/$n/redis.conf" <<EOF
# testbed $NAME, node $n (namespace $NAME-$n), made by scripts/testbed.sh
bind $a 127.0.0.1
port $PORT
protected-mode yes
unixsocket $DIR/$n/redis.sock
unixsocketperm 700
dir $DIR/$n
daemonize yes
pidfile $DIR/$n/redis.pid
logfile $DIR/$n/redis.log
cluster-enabled yes
cluster-config-file nodes.conf
cluster-node-timeout $NODE_TIMEOUT
requirepass $PASSWORD
masterauth $PASSWORD
$persist
EOF
        start_node $n
        addrs="$addrs $a:$PORT"
        k=$((k + 1))
    done

    # From the client namespace, which reaches every node.
    if ! REDISCLI_AUTH=$PASSWORD ip netns exec "$CLIENT_NS" redis-cli --cluster create $addrs \
        --cluster-replicas "$REPLICAS" --cluster-yes >"$DIR/create.log" 2>&1; then
        tail -20 "$DIR/create.log" >&2
        die "redis-cli --cluster create failed (above)"
    fi
    wait_ok
    trap - EXIT INT TERM HUP

    seed="redis://:$PASSWORD@$(addr_of n1):$PORT"
    echo "testbed $NAME: $MASTERS masters, $REPLICAS replica(s) each, node links $RATE, client link $CLIENT_RATE; cluster_state:ok on $NODES nodes"
    echo "export FLC_TESTBED_SEED=$seed"
    echo "state: $DIR (password in $DIR/password; '$PROG env --name $NAME' prints every variable)"
    echo "run a driver in the client namespace: ip netns exec $CLIENT_NS CMD  (or: $PROG --name $NAME exec client CMD)"
}

# Waits until every node says cluster_state:ok and every replica has its
# master link up (so a failover test starts from synchronized replicas).
wait_ok() {
    i=0
    while :; do
        bad=""
        k=1
        while [ $k -le "$NODES" ]; do
            info=$(rcli n$k cluster info 2>/dev/null || true)
            case $info in
            *cluster_state:ok*) ;;
            *) bad="$bad n$k" ;;
            esac
            repl=$(rcli n$k info replication 2>/dev/null || true)
            case $repl in
            *role:slave*)
                case $repl in *master_link_status:up*) ;; *) bad="$bad n$k(sync)" ;; esac ;;
            esac
            k=$((k + 1))
        done
        [ -n "$bad" ] || return 0
        i=$((i + 1))
        [ $i -le $((WAIT_S * 5)) ] || die "cluster not ok after ${WAIT_S} s on:$bad"
        sleep 0.2
    done
}

# One line per node: what it is, where, and whether it is up.
verb_status() {
    printf '%-7s %-14s %-12s %-12s %-24s %-8s %-6s %s\n' NODE NAMESPACE ADDRESS ROLE SLOTS PID SERVER LINK
    # Node ids to names, from any node that answers.
    ids=""
    k=1
    while [ $k -le "$NODES" ] && [ -z "$ids" ]; do
        ids=$(rcli n$k cluster nodes 2>/dev/null | awk -v p="$PREFIX." '{
            a = $2; sub(/:.*/, "", a); if (index(a, p) == 1) print $1, "n" (substr(a, length(p) + 1) - 10) }') || true
        k=$((k + 1))
    done
    k=1
    while [ $k -le "$NODES" ]; do
        n=n$k
        pid=$(pid_of $n) || pid=-
        role=-
        slots=-
        server=down
        if [ "$(rcli $n ping 2>/dev/null)" = PONG ]; then
            server=up
            me=$(rcli $n cluster nodes 2>/dev/null | grep myself || true)
            set -- $me
            case ${3:-} in
            *master*) role=master ;;
            *slave*) role="replica:$(echo "$ids" | awk -v id="${4:-}" '$1 == id {print $2}')" ;;
            esac
            if [ $# -gt 8 ]; then
                shift 8
                slots=$(echo "$*" | tr ' ' ',')
            fi
        fi
        link=$(ip -n "$SW" -br link show dev $n 2>/dev/null | awk '{print $2}')
        case $link in UP | UNKNOWN) link=up ;; "") link=missing ;; *) link=down ;; esac
        printf '%-7s %-14s %-12s %-12s %-24s %-8s %-6s %s\n' $n "$NAME-$n" "$(addr_of $n)" "$role" "$slots" "$pid" $server $link
        k=$((k + 1))
    done
    link=$(ip -n "$SW" -br link show dev client 2>/dev/null | awk '{print $2}')
    case $link in UP | UNKNOWN) link=up ;; "") link=missing ;; *) link=down ;; esac
    printf '%-7s %-14s %-12s %-12s %-24s %-8s %-6s %s\n' client "$CLIENT_NS" "$(addr_of client)" client - - - $link
    # The cluster's state as the first node that answers sees it.
    state="cluster_state:unknown (no node answers)"
    k=1
    while [ $k -le "$NODES" ]; do
        st=$(rcli n$k cluster info 2>/dev/null | tr -d '\r' | grep cluster_state || true)
        if [ -n "$st" ]; then
            state="$st (as n$k sees it)"
            break
        fi
        k=$((k + 1))
    done
    echo "# seed redis://:$PASSWORD@$(addr_of n1):$PORT  $state  state-dir $DIR"
}

verb_env() {
    echo "export FLC_TESTBED_NAME=$NAME"
    echo "export FLC_TESTBED_DIR='$DIR'"
    echo "export FLC_TESTBED_SEED='redis://:$PASSWORD@$(addr_of n1):$PORT'"
    echo "export FLC_TESTBED_PASSWORD='$PASSWORD'"
    echo "export FLC_TESTBED_CLIENT_NS=$CLIENT_NS"
    echo "export FLC_TESTBED_CLIENT_ADDR=$(addr_of client)"
    nodes=""
    k=1
    while [ $k -le "$NODES" ]; do
        n=n$k
        nodes="$nodes${nodes:+ }$n"
        echo "export FLC_TESTBED_NS_$n=$NAME-$n FLC_TESTBED_ADDR_$n=$(addr_of $n) FLC_TESTBED_SOCK_$n='$DIR/$n/redis.sock'"
        k=$((k + 1))
    done
    echo "export FLC_TESTBED_NODES='$nodes' FLC_TESTBED_MASTERS=$MASTERS FLC_TESTBED_REPLICAS=$REPLICAS FLC_TESTBED_PORT=$PORT"
    # flcache's node map (cli/place.h): where mergers and query workers of a
    # node's shards run, and the unix socket they use there. Replicas too: a
    # failover makes one a master.
    map=""
    k=1
    while [ $k -le "$NODES" ]; do
        map="$map${map:+,}$(addr_of n$k):$PORT=$NAME-n$k:$DIR/n$k/redis.sock"
        k=$((k + 1))
    done
    echo "export FLCACHE_NODES='$map'"
}

case $VERB in
up) verb_up ;;
down) teardown; echo "testbed $NAME: down" ;;
status) load_state; verb_status ;;
env) load_state; verb_env ;;
kill)
    load_state
    check_node "$ARG1"
    pid=$(pid_of "$ARG1") || die "kill $ARG1: its redis-server is not running"
    kill -9 "$pid"
    i=0
    while kill -0 "$pid" 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
    echo "$ARG1: killed pid $pid"
    ;;
start)
    load_state
    check_node "$ARG1"
    ! pid_of "$ARG1" >/dev/null || die "start $ARG1: already running (pid $(pid_of "$ARG1"))"
    start_node "$ARG1"
    echo "$ARG1: started pid $(pid_of "$ARG1")"
    ;;
link)
    load_state
    [ "$ARG1" = client ] || check_node "$ARG1"
    case $ARG2 in up | down) ;; *) die "link $ARG1 up|down" ;; esac
    ip -n "$SW" link set "$ARG1" "$ARG2"
    echo "$ARG1: link $ARG2"
    ;;
rate)
    load_state
    [ "$ARG1" = client ] || check_node "$ARG1"
    [ -n "$ARG2" ] || die "rate $ARG1 RATE (200mbit, 10gbit, none)"
    check_rate "$ARG2"
    shape "$(ns_of "$ARG1")" eth0 "$ARG2"
    shape "$SW" "$ARG1" "$ARG2"
    echo "$ARG1: link rate $ARG2"
    ;;
wait)
    load_state
    if [ -n "$ARG1" ]; then
        is_uint "$ARG1" || die "wait SECONDS: a whole number"
        WAIT_S=$ARG1
    fi
    wait_ok
    echo "testbed $NAME: cluster_state:ok on $NODES nodes, replicas in sync"
    ;;
ns)
    load_state
    [ "$ARG1" = client ] || [ "$ARG1" = sw ] || check_node "$ARG1"
    ns_of "$ARG1"
    ;;
exec)
    load_state
    [ "$ARG1" = client ] || [ "$ARG1" = sw ] || check_node "$ARG1"
    [ $# -gt 0 ] || die "exec $ARG1 CMD ...: no command"
    exec ip netns exec "$(ns_of "$ARG1")" "$@"
    ;;
*) die "unknown verb '$VERB' (--help lists them)" ;;
esac
