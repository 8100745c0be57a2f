#!/usr/bin/env bash
# The stall benchmark of issue 12 (DESIGN.md, "Failure promise"): how many
# TLS handshakes per second one nginx (1 worker) with the shim serves while
# its cache is frozen or far away, against the same nginx without any cache,
# and how soon resumption comes back once the fault ends. See
# docs/performance.md, "Stall under a frozen or distant cache".
#
# One nginx configuration throughout (an RSA 2048 certificate, tickets off
# as in bench/run.sh (f)). For TLS 1.3 and 1.2, one dc_swamp run per
# scenario (-conns CONNS, -resume 0.9, -ticks 50): WARMUP s healthy, then a
# fault for SECONDS, then RECOVERY s more. Handshakes/s and the resumed share are counted over the
# fault's window (the same window, with no fault, for base and healthy),
# failed connections over the whole run, recovery from the end of the fault
# to the first resumed handshake (the -ticks lines say when, to the ms), and
# the resumed share from the recovery target on to the end ("after": did it
# come back for good).
#   base     nginx without the shim: no cache at all
#   healthy  nginx with the shim (DC_CACHE_ADDR = the agent's UNIX socket, the
#            shim's default DC_CACHE_TIMEOUT_MS), agent and dc_server healthy
#   frozen   the same, the agent stopped with kill -STOP for the window, then
#            kill -CONT
#   far      the agent reaches dc_server through `dc_snoop -delay DELAY_MS`
#            (each way, so twice that per round trip), switched on for the
#            window with SIGUSR2 and off with SIGUSR1
# Targets, for frozen and far: handshakes/s >= 0.8x base, 0 failed, recovery
# <= back-off + 1000 ms (back-off: DC_DEFAULT_BACKOFF_MS of the build's
# include/distcache/dc_client.h). A fresh dc_server, agent, proxy and nginx
# for every run.
#
# Usage: bench/stall.sh [-d SECONDS] [-o RESULTS_FILE] [-h]
# -d: the fault's window (default 10); the whole run takes about
# 8 x SECONDS + 45 s with the other defaults (about 2 minutes).
# Environment: BUILD_DIR (default build-bench; any meson build, an absolute
# path too: it is compiled, set up first only when missing); CPU_SERVER
# (default 0: nginx, dc_server) and CPU_AGENT (default CPU_SERVER); CPU_CLIENT
# (default 1: dc_swamp) and CPU_PROXY (default CPU_CLIENT: the delay proxy
# stands for the network, not for the host); CONNS (default 8); TLS_VERSIONS
# (default "1.3 1.2"); SCENARIOS (default "base healthy frozen far"; base is
# needed for the ratios); WARMUP (default 2 s), RECOVERY (default 5 s, the
# window in which recovery is looked for), DELAY_MS (default 75).
# Exit status 0 when every run ran (a missed target is reported, not an
# error), 1 when something could not run.
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD
. "$root/scripts/lib/nginx.sh"

DUR=10
RESULTS=""
usage() { sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
  case "$1" in
    -d) DUR=${2:?-d needs seconds}; shift 2 ;;
    -o) RESULTS=${2:?-o needs a file}; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "bench/stall.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
  esac
done

CPU_SERVER=${CPU_SERVER:-0}
CPU_AGENT=${CPU_AGENT:-$CPU_SERVER}
CPU_CLIENT=${CPU_CLIENT:-1}
CPU_PROXY=${CPU_PROXY:-$CPU_CLIENT}
CONNS=${CONNS:-8}
TLS_VERSIONS=${TLS_VERSIONS:-"1.3 1.2"}
SCENARIOS=${SCENARIOS:-"base healthy frozen far"}
WARMUP=${WARMUP:-2}
RECOVERY=${RECOVERY:-5}
DELAY_MS=${DELAY_MS:-75}
BUILD=${BUILD_DIR:-build-bench}
TICK_MS=50

log() { echo "stall: $*" >&2; }
die() { log "$*"; exit 1; }

command -v nginx >/dev/null || die "nginx is missing (scripts/deps.sh bench installs it)"
command -v openssl >/dev/null || die "openssl is missing"
if [ ! -d "$BUILD" ]; then
  meson setup "$BUILD" --buildtype=release -Dtests=false >/dev/null || die "meson setup $BUILD failed"
fi
build_targets=(dc_server dc_client dc_snoop dc_swamp distcache_shim)
meson compile -C "$BUILD" "${build_targets[@]}" >/dev/null \
  || die "build failed (meson compile -C $BUILD ${build_targets[*]})"
BUILD=$(cd "$BUILD" && pwd)

SERVER=$BUILD/daemons/server/dc_server
AGENT=$BUILD/daemons/agent/dc_client
SHIM=$BUILD/shim/libdistcache_shim.so
SNOOP=$BUILD/tools/dc_snoop
SWAMP=$BUILD/tools/dc_swamp
for f in "$SERVER" "$AGENT" "$SNOOP" "$SWAMP" "$SHIM"; do [ -e "$f" ] || die "no $f"; done

# The back-off of the client library that was built (its source directory,
# from meson's own record, so another checkout's build is judged by its own).
src=$(sed -n 's/.*"source": *"\([^"]*\)".*/\1/p' "$BUILD/meson-info/meson-info.json" 2>/dev/null | head -1)
[ -n "$src" ] || src=$root
BACKOFF_MS=$(awk '$1 == "#define" && $2 == "DC_DEFAULT_BACKOFF_MS" { print $3 + 0 }' \
  "$src/include/distcache/dc_client.h" 2>/dev/null)
[ -n "$BACKOFF_MS" ] || die "no DC_DEFAULT_BACKOFF_MS in $src/include/distcache/dc_client.h"
RECOVERY_TARGET=$((BACKOFF_MS + 1000))
commit=$(git -C "$src" rev-parse --short HEAD 2>/dev/null || echo "not a git checkout")

work=$(mktemp -d /tmp/dcstall.XXXXXX)
chmod 755 "$work"
. "$root/bench/lib.sh"
wait_line() {  # file text
  for _ in $(seq 100); do grep -qF "$2" "$1" 2>/dev/null && return 0; sleep 0.05; done
  die "no '$2' in $1"
}
now_ms() { local t=${EPOCHREALTIME/./}; echo $((t / 1000)); }  # what dc_swamp's ticks use
# CPU time (user + system, clock ticks) of nginx's worker, the child of the
# master: whether the load saturates the one worker.
worker_ticks() { awk '{ print $14 + $15 }' "/proc/$(pgrep -P "$1" | head -1)/stat" 2>/dev/null || echo 0; }

# RSA 2048, so that the server's side of a full handshake (the signature)
# outweighs the client's and dc_swamp on its one CPU saturates the worker:
# with a P-256 key the client's verification is the heavier half and the
# worker idles at about a third of its CPU whatever -conns is, which would
# hide what the cache costs nginx. The "nginx CPU" column shows it.
openssl req -x509 -newkey rsa:2048 -nodes \
  -keyout "$work/key.pem" -out "$work/cert.pem" -subj /CN=localhost -days 2 2>/dev/null \
  || die "openssl req failed"

# One nginx configuration for every run; only the environment differs (the
# shim or not). Tickets off as in bench/run.sh (f), so resumption is by
# session id or stateful TLS 1.3 ticket, i.e. through the cache.
nginx_conf() {  # dir port
  nginx_tls_conf "$1" "$2" "$work/cert.pem" "$work/key.pem" ok \
    "$(nginx_bench_main "$1" DC_CACHE_ADDR DC_CACHE_TIMEOUT_MS DC_CACHE_LOG)" \
    "ssl_session_tickets off;"
}

# measure NAME TLS SCENARIO: starts what SCENARIO needs, runs dc_swamp with
# the fault in its window, stops everything, and leaves the figures in R[].
declare -A R
measure() {
  local name=$1 v=$2 sc=$3 d=$work/$1
  mkdir -p "$d"
  local srv="" agent="" proxy="" ngx env_shim=()
  if [ "$sc" != base ]; then
    start "$CPU_SERVER" "$name-server" "$SERVER" -listen "UNIX:$d/server.sock"
    srv=$last_pid
    wait_sock "$d/server.sock"
    local upstream=UNIX:$d/server.sock
    if [ "$sc" = far ]; then
      # Started with its delay, then at once without it: the fault is
      # SIGUSR2, its end SIGUSR1, on the same connections.
      start "$CPU_PROXY" "$name-proxy" "$SNOOP" -listen "UNIX:$d/proxy.sock" -server "$upstream" \
        -delay "$DELAY_MS"
      proxy=$last_pid
      wait_sock "$d/proxy.sock"
      kill -USR1 "$proxy"
      wait_line "$work/$name-proxy.log" "delay 0 ms (SIGUSR1)"
      upstream=UNIX:$d/proxy.sock
    fi
    start "$CPU_AGENT" "$name-agent" "$AGENT" -listen "UNIX:$d/agent.sock" -server "$upstream"
    agent=$last_pid
    wait_sock "$d/agent.sock"
    env_shim=("LD_PRELOAD=$SHIM" "DC_CACHE_ADDR=UNIX:$d/agent.sock")
  fi
  local port
  port=$(free_port 19443)
  nginx_conf "$d/nginx" "$port"
  start "$CPU_SERVER" "$name-nginx" env "${env_shim[@]}" nginx -p "$d/nginx" -c "$d/nginx/nginx.conf"
  ngx=$last_pid
  wait_port "$port"

  local total=$((WARMUP + DUR + 1))
  [ "$sc" = frozen ] || [ "$sc" = far ] && total=$((WARMUP + DUR + RECOVERY))
  log "$name: dc_swamp -tls $v -conns $CONNS -resume 0.9 for ${total}s, window ${DUR}s after ${WARMUP}s"
  taskset -c "$CPU_CLIENT" "$SWAMP" -connect "127.0.0.1:$port" -tls "$v" -conns "$CONNS" \
    -resume 0.9 -duration "$total" -quiet -ticks "$TICK_MS" >"$d/swamp.json" 2>"$d/swamp.err" &
  local sw=$!
  sleep "$WARMUP"
  local t1 t2 c1 c2
  case "$sc" in
    frozen) kill -STOP "$agent" ;;
    far) kill -USR2 "$proxy" ;;
  esac
  t1=$(now_ms)
  c1=$(worker_ticks "$ngx")
  sleep "$DUR"
  c2=$(worker_ticks "$ngx")
  case "$sc" in
    frozen) kill -CONT "$agent" ;;
    far) kill -USR1 "$proxy" ;;
  esac
  t2=$(now_ms)
  R[cpu_$name]=$(awk -v a="$c1" -v b="$c2" -v hz="$(getconf CLK_TCK)" -v ms="$((t2 - t1))" \
    'BEGIN { printf "%.0f%%", (b - a) * 100000 / hz / ms }')
  wait "$sw"
  local rc=$?
  local j
  j=$(head -1 "$d/swamp.json")
  [ -n "$j" ] || die "$name: dc_swamp gave no result (rc $rc): $(grep -v '^tick ' "$d/swamp.err" | tail -2)"
  [ $rc -eq 0 ] || log "$name: dc_swamp had failures: $(grep -v '^tick ' "$d/swamp.err" | head -1)"
  for p in $ngx $agent $proxy $srv; do stop "$p"; done

  # The window [t1, t2] in tick lines: the first tick at or after t1, the
  # last at or before t2; rates over the ticks' own times.
  # After the fault, the resumed share from the recovery target on (c_: the
  # first tick then, e_: the last tick) says whether resumption came back
  # for good.
  local w
  w=$(awk -v t1="$t1" -v t2="$t2" -v t3="$((t2 + RECOVERY_TARGET))" '
    $1 == "tick" {
      for (i = 2; i <= NF; i++) { split($i, kv, "="); f[kv[1]] = kv[2] }
      t = f["unix_ms"]
      if (t >= t1 && a_t == "") { a_t = t; a_h = f["handshakes"]; a_a = f["attempts"]; a_r = f["resumed"] }
      if (t <= t2) { b_t = t; b_h = f["handshakes"]; b_a = f["attempts"]; b_r = f["resumed"] }
      if (t >= t3 && c_a == "") { c_a = f["attempts"]; c_r = f["resumed"] }
      e_a = f["attempts"]; e_r = f["resumed"]
      if (rec == "" && f["first_resumed_unix_ms"] >= t2) rec = f["first_resumed_unix_ms"] - t2
    }
    END {
      if (a_t == "" || b_t <= a_t) { print "n/a n/a n/a n/a"; exit }
      hs = (b_h - a_h) * 1000 / (b_t - a_t)
      share = (b_a > a_a) ? (b_r - a_r) / (b_a - a_a) : 0
      after = (c_a != "" && e_a > c_a) ? sprintf("%.4f", (e_r - c_r) / (e_a - c_a)) : "n/a"
      printf "%.1f %.4f %s %s\n", hs, share, (rec == "" ? "none" : rec), after
    }' "$d/swamp.err")
  read -r "R[hs_$name]" "R[share_$name]" "R[rec_$name]" "R[after_$name]" <<<"$w"
  R[failed_$name]=$(jnum "$j" failed)
  R[all_hs_$name]=$(jnum "$j" handshakes_per_sec)
  {
    echo "$name: window $t1..$t2 ms, rc $rc"
    echo "$j"
  } >>"$work/raw.txt"
  local rec=""
  [ "$sc" = frozen ] || [ "$sc" = far ] && rec=", recovery ${R[rec_$name]} ms"
  log "$name: ${R[hs_$name]} handshakes/s in the window, resumed share ${R[share_$name]}," \
    "failed ${R[failed_$name]}, nginx worker CPU ${R[cpu_$name]}$rec"
}

t_start=$(date +%s)
load0=$(cut -d' ' -f1-3 /proc/loadavg)
for v in $TLS_VERSIONS; do
  for sc in $SCENARIOS; do measure "$sc-$v" "$v" "$sc"; done
done
elapsed=$(($(date +%s) - t_start))

# ---- results ----
verdict() {  # ratio failed recovery -> PASS, or MISS and what missed
  local miss=""
  awk -v r="$1" 'BEGIN { exit !(r != "n/a" && r + 0 >= 0.8) }' || miss+=" ratio"
  [ "$2" = 0 ] || miss+=" failed"
  { [ "$3" != none ] && [ "$3" != n/a ] && [ "$3" -le "$RECOVERY_TARGET" ]; } || miss+=" recovery"
  if [ -z "$miss" ]; then echo PASS; else echo "MISS:$miss"; fi
}
{
  echo
  echo "distcache stall benchmark — $(date -u +%Y-%m-%dT%H:%M:%SZ) — $(uname -srm), $(nproc) CPUs: $(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)"
  echo "build $BUILD (source $src, commit $commit); nginx 1 worker, $CONNS connections, -resume 0.9"
  echo "window ${DUR}s after ${WARMUP}s warm-up, recovery looked for within ${RECOVERY}s; far = ${DELAY_MS} ms each way"
  echo "nginx, dc_server on CPU $CPU_SERVER, agent on CPU $CPU_AGENT, dc_swamp on CPU $CPU_CLIENT, proxy on CPU $CPU_PROXY"
  echo "targets (frozen, far): >= 0.8x base, 0 failed, recovery <= ${BACKOFF_MS} + 1000 ms"
  echo "load average before: $load0, after: $(cut -d' ' -f1-3 /proc/loadavg); ${elapsed}s in all"
  echo "resumed: share of resumption attempts accepted in the window; after: the same from"
  echo "${RECOVERY_TARGET} ms after the fault's end to the end of the run; nginx CPU: its worker's, in the window"
  printf '%-8s | %-3s | %12s | %8s | %6s | %7s | %11s | %7s | %5s | %s\n' scenario TLS handshakes/s "vs base" failed resumed "recovery ms" after "nginx CPU" verdict
  printf '%s\n' "$(printf '%.0s-' $(seq 110))"
  for v in $TLS_VERSIONS; do
    for sc in $SCENARIOS; do
      n=$sc-$v
      hs=${R[hs_$n]:-n/a}
      ratio=$(awk -v a="$hs" -v b="${R[hs_base-$v]:-}" 'BEGIN { if (a != "n/a" && b + 0 > 0) printf "%.2f", a / b; else print "n/a" }')
      share=$(awk -v s="${R[share_$n]:-n/a}" 'BEGIN { if (s == "n/a") print s; else printf "%.1f%%", s * 100 }')
      rec=-; ver=-; after=-
      if [ "$sc" = frozen ] || [ "$sc" = far ]; then
        rec=${R[rec_$n]:-n/a}
        after=$(awk -v s="${R[after_$n]:-n/a}" 'BEGIN { if (s == "n/a") print s; else printf "%.1f%%", s * 100 }')
        [ "$rec" = none ] && rec=">${RECOVERY}000"
        ver=$(verdict "$ratio" "${R[failed_$n]:-n/a}" "${R[rec_$n]:-n/a}")
      fi
      printf '%-8s | %-3s | %12s | %8s | %6s | %7s | %11s | %7s | %9s | %s\n' "$sc" "$v" \
        "$(awk -v a="$hs" 'BEGIN { if (a == "n/a") print a; else printf "%.0f", a }')" \
        "$ratio" "${R[failed_$n]:-n/a}" "$share" "$rec" "$after" "${R[cpu_$n]:-n/a}" "$ver"
    done
  done
} | tee ${RESULTS:+"$RESULTS"}
if [ -n "$RESULTS" ]; then
  { echo; echo "fault windows and dc_swamp JSON lines:"; cat "$work/raw.txt"; } >>"$RESULTS"
fi
exit 0
