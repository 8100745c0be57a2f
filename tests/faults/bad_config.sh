#!/usr/bin/env bash
# Bad configuration, the cases that tests/server, tests/agent and the e2e
# scenario shim_bad_config do not already cover (docs/faults.md lists which
# test covers what):
#   - dc_server and dc_client: malformed flag values and addresses exit 2
#     with one line naming the flag first, then the usage; a well-formed
#     address that cannot be used exits 1 with one line naming it;
#   - the shim in nginx: each malformed DC_CACHE_* value gives exactly one
#     "config" line naming the variable on stderr, nginx starts and serves
#     TLS; a well-formed address nobody listens on gives no line at all.
#
# Usage: bad_config.sh (meson passes DC_SERVER, DC_AGENT, DC_SHIM).
# Exit 0 pass, 1 fail, 77 skip.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
E2E_PREFIX=dc-badcfg
. "$here/../e2e/lib.sh"

for tool in nginx openssl timeout; do
  command -v "$tool" >/dev/null || { echo "SKIP: $tool is not installed"; exit 77; }
done
for v in DC_SERVER DC_AGENT; do
  [ -x "${!v:-}" ] || { echo "SKIP: $v is not built"; exit 77; }
done
[ -f "${DC_SHIM:-}" ] || { echo "SKIP: libdistcache_shim.so is not built"; exit 77; }

e2e_setup
LONG_PATH=/tmp/$(printf 'x%.0s' $(seq 1 120))   # longer than sun_path

# expect_exit PROG CODE NAME ARGS...: PROG ARGS exits CODE within 10 s and
# its first line is "PROG: ..." naming NAME; exit 2 also prints the usage.
expect_exit() {
  local prog=$1 code=$2 name=$3 bin out rc first
  shift 3
  [ "$prog" = dc_server ] && bin=$DC_SERVER || bin=$DC_AGENT
  out=$(cd "$E2E_DIR" && timeout 10 "$bin" "$@" 2>&1)
  rc=$?
  first=${out%%$'\n'*}
  if [ "$rc" != "$code" ] || [[ "$first" != "$prog: "* ]] || [[ "$first" != *"$name"* ]] ||
    { [ "$code" = 2 ] && [[ "$out" != *"Usage: $prog"* ]]; }; then
    e2e_die "$prog $*: expected exit $code and a first line naming '$name'; got exit $rc: $out"
  fi
  e2e_log "ok: $prog $* -> exit $rc: $first"
}

S=$E2E_DIR/s.sock
# dc_server: malformed addresses and values (exit 2).
expect_exit dc_server 2 '-listen: bad address "UNIX:"' -listen UNIX:
expect_exit dc_server 2 '-listen: bad address' -listen "UNIX:$LONG_PATH"
expect_exit dc_server 2 '-listen: bad address "IP:[::1"' -listen 'IP:[::1'
expect_exit dc_server 2 '-listen: bad address "IP:[::1]x:5"' -listen 'IP:[::1]x:5'
expect_exit dc_server 2 '-listen: bad address "IP:127.0.0.1:"' -listen IP:127.0.0.1:
expect_exit dc_server 2 '-listen: bad address "IP:127.0.0.1:22x"' -listen IP:127.0.0.1:22x
expect_exit dc_server 2 '-listen: bad address "IP:65536"' -listen IP:65536
expect_exit dc_server 2 '-listen: bad address "IP:-1"' -listen IP:-1
expect_exit dc_server 2 '-listen: missing value' -listen
expect_exit dc_server 2 '-sessions' -listen "UNIX:$S" -sessions 99999999999999999999999
expect_exit dc_server 2 '-memory' -listen "UNIX:$S" -memory 99999999999G
expect_exit dc_server 2 '-memory' -listen "UNIX:$S" -memory 18446744073709551616
expect_exit dc_server 2 '-stats-interval' -listen "UNIX:$S" -stats-interval 0
expect_exit dc_server 2 '-stats-interval' -listen "UNIX:$S" -stats-interval abc
expect_exit dc_server 2 '-sockowner' -listen "UNIX:$S" -sockowner no-such-user-here
# Well formed, but unusable (exit 1): a missing directory, a port in use.
expect_exit dc_server 1 'UNIX:/nonexistent-dir/x' -listen UNIX:/nonexistent-dir/x
e2e_start_server held
port=$(e2e_free_port)
"$DC_SERVER" -listen "IP:127.0.0.1:$port" >"$E2E_DIR/holder.log" 2>&1 &
holder=$!
E2E_PIDS+=("$holder")
e2e_wait_for "a dc_server on port $port" 100 bash -c "exec 3<>/dev/tcp/127.0.0.1/$port" 2>/dev/null ||
  e2e_die "the port holder did not start"
expect_exit dc_server 1 "IP:127.0.0.1:$port" -listen "IP:127.0.0.1:$port"
# A live UNIX socket is not taken over either, and is left working.
expect_exit dc_server 1 "$SERVER_ADDR" -listen "$SERVER_ADDR"
[ -S "${SERVER_ADDR#UNIX:}" ] || e2e_die "a failed dc_server removed a live server's socket"

# dc_client: malformed addresses and values (exit 2).
A=$E2E_DIR/a.sock
expect_exit dc_client 2 '-server: bad address "UNIX:"' -server UNIX:
expect_exit dc_client 2 '-server: bad address' -server "UNIX:$LONG_PATH"
expect_exit dc_client 2 '-server: bad address "IP:[::1"' -server 'IP:[::1'
expect_exit dc_client 2 '-server: bad address "IP:127.0.0.1:0"' -server IP:127.0.0.1:0
expect_exit dc_client 2 '-server: missing value' -server
expect_exit dc_client 2 '-listen: bad address "UNIX:"' -server "UNIX:$S" -listen UNIX:
expect_exit dc_client 2 '-listen: missing value' -server "UNIX:$S" -listen
expect_exit dc_client 2 '-retry' -server "UNIX:$S" -listen "UNIX:$A" -retry 99999999999999999999
expect_exit dc_client 2 '-maxout' -server "UNIX:$S" -listen "UNIX:$A" -maxout 99999999999G
expect_exit dc_client 2 '-timeout' -server "UNIX:$S" -listen "UNIX:$A" -timeout -1
expect_exit dc_client 2 '-idle' -server "UNIX:$S" -listen "UNIX:$A" -idle x
expect_exit dc_client 1 'UNIX:/nonexistent-dir/x' -server "UNIX:$S" -listen UNIX:/nonexistent-dir/x
expect_exit dc_client 1 "$SERVER_ADDR" -server "UNIX:$S" -listen "$SERVER_ADDR"

# The shim: nginx with one malformed variable at a time (the e2e scenario
# shim_bad_config has DC_CACHE_TICKETS=maybe, DC_CACHE_LOG=loud,
# DC_CACHE_TIMEOUT_MS=soon and DC_CACHE_ADDR=TCP:nowhere).
e2e_start_agent
e2e_make_cert cert localhost
n=0
# config_lines NAME PATTERN: lines of nginx NAME's stderr matching "config:
# PATTERN" written by live processes (e2e_start_nginx appends the output of
# an attempt that lost its port to a race, whose processes are gone).
config_lines() {
  local line pid count=0
  while IFS= read -r line; do
    pid=${line#distcache-shim[}
    pid=${pid%%]*}
    kill -0 "$pid" 2>/dev/null && count=$((count + 1))
  done < <(grep "^distcache-shim\[[0-9]*\]: config: $2" "$E2E_DIR/$1/stderr.log")
  echo "$count"
}
# shim_case VAR VALUE: nginx starts, serves TLS, and said one line about VAR.
shim_case() {
  local var=$1 value=$2 name lines out
  n=$((n + 1))
  name=N$n
  local env=(LD_PRELOAD="$DC_SHIM" DC_CACHE_ADDR="$AGENT_ADDR" DC_CACHE_TIMEOUT_MS=5000)
  env+=("$var=$value")
  e2e_start_nginx "$name" cert "" "${env[@]}"
  local port_var=PORT_$name
  out=$E2E_DIR/out.$name
  e2e_tls "${!port_var}" tls1_3 "$out"
  grep -q "hello from $name" "$out" || { cat "$out" >&2; e2e_die "$var='$value': nginx did not serve"; }
  lines=$(config_lines "$name" "$var=")
  [ "$lines" = 1 ] || { cat "$E2E_DIR/$name/stderr.log" >&2; e2e_die "$var='$value': $lines lines about it, not 1"; }
  lines=$(config_lines "$name" "")
  [ "$lines" = 1 ] || e2e_die "$var='$value': $lines config lines in all, not 1"
  e2e_log "ok: $var='$value': one line, nginx serves: $(grep "config: $var=" "$E2E_DIR/$name/stderr.log")"
}
shim_case DC_CACHE_TIMEOUT_MS 0
shim_case DC_CACHE_TIMEOUT_MS 60001
shim_case DC_CACHE_TIMEOUT_MS -5
shim_case DC_CACHE_TIMEOUT_MS 99999999999
shim_case DC_CACHE_TIMEOUT_MS "100 "
shim_case DC_CACHE_ADDR UNIX:
shim_case DC_CACHE_ADDR 'IP:[::1'
shim_case DC_CACHE_ADDR IP:127.0.0.1:99999
shim_case DC_CACHE_ADDR "UNIX:$LONG_PATH"
shim_case DC_CACHE_LOG 9
shim_case DC_CACHE_TICKETS STATEFUL

# Everything wrong at once: one line per variable, nginx still serves.
e2e_start_nginx ALL cert "" LD_PRELOAD="$DC_SHIM" DC_CACHE_ADDR='IP:[::1' \
  DC_CACHE_TIMEOUT_MS=x DC_CACHE_TICKETS=y DC_CACHE_LOG=z
e2e_tls "$PORT_ALL" tls1_2 "$E2E_DIR/out.ALL"
grep -q "hello from ALL" "$E2E_DIR/out.ALL" || e2e_die "nginx with every variable wrong did not serve"
for var in DC_CACHE_ADDR DC_CACHE_TIMEOUT_MS DC_CACHE_TICKETS DC_CACHE_LOG; do
  lines=$(config_lines ALL "$var=")
  [ "$lines" = 1 ] || e2e_die "every variable wrong: $lines lines about $var, not 1"
done

# Well formed but nobody there: not a configuration error (no line), every
# connection is a full handshake, nginx serves.
e2e_start_nginx NONE cert "" LD_PRELOAD="$DC_SHIM" DC_CACHE_ADDR="UNIX:$E2E_DIR/nobody.sock"
e2e_tls "$PORT_NONE" tls1_3 "$E2E_DIR/out.NONE"
grep -q "hello from NONE" "$E2E_DIR/out.NONE" || e2e_die "nginx with an absent cache did not serve"
[ "$(config_lines NONE "")" = 0 ] || e2e_die "an absent cache was reported as bad configuration"
echo "PASS: bad_config"
exit 0
