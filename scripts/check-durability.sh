#!/usr/bin/env bash
# Shows, with strace, that poolrelay answers "250" after DATA only once the message is durable:
# the message record (content, envelope, checksums) is appended to a segment in queue/ with
# writev, the segment is flushed with fdatasync (the group commit), then the reply is sent.
# Not part of CI (it needs ptrace); run it after changing the spool. Loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v strace >/dev/null || { apt-get update -qq && apt-get install -y -qq strace >/dev/null; }
cargo build --release --quiet

work=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$work/poolrelay.toml" <<TOML
[smtp]
listen = ["127.0.0.1:$port"]
hostname = "relay.test"
[queue]
retry_interval = "1h"
[[route]]
domain = "*"
next_hop = "127.0.0.1:9"   # nothing listens: the message stays queued
[[ip]]
address = "127.0.0.2"
TOML

strace -f -qq -e trace=openat,fsync,fdatasync,write,writev,sendto,sendmsg \
  -s 80 -o "$work/trace" target/release/poolrelay serve --config "$work/poolrelay.toml" 2>"$work/log" &
pid=$!
trap 'pkill -P $pid poolrelay 2>/dev/null || true; kill $pid 2>/dev/null || true; rm -rf "$work"' EXIT

python3 - "$port" <<'PY'
import smtplib, socket, sys, time
port = int(sys.argv[1])
for _ in range(200):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close(); break
    except OSError:
        time.sleep(0.05)
with smtplib.SMTP("127.0.0.1", port) as s:
    code, reply = s.sendmail("a@example.test", ["b@example.test"], "Subject: durable\r\n\r\nx\r\n"), None
PY
relay=$(pgrep -P $pid poolrelay || true)
kill -TERM ${relay:-$pid}; wait $pid || true

python3 - "$work/trace" <<'PY'
import re, sys
lines = open(sys.argv[1]).read().splitlines()
def first(pattern, after=-1):
    for i, line in enumerate(lines):
        if i > after and re.search(pattern, line):
            return i, line
    sys.exit(f"not found after line {after}: {pattern}")
created, line = first(r'openat\(.*queue/[0-9a-f]{16}\.seg".*O_CREAT.*= (\d+)')
fd = re.search(r'= (\d+)$', line).group(1)
written, _ = first(rf'writev\({fd}, ', created)
synced, _ = first(rf'fdatasync\({fd}\)', written)
reply, _ = first(r'"250 2\.0\.0 Ok ')
assert created < written < synced < reply, (created, written, synced, reply)
print("order ok: create queue/N.seg < writev message record < fdatasync < 250")
print(f"trace lines: create {created}, writev {written}, fdatasync {synced}, reply {reply}")
PY
