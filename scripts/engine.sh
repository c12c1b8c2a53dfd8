#!/usr/bin/env bash
# A private Docker engine for the container drills, on a machine without one.
#
#   scripts/engine.sh run CMD ARGS...   start the engine, run CMD with it, stop it
#   scripts/engine.sh start             start it and print the variables to export
#   scripts/engine.sh stop              stop it and clean up
#
# What it does (measured recipe: a Debian machine, root, no registry needed):
# installs Debian's `docker.io` and `debootstrap` when missing; starts its own
# `dockerd` with its own socket, data and exec roots, no default bridge, no
# iptables (it never touches a Docker install of the machine); builds the
# drill images from the machine's Debian packages once (PostgreSQL 15, Redis
# 7 and its Sentinel) and keeps their root file system in $FAILOVER_IMAGE_CACHE
# (default /var/cache/failover-pool) so later runs only import it. Containers
# then run on the host network with ports chosen by the tests
# (FAILOVER_DRILL_NETWORK=host); see the `drill::containers` docs.
#
# `run` stops the daemon and removes its state whatever CMD does, and returns
# CMD's exit status. Needs root (or sudo) for the install and the daemon.
set -euo pipefail

ENGINE_DIR=${FAILOVER_ENGINE_DIR:-/tmp/failover-pool-engine}
CACHE_DIR=${FAILOVER_IMAGE_CACHE:-/var/cache/failover-pool}
SUITE=${FAILOVER_IMAGE_SUITE:-bookworm}
PG_IMAGE=failover-pool/postgres:15
REDIS_IMAGE=failover-pool/redis:7
# Bump the suffix when build_rootfs changes, so caches are rebuilt.
ROOTFS_TAR="$CACHE_DIR/drill-rootfs-$SUITE-v2.tar"
SOCK="$ENGINE_DIR/docker.sock"
# Debian's client, API 1.41 like its daemon (another client on PATH may be newer).
DOCKER=/usr/bin/docker
[ -x "$DOCKER" ] || DOCKER=docker

say() { printf 'engine: %s\n' "$*" >&2; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

dk() { as_root "$DOCKER" -H "unix://$SOCK" "$@"; }

install() {
  local missing=()
  command -v dockerd >/dev/null || missing+=(docker.io)
  command -v debootstrap >/dev/null || missing+=(debootstrap)
  if ((${#missing[@]})); then
    say "installing ${missing[*]}"
    as_root apt-get update -qq
    # policy-rc.d on these machines keeps the package's own daemon from
    # starting; it would try to create a bridge.
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

start_daemon() {
  if [ -S "$SOCK" ] && dk version >/dev/null 2>&1; then
    say "daemon already running at $SOCK"
    return
  fi
  as_root mkdir -p "$ENGINE_DIR"
  say "starting dockerd at $SOCK"
  as_root sh -c "nohup dockerd --bridge=none --iptables=false --ip6tables=false \
    --ip-forward=false --ip-masq=false --userland-proxy=true \
    --storage-driver=overlay2 -H unix://$SOCK --data-root $ENGINE_DIR/data \
    --exec-root $ENGINE_DIR/exec --pidfile $ENGINE_DIR/dockerd.pid \
    >$ENGINE_DIR/dockerd.log 2>&1 &"
  for _ in $(seq 1 100); do
    dk version >/dev/null 2>&1 && return
    sleep 0.1
  done
  say "dockerd did not answer within 10 s; its log ends with:"
  tail -20 "$ENGINE_DIR/dockerd.log" >&2
  exit 1
}

build_rootfs() {
  local root="$ENGINE_DIR/rootfs"
  say "building the drill root file system from Debian $SUITE packages (once; cached in $CACHE_DIR)"
  as_root rm -rf "$root"
  as_root mkdir -p "$root" "$CACHE_DIR"
  as_root debootstrap --variant=minbase \
    --include=postgresql-15,redis-server,redis-sentinel "$SUITE" "$root" >"$ENGINE_DIR/debootstrap.log" 2>&1 || {
    say "debootstrap failed; its log ends with:"
    tail -20 "$ENGINE_DIR/debootstrap.log" >&2
    exit 1
  }
  # The image runs its servers itself: no cluster from the package, no
  # services, nothing in the apt caches.
  as_root chroot "$root" sh -c 'pg_dropcluster 15 main 2>/dev/null || true; apt-get clean; rm -rf /var/lib/apt/lists/*'
  # An initialised data directory to copy: a container's PostgreSQL is then
  # ready in well under a second instead of running initdb each time (the
  # same thing LocalPgCluster does with its template).
  as_root chroot "$root" su postgres -s /bin/sh -c \
    '/usr/lib/postgresql/15/bin/initdb -D /var/lib/postgresql/drill-template -U postgres --auth=trust -E UTF8 --no-sync >/dev/null'
  as_root tar -C "$root" -cf "$ROOTFS_TAR.tmp" .
  as_root mv "$ROOTFS_TAR.tmp" "$ROOTFS_TAR"
  as_root rm -rf "$root"
}

import_images() {
  if dk image inspect "$PG_IMAGE" >/dev/null 2>&1 && dk image inspect "$REDIS_IMAGE" >/dev/null 2>&1; then
    return
  fi
  [ -s "$ROOTFS_TAR" ] || build_rootfs
  say "importing $PG_IMAGE and $REDIS_IMAGE"
  dk import \
    --change 'ENV PATH=/usr/lib/postgresql/15/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'USER postgres' \
    --change 'CMD ["postgres", "--version"]' \
    "$ROOTFS_TAR" "$PG_IMAGE" >/dev/null
  dk import \
    --change 'USER redis' \
    --change 'CMD ["redis-server", "--version"]' \
    "$ROOTFS_TAR" "$REDIS_IMAGE" >/dev/null
}

stop() {
  if [ -S "$SOCK" ]; then
    # Containers a crashed test left behind.
    local left
    left=$(dk ps -aq 2>/dev/null || true)
    [ -z "$left" ] || dk rm -f -v $left >/dev/null 2>&1 || true
  fi
  [ -S "$SOCK" ] && dk network prune -f >/dev/null 2>&1 || true
  if [ -f "$ENGINE_DIR/dockerd.pid" ]; then
    local pid
    pid=$(cat "$ENGINE_DIR/dockerd.pid")
    as_root kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do
      as_root kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    as_root kill -9 "$pid" 2>/dev/null || true
  fi
  # The daemon's mounts (network namespace, overlay layers) outlive it.
  if [ -d "$ENGINE_DIR" ]; then
    grep -o " $ENGINE_DIR[^ ]*" /proc/mounts | sort -r | while read -r m; do
      as_root umount -l "$m" 2>/dev/null || true
    done
    as_root rm -rf "$ENGINE_DIR"
  fi
}

exports() {
  echo "export DOCKER_HOST=unix://$SOCK"
  echo "export FAILOVER_DRILL_NETWORK=host"
  echo "export FAILOVER_DRILL_PG_IMAGE=$PG_IMAGE"
  echo "export FAILOVER_DRILL_REDIS_IMAGE=$REDIS_IMAGE"
}

case "${1:-}" in
  start)
    install
    start_daemon
    import_images
    exports
    ;;
  stop)
    stop
    ;;
  run)
    shift
    [ $# -gt 0 ] || { echo "usage: $0 run CMD [ARGS...]" >&2; exit 2; }
    install
    trap stop EXIT
    start_daemon
    import_images
    eval "$(exports)"
    say "engine ready ($(dk version --format '{{.Server.Version}}'), images $PG_IMAGE $REDIS_IMAGE)"
    status=0
    "$@" || status=$?
    exit "$status"
    ;;
  *)
    echo "usage: $0 run CMD [ARGS...] | start | stop" >&2
    exit 2
    ;;
esac
