#!/usr/bin/env bash
# Installs the Debian 12 packages that distcache needs and that are missing.
# Usage: scripts/deps.sh [build|test|demo|bench|package]   (default: build)
# package: what dpkg-buildpackage needs for debian/ (and lintian, groff for
# the man pages); test includes it (suite package builds the packages), and
# prometheus for promtool (the -metrics tests); bench has gnuplot for -plot.
# Runs `apt-get update` once, and only when something must be installed.
set -euo pipefail

want=(g++ meson ninja-build pkg-config libssl-dev libev-dev libcmocka-dev libhiredis-dev)
case "${1:-build}" in
  build) ;;
  demo) want+=(openssl nginx) ;;
  test) want+=(openssl nginx libnginx-mod-stream redis-server redis-tools haproxy apache2 stunnel4 python3 curl clang libclang-rt-14-dev iproute2 procps
               debhelper dpkg-dev build-essential lintian groff-base systemd prometheus) ;;
  bench) want+=(openssl nginx redis-server redis-tools procps gnuplot-nox) ;;
  package) want+=(debhelper dpkg-dev build-essential lintian groff-base systemd) ;;
  *) echo "deps.sh: unknown set '$1' (use build, test, demo, bench or package)" >&2; exit 2 ;;
esac

missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "deps.sh: missing packages: ${missing[*]}; run as root or install them with apt-get" >&2
  exit 1
fi
echo "deps.sh: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends "${missing[@]}"
