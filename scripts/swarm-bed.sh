#!/usr/bin/env bash
# A Docker Swarm of several nodes on this one machine, to try teal on (and
# what the multi-node integration tests and `cargo bench --bench swarm` run).
#
# Each node is a network namespace with its own dockerd; the nodes' links
# meet on a bridge in a namespace of its own (the hub), so nothing touches
# the host's network or firewall. Addresses come from 198.18.0.0/15 (RFC
# 2544, for benchmarks; no default Docker pool, no route of this host):
# the hub is 198.18.0.1 and node K is 198.18.0.(10+K) on 198.18.0.0/24, and
# the swarm's overlays get /24s of 198.19.0.0/17 (the nodes' local bridges
# 198.19.128.0/17). Everything stays inside namespaces the bed made.
#
# usage: scripts/swarm-bed.sh COMMAND BED [ARGS]
#   up BED [--managers M] [--workers W] [--image IMAGE]...
#                      M managers (default 1) then W workers (default 2),
#                      nodes n1..n(M+W), n1 the first manager; loads each
#                      IMAGE (default: teal:local and teal-test-app:latest,
#                      built when missing) into every node
#   down BED           removes everything the bed made
#   docker BED NODE ARGS...   the docker CLI against NODE's daemon
#   run BED NODE|hub CMD...   CMD in NODE's (or the hub's) network namespace
#   kill BED NODE      SIGKILL every process of NODE (a crash: dockerd,
#                      containerd, shims, its containers)
#   start BED NODE     starts a killed node again (a reboot: its containers
#                      are gone, its swarm state is kept)
#   cut BED NODE       NODE's link down (its switch port), `mend` up again
#   ls                 the beds on this machine, and whether their owner lives
#
# A node's daemon answers on unix://$TMPDIR/teal-bed-BED/NODE/docker.sock
# from the host, and on /var/run/docker.sock inside the node, which has a
# /run of its own (so containers can mount the node's socket there, as on a
# real machine). The hub reaches node K's published ports at 198.18.0.(10+K).
#
# `up` records the process that asked for the bed (TEAL_BED_OWNER, default
# the caller) and first removes beds whose owner is gone, so a test run
# killed before its clean-up leaves nothing behind for long. Root only.
set -eEuo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BASE="${TMPDIR:-/tmp}"
UNDERLAY=198.18.0
OVERLAY_POOL=198.19.0.0/17
LOCAL_POOL=198.19.128.0/17
READY_SECONDS=60

say() { echo "swarm-bed: $*" >&2; }
die() { say "$*"; exit 1; }

dir_of() { echo "$BASE/teal-bed-$1"; }
ns_of() { echo "tb-$1-$2"; }
host_of() { echo "unix://$(dir_of "$1")/$2/docker.sock"; }
addr_of() { echo "$UNDERLAY.$((10 + ${2#n}))"; }
cgroup_of() { echo "teal-bed-$1-$2"; }

check_bed_name() {
  [[ "${1:-}" =~ ^[a-z0-9]{1,16}$ ]] || die "a bed name is 1-16 lowercase letters or digits, not '${1:-}'"
}

check_node() {
  [[ -d "$(dir_of "$1")" ]] || die "no bed '$1' here (scripts/swarm-bed.sh ls lists them)"
  [[ -d "$(dir_of "$1")/$2" ]] || die "bed $1 has no node '$2' (nodes: $(nodes "$1" | tr '\n' ' '))"
}

nodes() { (cd "$(dir_of "$1")" && ls -d n[0-9]* 2>/dev/null) || true; }

# start_time PID: the kernel's start time of PID (tells a reused pid apart).
start_time() { awk '{print $22}' "/proc/$1/stat" 2>/dev/null || true; }

# node_pids BED NODE: every process of the node: those in its network
# namespace (dockerd, containerd, shims, docker-proxy) and those in its
# cgroups (the containers' processes, each in a namespace of its own).
# Builtins only in the loop: a fork per process would make it take seconds.
node_pids() {
  local ns p c
  ns="/run/netns/$(ns_of "$1" "$2")"
  if [[ -e "$ns" ]]; then
    for p in /proc/[0-9]*; do
      [[ "$p/ns/net" -ef "$ns" ]] && echo "${p#/proc/}"
    done
  fi
  for c in "/sys/fs/cgroup/$(cgroup_of "$1" "$2")" /sys/fs/cgroup/*/"$(cgroup_of "$1" "$2")"; do
    [[ -d "$c" ]] && find "$c" -name cgroup.procs -exec cat {} + 2>/dev/null
  done
  true
}

# wait_all PID...: waits for each; fails if any failed.
wait_all() {
  local p rc=0
  for p in "$@"; do wait "$p" || rc=1; done
  return $rc
}

# living PID...: those that still run (a zombie is dead, only not reaped).
living() {
  local p stat
  for p in "$@"; do
    { stat=$(<"/proc/$p/stat"); } 2>/dev/null || continue
    [[ "${stat##*) }" == Z* ]] || echo "$p"
  done
  true
}

# kill_node BED NODE: SIGKILL until nothing of the node lives (new
# processes may appear while dockerd dies: repeat).
kill_node() {
  local pids deadline=$((SECONDS + 20))
  while pids=$(living $(node_pids "$1" "$2") | sort -u) && [[ -n "$pids" ]]; do
    # shellcheck disable=SC2086
    kill -KILL $pids 2>/dev/null || true
    [[ $SECONDS -lt $deadline ]] || die "processes of $1/$2 survive SIGKILL: $pids"
    sleep 0.1
  done
  # The container cgroups, deepest first (empty now).
  local c
  for c in "/sys/fs/cgroup/$(cgroup_of "$1" "$2")" /sys/fs/cgroup/*/"$(cgroup_of "$1" "$2")"; do
    [[ -d "$c" ]] && find "$c" -depth -type d -exec rmdir {} + 2>/dev/null
  done
  rm -f "$(dir_of "$1")/$2/dockerd.pid"
}

# start_node BED NODE: dockerd in the node's network namespace, in a mount
# and UTS namespace of its own (nsenter + unshare, not `ip netns exec`,
# which remounts /sys and hides the cgroup v1 mounts dockerd needs).
start_node() {
  local bed=$1 node=$2 d
  d="$(dir_of "$bed")/$node"
  cat >"$d/daemon.json" <<EOF
{"default-address-pools": [{"base": "$LOCAL_POOL", "size": 24}]}
EOF
  # A private /run: the node's socket at /var/run/docker.sock, containerd's
  # and the shims' sockets, all gone with the node's last process.
  cat >"$d/boot.sh" <<EOF
mount -t tmpfs -o mode=755 tmpfs /run
hostname $node
export DOCKER_SERVICE_PREFER_OFFLINE_IMAGE=1
exec dockerd --config-file $d/daemon.json --data-root $d/data --pidfile $d/dockerd.pid \\
  -H unix:///var/run/docker.sock -H unix://$d/docker.sock \\
  --cgroup-parent /$(cgroup_of "$bed" "$node") --storage-driver vfs --log-level info
EOF
  setsid nsenter --net="/run/netns/$(ns_of "$bed" "$node")" \
    unshare --mount --propagation slave --uts -- sh "$d/boot.sh" >>"$d/dockerd.log" 2>&1 </dev/null &
}

wait_node() {
  local host deadline=$((SECONDS + READY_SECONDS))
  host=$(host_of "$1" "$2")
  until docker -H "$host" version >/dev/null 2>&1; do
    [[ $SECONDS -lt $deadline ]] || { tail -n 20 "$(dir_of "$1")/$2/dockerd.log" >&2; die "$1/$2: dockerd not up within ${READY_SECONDS}s"; }
    sleep 0.1
  done
}

cmd_down() {
  local bed=$1 d node
  check_bed_name "$bed"
  d=$(dir_of "$bed")
  local pids=()
  for node in $(nodes "$bed"); do kill_node "$bed" "$node" & pids+=($!); done
  wait_all "${pids[@]}" || true
  for node in $(nodes "$bed") hub; do
    ip netns del "$(ns_of "$bed" "$node")" 2>/dev/null || true
  done
  # Everything under it was the nodes' (no mounts: those were private).
  rm -rf "$d"
  say "$bed is down"
}

stale_beds() {
  local d bed owner
  for d in "$BASE"/teal-bed-*; do
    [[ -f "$d/owner" ]] || continue
    bed=${d##*/teal-bed-}
    read -r pid started <"$d/owner" || true
    owner=$(start_time "${pid:-0}")
    [[ -n "$owner" && "$owner" == "${started:-}" ]] || echo "$bed"
  done
}

cmd_ls() {
  local d bed stale
  stale=" $(stale_beds | tr '\n' ' ') "
  for d in "$BASE"/teal-bed-*; do
    [[ -d "$d" ]] || continue
    bed=${d##*/teal-bed-}
    if [[ "$stale" == *" $bed "* ]]; then echo "$bed owner gone"; else echo "$bed owner $(cut -d' ' -f1 "$d/owner")"; fi
  done
}

cmd_up() {
  local bed=$1 managers=1 workers=2 images=() d n node i
  shift
  check_bed_name "$bed"
  while [[ $# -gt 0 ]]; do
    case "$1" in
      --managers) managers=${2:?}; shift ;;
      --workers) workers=${2:?}; shift ;;
      --image) images+=("${2:?}"); shift ;;
      *) die "up: unknown argument $1" ;;
    esac
    shift
  done
  [[ "$managers" -ge 1 && $((managers + workers)) -le 9 ]] || die "up: 1 to 9 nodes, at least one manager"
  [[ "$(id -u)" -eq 0 ]] || die "up needs root (network namespaces, dockerd)"
  for stale in $(stale_beds); do
    say "removing bed $stale (its owner is gone)"
    cmd_down "$stale"
  done
  d=$(dir_of "$bed")
  [[ ! -e "$d" ]] || die "bed $bed exists already (scripts/swarm-bed.sh down $bed)"
  if [[ ${#images[@]} -eq 0 ]]; then
    images=(teal:local teal-test-app:latest)
    docker image inspect teal-test-app:latest >/dev/null 2>&1 || "$ROOT/scripts/build-test-images.sh" >&2
    docker image inspect teal:local >/dev/null 2>&1 || "$ROOT/scripts/build-image.sh" teal >&2
  fi
  mkdir -p "$d"
  echo "${TEAL_BED_OWNER:-$PPID} $(start_time "${TEAL_BED_OWNER:-$PPID}")" >"$d/owner"
  # A failure half-way leaves nothing behind.
  trap 'say "up failed; removing $bed"; cmd_down "$bed"' ERR

  local hub
  hub=$(ns_of "$bed" hub)
  ip netns add "$hub"
  ip -n "$hub" link set lo up
  ip -n "$hub" link add br0 type bridge
  ip -n "$hub" addr add "$UNDERLAY.1/24" dev br0
  ip -n "$hub" link set br0 up
  for ((i = 1; i <= managers + workers; i++)); do
    node=n$i
    mkdir -p "$d/$node"
    n=$(ns_of "$bed" "$node")
    ip netns add "$n"
    # Both ends are born in their namespaces: nothing in the host's.
    ip link add eth0 netns "$n" type veth peer name "$node" netns "$hub"
    ip -n "$hub" link set "$node" master br0 up
    ip -n "$n" link set lo up
    ip -n "$n" addr add "$(addr_of "$bed" "$node")/24" dev eth0
    ip -n "$n" link set eth0 up
    start_node "$bed" "$node"
  done
  docker save "${images[@]}" >"$d/images.tar"
  local pids=()
  for node in $(nodes "$bed"); do
    (wait_node "$bed" "$node" && docker -H "$(host_of "$bed" "$node")" load -q <"$d/images.tar" >/dev/null) &
    pids+=($!)
  done
  wait_all "${pids[@]}"
  rm -f "$d/images.tar"

  local first token_m token_w
  first=$(host_of "$bed" n1)
  docker -H "$first" swarm init --advertise-addr "$(addr_of "$bed" n1)" \
    --default-addr-pool "$OVERLAY_POOL" --default-addr-pool-mask-length 24 >/dev/null
  token_m=$(docker -H "$first" swarm join-token -q manager)
  token_w=$(docker -H "$first" swarm join-token -q worker)
  # Managers one at a time (each joins the Raft group), workers at once.
  for ((i = 2; i <= managers; i++)); do
    docker -H "$(host_of "$bed" "n$i")" swarm join --token "$token_m" \
      --advertise-addr "$(addr_of "$bed" "n$i")" "$(addr_of "$bed" n1):2377" >/dev/null
  done
  pids=()
  for ((i = managers + 1; i <= managers + workers; i++)); do
    docker -H "$(host_of "$bed" "n$i")" swarm join --token "$token_w" \
      --advertise-addr "$(addr_of "$bed" "n$i")" "$(addr_of "$bed" n1):2377" >/dev/null &
    pids+=($!)
  done
  wait_all "${pids[@]}"
  local deadline=$((SECONDS + READY_SECONDS))
  until [[ "$(docker -H "$first" node ls --format '{{.Status}}' | grep -c Ready)" -eq $((managers + workers)) ]]; do
    [[ $SECONDS -lt $deadline ]] || die "not every node is Ready within ${READY_SECONDS}s"
    sleep 0.2
  done
  trap - ERR
  say "$bed is up: $managers manager(s), $workers worker(s); n1: DOCKER_HOST=$first"
}

cmd_run() {
  local bed=$1 node=$2
  shift 2
  [[ "$node" == hub ]] || check_node "$bed" "$node"
  exec nsenter --net="/run/netns/$(ns_of "$bed" "$node")" "$@"
}

command=${1:-}
[[ $# -gt 0 ]] && shift
case "$command" in
  up) cmd_up "$@" ;;
  down) cmd_down "${1:?down BED}" ;;
  ls) cmd_ls ;;
  docker)
    bed=${1:?docker BED NODE ARGS}; node=${2:?docker BED NODE ARGS}; shift 2
    check_node "$bed" "$node"
    exec docker -H "$(host_of "$bed" "$node")" "$@" ;;
  run) cmd_run "${1:?run BED NODE CMD}" "${2:?run BED NODE CMD}" "${@:3}" ;;
  kill) check_node "${1:?}" "${2:?kill BED NODE}"; kill_node "$1" "$2" ;;
  start)
    check_node "${1:?}" "${2:?start BED NODE}"
    [[ -z "$(living $(node_pids "$1" "$2"))" ]] || die "$1/$2 is running (kill it first)"
    start_node "$1" "$2"; wait_node "$1" "$2" ;;
  cut) check_node "${1:?}" "${2:?cut BED NODE}"; ip -n "$(ns_of "$1" hub)" link set "$2" down ;;
  mend) check_node "${1:?}" "${2:?mend BED NODE}"; ip -n "$(ns_of "$1" hub)" link set "$2" up ;;
  -h | --help | "") sed -n '2,36p' "$0" ;;
  *) die "unknown command '$command' (--help lists them)" ;;
esac
