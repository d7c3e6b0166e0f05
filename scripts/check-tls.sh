#!/usr/bin/env bash
# Runs testssl.sh (Debian package testssl.sh) against poolrelay's STARTTLS and implicit-TLS
# listeners with a fresh self-signed certificate, and fails if any protocol below TLS 1.2 is
# offered. Not part of CI (it downloads a package and takes a minute). Loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v testssl >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq testssl.sh >/dev/null; }
command -v openssl >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssl >/dev/null; }
cargo build --release --quiet

work=$(mktemp -d)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
plain=$(free_port); implicit=$(free_port)
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj "/CN=relay.test" \
  -keyout "$work/relay.key" -out "$work/relay.crt" 2>/dev/null
cat > "$work/poolrelay.toml" <<TOML
[smtp]
listen = ["127.0.0.1:$plain"]
tls_listen = ["127.0.0.1:$implicit"]
hostname = "relay.test"
[smtp.tls]
cert = "relay.crt"
key = "relay.key"
[[ip]]
address = "127.0.0.2"
TOML
target/release/poolrelay serve --config "$work/poolrelay.toml" 2>"$work/log" &
pid=$!
trap 'kill $pid 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 100); do python3 -c "import socket; socket.create_connection(('127.0.0.1', $plain), 1)" 2>/dev/null && break; sleep 0.1; done

status=0
for target in "--starttls smtp 127.0.0.1:$plain" "127.0.0.1:$implicit"; do
  echo "== testssl --protocols $target"
  # shellcheck disable=SC2086
  testssl --quiet --color 0 --protocols $target | tee "$work/out"
  for old in "SSLv2" "SSLv3" "TLS 1 " "TLS 1.1"; do
    if grep -E "^ *$old" "$work/out" | grep -qv "not offered"; then
      echo "FAIL: $old is offered on $target"; status=1
    fi
  done
done
[ $status -eq 0 ] && echo "ok: nothing below TLS 1.2 is offered"
exit $status
