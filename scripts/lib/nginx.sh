# nginx configurations for the tests and the benchmarks, written in one
# place: a TLS server on 127.0.0.1 that answers a fixed text, with nginx's
# logs and temporary files in its own directory. Sourced (bash) by
# tests/e2e/lib.sh (and so tests/compat/compat.sh), bench/run.sh and
# bench/stall.sh; it defines functions only.

# nginx_temp_paths DIR: the http{} lines that keep nginx's temporary files
# in DIR (nothing under /var/lib/nginx), with access logging off.
nginx_temp_paths() {
  local d=$1
  cat <<EOF
  access_log off;
  client_body_temp_path $d/body;
  proxy_temp_path $d/proxy;
  fastcgi_temp_path $d/fastcgi;
  uwsgi_temp_path $d/uwsgi;
  scgi_temp_path $d/scgi;
EOF
}

# nginx_tls_listen PORT CERT KEY: the server{} lines of a TLS listener on
# 127.0.0.1:PORT with the certificate and key files CERT and KEY, TLS 1.2
# and 1.3 (http and stream servers alike).
nginx_tls_listen() {
  cat <<EOF
    listen 127.0.0.1:$1 ssl;
    ssl_certificate $2;
    ssl_certificate_key $3;
    ssl_protocols TLSv1.2 TLSv1.3;
EOF
}

# nginx_bench_main DIR VAR...: the main-context lines of a benchmark's nginx:
# in the foreground as the calling user, a master and one worker, pidfile
# and error log in DIR, the environment variables VAR passed to the worker.
nginx_bench_main() {
  local d=$1 v
  shift
  printf 'user %s %s;\ndaemon off;\nmaster_process on;\nworker_processes 1;\n' "$(id -un)" "$(id -gn)"
  printf 'pid %s/nginx.pid;\nerror_log %s/error.log warn;\n' "$d" "$d"
  for v in "$@"; do printf 'env %s;\n' "$v"; done
  printf 'events { worker_connections 1024; }\n'
}

# nginx_tls_conf DIR PORT CERT KEY BODY MAIN SERVER: writes DIR/nginx.conf
# (making DIR and DIR/logs): the main-context lines MAIN, then an http
# server (nginx_tls_listen PORT CERT KEY) with the directives SERVER in its
# server block, answering every request 200 with the line BODY.
nginx_tls_conf() {
  local d=$1 port=$2 cert=$3 key=$4 body=$5 main=$6 server=$7
  mkdir -p "$d/logs"
  cat >"$d/nginx.conf" <<EOF
$main
http {
$(nginx_temp_paths "$d")
  server {
$(nginx_tls_listen "$port" "$cert" "$key")
    $server
    location / { return 200 "$body\n"; }
  }
}
EOF
}
