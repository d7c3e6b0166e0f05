#!/usr/bin/env bash
# Shows, with strace, that poolrelay answers "250" after DATA only once the message is durable:
# content fsynced, envelope fsynced, both renamed into queue/, queue/ fsynced, then the reply.
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

strace -f -qq -e trace=fsync,fdatasync,rename,renameat,renameat2,write,sendto,sendmsg \
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
lines = [l for l in open(sys.argv[1]) if "resumed>" not in l or "= " in l]
def first(pattern, after=-1):
    for i, line in enumerate(lines):
        if i > after and re.search(pattern, line):
            return i
    sys.exit(f"not found after line {after}: {pattern}")
reply = first(r'"250 2\.0\.0 Ok ')
rename_msg = first(r'rename.*tmp/[0-9a-f-]+\.msg".*queue/')
rename_env = first(r'rename.*tmp/[0-9a-f-]+\.env".*queue/', rename_msg)
fsyncs_before = [i for i, l in enumerate(lines) if re.search(r'\bfsync\(', l) and i < rename_msg]
dir_fsync = first(r'\bfsync\(', rename_env)
assert len(fsyncs_before) >= 2, "content and envelope fsynced before the renames"
assert dir_fsync < reply, "queue/ fsynced before the reply"
print("order ok: fsync(content), fsync(envelope) < rename(content) < rename(envelope) < fsync(queue/) < 250")
print(f"trace lines: content/envelope fsyncs {fsyncs_before[-2:]}, renames {rename_msg},{rename_env}, dir fsync {dir_fsync}, reply {reply}")
PY
