#!/usr/bin/env bash
# The benchmark of issue 7, in one go: distcache side by side with what an
# operator would pick instead, on this machine, with the ratios the issue
# targets. See docs/performance.md for the method.
#
#   (a) dc_server over a UNIX socket, 16 connections, lockstep and depth 16,
#       90% GET / 10% ADD, 256-byte sessions, 100,000 ids      (dc_bench)
#   (b) the same through the dc_client agent                    (dc_bench)
#       and at depth 16 with the agent's upstream on loopback TCP, plain
#       vs TLS (-tls-*: mutual TLS 1.3)
#   (c) redis-server (no persistence, UNIX socket), GET and SET at the same
#       connections, pipeline depth and value size            (redis-benchmark)
#   (d) resident memory of dc_server holding 1,000,000 256-byte sessions
#   (e) GET throughput with 1,000,000 sessions stored vs 10,000
#   (f) TLS: resumed handshakes/s, two nginx through the shim (and two with
#       shared ticket keys, DC_CACHE_TICKETS=shared) vs one nginx with
#       its own shared cache, and one nginx through the shim vs that one (the
#       same topology); cross-instance resumption rate of each (dc_swamp)
#   (g) the agent's backends: the same load as (b) through the agent to one
#       dc_server, to a pool of three, to redis-server and to a Redis Cluster
#       of 3 masters and 3 replicas; depth 1 and 16
#   (w) the machine: one-byte round trip between two processes on one CPU and
#       on the two pinned CPUs (bench/wakeup_cost.c): every hop of a cache
#       operation costs at least one such wake-up
#
# Not in this set: bench/stall.sh, the failure-promise benchmark (one nginx
# with the shim while its agent is frozen or its dc_server 150 ms away, vs
# the same nginx without a cache, and how soon resumption returns); it runs
# on its own (bench/stall.sh -h).
#
# Usage: bench/run.sh [-d SECONDS] [-r ROUNDS] [-o RESULTS_FILE] [-only a,b,c,d,e,f,g,w] [-lowlat]
#                     [-plot DIR] [-h]
# -r: run every measurement ROUNDS times (default 1) and keep the best
# throughput, the worst acceptance rate and the largest RSS of the rounds.
# -lowlat: hold /dev/cpu_dma_latency at 0 for the run (needs root), so idle
# CPUs poll instead of halting, as a latency-tuned host does (tuned's
# latency-performance profile); on a virtual machine, waking a halted vCPU
# costs tens of microseconds. Both sides of every ratio run under it.
# -plot DIR: also measure (a), (b) and (c) at depths 4 and 64, and draw the
# results with gnuplot into DIR (made if missing): throughput.png
# (operations/s by pipeline depth: dc_server, through the agent, redis),
# latency.png (p50 and p99 by depth), tls.png (resumed handshakes/s of each
# TLS setup of (f)), with the data (*.dat) and the results table
# (results.txt) they came from. E.g. bench/run.sh -d 5 -plot docs/img
# Environment: CPU_SERVER (default 0) and CPU_CLIENT (default 1) pin the
# daemons and the load generators with taskset; CPU_AGENT (default: same as
# CPU_SERVER); REDIS_N_LOCKSTEP / REDIS_N_PIPELINED (requests per redis test,
# default 300000 / 3000000); TLS_VERSIONS (default "1.3 1.2"); BUILD_DIR
# (default build-bench). Exit status 0 when every measurement ran (targets
# missed are reported, not failed), 1 when something could not run.
set -uo pipefail
started_in=$PWD
cd "$(dirname "$0")/.."
root=$PWD
. "$root/scripts/lib/nginx.sh"

DUR=10
ROUNDS=1
RESULTS=""
ONLY="a,b,c,d,e,f,g,w"
LOWLAT=0
PLOT=""
usage() { sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
  case "$1" in
    -d) DUR=${2:?-d needs seconds}; shift 2 ;;
    -r) ROUNDS=${2:?-r needs a number}; shift 2 ;;
    -o) RESULTS=${2:?-o needs a file}; shift 2 ;;
    -only) ONLY=${2:?-only needs a list}; shift 2 ;;
    -lowlat) LOWLAT=1; shift ;;
    -plot) PLOT=${2:?-plot needs a directory}; shift 2
      [[ "$PLOT" = /* ]] || PLOT=$started_in/$PLOT ;;
    -h|--help) usage; exit 0 ;;
    *) echo "bench/run.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
  esac
done
want() { [[ ",$ONLY," == *",$1,"* ]]; }

CPU_SERVER=${CPU_SERVER:-0}
CPU_CLIENT=${CPU_CLIENT:-1}
CPU_AGENT=${CPU_AGENT:-$CPU_SERVER}
REDIS_N_LOCKSTEP=${REDIS_N_LOCKSTEP:-300000}
REDIS_N_PIPELINED=${REDIS_N_PIPELINED:-3000000}
TLS_VERSIONS=${TLS_VERSIONS:-"1.3 1.2"}
BUILD=${BUILD_DIR:-build-bench}
CONNS=16
DEPTH=16
# Pipeline depths of (a), (b), (c): lockstep and $DEPTH for the table, more
# for the throughput-by-depth picture.
DEPTHS="1 $DEPTH"
[ -n "$PLOT" ] && DEPTHS="1 4 $DEPTH 64"
KEYS=100000
SIZE=256

log() { echo "bench: $*" >&2; }
die() { log "$*"; exit 1; }

# ---- dependencies and build ----
scripts/deps.sh bench || die "scripts/deps.sh bench failed"
if [ -n "$PLOT" ]; then
  command -v gnuplot >/dev/null || die "-plot needs gnuplot (Debian: gnuplot-nox; scripts/deps.sh bench)"
  mkdir -p "$PLOT" || die "-plot: cannot make $PLOT"
fi
if [ -d "$BUILD" ]; then
  meson setup --reconfigure "$BUILD" --buildtype=release -Dtests=false >/dev/null || die "meson setup failed"
else
  meson setup "$BUILD" --buildtype=release -Dtests=false >/dev/null || die "meson setup failed"
fi
meson compile -C "$BUILD" >/dev/null || die "build failed (meson compile -C $BUILD)"

SERVER=$root/$BUILD/daemons/server/dc_server
AGENT=$root/$BUILD/daemons/agent/dc_client
SHIM=$root/$BUILD/shim/libdistcache_shim.so
BENCH=$root/$BUILD/tools/dc_bench
SWAMP=$root/$BUILD/tools/dc_swamp
[ -x "$BENCH" ] || die "no $BENCH"

work=$(mktemp -d /tmp/dcbench.XXXXXX)
. "$root/bench/lib.sh"
# CPU time (user + system) of a process in clock ticks, and the CPU
# microseconds per operation between two such readings.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
us_per_op() {  # ticks-before ticks-after ops
  awk -v a="$1" -v b="$2" -v n="$3" -v hz="$(getconf CLK_TCK)" \
    'BEGIN { if (n + 0 > 0) printf "%.3f", (b - a) * 1e6 / hz / n; else print "n/a" }'
}
rss_mb() { awk '/^VmRSS:/ { printf "%.1f", $2 / 1024 }' "/proc/$1/status"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 > 0) printf "%.2f", a / b; else print "n/a" }'; }
ge() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a != "n/a" && a + 0 >= b + 0) }'; }

declare -A R  # results by key
rows=()
row() {  # label value target ok
  rows+=("$1|$2|$3|$4")
}
verdict() {  # value op threshold -> PASS/FAIL/n/a
  local v=$1 op=$2 t=$3
  [ -z "$v" ] || [ "$v" = "n/a" ] && { echo "n/a"; return; }
  if [ "$op" = ">=" ]; then ge "$v" "$t" && echo PASS || echo FAIL
  else awk -v a="$v" -v b="$t" 'BEGIN { exit !(a + 0 < b + 0) }' && echo PASS || echo FAIL; fi
}

# dc_bench on the client CPU; prints the JSON line, logs the run.
dcb() {  # name args...
  local name=$1; shift
  log "dc_bench $name: $*"
  local out
  out=$(taskset -c "$CPU_CLIENT" "$BENCH" -quiet "$@" 2>"$work/bench-$name.err")
  local rc=$?
  [ $rc -eq 0 ] || log "dc_bench $name exited $rc: $(tail -3 "$work/bench-$name.err")"
  echo "$out" | tee -a "$work/raw.jsonl" >/dev/null
  echo "$out"
}

start_server() {  # name extra-args...
  local name=$1; shift
  rm -f "$work/$name.sock"
  start "$CPU_SERVER" "$name" "$SERVER" -listen "UNIX:$work/$name.sock" "$@"
  server_pid=$last_pid
  wait_sock "$work/$name.sock"
}

# -lowlat: the request holds while the file stays open (PM QoS).
idle_mode="idle CPUs halt (default)"
if [ "$LOWLAT" -eq 1 ]; then
  { exec 9>/dev/cpu_dma_latency; } 2>/dev/null \
    || die "-lowlat: cannot open /dev/cpu_dma_latency (run as root, or drop -lowlat)"
  printf '\x00\x00\x00\x00' >&9 || die "-lowlat: cannot write /dev/cpu_dma_latency"
  idle_mode="-lowlat: /dev/cpu_dma_latency held at 0 (idle CPUs poll)"
fi

failed=0
load0=$(cut -d' ' -f1-3 /proc/loadavg)
have_server=0; [ -x "$SERVER" ] && have_server=1
have_agent=0; [ -x "$AGENT" ] && have_agent=1
[ $have_server -eq 1 ] || log "no dc_server in $BUILD: (a) (b) (d) (e) (f) skipped"

# Each measurement runs -r times (rounds of the whole set, so both sides of
# every ratio get the same chances on a shared machine); throughputs keep
# the best round, acceptance rates the worst, memory the largest.
best() { R[$1]=$(awk -v a="${R[$1]:-}" -v b="$2" 'BEGIN { if (b == "" || (a != "" && a + 0 >= b + 0)) print a; else print b }'); }
worst() { R[$1]=$(awk -v a="${R[$1]:-}" -v b="$2" 'BEGIN { if (b == "" || (a != "" && a + 0 <= b + 0)) print a; else print b }'); }
most() { best "$@"; }
last() { [ -z "$2" ] || R[$1]=$2; }

measure() {
# ---- (a) dc_server direct, and (b) through the agent ----
common=(-conns $CONNS -mix 10,90,0,0 -datasize $SIZE -keys $KEYS -duration "$DUR")
if [ $have_server -eq 1 ] && { want a || want b; }; then
  start_server srv_a -sessions 1000000
  srv_a=$server_pid
  if want a; then
    j=$(dcb a_prefill -connect "UNIX:$work/srv_a.sock" -conns $CONNS -datasize $SIZE -keys $KEYS -prefill -ops 0 -depth 64)
    for d in $DEPTHS; do
      t0=$(cpu_ticks "$srv_a")
      j=$(dcb a_depth$d -connect "UNIX:$work/srv_a.sock" "${common[@]}" -depth "$d")
      best a$d "$(jnum "$j" ops_per_sec)"
      last a${d}_p50 "$(jnum "$j" p50)"; last a${d}_p99 "$(jnum "$j" p99)"
      last a${d}_cpu_srv "$(us_per_op "$t0" "$(cpu_ticks "$srv_a")" "$(jnum "$j" ops)")"
    done
  fi
  if want b; then
    if [ $have_agent -eq 1 ]; then
      start "$CPU_AGENT" agent_b "$AGENT" -listen "UNIX:$work/agent_b.sock" -server "UNIX:$work/srv_a.sock"
      agent_b=$last_pid
      wait_sock "$work/agent_b.sock"
      prefill=(-prefill)
      for d in $DEPTHS; do
        t0=$(cpu_ticks "$srv_a"); u0=$(cpu_ticks "$agent_b")
        j=$(dcb b_depth$d -connect "UNIX:$work/agent_b.sock" "${common[@]}" -depth "$d" "${prefill[@]}")
        prefill=()
        best b$d "$(jnum "$j" ops_per_sec)"
        last b${d}_p50 "$(jnum "$j" p50)"; last b${d}_p99 "$(jnum "$j" p99)"
        last b${d}_cpu_srv "$(us_per_op "$t0" "$(cpu_ticks "$srv_a")" "$(jnum "$j" ops)")"
        last b${d}_cpu_agent "$(us_per_op "$u0" "$(cpu_ticks "$agent_b")" "$(jnum "$j" ops)")"
      done
      stop "$agent_b"
    else
      log "no dc_client in $BUILD: (b) skipped"; failed=1
    fi
  fi
  stop "$srv_a"
fi

# ---- (b) at depth 16 with the agent's upstream over TCP, plain vs TLS ----
# Two fresh servers on loopback TCP (-tls-* apply to every IP listener),
# each filled through its agent, then the same run as (b) depth 16.
if [ $have_server -eq 1 ] && [ $have_agent -eq 1 ] && want b; then
  if [ ! -f "$work/pki/server.pem" ]; then
    mkdir -p "$work/pki"
    (
      cd "$work/pki" || exit 1
      openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=ca \
        -keyout ca.key -out ca.pem &&
        printf 'subjectAltName=IP:127.0.0.1\n' >san.ext &&
        for n in server agent; do
          openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$n" \
            -keyout $n.key -out $n.csr &&
            openssl x509 -req -in $n.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
              -extfile san.ext -out $n.pem || exit 1
        done
    ) >/dev/null 2>&1 || die "cannot make the certificates for (b) with TLS"
  fi
  for mode in tcp tls; do
    sflags=() aflags=()
    if [ $mode = tls ]; then
      sflags=(-tls-cert "$work/pki/server.pem" -tls-key "$work/pki/server.key" -tls-ca "$work/pki/ca.pem")
      aflags=(-tls-cert "$work/pki/agent.pem" -tls-key "$work/pki/agent.key" -tls-ca "$work/pki/ca.pem")
    fi
    port=$(free_port 19100)
    start "$CPU_SERVER" "srv_b$mode" "$SERVER" -sessions 1000000 -listen "IP:127.0.0.1:$port" "${sflags[@]}"
    srv_b=$last_pid
    wait_port "$port"
    rm -f "$work/agent_b$mode.sock"
    start "$CPU_AGENT" "agent_b$mode" "$AGENT" -listen "UNIX:$work/agent_b$mode.sock" \
      -server "IP:127.0.0.1:$port" -retry 100 "${aflags[@]}"
    agent_bt=$last_pid
    wait_sock "$work/agent_b$mode.sock"
    sleep 1  # the agent's upstream (and handshake): requests before it are answered DISCONNECTED
    dcb "b${mode}_prefill" -connect "UNIX:$work/agent_b$mode.sock" -conns $CONNS -datasize $SIZE \
      -keys $KEYS -prefill -ops 0 -depth 64 >/dev/null
    t0=$(cpu_ticks "$srv_b"); u0=$(cpu_ticks "$agent_bt")
    j=$(dcb "b${mode}_pipelined" -connect "UNIX:$work/agent_b$mode.sock" "${common[@]}" -depth $DEPTH)
    best "b16_$mode" "$(jnum "$j" ops_per_sec)"; last "b16_${mode}_hits" "$(jnum "$j" hits)"
    last "b16_${mode}_cpu" "$(us_per_op "$u0" "$(cpu_ticks "$agent_bt")" "$(jnum "$j" ops)") + $(us_per_op "$t0" "$(cpu_ticks "$srv_b")" "$(jnum "$j" ops)")"
    stop "$agent_bt"
    stop "$srv_b"
  done
fi

# ---- (g) the agent's backends: one dc_server, a pool of 3, Redis, a Redis Cluster ----
# The same load as (b), through a fresh agent for each backend, at depth 1
# and 16; every store on CPU 0 with the agent (the pool's three servers
# share it, and so do the cluster's 3 masters and 3 replicas, so these show
# the routing's cost, not their capacity).
if want g && [ $have_server -eq 1 ] && [ $have_agent -eq 1 ]; then
  for be in one pool redis cluster; do
    g_pids=() aargs=()
    case $be in
      one|pool)
        n=1; [ $be = pool ] && n=3
        for i in $(seq 1 $n); do
          start_server "srv_g${be}$i" -sessions 1000000
          g_pids+=("$server_pid"); aargs+=(-server "UNIX:$work/srv_g${be}$i.sock")
        done ;;
      redis)
        command -v redis-server >/dev/null || { log "no redis-server: (g) redis skipped"; continue; }
        rport=$(free_port 19300)
        start "$CPU_SERVER" redis_g redis-server --port "$rport" --bind 127.0.0.1 --save "" \
          --appendonly no --daemonize no
        g_pids+=("$last_pid"); aargs=(-server "REDIS:127.0.0.1:$rport")
        wait_port "$rport" ;;
      cluster)
        command -v redis-server >/dev/null && command -v redis-cli >/dev/null ||
          { log "no redis-server or redis-cli: (g) cluster skipped"; continue; }
        # Six nodes (each port's cluster bus, port + 10000, free too),
        # made 3 masters with a replica each.
        cports=() cp=19400
        for i in 1 2 3 4 5 6; do
          cp=$(free_port "$cp")
          while (exec 3<>"/dev/tcp/127.0.0.1/$((cp + 10000))") 2>/dev/null; do cp=$(free_port $((cp + 1))); done
          rm -rf "$work/cluster_g$i"  # a later round starts from an empty node
          mkdir -p "$work/cluster_g$i"
          start "$CPU_SERVER" "cluster_g$i" redis-server --port "$cp" --bind 127.0.0.1 --save "" \
            --appendonly no --daemonize no --cluster-enabled yes --dir "$work/cluster_g$i" \
            --cluster-config-file "$work/cluster_g$i/nodes.conf"
          g_pids+=("$last_pid"); cports+=("127.0.0.1:$cp"); cp=$((cp + 1))
        done
        for c in "${cports[@]}"; do wait_port "${c##*:}"; done
        redis-cli --cluster create "${cports[@]}" --cluster-replicas 1 --cluster-yes \
          >"$work/cluster_g_create.log" 2>&1 ||
          { tail -n 5 "$work/cluster_g_create.log" >&2; die "redis-cli --cluster create failed"; }
        for c in "${cports[@]}"; do
          for _ in $(seq 100); do
            redis-cli -p "${c##*:}" cluster info | grep -q cluster_state:ok && break; sleep 0.1
          done
        done
        aargs=(-server "REDIS-CLUSTER:${cports[0]},${cports[1]}") ;;
    esac
    rm -f "$work/agent_g$be.sock"
    start "$CPU_AGENT" "agent_g$be" "$AGENT" -listen "UNIX:$work/agent_g$be.sock" -retry 100 "${aargs[@]}"
    agent_g=$last_pid
    wait_sock "$work/agent_g$be.sock"
    sleep 1  # the agent's upstream connections (a cluster's: after its slot map)
    [ $be = cluster ] && sleep 1
    dcb "g${be}_prefill" -connect "UNIX:$work/agent_g$be.sock" -conns $CONNS -datasize $SIZE \
      -keys $KEYS -prefill -ops 0 -depth 64 >/dev/null
    for d in 1 $DEPTH; do
      j=$(dcb "g${be}_depth$d" -connect "UNIX:$work/agent_g$be.sock" "${common[@]}" -depth "$d")
      best "g_${be}_$d" "$(jnum "$j" ops_per_sec)"
    done
    stop "$agent_g"
    for p in "${g_pids[@]}"; do stop "$p"; done
  done
fi

# ---- (c) redis-server ----
if want c; then
  if command -v redis-server >/dev/null && command -v redis-benchmark >/dev/null; then
    rm -f "$work/redis.sock"
    start "$CPU_SERVER" redis redis-server --port 0 --unixsocket "$work/redis.sock" \
      --save "" --appendonly no --daemonize no
    redis_pid=$last_pid
    wait_sock "$work/redis.sock"
    for p in $DEPTHS; do
      n=$REDIS_N_LOCKSTEP; [ "$p" -gt 1 ] && n=$REDIS_N_PIPELINED
      log "redis-benchmark -c $CONNS -P $p -d $SIZE -r $KEYS -n $n -t set,get"
      out=$(taskset -c "$CPU_CLIENT" redis-benchmark -s "$work/redis.sock" -c $CONNS -P "$p" \
        -d $SIZE -r $KEYS -n "$n" -t set,get --csv 2>>"$work/redis-bench.err")
      echo "$out" >>"$work/redis.csv"
      best c${p}_set "$(awk -F'"' '$2 == "SET" { print $4 }' <<<"$out")"
      best c${p}_get "$(awk -F'"' '$2 == "GET" { print $4 }' <<<"$out")"
      # Its CSV: test, rps, avg, min, p50, p95, p99, max (ms).
      last c${p}_p50 "$(awk -F'"' '$2 == "GET" && $10 != "" { print $10 * 1000 }' <<<"$out")"
      last c${p}_p99 "$(awk -F'"' '$2 == "GET" && $14 != "" { print $14 * 1000 }' <<<"$out")"
    done
    stop "$redis_pid"
  else
    log "redis-server or redis-benchmark missing: (c) skipped"; failed=1
  fi
fi

# ---- (d) RSS with 1,000,000 sessions, and (e) GET with 1,000,000 vs 10,000 ----
if [ $have_server -eq 1 ] && { want d || want e; }; then
  start_server srv_d -sessions 1000000
  srv_d=$server_pid
  last d_empty "$(rss_mb "$srv_d")"
  j=$(dcb d_prefill -connect "UNIX:$work/srv_d.sock" -conns $CONNS -depth 64 -datasize $SIZE -keys 1000000 -prefill -ops 0)
  last d_added "$(grep -o '"prefill":{"ops":[0-9]*' <<<"$j" | cut -d: -f3)"
  most d "$(rss_mb "$srv_d")"
  if want e; then
    j=$(dcb e_1m -connect "UNIX:$work/srv_d.sock" -conns $CONNS -depth $DEPTH -mix 0,100,0,0 -datasize $SIZE -keys 1000000 -duration "$DUR")
    best e_1m "$(jnum "$j" ops_per_sec)"; last e_1m_hits "$(jnum "$j" hits)"
  fi
  stop "$srv_d"
  if want e; then
    start_server srv_e -sessions 1000000
    srv_e=$server_pid
    dcb e_prefill -connect "UNIX:$work/srv_e.sock" -conns $CONNS -depth 64 -datasize $SIZE -keys 10000 -prefill -ops 0 >/dev/null
    j=$(dcb e_10k -connect "UNIX:$work/srv_e.sock" -conns $CONNS -depth $DEPTH -mix 0,100,0,0 -datasize $SIZE -keys 10000 -duration "$DUR")
    best e_10k "$(jnum "$j" ops_per_sec)"; last e_10k_hits "$(jnum "$j" hits)"
    stop "$srv_e"
  fi
fi

# ---- (f) TLS through the shim vs nginx's own cache ----
nginx_conf() {  # name port cache-line
  local d=$work/nginx-$1
  nginx_tls_conf "$d" "$2" "$work/cert.pem" "$work/key.pem" ok \
    "$(nginx_bench_main "$d" DC_CACHE_ADDR DC_CACHE_LOG DC_CACHE_SEAL_KEYS DC_CACHE_TICKETS)" \
    "ssl_session_tickets ${TICKETS:-off};
    $3"
}
start_nginx() {  # name port cache-line [env...]
  local name=$1 port=$2 cache=$3; shift 3
  nginx_conf "$name" "$port" "$cache"
  start "$CPU_SERVER" "nginx-$name" env "$@" nginx -p "$work/nginx-$name" -c "$work/nginx-$name/nginx.conf"
  nginx_pid=$last_pid
  wait_port "$port"
}
swamp() {  # name args...
  local name=$1; shift
  log "dc_swamp $name: $*"
  local out
  out=$(taskset -c "$CPU_CLIENT" "$SWAMP" -quiet -conns 8 -duration "$DUR" "$@" 2>"$work/swamp-$name.err")
  [ $? -eq 0 ] || log "dc_swamp $name had failures: $(tail -2 "$work/swamp-$name.err")"
  echo "$out" >>"$work/raw.jsonl"
  echo "$out"
}
if want f; then
  if [ $have_server -eq 0 ] || [ $have_agent -eq 0 ] || [ ! -f "$SHIM" ] || ! command -v nginx >/dev/null; then
    log "(f) needs dc_server, dc_client, the shim and nginx: skipped"; failed=1
  else
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
      -keyout "$work/key.pem" -out "$work/cert.pem" -subj /CN=localhost -days 2 2>/dev/null \
      || die "openssl req failed"
    start_server srv_f -sessions 1000000
    srv_f=$server_pid
    start "$CPU_AGENT" agent_f "$AGENT" -listen "UNIX:$work/agent_f.sock" -server "UNIX:$work/srv_f.sock"
    agent_f=$last_pid
    wait_sock "$work/agent_f.sock"
    p1=$(free_port 18443); p2=$(free_port $((p1 + 1))); p3=$(free_port $((p2 + 1))); p4=$(free_port $((p3 + 1)))
    shim_env=("LD_PRELOAD=$SHIM" "DC_CACHE_ADDR=UNIX:$work/agent_f.sock")
    start_nginx shim1 "$p1" "" "${shim_env[@]}"; n1=$nginx_pid
    start_nginx shim2 "$p2" "" "${shim_env[@]}"; n2=$nginx_pid
    start_nginx own1 "$p3" "ssl_session_cache shared:SSL:10m;"; n3=$nginx_pid
    start_nginx own2 "$p4" "ssl_session_cache shared:SSL:10m;"; n4=$nginx_pid
    # Shared ticket keys (issue 16): two nginx, tickets on, keys agreed
    # through the same agent and server; no cache round trip per resumption.
    (umask 077 && openssl rand -hex 32 >"$work/ticket-keys")
    p5=$(free_port $((p4 + 1))); p6=$(free_port $((p5 + 1)))
    shared_env=("${shim_env[@]}" "DC_CACHE_SEAL_KEYS=$work/ticket-keys" "DC_CACHE_TICKETS=shared")
    TICKETS=on start_nginx shared1 "$p5" "" "${shared_env[@]}"; n5=$nginx_pid
    TICKETS=on start_nginx shared2 "$p6" "" "${shared_env[@]}"; n6=$nginx_pid
    for v in $TLS_VERSIONS; do
      j=$(swamp "shim-$v" -tls "$v" -resume 1 -connect "127.0.0.1:$p1" -connect "127.0.0.1:$p2")
      best f_shim_$v "$(jnum "$j" resumed_per_sec)"; worst f_shim_rate_$v "$(jnum "$j" resume_accept_rate)"
      # The same topology on both sides: one nginx, whose every resumption
      # goes through the cache (a GET round trip to the agent and server).
      j=$(swamp "shim-one-$v" -tls "$v" -resume 1 -connect "127.0.0.1:$p1")
      best f_shim1_$v "$(jnum "$j" resumed_per_sec)"; worst f_shim1_rate_$v "$(jnum "$j" resume_accept_rate)"
      j=$(swamp "own-$v" -tls "$v" -resume 1 -connect "127.0.0.1:$p3")
      best f_own_$v "$(jnum "$j" resumed_per_sec)"; worst f_own_rate_$v "$(jnum "$j" resume_accept_rate)"
      j=$(swamp "own-cross-$v" -tls "$v" -resume 1 -connect "127.0.0.1:$p3" -connect "127.0.0.1:$p4")
      worst f_owncross_rate_$v "$(jnum "$j" resume_accept_rate)"
      j=$(swamp "shared-$v" -tls "$v" -resume 1 -connect "127.0.0.1:$p5" -connect "127.0.0.1:$p6")
      best f_shared_$v "$(jnum "$j" resumed_per_sec)"; worst f_shared_rate_$v "$(jnum "$j" resume_accept_rate)"
      # The same topology as the own cache: one nginx resuming its own tickets.
      j=$(swamp "shared-one-$v" -tls "$v" -resume 1 -connect "127.0.0.1:$p5")
      best f_shared1_$v "$(jnum "$j" resumed_per_sec)"
    done
    for p in $n1 $n2 $n3 $n4 $n5 $n6 $agent_f $srv_f; do stop "$p"; done
  fi
fi

# ---- (w) wake-up cost of the machine ----
if want w; then
  if cc -O2 -o "$work/wakeup_cost" bench/wakeup_cost.c 2>"$work/wakeup_cost.err"; then
    out=$("$work/wakeup_cost" "$CPU_SERVER" "$CPU_CLIENT" 50000)
    last w_same "$(grep -o 'same_cpu_us=[0-9.]*' <<<"$out" | cut -d= -f2)"
    last w_cross "$(grep -o 'cross_cpu_us=[0-9.]*' <<<"$out" | cut -d= -f2)"
  else
    log "cannot compile bench/wakeup_cost.c: (w) skipped ($(head -1 "$work/wakeup_cost.err"))"
  fi
fi
}
for round in $(seq "$ROUNDS"); do
  [ "$ROUNDS" -gt 1 ] && log "round $round of $ROUNDS"
  measure
done

# ---- results ----
pct() { awk -v a="$1" 'BEGIN { if (a == "") print "n/a"; else printf "%.2f%%", a * 100 }'; }
num() { [ -n "${1:-}" ] && printf "%.0f" "$1" || echo "n/a"; }
if want a || want c; then
  r=$(ratio "${R[a1]:-}" "${R[c1_get]:-}"); row "(a) lockstep vs redis GET (P=1)" "$(num "${R[a1]:-}") vs $(num "${R[c1_get]:-}") ops/s = ${r}x" ">= 1.3x" "$(verdict "$r" ">=" 1.3)"
  r=$(ratio "${R[a16]:-}" "${R[c16_get]:-}"); row "(a) depth $DEPTH vs redis GET (P=$DEPTH)" "$(num "${R[a16]:-}") vs $(num "${R[c16_get]:-}") ops/s = ${r}x" ">= 1.5x" "$(verdict "$r" ">=" 1.5)"
  row "(c) redis SET P=1 / P=$DEPTH" "$(num "${R[c1_set]:-}") / $(num "${R[c16_set]:-}") ops/s" "-" "-"
fi
if want b; then
  r=$(ratio "${R[b1]:-}" "${R[a1]:-}"); row "(b) agent lockstep vs (a)" "$(num "${R[b1]:-}") ops/s = ${r}x" ">= 0.75x" "$(verdict "$r" ">=" 0.75)"
  r=$(ratio "${R[b16]:-}" "${R[a16]:-}"); row "(b) agent depth $DEPTH vs (a)" "$(num "${R[b16]:-}") ops/s = ${r}x" ">= 0.75x" "$(verdict "$r" ">=" 0.75)"
  row "(b) CPU us/request at depth $DEPTH: (a) server; (b) agent + server" "${R[a16_cpu_srv]:-n/a}; ${R[b16_cpu_agent]:-n/a} + ${R[b16_cpu_srv]:-n/a}" "-" "-"
  r=$(ratio "${R[b16_tls]:-}" "${R[b16_tcp]:-}"); row "(b) agent depth $DEPTH, upstream TLS vs TCP" "$(num "${R[b16_tls]:-}") vs $(num "${R[b16_tcp]:-}") ops/s = ${r}x" ">= 0.9x" "$(verdict "$r" ">=" 0.9)"
fi
if want g; then
  for be in one pool redis cluster; do
    row "(g) agent to $be: depth 1; depth $DEPTH" "$(num "${R[g_${be}_1]:-}"); $(num "${R[g_${be}_$DEPTH]:-}") ops/s" "-" "-"
  done
  row "(b) CPU us/request, agent + server: TCP; TLS" "${R[b16_tcp_cpu]:-n/a}; ${R[b16_tls_cpu]:-n/a}" "-" "-"
fi
if want d; then
  row "(d) dc_server RSS, ${R[d_added]:-?} sessions of $SIZE B" "${R[d]:-n/a} MB (empty: ${R[d_empty]:-n/a} MB)" "< 400 MB" "$(verdict "${R[d]:-}" "<" 400)"
fi
if want e; then
  r=$(ratio "${R[e_1m]:-}" "${R[e_10k]:-}"); row "(e) GET, 1M stored vs 10k stored" "$(num "${R[e_1m]:-}") vs $(num "${R[e_10k]:-}") ops/s = ${r}x" ">= 0.9x" "$(verdict "$r" ">=" 0.9)"
fi
if want w; then
  row "(w) round trip of one byte between two processes" "same CPU ${R[w_same]:-n/a} us, CPUs $CPU_SERVER-$CPU_CLIENT ${R[w_cross]:-n/a} us" "-" "-"
fi
if want f; then
  for v in $TLS_VERSIONS; do
    rate=${R[f_shim_rate_$v]:-}
    row "(f) TLS $v cross-instance resumption, shim" "$(pct "$rate")" ">= 99%" "$(verdict "$rate" ">=" 0.99)"
    r=$(ratio "${R[f_shim_$v]:-}" "${R[f_own_$v]:-}")
    row "(f) TLS $v resumed/s, shim (2 nginx) vs own cache (1 nginx)" "$(num "${R[f_shim_$v]:-}") vs $(num "${R[f_own_$v]:-}") = ${r}x" ">= 0.9x" "$(verdict "$r" ">=" 0.9)"
    r=$(ratio "${R[f_shim1_$v]:-}" "${R[f_own_$v]:-}")
    row "(f) TLS $v resumed/s, shim (1 nginx) vs own cache (1 nginx)" "$(num "${R[f_shim1_$v]:-}") vs $(num "${R[f_own_$v]:-}") = ${r}x ($(pct "${R[f_shim1_rate_$v]:-}") resumed)" "-" "-"
    row "(f) TLS $v cross-instance resumption, own caches" "$(pct "${R[f_owncross_rate_$v]:-}") (same instance: $(pct "${R[f_own_rate_$v]:-}"))" "-" "-"
    r=$(ratio "${R[f_shared_$v]:-}" "${R[f_own_$v]:-}")
    row "(f) TLS $v resumed/s, shared tickets (2 nginx) vs own cache (1 nginx)" "$(num "${R[f_shared_$v]:-}") vs $(num "${R[f_own_$v]:-}") = ${r}x ($(pct "${R[f_shared_rate_$v]:-}") resumed)" ">= 1.0x" "$(verdict "$r" ">=" 1.0)"
    r=$(ratio "${R[f_shared1_$v]:-}" "${R[f_own_$v]:-}")
    row "(f) TLS $v resumed/s, shared tickets (1 nginx) vs own cache (1 nginx)" "$(num "${R[f_shared1_$v]:-}") vs $(num "${R[f_own_$v]:-}") = ${r}x" "-" "-"
  done
fi

{
  echo
  echo "distcache benchmark — $(date -u +%Y-%m-%dT%H:%M:%SZ) — $(uname -srm), $(nproc) CPUs: $(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)"
  echo "duration ${DUR}s per run, best of $ROUNDS round(s); load average before: $load0, after: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "daemons on CPU $CPU_SERVER (agent $CPU_AGENT), load generators on CPU $CPU_CLIENT; build $BUILD (release); $idle_mode"
  printf '%-62s | %-46s | %-9s | %s\n' "measurement" "result" "target" "verdict"
  printf '%s\n' "$(printf '%.0s-' $(seq 131))"
  for r in "${rows[@]}"; do
    IFS='|' read -r a b c d <<<"$r"
    printf '%-62s | %-46s | %-9s | %s\n' "$a" "$b" "$c" "$d"
  done
} | tee "$work/table.txt" ${RESULTS:+"$RESULTS"}
if [ -n "$RESULTS" ]; then
  { echo; echo "raw JSON lines:"; cat "$work/raw.jsonl" 2>/dev/null; echo "redis-benchmark CSV:"; cat "$work/redis.csv" 2>/dev/null; } >>"$RESULTS"
fi

# ---- -plot: the pictures, and the data they are drawn from ----
# A missing measurement is "?" in the data (gnuplot leaves it out).
val() { [ -n "${R[$1]:-}" ] && [ "${R[$1]}" != "n/a" ] && echo "${R[$1]}" || echo "?"; }
plot() {
  local dir=$1 host
  host="$(nproc) CPUs ($(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo | tr -s ' ')), ${DUR} s per run"
  {
    echo "# depth  dc_server  through_dc_client  redis_GET  redis_SET   (operations/s, $CONNS connections)"
    for d in $DEPTHS; do
      echo "$d $(val a$d) $(val b$d) $(val c${d}_get) $(val c${d}_set)"
    done
  } >"$dir/throughput.dat"
  {
    echo "# depth  dc_server_p50 dc_server_p99  dc_client_p50 dc_client_p99  redis_GET_p50 redis_GET_p99   (us)"
    for d in $DEPTHS; do
      echo "$d $(val a${d}_p50) $(val a${d}_p99) $(val b${d}_p50) $(val b${d}_p99) $(val c${d}_p50) $(val c${d}_p99)"
    done
  } >"$dir/latency.dat"
  {
    printf 'setup'
    for v in $TLS_VERSIONS; do printf ' "TLS %s"' "$v"; done
    echo
    for s in "shim, 2 nginx:f_shim" "shim, 1 nginx:f_shim1" "own cache, 1 nginx:f_own" \
             "shared tickets, 2 nginx:f_shared" "shared tickets, 1 nginx:f_shared1"; do
      printf '"%s"' "${s%%:*}"
      for v in $TLS_VERSIONS; do printf ' %s' "$(val "${s##*:}_$v")"; done
      echo
    done
  } >"$dir/tls.dat"
  local ncol tls_cols="" xtics=""
  ncol=$(($(wc -w <<<"$TLS_VERSIONS") + 1))
  for i in $(seq 2 "$ncol"); do tls_cols+="${tls_cols:+, ''} using $i:xtic(1) title columnhead($i)"; done
  for d in $DEPTHS; do xtics+="${xtics:+, }\"$d\" $d"; done
  gnuplot <<EOF 2>"$work/gnuplot.err" || { log "gnuplot failed: $(head -3 "$work/gnuplot.err")"; return 1; }
set terminal pngcairo size 900,560 font "DejaVu Sans,11" noenhanced
set datafile missing "?"
set key top left
set grid ytics
set logscale x 2
set xrange [0.8:80]
set xtics ($xtics)
set xlabel "requests in flight per connection (pipeline depth), $CONNS connections"

set output "$dir/throughput.png"
set title "Cache operations per second by depth (90% GET, 10% ADD or SET, $SIZE-byte sessions)\n$host"
set ylabel "operations/s"
set format y "%.1s%c"
set yrange [0:*]
plot "$dir/throughput.dat" using 1:2 with linespoints lw 2 pt 7 title "dc_server", \
     "" using 1:3 with linespoints lw 2 pt 5 title "through dc_client (agent)", \
     "" using 1:4 with linespoints lw 2 pt 9 title "redis-server GET", \
     "" using 1:5 with linespoints lw 1 dt 2 pt 9 title "redis-server SET"

set output "$dir/latency.png"
set title "Latency by depth (dc_bench; redis-benchmark for redis)\n$host"
set ylabel "microseconds"
set logscale y 10
set yrange [*:*]
set format y "%g"
set key bottom right
plot "$dir/latency.dat" using 1:2 with linespoints lw 2 pt 7 lc 1 title "dc_server p50", \
     "" using 1:3 with linespoints lw 1 dt 2 pt 7 lc 1 title "dc_server p99", \
     "" using 1:4 with linespoints lw 2 pt 5 lc 2 title "through dc_client p50", \
     "" using 1:5 with linespoints lw 1 dt 2 pt 5 lc 2 title "through dc_client p99", \
     "" using 1:6 with linespoints lw 2 pt 9 lc 3 title "redis GET p50", \
     "" using 1:7 with linespoints lw 1 dt 2 pt 9 lc 3 title "redis GET p99"

set output "$dir/tls.png"
unset logscale
unset xlabel
set xrange [-0.6:4.6]
set xtics auto font ",9"
set title "Resumed TLS handshakes per second by setup (nginx, dc_swamp)\n$host"
set ylabel "resumed handshakes/s"
set format y "%.0s%c"
set yrange [0:*]
set key top right
set style data histogram
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set boxwidth 0.9
plot "$dir/tls.dat" $tls_cols
EOF
  cp "$work/table.txt" "$dir/results.txt"
  log "pictures: $dir/throughput.png, $dir/latency.png, $dir/tls.png (data: *.dat, results.txt)"
}
if [ -n "$PLOT" ]; then
  plot "$PLOT" || failed=1
fi
exit $failed
