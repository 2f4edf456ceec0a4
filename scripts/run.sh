#!/usr/bin/env bash
# `make run`: services, build, migrate, bootstrap a demo org on an empty
# database (printing its admin credentials), then serve.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/services.sh
cargo build ${CARGO_PROFILE:+--profile "$CARGO_PROFILE"}
bin=target/${CARGO_PROFILE:-debug}/dumont
[ "${CARGO_PROFILE:-}" = "dev" ] && bin=target/debug/dumont
"$bin" migrate
password=$(head -c 18 /dev/urandom | base64 | tr -d '/+=' )
creds=$(DUMONT_BOOTSTRAP_PASSWORD="$password" "$bin" bootstrap --org demo --email admin@demo.local --only-if-empty)
if [ -n "$creds" ]; then
  echo "Demo organization created. Admin credentials (shown once):"
  echo "  email:    admin@demo.local"
  echo "  password: $password"
  echo "  $creds"
  echo "Try: curl -H \"Authorization: Bearer <api_key>\" http://127.0.0.1:8080/api/v1/users/me"
fi
exec "$bin" serve "$@"
