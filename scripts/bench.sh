#!/usr/bin/env bash
# `make bench`: services, wrk, then the benchmark example (release build).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/services.sh
if ! command -v wrk >/dev/null 2>&1; then
  if [ "$(id -u)" -eq 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
  else sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; fi
fi
# The HTTP section with one worker per server first (the server alone on a
# core), then everything with the production default (one worker per core).
BENCH_ONLY=http BENCH_WORKERS=1 cargo run --release --example bench
cargo run --release --example bench
cargo run --release --example bench_currency
