#!/usr/bin/env bash
# HTTP throughput of vmmd on loopback, measured with wrk: GET /api/v1/vms?limit=100 with 10
# VMs and with 100,000 VMs in a SQLite store, beside GET /api/v1/health in the same run.
# Needs a release vmmd (cargo build --release -p vmm-server) and wrk (Debian package).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
vmmd=${VMMD:-$root/target/release/vmmd}
port=${PORT:-18090}
duration=${DURATION:-10s}
token=wrk-token-0123456789abcdef
data=$(mktemp -d)
base=http://127.0.0.1:$port
pid=

start() {
  VMM_LISTEN=127.0.0.1:$port VMM_DATA_DIR=$data VMM_ADMIN_TOKEN=$token VMM_LOCAL_NODE=false RUST_LOG=warn \
    "$vmmd" serve >>"$data/vmmd.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 100); do curl -sf $base/api/v1/health >/dev/null 2>&1 && return; sleep 0.1; done
  echo "vmmd did not start" >&2; exit 1
}
stop() { kill -TERM "$pid"; wait "$pid" || true; }
trap 'kill $pid 2>/dev/null || true' EXIT

measure() {
  echo "== $1"
  wrk -t2 -c32 -d"$duration" --latency -H "Authorization: Bearer $token" "$base$2" |
    grep -E "Requests/sec|99%|Non-2xx" | sed 's/^/   /'
}

start
auth="Authorization: Bearer $token"
node=$(curl -sf -H "$auth" -H 'Content-Type: application/json' \
  -d '{"name": "bench", "uri": "memory://bench?cpus=100000&memory_mib=100000000&storage_gib=100000000"}' \
  $base/api/v1/nodes | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
for i in $(seq 1 10); do
  curl -sf -H "$auth" -H 'Content-Type: application/json' \
    -d "{\"name\": \"vm-$i\", \"vcpus\": 1, \"memory_mib\": 512, \"disk_gib\": 1}" $base/api/v1/vms >/dev/null
done
sleep 1
measure "GET /api/v1/health (10 VMs)" "/api/v1/health"
measure "GET /api/v1/vms?limit=100 (10 VMs)" "/api/v1/vms?limit=100"
stop

# 99,990 more VMs, written straight into the store's tables.
python3 - "$data/vmm.db" "$node" <<'PY'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
with db:
    db.execute("""
        WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 99990)
        INSERT INTO vms (id, name, vcpus, memory_mib, disk_gib, node_id, ip_pool_id, state, addresses, created_at)
        SELECT printf('01900000-0000-7000-8000-%012d', i), 'seeded-' || i, 1, 512, 1, ?, NULL, 'stopped', '[]',
               '2026-01-01T00:00:00.000000Z' FROM n""", (sys.argv[2],))
print("VMs in the store:", db.execute("SELECT COUNT(*) FROM vms").fetchone()[0])
PY
start
measure "GET /api/v1/health (100,000 VMs)" "/api/v1/health"
measure "GET /api/v1/vms?limit=100 (100,000 VMs, first page)" "/api/v1/vms?limit=100"
cursor=01900000-0000-7000-8000-000000050000
measure "GET /api/v1/vms?limit=100 (100,000 VMs, a page in the middle)" "/api/v1/vms?limit=100&cursor=$cursor"
stop
rm -rf "$data"
