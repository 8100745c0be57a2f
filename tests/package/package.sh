#!/usr/bin/env bash
# The Debian packages (suite package): builds them with dpkg-buildpackage
# from a copy of the source tree (the files git tracks or would add, as they
# are in the working tree: nothing is written to the checkout), checks them
# with lintian (no error), unpacks them into a throw-away root with
# `dpkg -x`, and runs what was installed there: every program's --version
# and -h, the layout, the systemd units and drop-ins against it, and a TLS
# session made on one nginx resumed on another, both started with the
# installed shim and connected through the installed dc_client and
# dc_server.
#
# Usage: package.sh SOURCE_DIR VERSION
# DC_PACKAGE_DEBS=DIR: use the .deb files (and .changes) in DIR instead of
# building. E2E_KEEP=1 keeps the temporary directory.
# Exit 0 pass, 1 fail, 77 skip (a missing tool; a failure under CI=true).
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "${1:?usage: package.sh SOURCE_DIR VERSION}" && pwd)
version=${2:?usage: package.sh SOURCE_DIR VERSION}
E2E_PREFIX=dc-package
. "$here/../e2e/lib.sh"

missing() {
  if [ "${CI:-}" = true ]; then echo "FAIL: $* (CI=true: scripts/deps.sh test installs it)"; exit 1; fi
  echo "SKIP: $*"
  exit 77
}
for tool in dpkg-buildpackage dh lintian dpkg-architecture nginx openssl timeout; do
  command -v "$tool" >/dev/null || missing "$tool is not installed (scripts/deps.sh test)"
done
triplet=$(dpkg-architecture -qDEB_HOST_MULTIARCH) || e2e_die "dpkg-architecture failed"
step() { e2e_log "--- $* ($SECONDS s)"; }

e2e_setup
root=$E2E_DIR/root
debs=${DC_PACKAGE_DEBS:-}

# ---- 1. build, from a copy of the tree ----
if [ -z "$debs" ]; then
  step "copying the source tree"
  mkdir -p "$E2E_DIR/build/src"
  if git -C "$src" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    # Tracked files and new ones git would add, as they are now; deleted ones skipped.
    (cd "$src" && git ls-files -z --cached --others --exclude-standard |
      while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done |
      tar --null -T - -cf -) | tar -xf - -C "$E2E_DIR/build/src" || e2e_die "copying $src failed"
  else
    (cd "$src" && tar --exclude='./build*' --exclude='./obj-*' -cf - .) |
      tar -xf - -C "$E2E_DIR/build/src" || e2e_die "copying $src failed"
  fi
  step "dpkg-buildpackage -b -us -uc (DEB_BUILD_OPTIONS=nocheck parallel=2)"
  if ! (cd "$E2E_DIR/build/src" &&
        DEB_BUILD_OPTIONS="nocheck parallel=2" dpkg-buildpackage -b -us -uc) >"$E2E_DIR/build.log" 2>&1; then
    tail -n 40 "$E2E_DIR/build.log" >&2
    e2e_die "dpkg-buildpackage failed (log above)"
  fi
  debs=$E2E_DIR/build
fi

# ---- 2. lintian: no error; the rest is shown ----
changes=$(ls "$debs"/*.changes 2>/dev/null | head -n 1)
[ -n "$changes" ] || e2e_die "no .changes file in $debs"
step "lintian $(basename "$changes")"
lintian --fail-on error "$changes" >"$E2E_DIR/lintian.log" 2>&1
lst=$?
grep -v "running with root privileges" "$E2E_DIR/lintian.log" >&2
grep -q "symbols-file-contains-current-version-with-debian-revision" "$E2E_DIR/lintian.log" &&
  e2e_log "hint: a library exports a symbol that debian/<package>.symbols does not list; add it" \
    "there with the version that first has it (e.g. $version)"
[ "$lst" -eq 0 ] || e2e_die "lintian reported errors (status $lst)"
grep -q '^E: ' "$E2E_DIR/lintian.log" && e2e_die "lintian reported errors"
e2e_log "ok: lintian, no error ($(grep -c '^W: ' "$E2E_DIR/lintian.log") warnings)"

# ---- 3. the throw-away root ----
step "dpkg -x into $root"
n=0
for deb in "$debs"/*.deb; do
  case $deb in *-dbgsym_*) continue ;; esac
  dpkg -x "$deb" "$root" || e2e_die "dpkg -x $deb failed"
  n=$((n + 1))
done
[ "$n" -eq 4 ] || e2e_die "expected 4 packages, found $n in $debs"

libdir=$root/usr/lib/$triplet
shim=$libdir/distcache/libdistcache_shim.so
for f in usr/sbin/dc_server usr/sbin/dc_client usr/bin/dc_test usr/bin/dc_snoop \
    usr/bin/dc_bench usr/bin/dc_swamp \
    "usr/lib/$triplet/libdistcache.so.2" "usr/lib/$triplet/libdistcache_ssl.so.2" \
    "usr/lib/$triplet/distcache/libdistcache_shim.so" \
    "usr/lib/$triplet/libdistcache.so" "usr/lib/$triplet/libdistcache_ssl.so" \
    "usr/lib/$triplet/pkgconfig/distcache.pc" "usr/lib/$triplet/pkgconfig/distcache_ssl.pc" \
    usr/include/distcache/dc_client.h usr/include/distcache/dc_ssl.h \
    usr/share/man/man8/dc_server.8.gz usr/share/man/man8/dc_client.8.gz \
    usr/share/man/man1/dc_test.1.gz usr/share/man/man1/dc_snoop.1.gz \
    usr/share/man/man1/dc_bench.1.gz usr/share/man/man1/dc_swamp.1.gz \
    usr/share/man/man7/distcache.7.gz \
    lib/systemd/system/dc-server.service lib/systemd/system/dc-client.service \
    etc/default/distcache; do
  [ -e "$root/$f" ] || e2e_die "/$f is not in the packages"
done
e2e_log "ok: the layout (daemons in /usr/sbin, tools in /usr/bin, shim in /usr/lib/$triplet/distcache)"

# The programs of the root, with the root's libraries.
export LD_LIBRARY_PATH=$libdir
ldd "$root/usr/bin/dc_test" | grep -q "libdistcache.so.2 => $libdir/" ||
  e2e_die "dc_test does not use the root's libdistcache.so.2: $(ldd "$root/usr/bin/dc_test")"
for p in sbin/dc_server sbin/dc_client bin/dc_test bin/dc_snoop bin/dc_bench bin/dc_swamp; do
  name=${p#*/}
  out=$("$root/usr/$p" --version 2>&1) || e2e_die "$name --version: exit status $?"
  [ "$out" = "$name $version" ] || e2e_die "$name --version printed '$out', expected '$name $version'"
  "$root/usr/$p" -h >"$E2E_DIR/help.txt" 2>&1 || e2e_die "$name -h: exit status $?"
  grep -q -- "-h" "$E2E_DIR/help.txt" || e2e_die "$name -h printed no usage"
done
e2e_log "ok: every installed program answers --version ($version) and -h"

# The units start the installed daemons and read the installed options file.
for u in dc-server dc-client; do
  exe=$(sed -n 's/^ExecStart=\([^ ]*\).*/\1/p' "$root/lib/systemd/system/$u.service")
  [ -x "$root$exe" ] || e2e_die "$u.service: ExecStart $exe is not in the packages"
  grep -qx "EnvironmentFile=-/etc/default/distcache" "$root/lib/systemd/system/$u.service" ||
    e2e_die "$u.service does not read /etc/default/distcache"
done
grep -qx "RuntimeDirectory=distcache" "$root/lib/systemd/system/dc-client.service" ||
  e2e_die "dc-client.service: no RuntimeDirectory=distcache"
# The drop-ins of the examples preload the shim where the package puts it.
n=0
for d in "$root"/usr/share/doc/distcache/examples/systemd/*.service.d/distcache.conf; do
  [ -e "$d" ] || continue
  n=$((n + 1))
  pre=$(sed -n 's/^Environment=LD_PRELOAD=//p' "$d")
  [ "${pre/x86_64-linux-gnu/$triplet}" = "/usr/lib/$triplet/distcache/libdistcache_shim.so" ] ||
    e2e_die "$d: LD_PRELOAD=$pre is not the packaged shim"
  grep -qx "Environment=DC_CACHE_ADDR=UNIX:/run/distcache/dc_client.sock" "$d" ||
    e2e_die "$d: DC_CACHE_ADDR is not the agent's socket"
  grep -qx "After=dc-client.service" "$d" || e2e_die "$d: not ordered after dc-client.service"
done
[ "$n" -ge 4 ] || e2e_die "only $n systemd drop-ins in the examples"
e2e_log "ok: the units and $n drop-ins name the installed paths"

# ---- 4. a session resumed across two nginx with the installed shim ----
step "two nginx with $shim"
DC_SERVER=$root/usr/sbin/dc_server DC_AGENT=$root/usr/sbin/dc_client
e2e_start_server
e2e_start_agent
e2e_make_cert cert localhost
for n in A B; do
  e2e_start_nginx "$n" cert "" LD_PRELOAD="$shim" LD_LIBRARY_PATH="$libdir" \
    DC_CACHE_ADDR="$AGENT_ADDR" DC_CACHE_TIMEOUT_MS=5000 DC_CACHE_LOG=info
done
# nginx runs the root's shim, not one of a build tree.
grep -q "$shim" "/proc/$PID_A/maps" || e2e_die "nginx A has not loaded $shim"
for v in tls1_2 tls1_3; do
  e2e_expect_resume A "$PORT_A" B "$PORT_B" "$v"
  e2e_expect_resume B "$PORT_B" A "$PORT_A" "$v"
done
grep -q "distcache-shim\[[0-9]*\]: info: distributed cache " "$E2E_DIR"/A/*.log ||
  e2e_die "nginx A: no line of the shim in its logs"
step "done"
echo "ok: packages built, lintian clean of errors, installed programs run, sessions resume across two nginx"
