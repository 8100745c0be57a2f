// What the in-process daemon fuzzers (fuzz_server.cc, fuzz_agent.cc) share:
// a per-process scratch directory for UNIX sockets, a listening socket on
// it, a connected non-blocking client socket, running a dc::ev::Loop for a
// few non-blocking iterations, the heap in use (ASan's allocator), and a
// reader that decodes what a daemon sends and fails loudly on anything that
// is not the protocol.
//
// Failures call FUZZ_CHECK, which prints the condition and aborts, so
// libFuzzer records the input.
#pragma once

#include <errno.h>
#include <sanitizer/allocator_interface.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <deque>
#include <string>
#include <vector>

#include "addr.h"
#include "ev/loop.h"
#include "net.h"
#include "proto.h"

#define FUZZ_CHECK(cond)                                                            \
  do {                                                                              \
    if (!(cond)) {                                                                  \
      std::fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
      std::abort();                                                                 \
    }                                                                               \
  } while (0)

namespace dc::fuzz {

// A directory made once per process, removed at exit.
inline const std::string& scratch_dir() {
  static std::string dir = [] {
    char tmpl[] = "/tmp/dcfz.XXXXXX";
    if (!mkdtemp(tmpl)) std::abort();
    std::string d = tmpl;
    static std::string keep = d;
    std::atexit([] { rmdir(keep.c_str()); });
    return d;
  }();
  return dir;
}

// A non-blocking UNIX socket listening on scratch_dir()/name (replacing a
// leftover file), and its Address.
inline UniqueFd listen_unix(const std::string& name, Address& a) {
  a = Address{};
  a.kind = Address::Kind::unix_path;
  a.path = scratch_dir() + "/" + name;
  unlink(a.path.c_str());
  UniqueFd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  FUZZ_CHECK(fd);
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  std::snprintf(sa.sun_path, sizeof sa.sun_path, "%s", a.path.c_str());
  FUZZ_CHECK(bind(fd.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0);
  FUZZ_CHECK(listen(fd.get(), 16) == 0);
  return fd;
}

// A non-blocking client connected to `a` (a UNIX listener of this process:
// the connect completes at once).
inline UniqueFd connect_unix(const Address& a) {
  UniqueFd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  FUZZ_CHECK(fd);
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  std::snprintf(sa.sun_path, sizeof sa.sun_path, "%s", a.path.c_str());
  FUZZ_CHECK(connect(fd.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0);
  return fd;
}

// Runs `loop` for n iterations without blocking.
inline void spin(ev::Loop& loop, int n = 1) {
  for (int i = 0; i < n; ++i) ev_run(loop.raw(), EVRUN_NOWAIT);
}

inline size_t heap_in_use() {
  return __sanitizer_get_current_allocated_bytes();
}

// Writes as much of `in` as the socket takes now; returns the bytes written,
// or -1 when the peer has closed (EPIPE/ECONNRESET).
inline ssize_t write_some(int fd, proto::Bytes in) {
  if (in.empty()) return 0;
  ssize_t n = ::send(fd, in.data(), in.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
  if (n >= 0) return n;
  if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return 0;
  return -1;
}

// The requests a client stream carries, in order, as a peer decodes them:
// stops at the first corrupt byte or at a message that makes the daemon
// close (the caller decides which messages those are).
struct Sent {
  uint32_t uid;
  proto::Op op;
  std::vector<uint8_t> payload;
};

// Reads what a daemon sends on one connection: every byte must decode as
// protocol; each message is handed to `on_msg`. Notices end of stream.
class Reader {
 public:
  // Reads everything available now. Returns the number of bytes read.
  template <class F>
  size_t pump(int fd, F&& on_msg) {
    size_t total = 0;
    uint8_t buf[16384];
    while (!eof_) {
      ssize_t n = ::recv(fd, buf, sizeof buf, MSG_DONTWAIT);
      if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) break;
        eof_ = true;  // reset by the peer
        break;
      }
      if (n == 0) {
        eof_ = true;
        break;
      }
      total += size_t(n);
      proto::Bytes in(buf, size_t(n));
      while (!in.empty()) {
        proto::Message m;
        proto::DecodeResult r = dec_.decode(in, m);
        FUZZ_CHECK(r.status != proto::DecodeStatus::corrupt);  // a daemon speaks the protocol
        in = in.subspan(r.consumed);
        if (r.status == proto::DecodeStatus::need_more) break;
        FUZZ_CHECK(m.proto_level == proto::kProtoLevel);
        on_msg(m);
      }
    }
    return total;
  }
  bool eof() const { return eof_; }
  // No partial frame or message left over.
  bool idle() const { return dec_.idle(); }

 private:
  proto::Decoder dec_;
  bool eof_ = false;
};

}  // namespace dc::fuzz
