"""`vmm vm list -o json` of 10,000 VMs against a real vmmd (SQLite, a test:///default node),
beside its peer in the same run: the same pages fetched by curl (the HTTP API with no
client around it). Target: under 0.5 s.

    cargo build --release -p vmm-server -p vmm-cli --bin vmmd --bin vmm
    python3 benches/cli/list_10k.py [COUNT]      # COUNT defaults to 10,000

test:///default has room for 100 VMs of 1 GiB: those are made through the API (POST /vms,
start=false), as a user would; the rest are written straight into the database while vmmd
is stopped (as benches/benches/create_at_scale.rs does), and vmmd is started again on it.
"""

import http.client
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RELEASE = os.path.join(ROOT, "target", "release")
COUNT = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
ROUNDS = 7
TOKEN = "bench-token-0123456789abcdef"


def start_vmmd(data):
    env = dict(os.environ, VMM_LISTEN="127.0.0.1:0", VMM_DATA_DIR=data, VMM_ADMIN_TOKEN=TOKEN,
               VMM_LOCAL_NODE="false", VMM_TEST_NODES="true", RUST_LOG="info", NO_COLOR="1")
    proc = subprocess.Popen([os.path.join(RELEASE, "vmmd"), "serve"], env=env, stdout=subprocess.PIPE, text=True)
    for line in proc.stdout:
        if "listening on " in line:
            base = line.split("listening on ")[1].split()[0]
            # Keep draining the log.
            subprocess.Popen(["cat"], stdin=proc.stdout, stdout=subprocess.DEVNULL)
            return proc, base
    raise SystemExit("vmmd did not start")


class Api:
    def __init__(self, base):
        host = base.removeprefix("http://")
        self.conn = http.client.HTTPConnection(host, timeout=120)

    def call(self, method, path, body=None):
        headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
        self.conn.request(method, "/api/v1" + path, body=json.dumps(body) if body is not None else None, headers=headers)
        res = self.conn.getresponse()
        data = res.read()
        if res.status >= 400:
            raise SystemExit(f"{method} {path}: {res.status} {data[:300]!r}")
        return json.loads(data) if data else None


def timed(argv, rounds=ROUNDS):
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        out = subprocess.run(argv, stdout=subprocess.PIPE, check=True, env=dict(os.environ, VMM_TOKEN=TOKEN)).stdout
        samples.append(time.perf_counter() - start)
    return out, statistics.median(samples), min(samples)


def main():
    global COUNT
    for binary in ("vmmd", "vmm"):
        if not os.path.exists(os.path.join(RELEASE, binary)):
            raise SystemExit(f"target/release/{binary} is missing: cargo build --release -p vmm-server -p vmm-cli --bin vmmd --bin vmm")
    if not shutil.which("curl"):
        raise SystemExit("curl is needed for the peer")
    data = tempfile.mkdtemp(prefix="vmm-bench-cli-")
    proc, base = start_vmmd(data)
    try:
        api = Api(base)
        node = api.call("POST", "/nodes", {"name": "lab", "uri": "test:///default", "virt_type": "qemu",
                                          "cpu_overcommit": 64, "memory_overcommit": 64})
        made = min(COUNT, 100)
        start = time.perf_counter()
        tasks = [api.call("POST", "/vms", {"name": f"vm-{i}", "vcpus": 1, "memory_mib": 64, "disk_gib": 1,
                                           "start": False})["task"]["id"] for i in range(made)]
        for task in tasks:
            while (t := api.call("GET", f"/tasks/{task}/wait?timeout_s=60"))["state"] in ("queued", "running"):
                pass
            if t["state"] != "succeeded":
                raise SystemExit(f"a create failed: {t['error']}")
        print(f"made {made} VMs through the API in {time.perf_counter() - start:.1f} s", flush=True)
        proc.terminate()
        proc.wait(30)
        if COUNT > made:
            db = sqlite3.connect(os.path.join(data, "vmm.db"))
            with db:
                db.execute(
                    "INSERT INTO vms (id, name, vcpus, memory_mib, disk_gib, node_id, ip_pool_id, state, addresses, created_at) "
                    "WITH RECURSIVE seq(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq WHERE n < ?) "
                    "SELECT printf('00000000-0000-7000-8000-%012d', n), 'bulk-' || n, 1, 64, 1, ?, NULL, 'stopped', '[]', "
                    "'2026-01-01T00:00:00.000000Z' FROM seq",
                    (COUNT - made, node["id"]),
                )
            db.close()
        proc, base = start_vmmd(data)

        cli = [os.path.join(RELEASE, "vmm"), "--url", base, "vm", "list", "-o", "json"]
        out, cli_median, cli_best = timed(cli)
        assert len(json.loads(out)) == COUNT
        # The peer: the same pages (1,000 items each, as the CLI reads them), cursor after cursor.
        peer = ["sh", "-c", 'c=""; while :; do p=$(curl -sfS -H "Authorization: Bearer $VMM_TOKEN" '
                f'"{base}/api/v1/vms?limit=1000$c") || exit 1; '
                'n=$(printf %s "$p" | sed -n \'s/.*"next_cursor":"\\([^"]*\\)".*/\\1/p\'); '
                '[ -z "$n" ] && break; c="&cursor=$n"; done']
        _, peer_median, peer_best = timed(peer)
        print(f"vmm vm list -o json:        {COUNT} VMs, median {cli_median * 1000:.0f} ms (best {cli_best * 1000:.0f} ms); target < 500 ms")
        print(f"curl, the same pages:       median {peer_median * 1000:.0f} ms (best {peer_best * 1000:.0f} ms)")
        print(f"vmm / curl: {cli_median / peer_median:.2f}")
    finally:
        proc.terminate()
        proc.wait(30)
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()
