#!/usr/bin/env bash
# Large messages through one relay build: COUNT messages of SIZE bytes from `poolrelay load` (8 sessions)
# into `poolrelay sink`; prints delivered msg/s and the relay's CPU per message. Run it for two builds
# alternately to compare them. Loopback only (source 127.0.0.2). Usage: benches/large.sh BINARY SIZE COUNT
set -euo pipefail
BIN=$1; SIZE=$2; COUNT=$3
W=$(mktemp -d)
cat > $W/r.toml <<T
[smtp]
listen = ["127.0.0.1:2993"]
hostname = "r.test"
max_message_bytes = 41943040
[spool]
dir = "$W/spool"
[[route]]
domain = "*"
next_hop = "127.0.0.1:2991"
[[ip]]
address = "127.0.0.2"
T
$BIN sink --listen 127.0.0.1:2991 --stats $W/s.json 2>/dev/null & S=$!
RUST_LOG=warn $BIN serve --config $W/r.toml 2>$W/log & R=$!
for _ in $(seq 100); do (echo > /dev/tcp/127.0.0.1/2993) 2>/dev/null && break; sleep 0.1; done
T0=$(date +%s.%N)
$BIN load --target 127.0.0.1:2993 --connections 8 --messages $COUNT --size $SIZE --json >/dev/null 2>&1
for _ in $(seq 3000); do python3 -c "import json,sys; sys.exit(0 if json.load(open('$W/s.json'))['messages']>=$COUNT else 1)" 2>/dev/null && break; sleep 0.05; done
T1=$(date +%s.%N)
CPU=$(awk '{print ($14+$15)}' /proc/$R/stat)
kill $R $S; wait $R $S 2>/dev/null || true
python3 -c "t=$T1-$T0; print(f'{$COUNT/t:.0f} msg/s, {1000*$CPU/100/$COUNT:.2f} ms CPU/msg')"
rm -rf $W
