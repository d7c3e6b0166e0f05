#!/usr/bin/env bash
# SendEmail over the SESv2 API against SMTP, on the same relay (benches/two-pools.toml.in plus
# an [api] listener and a send key): `poolrelay load` with 20 sessions and 2 KB messages, once
# over SMTP (pipelining) and once with --api (SigV4-signed SendEmail requests carrying the same
# message as Content.Raw, on keep-alive connections), alternating, into `poolrelay sink --stats`.
# Prints msg/s, relay CPU and load-generator CPU per message for each run (they share the
# machine's cores) and the median API/SMTP ratio.
# Loopback only; no root needed.
# Usage: benches/api-vs-smtp.sh [--pairs N] [--messages N] [BINARY]
set -euo pipefail
cd "$(dirname "$0")/.."
pairs=5 messages=20000 bin=""
while [ $# -gt 0 ]; do
  case "$1" in
    --pairs) pairs=$2; shift 2 ;;
    --messages) messages=$2; shift 2 ;;
    *) bin=$1; shift ;;
  esac
done
if [ -z "$bin" ]; then cargo build --release --quiet; bin=target/release/poolrelay; fi
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
ticks=$(getconf CLK_TCK)

# One run over "smtp" or "api": prints "msg/s cpu_ms_per_msg".
run() {
  local dir="$work/run" relay sink target=127.0.0.1:2893 api=()
  rm -rf "$dir"; mkdir -p "$dir"
  sed -e 's/LISTEN/127.0.0.1:2893/; s/SINK/127.0.0.1:2891/; s/SPOOL/spool/' benches/two-pools.toml.in > "$dir/p.toml"
  printf '\n[api]\nlisten = ["127.0.0.1:2895"]\n[[api.key]]\naccess_key_id = "AKIDBENCH"\nsecret_access_key = "bench-secret"\nallow = ["send"]\n' >> "$dir/p.toml"
  if [ "$1" = api ]; then target=127.0.0.1:2895; api=(--api); fi
  "$bin" sink --listen 127.0.0.1:2891 --stats "$dir/sink.json" 2>/dev/null & sink=$!
  RUST_LOG=warn "$bin" serve --config "$dir/p.toml" 2>"$dir/relay.log" & relay=$!
  for _ in $(seq 100); do (echo > /dev/tcp/127.0.0.1/2895) 2>/dev/null && break; sleep 0.05; done
  local rate client
  # The load generator shares the machine: its CPU per message is reported too.
  read -r rate client < <(AWS_ACCESS_KEY_ID=AKIDBENCH AWS_SECRET_ACCESS_KEY=bench-secret python3 - \
      "$bin" load --target "$target" "${api[@]}" --connections 20 --messages "$messages" --size 2048 \
      --configuration-sets set-a,set-b --json <<'PY'
import json, resource, subprocess, sys
out = subprocess.run(sys.argv[1:], capture_output=True, check=True).stdout
report = json.loads(out)
assert report["accepted"] == report["messages"], report
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
print(round(report["accepted_per_second"]), "%.3f" % (1000 * (usage.ru_utime + usage.ru_stime) / report["messages"]))
PY
)
  for _ in $(seq 200); do
    python3 -c "import json,sys; sys.exit(json.load(open('$dir/sink.json'))['messages'] < $messages)" 2>/dev/null && break
    sleep 0.05
  done
  local cpu
  cpu=$(awk -v n="$messages" -v t="$ticks" '{printf "%.3f", 1000 * ($14 + $15) / t / n}' /proc/$relay/stat)
  kill $relay $sink; wait $relay $sink 2>/dev/null || true
  echo "$rate $cpu $client"
}

echo "pair  SMTP msg/s  relay CPU ms/msg  client  |  API msg/s  relay CPU ms/msg  client  |  API/SMTP"
ratios=()
for pair in $(seq "$pairs"); do
  read -r s_rate s_cpu s_client <<< "$(run smtp)"
  read -r a_rate a_cpu a_client <<< "$(run api)"
  ratio=$(python3 -c "print(round(100 * $a_rate / $s_rate))")
  ratios+=("$ratio")
  printf "%4d  %10s  %16s  %6s  |  %9s  %16s  %6s  |  %d%%\n" "$pair" "$s_rate" "$s_cpu" "$s_client" "$a_rate" "$a_cpu" "$a_client" "$ratio"
done
python3 -c "import statistics; r=[int(x) for x in '${ratios[*]}'.split()]; print(f'median API/SMTP: {statistics.median(r)}% ({min(r)}..{max(r)}) over {len(r)} pairs')"
