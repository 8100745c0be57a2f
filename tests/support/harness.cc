// The shared test harness: see harness.h.
#include "harness.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <utility>

// Last: cmocka's macros (fail, ...) clash with the standard headers.
#include "cmocka_cpp.h"

namespace dc::test {

namespace {

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "harness: %s\n", what.c_str());
  std::abort();
}

// Milliseconds left until `deadline` (now_ms() based), at least 0.
int left(int64_t deadline) {
  int64_t l = deadline - now_ms();
  return l > 0 ? int(l) : 0;
}

}  // namespace

TempDir::TempDir() {
  const char* base = std::getenv("TMPDIR");
  std::string tmpl = std::string(base && *base ? base : "/tmp") + "/dct.XXXXXX";
  if (!mkdtemp(tmpl.data())) die("mkdtemp failed: " + std::string(strerror(errno)));
  path_ = tmpl;
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

Process Process::spawn(const std::vector<std::string>& argv, const std::vector<std::string>& env,
                       const std::string& log_path) {
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = fork();
  if (pid < 0) die("fork failed: " + std::string(strerror(errno)));
  if (pid == 0) {
    // Die with the test: a failed cmocka check skips destructors.
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    for (const auto& e : env) putenv(const_cast<char*>(e.c_str()));
    if (!log_path.empty()) {
      int fd = open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
      if (fd >= 0) {
        dup2(fd, 1);
        dup2(fd, 2);
        close(fd);
      }
    }
    ::signal(SIGPIPE, SIG_DFL);
    execv(args[0], args.data());
    std::fprintf(stderr, "harness: cannot run %s: %s\n", args[0], strerror(errno));
    _exit(127);
  }
  Process p;
  p.pid_ = pid;
  return p;
}

Process::Process(Process&& o) noexcept
    : pid_(std::exchange(o.pid_, -1)), status_(std::exchange(o.status_, std::nullopt)) {}

Process& Process::operator=(Process&& o) noexcept {
  if (this != &o) {
    if (pid_ > 0 && !status_) stop(0);
    pid_ = std::exchange(o.pid_, -1);
    status_ = std::exchange(o.status_, std::nullopt);
  }
  return *this;
}

Process::~Process() {
  if (pid_ > 0 && !status_) {
    kill(pid_, SIGKILL);
    int st;
    waitpid(pid_, &st, 0);
  }
}

bool Process::running() {
  if (pid_ <= 0 || status_) return false;
  int st;
  pid_t r = waitpid(pid_, &st, WNOHANG);
  if (r == pid_) {
    status_ = st;
    return false;
  }
  return true;
}

bool Process::signal(int sig) {
  return running() && kill(pid_, sig) == 0;
}

std::optional<int> Process::wait(int timeout_ms) {
  if (status_) return status_;
  if (pid_ <= 0) return std::nullopt;
  int64_t deadline = now_ms() + timeout_ms;
  while (true) {
    int st;
    pid_t r = waitpid(pid_, &st, WNOHANG);
    if (r == pid_) {
      status_ = st;
      return status_;
    }
    if (now_ms() >= deadline) return std::nullopt;
    usleep(5000);
  }
}

int Process::stop(int grace_ms) {
  if (status_) return *status_;
  if (pid_ <= 0) return -1;
  kill(pid_, SIGTERM);
  if (auto st = wait(grace_ms)) return *st;
  kill(pid_, SIGKILL);
  int st = 0;
  waitpid(pid_, &st, 0);
  status_ = st;
  return st;
}

int exit_code(int st) {
  if (WIFEXITED(st)) return WEXITSTATUS(st);
  if (WIFSIGNALED(st)) return 128 + WTERMSIG(st);
  return -1;
}

int run(const std::vector<std::string>& argv, std::string& output, int timeout_ms,
        const std::vector<std::string>& env) {
  TempDir dir;
  std::string log = dir.file("out");
  Process p = Process::spawn(argv, env, log);
  std::optional<int> st = p.wait(timeout_ms);
  if (!st) p.stop(0);
  std::ifstream in(log);
  output.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  return st ? exit_code(*st) : -1;
}

uint16_t free_tcp_port() {
  UniqueFd fd(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof sin;
  if (!fd || bind(fd.get(), reinterpret_cast<sockaddr*>(&sin), sizeof sin) != 0 ||
      getsockname(fd.get(), reinterpret_cast<sockaddr*>(&sin), &len) != 0)
    die("cannot find a free TCP port");
  return ntohs(sin.sin_port);
}

Address addr(const std::string& text) {
  Address a;
  std::string err;
  if (!parse_address(text, a, err)) die(err);
  return a;
}

bool wait_until_accepting(const Address& a, int timeout_ms) {
  int64_t deadline = now_ms() + timeout_ms;
  do {
    RawConn c;
    if (c.connect(a, 500)) return true;
    usleep(10000);
  } while (now_ms() < deadline);
  return false;
}

bool wait_for_unix_socket(const std::string& path, int timeout_ms) {
  return wait_until_accepting(addr("UNIX:" + path), timeout_ms);
}

bool wait_for_tcp(uint16_t port, int timeout_ms) {
  return wait_until_accepting(addr("IP:127.0.0.1:" + std::to_string(port)), timeout_ms);
}

long rss_kb(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("VmRSS:", 0) == 0) return std::strtol(line.c_str() + 6, nullptr, 10);
  return -1;
}

std::string env_or_die(const char* name) {
  const char* v = std::getenv(name);
  if (!v || !*v)
    die(std::string("environment variable ") + name + " is not set (run the test through meson)");
  return v;
}

bool path_exists(const std::string& path) {
  struct stat st;
  return lstat(path.c_str(), &st) == 0;
}

bool wait_gone(const std::string& path) {
  for (int i = 0; i < 1000 && path_exists(path); ++i) usleep(10000);
  return !path_exists(path);
}

std::string first_line(const std::string& s) {
  return s.substr(0, s.find('\n'));
}

long long stat_value(const std::string& line, const std::string& key) {
  std::string pat = " " + key + "=";
  std::string padded = " " + line;
  size_t at = padded.find(pat);
  if (at == std::string::npos) return -1;
  return std::atoll(padded.c_str() + at + pat.size());
}

void expect_usage_error(const std::string& name, const std::vector<std::string>& argv,
                        const std::string& names) {
  std::string out;
  int rc = run(argv, out, 10000);
  std::string line = first_line(out);
  if (rc != 2 || line.find(name + ": ") != 0 || line.find(names) == std::string::npos ||
      out.find("Usage: " + name) == std::string::npos)
    fail_msg("args ending %s: exit %d, output:\n%s",
             argv.size() < 2 ? "(none)" : argv.back().c_str(), rc, out.c_str());
}

bool RawConn::connect(const Address& a, int timeout_ms) {
  fd_.reset();
  pending_.clear();
  dec_ = proto::Decoder();
  SockAddr sa;
  if (!resolve(a, false, sa, error_)) return false;
  UniqueFd fd = connect_start(sa, error_);
  if (!fd) return false;
  pollfd p{fd.get(), POLLOUT, 0};
  if (poll(&p, 1, timeout_ms) != 1) {
    error_ = "connect timed out";
    return false;
  }
  if (int e = connect_result(fd.get()); e != 0) {
    error_ = std::string("connect failed: ") + strerror(e);
    return false;
  }
  fd_ = std::move(fd);
  return true;
}

bool RawConn::send_raw(proto::Bytes bytes, int timeout_ms) {
  int64_t deadline = now_ms() + timeout_ms;
  while (!bytes.empty()) {
    ssize_t n = ::send(fd_.get(), bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n > 0) {
      bytes = bytes.subspan(size_t(n));
      continue;
    }
    if (n < 0 && errno != EAGAIN && errno != EINTR) {
      error_ = std::string("send failed: ") + strerror(errno);
      return false;
    }
    pollfd p{fd_.get(), POLLOUT, 0};
    if (poll(&p, 1, left(deadline)) != 1) {
      error_ = "send timed out";
      return false;
    }
  }
  return true;
}

bool RawConn::send(proto::Op op, uint32_t uid, proto::Bytes payload, int timeout_ms) {
  proto::Message m;
  m.op = op;
  m.uid = uid;
  m.payload = payload;
  std::vector<uint8_t> wire;
  if (!proto::append(wire, m)) {
    error_ = "payload too large to encode";
    return false;
  }
  return send_raw(wire, timeout_ms);
}

std::optional<proto::Message> RawConn::recv(std::vector<uint8_t>& payload, int timeout_ms) {
  int64_t deadline = now_ms() + timeout_ms;
  while (true) {
    if (!pending_.empty()) {
      proto::Message m;
      proto::DecodeResult r = dec_.decode(pending_, m);
      if (r.status == proto::DecodeStatus::corrupt) {
        error_ = std::string("corrupt answer: ") + proto::to_string(r.reason);
        return std::nullopt;
      }
      if (r.status == proto::DecodeStatus::message) {
        payload.assign(m.payload.begin(), m.payload.end());
        pending_.erase(pending_.begin(), pending_.begin() + ptrdiff_t(r.consumed));
        m.payload = payload;
        return m;
      }
      pending_.clear();  // need_more consumed everything
    }
    uint8_t buf[65536];
    ssize_t n = ::recv(fd_.get(), buf, sizeof buf, 0);
    if (n > 0) {
      pending_.insert(pending_.end(), buf, buf + n);
      continue;
    }
    if (n == 0) {
      error_ = "connection closed by peer";
      return std::nullopt;
    }
    if (errno != EAGAIN && errno != EINTR) {
      error_ = std::string("recv failed: ") + strerror(errno);
      return std::nullopt;
    }
    pollfd p{fd_.get(), POLLIN, 0};
    if (poll(&p, 1, left(deadline)) != 1) {
      error_ = "no answer before the deadline";
      return std::nullopt;
    }
  }
}

bool RawConn::wait_closed(int timeout_ms) {
  int64_t deadline = now_ms() + timeout_ms;
  while (true) {
    uint8_t buf[65536];
    ssize_t n = ::recv(fd_.get(), buf, sizeof buf, 0);
    if (n == 0) return true;
    if (n < 0 && errno == ECONNRESET) return true;
    if (n < 0 && errno != EAGAIN && errno != EINTR) return false;
    if (n > 0) continue;
    pollfd p{fd_.get(), POLLIN, 0};
    if (poll(&p, 1, left(deadline)) != 1) return false;
  }
}

std::optional<std::vector<uint8_t>> RawConn::call(proto::Op op, proto::Bytes payload,
                                                  int timeout_ms) {
  uint32_t uid = next_uid_++;
  if (!send(op, uid, payload, timeout_ms)) return std::nullopt;
  std::vector<uint8_t> out;
  auto m = recv(out, timeout_ms);
  if (!m) return std::nullopt;
  if (!m->is_response || m->uid != uid || m->op != op) {
    error_ = "answer does not match the request (uid, operation or direction)";
    return std::nullopt;
  }
  return out;
}

std::vector<uint8_t> add_payload(const std::string& id, const std::string& data,
                                 uint32_t timeout_ms) {
  std::vector<uint8_t> p(proto::kAddPrefix);
  proto::add_prefix(timeout_ms, uint32_t(id.size()), p.data());
  p.insert(p.end(), id.begin(), id.end());
  p.insert(p.end(), data.begin(), data.end());
  return p;
}

int RawConn::add(const std::string& id, const std::string& data, uint32_t timeout_ms) {
  auto r = call(proto::Op::add, add_payload(id, data, timeout_ms));
  return r && r->size() == 1 ? (*r)[0] : -1;
}

std::optional<std::string> RawConn::get(const std::string& id) {
  auto r = call(proto::Op::get, bytes(id));
  if (!r) return std::nullopt;
  if (proto::classify_get(*r) != proto::GetAnswer::data) return std::string();
  return std::string(r->begin(), r->end());
}

int RawConn::remove(const std::string& id) {
  auto r = call(proto::Op::remove, bytes(id));
  return r && r->size() == 1 ? (*r)[0] : -1;
}

int RawConn::have(const std::string& id) {
  auto r = call(proto::Op::have, bytes(id));
  return r && r->size() == 1 ? (*r)[0] : -1;
}

HttpResult http_exchange(uint16_t port, const std::string& request, int timeout_ms, size_t chunk,
                         int gap_ms) {
  HttpResult r;
  int64_t start = now_ms(), deadline = start + timeout_ms;
  RawConn c;
  if (!c.connect(addr("IP:127.0.0.1:" + std::to_string(port)), timeout_ms)) return r;
  r.connected = true;
  auto bytes_of = [](const std::string& s, size_t off, size_t n) {
    return proto::Bytes(reinterpret_cast<const uint8_t*>(s.data()) + off, n);
  };
  size_t step = chunk ? chunk : request.size();
  for (size_t off = 0; off < request.size(); off += step) {
    // A send that fails means the peer closed already: read what it said.
    if (!c.send_raw(bytes_of(request, off, std::min(step, request.size() - off)), left(deadline)))
      break;
    if (chunk && gap_ms) {
      pollfd p{c.fd(), POLLIN, 0};
      if (poll(&p, 1, gap_ms) > 0) break;  // it answered or closed before the rest
    }
  }
  char buf[4096];
  for (;;) {
    pollfd p{c.fd(), POLLIN, 0};
    int n = poll(&p, 1, left(deadline));
    if (n <= 0) break;  // timeout
    ssize_t got = ::recv(c.fd(), buf, sizeof buf, 0);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) {
      r.closed = true;
      break;
    }
    r.response.append(buf, size_t(got));
  }
  r.took_ms = now_ms() - start;
  return r;
}

std::string scrape(uint16_t port) {
  HttpResult r = http_exchange(port, "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
  size_t body = r.response.find("\r\n\r\n");
  if (!r.closed || r.response.rfind("HTTP/1.1 200 ", 0) != 0 || body == std::string::npos) {
    std::fprintf(stderr, "scrape of port %u: %s, got:\n%s\n", unsigned(port),
                 r.closed ? "closed" : "not closed", r.response.c_str());
    return "";
  }
  return r.response.substr(body + 4);
}

double metric_value(const std::string& text, const std::string& series) {
  std::string pat = "\n" + series + " ";
  std::string padded = "\n" + text;
  size_t at = padded.find(pat);
  if (at == std::string::npos) return -1;
  return std::strtod(padded.c_str() + at + pat.size(), nullptr);
}

bool promtool_ok(const std::string& text) {
  const char* promtool = std::getenv("PROMTOOL");
  if (!promtool || !*promtool) {
    std::fprintf(stderr, "note: promtool not found, the exposition format is not checked by it\n");
    return true;
  }
  TempDir d;
  std::string file = d.file("metrics.txt");
  std::ofstream(file) << text;
  std::string out;
  int rc = run({"/bin/sh", "-c", std::string(promtool) + " check metrics < " + file}, out, 30000);
  if (rc != 0) std::fprintf(stderr, "promtool check metrics: exit %d\n%s\n", rc, out.c_str());
  return rc == 0;
}

}  // namespace dc::test
