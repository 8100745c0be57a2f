// Accepting connections on a Loop: see listener.h.
#include "ev/listener.h"

#include <errno.h>
#include <netinet/in.h>
#include <pwd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

namespace dc::ev {

namespace {
constexpr int kAcceptBurst = 64;     // accepts per wake-up, for fairness
constexpr int64_t kFdPauseMs = 100;  // pause after running out of descriptors
}  // namespace

bool check_unix_listen_path(const Address& a, const ListenOptions& opt, std::string& err) {
  if (a.kind != Address::Kind::unix_path) return true;
  const std::string& path = a.path;
  size_t slash = path.rfind('/');
  std::string dir = slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
  struct stat st;
  // stat, not lstat: what matters is the directory a symlink leads to.
  if (stat(dir.c_str(), &st) == 0 && S_ISDIR(st.st_mode) && (st.st_mode & S_IWOTH) &&
      !(st.st_mode & S_ISVTX)) {
    err = "cannot listen on " + a.to_string() + ": its directory " + dir +
          " is writable by every user and not sticky, so anyone could put their own socket "
          "in its place: use a directory only this user can write (e.g. /run/distcache) or make "
          "it sticky (chmod +t " +
          dir + ")";
    return false;
  }
  if (lstat(path.c_str(), &st) != 0) return true;  // nothing there yet
  if (!S_ISSOCK(st.st_mode)) {
    err = "cannot listen on " + a.to_string() + ": " + path +
          " exists and is not a socket: remove it, or pick another path with -listen";
    return false;
  }
  uid_t owner = geteuid();
  passwd* pw = opt.owner.empty() ? nullptr : getpwnam(opt.owner.c_str());
  if (st.st_uid != owner && !(pw && st.st_uid == pw->pw_uid)) {
    err = "cannot listen on " + a.to_string() + ": " + path + " is a socket of another user (uid " +
          std::to_string(st.st_uid) +
          "): remove it if it is stale, or pick another path with -listen";
    return false;
  }
  return true;
}

std::unique_ptr<Listener> Listener::open(Loop& loop, const Address& a, const ListenOptions& opt,
                                         AcceptFn on_accept, std::string& err) {
  if (!check_unix_listen_path(a, opt, err)) return nullptr;
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
