#!/usr/bin/env bash
# Checks docker-compose.yml and the examples that use it.
#
#   scripts/compose-check.sh         validate the file; when a Docker engine
#                                    answers, also run the stack and examples
#   scripts/compose-check.sh --run   the same, but an engine is required
#
# Validation uses Debian's docker-compose 1.29 (installed when missing), the
# oldest compose the file supports. The run brings the stack up under its own
# project name, waits for every health check, runs examples/compose_pg.rs and
# examples/compose_redis.rs against it, and always takes the stack down
# (`down -v`). Images: FAILOVER_PG_IMAGE / FAILOVER_REDIS_IMAGE when set, else
# FAILOVER_DRILL_PG_IMAGE / FAILOVER_DRILL_REDIS_IMAGE (set by
# `scripts/engine.sh run`), else the locally built failover-pool/* images
# when the engine has them, else the file's defaults (official images).
#
# With the private engine of this project:
#   scripts/engine.sh run scripts/compose-check.sh --run
set -euo pipefail
cd "$(dirname "$0")/.."

RUN=auto
case "${1:-}" in
  "") ;;
  --run) RUN=yes ;;
  *) echo "usage: $0 [--run]" >&2; exit 2 ;;
esac

PROJECT=${COMPOSE_CHECK_PROJECT:-failover-pool-compose-check}
HEALTH_TIMEOUT=${COMPOSE_CHECK_HEALTH_TIMEOUT:-120}
# Debian's client speaks the daemon's API (1.41); a newer one on PATH may not.
DOCKER=/usr/bin/docker
[ -x "$DOCKER" ] || DOCKER=docker

say() { printf '==> %s\n' "$*"; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f s", b - a }'; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

# --- (a) validate -----------------------------------------------------------
t=$(now)
if ! command -v docker-compose >/dev/null; then
  say "installing Debian's docker-compose"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends docker-compose >/dev/null
fi
say "validating docker-compose.yml with $(docker-compose version --short)"
docker-compose -f docker-compose.yml config -q
say "valid ($(since "$t"))"

# --- (b) run ----------------------------------------------------------------
if ! "$DOCKER" version >/dev/null 2>&1; then
  if [ "$RUN" = yes ]; then
    echo "compose-check: no Docker engine answers (DOCKER_HOST=${DOCKER_HOST:-unset})" >&2
    exit 1
  fi
  say "no Docker engine answers: not running the stack (--run requires it)"
  exit 0
fi

have_image() { "$DOCKER" image inspect "$1" >/dev/null 2>&1; }
pick_image() { # explicit, drill, local image, compose default
  if [ -n "$1" ]; then echo "$1"
  elif [ -n "$2" ]; then echo "$2"
  elif have_image "$3"; then echo "$3"
  else echo "$4"
  fi
}
FAILOVER_PG_IMAGE=$(pick_image "${FAILOVER_PG_IMAGE:-}" "${FAILOVER_DRILL_PG_IMAGE:-}" failover-pool/postgres:15 postgres:17)
FAILOVER_REDIS_IMAGE=$(pick_image "${FAILOVER_REDIS_IMAGE:-}" "${FAILOVER_DRILL_REDIS_IMAGE:-}" failover-pool/redis:7 redis:7)
export FAILOVER_PG_IMAGE FAILOVER_REDIS_IMAGE
compose() { docker-compose -f docker-compose.yml -p "$PROJECT" "$@"; }

# The Redis services use the host network on fixed ports; fail clearly when
# something (another copy of the stack?) already listens there.
for port in 5433 5434 6380 6381 26380 26381 26382; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "compose-check: 127.0.0.1:$port is in use (a stack already up? \`docker compose down\`)" >&2
    exit 1
  fi
done

t=$(now)
say "building the examples"
# CARGO_FEATURES: CI passes --all-features to reuse the test build.
read -r -a features <<<"${CARGO_FEATURES:---features sqlx,redis}"
cargo build --quiet "${features[@]}" --example compose_pg --example compose_redis
say "built ($(since "$t"))"

down() {
  local status=$? t
  t=$(now)
  if [ "$status" -ne 0 ]; then
    echo "compose-check: failed (exit $status); the stack's last log lines:" >&2
    compose logs --no-color --tail=30 >&2 || true
  fi
  say "taking the stack down"
  compose down -v --remove-orphans --timeout 10 || status=1
  say "down ($(since "$t"))"
  exit "$status"
}
trap down EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

t=$(now)
say "starting the stack ($PROJECT: $FAILOVER_PG_IMAGE, $FAILOVER_REDIS_IMAGE)"
compose up -d
say "started ($(since "$t"))"

# docker-compose 1.29 has no `up --wait`: poll every container's health
# (one `docker inspect` per round; docker-compose itself is slow to start).
t=$(now)
expected=$(compose config --services | wc -l)
mapfile -t ids < <(compose ps -q)
if [ "${#ids[@]}" -ne "$expected" ]; then
  echo "compose-check: ${#ids[@]} containers for $expected services" >&2
  exit 1
fi
while :; do
  pending=()
  states=$("$DOCKER" inspect -f '{{.Name}} {{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}' "${ids[@]}")
  while read -r name status health; do
    case "$status $health" in
      "running healthy") ;;
      "running starting") pending+=("${name#/}") ;;
      *) echo "compose-check: ${name#/} is $status (health: $health)" >&2; exit 1 ;;
    esac
  done <<<"$states"
  [ ${#pending[@]} -eq 0 ] && break
  if awk -v a="$t" -v b="$(now)" -v m="$HEALTH_TIMEOUT" 'BEGIN { exit !(b - a > m) }'; then
    echo "compose-check: not healthy after ${HEALTH_TIMEOUT} s: ${pending[*]}" >&2
    exit 1
  fi
  sleep 0.5
done
say "all $expected services healthy ($(since "$t"))"

t=$(now)
say "cargo run ${features[*]} --example compose_pg"
cargo run --quiet "${features[@]}" --example compose_pg
say "compose_pg passed ($(since "$t"))"

t=$(now)
say "cargo run ${features[*]} --example compose_redis"
cargo run --quiet "${features[@]}" --example compose_redis
say "compose_redis passed ($(since "$t"))"
