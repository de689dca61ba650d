#!/bin/sh
# Installs the DSO bundle this script sits in (dso-<version>-linux, made by `npm run release`):
#   <prefix>/lib/dso                    the bundle (a plain `node` 20.19+ runs it, nothing else)
#   <prefix>/bin/dso, dso-agent         links to its commands
#   <docker plugins dir>/docker-dso     the Docker CLI plugin (`docker dso ...`)
#   <systemd dir>/dso-agent.service     the agent's unit, its ExecStart at <prefix>/bin/dso-agent
# Run it again to upgrade (the previous bundle is replaced); --uninstall removes all of it.
set -eu

prefix=/usr/local
systemd_dir=
plugins_dir=
uninstall=no

usage() {
  cat <<'EOF'
usage: install.sh [--prefix DIR] [--systemd-dir DIR] [--docker-plugins-dir DIR] [--uninstall]
  --prefix DIR              where lib/dso and the bin/ links go (default /usr/local)
  --systemd-dir DIR         where dso-agent.service goes (default <prefix>/lib/systemd/system;
                            "none" installs no unit)
  --docker-plugins-dir DIR  where the docker-dso plugin goes (default <prefix>/lib/docker/cli-plugins;
                            "none" installs no plugin)
  --uninstall               remove what an install with the same options put there
EOF
}

fail() {
  echo "install.sh: $1" >&2
  exit 1
}

while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) [ $# -ge 2 ] || fail "DSO_INSTALL_USAGE: --prefix needs a folder"; prefix=$2; shift 2 ;;
    --systemd-dir) [ $# -ge 2 ] || fail "DSO_INSTALL_USAGE: --systemd-dir needs a folder"; systemd_dir=$2; shift 2 ;;
    --docker-plugins-dir) [ $# -ge 2 ] || fail "DSO_INSTALL_USAGE: --docker-plugins-dir needs a folder"; plugins_dir=$2; shift 2 ;;
    --uninstall) uninstall=yes; shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; fail "DSO_INSTALL_USAGE: unknown argument $1 (see the usage above)" ;;
  esac
done

case "$prefix" in
  /*) ;;
  *) fail "DSO_INSTALL_USAGE: --prefix must be an absolute path, got $prefix" ;;
esac
prefix=${prefix%/}
[ -n "$systemd_dir" ] || systemd_dir=$prefix/lib/systemd/system
[ -n "$plugins_dir" ] || plugins_dir=$prefix/lib/docker/cli-plugins
lib=$prefix/lib/dso

if [ "$uninstall" = yes ]; then
  unit=no
  [ "$systemd_dir" = none ] || [ ! -e "$systemd_dir/dso-agent.service" ] || unit=yes
  rm -f "$prefix/bin/dso" "$prefix/bin/dso-agent"
  [ "$plugins_dir" = none ] || rm -f "$plugins_dir/docker-dso"
  [ "$systemd_dir" = none ] || rm -f "$systemd_dir/dso-agent.service"
  rm -rf "$lib"
  echo "removed DSO from $prefix"
  # State is never removed: the vault, its key and the plugins are in DSO_HOME (the rule of
  # @dso/core's resolveDsoPaths: DSO_HOME, else /var/lib/dso for root, else XDG_DATA_HOME/dso or
  # ~/.local/share/dso); the unit's agent keeps them in /var/lib/dso, its settings in /etc/dso.
  if [ -n "${DSO_HOME:-}" ]; then
    home=$DSO_HOME
  elif [ "$(id -u)" = 0 ]; then
    home=/var/lib/dso
  else
    case "${XDG_DATA_HOME:-}" in
      /*) home=$XDG_DATA_HOME/dso ;;
      *) home=${HOME:-~}/.local/share/dso ;;
    esac
  fi
  state=
  if [ "$unit" = yes ]; then
    state="/var/lib/dso (the unit's DSO_HOME: vault, key, plugins) and /etc/dso (the unit's agent.env)"
  fi
  if [ "$unit" = no ] || [ "$home" != /var/lib/dso ]; then
    state="${state:+$state, and }$home (this user's DSO_HOME, for dso init and a dso-agent run by hand)"
  fi
  echo "left in place: $state; DSO_HOME's contents are not touched: remove them yourself to erase the vault and its key"
  exit 0
fi

here=$(cd "$(dirname "$0")" && pwd -P)
[ -f "$here/VERSION" ] && [ -d "$here/node_modules/@dso/agent" ] ||
  fail "DSO_INSTALL_BUNDLE_INCOMPLETE: $here is not a whole DSO bundle: extract dso-<version>-linux.tar.gz again and run its install.sh"
version=$(cat "$here/VERSION")

command -v node >/dev/null 2>&1 ||
  fail "DSO_INSTALL_NODE_MISSING: DSO runs on Node.js 20.19 or newer, and no node is on PATH: install it (e.g. Debian's nodejs package or nodejs.org), then run install.sh again"
node -e 'const [a, b] = process.versions.node.split(".").map(Number); process.exit(a > 20 || (a === 20 && b >= 19) ? 0 : 1)' ||
  fail "DSO_INSTALL_NODE_TOO_OLD: DSO needs Node.js 20.19 or newer, $(command -v node) is $(node --version): upgrade it, then run install.sh again"

# Copy beside the old bundle, then swap: a failed copy leaves the installed version working.
mkdir -p "$prefix/lib" "$prefix/bin"
rm -rf "$lib.new"
cp -R "$here" "$lib.new"
rm -rf "$lib.old"
[ ! -e "$lib" ] || mv "$lib" "$lib.old"
mv "$lib.new" "$lib"
rm -rf "$lib.old"

ln -sfn "$lib/bin/dso" "$prefix/bin/dso"
ln -sfn "$lib/bin/dso-agent" "$prefix/bin/dso-agent"
echo "installed dso and dso-agent $version in $prefix/bin (the bundle in $lib)"

if [ "$plugins_dir" != none ] && [ -e "$lib/bin/docker-dso" ]; then
  mkdir -p "$plugins_dir"
  ln -sfn "$lib/bin/docker-dso" "$plugins_dir/docker-dso"
  echo "installed the Docker CLI plugin: $plugins_dir/docker-dso (docker dso --help)"
fi

if [ "$systemd_dir" != none ]; then
  mkdir -p "$systemd_dir"
  # The unit names /usr/local/bin/dso-agent and /usr/local/lib/dso; another prefix gets its own.
  sed -e "s|^ExecStart=/usr/local/bin/dso-agent\$|ExecStart=$prefix/bin/dso-agent|" \
    -e "s|^Documentation=file:/usr/local/lib/dso/|Documentation=file:$lib/|" \
    "$lib/node_modules/@dso/agent/systemd/dso-agent.service" >"$systemd_dir/dso-agent.service"
  chmod 0644 "$systemd_dir/dso-agent.service"
  echo "installed the systemd unit: $systemd_dir/dso-agent.service"
  case "$(dirname "$(command -v node)")" in
    /usr/local/sbin | /usr/local/bin | /usr/sbin | /usr/bin | /sbin | /bin) ;;
    *) echo "warning: systemd starts dso-agent with PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin, where $(command -v node) is not: link node into /usr/local/bin, or add Environment=PATH=... with \`systemctl edit dso-agent\`" >&2 ;;
  esac
  echo "start it: systemctl daemon-reload && systemctl enable --now dso-agent"
fi
