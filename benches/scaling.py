#!/usr/bin/env python3
"""How poolrelay scales: concurrent sessions, idle connections, message size.

Uses the same relay config, load generator and counting sink as compare.py. Prints markdown tables:
  1. delivered msg/s (2 KB) at 1, 10, 100 and 1,000 concurrent client sessions;
  2. delivered msg/s, MB/s and peak RSS as the message size goes from 1 KB to 10 MB;
  3. relay RSS with 10,000 idle client connections open.
Run from the repository root after `cargo build --release`: python3 benches/scaling.py
"""

import os
import resource
import socket
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import compare  # noqa: E402


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def raise_file_limit(wanted):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = min(max(wanted, soft), hard) if hard != resource.RLIM_INFINITY else wanted
    resource.setrlimit(resource.RLIMIT_NOFILE, (target, max(hard, target) if hard != resource.RLIM_INFINITY else hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def sessions_table(workdir):
    relay = compare.Poolrelay(workdir)
    rows = ["| concurrent sessions | messages | delivered msg/s | p50 / p99 MAIL→250 ms |", "|---|---|---|---|"]
    for sessions in (1, 10, 100, 1000):
        messages = max(2000, sessions * 5)
        result = compare.run_once(relay, workdir, (f"{sessions} sessions", 2048, sessions, False, messages))
        compare.log(f"{sessions} sessions: {result['delivered_per_s']:.0f} msg/s, right source {result['right_source']}")
        rows.append(f"| {sessions} | {result['delivered']} | {result['delivered_per_s']:.0f} | "
                    f"{result['p50_ms']:.1f} / {result['p99_ms']:.1f} |")
    return rows


def idle_table(workdir, count=10000):
    limit = raise_file_limit(count + 1000)
    relay = compare.Poolrelay(workdir)
    pid = relay.start()
    before = rss_kb(pid)
    sockets = []
    greeted = 0
    try:
        for _ in range(count):
            s = socket.create_connection(("127.0.0.1", relay.port), timeout=10)
            sockets.append(s)
            if s.recv(200).startswith(b"220"):
                greeted += 1
        time.sleep(0.5)
        during = rss_kb(pid)
    finally:
        for s in sockets:
            s.close()
        relay.stop()
    compare.log(f"{greeted} idle connections: RSS {before} kB -> {during} kB")
    return ["| idle connections open | greeted with 220 | relay RSS before | relay RSS with them open | per connection |",
            "|---|---|---|---|---|",
            f"| {count} (file limit {limit}) | {greeted} | {before / 1024:.1f} MB | {during / 1024:.1f} MB | "
            f"{(during - before) / max(1, greeted):.1f} kB |"]


def size_table(workdir):
    relay = compare.Poolrelay(workdir)
    rows = ["| message size | messages | delivered msg/s | MB/s | peak relay RSS MB | CPU ms/msg |", "|---|---|---|---|---|---|"]
    for size, messages, sessions in ((1024, 5000, 20), (10 * 1024, 5000, 20), (100 * 1024, 2000, 20),
                                     (1024 * 1024, 300, 20), (10 * 1024 * 1024, 40, 10)):
        result = compare.run_once(relay, workdir, (f"{size} bytes", size, sessions, False, messages))
        compare.log(f"{size} bytes: {result['delivered_per_s']:.1f} msg/s, right source {result['right_source']}")
        rows.append(f"| {size // 1024} KB | {result['delivered']} | {result['delivered_per_s']:.1f} | "
                    f"{result['delivered_per_s'] * size / 1e6:.1f} | {result['peak_rss_mb']:.0f} | {result['cpu_ms_per_msg']:.2f} |")
    return rows


def main():
    workdir = tempfile.mkdtemp(prefix="poolrelay-scaling-")
    try:
        # The idle-connection test goes last: the 10,000 closed sockets it leaves in TIME_WAIT
        # slow down whatever runs right after it.
        tables = [sessions_table(workdir), size_table(workdir), idle_table(workdir)]
    finally:
        for process in compare.started:
            compare.stop(process)
    print("\n\n".join("\n".join(t) for t in tables))


if __name__ == "__main__":
    main()
