#!/usr/bin/env bash
# What a feature costs poolrelay: the same relay (benches/two-pools.toml.in) without and with
# it, alternating, with `poolrelay load` (20 pipelining sessions, 2 KB) into `poolrelay sink
# --stats`. Features: DKIM signing of every message with an Ed25519 key (the default) or, with
# --rsa, an RSA-2048 key made by openssl (the sink counts the messages that arrive signed); or,
# with --feedback, the feedback loop: a bounce domain (a return path per recipient), a
# feedback-loop address (every delivery recorded in the ledger) and a non-empty suppression list
# (every recipient looked up). Prints msg/s and relay CPU per message for each run, and the
# median cost over the pairs. Loopback only; no root needed.
# Usage: benches/feature-cost.sh [--pairs N] [--messages N] [--rsa | --feedback] [BINARY]
set -euo pipefail
cd "$(dirname "$0")/.."
pairs=5 messages=20000 key=ed25519 bin=""
while [ $# -gt 0 ]; do
  case "$1" in
    --pairs) pairs=$2; shift 2 ;;
    --messages) messages=$2; shift 2 ;;
    --rsa) key=rsa; shift ;;
    --feedback) key=feedback; shift ;;
    *) bin=$1; shift ;;
  esac
done
if [ -z "$bin" ]; then cargo build --release --quiet; bin=target/release/poolrelay; fi
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
if [ "$key" = rsa ]; then
  openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$work/key.pem" 2>/dev/null
elif [ "$key" = ed25519 ]; then
  openssl genpkey -algorithm ed25519 -out "$work/key.pem" 2>/dev/null
fi
ticks=$(getconf CLK_TCK)

# One run: prints "msg/s cpu_ms_per_msg signed_count".
run() {
  local dir="$work/run" relay sink
  rm -rf "$dir"; mkdir -p "$dir"
  sed -e 's/LISTEN/127.0.0.1:2893/; s/SINK/127.0.0.1:2891/; s/SPOOL/spool/' benches/two-pools.toml.in > "$dir/p.toml"
  if [ "$1" = with ] && [ "$key" = feedback ]; then
    printf '\n[admin]\nsocket = "admin.sock"\n[bounce]\ndomain = "bounce.bench.test"\n[feedback]\naddress = "fbl@bench.test"\n' >> "$dir/p.toml"
  elif [ "$1" = with ]; then
    printf '\n[[identity]]\nname = "example.test"\ndkim_selector = "bench"\ndkim_key = "%s"\n' "$work/key.pem" >> "$dir/p.toml"
  fi
  "$bin" sink --listen 127.0.0.1:2891 --stats "$dir/sink.json" 2>/dev/null & sink=$!
  RUST_LOG=warn "$bin" serve --config "$dir/p.toml" 2>"$dir/relay.log" & relay=$!
  for _ in $(seq 100); do (echo > /dev/tcp/127.0.0.1/2893) 2>/dev/null && break; sleep 0.05; done
  if [ "$1" = with ] && [ "$key" = feedback ]; then
    # One address on the list (not one the load sends to): every recipient is looked up.
    python3 - "$dir/admin.sock" <<'PY'
import http.client, json, socket, sys
class Unix(http.client.HTTPConnection):
    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(sys.argv[1])
c = Unix("poolrelay")
c.request("PUT", "/v2/email/suppression/addresses", json.dumps({"EmailAddress": "gone@example.test", "Reason": "BOUNCE"}))
assert c.getresponse().status == 200
PY
  fi
  local rate
  rate=$("$bin" load --target 127.0.0.1:2893 --connections 20 --messages "$messages" --size 2048 \
           --configuration-sets set-a,set-b --json 2>/dev/null | python3 -c 'import json,sys; print(round(json.load(sys.stdin)["accepted_per_second"]))')
  for _ in $(seq 200); do
    python3 -c "import json,sys; sys.exit(json.load(open('$dir/sink.json'))['messages'] < $messages)" 2>/dev/null && break
    sleep 0.05
  done
  local cpu
  cpu=$(awk -v n="$messages" -v t="$ticks" '{printf "%.3f", 1000 * ($14 + $15) / t / n}' /proc/$relay/stat)
  local signed
  signed=$(python3 -c "import json; print(json.load(open('$dir/sink.json'))['dkim_signed'])")
  kill $relay $sink; wait $relay $sink 2>/dev/null || true
  echo "$rate $cpu $signed"
}

echo "pair  without msg/s  CPU ms/msg  |  with ($key) msg/s  CPU ms/msg  signed  |  throughput cost"
costs=()
for pair in $(seq "$pairs"); do
  read -r u_rate u_cpu _ <<< "$(run without)"
  read -r s_rate s_cpu s_count <<< "$(run with)"
  if [ "$key" != feedback ] && [ "$s_count" != "$messages" ]; then
    echo "only $s_count of $messages signed: not a result"; exit 1
  fi
  cost=$(python3 -c "print(round(100 * (1 - $s_rate / $u_rate)))")
  costs+=("$cost")
  printf "%4d  %14s  %10s  |  %18s  %10s  %6s  |  %d%%\n" "$pair" "$u_rate" "$u_cpu" "$s_rate" "$s_cpu" "$s_count" "$cost"
done
python3 -c "import statistics; c=[int(x) for x in '${costs[*]}'.split()]; print(f'median throughput cost of $key: {statistics.median(c)}% ({min(c)}..{max(c)}) over {len(c)} pairs')"
