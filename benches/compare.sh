#!/usr/bin/env bash
# poolrelay against Postfix on this machine: installs Postfix if missing, builds poolrelay, and
# runs benches/compare.py (same pools, same load, same sink, alternating runs, ratio per pair).
# Needs root (Postfix is configured system-wide; /etc/postfix is restored afterwards).
# Usage: benches/compare.sh [--pairs N] [--scale F] [--tools both|poolrelay|postfix] [--only NAME[|NAME...]] [--sink-count-only] [--markdown FILE]
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v postfix >/dev/null || ! command -v smtp-sink >/dev/null; then
  echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postfix >/dev/null
fi
# The DKIM scenarios sign through OpenDKIM on Postfix's side.
if ! command -v opendkim >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq opendkim >/dev/null
fi
if command -v systemctl >/dev/null; then systemctl stop opendkim 2>/dev/null || true; fi
# The package may have started its own instance: the benchmark starts and stops its own.
if [ -f /var/spool/postfix/pid/master.pid ]; then postfix stop 2>/dev/null || true; fi
cargo build --release --quiet
exec python3 benches/compare.py "$@"
