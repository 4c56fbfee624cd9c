#!/usr/bin/env bash
# Make sure a Docker engine answers. Where none does and we are root on
# Debian/Ubuntu, install the distro's docker.io and start dockerd in the
# background (hosts without systemd, such as CI sandboxes). Safe to re-run.
set -euo pipefail
log() { printf '[docker] %s\n' "$*"; }

if docker info >/dev/null 2>&1; then
  log "engine answers ($(docker version -f '{{.Server.Version}}' 2>/dev/null))"
  exit 0
fi

if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  cat >&2 <<'MSG'
[docker] No Docker engine answers and this script can only install one as root
on Debian/Ubuntu. Install Docker (the docker.io package or Docker CE), start it,
make sure `docker info` works for this user (e.g. membership of the docker
group), then re-run.
MSG
  exit 1
fi

if ! command -v dockerd >/dev/null 2>&1; then
  log "installing docker.io from the distribution"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io >/dev/null
fi

if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
  log "starting docker.service"
  systemctl start docker
else
  log "no systemd: starting dockerd in the background (log: /var/log/dockerd.log)"
  setsid nohup dockerd >/var/log/dockerd.log 2>&1 </dev/null &
fi

for _ in $(seq 1 60); do
  if docker info >/dev/null 2>&1; then
    log "engine answers ($(docker version -f '{{.Server.Version}}' 2>/dev/null))"
    exit 0
  fi
  sleep 1
done
echo "[docker] dockerd did not come up within 60 s; see /var/log/dockerd.log" >&2
tail -20 /var/log/dockerd.log >&2 || true
exit 1
