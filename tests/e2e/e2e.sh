#!/usr/bin/env bash
# End-to-end tests: real dc_server + dc_client agent, real nginx instances
# (worker_processes 2) started with LD_PRELOAD=libdistcache_shim.so, the
# example server built on dc_ssl.h, and `openssl s_client` making a session
# on one server and offering it to another.
#
# Usage: e2e.sh SCENARIO   (meson passes DC_SERVER, DC_AGENT, DC_SHIM and
# DC_EXAMPLE in the environment). Exit 0 pass, 1 fail, 77 skip.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"

scenario=${1:?usage: e2e.sh SCENARIO}

for tool in nginx openssl timeout; do
  command -v "$tool" >/dev/null || { echo "SKIP: $tool is not installed"; exit 77; }
done
[ -x "${DC_SERVER:-}" ] || { echo "SKIP: dc_server is not built"; exit 77; }
[ -x "${DC_AGENT:-}" ] || { echo "SKIP: dc_client (the agent) is not built"; exit 77; }
[ -f "${DC_SHIM:-}" ] || { echo "SKIP: libdistcache_shim.so is not built"; exit 77; }

# A shim built with AddressSanitizer (the test command's sanitizer build)
# needs the ASan runtime first in LD_PRELOAD, since nginx is not built with
# it; nginx frees nothing at exit, so leak reports are off for these runs
# (the integration suites check our daemons for leaks).
asan_rt=$(ldd "$DC_SHIM" 2>/dev/null | awk '/libasan\.so/ { print $3; exit }')
if [ -n "$asan_rt" ]; then
  DC_SHIM="$asan_rt:$DC_SHIM"
  export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0"
fi

e2e_setup
e2e_make_cert cert localhost
e2e_make_cert other localhost   # same name, different key and certificate

# The cache's per-operation deadline in these tests: far above what any
# operation needs, so that a loaded machine never turns a hit into a miss
# (the 100 ms default is exercised by shim_bad_config, with retries).
TIMEOUT=DC_CACHE_TIMEOUT_MS=5000
# dc_server's counters (start_pair's server, and others started with it).
STATS=$E2E_DIR/server.stats

# Starts dc_server, the agent, and nginx A and B (same certificate) with the
# shim and the server-block directives $1; more VAR=VALUE for the shim follow.
start_pair() {
  local extra=$1
  shift
  e2e_start_server server "$STATS"
  e2e_start_agent
  local env=(LD_PRELOAD="$DC_SHIM" DC_CACHE_ADDR="$AGENT_ADDR" "$TIMEOUT" "$@")
  e2e_start_nginx A cert "$extra" "${env[@]}"
  e2e_start_nginx B cert "$extra" "${env[@]}"
}

# cache_unused WHY: dc_server has seen no ADD and no GET so far (WHY says
# what should have kept the cache out of it).
cache_unused() {
  local line
  line=$(e2e_server_stats "$STATS") || e2e_die "dc_server wrote no statistics"
  [ "$(e2e_stat "$line" add)" = 0 ] && [ "$(e2e_stat "$line" get)" = 0 ] ||
    e2e_die "$1, yet dc_server saw requests: $line"
  e2e_log "ok: dc_server saw no ADD and no GET ($1)"
}

# control_pair EXTRA VAR=VALUE...: the positive control of a "does not
# resume" check: nginx C and D, set up like the instances under test but
# for the one difference, which EXTRA and the VAR=VALUE list leave out.
# Their sessions cross both ways, so the cache does work in this setup
# and the full handshakes seen before came from that difference.
control_pair() {
  local extra=$1 v
  shift
  e2e_start_nginx C cert "$extra" "$@"
  e2e_start_nginx D cert "$extra" "$@"
  for v in tls1_2 tls1_3; do
    e2e_expect_resume C "$PORT_C" D "$PORT_D" "$v"
  done
  e2e_log "ok: control: without that difference sessions cross"
}

# timed_no_resume FROM FROM_PORT TO TO_PORT VERSION BOUND_MS: as
# e2e_expect_no_resume, and each of its two connections completes within
# BOUND_MS (measured around s_client, a few tens of ms when all is well).
timed_no_resume() {
  local from=$1 fport=$2 to=$3 tport=$4 v=$5 bound=$6 sess=$E2E_DIR/sess.timed t0 t1 t2 r
  t0=$(e2e_now_ms)
  e2e_session "$from" "$fport" "$v" "$sess"
  t1=$(e2e_now_ms)
  ((t1 - t0 < bound)) || e2e_die "$v: a new session on $from took $((t1 - t0)) ms (bound $bound ms)"
  r=$(e2e_try_resume "$to" "$tport" "$v" "$sess")
  t2=$(e2e_now_ms)
  [ "$r" = New ] || e2e_die "$v: a session made on $from was not expected to resume on $to (got '$r')"
  ((t2 - t1 < bound)) || e2e_die "$v: offering a session to $to took $((t2 - t1)) ms (bound $bound ms)"
  e2e_log "ok: $v session made on $from not resumed on $to; $((t1 - t0)) and $((t2 - t1)) ms (bound $bound)"
}

both_ways() {
  local v
  for v in tls1_2 tls1_3; do
    e2e_expect_resume A "$PORT_A" B "$PORT_B" "$v"
    e2e_expect_resume B "$PORT_B" A "$PORT_A" "$v"
  done
}

case $scenario in
  nginx_default)
    # nginx's default session settings (ssl_session_cache none, tickets on).
    start_pair ""
    both_ways
    ;;

  nginx_shared_cache)
    # nginx installs its own session callbacks: both caches are used.
    start_pair "ssl_session_cache shared:SSL:10m;"
    both_ways
    # nginx's own cache still works for resumption on the same instance.
    e2e_expect_resume A "$PORT_A" A "$PORT_A" tls1_2
    ;;

  nginx_tickets_on)
    # Tickets written in the configuration: the default policy turns them
    # into stateful sessions that the cache can share.
    start_pair "ssl_session_tickets on;"
    both_ways
    ;;

  nginx_cache_off)
    # "ssl_session_cache off" is SSL_SESS_CACHE_OFF: respected. nginx then
    # resumes with its own tickets only, so the ticket policy must give them
    # back; a session never crosses to the other instance.
    start_pair "ssl_session_cache off;"
    for v in tls1_2 tls1_3; do
      e2e_expect_no_resume A "$PORT_A" B "$PORT_B" "$v"
    done
    e2e_expect_resume A "$PORT_A" A "$PORT_A" tls1_2
    cache_unused "nginx turned session caching off"
    # The operator is told once per process, at the default log level.
    n=$(grep -c "turned session caching off" "$E2E_DIR/A/stderr.log")
    [ "$n" = 1 ] || { cat "$E2E_DIR/A/stderr.log" >&2; e2e_die "expected one line about caching off, got $n"; }
    control_pair "" LD_PRELOAD="$DC_SHIM" DC_CACHE_ADDR="$AGENT_ADDR" "$TIMEOUT"
    ;;

  early_data)
    # TLS 1.3 early data is replayable: a ticket that allows it resumes at
    # most once in the whole cluster (nginx sets SSL_OP_NO_ANTI_REPLAY, so
    # OpenSSL's own single-use check is off). Used with 0-RTT on B, replayed
    # on A (where it was made) and on B: full handshakes, early data refused.
    start_pair "ssl_early_data on;"
    sess=$E2E_DIR/sess.early
    printf 'GET / HTTP/1.0\r\n\r\n' >"$E2E_DIR/early.txt"
    e2e_session A "$PORT_A" tls1_3 "$sess"
    out=$E2E_DIR/out.early.B
    E2E_REQUEST='' e2e_tls "$PORT_B" tls1_3 "$out" -sess_in "$sess" -early_data "$E2E_DIR/early.txt"
    grep -q "^Early data was accepted" "$out" && [ "$(e2e_result "$out")" = Reused ] &&
      grep -q "hello from B" "$out" ||
      { cat "$out" >&2; e2e_die "the first use of the ticket on B did not resume with early data"; }
    e2e_log "ok: first use on B resumed, early data accepted"
    for name in A B; do
      port_var=PORT_$name
      out=$E2E_DIR/out.early.replay.$name
      E2E_REQUEST='' e2e_tls "${!port_var}" tls1_3 "$out" -sess_in "$sess" \
        -early_data "$E2E_DIR/early.txt"
      ! grep -q "^Early data was accepted" "$out" ||
        { cat "$out" >&2; e2e_die "a replay on $name was accepted with early data"; }
      [ "$(e2e_result "$out")" = New ] ||
        { cat "$out" >&2; e2e_die "a replay on $name did not complete as a full handshake"; }
      e2e_log "ok: replay on $name: full handshake, early data not accepted"
    done
    # Tickets without early data are unaffected: sessions still cross.
    e2e_expect_resume A "$PORT_A" B "$PORT_B" tls1_3
    ;;

  verify_empty_context)
    # A server that verifies peers and has an empty session id context:
    # OpenSSL aborts the handshake (alert 80) when offered a session made
    # under that context, so the cache must not hand it one.
    e2e_start_server
    e2e_start_agent
    start_s_server() {  # NAME PORT [ARGS...]
      local name=$1 port=$2
      shift 2
      env LD_PRELOAD="$DC_SHIM" DC_CACHE_ADDR="$AGENT_ADDR" "$TIMEOUT" \
        openssl s_server -accept "127.0.0.1:$port" -cert "$E2E_DIR/cert.pem" \
        -key "$E2E_DIR/cert.key" -www -context '' "$@" >"$E2E_DIR/$name/stderr.log" 2>&1 &
    }
    start_a() { start_s_server "$1" "$2"; }
    start_b() { start_s_server "$1" "$2" -verify 1; }
    e2e_start_listener A start_a
    e2e_start_listener B start_b
    export E2E_ANSWER="HTTP/1.0 200 ok"
    for v in tls1_2 tls1_3; do
      e2e_expect_no_resume A "$PORT_A" B "$PORT_B" "$v"
    done
    kill -0 "$PID_B" || e2e_die "s_server B exited"
    ;;

  sealed)
    # DC_CACHE_SEAL_KEYS: two nginx with one keyring resume each other's
    # sessions; a third with another keyring does not open them; one whose
    # keyring others may read gets one line and no cache (never sessions
    # in the clear) and still serves. Without the variable the shim says
    # once that sessions are stored unsealed.
    umask 077
    openssl rand -hex 32 >"$E2E_DIR/keys"
    openssl rand -hex 32 >"$E2E_DIR/other-keys"
    cp "$E2E_DIR/keys" "$E2E_DIR/open-keys"
    chmod 644 "$E2E_DIR/open-keys"
    umask 022
    start_pair "" DC_CACHE_SEAL_KEYS="$E2E_DIR/keys"
    shim=(LD_PRELOAD="$DC_SHIM" DC_CACHE_ADDR="$AGENT_ADDR" "$TIMEOUT")
    e2e_start_nginx C cert "" "${shim[@]}" DC_CACHE_SEAL_KEYS="$E2E_DIR/other-keys"
    e2e_start_nginx D cert "" "${shim[@]}" DC_CACHE_SEAL_KEYS="$E2E_DIR/open-keys"
    e2e_start_nginx E cert "" "${shim[@]}"
    both_ways
    for v in tls1_2 tls1_3; do
      e2e_expect_no_resume A "$PORT_A" C "$PORT_C" "$v"
      e2e_expect_no_resume A "$PORT_A" D "$PORT_D" "$v"
      e2e_expect_no_resume A "$PORT_A" E "$PORT_E" "$v"   # E stores and reads in the clear
      e2e_expect_no_resume E "$PORT_E" A "$PORT_A" "$v"
    done
    n=$(grep -c "DC_CACHE_SEAL_KEYS: keyring .*chmod 600" "$E2E_DIR/D/stderr.log")
    [ "$n" = 1 ] || { cat "$E2E_DIR/D/stderr.log" >&2; e2e_die "expected one line about D's keyring, got $n"; }
    for name in A B C; do
      ! grep -q "unsealed" "$E2E_DIR/$name/stderr.log" || e2e_die "$name said it stores unsealed"
    done
    n=$(grep -c "notice: sessions are stored unsealed" "$E2E_DIR/E/stderr.log")
    [ "$n" = 1 ] || { cat "$E2E_DIR/E/stderr.log" >&2; e2e_die "expected one unsealed notice from E, got $n"; }
    ;;

  shared_tickets)
    # DC_CACHE_TICKETS=shared: stateless tickets under keys agreed through
    # the cache. nginx's defaults (tickets on, no session cache).
    umask 077
    openssl rand -hex 32 >"$E2E_DIR/keys"
    umask 022
    tickets=(DC_CACHE_SEAL_KEYS="$E2E_DIR/keys" DC_CACHE_TICKETS=shared)
    start_pair "" "${tickets[@]}"
    # A ticket of either version issued by one instance resumes on the other.
    both_ways
    grep -q "TLS session ticket:" "$E2E_DIR/out.A.tls1_2.new" ||
      e2e_die "A issued no TLS 1.2 ticket"
    # No cache round trip for a ticket: the agent's request count stays.
    agent_requests() {
      kill -HUP "$AGENT_PID"
      e2e_wait_for "the agent's statistics" 50 grep -q "requests=" "$E2E_DIR/agent.log"
      sleep 0.2
      grep -o " requests=[0-9]*" "$E2E_DIR/agent.log" | tail -n 1 | cut -d= -f2
    }
    for v in tls1_2 tls1_3; do
      e2e_session A "$PORT_A" "$v" "$E2E_DIR/sess.many.$v"
    done
    before=$(agent_requests)
    for i in $(seq 1 50); do
      for v in tls1_2 tls1_3; do
        r=$(e2e_try_resume B "$PORT_B" "$v" "$E2E_DIR/sess.many.$v")
        [ "$r" = Reused ] || e2e_die "resumption $i ($v) on B: got '$r'"
      done
    done
    after=$(agent_requests)
    [ "$before" = "$after" ] || e2e_die "100 ticket resumptions made $((after - before)) cache requests"
    e2e_log "ok: 100 resumptions by ticket, no cache request (agent requests=$after)"
    # With the agent frozen, handshakes still complete (tickets resume).
    kill -STOP "$AGENT_PID"
    for v in tls1_2 tls1_3; do
      r=$(e2e_try_resume B "$PORT_B" "$v" "$E2E_DIR/sess.many.$v")
      [ -n "$r" ] || e2e_die "no handshake on B with the agent frozen ($v)"
      e2e_session A "$PORT_A" "$v" "$E2E_DIR/sess.frozen.$v"
    done
    kill -CONT "$AGENT_PID"
    e2e_log "ok: handshakes complete with the agent frozen"
    ;;

  ticket_epochs)
    # Two-second epochs: a ticket of the previous epoch resumes and is
    # renewed; one three epochs old is a full handshake; after dc_server
    # restarts (keys lost), the instances agree on new keys by themselves.
    umask 077
    openssl rand -hex 32 >"$E2E_DIR/keys"
    umask 022
    start_pair "" DC_CACHE_SEAL_KEYS="$E2E_DIR/keys" DC_CACHE_TICKETS=shared DC_CACHE_TICKET_EPOCH_S=2
    # Waits until the start of the next two-second epoch (plus a margin).
    next_epoch() {
      local t=${EPOCHREALTIME/./}
      local left=$(( (2000000 - t % 2000000) / 1000 + 150 ))
      sleep "$(printf '%d.%03d' $((left / 1000)) $((left % 1000)))"
    }
    for v in tls1_2 tls1_3; do
      next_epoch
      e2e_session A "$PORT_A" "$v" "$E2E_DIR/sess.prev.$v"
      next_epoch
      out=$E2E_DIR/out.renew.$v
      e2e_tls "$PORT_B" "$v" "$out" -sess_in "$E2E_DIR/sess.prev.$v" -sess_out "$E2E_DIR/sess.renewed.$v"
      [ "$(e2e_result "$out")" = Reused ] || { cat "$out" >&2; e2e_die "$v: a previous-epoch ticket did not resume"; }
      cmp -s "$E2E_DIR/sess.prev.$v" "$E2E_DIR/sess.renewed.$v" &&
        e2e_die "$v: the previous-epoch ticket was not renewed"
      e2e_log "ok: $v ticket of the previous epoch resumed and renewed"
    done
    e2e_session A "$PORT_A" tls1_2 "$E2E_DIR/sess.old"
    sleep 6.3
    r=$(e2e_try_resume B "$PORT_B" tls1_2 "$E2E_DIR/sess.old")
    [ "$r" = New ] || e2e_die "a ticket three epochs old was not a full handshake (got '$r')"
    e2e_log "ok: a ticket three epochs old is a full handshake"
    e2e_stop "$SERVER_PID"
    e2e_start_server
    next_epoch
    next_epoch
    for v in tls1_2 tls1_3; do
      e2e_expect_resume A "$PORT_A" B "$PORT_B" "$v"
    done
    e2e_log "ok: after dc_server restarted the instances agree on new keys"
    ;;

  shim_contexts)
    # Client-side contexts and connections are exactly the application's
    # (tests/e2e/shim_contexts.cc says what is checked). No cache is needed:
    # nothing here connects to it.
    [ -x "${DC_SHIM_CONTEXTS:-}" ] || e2e_die "DC_SHIM_CONTEXTS is not built"
    env LD_PRELOAD="$DC_SHIM" DC_CACHE_ADDR="UNIX:$E2E_DIR/nobody.sock" "$DC_SHIM_CONTEXTS" ||
      e2e_die "the shim changed a client-side context or connection"
    ;;

  tickets_keep)
    # DC_CACHE_TICKETS=keep leaves nginx's ticket settings alone: with its
    # default stateless tickets a TLS 1.2 session resumes only where it was
    # made (the ticket key is per instance) ...
    start_pair "" DC_CACHE_TICKETS=keep
    e2e_expect_resume A "$PORT_A" A "$PORT_A" tls1_2
    e2e_expect_no_resume A "$PORT_A" B "$PORT_B" tls1_2
    # ... and with "ssl_session_tickets off" in nginx's own configuration the
    # sessions are stateful again and shared.
    e2e_start_nginx C cert "ssl_session_tickets off;" LD_PRELOAD="$DC_SHIM" \
      DC_CACHE_ADDR="$AGENT_ADDR" "$TIMEOUT" DC_CACHE_TICKETS=keep
    e2e_start_nginx D cert "ssl_session_tickets off;" LD_PRELOAD="$DC_SHIM" \
      DC_CACHE_ADDR="$AGENT_ADDR" "$TIMEOUT" DC_CACHE_TICKETS=keep
    for v in tls1_2 tls1_3; do
      e2e_expect_resume C "$PORT_C" D "$PORT_D" "$v"
    done
    ;;

  nginx_other_cert)
    # A server with another certificate has another session id context:
    # it finds the session in the cache but OpenSSL must not resume it.
    start_pair ""
    e2e_start_nginx C other "" LD_PRELOAD="$DC_SHIM" DC_CACHE_ADDR="$AGENT_ADDR" "$TIMEOUT"
    for v in tls1_2 tls1_3; do
      sess=$E2E_DIR/sess.other.$v
      e2e_session A "$PORT_A" "$v" "$sess"
      hits=$(e2e_stat "$(e2e_server_stats "$STATS")" hits)
      r=$(e2e_try_resume C "$PORT_C" "$v" "$sess")
      [ "$r" = New ] || e2e_die "$v: a session made on A resumed on C, another certificate (got '$r')"
      # Control: C did find the session in the cache (only the context
      # refused it) ...
      line=$(e2e_server_stats "$STATS")
      (($(e2e_stat "$line" hits) > hits)) || e2e_die "$v: C did not find A's session in the cache: $line"
      e2e_log "ok: $v session made on A found in the cache by C but not resumed there"
      # ... and the cache works: a fresh session of A resumes on B.
      e2e_expect_resume A "$PORT_A" B "$PORT_B" "$v"
    done
    ;;

  redis)
    # Standalone Redis (Debian's redis-server, no persistence, an ACL user
    # allowed only the agent's commands on dc:*) behind two agents, one per
    # nginx: sessions cross both ways, TLS 1.2 and 1.3, and Redis holds them
    # under the prefix.
    e2e_need_redis
    e2e_start_redis redis
    rport=$PORT_redis
    SERVER_ADDR=REDIS:127.0.0.1:$rport
    e2e_start_agent agentA 2000 -redis-auth "$REDIS_AUTH"; AGENT_A=$AGENT_ADDR
    e2e_start_agent agentB 2000 -redis-auth "$REDIS_AUTH"; AGENT_B=$AGENT_ADDR
    e2e_start_nginx A cert "" LD_PRELOAD="$DC_SHIM" DC_CACHE_ADDR="$AGENT_A" "$TIMEOUT"
    e2e_start_nginx B cert "" LD_PRELOAD="$DC_SHIM" DC_CACHE_ADDR="$AGENT_B" "$TIMEOUT"
    both_ways
    n=$(redis-cli -p "$rport" --scan --pattern 'dc:*' | wc -l)
    ((n >= 4)) || e2e_die "Redis holds $n keys under dc:, expected at least 4"
    e2e_log "ok: sessions cross through Redis ($n keys under dc:)"
    # Shared ticket keys agreed through Redis (only ADD and GET are used):
    # tickets of C open on D and back.
    (umask 077 && openssl rand -hex 32 >"$E2E_DIR/keys")
    shared=(LD_PRELOAD="$DC_SHIM" "$TIMEOUT" DC_CACHE_SEAL_KEYS="$E2E_DIR/keys" DC_CACHE_TICKETS=shared)
    e2e_start_nginx C cert "" "${shared[@]}" DC_CACHE_ADDR="$AGENT_A"
    e2e_start_nginx D cert "" "${shared[@]}" DC_CACHE_ADDR="$AGENT_B"
    for v in tls1_2 tls1_3; do
      e2e_expect_resume C "$PORT_C" D "$PORT_D" "$v"
      e2e_expect_resume D "$PORT_D" C "$PORT_C" "$v"
    done
    redis-cli -p "$rport" --scan --pattern 'dc:dc-ticket-key/*' | grep -q . ||
      e2e_die "no ticket key in Redis"
    e2e_log "ok: shared ticket keys agreed through Redis"
    ;;

  redis_cluster)
    # A Redis Cluster of 3 masters and 3 replicas (Debian's redis-server,
    # no persistence, on every node the same ACL user with a password,
    # allowed only the agent's commands on dc:* and the slot map) behind two
    # agents, one per nginx: sessions cross both ways, TLS 1.2 and 1.3, and
    # their keys are spread over the masters by slot. Agent A is given every
    # node as a seed, agent B one replica only: the masters and their slots
    # come from the cluster itself.
    e2e_need_redis
    e2e_start_redis_cluster 3 1
    SERVER_ADDR=REDIS-CLUSTER:$REDIS_CLUSTER_SEEDS
    e2e_start_agent agentA 2000 -redis-auth "$REDIS_AUTH"; AGENT_A=$AGENT_ADDR
    replica=$(e2e_redis_replicas "$(e2e_redis_masters "${REDIS_CLUSTER_PORTS[0]}" | tail -n 1)" |
      head -n 1)
    [ -n "$replica" ] || e2e_die "no replica in the cluster"
    SERVER_ADDR=REDIS-CLUSTER:127.0.0.1:$replica
    e2e_start_agent agentB 2000 -redis-auth "$REDIS_AUTH"; AGENT_B=$AGENT_ADDR
    e2e_start_nginx A cert "" LD_PRELOAD="$DC_SHIM" DC_CACHE_ADDR="$AGENT_A" "$TIMEOUT"
    e2e_start_nginx B cert "" LD_PRELOAD="$DC_SHIM" DC_CACHE_ADDR="$AGENT_B" "$TIMEOUT"
    for i in 1 2 3; do both_ways; done
    total=0 used=0
    for p in $(e2e_redis_masters "${REDIS_CLUSTER_PORTS[0]}"); do
      k=$(redis-cli -p "$p" --scan --pattern 'dc:*' | wc -l)
      e2e_log "master on port $p holds $k keys under dc:"
      total=$((total + k))
      ((k > 0)) && used=$((used + 1))
    done
    # 12 sessions at least (3 rounds of 4), each stored once: with 3
    # masters, all of them on one has a chance of 3^-11.
    ((total >= 12)) || e2e_die "the cluster's masters hold $total keys under dc:, expected at least 12"
    ((used >= 2)) || e2e_die "the keys are on $used master(s) only, expected them spread"
    e2e_log "ok: sessions cross through the Redis Cluster ($total keys on $used masters)"
    ;;

  pool)
    # A pool of 3 dc_servers (-server three times) behind two agents, one
    # per nginx: every id goes to the same server from either agent
    # (rendezvous hashing, docs/backends.md), so sessions cross both ways,
    # TLS 1.2 and 1.3. Then kill -9 of one server: once the agents have
    # noticed, new sessions go to the next server in hash order and still
    # cross; restarted, it is used again.
    pool=()
    for n in 1 2 3; do
      e2e_start_server "pool$n" "$E2E_DIR/pool$n.stats"
      pool+=(-server "$SERVER_ADDR")
      eval "POOL_PID_$n=$SERVER_PID"
    done
    SERVER_ADDR=${pool[1]}
    e2e_start_agent agentA 2000 "${pool[@]:2}"; AGENT_A=$AGENT_ADDR; AGENT_A_PID=$AGENT_PID
    e2e_start_agent agentB 2000 "${pool[@]:2}"; AGENT_B=$AGENT_ADDR
    e2e_start_nginx A cert "" LD_PRELOAD="$DC_SHIM" DC_CACHE_ADDR="$AGENT_A" "$TIMEOUT"
    e2e_start_nginx B cert "" LD_PRELOAD="$DC_SHIM" DC_CACHE_ADDR="$AGENT_B" "$TIMEOUT"
    for i in 1 2 3; do both_ways; done
    adds=0 used=0
    for n in 1 2 3; do
      line=$(e2e_server_stats "$E2E_DIR/pool$n.stats") || e2e_die "pool$n wrote no statistics"
      a=$(e2e_stat "$line" add_ok)
      adds=$((adds + a))
      ((a > 0)) && used=$((used + 1))
    done
    ((adds >= 12)) || e2e_die "the pool stored $adds sessions, expected at least 12"
    ((used >= 2)) || e2e_die "only $used server(s) of the pool stored sessions"
    e2e_log "ok: $adds sessions stored over $used servers of the pool"
    kill -9 "$POOL_PID_2"
    for a in agentA agentB; do
      e2e_wait_for "$a to notice" 100 grep -q "lost the server" "$E2E_DIR/$a.log" ||
        e2e_die "$a did not notice the killed server"
    done
    for i in 1 2 3; do both_ways; done
    e2e_log "ok: sessions cross with one server of the pool killed"
    e2e_start_server pool2 "$E2E_DIR/pool2.stats"
    # Both agents back on pool2 (a line after the one about its loss), or
    # for that moment they disagree where an id goes.
    reconnected() {
      awk -v lost="lost the server ${pool[3]}" -v back="connected to the server ${pool[3]}" '
        index($0, lost) { l = 1 } l && index($0, back) { ok = 1 } END { exit !ok }' "$1"
    }
    for a in agentA agentB; do
      e2e_wait_for "$a to reconnect" 100 reconnected "$E2E_DIR/$a.log" ||
        e2e_die "$a did not reconnect to the restarted server"
    done
    # Sessions cross again within 5 s of the return (the first may miss
    # while the two agents' views of the pool converge: CI saw it, on a
    # loaded machine, about one run in three), then every one does.
    ok=0
    for i in $(seq 1 25); do
      sess=$E2E_DIR/sess.back
      e2e_session A "$PORT_A" tls1_2 "$sess"
      if [ "$(e2e_try_resume B "$PORT_B" tls1_2 "$sess")" = Reused ]; then ok=1; break; fi
      e2e_log "attempt $i after the return: the session made on A did not resume on B"
      sleep 0.2
    done
    [ $ok = 1 ] || e2e_die "sessions did not cross again within 5 s of the server's return"
    e2e_log "ok: sessions cross again after the server's return (attempt $i)"
    for i in 1 2 3 4; do both_ways; done
    line=$(e2e_server_stats "$E2E_DIR/pool2.stats") || e2e_die "pool2 wrote no statistics"
    e2e_log "ok: the restarted server: $line"
    ;;

  agent_outage)
    start_pair ""
    e2e_expect_resume A "$PORT_A" B "$PORT_B" tls1_2
    e2e_stop "$AGENT_PID"
    # Every connection still completes, as a full handshake.
    for v in tls1_2 tls1_3; do
      e2e_expect_no_resume A "$PORT_A" B "$PORT_B" "$v"
      e2e_expect_no_resume B "$PORT_B" A "$PORT_A" "$v"
    done
    e2e_start_agent
    # Nothing restarted: once the workers' back-off ends, sessions are shared
    # again. Poll with fresh sessions (those made during the back-off were
    # never stored); the bound only matters when it never recovers.
    for v in tls1_2 tls1_3; do
      ok=0
      for i in $(seq 1 100); do
        sess=$E2E_DIR/sess.recover.$v
        e2e_session A "$PORT_A" "$v" "$sess"
        if [ "$(e2e_try_resume B "$PORT_B" "$v" "$sess")" = Reused ]; then ok=1; break; fi
        sleep 0.2
      done
      [ $ok = 1 ] || e2e_die "$v: resumption did not come back after the agent returned"
      e2e_log "ok: $v resumption works again after the agent came back (attempt $i)"
    done
    e2e_expect_resume B "$PORT_B" A "$PORT_A" tls1_3
    ;;

  server_outage)
    # dc_server down behind a running agent: the agent answers DISCONNECTED
    # at once; when the server returns, the agent reconnects by itself.
    start_pair ""
    e2e_stop "$SERVER_PID"
    # "At once": each connection completes within 1000 ms, many times what
    # it needs but far below the deadlines a request waiting on the absent
    # server would cost it (the agent's 2000 ms here, the shim's 5000 ms).
    # Several rounds, 1.1 s apart, so that each nginx worker asks the agent
    # even if a slow answer opened its breaker (a DISCONNECTED given at once
    # does not).
    for i in 1 2; do
      for v in tls1_2 tls1_3; do
        timed_no_resume A "$PORT_A" B "$PORT_B" "$v" 1000
      done
      sleep 1.1
    done
    e2e_start_server
    ok=0
    for i in $(seq 1 100); do
      sess=$E2E_DIR/sess.recover
      e2e_session A "$PORT_A" tls1_3 "$sess"
      if [ "$(e2e_try_resume B "$PORT_B" tls1_3 "$sess")" = Reused ]; then ok=1; break; fi
      sleep 0.2
    done
    [ $ok = 1 ] || e2e_die "resumption did not come back after dc_server returned"
    e2e_log "ok: resumption works again after dc_server came back (attempt $i)"
    ;;

  shim_off)
    # Control: the same two nginx without DC_CACHE_ADDR (shim loaded) and
    # without the shim never resume each other's sessions, and the shim
    # writes nothing.
    e2e_start_server server "$STATS"
    e2e_start_agent
    e2e_start_nginx A cert "" LD_PRELOAD="$DC_SHIM"
    e2e_start_nginx B cert ""
    for v in tls1_2 tls1_3; do
      e2e_expect_no_resume A "$PORT_A" B "$PORT_B" "$v"
    done
    # With tickets (nginx's default, untouched) A resumes its own sessions.
    e2e_expect_resume A "$PORT_A" A "$PORT_A" tls1_2
    ! grep -q distcache "$E2E_DIR/A/stderr.log" "$E2E_DIR/A/error.log" ||
      e2e_die "the shim wrote something with DC_CACHE_ADDR unset"
    cache_unused "DC_CACHE_ADDR was unset"
    control_pair "" LD_PRELOAD="$DC_SHIM" DC_CACHE_ADDR="$AGENT_ADDR" "$TIMEOUT"
    ;;

  server_frozen)
    # dc_server frozen (SIGSTOP) behind a running agent: the connection is
    # up but nothing is answered. The agent answers each request
    # DISCONNECTED at its own deadline (-timeout 100 here), long before the
    # shim's (5000 ms): every connection completes as a full handshake
    # within 1000 ms, far below the shim's deadline and the agent's stall
    # bound (2000 ms, after which it recycles the connection and answers
    # anyway), and the agent counts the requests that expired.
    e2e_start_server server "$STATS"
    e2e_start_agent agent 100
    env=(LD_PRELOAD="$DC_SHIM" DC_CACHE_ADDR="$AGENT_ADDR" "$TIMEOUT")
    e2e_start_nginx A cert "" "${env[@]}"
    e2e_start_nginx B cert "" "${env[@]}"
    e2e_expect_resume A "$PORT_A" B "$PORT_B" tls1_2
    kill -STOP "$SERVER_PID"
    for i in 1 2; do
      for v in tls1_2 tls1_3; do
        timed_no_resume A "$PORT_A" B "$PORT_B" "$v" 1000
      done
      sleep 1.1  # the shim's back-off after DISCONNECTED ends: ask the agent again
    done
    line=$(e2e_agent_stats) || e2e_die "no statistics from the agent"
    (($(e2e_stat "$line" disconnected_deadline) >= 1)) || e2e_die "the agent expired no request: $line"
    e2e_log "ok: the agent answered at its deadline: $(grep -o ' disconnected_deadline=[0-9]*' <<<"$line")"
    kill -CONT "$SERVER_PID"
    ;;

  shim_bad_config)
    # Malformed values: one line each on stderr, safe defaults, nginx starts.
    e2e_start_server
    e2e_start_agent
    e2e_start_nginx A cert "" LD_PRELOAD="$DC_SHIM" DC_CACHE_ADDR="$AGENT_ADDR" "$TIMEOUT" \
      DC_CACHE_TICKETS=maybe DC_CACHE_LOG=loud
    e2e_start_nginx B cert "" LD_PRELOAD="$DC_SHIM" DC_CACHE_ADDR="$AGENT_ADDR" "$TIMEOUT"
    # The default ticket policy (stateful) applies: sessions cross.
    e2e_expect_resume A "$PORT_A" B "$PORT_B" tls1_2
    e2e_expect_resume B "$PORT_B" A "$PORT_A" tls1_3
    for var in DC_CACHE_TICKETS DC_CACHE_LOG; do
      n=$(grep -c "$var=" "$E2E_DIR/A/stderr.log")
      [ "$n" = 1 ] || e2e_die "expected one line about $var, got $n"
    done
    # A malformed deadline: one line, and the default deadline (100 ms) is
    # used. Retried, since a loaded machine may miss 100 ms now and then.
    e2e_start_nginx C cert "" LD_PRELOAD="$DC_SHIM" DC_CACHE_ADDR="$AGENT_ADDR" \
      DC_CACHE_TIMEOUT_MS=soon
    n=$(grep -c "DC_CACHE_TIMEOUT_MS=" "$E2E_DIR/C/stderr.log")
    [ "$n" = 1 ] || e2e_die "expected one line about DC_CACHE_TIMEOUT_MS, got $n"
    ok=0
    for i in $(seq 1 20); do
      sess=$E2E_DIR/sess.default-deadline
      e2e_session C "$PORT_C" tls1_3 "$sess"
      if [ "$(e2e_try_resume B "$PORT_B" tls1_3 "$sess")" = Reused ]; then ok=1; break; fi
    done
    [ $ok = 1 ] || e2e_die "with DC_CACHE_TIMEOUT_MS malformed the cache did not work"
    # A malformed address: one line, the cache is off, the server works.
    e2e_start_nginx D cert "" LD_PRELOAD="$DC_SHIM" DC_CACHE_ADDR="TCP:nowhere"
    n=$(grep -c "DC_CACHE_ADDR=" "$E2E_DIR/D/stderr.log")
    [ "$n" = 1 ] || e2e_die "expected one line about DC_CACHE_ADDR, got $n"
    e2e_expect_no_resume A "$PORT_A" D "$PORT_D" tls1_2
    e2e_log "ok: malformed settings gave one line each and safe defaults"
    ;;

  example_server)
    # The explicit API (dc_ssl.h): two example servers share sessions; one
    # with another certificate does not resume them.
    [ -x "${DC_EXAMPLE:-}" ] || { echo "SKIP: dc_example_server is not built"; exit 77; }
    e2e_start_server
    e2e_start_agent
    e2e_start_example X cert -timeout 5000
    e2e_start_example Y cert -timeout 5000
    e2e_start_example Z other -timeout 5000
    for v in tls1_2 tls1_3; do
      e2e_expect_resume X "$PORT_X" Y "$PORT_Y" "$v"
      e2e_expect_resume Y "$PORT_Y" X "$PORT_X" "$v"
      e2e_expect_no_resume X "$PORT_X" Z "$PORT_Z" "$v"
    done
    ;;

  secure)
    # The recommended setup (issue 14's "Done when"): two nginx that verify
    # client certificates (ssl_verify_client on), the shim with a keyring,
    # each behind its own agent speaking TLS with a client certificate to a
    # TLS dc_server. Sessions resume across the instances (TLS 1.2, 1.3);
    # what dc_server holds for a session contains neither its master key
    # nor the client's certificate (read back through a third authorized
    # agent with a raw GET); an agent whose certificate is not from the
    # cluster's CA gets nothing. (Replaying a stolen entry and injecting a
    # forged or plaintext one: tests/e2e/test_ssl_api.cc, sections 16, 18.)
    command -v python3 >/dev/null || { echo "SKIP: python3 is not installed (the raw GET)"; exit 77; }
    ca() {  # NAME: a self-signed CA
      openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj "/CN=$1" \
        -keyout "$E2E_DIR/$1.key" -out "$E2E_DIR/$1.pem" >/dev/null 2>&1 || e2e_die "openssl req failed"
    }
    issue() {  # NAME CN CA [SAN]: a key and certificate signed by CA
      local ext=()
      [ -n "${4:-}" ] && { printf 'subjectAltName=%s\n' "$4" >"$E2E_DIR/$1.ext"; ext=(-extfile "$E2E_DIR/$1.ext"); }
      openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$2" \
        -keyout "$E2E_DIR/$1.key" -out "$E2E_DIR/$1.csr" >/dev/null 2>&1 &&
        openssl x509 -req -in "$E2E_DIR/$1.csr" -CA "$E2E_DIR/$3.pem" -CAkey "$E2E_DIR/$3.key" \
          -CAcreateserial -days 2 "${ext[@]}" -out "$E2E_DIR/$1.pem" >/dev/null 2>&1 ||
        e2e_die "cannot issue $1"
    }
    ca cluster-ca; ca rogue-ca; ca users-ca
    issue dc-server localhost cluster-ca "DNS:localhost,IP:127.0.0.1"
    for a in agentA agentB agentC; do issue "$a" "$a" cluster-ca; done
    issue rogue rogue rogue-ca
    issue user alice users-ca
    umask 077
    openssl rand -hex 32 >"$E2E_DIR/keys"
    umask 022
    tls() { echo -tls-cert "$E2E_DIR/$1.pem" -tls-key "$E2E_DIR/$1.key" -tls-ca "$E2E_DIR/cluster-ca.pem"; }
    # dc_server: TLS on an IP port (its UNIX socket, plain, is not used here).
    for try in 1 2 3 4 5; do
      port=$(e2e_free_listen_port)
      # shellcheck disable=SC2046  # tls prints separate words on purpose
      e2e_start_server server "$STATS" -listen "IP:127.0.0.1:$port" $(tls dc-server)
      e2e_port_open "$port" && kill -0 "$SERVER_PID" 2>/dev/null && break
      e2e_stop "$SERVER_PID"
    done
    SERVER_ADDR=IP:127.0.0.1:$port
    # shellcheck disable=SC2046
    e2e_start_agent agentA 2000 $(tls agentA); AGENT_A=$AGENT_ADDR
    # shellcheck disable=SC2046
    e2e_start_agent agentB 2000 $(tls agentB); AGENT_B=$AGENT_ADDR
    # shellcheck disable=SC2046
    e2e_start_agent agentC 2000 $(tls agentC); AGENT_C=$AGENT_ADDR
    # shellcheck disable=SC2046
    e2e_start_agent rogue 2000 -tls-cert "$E2E_DIR/rogue.pem" -tls-key "$E2E_DIR/rogue.key" \
      -tls-ca "$E2E_DIR/cluster-ca.pem"; AGENT_ROGUE=$AGENT_ADDR
    verify="ssl_verify_client on; ssl_client_certificate $E2E_DIR/users-ca.pem;"
    seal=DC_CACHE_SEAL_KEYS="$E2E_DIR/keys"
    e2e_start_nginx A cert "$verify" LD_PRELOAD="$DC_SHIM" DC_CACHE_ADDR="$AGENT_A" "$TIMEOUT" "$seal"
    e2e_start_nginx B cert "$verify" LD_PRELOAD="$DC_SHIM" DC_CACHE_ADDR="$AGENT_B" "$TIMEOUT" "$seal"
    E2E_TLS_ARGS=(-cert "$E2E_DIR/user.pem" -key "$E2E_DIR/user.key")
    # The agents' upstreams are up once a session crosses; poll, they
    # connect on their own.
    e2e_wait_for "the agents' TLS connections" 100 \
      grep -q "uptime_ms=" "$STATS"
    both_ways
    # Control: nginx does verify clients (without a certificate: no answer).
    with_cert=("${E2E_TLS_ARGS[@]}")
    E2E_TLS_ARGS=()
    e2e_tls "$PORT_A" tls1_3 "$E2E_DIR/out.nocert"
    grep -q "CONNECTED" "$E2E_DIR/out.nocert" && ! e2e_answered A "$E2E_DIR/out.nocert" ||
      { cat "$E2E_DIR/out.nocert" >&2; e2e_die "nginx A answered a client without a certificate"; }
    E2E_TLS_ARGS=("${with_cert[@]}")
    # A raw GET (PROTOCOL.md) on an agent's socket: the payload to OUT.
    cat >"$E2E_DIR/dc_get.py" <<'PY'
import socket, sys
path, sid, out = sys.argv[1], bytes.fromhex(sys.argv[2]), sys.argv[3]
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(10)
s.connect(path)
s.sendall((0x00110000).to_bytes(4, "big") + b"\0" + (7).to_bytes(4, "big") + bytes([0, 1, 1]) +
          len(sid).to_bytes(2, "big") + sid)
buf, payload = b"", b""
while True:
    while len(buf) < 14:
        chunk = s.recv(65536)
        if not chunk:
            sys.exit("connection closed")
        buf += chunk
    n = int.from_bytes(buf[12:14], "big")
    while len(buf) < 14 + n:
        buf += s.recv(65536)
    payload += buf[14:14 + n]
    complete, buf = buf[11], buf[14 + n:]
    if complete:
        break
open(out, "wb").write(payload)
PY
    dc_get() { python3 "$E2E_DIR/dc_get.py" "${1#UNIX:}" "$2" "$3" || e2e_die "raw GET on $1 failed"; }
    sess=$E2E_DIR/sess.secure
    e2e_session A "$PORT_A" tls1_2 "$sess"
    text=$(openssl sess_id -in "$sess" -noout -text)
    sid=$(sed -n 's/^ *Session-ID: *//p' <<<"$text")
    master=$(sed -n 's/^ *Master-Key: *//p' <<<"$text")
    [ -n "$sid" ] && [ -n "$master" ] || e2e_die "no Session-ID or Master-Key in the saved session"
    entry=$E2E_DIR/entry.bin
    dc_get "$AGENT_C" "$sid" "$entry"
    hex=$(xxd -p "$entry" | tr -d '\n')
    [ "${#hex}" -gt 200 ] || e2e_die "dc_server did not hold the session (GET gave '$hex')"
    [ "${hex:0:2}" = d1 ] || e2e_die "the stored entry is not sealed (first byte 0x${hex:0:2})"
    cert_hex=$(openssl x509 -in "$E2E_DIR/user.pem" -outform DER | xxd -p | tr -d '\n')
    cn_hex=$(printf alice | xxd -p)
    ! grep -qi "${master,,}" <<<"$hex" || e2e_die "the stored entry contains the master key"
    ! grep -qi "$cert_hex" <<<"$hex" || e2e_die "the stored entry contains the client certificate"
    ! grep -qi "$cn_hex" <<<"$hex" || e2e_die "the stored entry contains the client's name"
    e2e_log "ok: dc_server holds ${#hex} hex digits for the session, sealed (0xD1): no master key, no client certificate"
    r=$(e2e_try_resume B "$PORT_B" tls1_2 "$sess")
    [ "$r" = Reused ] || e2e_die "the session read back did not resume on B (got '$r')"
    # The agent with a certificate from another CA gets nothing.
    printf -v got '%s' ""
    dc_get "$AGENT_ROGUE" "$sid" "$E2E_DIR/rogue.bin"
    got=$(xxd -p "$E2E_DIR/rogue.bin")
    [ "$got" = 02 ] || e2e_die "the rogue agent was answered '$got', not DISCONNECTED"
    grep -q "TLS handshake failed" "$E2E_DIR/rogue.log" || e2e_die "the rogue agent did not say why"
    e2e_wait_for "dc_server's refusal line" 150 grep -q "refused .*TLS client" "$E2E_DIR/server.log" ||
      e2e_die "dc_server did not log the refused agent"
    line=$(e2e_server_stats "$STATS")
    (($(e2e_stat "$line" tls_refused) >= 1)) || e2e_die "dc_server counted no refusal: $line"
    e2e_log "ok: an agent with another CA's certificate got DISCONNECTED; dc_server refused it"
    ;;

  *)
    e2e_die "unknown scenario $scenario"
    ;;
esac
echo "PASS: $scenario"
exit 0
