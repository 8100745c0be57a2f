#!/usr/bin/env python3
"""The wire byte order of the real dc_server and dc_client (the agent),
checked without the project's codec.

Requests are built field by field from PROTOCOL.md with explicit big-endian
arithmetic, and the answers are compared byte for byte with what PROTOCOL.md
says they are. The golden vectors of tests/unit/test_proto.cc check the
codec against bytes written by hand; this checks the daemons as built, and
shares no code with lib/proto.*. The values are chosen so that a field read
in the wrong byte order gives another answer: timeout 600000 ms read
little-endian is over 7 days (TIMEOUT_RANGE), an id_len of 7 is 117440512
(CORRUPT), a full frame's data_len 2048 is 8 (corrupt stream), the
version 0x0011 is 0x1100, and the uids have four different bytes.

Usage: wire_bytes.py DC_SERVER DC_CLIENT. Exit 0 pass, 1 fail.
"""
import os
import socket
import subprocess
import sys
import tempfile
import time

ADD, GET, REMOVE, HAVE = 0, 1, 2, 3
VERSION_1 = 0x0011 << 16  # proto_level: version 0x0011, patch 0


def be(value, width):
    """VALUE as WIDTH bytes, most significant first (network order)."""
    return bytes((value >> (8 * (width - 1 - i))) & 0xFF for i in range(width))


def frame(uid, op, data, complete=1, response=0, level=VERSION_1):
    """One frame: the 14-byte header of PROTOCOL.md, then DATA."""
    return (be(level, 4) + bytes([response]) + be(uid, 4) + bytes([0, op, complete]) +
            be(len(data), 2) + data)


def message(uid, op, payload, response=0):
    """PAYLOAD as frames of 2048 bytes, the last one marked complete."""
    chunks = [payload[i:i + 2048] for i in range(0, len(payload), 2048)] or [b""]
    return b"".join(
        frame(uid, op, c, complete=int(i == len(chunks) - 1), response=response)
        for i, c in enumerate(chunks))


def add_payload(timeout_ms, sid, data):
    return be(timeout_ms, 4) + be(len(sid), 4) + sid + data


def connect(path, seconds=10):
    end = time.monotonic() + seconds
    while True:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(path)
            s.settimeout(5)
            return s
        except OSError:
            s.close()
            if time.monotonic() > end:
                raise
            time.sleep(0.02)


def recv_exactly(s, n):
    got = b""
    while len(got) < n:
        chunk = s.recv(n - len(got))
        if not chunk:
            break
        got += chunk
    return got


failures = []


def expect(what, s, request, answer):
    """Sends REQUEST; the next bytes must be exactly ANSWER."""
    try:
        s.sendall(request)
        got = recv_exactly(s, len(answer))
    except OSError as e:  # closed, reset, nothing within the timeout
        failures.append(f"{what}: {e!r}")
        return
    if got != answer:
        failures.append(f"{what}: expected {answer[:40].hex()}... ({len(answer)} bytes), "
                        f"got {got[:40].hex()}... ({len(got)} bytes)")
    else:
        print(f"ok: {what}")


def expect_closed(what, s, request):
    """Sends REQUEST; the peer must close the connection without answering."""
    try:
        s.sendall(request)
        got = s.recv(100)
    except ConnectionResetError:
        got = b""
    except OSError:
        got = None
    if got != b"":
        failures.append(f"{what}: expected the connection closed, got "
                        f"{'nothing in 5 s' if got is None else got.hex()}")
    else:
        print(f"ok: {what}")


def check(name, path):
    sid = b"wire-id"  # 7 bytes
    data = bytes((i * 7 + 1) & 0xFF for i in range(3000))  # two frames
    s = connect(path)
    yes, no = b"\x00", b"\x01"
    expect(f"{name}: ADD (two frames) answers OK", s,
           message(0x01020304, ADD, add_payload(600000, sid, data)),
           frame(0x01020304, ADD, yes, response=1))
    expect(f"{name}: GET answers the data in two frames", s,
           message(0xA0B0C0D0, GET, sid), message(0xA0B0C0D0, GET, data, response=1))
    expect(f"{name}: HAVE answers present", s, message(0x00FF0001, HAVE, sid),
           frame(0x00FF0001, HAVE, yes, response=1))
    expect(f"{name}: REMOVE answers removed", s, message(0x7F000102, REMOVE, sid),
           frame(0x7F000102, REMOVE, yes, response=1))
    expect(f"{name}: HAVE answers absent", s, message(0x00FF0002, HAVE, sid),
           frame(0x00FF0002, HAVE, no, response=1))
    # 8 days: the TIMEOUT_RANGE answer depends on reading timeout_ms in order.
    expect(f"{name}: ADD of 8 days answers TIMEOUT_RANGE (102)", s,
           message(0x10203040, ADD, add_payload(8 * 86400000, sid, b"x" * 10)),
           frame(0x10203040, ADD, bytes([102]), response=1))
    s.close()
    # The version in the wrong byte order: not version 0x0011, a corrupt stream.
    s = connect(path)
    expect_closed(f"{name}: version bytes swapped closes the connection", s,
                  frame(1, HAVE, sid, level=0x00001100))
    s.close()


def main():
    server_bin, agent_bin = sys.argv[1], sys.argv[2]
    with tempfile.TemporaryDirectory(prefix="dc-wire.") as d:
        server_sock, agent_sock = os.path.join(d, "s"), os.path.join(d, "a")
        log = open(os.path.join(d, "log"), "w+")
        procs = [subprocess.Popen([server_bin, "-listen", "UNIX:" + server_sock],
                                  stdout=log, stderr=log)]
        try:
            connect(server_sock).close()
            procs.append(subprocess.Popen(
                [agent_bin, "-listen", "UNIX:" + agent_sock, "-server", "UNIX:" + server_sock,
                 "-retry", "100", "-timeout", "5000"], stdout=log, stderr=log))
            # The agent answers DISCONNECTED (2) until it has reached the server.
            for _ in range(500):
                with connect(agent_sock) as s:
                    s.sendall(message(9, HAVE, b"probe"))
                    if recv_exactly(s, 15)[-1:] != b"\x02":
                        break
                time.sleep(0.02)
            check("dc_server", server_sock)
            check("dc_client", agent_sock)
        finally:
            for p in reversed(procs):
                p.terminate()
                p.wait(10)
            if failures:
                log.seek(0)
                print(log.read(), file=sys.stderr)
    for f in failures:
        print("FAIL: " + f, file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
