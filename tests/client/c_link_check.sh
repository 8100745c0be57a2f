#!/bin/sh
# A C program written for 1.x builds with nothing but pkg-config's answers,
# against the static libdistcache alone (no libdistcache.so needed at run
# time), and against the shared one; both then run against dc_server.
#
# Usage: c_link_check.sh BUILD_ROOT SOURCE_ROOT [WITH_SERVER]
# Uses the uninstalled distcache.pc that meson writes into the build tree.
set -eu
build=$1
src=$2
with_server=${3:-}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

export PKG_CONFIG_PATH="$build/meson-uninstalled"
cflags=$(pkg-config --cflags distcache)
# Only libdistcache.a in the first -L directory: -ldistcache is the static one.
mkdir "$tmp/static"
cp "$build/lib/libdistcache.a" "$tmp/static/"
cc -std=c99 -Wall -Wextra -Werror $cflags "$src/tests/client/compat_1x.c" \
  -o "$tmp/compat_static" -L"$tmp/static" $(pkg-config --static --libs distcache)
if readelf -d "$tmp/compat_static" | grep -q 'libdistcache'; then
  echo "c_link_check: the static build still needs libdistcache.so" >&2
  exit 1
fi
cc -std=c99 -Wall -Wextra -Werror $cflags "$src/tests/client/compat_1x.c" \
  -o "$tmp/compat_shared" $(pkg-config --libs distcache)
readelf -d "$tmp/compat_shared" | grep -q 'libdistcache.so' || {
  echo "c_link_check: the shared build does not use libdistcache.so" >&2
  exit 1
}
echo "c_link_check: static and shared C builds link"
if [ -n "$with_server" ]; then
  "$with_server" "$tmp/compat_static"
  LD_LIBRARY_PATH="$build/lib" "$with_server" "$tmp/compat_shared"
fi
