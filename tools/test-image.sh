#!/usr/bin/env bash
# Builds the image every engine test runs, with no registry: a root filesystem holding
# Debian's busybox-static (/bin/busybox and its applets as symlinks), a root user and an
# unprivileged `app` user (uid/gid 1000), imported with `docker import`.
# The tag lives in tools/test-image.json, which the tests read too. Does nothing when the
# image already exists, unless --force is given. When the Podman API service of
# tools/services.sh answers ($DSO_PODMAN_SOCK), the same image is loaded into it too
# (`docker save | docker load`, so both engines run the very same layer).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
image=$(node -p "require('$here/test-image.json').image")
label=$(node -p "require('$here/test-image.json').label")

podman_sock="${DSO_PODMAN_SOCK:-/run/dso-podman/podman.sock}"
on_podman() { DOCKER_HOST="unix://$podman_sock" "$@"; }
load_into_podman() {
  [ -S "$podman_sock" ] || return 0
  if [ "${1:-}" != "--force" ] && on_podman docker image inspect "$image" >/dev/null 2>&1; then
    return 0
  fi
  DOCKER_HOST= docker save "$image" | on_podman docker load >/dev/null
  echo "test-image: loaded $image into Podman at unix://$podman_sock" >&2
}

if [ "${1:-}" != "--force" ] && DOCKER_HOST= docker image inspect "$image" >/dev/null 2>&1; then
  load_into_podman
  exit 0
fi

busybox=/bin/busybox
if ! dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q 'install ok installed'; then
  echo "test-image: Debian's busybox-static is not installed: run sudo bash tools/services.sh up" >&2
  exit 1
fi

rootfs=$(mktemp -d)
trap 'rm -rf "$rootfs"' EXIT
mkdir -p "$rootfs"/{bin,sbin,usr/bin,usr/sbin,etc,tmp,run,root,home/app,proc,sys,dev}
chmod 1777 "$rootfs/tmp"
cp "$busybox" "$rootfs/bin/busybox"
# Every applet as a relative symlink, so the image needs nothing but /bin/busybox.
for applet in $("$busybox" --list); do
  [ -e "$rootfs/bin/$applet" ] || ln -s busybox "$rootfs/bin/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n' >"$rootfs/etc/passwd"
printf 'root:x:0:\napp:x:1000:\n' >"$rootfs/etc/group"
chown 1000:1000 "$rootfs/home/app"

tar --numeric-owner -C "$rootfs" -c . \
  | DOCKER_HOST= docker import --change "LABEL $label=image" --change 'CMD ["sh"]' - "$image" >/dev/null
echo "test-image: built $image" >&2
load_into_podman --force
