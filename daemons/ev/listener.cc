// Accepting connections on a Loop: see listener.h.
#include "ev/listener.h"

#include <errno.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/daemon_util.h"

namespace dc::ev {

namespace {
constexpr int kAcceptBurst = 64;     // accepts per wake-up, for fairness
constexpr int64_t kFdPauseMs = 100;  // pause after running out of descriptors
}  // namespace

std::unique_ptr<Listener> Listener::open(Loop& loop, const Address& a, const ListenOptions& opt,
                                         AcceptFn on_accept, std::string& err) {
  if (!common::check_unix_listen_path(a, opt, err)) return nullptr;
  UniqueFd fd = listen_on(a, opt, err);
  if (!fd) return nullptr;
  return std::make_unique<Listener>(loop, std::move(fd), a, std::move(on_accept));
}

Listener::Listener(Loop& loop, UniqueFd fd, const Address& a, AcceptFn on_accept)
    : loop_(loop),
      fd_(std::move(fd)),
      addr_(a),
      on_accept_(std::move(on_accept)),
      retry_(loop, [this] { ev_io_start(loop_.raw(), &w_); }) {
  set_nonblock(fd_.get());
  if (addr_.kind == Address::Kind::unix_path) {
    struct stat st;
    if (stat(addr_.path.c_str(), &st) == 0) {
      dev_ = st.st_dev;
      ino_ = st.st_ino;
      own_file_ = true;
    }
  }
  ev_io_init(&w_, on_accept_cb, fd_.get(), EV_READ);
  w_.data = this;
  ev_io_start(loop_.raw(), &w_);
}

Listener::~Listener() {
  ev_io_stop(loop_.raw(), &w_);
  fd_.reset();
  if (own_file_) {
    struct stat st;
    if (stat(addr_.path.c_str(), &st) == 0 && st.st_dev == dev_ && st.st_ino == ino_)
      unlink(addr_.path.c_str());
  }
}

uint16_t Listener::port() const {
  if (addr_.kind != Address::Kind::ip) return 0;
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (getsockname(fd_.get(), reinterpret_cast<sockaddr*>(&ss), &len) != 0) return 0;
  if (ss.ss_family == AF_INET) return ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
  if (ss.ss_family == AF_INET6) return ntohs(reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port);
  return 0;
}

void Listener::on_accept_cb(struct ev_loop*, ev_io* w, int) {
  static_cast<Listener*>(w->data)->on_acceptable();
}

void Listener::on_acceptable() {
  for (int i = 0; i < kAcceptBurst; ++i) {
    int fd = ::accept4(fd_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
        // The pending connection stays queued; try again shortly rather
        // than spin on a socket that stays readable.
        ev_io_stop(loop_.raw(), &w_);
        retry_.start(kFdPauseMs);
      }
      // EAGAIN: done; ECONNABORTED, EINTR, EPROTO...: that one is gone.
      if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EMFILE || errno == ENFILE ||
          errno == ENOBUFS || errno == ENOMEM)
        return;
      continue;
    }
    if (addr_.kind == Address::Kind::ip) set_nodelay(fd);
    ++accepted_;
    on_accept_(UniqueFd(fd));
  }
}

}  // namespace dc::ev
