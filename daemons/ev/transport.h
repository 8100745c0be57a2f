// What a Connection reads and writes through: a small table of operations
// (handshake, read, write, shutdown, close) over one connected non-blocking
// socket, each returning one IoResult, so the connection's state machine
// never branches on what is underneath. Two implementations: the plain
// socket (here) and TLS (ev/tls.h). The socket itself stays the
// Connection's (it watches it with libev and closes it); a transport only
// borrows the descriptor.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>

namespace dc::ev {

// The result of one I/O step.
enum class IoResult : uint8_t { ok, want_read, want_write, closed, error };
const char* to_string(IoResult r);

// One read or write: its result, and on `ok` how many bytes moved (> 0).
struct IoStep {
  IoResult result;
  size_t n = 0;
};

class Transport {
 public:
  virtual ~Transport() = default;
  // Drives the transport's own handshake one step. ok once it is complete
  // (at once for a plain socket), want_read / want_write while it waits
  // for the socket, error when it failed (error() says why).
  virtual IoResult handshake() = 0;
  // Reads into `buf`: ok with n > 0; want_read when nothing is there now;
  // want_write when the transport must write before it can read on;
  // closed at the peer's orderly end of stream; error otherwise.
  virtual IoStep read(std::span<uint8_t> buf) = 0;
  // Writes a prefix of `buf` (not empty): ok with n > 0; want_write when
  // the socket takes nothing now (call again with at least the same bytes
  // at the front: they may have been taken in part); want_read; error.
  virtual IoStep write(std::span<const uint8_t> buf) = 0;
  // An orderly end, best effort and without waiting: TLS sends its
  // close_notify. Nothing is read or written after it.
  virtual void shutdown() = 0;
  // Lets go of what the transport holds (not the socket). Idempotent.
  virtual void close() = 0;
  // True when input was taken off the socket and not handed out yet: the
  // socket will not become readable for it, so the caller must read again.
  virtual bool pending() const = 0;
  // Heap bytes the transport holds (for the connection limits' budget).
  virtual size_t heap_bytes() const = 0;
  // Why the last handshake(), read() or write() failed, one line; "" when
  // nothing failed.
  virtual const std::string& error() const = 0;
};

// The plain socket: recv() and send(), one system call each.
std::unique_ptr<Transport> plain_transport(int fd);

}  // namespace dc::ev
