// Process chores shared by the daemons: see daemon_util.h.
#include "common/daemon_util.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>

namespace dc::common {

size_t connection_cap(size_t wanted, long fd_limit) {
  if (fd_limit <= 0) return wanted;
  size_t own = fd_limit >= 128 ? 64 : size_t(fd_limit) / 2;
  return std::min(wanted, size_t(fd_limit) - own);
}

size_t usable_max_conns(const char* prog, size_t wanted, bool given) {
  long fd_limit = raise_fd_limit();
  size_t cap = connection_cap(wanted, fd_limit);
  if (given && cap < wanted)
    std::fprintf(stderr,
                 "%s: -maxconns %zu is more than the descriptor limit (%ld) allows: using %zu; "
                 "raise the limit (ulimit -n, systemd LimitNOFILE=) to serve more\n",
                 prog, wanted, fd_limit, cap);
  return cap;
}

bool parse_size(const std::string& text, size_t& out) {
  if (text.empty()) return false;
  std::string digits = text;
  uint64_t mult = 1;
  switch (text.back()) {
    case 'k':
    case 'K':
      mult = uint64_t(1) << 10;
      break;
    case 'm':
    case 'M':
      mult = uint64_t(1) << 20;
      break;
    case 'g':
    case 'G':
      mult = uint64_t(1) << 30;
      break;
    default:
      break;
  }
  if (mult != 1) digits.pop_back();
  uint64_t v = 0;
  if (!parse_decimal(digits, 0, std::numeric_limits<uint64_t>::max() / mult, v)) return false;
  if (v * mult > std::numeric_limits<size_t>::max()) return false;
  out = size_t(v * mult);
  return true;
}

bool parse_mode(const std::string& text, int& out) {
  if (text.empty()) return false;
  for (char ch : text)
    if (ch < '0' || ch > '7') return false;
  errno = 0;
  long p = std::strtol(text.c_str(), nullptr, 8);
  if (errno != 0 || p < 0 || p > 07777) return false;
  out = int(p);
  return true;
}

std::string absolute_path(const std::string& path) {
  if (path.empty() || path[0] == '/') return path;
  char cwd[4096];
  if (!getcwd(cwd, sizeof cwd)) return path;
  return std::string(cwd) + "/" + path;
}

bool write_file_atomic(const std::string& path, const std::string& text) {
  // mkstemp: a new file of an unpredictable name in the same directory
  // (O_EXCL: no symlink or existing file is followed or truncated), made
  // readable like any pidfile, then renamed over `path` (a symlink at
  // `path` is replaced, not followed).
  std::string tmp = path + ".XXXXXX";
  int fd = ::mkostemp(tmp.data(), O_CLOEXEC);
  if (fd < 0) return false;
  bool ok =
      ::fchmod(fd, 0644) == 0 && ::write(fd, text.data(), text.size()) == ssize_t(text.size());
  int saved = errno;
  ::close(fd);
  if (!ok || ::rename(tmp.c_str(), path.c_str()) != 0) {
    if (ok) saved = errno;
    ::unlink(tmp.c_str());
    errno = saved;
    return false;
  }
  return true;
}

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

bool make_socket_dir(const std::string& dir, std::string& err) {
  if (mkdir(dir.c_str(), 0755) == 0) {
    chmod(dir.c_str(), 0755);  // whatever the umask
    return true;
  }
  struct stat st;
  if (errno == EEXIST && stat(dir.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) return true;
  err = dir + ": " + strerror(errno);
  return false;
}

bool daemonize(std::string& err) {
  if (daemon(0, 0) != 0) {
    err = std::string("cannot detach: ") + strerror(errno);
    return false;
  }
  return true;
}

bool drop_privileges(const std::string& user, std::string& err) {
  passwd* pw = getpwnam(user.c_str());
  if (!pw) {
    err = "no such user \"" + user + "\"";
    return false;
  }
  if (initgroups(pw->pw_name, pw->pw_gid) != 0 || setgid(pw->pw_gid) != 0 ||
      setuid(pw->pw_uid) != 0) {
    err = "cannot run as user \"" + user + "\": " + strerror(errno);
    return false;
  }
  return true;
}

const char* process_usage() {
  return "  -daemon             detach and run in the background\n"
         "  -pidfile PATH       write the process id to PATH (removed at exit)\n"
         "  -user USER          run as USER once the sockets are open\n"
         "  -sockowner USER     owner of UNIX sockets\n"
         "  -sockgroup GROUP    group of UNIX sockets\n"
         "  -sockperms OCTAL    permissions of UNIX sockets, e.g. 0660\n"
         "  -version            print the program's name and version, and exit\n";
}

const char* stats_usage() {
  return "  -stats FILE         keep FILE holding the current statistics (rewritten through\n"
         "                      a temporary file and rename)\n"
         "  -stats-interval MS  rewrite the -stats FILE every MS milliseconds (default 1000)\n"
         "  -stats-format FMT   what the -stats FILE holds: line (the key=value line, the\n"
         "                      default) or prom (Prometheus text, for node_exporter's\n"
         "                      textfile collector: name the file *.prom)\n"
         "  -metrics ADDR       serve the statistics to Prometheus: GET /metrics over HTTP\n"
         "                      on ADDR, IP:port or IP:host:port (e.g. IP:127.0.0.1:9101)\n";
}

FlagParse FlagReader::stats_flag(StatsOptions& o) {
  std::string v;
  if (flag_ == "-stats") {
    if (!value(o.file)) return FlagParse::error;
    if (o.file.empty()) {
      err_ = "-stats: empty path";
      return FlagParse::error;
    }
  } else if (flag_ == "-stats-interval") {
    if (!value(v)) return FlagParse::error;
    uint64_t n = 0;
    if (!parse_decimal(v, 10, 86400000, n)) {
      err_ = "-stats-interval: \"" + v + "\" is not a number of milliseconds from 10 to 86400000";
      return FlagParse::error;
    }
    o.interval_ms = int64_t(n);
  } else if (flag_ == "-stats-format") {
    if (!value(v)) return FlagParse::error;
    if (v == "line") {
      o.format = StatsFormat::line;
    } else if (v == "prom") {
      o.format = StatsFormat::prom;
    } else {
      err_ = "-stats-format: \"" + v + "\" is not line or prom";
      return FlagParse::error;
    }
  } else if (flag_ == "-metrics") {
    if (!value(v)) return FlagParse::error;
    Address a;
    std::string why;
    if (!parse_address(v, a, why)) {
      err_ = "-metrics: " + why;
      return FlagParse::error;
    }
    if (a.kind != Address::Kind::ip) {
      err_ = "-metrics: \"" + v + "\" is not an IP address (IP:port or IP:host:port)";
      return FlagParse::error;
    }
    o.metrics = a;
  } else {
    return FlagParse::not_mine;
  }
  return FlagParse::ok;
}

bool FlagReader::next() {
  if (++i_ >= argc_) return false;
  typed_ = argv_[i_];
  flag_ = typed_;
  // Accept --flag for -flag: people type both.
  if (flag_.size() > 2 && flag_[0] == '-' && flag_[1] == '-') flag_.erase(0, 1);
  // -version (and --version) is answered here for every daemon: "NAME VERSION".
  if (flag_ == "-version") {
    std::printf("%s %s\n", program_invocation_short_name, DC_VERSION);
    std::exit(std::fflush(stdout) == 0 ? 0 : 1);
  }
  return true;
}

bool FlagReader::value(std::string& v) {
  if (i_ + 1 >= argc_) {
    err_ = flag_ + ": missing value";
    return false;
  }
  v = argv_[++i_];
  return true;
}

bool FlagReader::listen(std::vector<Address>& out) {
  std::string v;
  if (!value(v)) return false;
  Address a;
  std::string why;
  if (!parse_address(v, a, why)) {
    err_ = "-listen: " + why;
    return false;
  }
  out.push_back(a);
  return true;
}

bool FlagReader::process_flag(ProcessOptions& o) {
  auto value_fn = [this](std::string& v) { return value(v); };
  FlagParse r = parse_process_flag(flag_, value_fn, o, err_);
  if (r == FlagParse::not_mine) err_ = "unknown flag \"" + std::string(typed_) + "\"";
  return r == FlagParse::ok;
}

bool start_daemon(const char* name, const std::vector<Address>& listen, const ProcessOptions& p,
                  std::vector<OpenedListener>& out, std::string& pidfile) {
  std::string err;
  auto unlink_sockets = [&] {
    for (OpenedListener& o : out)
      if (o.addr.kind == Address::Kind::unix_path) unlink(o.addr.path.c_str());
    out.clear();
  };
  ListenOptions lo;
  lo.owner = p.sockowner;
  lo.group = p.sockgroup;
  lo.perms = p.sockperms;
  for (const Address& a : listen) {
    UniqueFd fd;
    if (check_unix_listen_path(a, lo, err)) fd = listen_on(a, lo, err);
    if (!fd) {
      std::fprintf(stderr, "%s: %s\n", name, err.c_str());
      unlink_sockets();  // do not leave our own socket files behind
      return false;
    }
    Address abs = a;
    if (abs.kind == Address::Kind::unix_path) abs.path = absolute_path(abs.path);
    out.push_back({std::move(fd), abs});
  }
  pidfile = absolute_path(p.pidfile);
  if (p.daemon && !daemonize(err)) {
    std::fprintf(stderr, "%s: %s\n", name, err.c_str());
    unlink_sockets();
    return false;
  }
  if (!pidfile.empty() && !write_file_atomic(pidfile, std::to_string(getpid()) + "\n")) {
    std::fprintf(stderr, "%s: cannot write the pidfile %s: %s\n", name, pidfile.c_str(),
                 strerror(errno));
    unlink_sockets();
    return false;
  }
  if (!p.user.empty() && !drop_privileges(p.user, err)) {
    std::fprintf(stderr, "%s: -user: %s\n", name, err.c_str());
    unlink_sockets();
    if (!pidfile.empty()) unlink(pidfile.c_str());
    return false;
  }
  return true;
}

}  // namespace dc::common
