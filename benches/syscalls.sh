#!/usr/bin/env bash
# System calls per message: runs poolrelay under `strace -c -f` (at its default log level) while
# `poolrelay load` sends MESSAGES 2 KB messages over 20 reused connections into `poolrelay sink`,
# then prints strace's table with a calls-per-message column. strace slows the relay several
# times over: read the counts, not the times. Loopback only (127.0.0.2/.3 as sources).
# Usage: benches/syscalls.sh [BINARY] [MESSAGES]   (SYSCALLS_RUST_LOG=warn: without per-message logs)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-target/release/poolrelay}
MESSAGES=${2:-10000}
command -v strace >/dev/null || { apt-get update -qq && apt-get install -y -qq strace >/dev/null; }
[ -x "$BIN" ] || cargo build --release --quiet
WORK=$(mktemp -d)
trap 'kill $SINK $STRACE 2>/dev/null || true; rm -rf "$WORK"' EXIT
sed -e "s|LISTEN|127.0.0.1:2893|; s|SINK|127.0.0.1:2891|; s|SPOOL|$WORK/spool|" \
  benches/two-pools.toml.in > "$WORK/relay.toml"
"$BIN" sink --listen 127.0.0.1:2891 --stats "$WORK/sink.json" 2>/dev/null & SINK=$!
env -u RUST_LOG ${SYSCALLS_RUST_LOG:+RUST_LOG=$SYSCALLS_RUST_LOG} strace -c -f -o "$WORK/strace.txt" "$BIN" serve --config "$WORK/relay.toml" 2>"$WORK/relay.log" & STRACE=$!
for _ in $(seq 100); do (echo > /dev/tcp/127.0.0.1/2893) 2>/dev/null && break; sleep 0.1; done
"$BIN" load --target 127.0.0.1:2893 --connections 20 --messages "$MESSAGES" --size 2048 \
  --configuration-sets set-a,set-b --json 2>/dev/null
delivered() { python3 -c "import json; print(json.load(open('$WORK/sink.json'))['messages'])" 2>/dev/null || echo 0; }
for _ in $(seq 600); do [ "$(delivered)" -ge "$MESSAGES" ] && break; sleep 0.1; done
echo "delivered: $(delivered) of $MESSAGES" >&2
# strace does not pass SIGTERM on: stop the relay itself, then let strace write its table.
pkill -TERM -f "$BIN serve --config $WORK/relay.toml" || true
wait $STRACE || true
python3 - "$WORK/strace.txt" "$MESSAGES" <<'PY'
import sys
path, messages = sys.argv[1], int(sys.argv[2])
rows = []
for line in open(path):
    parts = line.split()
    if len(parts) >= 5 and parts[0][0].isdigit() and parts[-1] != "total":
        calls = int(parts[3])
        rows.append((parts[-1], calls))
rows.sort(key=lambda r: -r[1])
print("| syscall | calls | per message |")
print("|---|---|---|")
for name, calls in rows:
    if calls / messages >= 0.01:
        print(f"| {name} | {calls} | {calls / messages:.2f} |")
print(f"| **all** | {sum(c for _, c in rows)} | **{sum(c for _, c in rows) / messages:.2f}** |")
PY
