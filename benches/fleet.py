#!/usr/bin/env python3
"""Fleet mode on this machine: messages per second through 1 relay without [cluster], 1 fleet
node, and 3 fleet nodes (same total load, split over the nodes), plus 3 nodes where two hand every
message to the third (a pool that lives on one node), and 3 nodes with a fleet-wide site rate (one
Redis script per message). For each: accepted msg/s and latency from `poolrelay load`, delivered
msg/s at the sink, Redis commands per message (INFO's total_commands_processed: commands run
inside scripts and heartbeats included) and scripts per message (EVALSHA calls: one round trip
each). Everything on loopback: a redis-server of its own on a free port, `poolrelay sink`,
127.0.0.2-4 as the nodes' IPs.

Usage: benches/fleet.py [--messages N] [--runs N] [BINARY]
"""
import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on {port}")


def redis_commands(port):
    out = subprocess.run(["redis-cli", "-p", str(port), "info", "stats"], capture_output=True, text=True).stdout
    for line in out.splitlines():
        if line.startswith("total_commands_processed:"):
            return int(line.split(":")[1])
    return 0


def redis_scripts(port):
    """Scripts run (EVALSHA and EVAL calls): one network round trip each."""
    out = subprocess.run(["redis-cli", "-p", str(port), "info", "commandstats"], capture_output=True, text=True).stdout
    calls = 0
    for line in out.splitlines():
        if line.startswith(("cmdstat_evalsha:", "cmdstat_eval:")):
            calls += int(line.split("calls=")[1].split(",")[0])
    return calls


def node_config(dir, name, smtp, ip, pool, redis_port, sink, extra, cluster=True):
    text = f'[smtp]\nlisten = ["127.0.0.1:{smtp}"]\nhostname = "{name}.bench"\nmax_connections = 2000\n'
    text += f'[spool]\ndir = "spool-{name}"\n[[route]]\ndomain = "*"\nnext_hop = "127.0.0.1:{sink}"\n'
    if cluster:
        text += (f'[cluster]\nredis = "redis://127.0.0.1:{redis_port}/0"\nnode = "{name}"\n'
                 f'forward_listen = "127.0.0.1:{free_port()}"\nsecret_file = "fleet.key"\n')
    text += f'[[ip]]\naddress = "{ip}"\n' + (f'pool = "{pool}"\n' if pool else "") + extra
    path = os.path.join(dir, f"{name}.toml")
    with open(path, "w") as f:
        f.write(text)
    return path


MODEL = '[[pool]]\nname = "far"\n[[configuration_set]]\nname = "far-set"\nsending_pool = "far"\n'


def run(binary, scenario, messages):
    """One run of a scenario; returns a dict of numbers."""
    with tempfile.TemporaryDirectory() as dir:
        procs = []
        try:
            redis_port, sink_port = free_port(), free_port()
            procs.append(subprocess.Popen(["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1",
                                           "--save", "", "--appendonly", "no", "--dir", dir],
                                          stdout=subprocess.DEVNULL))
            stats = os.path.join(dir, "sink.json")
            procs.append(subprocess.Popen([binary, "sink", "--listen", f"127.0.0.1:{sink_port}", "--stats", stats],
                                          stderr=subprocess.DEVNULL))
            wait_port(redis_port)
            nodes = {"single": 1, "fleet-1": 1}.get(scenario, 3)
            extra_all = ""
            if scenario == "fleet-3-site-rate":
                extra_all = '[[shaping]]\nsite = "*"\nsite_max_message_rate = "1000000/s"\n'
            ports = []
            for i in range(nodes):
                name = "abc"[i]
                pool = "far" if scenario == "fleet-3-handover" and i == 2 else None
                extra = extra_all + (MODEL if i == 0 and scenario == "fleet-3-handover" else "")
                smtp = free_port()
                path = node_config(dir, name, smtp, f"127.0.0.{2 + i}", pool, redis_port, sink_port, extra,
                                   cluster=scenario != "single")
                procs.append(subprocess.Popen([binary, "serve", "--config", path], env={**os.environ, "RUST_LOG": "warn"},
                                              stderr=subprocess.DEVNULL))
                wait_port(smtp)
                ports.append(smtp)
                time.sleep(0.3)  # joins one after the other, as an operator would start them
            time.sleep(1.5)  # every node has heard every other's heartbeat
            targets = ports[:2] if scenario == "fleet-3-handover" else ports
            sets = ["--configuration-sets", "far-set"] if scenario == "fleet-3-handover" else []
            before = redis_commands(redis_port)
            scripts_before = redis_scripts(redis_port)
            start = time.time()
            loads = [subprocess.Popen([binary, "load", "--target", f"127.0.0.1:{port}", "--connections",
                                       str(max(1, 20 // len(targets))), "--messages", str(messages // len(targets)),
                                       "--size", "2048", "--json", *sets], stdout=subprocess.PIPE,
                                      stderr=subprocess.DEVNULL)
                     for port in targets]
            reports = [json.loads(load.communicate()[0]) for load in loads]
            accepted_at = time.time() - start
            total = sum(r["accepted"] for r in reports)
            while True:
                try:
                    with open(stats) as f:
                        if json.load(f)["messages"] >= total:
                            break
                except (OSError, ValueError, KeyError):
                    pass
                if time.time() - start > 300:
                    raise SystemExit(f"{scenario}: the sink did not get {total} messages")
                time.sleep(0.02)
            delivered_at = time.time() - start
            commands = redis_commands(redis_port) - before if scenario != "single" else 0
            scripts = redis_scripts(redis_port) - scripts_before if scenario != "single" else 0
            return {
                "accepted_per_s": total / accepted_at,
                "delivered_per_s": total / delivered_at,
                "p50_ms": statistics.median(r["p50_ms"] for r in reports),
                "p99_ms": max(r["p99_ms"] for r in reports),
                "redis_per_msg": commands / total,
                "scripts_per_msg": scripts / total,
            }
        finally:
            for proc in reversed(procs):
                proc.terminate()
            for proc in procs:
                proc.wait()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=30000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("binary", nargs="?")
    args = parser.parse_args()
    binary = args.binary
    if not binary:
        subprocess.run(["cargo", "build", "--release", "--quiet"], check=True)
        binary = "target/release/poolrelay"
    scenarios = ["single", "fleet-1", "fleet-3", "fleet-3-handover", "fleet-3-site-rate"]
    print(f"{args.messages} messages of 2 KB, 20 sessions in all, {args.runs} runs each (medians)")
    print(f"{'scenario':<18} {'accepted/s':>10} {'delivered/s':>11} {'p50 ms':>7} {'p99 ms':>7} {'redis cmds/msg':>14} {'scripts/msg':>11}")
    for scenario in scenarios:
        results = [run(binary, scenario, args.messages) for _ in range(args.runs)]
        med = {key: statistics.median(r[key] for r in results) for key in results[0]}
        print(f"{scenario:<18} {med['accepted_per_s']:>10.0f} {med['delivered_per_s']:>11.0f} "
              f"{med['p50_ms']:>7.2f} {med['p99_ms']:>7.2f} {med['redis_per_msg']:>14.2f} {med['scripts_per_msg']:>11.2f}",
              flush=True)


if __name__ == "__main__":
    sys.exit(main())
