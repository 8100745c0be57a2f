#!/usr/bin/env python3
"""A small HTTPS server on Python's ssl module, sharing its TLS sessions
through distcache with no change to the code.

Run it with the shim preloaded and the agent's socket named:

    LD_PRELOAD=/usr/lib/x86_64-linux-gnu/distcache/libdistcache_shim.so \\
    DC_CACHE_ADDR=UNIX:/run/distcache/dc_client.sock \\
        python3 python_server.py --port 8443 --cert site.pem --key site.key

What the operator must know:
- Python's _ssl module is linked against the system OpenSSL (Debian's
  python3 is), so the shim sees its SSL_CTX_new; a Python built with a
  static or private OpenSSL is out of the shim's reach.
- ssl.SSLContext(PROTOCOL_TLS_SERVER) is a server context: the shim attaches
  the cache to it. Python gives every server context the same session id
  context, so every node resumes the others' sessions as long as they all
  use the same certificate.
- The process must be able to connect to the agent's socket (dc_client
  -sockgroup GROUP -sockperms 0660 for a dedicated user).
- Handshakes run in the per-connection threads; the shim gives each thread
  its own connection to the agent.

The distcache tests (tests/compat/compat.sh) run this very file.
"""
import argparse
import http.server
import ssl
import sys


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8443)
    ap.add_argument("--cert", required=True, help="certificate (PEM)")
    ap.add_argument("--key", required=True, help="private key (PEM)")
    ap.add_argument("--name", default="python", help="answered as 'hello from NAME'")
    args = ap.parse_args()

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(args.cert, args.key)
    # Nothing about sessions or tickets needs setting: the shim's default
    # policy turns tickets into sessions stored in the distributed cache.

    body = f"hello from {args.name}\n".encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, fmt, *a):
            pass

    class Server(http.server.ThreadingHTTPServer):
        daemon_threads = True

        # Runs in the connection's own thread: the handshake too.
        def finish_request(self, request, client_address):
            with ctx.wrap_socket(request, server_side=True) as tls:
                self.RequestHandlerClass(tls, client_address, self)

        def handle_error(self, request, client_address):
            print(f"connection from {client_address[0]}: {sys.exc_info()[1]}",
                  file=sys.stderr, flush=True)

    try:
        srv = Server((args.host, args.port), Handler)
    except OSError as e:
        sys.exit(f"cannot listen on {args.host}:{args.port}: {e.strerror}")
    print(f"listening on {args.host}:{args.port}", file=sys.stderr, flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
