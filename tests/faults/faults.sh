#!/usr/bin/env bash
# Fault tests with real parts: two nginx instances (the shim preloaded,
# DC_CACHE_TIMEOUT_MS=$DEADLINE) on one dc_client agent and one dc_server,
# under a steady stream of TLS connections from tls_load (full handshake on
# A, resumption offered to B, TLS 1.2 and 1.3 threads). One fault per run:
#
#   kill_agent   kill -9 of dc_client, restarted after $OUTAGE s
#   kill_server  kill -9 of dc_server, restarted after $OUTAGE s
#   stop_server  SIGSTOP of dc_server, SIGCONT after $OUTAGE s
#   partition    dc_client and dc_server each in a network namespace of this
#                test, joined by a veth pair (a private /30 that exists only
#                there); the server's link is taken down for $OUTAGE s
#
# Asserted from tls_load's record of every connection (see docs/faults.md):
#   - zero failed TLS connections, before, during and after the fault;
#   - no connection took longer than MAX_CONN_MS = 4 x DEADLINE + 1500 ms
#     (a connection makes at most 3 cache calls, each bounded by the
#     deadline; 1500 ms is slack for a loaded machine), while the fault
#     lasts longer than that: without deadlines it would show;
#   - resumption worked before the fault and failed during it (the fault
#     was real);
#   - a resumption succeeded within RETRY + 1000 ms + SLACK of the fault's
#     end, RETRY being the period after which the failed part is tried
#     again (the shim's 1000 ms back-off when the agent was down, the
#     agent's -retry 200 otherwise), SLACK 1500 ms for a loaded machine.
#
# Usage: faults.sh SCENARIO (meson passes DC_SERVER, DC_AGENT, DC_SHIM and
# DC_TLS_LOAD). Exit 0 pass, 1 fail, 77 skip.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
E2E_PREFIX=dc-faults
. "$here/../e2e/lib.sh"

scenario=${1:?usage: faults.sh SCENARIO}

DEADLINE=300      # DC_CACHE_TIMEOUT_MS of the nginx instances
OUTAGE=3          # seconds the fault lasts
AGENT_RETRY=200   # e2e_start_agent's -retry
SHIM_BACKOFF=1000 # DC_DEFAULT_BACKOFF_MS: the shim's pause after a failed connect
SLACK=1500
MAX_CONN_MS=$((4 * DEADLINE + SLACK))

for tool in nginx openssl timeout awk; do
  command -v "$tool" >/dev/null || { echo "SKIP: $tool is not installed"; exit 77; }
done
for v in DC_SERVER DC_AGENT DC_TLS_LOAD; do
  [ -x "${!v:-}" ] || { echo "SKIP: $v is not built"; exit 77; }
done
[ -f "${DC_SHIM:-}" ] || { echo "SKIP: libdistcache_shim.so is not built"; exit 77; }

now_ms() { local t=${EPOCHREALTIME/./}; echo $((t / 1000)); }

# ---- network namespaces (partition only) ----
NS_A="" NS_S=""
netns_cleanup() {
  [ -n "$NS_A" ] && ip netns del "$NS_A" 2>/dev/null
  [ -n "$NS_S" ] && ip netns del "$NS_S" 2>/dev/null
  NS_A="" NS_S=""
}
# A /30 of the link-local range, used only on the veth pair made here, in
# namespaces made here: no traffic leaves them.
NET_AGENT=169.254.213.1 NET_SERVER=169.254.213.2
netns_setup() {
  command -v ip >/dev/null || { echo "SKIP: ip (iproute2) is not installed"; exit 77; }
  local id=$$
  NS_A=dcf-a-$id NS_S=dcf-s-$id
  VETH_A=dcfa$id VETH_S=dcfs$id
  if ! ip netns add "$NS_A" 2>"$E2E_DIR/netns.err"; then
    NS_A=""
    echo "SKIP: cannot create a network namespace ($(head -n 1 "$E2E_DIR/netns.err"));" \
      "the partition test needs root or CAP_SYS_ADMIN + CAP_NET_ADMIN"
    exit 77
  fi
  ip netns add "$NS_S" &&
    ip link add "$VETH_A" netns "$NS_A" type veth peer name "$VETH_S" netns "$NS_S" &&
    ip -n "$NS_A" addr add "$NET_AGENT/30" dev "$VETH_A" &&
    ip -n "$NS_S" addr add "$NET_SERVER/30" dev "$VETH_S" &&
    ip -n "$NS_A" link set "$VETH_A" up &&
    ip -n "$NS_S" link set "$VETH_S" up ||
    e2e_die "could not set up the namespaces and the veth pair"
}

# dc_server in $NS_S on TCP, dc_client in $NS_A (its UNIX socket, in the
# file system, is reachable from nginx in the host's namespace).
# `ip netns exec` execs the daemon, so $! is the daemon's pid.
start_server_netns() {
  local pidfile=$E2E_DIR/server.pid
  rm -f "$pidfile"
  SERVER_ADDR=IP:$NET_SERVER:9001
  ip netns exec "$NS_S" "$DC_SERVER" -listen "$SERVER_ADDR" -pidfile "$pidfile" \
    >>"$E2E_DIR/server.log" 2>&1 &
  SERVER_PID=$!
  E2E_PIDS+=("$SERVER_PID")
  e2e_wait_for "dc_server to listen" 100 test -s "$pidfile" ||
    { cat "$E2E_DIR/server.log" >&2; e2e_die "dc_server did not start"; }
}
start_agent_netns() {
  local pidfile=$E2E_DIR/agent.pid
  rm -f "$pidfile"
  AGENT_ADDR=UNIX:$E2E_DIR/agent.sock
  ip netns exec "$NS_A" "$DC_AGENT" -listen "$AGENT_ADDR" -server "$SERVER_ADDR" \
    -sockperms 0666 -retry "$AGENT_RETRY" -pidfile "$pidfile" >>"$E2E_DIR/agent.log" 2>&1 &
  AGENT_PID=$!
  E2E_PIDS+=("$AGENT_PID")
  e2e_wait_for "dc_client to listen" 100 test -s "$pidfile" ||
    { cat "$E2E_DIR/agent.log" >&2; e2e_die "dc_client did not start"; }
}

# kill -9 and reap a process started by lib.sh.
kill9() {
  kill -KILL "$1" 2>/dev/null
  wait "$1" 2>/dev/null
  e2e_forget_pid "$1"
}

e2e_setup
trap 'kill -CONT "${SERVER_PID:-0}" 2>/dev/null; e2e_cleanup; netns_cleanup' EXIT
e2e_make_cert cert localhost

if [ "$scenario" = partition ]; then
  netns_setup
  start_server_netns
  start_agent_netns
else
  e2e_start_server
  e2e_start_agent
fi
env=(LD_PRELOAD="$DC_SHIM" DC_CACHE_ADDR="$AGENT_ADDR" DC_CACHE_TIMEOUT_MS=$DEADLINE)
e2e_start_nginx A cert "" "${env[@]}"
e2e_start_nginx B cert "" "${env[@]}"

# Wait until sessions cross (the agent's upstream connection is made
# asynchronously), then start the load.
ok=0
for i in $(seq 1 50); do
  sess=$E2E_DIR/sess.warmup
  e2e_session A "$PORT_A" tls1_3 "$sess"
  if [ "$(e2e_try_resume B "$PORT_B" tls1_3 "$sess")" = Reused ]; then ok=1; break; fi
  sleep 0.2
done
[ $ok = 1 ] || e2e_die "no resumption across the two nginx before the fault"

LOG=$E2E_DIR/load.log
"$DC_TLS_LOAD" -a "$PORT_A" -b "$PORT_B" -threads 4 -out "$LOG" 2>"$E2E_DIR/load.err" &
LOAD_PID=$!
E2E_PIDS+=("$LOAD_PID")
sleep 2

F0=$(now_ms)
case $scenario in
  kill_agent)
    RETRY=$SHIM_BACKOFF
    kill9 "$AGENT_PID"
    sleep "$OUTAGE"
    e2e_start_agent
    ;;
  kill_server)
    RETRY=$AGENT_RETRY
    kill9 "$SERVER_PID"
    sleep "$OUTAGE"
    e2e_start_server
    ;;
  stop_server)
    RETRY=$AGENT_RETRY
    kill -STOP "$SERVER_PID"
    sleep "$OUTAGE"
    kill -CONT "$SERVER_PID"
    ;;
  partition)
    RETRY=$AGENT_RETRY
    ip -n "$NS_S" link set "$VETH_S" down || e2e_die "could not take the link down"
    sleep "$OUTAGE"
    ip -n "$NS_S" link set "$VETH_S" up || e2e_die "could not bring the link up"
    ;;
  *)
    e2e_die "unknown scenario $scenario"
    ;;
esac
F1=$(now_ms)
sleep 4
kill -TERM "$LOAD_PID"
e2e_wait_exit "$LOAD_PID" 300 || e2e_die "tls_load did not stop"
e2e_forget_pid "$LOAD_PID"
kill -0 "$SERVER_PID" 2>/dev/null || e2e_die "dc_server died"
kill -0 "$AGENT_PID" 2>/dev/null || e2e_die "dc_client died"

RECOVER_MS=$((RETRY + 1000 + SLACK))
# Fields: start dur server offered reused ok tls.
read -r total failed maxdur maxdur_at resumed_before fresh_during resumed_during first_after \
  resumed_last <<<"$(awk -v f0="$F0" -v f1="$F1" -v margin=200 '
  { n++; end = $1 + $2
    if ($6 == 0) failed++
    if ($2 > maxdur) { maxdur = $2; maxat = $1 - f0 }
    if ($4 == 1 && $5 == 1 && end < f0) rb++
    # During the fault (past its first moments, before its end): offered
    # sessions that did not resume, and any that did.
    if ($4 == 1 && $1 > f0 + margin && end < f1) { if ($5 == 1) rd++; else fd++ }
    if ($4 == 1 && $5 == 1 && $1 >= f1 && (first == "" || end - f1 < first)) first = end - f1
    if ($4 == 1 && $5 == 1 && $1 >= f1 + 2500) rl++
  }
  END { printf "%d %d %d %d %d %d %d %s %d\n", n, failed, maxdur, maxat, rb, fd, rd,
        (first == "" ? "none" : first), rl }' "$LOG")"

e2e_log "$scenario: $total connections, $failed failed; longest ${maxdur} ms (at ${maxdur_at} ms" \
  "from the fault's start; bound $MAX_CONN_MS ms); resumed before the fault: $resumed_before;" \
  "during: $resumed_during resumed, $fresh_during not; first resumption ${first_after} ms after" \
  "the fault ended (bound $RECOVER_MS ms); resumed in the last 1.5 s: $resumed_last"

[ "$total" -gt 50 ] || e2e_die "too few connections ($total) to judge anything"
[ "$failed" = 0 ] || { grep -m 5 ' 0 [0-9]*$' "$LOG" >&2; e2e_die "$failed TLS connections failed"; }
[ "$maxdur" -le "$MAX_CONN_MS" ] || e2e_die "a connection took $maxdur ms (bound $MAX_CONN_MS ms)"
[ "$resumed_before" -gt 0 ] || e2e_die "no resumption before the fault"
[ "$fresh_during" -gt 0 ] || e2e_die "no full handshake instead of a resumption during the fault: was it a fault?"
[ "$first_after" != none ] || e2e_die "resumption never came back after the fault"
[ "$first_after" -le "$RECOVER_MS" ] ||
  e2e_die "resumption came back $first_after ms after the fault (bound $RECOVER_MS ms)"
[ "$resumed_last" -gt 0 ] || e2e_die "resumption did not keep working after the fault"
echo "PASS: $scenario"
exit 0
