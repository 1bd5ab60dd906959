#!/usr/bin/env bash
# A second libvirt host on this machine, for the tests that move VMs between nodes.
#
#   tests/node2.sh up         start it (idempotent); prints its URI
#   tests/node2.sh down       stop it and remove all it had (idempotent)
#   tests/node2.sh status     "up URI" (exit 0) or "down" (exit 3)
#   tests/node2.sh power-off  simulated power loss: SIGKILL to its libvirtd, virtlogd and
#                             QEMU processes; the network and its files stay (`down` cleans)
#   tests/node2.sh cut|mend   take the link between the hosts down or up (a network split)
#
# The second host has its own network namespace (reached from this host over a veth pair
# with /32 peer addresses), mount namespace (a private /run/libvirt and its own
# /etc/libvirt, /var/lib/libvirt, /var/log/libvirt, /var/cache/libvirt and /etc/hosts,
# kept under $VMM_NODE2_DIR, default /var/tmp/vmm-node2), UTS namespace (host name node2) and cgroup namespace, and its
# own host UUID, so libvirt treats the two as different hosts. Its libvirtd listens on
# qemu+tcp://203.0.113.251/system without authentication: the address is reachable only
# from this host. For peer-to-peer migration back, the main libvirtd is reached from the
# second host at qemu+tcp://203.0.113.250/system, a TCP forwarder to its unix socket that
# accepts connections from the veth link only.
#
# /var/lib/vmm (where vmm keeps VM disks by default) is its own too, so disks must be
# copied to move a VM there. Every other directory is shared, as a shared file system
# would be: a storage pool in, say, /var/tmp is seen by both hosts.
set -euo pipefail

[ "$(id -u)" -eq 0 ] || exec sudo --preserve-env=VMM_NODE2_DIR -- "$0" "$@"

readonly NS=vmm-node2
readonly DIR=${VMM_NODE2_DIR:-/var/tmp/vmm-node2}
# Pid files on /run, which a reboot empties: a pid kept across one names another process.
readonly RUN=/run/vmm-node2
readonly HOST_IP=203.0.113.250 NODE_IP=203.0.113.251
readonly HOST_IF=vmmn2-host NODE_IF=vmmn2-node
readonly HOST_UUID=6f0d2b8e-5a51-4c8e-9d3c-000000000002
readonly URI="qemu+tcp://$NODE_IP/system"
readonly BLACKHOLE_METRIC=4000
readonly MAIN_URI="qemu+tcp://$HOST_IP/system"
# The forwarder's firewall rule: only the veth link may reach it.
readonly GUARD=(INPUT -p tcp -d "$HOST_IP" --dport 16509 ! -i "$HOST_IF" -j DROP)
# Neither libvirtd asks who connects: only root on this host may connect to the second
# one (any local user could otherwise act as root through it), and only the second host
# to the forwarder (GUARD).
readonly ROOT_ONLY=(OUTPUT -p tcp -d "$NODE_IP" --dport 16509 -m owner ! --uid-owner 0 -j REJECT)

say() { echo "node2: $*" >&2; }

# Whether the process of pid file $1 runs and is the program $2 (a killed daemon stays a
# zombie for a while, and `kill -0` would call it alive).
alive() {
  [ -f "$1" ] || return 1
  local state comm
  read -r state comm < <(ps -o stat=,comm= -p "$(cat "$1")" 2>/dev/null) || return 1
  [[ $state != Z* && $comm == "$2" ]]
}

answers() { virsh -c "$1" uri >/dev/null 2>&1; }

wait_until() {
  local what=$1; shift
  for _ in $(seq 1 100); do "$@" >/dev/null 2>&1 && return 0; sleep 0.2; done
  say "timed out waiting for $what"
  return 1
}

network_up() {
  [ -e "/run/netns/$NS" ] || ip netns add "$NS"
  if ! ip link show "$HOST_IF" >/dev/null 2>&1; then
    ip link add "$HOST_IF" type veth peer name "$NODE_IF"
    ip link set "$NODE_IF" netns "$NS"
  fi
  ip addr replace "$HOST_IP/32" peer "$NODE_IP/32" dev "$HOST_IF"
  ip link set "$HOST_IF" up
  ip -n "$NS" addr replace "$NODE_IP/32" peer "$HOST_IP/32" dev "$NODE_IF"
  ip -n "$NS" link set "$NODE_IF" up
  ip -n "$NS" link set lo up
  # While the link is down (`cut`) its route is gone, and the default route would carry the
  # second host's traffic off the machine: this one, behind the link's, drops it here.
  ip route replace blackhole "$NODE_IP/32" metric "$BLACKHOLE_METRIC"
}

# The second host's files: this host's daemon settings with its own added, and its state
# directories made with the owners and modes of this host's (their contents are its own).
files() {
  mkdir -p "$DIR"/{etc,lib,log,cache,vmm} /var/lib/vmm
  for pair in lib:/var/lib/libvirt log:/var/log/libvirt cache:/var/cache/libvirt; do
    local own=${pair%%:*} host=${pair#*:}
    [ -d "$host" ] || continue
    (cd "$host" && find . -maxdepth 2 -type d -print0 | tar --null --no-recursion -T - -cf -) |
      tar -C "$DIR/$own" -xpf -
  done
  mkdir -p "$DIR/lib/images"
  # The daemons' settings only: the host's domains, networks and pools stay the host's.
  cp -a /etc/libvirt/*.conf "$DIR/etc/"
  cat > "$DIR/etc/libvirtd.conf" <<CONF
# The second test host (tests/node2.sh).
listen_tls = 0
listen_tcp = 1
listen_addr = "$NODE_IP"
auth_tcp = "none"
auth_unix_rw = "none"
host_uuid = "$HOST_UUID"
CONF
  # Without these, libvirt offers a host name for incoming migrations that resolves
  # outside the namespace.
  if ! grep -q '^# vmm node2' "$DIR/etc/qemu.conf" 2>/dev/null; then
    cat >> "$DIR/etc/qemu.conf" <<CONF
# vmm node2
migration_address = "$NODE_IP"
migration_host = "$NODE_IP"
CONF
  fi
  # The main host by its own name too: its libvirtd offers that name to a QEMU migrating
  # to it from here.
  printf '127.0.0.1 localhost\n%s node2\n%s node1 %s\n' "$NODE_IP" "$HOST_IP" "$(hostname)" > "$DIR/hosts"
}

daemons_up() {
  alive "$RUN/libvirtd.pid" libvirtd && return 0
  # Whatever is left of an earlier start (a virtlogd or QEMU whose libvirtd died) would
  # live on unseen beside the new daemons.
  kill_all
  rm -f "$RUN/libvirtd.pid" "$RUN/virtlogd.pid"
  # `ip netns exec` would remount /sys and lose /sys/fs/cgroup; nsenter keeps it.
  nsenter --net="/run/netns/$NS" unshare --cgroup --mount --uts --propagation private --fork -- \
    bash -euo pipefail -s -- "$DIR" "$RUN" <<'INSIDE'
dir=$1 run=$2
mount -t tmpfs -o mode=0755 tmpfs /run/libvirt
mount --bind "$dir/etc" /etc/libvirt
mount --bind "$dir/lib" /var/lib/libvirt
mount --bind "$dir/log" /var/log/libvirt
mount --bind "$dir/cache" /var/cache/libvirt
mount --bind "$dir/hosts" /etc/hosts
mount --bind "$dir/vmm" /var/lib/vmm
hostname node2
virtlogd -d -p "$run/virtlogd.pid"
libvirtd -d --listen -p "$run/libvirtd.pid"
INSIDE
  wait_until "its libvirtd on $URI" answers "$URI"
}

forwarder_up() {
  iptables -C "${GUARD[@]}" 2>/dev/null || iptables -I "${GUARD[@]}"
  if ! alive "$RUN/forwarder.pid" socat; then
    setsid socat "TCP-LISTEN:16509,bind=$HOST_IP,reuseaddr,fork" UNIX-CONNECT:/run/libvirt/libvirt-sock \
      </dev/null >/dev/null 2>&1 &
    echo $! > "$RUN/forwarder.pid"
  fi
  wait_until "the main libvirtd on $MAIN_URI" \
    ip netns exec "$NS" virsh -c "$MAIN_URI" uri
}

# SIGKILL to every process in the namespace (libvirtd, virtlogd, QEMU, dnsmasq).
kill_all() {
  [ -e "/run/netns/$NS" ] || return 0
  local pids
  for _ in $(seq 1 50); do
    pids=$(ip netns pids "$NS")
    [ -n "$pids" ] || return 0
    kill -9 $pids 2>/dev/null || true
    sleep 0.1
  done
  say "processes left in $NS: $(ip netns pids "$NS" | tr '\n' ' ')"
  return 1
}

up() {
  [ -x "$(command -v libvirtd)" ] || { say "libvirtd is not installed (run .ci/setup)"; exit 1; }
  mkdir -p "$RUN"
  iptables -C "${ROOT_ONLY[@]}" 2>/dev/null || iptables -I "${ROOT_ONLY[@]}"
  network_up
  alive "$RUN/libvirtd.pid" libvirtd || files
  daemons_up
  forwarder_up
  echo "$URI"
}

down() {
  kill_all
  if alive "$RUN/forwarder.pid" socat; then kill "$(cat "$RUN/forwarder.pid")"; fi
  while iptables -C "${GUARD[@]}" 2>/dev/null; do iptables -D "${GUARD[@]}"; done
  while iptables -C "${ROOT_ONLY[@]}" 2>/dev/null; do iptables -D "${ROOT_ONLY[@]}"; done
  ip route del blackhole "$NODE_IP/32" metric "$BLACKHOLE_METRIC" 2>/dev/null || true
  ip link del "$HOST_IF" 2>/dev/null || true
  [ ! -e "/run/netns/$NS" ] || ip netns del "$NS"
  rm -rf "$DIR" "$RUN"
}

case ${1:-} in
  up) up ;;
  down) down ;;
  status)
    if alive "$RUN/libvirtd.pid" libvirtd && answers "$URI"; then echo "up $URI"; else echo down; exit 3; fi ;;
  power-off) kill_all ;;
  cut) ip link set "$HOST_IF" down ;;
  mend) network_up ;;
  *) echo "usage: $0 up|down|status|power-off|cut|mend" >&2; exit 2 ;;
esac
