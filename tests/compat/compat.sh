#!/usr/bin/env bash
# Compatibility tests (issue 12): real servers from Debian, two instances
# each with the same certificate and the shim preloaded, a real dc_server and
# dc_client agent, and `openssl s_client -sess_out/-sess_in` making a session
# on one instance and offering it to the other, TLS 1.2 and TLS 1.3, both
# ways. Every server must answer every connection, resume across instances,
# say in its log that the shim is active and report no cache error, and still
# run afterwards (a crashed process or worker fails the test).
#
# Client side: a Python `ssl` client and curl, with the shim preloaded, must
# behave exactly as without it against a server that resumes by tickets only.
#
# The configurations are the ones of examples/compat/, with the tests' paths
# and ports (the Python server is that very file).
#
# Usage: compat.sh SCENARIO   (meson passes DC_SERVER, DC_AGENT and DC_SHIM in
# the environment). Exit 0 pass, 1 fail, 77 skip. A missing program is a skip,
# except under CI=true, where it is a failure.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../e2e/lib.sh"
examples=$(cd "$here/../../examples/compat" && pwd)

scenario=${1:?usage: compat.sh SCENARIO}
E2E_PREFIX=dc-compat
# Every server here, nginx included, listens on a port below the ephemeral
# range (see e2e_free_listen_port).
e2e_free_port() { e2e_free_listen_port; }

missing() {
  if [ "${CI:-}" = true ]; then
    echo "FAIL: $* (CI=true: every program of the compat suite must be installed)"
    exit 1
  fi
  echo "SKIP: $*"
  exit 77
}
need() {
  local tool
  for tool in "$@"; do
    command -v "$tool" >/dev/null || missing "$tool is not installed"
  done
}
need_file() { [ -e "$1" ] || missing "$1 is not installed${2:+ (package $2)}"; }

need openssl timeout
[ -x "${DC_SERVER:-}" ] || missing "dc_server is not built"
[ -x "${DC_AGENT:-}" ] || missing "dc_client (the agent) is not built"
[ -f "${DC_SHIM:-}" ] || missing "libdistcache_shim.so is not built"

# Debian's python3 (its _ssl uses the system OpenSSL) before any other.
PYTHON=python3
[ -x /usr/bin/python3 ] && PYTHON=/usr/bin/python3

# As in e2e.sh: a shim built with AddressSanitizer needs the ASan runtime
# first in LD_PRELOAD; the hosts free nothing at exit, so no leak reports.
asan_rt=$(ldd "$DC_SHIM" 2>/dev/null | awk '/libasan\.so/ { print $3; exit }')
if [ -n "$asan_rt" ]; then
  DC_SHIM="$asan_rt:$DC_SHIM"
  export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0"
fi

# ---- processes under test: crash reports ----

SERVERS=()   # names of the servers under test (PID_<NAME> set)

# Says how a server that is gone ended, with the end of its logs.
report_dead() {
  local name=$1 pid st f
  pid=${!2}
  wait "$pid" 2>/dev/null
  st=$?
  if [ "$st" -gt 128 ]; then
    e2e_log "FAIL: $name (pid $pid) died: signal $((st - 128)) ($(kill -l $((st - 128)) 2>/dev/null))"
  else
    e2e_log "FAIL: $name (pid $pid) is not running (exit status $st)"
  fi
  for f in "$E2E_DIR/$name"/*.log; do
    [ -s "$f" ] && { e2e_log "--- last lines of $f"; tail -n 15 "$f" >&2; }
  done
}

# At exit, before everything is stopped: any server under test that is not
# running any more is reported (a failed connection is often a crash).
compat_exit() {
  local name var
  for name in "${SERVERS[@]}"; do
    var=PID_$name
    kill -0 "${!var}" 2>/dev/null || report_dead "$name" "$var"
  done
  e2e_cleanup
}

e2e_setup
trap compat_exit EXIT
e2e_make_cert cert localhost
# haproxy wants the certificate and its key in one file.
cat "$E2E_DIR/cert.pem" "$E2E_DIR/cert.key" >"$E2E_DIR/cert.combined.pem"

# The shim's environment. A deadline far above what any operation needs, so
# that a loaded machine never turns a hit into a miss; info lines, so the
# tests can see in each server's log that the shim is active.
shim_env() {
  SHIM_ENV=(LD_PRELOAD="$DC_SHIM" DC_CACHE_ADDR="$AGENT_ADDR" DC_CACHE_TIMEOUT_MS=5000
    DC_CACHE_LOG=info)
}

start_cache() {
  e2e_start_server
  e2e_start_agent
  shim_env
}

check_alive() {
  local var=PID_$1
  if ! kill -0 "${!var}" 2>/dev/null; then
    report_dead "$1" "$var"
    e2e_die "$1 is not running after the connections"
  fi
}

# check_server NAME [CRASH_PATTERN]: NAME still runs, its logs show the shim
# active (its info line) and no line of the shim at level error or about its
# configuration, and none matches CRASH_PATTERN (a worker that died).
check_server() {
  local name=$1 crash=${2:-} logs
  logs=("$E2E_DIR/$name"/*.log)
  check_alive "$name"
  if [ -n "$crash" ] && grep -E -- "$crash" "${logs[@]}" >&2; then
    e2e_die "$name: a worker process died (lines above)"
  fi
  grep -q "distcache-shim\[[0-9]*\]: info: distributed cache " "${logs[@]}" ||
    { tail -n 20 "${logs[@]}" >&2; e2e_die "$name: no line of the shim in its logs; is it active?"; }
  if grep -E "distcache-shim\[[0-9]*\]: (error|config): " "${logs[@]}" >&2; then
    e2e_die "$name: the shim reported errors (lines above)"
  fi
  e2e_log "ok: $name runs, the shim is active in it and reported no error"
}

# both_ways A B CRASH_PATTERN: sessions made on A resume on B and the other
# way, TLS 1.2 and 1.3; then both servers are checked.
both_ways() {
  local a=$1 b=$2 crash=${3:-} v pa pb
  pa=PORT_$a pb=PORT_$b
  SERVERS+=("$a" "$b")
  for v in tls1_2 tls1_3; do
    e2e_expect_resume "$a" "${!pa}" "$b" "${!pb}" "$v"
    e2e_expect_resume "$b" "${!pb}" "$a" "${!pa}" "$v"
  done
  check_server "$a" "$crash"
  check_server "$b" "$crash"
}

# ---- server configurations (as in examples/compat/) ----

# nginx, stream module: TLS terminated by a stream server and passed on to a
# plain HTTP server of the same nginx on a UNIX socket, which answers
# "hello from NAME" (it reads the request first, so the client's bytes never
# meet a closed socket).
nginx_stream_conf() {
  local name=$1 port=$2 cert=$3 extra=$4 d=$E2E_DIR/$1
  mkdir -p "$d"
  rm -f "$d/backend.sock"   # left by an attempt that lost its port
  cat >"$d/nginx.conf" <<CONF
load_module /usr/lib/nginx/modules/ngx_stream_module.so;
worker_processes 2;
events { worker_connections 256; }
stream {
  server {
$(nginx_tls_listen "$port" "$E2E_DIR/$cert.pem" "$E2E_DIR/$cert.key")
    $extra
    proxy_pass unix:$d/backend.sock;
  }
}
http {
$(nginx_temp_paths "$d")
  server {
    listen unix:$d/backend.sock;
    location / { return 200 "hello from $name\n"; }
  }
}
CONF
}

# haproxy: examples/compat/haproxy.cfg itself (4 threads, workers as user
# haproxy, TLS terminated on the bind line, a fixed HTTP answer), with this
# test's port, certificate and name put in.
examples=$here/../../examples/compat
start_haproxy() {
  local name=$1 port=$2 d=$E2E_DIR/$1
  sed -e "s#bind :443 ssl crt /etc/haproxy/certs/example.org.pem#bind 127.0.0.1:$port ssl crt $E2E_DIR/cert.combined.pem#" \
    -e "s#hello from haproxy#hello from $name#" "$examples/haproxy.cfg" >"$d/haproxy.cfg"
  grep -q "127.0.0.1:$port" "$d/haproxy.cfg" || e2e_die "examples/compat/haproxy.cfg changed: update the test"
  env "${SHIM_ENV[@]}" haproxy -db -f "$d/haproxy.cfg" >"$d/stderr.log" 2>&1 </dev/null &
}

# nginx (http): examples/compat/nginx-http.conf itself, with this test's
# port, certificate, name and paths put in (logs and temporary files in the
# test's directory).
nginx_http_example_conf() {  # NAME PORT CERT EXTRA (see E2E_NGINX_CONF in lib.sh)
  local name=$1 port=$2 cert=$3 d=$E2E_DIR/$1
  mkdir -p "$d"
  sed -e "s#listen 443 ssl;#listen 127.0.0.1:$port ssl;#" \
    -e "s#/etc/ssl/example.org/fullchain.pem#$E2E_DIR/$cert.pem#" \
    -e "s#/etc/ssl/example.org/privkey.pem#$E2E_DIR/$cert.key#" \
    -e "s#hello from nginx#hello from $name#" \
    -e "s#^http {#http {\n    access_log off;\n    client_body_temp_path $d/body;\n    proxy_temp_path $d/proxy;\n    fastcgi_temp_path $d/fastcgi;\n    uwsgi_temp_path $d/uwsgi;\n    scgi_temp_path $d/scgi;#" \
    "$examples/nginx-http.conf" >"$d/nginx.conf"
  grep -q "127.0.0.1:$port" "$d/nginx.conf" || e2e_die "examples/compat/nginx-http.conf changed: update the test"
}

# apache2 with mod_ssl and the event MPM, children as www-data, its own
# ServerRoot, no system file touched. SSLSessionCache must be set: without
# it (or with "none") mod_ssl turns session caching off and the shim stands
# aside (APACHE_SESSION_CACHE=none shows it). Every node needs the same
# certificate and the same ServerName: mod_ssl derives the session id context
# from the virtual host's name and port (443 when the name gives none).
APACHE_MODULES=/usr/lib/apache2/modules
start_apache2() {
  local name=$1 port=$2 d=$E2E_DIR/$1
  mkdir -p "$d/htdocs"
  printf 'hello from %s\n' "$name" >"$d/htdocs/index.html"
  cat >"$d/apache2.conf" <<CONF
ServerRoot $d
PidFile $d/apache2.pid
DefaultRuntimeDir $d
Mutex file:$d default
ErrorLog $d/error.log
LogLevel info
User www-data
Group www-data
Listen 127.0.0.1:$port
LoadModule mpm_event_module $APACHE_MODULES/mod_mpm_event.so
LoadModule authz_core_module $APACHE_MODULES/mod_authz_core.so
LoadModule dir_module $APACHE_MODULES/mod_dir.so
LoadModule socache_shmcb_module $APACHE_MODULES/mod_socache_shmcb.so
LoadModule ssl_module $APACHE_MODULES/mod_ssl.so
StartServers 2
ServerLimit 2
ThreadsPerChild 8
MaxRequestWorkers 16
MinSpareThreads 8
MaxSpareThreads 16
ServerName localhost
DocumentRoot $d/htdocs
DirectoryIndex index.html
<Directory $d/htdocs>
    Require all granted
</Directory>
SSLSessionCache ${APACHE_SESSION_CACHE:-shmcb:$d/ssl_scache(512000)}
SSLSessionCacheTimeout 300
<VirtualHost 127.0.0.1:$port>
    ServerName localhost
    SSLEngine on
    SSLCertificateFile $E2E_DIR/cert.pem
    SSLCertificateKeyFile $E2E_DIR/cert.key
    SSLProtocol -all +TLSv1.2 +TLSv1.3
</VirtualHost>
CONF
  env "${SHIM_ENV[@]}" apache2 -DFOREGROUND -d "$d" -f "$d/apache2.conf" \
    >"$d/stderr.log" 2>&1 </dev/null &
}

# stunnel4: server mode as user nobody, each connection answered by a small
# program (exec) that reads the request and says hello.
start_stunnel() {
  local name=$1 port=$2 d=$E2E_DIR/$1
  cat >"$d/answer.sh" <<CONF
#!/bin/sh
# Reads the request up to its empty line, then answers.
cr=\$(printf '\r')
while IFS= read -r line; do
  case \$line in ''|"\$cr") break ;; esac
done
printf 'hello from %s\n' "$name"
CONF
  chmod 755 "$d/answer.sh"
  cat >"$d/stunnel.conf" <<CONF
foreground = yes
pid =
debug = info
setuid = nobody
setgid = nogroup
[hello]
accept = 127.0.0.1:$port
cert = $E2E_DIR/cert.pem
key = $E2E_DIR/cert.key
sslVersionMin = TLSv1.2
exec = $d/answer.sh
CONF
  env "${SHIM_ENV[@]}" stunnel4 "$d/stunnel.conf" >"$d/stderr.log" 2>&1 </dev/null &
}

# openssl s_server -www, with the shim (unless S_SERVER_SHIM=0); arguments in
# S_SERVER_ARGS follow.
start_s_server() {
  local name=$1 port=$2 d=$E2E_DIR/$1 env=()
  [ "${S_SERVER_SHIM:-1}" = 1 ] && env=("${SHIM_ENV[@]}")
  env "${env[@]}" openssl s_server -accept "127.0.0.1:$port" -cert "$E2E_DIR/cert.pem" \
    -key "$E2E_DIR/cert.key" -www "${S_SERVER_ARGS[@]}" >"$d/stderr.log" 2>&1 </dev/null &
}
S_SERVER_ARGS=()

start_python() {
  local name=$1 port=$2 d=$E2E_DIR/$1
  env "${SHIM_ENV[@]}" "$PYTHON" "$examples/python_server.py" --port "$port" \
    --cert "$E2E_DIR/cert.pem" --key "$E2E_DIR/cert.key" --name "$name" \
    >"$d/stderr.log" 2>&1 </dev/null &
}

# ---- client side ----

# Two TLS servers without the shim, s_server -www, whose page says "New,
# TLSv1.x" or "Reused, TLSv1.x": T resumes by tickets only (its session cache
# off: a client resumes only with the ticket it got), S by session id too
# (OpenSSL's defaults; curl sends no ticket extension in TLS 1.2).
start_client_servers() {
  start_cache   # only so that DC_CACHE_ADDR names a real agent
  S_SERVER_SHIM=0 S_SERVER_ARGS=(-no_cache)
  e2e_start_listener T start_s_server
  S_SERVER_ARGS=()
  e2e_start_listener S start_s_server
  SERVERS+=(T S)
}

# The shim's info line in a client's stderr: it really was loaded and active.
expect_shim_line() {
  grep -q "distcache-shim\[[0-9]*\]: info: distributed cache " "$1" ||
    { cat "$1" >&2; e2e_die "$2: no line of the shim: was it loaded?"; }
}

# curl_resume OUTDIR PORT VERSION [VAR=VALUE...]: one curl run fetching the
# page twice (s_server closes after each answer, so two connections; curl
# offers the first one's session on the second). True when the server's page
# says New, then Reused.
curl_resume() {
  local out=$1 port=$2 v=$3 rc first second
  shift 3
  mkdir -p "$out"
  env "$@" timeout 30 curl -sS -k "--tlsv$v" --tls-max "$v" --http1.1 -w '%{num_connects}\n' \
    -o "$out/page1" "https://127.0.0.1:$port/" -o "$out/page2" "https://127.0.0.1:$port/" \
    >"$out/stdout" 2>"$out/stderr"
  rc=$?
  first=$(sed -n 's/^\(New\|Reused\), \(TLSv[0-9.]*\),.*/\1, \2/p' "$out/page1" 2>/dev/null)
  second=$(sed -n 's/^\(New\|Reused\), \(TLSv[0-9.]*\),.*/\1, \2/p' "$out/page2" 2>/dev/null)
  e2e_log "  curl exit $rc, connections $(tr '\n' ' ' <"$out/stdout")- server says: first '$first', second '$second'"
  [ "$rc" = 0 ] && [ "$first" = "New, TLSv$v" ] && [ "$second" = "Reused, TLSv$v" ]
}

case $scenario in
  nginx_http)
    need nginx
    start_cache
    E2E_NGINX_CONF=nginx_http_example_conf
    e2e_start_nginx A cert "" "${SHIM_ENV[@]}"
    e2e_start_nginx B cert "" "${SHIM_ENV[@]}"
    both_ways A B "exited on signal"
    ;;

  nginx_stream)
    need nginx
    need_file /usr/lib/nginx/modules/ngx_stream_module.so libnginx-mod-stream
    start_cache
    E2E_NGINX_CONF=nginx_stream_conf
    e2e_start_nginx A cert "" "${SHIM_ENV[@]}"
    e2e_start_nginx B cert "" "${SHIM_ENV[@]}"
    both_ways A B "exited on signal"
    ;;

  haproxy)
    need haproxy
    start_cache
    e2e_start_listener A start_haproxy
    e2e_start_listener B start_haproxy
    both_ways A B
    ;;

  haproxy_shared_tickets)
    # DC_CACHE_TICKETS=shared under haproxy (4 threads, its own ticket
    # handling): stateless tickets issued by one instance open on the other.
    need haproxy
    start_cache
    (umask 077 && openssl rand -hex 32 >"$E2E_DIR/keys")
    SHIM_ENV+=(DC_CACHE_SEAL_KEYS="$E2E_DIR/keys" DC_CACHE_TICKETS=shared)
    e2e_start_listener A start_haproxy
    e2e_start_listener B start_haproxy
    both_ways A B
    n=$(grep -l "TLS session ticket:" "$E2E_DIR"/out.* 2>/dev/null | wc -l)
    [ "$n" -gt 0 ] || e2e_die "haproxy issued no ticket under DC_CACHE_TICKETS=shared"
    grep -q "tickets shared" "$E2E_DIR/A/stderr.log" ||
      e2e_die "the shim did not start with the shared ticket policy"
    ;;

  apache2)
    need apache2
    need_file "$APACHE_MODULES/mod_ssl.so" apache2
    start_cache
    e2e_start_listener A start_apache2
    e2e_start_listener B start_apache2
    # mod_ssl refuses (400) a request without Host when the client sent SNI.
    E2E_REQUEST='GET / HTTP/1.0\r\nHost: localhost\r\n\r\n'
    both_ways A B "exit signal|Segmentation fault|AH00052"
    # "SSLSessionCache none" turns session caching off: the shim respects
    # that (and says so), the server answers, sessions never cross.
    APACHE_SESSION_CACHE=none
    e2e_start_listener C start_apache2
    SERVERS+=(C)
    for v in tls1_2 tls1_3; do
      e2e_expect_no_resume A "$PORT_A" C "$PORT_C" "$v"
    done
    grep -Eq "distcache-shim\[[0-9]*\]: [a-z]+: .*turned (server )?session caching off" \
      "$E2E_DIR/C/error.log" ||
      { cat "$E2E_DIR/C/error.log" >&2; e2e_die "C: the shim did not say that caching is off"; }
    check_alive C
    ;;

  stunnel)
    need stunnel4
    start_cache
    e2e_start_listener A start_stunnel
    e2e_start_listener B start_stunnel
    both_ways A B
    ;;

  s_server)
    start_cache
    e2e_start_listener A start_s_server
    e2e_start_listener B start_s_server
    # Its page lists the ciphers it was built with (and no name), and says
    # what the server saw: checked below as well.
    E2E_ANSWER='Ciphers supported in s_server binary'
    both_ways A B
    for v in 2 3; do
      for f in "$E2E_DIR"/out.[AB].tls1_$v.resume; do
        grep -q "^Reused, TLSv1\.$v," "$f" && [ "$(grep -c '^Reused, ' "$f")" = 2 ] ||
          { cat "$f" >&2; e2e_die "s_server's own page does not say Reused ($f)"; }
      done
    done
    e2e_log "ok: s_server's pages say Reused too"
    ;;

  python_server)
    need "$PYTHON"
    start_cache
    e2e_start_listener A start_python
    e2e_start_listener B start_python
    both_ways A B
    ;;

  python_client)
    need "$PYTHON"
    start_client_servers
    client=$here/py_client.py
    fails=()
    # The contexts a client makes are exactly what they are without the shim:
    # in particular OpenSSL's generic TLS_method (PROTOCOL_TLS), which can
    # act as client or server, gains no SSL_OP_NO_TICKET.
    "$PYTHON" "$client" options >"$E2E_DIR/options.plain" 2>&1 ||
      { cat "$E2E_DIR/options.plain" >&2; e2e_die "py_client.py options failed"; }
    env "${SHIM_ENV[@]}" "$PYTHON" "$client" options >"$E2E_DIR/options.shim" 2>"$E2E_DIR/options.err" ||
      { cat "$E2E_DIR/options.shim" "$E2E_DIR/options.err" >&2; e2e_die "py_client.py options failed with the shim"; }
    expect_shim_line "$E2E_DIR/options.err" "python"
    if ! diff "$E2E_DIR/options.plain" "$E2E_DIR/options.shim" >"$E2E_DIR/options.diff"; then
      e2e_log "context options without (<) and with (>) the shim; SSL_OP_NO_TICKET is 0x4000:"
      cat "$E2E_DIR/options.diff" >&2
      fails+=("a client context's options changed with the shim preloaded")
    else
      e2e_log "ok: client contexts' options are the same with the shim: $(tr '\n' ' ' <"$E2E_DIR/options.plain")"
    fi
    for v in 1.2 1.3; do
      for kind in client generic; do
        out=$E2E_DIR/py.$kind.$v
        "$PYTHON" "$client" resume "$PORT_T" "$v" "$kind" >"$out.plain" 2>&1 ||
          { cat "$out.plain" >&2; e2e_die "TLS $v, $kind context, WITHOUT the shim: no resumption (the test itself is wrong)"; }
        if env "${SHIM_ENV[@]}" "$PYTHON" "$client" resume "$PORT_T" "$v" "$kind" >"$out.shim" 2>&1; then
          e2e_log "ok: TLS $v, $kind context: the ticket resumed with the shim preloaded, as without it"
        else
          e2e_log "TLS $v, $kind context, with the shim preloaded:"
          sed 's/^/  /' "$out.shim" >&2
          fails+=("TLS $v, $kind context: no ticket resumption with the shim preloaded (it resumes without)")
        fi
      done
    done
    check_alive T
    check_alive S
    [ ${#fails[@]} = 0 ] || { printf 'FAIL: %s\n' "${fails[@]}" >&2; exit 1; }
    ;;

  curl_client)
    need curl
    start_client_servers
    fails=()
    # TLS 1.3 with a ticket (T); TLS 1.2 by session id (S: curl asks for no
    # ticket in TLS 1.2).
    for case in "T 1.3" "S 1.2" "S 1.3"; do
      read -r srv v <<<"$case"
      port=PORT_$srv
      e2e_log "TLS $v, server $srv, without the shim:"
      curl_resume "$E2E_DIR/curl.$srv.$v.plain" "${!port}" "$v" ||
        e2e_die "TLS $v, server $srv, WITHOUT the shim: curl did not resume (the test itself is wrong)"
      e2e_log "TLS $v, server $srv, with the shim preloaded:"
      if curl_resume "$E2E_DIR/curl.$srv.$v.shim" "${!port}" "$v" "${SHIM_ENV[@]}"; then
        e2e_log "ok: TLS $v, server $srv: curl resumed with the shim preloaded, as without it"
      else
        sed 's/^/  /' "$E2E_DIR/curl.$srv.$v.shim/stderr" >&2
        fails+=("TLS $v, server $srv: curl did not resume with the shim preloaded (it does without)")
      fi
      expect_shim_line "$E2E_DIR/curl.$srv.$v.shim/stderr" curl
    done
    check_alive T
    check_alive S
    [ ${#fails[@]} = 0 ] || { printf 'FAIL: %s\n' "${fails[@]}" >&2; exit 1; }
    ;;

  *)
    e2e_die "unknown scenario $scenario"
    ;;
esac
echo "PASS: $scenario"
exit 0
