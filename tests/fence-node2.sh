#!/usr/bin/env bash
# A fence agent for tests/node2.sh's second host, as vmmd runs one: it powers the host
# off (its libvirtd and every QEMU die) and appends the time and the node vmmd named
# (VMM_NODE_NAME) to the file given as $1, so a test can tell when it ran. Exit 0: off.
set -euo pipefail
marker=${1:?usage: fence-node2.sh MARKER_FILE}
bash "$(dirname "$0")/node2.sh" power-off
printf '%s %s\n' "$(date +%s.%N)" "${VMM_NODE_NAME:-?}" >> "$marker"
