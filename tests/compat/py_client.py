#!/usr/bin/env python3
"""Client side of the compat suite: Python's ssl module as a TLS client.

  py_client.py resume PORT VERSION KIND
      Two HTTPS requests to `openssl s_server -www` on 127.0.0.1:PORT, the
      second offering the session (ticket) the first one got. VERSION is 1.2
      or 1.3; KIND the context: "client" (ssl.create_default_context, i.e.
      PROTOCOL_TLS_CLIENT) or "generic" (PROTOCOL_TLS, OpenSSL's TLS_method,
      which can act as either side). Prints one line per connection and
      exits 0 only when the second connection was resumed, as both Python
      (session_reused) and the server's page ("Reused, TLSv1.x") say.
  py_client.py options
      Prints the options of freshly made contexts, one "KIND=VALUE" a line.
"""
import socket
import ssl
import sys
import warnings


def make_ctx(kind, version):
    if kind == "client":
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE  # the tests' certificate is self-signed
    elif kind == "generic":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS)
    else:
        raise SystemExit(f"unknown context kind {kind}")
    v = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}[version]
    ctx.minimum_version = v
    ctx.maximum_version = v
    return ctx


def fetch(ctx, port, session=None):
    with socket.create_connection(("127.0.0.1", port), timeout=30) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost", session=session) as tls:
            tls.sendall(b"GET / HTTP/1.0\r\n\r\n")
            page = b""
            # Read until the server closes: TLS 1.3 tickets come after the
            # handshake, with the data.
            while True:
                try:
                    chunk = tls.recv(65536)
                except ssl.SSLError as e:  # e.g. no close_notify
                    print(f"  (read ended: {e})")
                    break
                if not chunk:
                    break
                page += chunk
            return tls.session, tls.session_reused, tls.version(), page.decode("latin-1")


def server_view(page):
    for line in page.splitlines():
        if line.startswith(("New, ", "Reused, ")):
            return line.split(",")[0] + "," + line.split(",")[1]
    return "(no session line in the page)"


def resume(port, version, kind):
    ctx = make_ctx(kind, version)
    print(f"context options: {int(ctx.options):#x}")
    sess, reused, ver, page = fetch(ctx, port)
    print(f"first:  {ver}, python session_reused={reused}, server says {server_view(page)}, "
          f"ticket={'yes' if sess is not None and sess.has_ticket else 'no'}")
    if sess is None:
        print("FAIL: no session after the first connection")
        return 1
    sess2, reused2, ver2, page2 = fetch(ctx, port, sess)
    print(f"second: {ver2}, python session_reused={reused2}, server says {server_view(page2)}")
    ok = reused2 and server_view(page2).startswith("Reused")
    print("resumed" if ok else "NOT resumed")
    return 0 if ok else 1


def options():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        kinds = {
            "PROTOCOL_TLS": lambda: ssl.SSLContext(ssl.PROTOCOL_TLS),
            "PROTOCOL_TLS_CLIENT": lambda: ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT),
            "create_default_context": ssl.create_default_context,
        }
        for name, make in kinds.items():
            print(f"{name}={int(make().options):#x}")
    return 0


def main(argv):
    if len(argv) == 5 and argv[1] == "resume":
        return resume(int(argv[2]), argv[3], argv[4])
    if len(argv) == 2 and argv[1] == "options":
        return options()
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
