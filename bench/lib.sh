# What bench/run.sh and bench/stall.sh share: the background processes of a
# run (each pinned to a CPU, its output in $work/NAME.log, every one stopped
# at exit) and waiting for what they open. Sourced (bash) after the caller
# has set $work (the run's directory) and defined die MESSAGE; the nginx
# configuration is in scripts/lib/nginx.sh.

pids=()  # every process started and not yet stopped
cleanup() {
  # A stopped process keeps a SIGTERM pending until it runs again.
  for p in "${pids[@]}"; do kill -CONT "$p" 2>/dev/null; kill "$p" 2>/dev/null; done
  sleep 0.2
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

# Starts a background process pinned to a CPU; its pid is in $last_pid.
start() {  # cpu logname cmd...
  local cpu=$1 name=$2; shift 2
  taskset -c "$cpu" "$@" >>"$work/$name.log" 2>&1 &
  last_pid=$!
  pids+=("$last_pid")
}
# Stops a process started with start (SIGTERM, SIGKILL after 5 s) and
# reaps it.
stop() {  # pid
  kill -CONT "$1" 2>/dev/null
  kill "$1" 2>/dev/null
  for _ in $(seq 50); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$1" 2>/dev/null
  wait "$1" 2>/dev/null
  local i
  for i in "${!pids[@]}"; do [ "${pids[i]}" = "$1" ] && unset 'pids[i]'; done
  pids=("${pids[@]}")
}
wait_sock() {  # path
  for _ in $(seq 100); do [ -S "$1" ] && return 0; sleep 0.05; done
  die "socket $1 did not appear (logs in $work)"
}
wait_port() {  # port
  for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.05; done
  die "nothing listens on port $1 (logs in $work)"
}
free_port() {  # a port nothing answers on, from $1 up
  local p=$1
  while (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; do p=$((p + 1)); done
  echo "$p"
}
# jnum JSON KEY: the first number after "KEY": in JSON.
jnum() { grep -o "\"$2\":[-0-9.eE+]*" <<<"$1" | head -1 | cut -d: -f2; }
