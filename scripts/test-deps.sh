#!/usr/bin/env bash
# Test-only peers: the Standard Webhooks reference library (PyPI), which the
# webhook tests use to verify our signatures independently of our own code.
# Pinned: a new release must not change what CI checks without a commit.
set -euo pipefail
if ! python3 -c 'import standardwebhooks' 2>/dev/null; then
  if ! python3 -m pip --version >/dev/null 2>&1; then
    if [ "$(id -u)" -eq 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-pip >/dev/null
    else sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-pip >/dev/null; fi
  fi
  python3 -m pip install -q --disable-pip-version-check "standardwebhooks==1.3.0" 2>/dev/null \
    || python3 -m pip install -q --disable-pip-version-check --break-system-packages "standardwebhooks==1.3.0"
fi
