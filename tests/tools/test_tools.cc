// Integration tests of the tools dc_snoop, dc_bench and dc_swamp, run as
// real processes. The first argument names the group to run, so meson can
// register each group only when what it needs is part of the build:
//   snoop         dc_snoop between a RawConn client and a scripted upstream
//                 (bytes compared exactly in both directions), corruption,
//                 -delay and its switch by signals, bad flags;
//   snoop_server  dc_snoop in front of the real dc_server;
//   bench_flags   dc_bench's command line;
//   bench         a short dc_bench run against dc_server (no errors, JSON);
//   swamp         dc_swamp against `openssl s_server` (TLS 1.2 and 1.3), and
//                 its -ticks lines.
// Paths come from the environment: DC_SNOOP, DC_BENCH, DC_SWAMP, DC_SERVER,
// DC_OPENSSL. Waits have generous deadlines; nothing depends on timing,
// except that dc_snoop -delay is checked against lower bounds (a busy machine
// only makes things later) and its absence against the delay itself.
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "cmocka_cpp.h"
#include "harness.h"

namespace {

using dc::test::Process;
using dc::test::RawConn;
using dc::test::TempDir;
namespace proto = dc::proto;

// ---- small helpers ----

// A minimal JSON syntax checker (RFC 8259 grammar, no semantic checks).
class JsonCheck {
 public:
  explicit JsonCheck(const std::string& s) : s_(s) {}
  bool valid() {
    ws();
    if (!value()) return false;
    ws();
    return i_ == s_.size();
  }

 private:
  void ws() {
    while (i_ < s_.size() && std::strchr(" \t\r\n", s_[i_])) ++i_;
  }
  bool lit(const char* w) {
    size_t n = std::strlen(w);
    if (s_.compare(i_, n, w) != 0) return false;
    i_ += n;
    return true;
  }
  bool value() {
    ws();
    if (i_ >= s_.size()) return false;
    char c = s_[i_];
    if (c == '{') return object();
    if (c == '[') return array();
    if (c == '"') return string();
    if (c == '-' || (c >= '0' && c <= '9')) return number();
    return lit("true") || lit("false") || lit("null");
  }
  bool object() {
    ++i_;
    ws();
    if (i_ < s_.size() && s_[i_] == '}') return ++i_, true;
    for (;;) {
      ws();
      if (!string()) return false;
      ws();
      if (i_ >= s_.size() || s_[i_++] != ':') return false;
      if (!value()) return false;
      ws();
      if (i_ >= s_.size()) return false;
      if (s_[i_] == '}') return ++i_, true;
      if (s_[i_++] != ',') return false;
    }
  }
  bool array() {
    ++i_;
    ws();
    if (i_ < s_.size() && s_[i_] == ']') return ++i_, true;
    for (;;) {
      if (!value()) return false;
      ws();
      if (i_ >= s_.size()) return false;
      if (s_[i_] == ']') return ++i_, true;
      if (s_[i_++] != ',') return false;
    }
  }
  bool string() {
    if (i_ >= s_.size() || s_[i_] != '"') return false;
    for (++i_; i_ < s_.size(); ++i_) {
      unsigned char c = static_cast<unsigned char>(s_[i_]);
      if (c == '"') return ++i_, true;
      if (c < 0x20) return false;
      if (c == '\\') ++i_;
    }
    return false;
  }
  bool number() {
    size_t start = i_;
    if (s_[i_] == '-') ++i_;
    while (i_ < s_.size() && std::strchr("0123456789.eE+-", s_[i_])) ++i_;
    return i_ > start && s_[i_ - 1] >= '0' && s_[i_ - 1] <= '9';
  }
  const std::string& s_;
  size_t i_ = 0;
};

// The first line of `out` that starts with '{' (the tools' JSON result).
std::string json_line(const std::string& out) {
  std::istringstream in(out);
  std::string line;
  while (std::getline(in, line))
    if (!line.empty() && line[0] == '{') return line;
  return "";
}

// The number after "key": in `json` (the first occurrence, so keys of nested
// objects must not repeat an earlier key); -1 if absent.
double json_num(const std::string& json, const std::string& key) {
  size_t p = json.find("\"" + key + "\":");
  if (p == std::string::npos) return -1;
  return std::strtod(json.c_str() + p + key.size() + 3, nullptr);
}

std::string read_file(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

size_t count_of(const std::string& hay, const std::string& needle) {
  size_t n = 0;
  for (size_t p = hay.find(needle); p != std::string::npos; p = hay.find(needle, p + 1)) ++n;
  return n;
}

// Waits until the file at `path` holds at least `n` occurrences of `needle`.
bool wait_for_lines(const std::string& path, const std::string& needle, size_t n,
                    int timeout_ms = 10000) {
  int64_t end = dc::now_ms() + timeout_ms;
  while (dc::now_ms() < end) {
    if (count_of(read_file(path), needle) >= n) return true;
    usleep(20000);
  }
  return false;
}

// Reads exactly `n` bytes from fd (non-blocking or not) within timeout_ms.
std::vector<uint8_t> read_exactly(int fd, size_t n, int timeout_ms = 5000) {
  std::vector<uint8_t> got;
  int64_t end = dc::now_ms() + timeout_ms;
  while (got.size() < n) {
    int64_t left = end - dc::now_ms();
    if (left <= 0) break;
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, int(left)) <= 0) continue;
    uint8_t buf[4096];
    ssize_t r = ::read(fd, buf, std::min(sizeof buf, n - got.size()));
    if (r <= 0) {
      if (r < 0 && (errno == EAGAIN || errno == EINTR)) continue;
      break;
    }
    got.insert(got.end(), buf, buf + r);
  }
  return got;
}

// True when the peer of fd closes (read returns 0) within timeout_ms.
bool peer_closed(int fd, int timeout_ms = 5000) {
  int64_t end = dc::now_ms() + timeout_ms;
  for (;;) {
    int64_t left = end - dc::now_ms();
    if (left <= 0) return false;
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, int(left)) <= 0) continue;
    uint8_t buf[256];
    ssize_t r = ::read(fd, buf, sizeof buf);
    if (r == 0) return true;
    if (r < 0 && errno != EAGAIN && errno != EINTR) return true;
  }
}

bool write_all(int fd, const std::vector<uint8_t>& b) {
  size_t off = 0;
  int64_t end = dc::now_ms() + 5000;
  while (off < b.size() && dc::now_ms() < end) {
    ssize_t r = ::send(fd, b.data() + off, b.size() - off, MSG_NOSIGNAL);
    if (r > 0) {
      off += size_t(r);
    } else if (r < 0 && errno != EAGAIN && errno != EINTR) {
      return false;
    } else {
      pollfd p{fd, POLLOUT, 0};
      poll(&p, 1, 100);
    }
  }
  return off == b.size();
}

// Accepts one connection on a listening fd within timeout_ms.
dc::UniqueFd accept_one(int lfd, int timeout_ms = 5000) {
  pollfd p{lfd, POLLIN, 0};
  if (poll(&p, 1, timeout_ms) <= 0) return {};
  return dc::UniqueFd(::accept4(lfd, nullptr, nullptr, SOCK_CLOEXEC));
}

void add_msg(std::vector<uint8_t>& out, bool response, uint32_t uid, proto::Op op,
             const std::vector<uint8_t>& payload) {
  proto::Message m;
  m.is_response = response;
  m.uid = uid;
  m.op = op;
  m.payload = proto::Bytes(payload);
  assert_true(proto::append(out, m));
}

std::vector<uint8_t> vec(const std::string& s) {
  return {s.begin(), s.end()};
}

// dc_snoop between the test (client side) and a scripted upstream.
struct SnoopRig {
  TempDir dir;
  dc::UniqueFd upstream;  // listening
  Process snoop;
  std::string log = dir.file("snoop.log");
  std::string addr = "UNIX:" + dir.file("snoop");

  explicit SnoopRig(const std::string& server_addr = "",
                    const std::vector<std::string>& extra = {}) {
    std::string up = server_addr;
    if (up.empty()) {
      up = "UNIX:" + dir.file("up");
      std::string err;
      upstream = dc::listen_on(dc::test::addr(up), dc::ListenOptions{}, err);
      if (!upstream) fail_msg("listen %s: %s", up.c_str(), err.c_str());
    }
    std::vector<std::string> argv = {dc::test::env_or_die("DC_SNOOP"), "-listen", addr, "-server",
                                     up};
    argv.insert(argv.end(), extra.begin(), extra.end());
    snoop = Process::spawn(argv, {}, log);
    assert_true(dc::test::wait_for_unix_socket(dir.file("snoop")));
    // The readiness probe was a connection too: take its upstream side, so
    // the next accept on `upstream` is the test's own client.
    if (upstream) probe = accept_one(upstream.get());
  }
  dc::UniqueFd probe;
};

// ---- snoop ----

void test_snoop_passthrough(void**) {
  SnoopRig rig;
  RawConn c;
  assert_true(c.connect(dc::test::addr(rig.addr)));
  dc::UniqueFd up = accept_one(rig.upstream.get());
  assert_true(bool(up));

  // Requests: a three-frame ADD, then GET, HAVE, REMOVE; sent in odd pieces.
  std::string data(5000, 'x');
  for (size_t i = 0; i < data.size(); ++i) data[i] = char('a' + i % 26);
  std::vector<uint8_t> req;
  add_msg(req, false, 1, proto::Op::add, dc::test::add_payload("session-1", data, 60000));
  add_msg(req, false, 2, proto::Op::get, vec("session-1"));
  add_msg(req, false, 3, proto::Op::have, vec("session-1"));
  add_msg(req, false, 4, proto::Op::remove, vec("nope"));
  for (size_t off = 0; off < req.size(); off += 997) {
    size_t n = std::min<size_t>(997, req.size() - off);
    assert_true(c.send_raw(proto::Bytes(req.data() + off, n)));
  }
  std::vector<uint8_t> got = read_exactly(up.get(), req.size());
  if (got.size() != req.size())
    fail_msg("upstream got %zu of %zu bytes; log: %s", got.size(), req.size(),
             read_file(rig.log).c_str());
  assert_memory_equal(got.data(), req.data(), req.size());

  // Answers, one of them multi-frame, sent back in one write.
  std::vector<uint8_t> resp;
  add_msg(resp, true, 1, proto::Op::add, {0});
  add_msg(resp, true, 2, proto::Op::get, vec(data));
  add_msg(resp, true, 3, proto::Op::have, {0});
  add_msg(resp, true, 4, proto::Op::remove, {1});
  assert_true(write_all(up.get(), resp));
  std::vector<uint8_t> back = read_exactly(c.fd(), resp.size());
  assert_int_equal(back.size(), resp.size());
  assert_memory_equal(back.data(), resp.data(), resp.size());

  // One line per message, decoded.
  assert_true(wait_for_lines(rig.log, "uid=", 8));
  std::string log = read_file(rig.log);
  assert_int_equal(count_of(log, "uid="), 8);
  assert_non_null(std::strstr(log.c_str(), "c->s request  uid=1 ADD"));
  assert_non_null(std::strstr(log.c_str(), "data_len=5000 timeout_ms=60000"));
  assert_non_null(std::strstr(log.c_str(), "s->c response uid=2 GET data_len=5000"));
  assert_non_null(std::strstr(log.c_str(), "s->c response uid=3 HAVE status=0 (OK)"));
  assert_non_null(std::strstr(log.c_str(), "s->c response uid=4 REMOVE status=1 (NOTOK)"));

  // A half-close passes through: the upstream sees EOF once the client shuts down.
  assert_int_equal(::shutdown(c.fd(), SHUT_WR), 0);
  assert_true(peer_closed(up.get()));
}

void test_snoop_corrupt(void**) {
  SnoopRig rig;
  RawConn c;
  assert_true(c.connect(dc::test::addr(rig.addr)));
  dc::UniqueFd up = accept_one(rig.upstream.get());
  assert_true(bool(up));
  std::vector<uint8_t> bad;
  add_msg(bad, false, 9, proto::Op::get, vec("id"));
  bad[1] = 0x12;  // version 0x0012
  assert_true(c.send_raw(proto::Bytes(bad)));
  assert_true(c.wait_closed(5000));
  assert_true(wait_for_lines(rig.log, "corrupt", 1));
  assert_non_null(std::strstr(read_file(rig.log).c_str(), "c->s corrupt: protocol version"));

  // Other clients are served on.
  RawConn d;
  assert_true(d.connect(dc::test::addr(rig.addr)));
  dc::UniqueFd up2 = accept_one(rig.upstream.get());
  assert_true(bool(up2));
  assert_true(rig.snoop.running());
}

// -delay 150: each direction, and a half-close, arrives no sooner than 150 ms
// after it was sent; SIGUSR1 lifts the delay (for what already waits too),
// SIGUSR2 sets it again, on the same connection. Without a delay a round trip
// takes well under 150 ms, which is how "promptly" is told apart from a delay.
constexpr int64_t kDelayMs = 150;
constexpr int64_t kSlackMs = 5;  // clock granularity

// Sends `msg` from `from` and reads it at `to`; returns the milliseconds taken.
int64_t one_way(int from, int to, const std::vector<uint8_t>& msg) {
  int64_t t0 = dc::now_ms();
  assert_true(write_all(from, msg));
  std::vector<uint8_t> got = read_exactly(to, msg.size(), 10000);
  int64_t took = dc::now_ms() - t0;
  assert_int_equal(got.size(), msg.size());
  assert_memory_equal(got.data(), msg.data(), msg.size());
  return took;
}

void test_snoop_delay(void**) {
  SnoopRig rig("", {"-delay", std::to_string(kDelayMs)});
  RawConn c;
  assert_true(c.connect(dc::test::addr(rig.addr)));
  dc::UniqueFd up = accept_one(rig.upstream.get());
  assert_true(bool(up));
  std::vector<uint8_t> req, resp;
  add_msg(req, false, 1, proto::Op::get, vec("session-1"));
  add_msg(resp, true, 1, proto::Op::get, vec(std::string(3000, 'd')));

  int64_t ms = one_way(c.fd(), up.get(), req);
  if (ms < kDelayMs - kSlackMs)
    fail_msg("c->s took %lld ms with -delay %lld", (long long)ms, (long long)kDelayMs);
  ms = one_way(up.get(), c.fd(), resp);
  if (ms < kDelayMs - kSlackMs)
    fail_msg("s->c took %lld ms with -delay %lld", (long long)ms, (long long)kDelayMs);

  // Pieces sent back to back keep their order (one FIFO per direction).
  std::vector<uint8_t> many;
  for (uint32_t uid = 2; uid < 12; ++uid) add_msg(many, false, uid, proto::Op::have, vec("k"));
  int64_t t0 = dc::now_ms();
  for (size_t off = 0; off < many.size(); off += 7) {
    size_t n = std::min<size_t>(7, many.size() - off);
    assert_true(c.send_raw(proto::Bytes(many.data() + off, n)));
    usleep(2000);
  }
  std::vector<uint8_t> got = read_exactly(up.get(), many.size(), 10000);
  assert_true(dc::now_ms() - t0 >= kDelayMs - kSlackMs);
  assert_int_equal(got.size(), many.size());
  assert_memory_equal(got.data(), many.data(), many.size());

  // SIGUSR1: no delay any more, on the same connection. A whole round trip
  // under the delay of one direction.
  assert_true(rig.snoop.signal(SIGUSR1));
  assert_true(wait_for_lines(rig.log, "delay 0 ms (SIGUSR1)", 1));
  t0 = dc::now_ms();
  one_way(c.fd(), up.get(), req);
  one_way(up.get(), c.fd(), resp);
  ms = dc::now_ms() - t0;
  if (ms >= kDelayMs) fail_msg("round trip took %lld ms after SIGUSR1", (long long)ms);

  // SIGUSR2: the delay again.
  assert_true(rig.snoop.signal(SIGUSR2));
  assert_true(wait_for_lines(rig.log, "delay 150 ms (SIGUSR2)", 1));
  ms = one_way(c.fd(), up.get(), req);
  if (ms < kDelayMs - kSlackMs) fail_msg("c->s took %lld ms after SIGUSR2", (long long)ms);

  // What waits when SIGUSR1 comes leaves at once rather than at its time.
  t0 = dc::now_ms();
  assert_true(write_all(up.get(), resp));
  assert_true(rig.snoop.signal(SIGUSR1));
  got = read_exactly(c.fd(), resp.size(), 10000);
  ms = dc::now_ms() - t0;
  assert_int_equal(got.size(), resp.size());
  if (ms >= kDelayMs) fail_msg("waiting bytes took %lld ms after SIGUSR1", (long long)ms);

  // A half-close waits its turn too.
  assert_true(rig.snoop.signal(SIGUSR2));
  assert_true(wait_for_lines(rig.log, "delay 150 ms (SIGUSR2)", 2));
  t0 = dc::now_ms();
  assert_int_equal(::shutdown(c.fd(), SHUT_WR), 0);
  assert_true(peer_closed(up.get(), 10000));
  assert_true(dc::now_ms() - t0 >= kDelayMs - kSlackMs);
}

void test_snoop_flags(void**) {
  std::string out, exe = dc::test::env_or_die("DC_SNOOP");
  assert_int_equal(dc::test::run({exe, "-bogus"}, out), 2);
  assert_non_null(std::strstr(out.c_str(), "unknown flag -bogus"));
  assert_non_null(std::strstr(out.c_str(), "usage:"));
  assert_int_equal(dc::test::run({exe, "-listen", "UNIX:/tmp/x"}, out), 2);
  assert_non_null(std::strstr(out.c_str(), "-server is required"));
  assert_int_equal(dc::test::run({exe, "-listen", "FOO:1", "-server", "UNIX:/tmp/x"}, out), 2);
  assert_non_null(std::strstr(out.c_str(), "FOO:1"));
  assert_int_equal(
      dc::test::run({exe, "-listen", "UNIX:/tmp/x", "-server", "UNIX:/tmp/y", "-delay", "1s"}, out),
      2);
  assert_non_null(std::strstr(out.c_str(), "bad -delay '1s'"));
  assert_int_equal(dc::test::run({exe, "-h"}, out), 0);
  assert_non_null(std::strstr(out.c_str(), "-listen ADDR"));
  assert_non_null(std::strstr(out.c_str(), "-delay MS"));
  assert_non_null(std::strstr(out.c_str(), "SIGUSR1"));
}

// ---- snoop in front of dc_server ----

struct Server {
  TempDir dir;
  std::string addr = "UNIX:" + dir.file("server");
  Process proc;
  Server() {
    proc = Process::spawn({dc::test::env_or_die("DC_SERVER"), "-listen", addr}, {},
                          dir.file("server.log"));
    assert_true(dc::test::wait_for_unix_socket(dir.file("server")));
  }
};

void test_snoop_server(void**) {
  Server s;
  SnoopRig rig(s.addr);
  RawConn c;
  assert_true(c.connect(dc::test::addr(rig.addr)));
  std::string data(3000, 'q');
  assert_int_equal(c.add("abc", data, 60000), 0);
  assert_int_equal(c.add("abc", data, 60000), int(proto::AddStatus::matching_session));
  auto got = c.get("abc");
  assert_true(got.has_value());
  assert_true(*got == data);
  assert_int_equal(c.have("abc"), 0);
  assert_int_equal(c.remove("abc"), 0);
  assert_int_equal(c.have("abc"), 1);
  auto miss = c.get("abc");
  assert_true(miss.has_value() && miss->empty());
  assert_true(wait_for_lines(rig.log, "uid=", 14));
  std::string log = read_file(rig.log);
  assert_non_null(std::strstr(log.c_str(), "ADD status=101 (MATCHING_SESSION)"));
  assert_non_null(std::strstr(log.c_str(), "GET data_len=3000"));
  assert_non_null(std::strstr(log.c_str(), "GET status=1 (NOTOK)"));
}

// ---- dc_bench ----

void test_bench_flags(void**) {
  std::string out, exe = dc::test::env_or_die("DC_BENCH");
  assert_int_equal(dc::test::run({exe, "-conns", "0"}, out), 2);
  assert_non_null(std::strstr(out.c_str(), "bad value '0' for -conns"));
  assert_non_null(std::strstr(out.c_str(), "usage:"));
  assert_int_equal(dc::test::run({exe, "-mix", "50,50,10,0"}, out), 2);
  assert_int_equal(dc::test::run({exe, "-idsize", "9-3"}, out), 2);
  assert_int_equal(dc::test::run({exe, "-frobnicate", "1"}, out), 2);
  assert_non_null(std::strstr(out.c_str(), "unknown flag -frobnicate"));
  assert_int_equal(dc::test::run({exe, "--help"}, out), 0);
  assert_non_null(std::strstr(out.c_str(), "-depth N"));
  TempDir d;
  assert_int_equal(dc::test::run({exe, "-connect", "UNIX:" + d.file("none"), "-ops", "5"}, out), 1);
  assert_non_null(std::strstr(out.c_str(), "no connection"));
}

void test_bench_run(void**) {
  Server s;
  std::string out, exe = dc::test::env_or_die("DC_BENCH");
  int rc = dc::test::run(
      {exe, "-connect", s.addr, "-conns", "4", "-depth", "4", "-keys", "500", "-prefill", "-ops",
       "5000", "-mix", "10,70,10,10", "-datasize", "5-4000", "-quiet"},
      out, 60000);
  if (rc != 0) fail_msg("dc_bench exit %d: %s", rc, out.c_str());
  std::string j = json_line(out);
  assert_true(JsonCheck(j).valid());
  assert_true(json_num(j, "ops") == 5000);
  assert_true(json_num(j, "total") == 0);  // errors.total
  assert_true(json_num(j, "hits") > 0);
  assert_true(json_num(j, "ops_per_sec") > 0);
  assert_true(json_num(j, "p99") >= json_num(j, "p50"));

  // Lockstep through a second run agrees with what the first stored.
  rc = dc::test::run({exe, "-connect", s.addr, "-conns", "2", "-keys", "500", "-ops", "1000",
                      "-mix", "0,100,0,0", "-datasize", "5-4000", "-quiet"},
                     out, 60000);
  if (rc != 0) fail_msg("dc_bench exit %d: %s", rc, out.c_str());
  j = json_line(out);
  assert_true(JsonCheck(j).valid());
  assert_true(json_num(j, "bad_data") == 0);
}

// ---- dc_swamp ----

// The wall clock in ms, as dc_swamp's -ticks lines give it.
int64_t wall_ms() {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return int64_t(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

// The number after " key=" in a -ticks line; -1 when absent.
int64_t tick_field(const std::string& line, const std::string& key) {
  size_t p = line.find(" " + key + "=");
  if (p == std::string::npos) return -1;
  return std::strtoll(line.c_str() + p + key.size() + 2, nullptr, 10);
}

void swamp_against_s_server(const char* tls) {
  TempDir d;
  std::string out, openssl = dc::test::env_or_die("DC_OPENSSL");
  int rc = dc::test::run({openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt",
                          "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", d.file("key.pem"),
                          "-out", d.file("cert.pem"), "-subj", "/CN=localhost", "-days", "2"},
                         out);
  if (rc != 0) fail_msg("openssl req: %s", out.c_str());
  uint16_t port = dc::test::free_tcp_port();
  std::string hostport = "127.0.0.1:" + std::to_string(port);
  Process srv = Process::spawn({openssl, "s_server", "-accept", hostport, "-cert",
                                d.file("cert.pem"), "-key", d.file("key.pem"), "-www", "-quiet"},
                               {}, d.file("s_server.log"));
  assert_true(dc::test::wait_for_tcp(port, 10000));
  int64_t wall0 = wall_ms();
  rc = dc::test::run({dc::test::env_or_die("DC_SWAMP"), "-connect", hostport, "-conns", "2",
                      "-count", "30", "-tls", tls, "-quiet", "-ticks", "10"},
                     out, 60000);
  int64_t wall1 = wall_ms();
  if (rc != 0) fail_msg("dc_swamp exit %d: %s", rc, out.c_str());
  std::string j = json_line(out);
  assert_true(JsonCheck(j).valid());
  assert_true(json_num(j, "handshakes") == 30);
  assert_true(json_num(j, "failed") == 0);
  assert_true(json_num(j, "resume_attempts") > 0);
  // One server with its own cache accepts every resumption.
  assert_true(json_num(j, "resumed") == json_num(j, "resume_attempts"));

  // -ticks: a line at the start and at the end, times within the run and in
  // order, cumulative counts ending at the JSON's totals, and the first
  // resumption's time in some line.
  std::istringstream in(out);
  std::string line;
  int ticks = 0;
  int64_t prev = 0, first_resumed = 0, h = -1, r = -1, f = -1;
  while (std::getline(in, line)) {
    if (line.rfind("tick ", 0) != 0) continue;
    ++ticks;
    int64_t now = tick_field(line, "unix_ms");
    if (now < wall0 || now > wall1 || now < prev)
      fail_msg("tick time %lld outside the run [%lld, %lld] or before %lld", (long long)now,
               (long long)wall0, (long long)wall1, (long long)prev);
    prev = now;
    h = tick_field(line, "handshakes");
    r = tick_field(line, "resumed");
    f = tick_field(line, "failed");
    assert_true(tick_field(line, "attempts") >= r);
    int64_t fr = tick_field(line, "first_resumed_unix_ms");
    assert_true(fr >= 0);
    if (fr != 0 && first_resumed == 0) first_resumed = fr;
  }
  assert_true(ticks >= 2);
  assert_int_equal(h, 30);
  assert_true(double(r) == json_num(j, "resumed"));
  assert_int_equal(f, 0);
  if (first_resumed < wall0 || first_resumed > wall1)
    fail_msg("first_resumed_unix_ms %lld outside the run", (long long)first_resumed);
}

void test_swamp_tls12(void**) {
  swamp_against_s_server("1.2");
}
void test_swamp_tls13(void**) {
  swamp_against_s_server("1.3");
}

void test_swamp_flags(void**) {
  std::string out, exe = dc::test::env_or_die("DC_SWAMP");
  assert_int_equal(dc::test::run({exe}, out), 2);
  assert_non_null(std::strstr(out.c_str(), "-connect SERVER is required"));
  assert_int_equal(dc::test::run({exe, "-connect", "127.0.0.1:1", "-tls", "1.1"}, out), 2);
  assert_int_equal(dc::test::run({exe, "-connect", "127.0.0.1:1", "-resume", "2"}, out), 2);
  assert_int_equal(dc::test::run({exe, "-connect", "127.0.0.1:1", "-ticks", "5"}, out), 2);
  assert_non_null(std::strstr(out.c_str(), "bad -ticks '5'"));
  assert_int_equal(dc::test::run({exe, "-h"}, out), 0);
  assert_non_null(std::strstr(out.c_str(), "-resume RATIO"));
  assert_non_null(std::strstr(out.c_str(), "-ticks MS"));
}

}  // namespace

int main(int argc, char** argv) {
  std::string group = argc > 1 ? argv[1] : "";
  if (group == "snoop") {
    const CMUnitTest t[] = {cmocka_unit_test(test_snoop_passthrough),
                            cmocka_unit_test(test_snoop_corrupt),
                            cmocka_unit_test(test_snoop_delay), cmocka_unit_test(test_snoop_flags)};
    return cmocka_run_group_tests_name("snoop", t, nullptr, nullptr);
  }
  if (group == "snoop_server") {
    const CMUnitTest t[] = {cmocka_unit_test(test_snoop_server)};
    return cmocka_run_group_tests_name("snoop_server", t, nullptr, nullptr);
  }
  if (group == "bench_flags") {
    const CMUnitTest t[] = {cmocka_unit_test(test_bench_flags)};
    return cmocka_run_group_tests_name("bench_flags", t, nullptr, nullptr);
  }
  if (group == "bench") {
    const CMUnitTest t[] = {cmocka_unit_test(test_bench_run)};
    return cmocka_run_group_tests_name("bench", t, nullptr, nullptr);
  }
  if (group == "swamp") {
    const CMUnitTest t[] = {cmocka_unit_test(test_swamp_flags), cmocka_unit_test(test_swamp_tls12),
                            cmocka_unit_test(test_swamp_tls13)};
    return cmocka_run_group_tests_name("swamp", t, nullptr, nullptr);
  }
  std::fprintf(stderr, "usage: test_tools snoop|snoop_server|bench_flags|bench|swamp\n");
  return 2;
}
