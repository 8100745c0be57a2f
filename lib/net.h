// Socket helpers shared by the daemons, the client library and the tools:
// resolving an Address, listening and connecting. They know nothing of the
// protocol. Every fd they return is close-on-exec and non-blocking.
#pragma once

#include <sys/socket.h>
#include <sys/types.h>
#include <unistd.h>

#include <cstdint>
#include <string>
#include <utility>

#include "addr.h"

namespace dc {

// Owns one file descriptor.
class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(UniqueFd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  UniqueFd& operator=(UniqueFd&& o) noexcept {
    if (this != &o) reset(std::exchange(o.fd_, -1));
    return *this;
  }
  ~UniqueFd() { reset(); }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  int get() const { return fd_; }
  int release() { return std::exchange(fd_, -1); }
  void reset(int fd = -1) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }
  explicit operator bool() const { return fd_ >= 0; }

 private:
  int fd_ = -1;
};

// A resolved socket address.
struct SockAddr {
  sockaddr_storage ss{};
  socklen_t len = 0;
  int family() const { return ss.ss_family; }
};

// Resolves `a` (names through getaddrinfo, first result). For IP addresses
// with no host, `passive` picks the wildcard address, else loopback.
// Returns false with `err` set on failure.
bool resolve(const Address& a, bool passive, SockAddr& out, std::string& err);

struct ListenOptions {
  int backlog = 1024;
  // UNIX sockets only: ownership and permissions of the socket file.
  // Empty / -1 leave them as created.
  std::string owner;
  std::string group;
  int perms = -1;
};

// Opens a listening socket on `a`. A UNIX socket file left by a dead process
// is replaced; one that a live process still accepts on is an error
// ("address in use"). Returns the fd, or an empty UniqueFd with `err` set.
UniqueFd listen_on(const Address& a, const ListenOptions& opt, std::string& err);

// Starts a non-blocking connect to `sa`. Returns the fd (the connect may
// still be in progress: wait for writability, then check connect_result),
// or an empty UniqueFd with `err` set when it failed at once.
UniqueFd connect_start(const SockAddr& sa, std::string& err);

// After writability of a connecting fd: 0 if connected, else the errno.
int connect_result(int fd);

// Sets TCP_NODELAY when fd is a TCP socket; harmless elsewhere.
void set_nodelay(int fd);
bool set_nonblock(int fd);

// Milliseconds of CLOCK_MONOTONIC.
int64_t now_ms();

// Raises RLIMIT_NOFILE's soft limit to its hard limit; returns the new soft limit.
long raise_fd_limit();

}  // namespace dc
