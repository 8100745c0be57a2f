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

// Refuses a UNIX socket path where another local user could stand in for
// us (and receive every client's requests): a directory writable by every
// user that is not sticky (anyone could remove our socket and bind their
// own; /tmp is sticky), or a file already at the path that is not a socket
// owned by us or by opt.owner (-sockowner). A stale socket of ours is left
// for listen_on to replace. True when the path is fine (or does not concern
// UNIX sockets); else false with `err` one line naming the path and what to
// do. A missing directory is left for bind() to report.
bool check_unix_listen_path(const Address& a, const ListenOptions& opt, std::string& err);

class Listener {
 public:
  using AcceptFn = std::function<void(UniqueFd fd)>;

  // Opens a listening socket on `a` with dc::listen_on (a stale UNIX socket
  // file is replaced, a live one is an error; check_unix_listen_path first)
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
