# Shared helpers of the end-to-end tests and scripts/demo.sh: start dc_server,
# the dc_client agent, nginx and the example server on a temporary directory
# and free loopback ports, run `openssl s_client`, and stop everything that
# was started (by pid) when the caller exits.
#
# Source it from bash, then set: DC_SERVER, DC_AGENT, DC_SHIM (paths; the
# example server in DC_EXAMPLE when used). Every start_* waits until the
# process is ready by looking at something the process does once it listens
# (a pidfile, a line of output), never by sleeping a fixed time.

E2E_PIDS=()        # processes to stop at exit, in start order
E2E_DIR=""         # the temporary directory
E2E_KEEP=${E2E_KEEP:-0}  # 1: keep the directory (for debugging)
# E2E_PREFIX: name prefix of the temporary directory (default dc-e2e)
# E2E_ANSWER: what a server's answer must contain, a printf format given the
#   server's NAME (default "hello from %s"); see e2e_answered.
# E2E_REQUEST: what e2e_tls sends, with printf's backslash escapes (unset
#   or empty: 'GET / HTTP/1.0\r\n\r\n').
# E2E_NGINX_CONF: the function that writes an nginx configuration for
#   e2e_start_nginx, called as FN NAME PORT CERT EXTRA (default e2e_nginx_conf).

# The nginx configuration (nginx_tls_conf), shared with bench/.
. "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib/nginx.sh"

e2e_log() { printf '%s\n' "$*" >&2; }
e2e_die() { e2e_log "FAIL: $*"; exit 1; }

# e2e_setup: makes the temporary directory and installs the exit trap.
e2e_setup() {
  E2E_DIR=$(mktemp -d "/tmp/${E2E_PREFIX:-dc-e2e}.XXXXXX") || e2e_die "mktemp failed"
  # nginx workers run as an unprivileged user: let them reach the sockets.
  chmod 755 "$E2E_DIR"
  trap e2e_cleanup EXIT
  trap 'exit 130' INT TERM HUP
}

# Stops every process started here, newest first, and removes the directory.
e2e_cleanup() {
  local i pid
  for ((i = ${#E2E_PIDS[@]} - 1; i >= 0; i--)); do
    pid=${E2E_PIDS[i]}
    kill -TERM "$pid" 2>/dev/null || continue
    kill -CONT "$pid" 2>/dev/null  # one a test froze must see its SIGTERM
  done
  for pid in "${E2E_PIDS[@]}"; do
    e2e_wait_exit "$pid" 100 || kill -KILL "$pid" 2>/dev/null
  done
  E2E_PIDS=()
  if [ -n "$E2E_DIR" ] && [ "$E2E_KEEP" != 1 ]; then rm -rf "$E2E_DIR"; fi
}

# e2e_wait_exit PID TENTHS: waits up to TENTHS/10 s for PID to end (bash
# reaps its background children itself), then collects its status.
e2e_wait_exit() {
  local pid=$1 n=$2
  while kill -0 "$pid" 2>/dev/null; do
    ((n-- > 0)) || return 1
    sleep 0.1
  done
  wait "$pid" 2>/dev/null
  return 0
}

# e2e_wait_for WHAT TENTHS CMD...: polls CMD until it succeeds, for at most
# TENTHS/10 s (a generous bound: it only matters when something is broken).
e2e_wait_for() {
  local what=$1 n=$2
  shift 2
  until "$@"; do
    ((n-- > 0)) || { e2e_log "timed out waiting for $what"; return 1; }
    sleep 0.1
  done
}

e2e_forget_pid() {
  local pid=$1 i
  for i in "${!E2E_PIDS[@]}"; do [ "${E2E_PIDS[i]}" = "$pid" ] && unset 'E2E_PIDS[i]'; done
  E2E_PIDS=("${E2E_PIDS[@]}")
  return 0
}

# e2e_stop PID: stops one process started here and waits for it.
e2e_stop() {
  local pid=$1
  kill -TERM "$pid" 2>/dev/null
  e2e_wait_exit "$pid" 100 || { kill -KILL "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; }
  e2e_forget_pid "$pid"
}

# A free TCP port on 127.0.0.1 (not listening now; a start that loses a race
# for it is retried by the caller with another one).
e2e_free_port() {
  local p
  while :; do
    p=$((20000 + RANDOM % 40000))
    # bash's /dev/tcp connect fails at once on a free loopback port.
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return; fi
  done
}

# e2e_start_server NAME [STATS [FLAGS...]]: starts dc_server on
# UNIX:$E2E_DIR/NAME.sock (plus what FLAGS add, e.g. another -listen); with
# STATS (may be ""), it rewrites its counters to that file every 50 ms (read
# them with e2e_server_stats). Sets SERVER_PID and SERVER_ADDR.
e2e_start_server() {
  local name=${1:-server} stats=()
  local pidfile=$E2E_DIR/$name.pid
  [ -n "${2:-}" ] && stats=(-stats "$2" -stats-interval 50)
  shift 2 2>/dev/null || shift $#
  rm -f "$pidfile"
  SERVER_ADDR=UNIX:$E2E_DIR/$name.sock
  "$DC_SERVER" -listen "$SERVER_ADDR" -sockperms 0666 -pidfile "$pidfile" "${stats[@]}" "$@" \
    >>"$E2E_DIR/$name.log" 2>&1 &
  SERVER_PID=$!
  E2E_PIDS+=("$SERVER_PID")
  e2e_wait_for "dc_server to listen" 100 test -s "$pidfile" ||
    { cat "$E2E_DIR/$name.log" >&2; e2e_die "dc_server did not start"; }
}

# e2e_start_agent NAME [TIMEOUT_MS [FLAGS...]]: starts the dc_client agent
# on UNIX:$E2E_DIR/NAME.sock, connected to $SERVER_ADDR, with the deadline
# TIMEOUT_MS (default 2000) and FLAGS (e.g. -tls-*). Sets AGENT_PID and
# AGENT_ADDR.
e2e_start_agent() {
  local name=${1:-agent} timeout=${2:-2000}
  local pidfile=$E2E_DIR/$name.pid
  shift 2 2>/dev/null || shift $#
  rm -f "$pidfile"
  AGENT_ADDR=UNIX:$E2E_DIR/$name.sock
  "$DC_AGENT" -listen "$AGENT_ADDR" -server "$SERVER_ADDR" -sockperms 0666 -retry 200 \
    -timeout "$timeout" -pidfile "$pidfile" "$@" >>"$E2E_DIR/$name.log" 2>&1 &
  AGENT_PID=$!
  E2E_PIDS+=("$AGENT_PID")
  e2e_wait_for "dc_client to listen" 100 test -s "$pidfile" ||
    { cat "$E2E_DIR/$name.log" >&2; e2e_die "dc_client did not start"; }
}

# e2e_server_stats STATS: the counters line of the dc_server started with
# STATS, as written after this call began (so every operation that was
# answered before is in it). Fails after 10 s without a new one.
e2e_server_stats() {
  local file=$1 first line n=100
  first=$(cat "$file" 2>/dev/null)
  while :; do
    line=$(cat "$file" 2>/dev/null)
    # uptime_ms comes first and grows: another line was written.
    [ -n "$line" ] && [ "$line" != "$first" ] && break
    ((n-- > 0)) || { e2e_log "no new line in $file"; return 1; }
    sleep 0.05
  done
  printf '%s\n' "$line"
}

# e2e_agent_stats [NAME]: the counters line of the agent started as NAME
# (default agent, the last started: $AGENT_PID), asked for now with SIGHUP.
e2e_agent_stats() {
  local log=$E2E_DIR/${1:-agent}.log before n=100
  before=$(grep -c "uptime_ms=" "$log")
  kill -HUP "$AGENT_PID" || return 1
  until [ "$(grep -c "uptime_ms=" "$log")" -gt "$before" ]; do
    ((n-- > 0)) || { e2e_log "the agent printed no statistics"; return 1; }
    sleep 0.05
  done
  grep "uptime_ms=" "$log" | tail -n 1
}

# e2e_stat LINE KEY: the number after " KEY=" in a counters line.
e2e_stat() { sed -n "s/.* $2=\([0-9]*\).*/\1/p" <<<"$1"; }

# e2e_now_ms: a clock in milliseconds (bash's $EPOCHREALTIME, no process).
e2e_now_ms() { local t=${EPOCHREALTIME/[.,]/}; echo $((t / 1000)); }

# e2e_nginx_conf NAME PORT CERT EXTRA: writes $E2E_DIR/NAME/nginx.conf for a
# server on 127.0.0.1:PORT with certificate CERT (CERT.pem, CERT.key) and the
# directives EXTRA in its server block. It answers "hello from NAME".
e2e_nginx_conf() {
  nginx_tls_conf "$E2E_DIR/$1" "$2" "$E2E_DIR/$3.pem" "$E2E_DIR/$3.key" "hello from $1" \
    "worker_processes 2;
events { worker_connections 256; }" "$4"
}

# e2e_start_nginx NAME CERT EXTRA [VAR=VALUE...]: starts nginx (as the
# calling user; root makes its workers drop privileges as in production) on a
# free port, with the environment variables given (e.g. LD_PRELOAD, DC_*).
# Retries with another port when the chosen one was taken meanwhile.
# Sets PORT_<NAME> and PID_<NAME>.
e2e_start_nginx() {
  local name=$1 cert=$2 extra=$3 try port pid d=$E2E_DIR/$1
  shift 3
  for try in 1 2 3 4 5; do
    port=$(e2e_free_port)
    "${E2E_NGINX_CONF:-e2e_nginx_conf}" "$name" "$port" "$cert" "$extra"
    rm -f "$d/nginx.pid"
    # stderr.log holds this attempt only: tests count the shim's lines in it.
    env "$@" nginx -p "$d" -c "$d/nginx.conf" -e "$d/error.log" \
      -g "daemon off; pid $d/nginx.pid; error_log $d/error.log info;" >"$d/stderr.log" 2>&1 &
    pid=$!
    E2E_PIDS+=("$pid")  # at once: an interruption now must stop it too
    # nginx writes its pidfile once its listening sockets are open.
    until [ -s "$d/nginx.pid" ] || ! kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
    if [ -s "$d/nginx.pid" ] && kill -0 "$pid" 2>/dev/null; then
      printf -v "PORT_$name" '%s' "$port"
      printf -v "PID_$name" '%s' "$pid"
      return 0
    fi
    wait "$pid" 2>/dev/null
    e2e_forget_pid "$pid"
    grep -q "Address already in use" "$d/error.log" "$d/stderr.log" 2>/dev/null ||
      { cat "$d/stderr.log" "$d/error.log" >&2 2>/dev/null; e2e_die "nginx $name did not start"; }
  done
  e2e_die "nginx $name: no free port after 5 tries"
}

# e2e_port_open PORT: true when something accepts connections on
# 127.0.0.1:PORT (bash's /dev/tcp; the connection is closed at once).
e2e_port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# e2e_free_listen_port: like e2e_free_port, but below the kernel's ephemeral
# port range when there is room. On a busy host client sockets, and their
# TIME-WAIT remains, hold ports of that range, and a server cannot bind such
# a port even though nothing listens on it.
e2e_free_listen_port() {
  local lo p base=10000 span
  read -r lo _ </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || lo=0
  span=$((${lo:-0} - base))
  # No room below it: e2e_free_port's range.
  if [ "$span" -lt 2000 ]; then base=20000 span=40000; fi
  while :; do
    p=$((base + RANDOM % span))
    e2e_port_open "$p" || { echo "$p"; return; }
  done
}

# e2e_start_listener NAME START_FN [TENTHS]: starts a server on a free port.
# START_FN NAME PORT writes the server's configuration under $E2E_DIR/NAME
# (made here) and starts exactly one process in the background, with its
# stdout and stderr in $E2E_DIR/NAME/stderr.log. Waits, at most TENTHS/10 s
# (default 300), until that process accepts connections on PORT; when it
# ends first and its output says the address was in use, tries another port.
# Sets PORT_<NAME> and PID_<NAME>.
e2e_start_listener() {
  local name=$1 fn=$2 tenths=${3:-300} port pid n d=$E2E_DIR/$1
  mkdir -p "$d"
  for _ in 1 2 3 4 5; do
    port=$(e2e_free_listen_port)
    "$fn" "$name" "$port"
    pid=$!
    E2E_PIDS+=("$pid")
    n=$tenths
    until e2e_port_open "$port" || ! kill -0 "$pid" 2>/dev/null; do
      ((n-- > 0)) || { cat "$d/stderr.log" >&2; e2e_die "$name did not listen on port $port"; }
      sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
      printf -v "PORT_$name" '%s' "$port"
      printf -v "PID_$name" '%s' "$pid"
      return 0
    fi
    wait "$pid" 2>/dev/null
    e2e_forget_pid "$pid"
    grep -qi "address already in use\|address in use" "$d"/*.log 2>/dev/null ||
      { cat "$d"/*.log >&2 2>/dev/null; e2e_die "$name did not start"; }
    e2e_log "$name: port $port was taken meanwhile; trying another ($(grep -hi "in use" "$d"/*.log | head -n 1))"
  done
  e2e_die "$name: no free port after 5 tries"
}

# e2e_start_example NAME CERT [ARGS...]: starts the example server with the
# explicit API on a free port, cache $AGENT_ADDR. Sets PORT_<NAME>.
e2e_start_example() {
  local name=$1 cert=$2 try port pid log=$E2E_DIR/$1.log
  shift 2
  for try in 1 2 3 4 5; do
    port=$(e2e_free_port)
    : >"$log"
    "$DC_EXAMPLE" -listen "127.0.0.1:$port" -cert "$E2E_DIR/$cert.pem" -key "$E2E_DIR/$cert.key" \
      -cache "$AGENT_ADDR" -name "$name" "$@" >>"$log" 2>&1 &
    pid=$!
    E2E_PIDS+=("$pid")
    until grep -q "listening on" "$log" || ! kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
    if kill -0 "$pid" 2>/dev/null; then
      printf -v "PORT_$name" '%s' "$port"
      return 0
    fi
    wait "$pid" 2>/dev/null
    e2e_forget_pid "$pid"
    grep -q "cannot listen" "$log" || { cat "$log" >&2; e2e_die "example $name did not start"; }
  done
  e2e_die "example $name: no free port after 5 tries"
}

# e2e_make_cert NAME CN: a self-signed certificate $E2E_DIR/NAME.pem + .key.
e2e_make_cert() {
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj "/CN=$2" \
    -keyout "$E2E_DIR/$1.key" -out "$E2E_DIR/$1.pem" >/dev/null 2>&1 ||
    e2e_die "openssl req failed"
}

# e2e_tls PORT VERSION OUT [s_client args...]: one TLS connection with
# `openssl s_client` (tls1_2 or tls1_3), sending an HTTP/1.0 request and
# reading until the server closes, so that TLS 1.3 tickets (sent after the
# handshake) are received before it exits. Output in OUT. The array
# E2E_TLS_ARGS, when set, adds s_client arguments to every connection
# (e.g. a client certificate).
e2e_tls() {
  local port=$1 ver=$2 out=$3
  shift 3
  printf '%b' "${E2E_REQUEST:-GET / HTTP/1.0\r\n\r\n}" |
    timeout 30 openssl s_client -connect "127.0.0.1:$port" -servername localhost "-$ver" \
      -ign_eof ${E2E_TLS_ARGS[@]+"${E2E_TLS_ARGS[@]}"} "$@" >"$out" 2>&1
}

# e2e_result OUT: "New" or "Reused" (what s_client printed), "" if neither.
e2e_result() { sed -n 's/^\(New\|Reused\), .*/\1/p' "$1" | head -n 1; }

# e2e_answered NAME OUT: true when OUT holds NAME's answer (E2E_ANSWER).
e2e_answered() {
  local want
  # shellcheck disable=SC2059  # the format is the caller's on purpose
  printf -v want "${E2E_ANSWER:-hello from %s}" "$1"
  grep -qF -- "$want" "$2"
}

# e2e_session NAME PORT VERSION SESS: makes a new session on NAME and saves
# it in SESS; fails unless the handshake was full and NAME answered.
e2e_session() {
  local name=$1 port=$2 ver=$3 sess=$4 out=$E2E_DIR/out.$1.$3.new
  rm -f "$sess"
  e2e_tls "$port" "$ver" "$out" -sess_out "$sess"
  e2e_answered "$name" "$out" || { cat "$out" >&2; e2e_die "$name ($ver) did not answer"; }
  [ "$(e2e_result "$out")" = New ] || { cat "$out" >&2; e2e_die "$name ($ver): expected a new session"; }
  [ -s "$sess" ] || e2e_die "$name ($ver): s_client saved no session"
}

# e2e_try_resume NAME PORT VERSION SESS: offers SESS to NAME; prints New or
# Reused. Fails when NAME did not answer (a failed connection is never OK).
e2e_try_resume() {
  local name=$1 port=$2 ver=$3 sess=$4 out=$E2E_DIR/out.$1.$3.resume
  e2e_tls "$port" "$ver" "$out" -sess_in "$sess"
  e2e_answered "$name" "$out" || { cat "$out" >&2; e2e_die "$name ($ver) did not answer"; }
  e2e_result "$out"
}

# e2e_expect_resume FROM FROM_PORT TO TO_PORT VERSION: a session made on FROM
# resumes on TO.
e2e_expect_resume() {
  local sess=$E2E_DIR/sess.$1.$5 r
  e2e_session "$1" "$2" "$5" "$sess"
  r=$(e2e_try_resume "$3" "$4" "$5" "$sess")
  [ "$r" = Reused ] || e2e_die "$5: a session made on $1 did not resume on $3 (got '$r')"
  e2e_log "ok: $5 session made on $1 resumed on $3"
}

# e2e_expect_no_resume FROM FROM_PORT TO TO_PORT VERSION: the opposite.
e2e_expect_no_resume() {
  local sess=$E2E_DIR/sess.$1.$5 r
  e2e_session "$1" "$2" "$5" "$sess"
  r=$(e2e_try_resume "$3" "$4" "$5" "$sess")
  [ "$r" = New ] || e2e_die "$5: a session made on $1 was not expected to resume on $3 (got '$r')"
  e2e_log "ok: $5 session made on $1 not resumed on $3 (full handshake)"
}

# ---- Redis (Debian's redis-server and redis-cli) ----
# Every Redis started here listens on 127.0.0.1 only, keeps nothing on disk
# (save "", appendonly no: sessions are secrets), lets the tests' redis-cli
# in as the default user, and has the ACL user the agents log in as:
# E2E_REDIS_USER with password E2E_REDIS_PASS, allowed only the commands
# E2E_REDIS_CMDS on keys dc:* (docs/backends.md's recommended settings).
E2E_REDIS_USER=dc
E2E_REDIS_PASS=e2e-pass
E2E_REDIS_CMDS=${E2E_REDIS_CMDS:-+get +set +del +exists +getdel}
# What a cluster node adds for the agent: the slot map and ASK redirections.
E2E_REDIS_CLUSTER_CMDS=${E2E_REDIS_CLUSTER_CMDS:-+cluster|shards +cluster|slots +asking}
# cluster-node-timeout of e2e_start_redis_cluster's nodes (ms).
E2E_REDIS_NODE_TIMEOUT=${E2E_REDIS_NODE_TIMEOUT:-2000}

# e2e_need_redis: exits 77 (SKIP) when redis-server or redis-cli is missing.
e2e_need_redis() {
  local t
  for t in redis-server redis-cli; do
    command -v "$t" >/dev/null || { echo "SKIP: $t is not installed"; exit 77; }
  done
}

# e2e_redis_auth: writes the agents' -redis-auth file ("user password",
# readable by its owner only) and sets REDIS_AUTH to its path.
e2e_redis_auth() {
  REDIS_AUTH=$E2E_DIR/redis-auth
  (umask 077 && echo "$E2E_REDIS_USER $E2E_REDIS_PASS" >"$REDIS_AUTH")
}

# e2e_redis_conf DIR PORT [LINE...]: writes DIR/redis.conf as said above,
# for port PORT, with the LINEs (configuration directives) at its end.
e2e_redis_conf() {
  local d=$1 port=$2
  shift 2
  printf '%s\n' "port $port" "bind 127.0.0.1" 'save ""' "appendonly no" "dir $d" \
    "user default on nopass ~* &* +@all" \
    "user $E2E_REDIS_USER on >$E2E_REDIS_PASS ~dc:* -@all $E2E_REDIS_CMDS" "$@" >"$d/redis.conf"
}

_E2E_REDIS_LINES=()
_E2E_REDIS_BUS=0
# e2e_start_listener's start function for e2e_start_redis; a cluster node's
# bus gets a free port of its own (cluster-port), not PORT + 10000.
_e2e_redis_run() {
  local d=$E2E_DIR/$1 bus=()
  if [ "$_E2E_REDIS_BUS" = 1 ]; then
    bus=("cluster-port $(e2e_free_listen_port)")
  fi
  e2e_redis_conf "$d" "$2" "${_E2E_REDIS_LINES[@]}" "${bus[@]}"
  redis-server "$d/redis.conf" >>"$d/stderr.log" 2>&1 &
}

_e2e_redis_pong() { [ "$(redis-cli -p "$1" ping 2>/dev/null)" = PONG ]; }

# e2e_start_redis NAME [LINE...]: a redis-server on a free loopback port,
# configured by e2e_redis_conf (plus the LINEs), its directory and output
# in $E2E_DIR/NAME; waits until it answers PING. Sets PORT_<NAME>,
# PID_<NAME>, and REDIS_AUTH (e2e_redis_auth) when not set yet.
e2e_start_redis() {
  local name=$1 portv=PORT_$1
  shift
  _E2E_REDIS_LINES=("$@")
  e2e_start_listener "$name" _e2e_redis_run 100
  # The port may accept before the server runs (a cluster node binds its
  # bus after that): PING is answered by the running server only.
  e2e_wait_for "redis $name to answer" 100 _e2e_redis_pong "${!portv}" ||
    { cat "$E2E_DIR/$name/stderr.log" >&2; e2e_die "redis $name does not answer"; }
  [ -n "${REDIS_AUTH:-}" ] || e2e_redis_auth
}

# e2e_restart_redis NAME: starts NAME's redis-server again (after it was
# killed) with the same configuration, hence the same port; waits until it
# answers PING. Sets PID_<NAME>.
e2e_restart_redis() {
  local name=$1 portv=PORT_$1 d=$E2E_DIR/$1 pid
  redis-server "$d/redis.conf" >>"$d/stderr.log" 2>&1 &
  pid=$!
  E2E_PIDS+=("$pid")
  printf -v "PID_$name" '%s' "$pid"
  e2e_wait_for "redis $name to answer again" 100 _e2e_redis_pong "${!portv}" ||
    { tail -n 20 "$d/stderr.log" >&2; e2e_die "redis $name did not come back"; }
}

# e2e_start_redis_cluster MASTERS REPLICAS [LINE...]: a Redis Cluster of
# MASTERS masters with REPLICAS replicas each: nodes rc1, rc2, ... started by
# e2e_start_redis (cluster-enabled, cluster-node-timeout
# $E2E_REDIS_NODE_TIMEOUT, the ACL user also allowed
# $E2E_REDIS_CLUSTER_CMDS, plus the LINEs), joined by `redis-cli --cluster
# create`. Returns once every node says cluster_state:ok and knows every
# other, and every replica's link to its master is up. Sets
# REDIS_CLUSTER_PORTS (node rcI at index I-1) and REDIS_CLUSTER_SEEDS
# ("127.0.0.1:P1,127.0.0.1:P2,...", every node).
e2e_start_redis_cluster() {
  local masters=$1 replicas=$2 n i p addrs=() cmds=$E2E_REDIS_CMDS
  shift 2
  n=$((masters * (1 + replicas)))
  REDIS_CLUSTER_PORTS=()
  E2E_REDIS_CMDS="$cmds $E2E_REDIS_CLUSTER_CMDS"
  _E2E_REDIS_BUS=1
  for ((i = 1; i <= n; i++)); do
    e2e_start_redis "rc$i" "cluster-enabled yes" "cluster-config-file nodes.conf" \
      "cluster-node-timeout $E2E_REDIS_NODE_TIMEOUT" "$@"
    p=PORT_rc$i
    REDIS_CLUSTER_PORTS+=("${!p}")
    addrs+=("127.0.0.1:${!p}")
  done
  _E2E_REDIS_BUS=0
  E2E_REDIS_CMDS=$cmds
  REDIS_CLUSTER_SEEDS=$(IFS=,; echo "${addrs[*]}")
  timeout 60 redis-cli --cluster create "${addrs[@]}" --cluster-replicas "$replicas" \
    --cluster-yes >"$E2E_DIR/cluster-create.log" 2>&1 ||
    { cat "$E2E_DIR/cluster-create.log" >&2; e2e_die "redis-cli --cluster create failed"; }
  e2e_wait_for "the Redis Cluster to be ready" 300 _e2e_redis_cluster_ready "$n" || {
    for p in "${REDIS_CLUSTER_PORTS[@]}"; do redis-cli -p "$p" cluster info | head -n 2 >&2; done
    e2e_die "the Redis Cluster did not become ready"
  }
}

_e2e_redis_cluster_ready() {
  local n=$1 p info
  for p in "${REDIS_CLUSTER_PORTS[@]}"; do
    info=$(redis-cli -p "$p" cluster info 2>/dev/null | tr -d '\r')
    grep -qx "cluster_state:ok" <<<"$info" && grep -qx "cluster_known_nodes:$n" <<<"$info" ||
      return 1
    info=$(redis-cli -p "$p" info replication 2>/dev/null | tr -d '\r')
    if grep -qx "role:slave" <<<"$info"; then
      grep -qx "master_link_status:up" <<<"$info" || return 1
    fi
  done
}

# e2e_redis_masters PORT: the ports of the masters that the node on PORT
# sees as up (not failed), one a line, in slot order.
e2e_redis_masters() {
  redis-cli -p "$1" cluster nodes | tr -d '\r' |
    awk '$3 ~ /master/ && $3 !~ /fail/ && $9 != "" { split($2, a, "[:@,]"); print $9, a[2] }' |
    sort -n | awk '{ print $2 }'
}

# e2e_redis_replicas PORT: the ports of the replicas of the master on PORT.
e2e_redis_replicas() {
  local id
  id=$(redis-cli -p "$1" cluster myid | tr -d '\r')
  redis-cli -p "$1" cluster nodes | tr -d '\r' |
    awk -v id="$id" '$4 == id { split($2, a, "[:@,]"); print a[2] }'
}

# e2e_redis_keys PORT: how many keys the node on PORT holds.
e2e_redis_keys() { redis-cli -p "$1" dbsize | tr -d '\r'; }
