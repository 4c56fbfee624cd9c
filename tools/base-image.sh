#!/usr/bin/env bash
# Make sure the systemd-capable Debian 12 base image used by every Molecule
# scenario and by `make lab` exists locally.
#
# Order: an image already present with the current recipe hash -> a normal
# pull of $BASE_IMAGE_PULL (when a registry is reachable) -> a local build with
# debootstrap + docker import. The host's CA bundle is copied into the image so
# that https to package indexes works behind TLS-intercepting proxies.
set -euo pipefail

IMAGE="${BASE_IMAGE:-sipedge/debian12-systemd:latest}"
PULL="${BASE_IMAGE_PULL:-}"
SUITE="${BASE_IMAGE_SUITE:-bookworm}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
HOST_CA="${HOST_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"
PACKAGES="python3,python3-apt,systemd,systemd-sysv,dbus,sudo,ca-certificates,iproute2,procps,iputils-ping,netcat-openbsd,curl,gnupg"

# The recipe hash: a change to this script or the CA bundle rebuilds the image.
recipe=$( { cat "$0"; echo "$SUITE $MIRROR $PACKAGES"; [ -r "$HOST_CA" ] && cat "$HOST_CA"; } | sha256sum | cut -c1-16)

log() { printf '[base-image] %s\n' "$*"; }

current=$(docker image inspect -f '{{ index .Config.Labels "sipedge.recipe" }}' "$IMAGE" 2>/dev/null || true)
if [ "$current" = "$recipe" ]; then
  log "$IMAGE is up to date (recipe $recipe)"
  exit 0
fi

if [ -n "$PULL" ] && timeout 300 docker pull "$PULL" >/dev/null 2>&1; then
  log "pulled $PULL; tagging as $IMAGE"
  docker tag "$PULL" "$IMAGE"
  exit 0
fi
log "no registry image (${PULL:-none configured}); building $IMAGE with debootstrap"

if ! command -v debootstrap >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
  else
    echo "debootstrap is missing: install it (apt-get install debootstrap) and re-run" >&2
    exit 1
  fi
fi

root=$(mktemp -d /var/tmp/sipedge-rootfs.XXXXXX)
trap 'rm -rf "$root"' EXIT
debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$root" "$MIRROR" >"$root.log" 2>&1 || {
  tail -30 "$root.log" >&2; rm -f "$root.log"; exit 1; }
rm -f "$root.log"

if [ -r "$HOST_CA" ]; then
  install -m 0644 "$HOST_CA" "$root/usr/local/share/ca-certificates/host-ca-bundle.crt"
  chroot "$root" update-ca-certificates >/dev/null 2>&1 || true
fi

# Lean, quiet, container-friendly systemd. (docker import cannot set
# STOPSIGNAL: the shared platform definition passes SIGRTMIN+3 instead.)
cat >"$root/etc/apt/apt.conf.d/90sipedge" <<'APT'
APT::Install-Recommends "false";
APT::Install-Suggests "false";
Acquire::Retries "3";
APT
echo "deb $MIRROR $SUITE-updates main" >>"$root/etc/apt/sources.list"
echo "deb http://security.debian.org/debian-security $SUITE-security main" >>"$root/etc/apt/sources.list"
for unit in getty.target systemd-logind.service systemd-remount-fs.service \
            systemd-firstboot.service console-getty.service systemd-udevd.service \
            systemd-udev-trigger.service; do
  ln -sf /dev/null "$root/etc/systemd/system/$unit"
done
: >"$root/etc/machine-id"
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
# An empty, old package cache: `apt: cache_valid_time` must refresh it.
touch -d '2000-01-01' "$root/var/lib/apt/lists"

tar -C "$root" -c . | docker import \
  --change 'ENV container=docker' \
  --change 'CMD ["/lib/systemd/systemd"]' \
  --change "LABEL sipedge.recipe=$recipe" \
  - "$IMAGE" >/dev/null
log "built $IMAGE (recipe $recipe)"
