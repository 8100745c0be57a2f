#!/usr/bin/env bash
# The README's first command: shows a TLS session made on one server resumed
# on another through distcache, on this machine, in about a minute.
#
#   bash scripts/demo.sh
#
# Installs what is missing (scripts/deps.sh demo; root needed only then),
# builds into build-demo/, starts dc_server and the dc_client agent on UNIX
# sockets in a temporary directory and two nginx servers (same certificate,
# separate processes, each with its own two workers) under the
# LD_PRELOAD shim, makes a session on server A with `openssl s_client`,
# resumes it on server B, and prints what happened. Everything it started is
# stopped when it ends or is interrupted. Exit status 0 when the session made
# on A was resumed on B.
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD

bold=$'\e[1m' green=$'\e[32m' red=$'\e[31m' off=$'\e[0m'
[ -t 1 ] || { bold='' green='' red='' off=''; }
say() { printf '%s\n' "$*"; }
step() { printf '\n%s== %s%s\n' "$bold" "$*" "$off"; }

step "1/4 Installing missing packages (scripts/deps.sh demo)"
bash scripts/deps.sh demo || exit 1
say "ok"

step "2/4 Building into build-demo/ (meson + ninja)"
log=$(mktemp)
if [ ! -f build-demo/build.ninja ]; then
  meson setup build-demo -Dtests=false --buildtype=release >"$log" 2>&1 ||
    { cat "$log"; rm -f "$log"; exit 1; }
fi
meson compile -C build-demo >"$log" 2>&1 || { tail -n 40 "$log"; rm -f "$log"; exit 1; }
rm -f "$log"
DC_SERVER=$root/build-demo/daemons/server/dc_server
DC_AGENT=$root/build-demo/daemons/agent/dc_client
DC_SHIM=$root/build-demo/shim/libdistcache_shim.so
for f in "$DC_SERVER" "$DC_AGENT" "$DC_SHIM"; do
  [ -f "$f" ] || { say "${red}missing $f: the build did not produce it${off}"; exit 1; }
done
say "ok: dc_server, dc_client, libdistcache_shim.so"

# The same helpers as the end-to-end tests (start, wait until ready, stop).
. "$root/tests/e2e/lib.sh"
E2E_PREFIX=dc-demo
e2e_setup   # temporary directory; everything started is stopped on exit
trap 'say; say "interrupted: stopping everything"; exit 130' INT TERM HUP

step "3/4 Starting the cache and two TLS servers (in $E2E_DIR)"
e2e_make_cert cert localhost
e2e_start_server
say "dc_server  (the cache)          listening on $SERVER_ADDR"
e2e_start_agent
say "dc_client  (local agent)        listening on $AGENT_ADDR, connected to the cache"
shim_env=(LD_PRELOAD="$DC_SHIM" DC_CACHE_ADDR="$AGENT_ADDR")
e2e_start_nginx A cert "" "${shim_env[@]}"
e2e_start_nginx B cert "" "${shim_env[@]}"
say "nginx A    https://127.0.0.1:$PORT_A   default TLS settings, 2 workers"
say "nginx B    https://127.0.0.1:$PORT_B   same certificate, a separate nginx"
say "both started as:  LD_PRELOAD=libdistcache_shim.so DC_CACHE_ADDR=$AGENT_ADDR nginx ..."

step "4/4 A session made on server A, offered to server B (openssl s_client -sess_out / -sess_in)"
status=0
for v in tls1_2 tls1_3; do
  name=${v/tls1_/TLSv1.}
  sess=$E2E_DIR/session.$v.pem
  e2e_tls "$PORT_A" "$v" "$E2E_DIR/a.$v" -sess_out "$sess" || true
  e2e_tls "$PORT_B" "$v" "$E2E_DIR/b.$v" -sess_in "$sess" || true
  a=$(grep -m1 -E '^(New|Reused), ' "$E2E_DIR/a.$v" || echo "no handshake")
  b=$(grep -m1 -E '^(New|Reused), ' "$E2E_DIR/b.$v" || echo "no handshake")
  say ""
  say "${bold}$name${off}"
  say "  server A: ${a%%, Cipher*}   (full handshake; the session went into the cache)"
  if [[ $b == Reused,* ]] && grep -q "hello from B" "$E2E_DIR/b.$v"; then
    say "  server B: ${b%%, Cipher*}   ${green}-> session made on A resumed on B${off}"
  else
    say "  server B: ${b%%, Cipher*}   ${red}-> NOT resumed (see $E2E_DIR)${off}"
    status=1
  fi
done

# The failure promise: without the cache, connections still work.
e2e_stop "$AGENT_PID"
sess=$E2E_DIR/session.down.pem
e2e_tls "$PORT_A" tls1_3 "$E2E_DIR/a.down" -sess_out "$sess" || true
e2e_tls "$PORT_B" tls1_3 "$E2E_DIR/b.down" -sess_in "$sess" || true
b=$(grep -m1 -E '^(New|Reused), ' "$E2E_DIR/b.down" || echo "no handshake")
say ""
say "${bold}With the agent stopped${off}"
if grep -q "hello from B" "$E2E_DIR/b.down"; then
  say "  server B: ${b%%, Cipher*}   -> still served, as a full handshake (a cache problem never fails a connection)"
else
  say "  server B: ${red}did not answer${off}"
  status=1
fi

say ""
if [ $status = 0 ]; then
  say "${green}${bold}Done: TLS sessions are shared between separate servers through distcache.${off}"
else
  E2E_KEEP=1
  say "${red}${bold}The demo did not show resumption; logs kept in $E2E_DIR${off}"
fi
say "Stopping dc_server, dc_client and both nginx."
exit $status
