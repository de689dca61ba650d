#!/usr/bin/env bash
# Makes sure the real services DSO's tests need are installed and running, and stops the ones
# it started. Safe to run again: it does nothing when everything already answers.
#
#   bash tools/services.sh up     install what is missing (needs root), start what is down
#   bash tools/services.sh stop   stop only what an earlier `up` started
#   bash tools/services.sh check  exit 0 when the engines and Redis answer, else say what is missing
#
# The engine is Debian's docker.io started without a bridge, so containers get loopback only;
# nothing here ever sends traffic beyond 127.0.0.1. Podman (Debian's podman) runs as a rootful
# Docker-compatible API service on a socket of its own ($PODMAN_SOCK), with a private
# containers.conf written under $STATE_DIR/podman: no default ulimits (this kind of machine refuses
# them), cgroupfs, events to a file, and no bridge possible (an empty CNI plugin folder: a
# container that asks for a network other than `none` fails instead of making one). Daemons log to files under $STATE_DIR and
# are detached from this script's stdout/stderr, so a CI pipe is never held open by them.
set -euo pipefail

STATE_DIR="${DSO_SERVICES_DIR:-/tmp/dso-services}"
REDIS_PORT="${DSO_TEST_REDIS_PORT:-6379}"
DOCKER_SOCK="${DOCKER_SOCK:-/var/run/docker.sock}"
PODMAN_SOCK="${DSO_PODMAN_SOCK:-/run/dso-podman/podman.sock}"
PODMAN_DIR="$STATE_DIR/podman"
WAIT_S="${DSO_SERVICES_WAIT_S:-60}"

log() { printf 'services: %s\n' "$*" >&2; }
die() { printf 'services: error: %s\n' "$*" >&2; exit 1; }

engine_answers() { timeout 5 docker version --format '{{.Server.Version}}' >/dev/null 2>&1; }
podman_answers() { timeout 5 curl -sf --unix-socket "$PODMAN_SOCK" http://podman/_ping >/dev/null 2>&1; }
redis_answers() { timeout 3 redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null | grep -q PONG; }
compose_available() { docker compose version >/dev/null 2>&1 || command -v docker-compose >/dev/null 2>&1; }
busybox_static_present() { dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q 'install ok installed'; }

install_missing() {
  local missing=()
  command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
  command -v docker >/dev/null 2>&1 || missing+=(docker.io)
  command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
  compose_available || missing+=(docker-compose)
  busybox_static_present || missing+=(busybox-static)
  # Podman is the second engine the runtime's integration tests and an end-to-end subset run on.
  command -v podman >/dev/null 2>&1 || missing+=(podman)
  command -v curl >/dev/null 2>&1 || missing+=(curl)
  # The TLS tests make a throwaway CA and certificates with the openssl CLI.
  command -v openssl >/dev/null 2>&1 || missing+=(openssl)
  # The volume driver's end-to-end test builds a static, shell-less application with gcc.
  command -v gcc >/dev/null 2>&1 || missing+=(gcc)
  [ -e /usr/lib/x86_64-linux-gnu/libc.a ] || [ -e /usr/lib/aarch64-linux-gnu/libc.a ] || missing+=(libc6-dev)
  # The Swarm end-to-end test's engine runs in a network namespace of its own, loopback brought
  # up with ip.
  command -v ip >/dev/null 2>&1 || missing+=(iproute2)
  # The terminal end-to-end test reads the agent's screen in a tmux pane.
  command -v tmux >/dev/null 2>&1 || missing+=(tmux)
  # The install end-to-end test proves the installed commands never open a file of the clone
  # (strace -f) and checks the installed systemd unit (systemd-analyze verify; systemd is not
  # started, only its analyzer runs).
  command -v strace >/dev/null 2>&1 || missing+=(strace)
  command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)
  # The provider in examples/provider-python runs with the standard library only.
  command -v python3 >/dev/null 2>&1 || missing+=(python3)
  [ "${#missing[@]}" -eq 0 ] && return 0
  # De-duplicate (docker.io can be listed twice).
  mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
  if [ "$(id -u)" -ne 0 ]; then
    die "missing Debian packages: ${missing[*]}. Install them as root: sudo apt-get install -y ${missing[*]} (or run: sudo bash tools/services.sh up)"
  fi
  log "installing ${missing[*]} (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  # Keep the packages' own services from starting on install (policy-rc.d exit 101 = "not
  # allowed"): Debian's docker.service would start dockerd with a bridge and iptables rules,
  # which this project never runs, and redis-server's unit would persist to disk.
  local policy=/usr/sbin/policy-rc.d own_policy=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && own_policy=1
  fi
  local status=0
  { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}"; } \
    >"$STATE_DIR/apt.log" 2>&1 || status=$?
  [ "$own_policy" -eq 1 ] && rm -f "$policy"
  [ "$status" -eq 0 ] || die "apt-get install ${missing[*]} failed: see $STATE_DIR/apt.log"
}

# Starts a command fully detached: new session, stdin from /dev/null, output to a log file.
spawn() {
  local name=$1; shift
  setsid "$@" </dev/null >>"$STATE_DIR/$name.log" 2>&1 &
  echo $! >"$STATE_DIR/$name.pid"
}

wait_for() {
  local what=$1 check=$2 logfile=$3 deadline=$((SECONDS + WAIT_S))
  until "$check"; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      tail -n 20 "$logfile" >&2 || true
      die "$what did not answer within ${WAIT_S}s: see $logfile"
    fi
    sleep 0.5
  done
}

start_engine() {
  if engine_answers; then
    # An engine we did not start may have the default bridge. Tests never use it (every test
    # container runs with --network none), but say so rather than hide it.
    if timeout 10 docker network inspect bridge >/dev/null 2>&1; then
      log "warning: the running engine has a bridge network; DSO's tests use --network none only"
    fi
    return 0
  fi
  [ "$(id -u)" -eq 0 ] || die "no Docker engine answers at $DOCKER_SOCK and starting one needs root: sudo bash tools/services.sh up"
  # A dockerd from an earlier run may hold the pid file while shutting down; let it finish.
  if [ -f /var/run/docker.pid ] && kill -0 "$(cat /var/run/docker.pid)" 2>/dev/null; then
    log "waiting for the dockerd already running to answer"
  else
    log "starting dockerd (no bridge, no iptables), log: $STATE_DIR/dockerd.log"
    spawn dockerd dockerd --bridge=none --iptables=false --ip-masq=false --ip-forward=false \
      --host="unix://$DOCKER_SOCK"
  fi
  wait_for "the Docker engine" engine_answers "$STATE_DIR/dockerd.log"
  log "engine answers: $(timeout 10 docker version --format 'Docker {{.Server.Version}}, API {{.Server.APIVersion}}')"
}

# The private containers.conf (CONTAINERS_CONF) of the Podman service; tests that start a Podman
# of their own write theirs the same way (packages/docker-runtime/src/test-support).
write_podman_conf() {
  mkdir -p "$PODMAN_DIR/cni-conf" "$PODMAN_DIR/no-cni-plugins" "$(dirname "$PODMAN_SOCK")"
  cat >"$PODMAN_DIR/containers.conf" <<EOF_CONF
[containers]
default_ulimits = []
netns = "none"

[network]
network_backend = "cni"
network_config_dir = "$PODMAN_DIR/cni-conf"
cni_plugin_dirs = ["$PODMAN_DIR/no-cni-plugins"]

[engine]
events_logger = "file"
cgroup_manager = "cgroupfs"
EOF_CONF
}

start_podman() {
  if podman_answers; then return 0; fi
  [ "$(id -u)" -eq 0 ] || die "no Podman API service answers at $PODMAN_SOCK and starting one needs root: sudo bash tools/services.sh up"
  write_podman_conf
  rm -f "$PODMAN_SOCK"
  log "starting podman system service at unix://$PODMAN_SOCK (CONTAINERS_CONF=$PODMAN_DIR/containers.conf), log: $STATE_DIR/podman.log"
  CONTAINERS_CONF="$PODMAN_DIR/containers.conf" spawn podman podman system service --time=0 "unix://$PODMAN_SOCK"
  wait_for "the Podman API service" podman_answers "$STATE_DIR/podman.log"
  log "podman answers: $(podman --version)"
}

start_redis() {
  if redis_answers; then return 0; fi
  log "starting redis-server on 127.0.0.1:$REDIS_PORT (no persistence), log: $STATE_DIR/redis.log"
  # --save '' and --appendonly no: nothing a test stores in Redis reaches disk.
  spawn redis redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save '' --appendonly no \
    --protected-mode yes --daemonize no
  wait_for "Redis" redis_answers "$STATE_DIR/redis.log"
}

stop_started() {
  local name pid
  for name in redis podman dockerd; do
    [ -f "$STATE_DIR/$name.pid" ] || continue
    pid=$(cat "$STATE_DIR/$name.pid")
    rm -f "$STATE_DIR/$name.pid"
    kill -0 "$pid" 2>/dev/null || continue
    log "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
  done
}

check() {
  local ok=0
  engine_answers || { log "no Docker engine answers at $DOCKER_SOCK (fix: sudo bash tools/services.sh up)"; ok=1; }
  podman_answers || { log "no Podman API service answers at $PODMAN_SOCK (fix: sudo bash tools/services.sh up)"; ok=1; }
  redis_answers || { log "no Redis answers at 127.0.0.1:$REDIS_PORT (fix: sudo bash tools/services.sh up)"; ok=1; }
  return "$ok"
}

mkdir -p "$STATE_DIR"
case "${1:-up}" in
  up) install_missing; start_engine; start_podman; start_redis ;;
  stop) stop_started ;;
  check) check ;;
  *) die "usage: bash tools/services.sh up|stop|check" ;;
esac
