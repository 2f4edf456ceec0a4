#!/usr/bin/env bash
# Makes sure PostgreSQL and Redis are installed (Debian packages) and running
# on 127.0.0.1:5432 and :6379. Idempotent: does nothing when both answer.
set -euo pipefail

log() { printf '[services] %s\n' "$*" >&2; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

pg_up() { pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; }
redis_up() { redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -q PONG; }

missing=()
command -v pg_ctlcluster >/dev/null 2>&1 || missing+=(postgresql)
command -v pg_isready >/dev/null 2>&1 || missing+=(postgresql-client)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v redis-cli >/dev/null 2>&1 || missing+=(redis-tools)
installed_pg=0
if [ ${#missing[@]} -gt 0 ]; then
  log "installing ${missing[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  [[ " ${missing[*]} " == *" postgresql "* ]] && installed_pg=1
fi

if ! pg_up; then
  version=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1 || true)
  if [ -z "$version" ]; then
    version=$(ls /usr/lib/postgresql | sort -V | tail -n 1)
    log "creating PostgreSQL $version cluster"
    as_root pg_createcluster "$version" main >/dev/null
    installed_pg=1
  fi
  if [ "$installed_pg" -eq 1 ]; then
    # A cluster we just made: let local TCP clients in as the servers of
    # this kind of machine do (trust on loopback only).
    hba=/etc/postgresql/$version/main/pg_hba.conf
    if ! grep -q 'dumont: trust loopback' "$hba"; then
      as_root sed -i '1i # dumont: trust loopback\nhost all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$hba"
    fi
  fi
  log "starting PostgreSQL $version"
  as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  for _ in $(seq 1 30); do pg_up && break; sleep 1; done
  pg_up || { log "PostgreSQL did not start"; exit 1; }
fi

if ! redis_up; then
  log "starting Redis"
  mkdir -p /tmp/dumont-redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /tmp/dumont-redis --logfile /tmp/dumont-redis/redis.log
  for _ in $(seq 1 20); do redis_up && break; sleep 0.5; done
  redis_up || { log "Redis did not start"; exit 1; }
fi
log "PostgreSQL and Redis are up"
