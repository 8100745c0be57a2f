// Accepting connections on any Address (UNIX or TCP) on a Loop. The listener
// hands each accepted socket (non-blocking, close-on-exec, TCP_NODELAY on
// TCP) to a callback and knows nothing of what is spoken on it. When the
// process runs out of descriptors it pauses accepting for a moment instead
// of spinning on a listening socket it cannot serve.
#pragma once

#include <ev.h>
#include <sys/types.h>

#include <functional>
#include <memory>
#include <string>

#include "addr.h"
#include "ev/loop.h"
#include "net.h"

namespace dc::ev {

class Listener {
 public:
  using AcceptFn = std::function<void(UniqueFd fd)>;

  // Opens a listening socket on `a` with dc::listen_on (a stale UNIX socket
  // file is replaced, a live one is an error; common::check_unix_listen_path first)
  // and starts accepting. Returns nullptr with `err` set (one line naming
  // the address) on failure.
  static std::unique_ptr<Listener> open(Loop& loop, const Address& a, const ListenOptions& opt,
                                        AcceptFn on_accept, std::string& err);

  // Starts accepting on `fd`, a socket already listening on `a` (for
  // daemons that open their sockets before forking or dropping privileges).
  Listener(Loop& loop, UniqueFd fd, const Address& a, AcceptFn on_accept);

  // Stops accepting and closes the socket. For a UNIX address the socket
  // file is removed, unless another file has replaced it since.
  ~Listener();
  Listener(const Listener&) = delete;
  Listener& operator=(const Listener&) = delete;

  const Address& address() const { return addr_; }
  // The local port of a TCP listener (useful after listening on port 0), else 0.
  uint16_t port() const;
  uint64_t accepted() const { return accepted_; }

 private:
  static void on_accept_cb(struct ev_loop* l, ev_io* w, int revents);
  void on_acceptable();

  Loop& loop_;
  UniqueFd fd_;
  Address addr_;
  AcceptFn on_accept_;
  ev_io w_{};
  Timer retry_;  // restarts accepting after running out of descriptors
  dev_t dev_ = 0;
  ino_t ino_ = 0;
  bool own_file_ = false;
  uint64_t accepted_ = 0;
};

}  // namespace dc::ev
