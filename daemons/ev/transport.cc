// The plain-socket transport: see transport.h.
#include "ev/transport.h"

#include <errno.h>
#include <sys/socket.h>

#include <cstring>

namespace dc::ev {

const char* to_string(IoResult r) {
  switch (r) {
    case IoResult::ok:
      return "ok";
    case IoResult::want_read:
      return "want_read";
    case IoResult::want_write:
      return "want_write";
    case IoResult::closed:
      return "closed";
    case IoResult::error:
      return "error";
  }
  return "unknown";
}

namespace {

class PlainTransport final : public Transport {
 public:
  explicit PlainTransport(int fd) : fd_(fd) {}
  IoResult handshake() override { return IoResult::ok; }

  IoStep read(std::span<uint8_t> buf) override {
    for (;;) {
      ssize_t n = ::recv(fd_, buf.data(), buf.size(), 0);
      if (n > 0) return {IoResult::ok, size_t(n)};
      if (n == 0) return {IoResult::closed};
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return {IoResult::want_read};
      return {failed()};
    }
  }

  IoStep write(std::span<const uint8_t> buf) override {
    for (;;) {
      ssize_t n = ::send(fd_, buf.data(), buf.size(), MSG_NOSIGNAL);
      if (n > 0) return {IoResult::ok, size_t(n)};
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return {IoResult::want_write};
      return {failed()};
    }
  }

  void shutdown() override {}  // the socket's close says it all
  void close() override {}
  bool pending() const override { return false; }
  size_t heap_bytes() const override { return 0; }
  const std::string& error() const override { return err_; }

 private:
  IoResult failed() {
    err_ = std::strerror(errno);
    return IoResult::error;
  }
  int fd_;
  std::string err_;
};

}  // namespace

std::unique_ptr<Transport> plain_transport(int fd) {
  return std::make_unique<PlainTransport>(fd);
}

}  // namespace dc::ev
