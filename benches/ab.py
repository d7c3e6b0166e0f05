#!/usr/bin/env python3
"""Two builds of poolrelay, side by side, in one run: before and after a change.

Uses benches/compare.py's relay config, load generator, counting sink and measurements, and
alternates the two binaries (A, B, A, B, ...) for each scenario, so a busy moment of the machine
hits both. The load generator and sink are those of the current tree for both runs.

    cargo build --release                                   # B: this tree
    git worktree add /tmp/before <commit>
    CARGO_TARGET_DIR=/tmp/before-target cargo build --release --manifest-path /tmp/before/Cargo.toml
    python3 benches/ab.py /tmp/before-target/release/poolrelay target/release/poolrelay --pairs 3

Loopback addresses only; every process started is stopped at the end.
"""

import argparse
import os
import statistics
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import compare  # noqa: E402


def relay_with(binary, label):
    class Relay(compare.Poolrelay):
        name = label

        def start(self, dkim=None):
            saved = compare.BIN
            compare.BIN = binary
            try:
                return super().start(dkim)
            finally:
                compare.BIN = saved

    return Relay


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before")
    parser.add_argument("after")
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--scale", type=float, default=1.0, help="scale message counts")
    parser.add_argument("--only", help="run only the scenarios whose name contains this")
    args = parser.parse_args()
    relays = [("A (before)", relay_with(args.before, "A")), ("B (after)", relay_with(args.after, "B"))]
    results = {}
    with tempfile.TemporaryDirectory() as workdir:
        try:
            for scenario in compare.SCENARIOS:
                name, size, connections, per_message, messages, dkim = scenario
                if args.only and args.only not in name:
                    continue
                scaled = (name, size, connections, per_message, max(100, int(messages * args.scale)), dkim)
                for pair in range(args.pairs):
                    # A B, then B A: whichever runs second in a pair meets the first one's
                    # leftover disk work, so the order alternates.
                    for label, cls in relays if pair % 2 == 0 else reversed(relays):
                        result = compare.run_once(cls(workdir), workdir, scaled)
                        if not result["right_source"]:
                            raise SystemExit(f"{label} {name}: not every message arrived from its pool: {result}")
                        results.setdefault((name, label), []).append(result)
                        compare.log(f"{name} pair {pair + 1} {label}: {result['delivered_per_s']:.0f} msg/s, "
                                    f"{result['cpu_ms_per_msg']:.3f} ms CPU/msg")
        finally:
            for process in compare.started:
                compare.stop(process)
    print("| scenario | build | msg/s (runs) | median msg/s | median CPU ms/msg |")
    print("|---|---|---|---|---|")
    for (name, label), runs in results.items():
        rates = [r["delivered_per_s"] for r in runs]
        cpu = [r["cpu_ms_per_msg"] for r in runs]
        listed = ", ".join(f"{r:.0f}" for r in rates)
        print(f"| {name} | {label} | {listed} | {statistics.median(rates):.0f} | {statistics.median(cpu):.3f} |")


if __name__ == "__main__":
    main()
