#!/usr/bin/env bash
# Builds an image with Debian's nginx, with no registry, for the README's worked example of a
# server whose workers run as another user (test-e2e/src/nginx-owner.e2e.test.ts builds it on
# demand; nothing else needs it). Debian's nginx and the libraries it links, fetched with
# `apt-get download` and unpacked with `dpkg-deb -x` onto a root with busybox-static (a shell and
# wget for `docker exec`), /etc/passwd with root and www-data (uid and gid 33, as on Debian), and
# an nginx.conf that serves one location behind `auth_basic` with the password file DSO delivers
# at /run/secrets/htpasswd. Imported with `docker import`; the tag names the package versions,
# so a new nginx from the mirror is a new image. Prints the tag on stdout. Does nothing (but
# print it) when the image already exists, unless --force is given.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
label=$(node -p "require('$here/test-image.json').label")
# What nginx needs to run: itself, its config files, and the libraries `ldd nginx` names.
packages=(nginx nginx-common libc6 libcrypt1 libpcre2-8-0 libssl3 zlib1g)

if ! dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q 'install ok installed'; then
  echo "nginx-image: Debian's busybox-static is not installed: run sudo bash tools/services.sh up" >&2
  exit 1
fi
versions=$(apt-cache policy "${packages[@]}" 2>/dev/null | awk '/^[^ ]/ {p=$1} /Candidate:/ {print p $2}')
if [ -z "$versions" ] || grep -q '(none)' <<<"$versions"; then
  echo "nginx-image: apt knows no candidate for ${packages[*]}: run apt-get update" >&2
  exit 1
fi
digest=$( (
  printf '%s\n' "$versions"
  cat "$0"
) | sha256sum | cut -c1-12)
image="dso-test/nginx:$digest"

if [ "${1:-}" != "--force" ] && docker image inspect "$image" >/dev/null 2>&1; then
  echo "$image"
  exit 0
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
rootfs="$work/rootfs"
mkdir -p "$work/debs" "$rootfs"/{bin,etc,tmp,run,root,proc,sys,dev,var/lib/nginx,var/log/nginx}
chmod 1777 "$rootfs/tmp"
(cd "$work/debs" && apt-get download "${packages[@]}" >/dev/null 2>"$work/apt.log") || {
  cat "$work/apt.log" >&2
  echo "nginx-image: apt-get download failed (is the Debian mirror reachable?)" >&2
  exit 1
}
for deb in "$work"/debs/*.deb; do dpkg-deb -x "$deb" "$rootfs"; done
# Debian's usrmerge layout: /lib and /lib64 are links into /usr (the loader is /lib64/...).
for dir in lib lib64; do
  if [ -d "$rootfs/$dir" ] && [ ! -L "$rootfs/$dir" ]; then
    mkdir -p "$rootfs/usr/$dir"
    cp -a "$rootfs/$dir/." "$rootfs/usr/$dir/"
    rm -rf "${rootfs:?}/$dir"
  fi
  [ -e "$rootfs/usr/$dir" ] && ln -s "usr/$dir" "$rootfs/$dir"
done
cp /bin/busybox "$rootfs/bin/busybox"
for applet in $(/bin/busybox --list); do
  [ -e "$rootfs/bin/$applet" ] || ln -s busybox "$rootfs/bin/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\nwww-data:x:33:33:www-data:/var/www:/bin/false\n' >"$rootfs/etc/passwd"
printf 'root:x:0:\nwww-data:x:33:\n' >"$rootfs/etc/group"
# One location behind basic auth whose password file DSO delivers; everything nginx writes is
# in /run and /tmp (tmpfs mounts when the container runs --read-only).
cat >"$rootfs/etc/nginx/nginx.conf" <<'EOF'
user www-data;
worker_processes 1;
pid /run/nginx.pid;
error_log stderr;
events {}
http {
  access_log off;
  client_body_temp_path /tmp/body;
  proxy_temp_path /tmp/proxy;
  fastcgi_temp_path /tmp/fastcgi;
  uwsgi_temp_path /tmp/uwsgi;
  scgi_temp_path /tmp/scgi;
  server {
    listen 127.0.0.1:8080;
    location / {
      auth_basic "dso";
      auth_basic_user_file /run/secrets/htpasswd;
      root /var/www;
    }
  }
}
EOF
mkdir -p "$rootfs/var/www"
printf 'welcome\n' >"$rootfs/var/www/index.html"

tar --numeric-owner -C "$rootfs" -c . |
  docker import --change "LABEL $label=image" \
    --change 'CMD ["nginx", "-e", "stderr", "-g", "daemon off;"]' - "$image" >/dev/null
echo "nginx-image: built $image" >&2
echo "$image"
