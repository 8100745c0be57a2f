// Socket helpers: see net.h.
#include "net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pwd.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>

#include <cstddef>
#include <cstring>

namespace dc {

int64_t now_ms() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

bool set_nonblock(int fd) {
  int fl = fcntl(fd, F_GETFL);
  return fl >= 0 && fcntl(fd, F_SETFL, fl | O_NONBLOCK) == 0;
}

void set_nodelay(int fd) {
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

long raise_fd_limit() {
  rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return -1;
  if (rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    getrlimit(RLIMIT_NOFILE, &rl);
  }
  return long(rl.rlim_cur);
}

bool resolve(const Address& a, bool passive, SockAddr& out, std::string& err) {
  out = SockAddr{};
  if (a.kind == Address::Kind::unix_path) {
    auto* un = reinterpret_cast<sockaddr_un*>(&out.ss);
    un->sun_family = AF_UNIX;
    if (a.path.size() >= sizeof un->sun_path) {
      err = "UNIX socket path too long: " + a.path;
      return false;
    }
    std::memcpy(un->sun_path, a.path.data(), a.path.size());
    out.len = socklen_t(offsetof(sockaddr_un, sun_path) + a.path.size() + 1);
    return true;
  }
  if (a.host.empty()) {
    if (passive) {
      auto* in6 = reinterpret_cast<sockaddr_in6*>(&out.ss);
      in6->sin6_family = AF_INET6;
      in6->sin6_addr = in6addr_any;
      in6->sin6_port = htons(a.port);
      out.len = sizeof *in6;
    } else {
      auto* in = reinterpret_cast<sockaddr_in*>(&out.ss);
      in->sin_family = AF_INET;
      in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      in->sin_port = htons(a.port);
      out.len = sizeof *in;
    }
    return true;
  }
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_family = a.ipv6_literal ? AF_INET6 : AF_UNSPEC;
  if (a.ipv6_literal) hints.ai_flags |= AI_NUMERICHOST;
  addrinfo* res = nullptr;
  std::string port = std::to_string(a.port);
  int rc = getaddrinfo(a.host.c_str(), port.c_str(), &hints, &res);
  if (rc != 0 || res == nullptr) {
    err = "cannot resolve host \"" + a.host + "\" of " + a.to_string() + ": " + gai_strerror(rc);
    return false;
  }
  std::memcpy(&out.ss, res->ai_addr, res->ai_addrlen);
  out.len = res->ai_addrlen;
  freeaddrinfo(res);
  return true;
}

namespace {

UniqueFd new_socket(int family) {
  return UniqueFd(::socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
}

// True when a process accepts connections on the UNIX socket at `path`.
bool unix_socket_alive(const SockAddr& sa) {
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return false;
  return ::connect(fd.get(), reinterpret_cast<const sockaddr*>(&sa.ss), sa.len) == 0 ||
         errno == EAGAIN;
}

bool apply_unix_ownership(const Address& a, const ListenOptions& opt, std::string& err) {
  uid_t uid = uid_t(-1);
  gid_t gid = gid_t(-1);
  if (!opt.owner.empty()) {
    passwd* pw = getpwnam(opt.owner.c_str());
    if (!pw) {
      err = "unknown user \"" + opt.owner + "\" for the socket owner";
      return false;
    }
    uid = pw->pw_uid;
  }
  if (!opt.group.empty()) {
    group* gr = getgrnam(opt.group.c_str());
    if (!gr) {
      err = "unknown group \"" + opt.group + "\" for the socket group";
      return false;
    }
    gid = gr->gr_gid;
  }
  if ((uid != uid_t(-1) || gid != gid_t(-1)) && chown(a.path.c_str(), uid, gid) != 0) {
    err = "cannot change the owner of " + a.path + ": " + strerror(errno);
    return false;
  }
  if (opt.perms >= 0 && chmod(a.path.c_str(), mode_t(opt.perms)) != 0) {
    err = "cannot change the permissions of " + a.path + ": " + strerror(errno);
    return false;
  }
  return true;
}

}  // namespace

UniqueFd listen_on(const Address& a, const ListenOptions& opt, std::string& err) {
  SockAddr sa;
  if (!resolve(a, true, sa, err)) return {};
  UniqueFd fd = new_socket(sa.family());
  if (!fd && sa.family() == AF_INET6 && a.host.empty()) {
    // No IPv6 on this host: fall back to the IPv4 wildcard.
    auto* in = reinterpret_cast<sockaddr_in*>(&sa.ss);
    *in = sockaddr_in{};
    in->sin_family = AF_INET;
    in->sin_addr.s_addr = htonl(INADDR_ANY);
    in->sin_port = htons(a.port);
    sa.len = sizeof *in;
    fd = new_socket(AF_INET);
  }
  if (!fd) {
    err = std::string("cannot create a socket: ") + strerror(errno);
    return {};
  }
  int one = 1, zero = 0;
  if (sa.family() != AF_UNIX) setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (sa.family() == AF_INET6 && a.host.empty())
    setsockopt(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
  if (sa.family() == AF_UNIX) {
    struct stat st;
    if (lstat(a.path.c_str(), &st) == 0) {
      if (!S_ISSOCK(st.st_mode)) {
        err = "cannot listen on " + a.to_string() + ": the path exists and is not a socket";
        return {};
      }
      if (unix_socket_alive(sa)) {
        err = "cannot listen on " + a.to_string() +
              ": address in use (another process accepts on it; stop it or pick another path)";
        return {};
      }
      unlink(a.path.c_str());  // stale socket of a dead process
    }
  }
  if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&sa.ss), sa.len) != 0) {
    err = "cannot listen on " + a.to_string() + ": " + strerror(errno);
    return {};
  }
  if (sa.family() == AF_UNIX && !apply_unix_ownership(a, opt, err)) {
    unlink(a.path.c_str());
    return {};
  }
  if (::listen(fd.get(), opt.backlog) != 0) {
    err = "cannot listen on " + a.to_string() + ": " + strerror(errno);
    if (sa.family() == AF_UNIX) unlink(a.path.c_str());
    return {};
  }
  return fd;
}

UniqueFd connect_start(const SockAddr& sa, std::string& err) {
  UniqueFd fd = new_socket(sa.family());
  if (!fd) {
    err = std::string("cannot create a socket: ") + strerror(errno);
    return {};
  }
  if (sa.family() != AF_UNIX) set_nodelay(fd.get());
  if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&sa.ss), sa.len) != 0 &&
      errno != EINPROGRESS) {
    err = strerror(errno);
    return {};
  }
  return fd;
}

int connect_result(int fd) {
  int e = 0;
  socklen_t len = sizeof e;
  if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &len) != 0) return errno;
  return e;
}

}  // namespace dc
