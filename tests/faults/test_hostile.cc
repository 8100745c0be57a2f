// Hostile input to the real dc_server and the real dc_client (suite faults):
// random bytes, every corrupt frame kind of PROTOCOL.md, oversized and
// trickled frames, half-open and vanishing connections, 5,000 idle
// connections, a client that never reads, and the attacks of issue 14 on
// the limits (-maxconns, -frametimeout, -connmemory): 1,000 connections
// each holding 5 bytes of a header against a daemon with fewer
// descriptors, and 1,000 connections pipelining GETs of a 32 KB session
// without reading. Each test runs once against dc_server alone and once
// against dc_client (with a dc_server behind it).
// Throughout, a separate well-behaved client (the "probe") must keep being
// served: an ADD then a GET of a fresh session, answered correctly within
// the harness's 2 s deadline (under the limit attacks: within 100 ms at the
// 99th percentile, measured by a probe thread). The daemon's resident
// memory must stay under the bounds below (also stated in docs/faults.md).
//
// Binaries: $DC_SERVER, $DC_AGENT (set by meson). A seed for the
// random bytes is printed; FAULTS_SEED=N repeats a run.
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "cmocka_cpp.h"
#include "harness.h"

using namespace dc;
using namespace dc::test;
using proto::Op;

namespace {

// Resident memory bounds, in KiB of growth over the daemon's RSS once it
// serves its first client. A connection holds at most its output threshold
// (256 KiB) plus one answer, one read (64 KiB) and one message (32 KiB);
// idle ones hold a few hundred bytes of state.
constexpr long kIdleConnsBoundKb = 24 * 1024;  // 5,000 idle connections
constexpr long kNonReaderBoundKb = 8 * 1024;   // one client that never reads
constexpr long kChurnBoundKb = 8 * 1024;       // everything else, after it ends
constexpr int kIdleConns = 5000;
// The attacks on the limits: 1,000 connections, against a daemon allowed
// 800 descriptors (so without a connection limit they take every one), and
// a buffer budget (-connmemory) of 16 MiB. RSS growth under the
// non-readers: the budget plus 16 MiB for the connections' fixed state and
// the allocator's slack.
constexpr int kAttackConns = 1000;
constexpr int kAttackNofile = 800;
constexpr long kConnMemoryKb = 16 * 1024;
constexpr long kPartialFloodBoundKb = 24 * 1024;
constexpr long kNonReadersBoundKb = kConnMemoryKb + 16 * 1024;
constexpr int64_t kProbeP99BoundMs = 100;

// A dc_server, and for the agent variant a dc_client in front of it, on
// UNIX sockets in a fresh directory. target() is the address under test.
// `flags` go to the daemon under test; with `nofile`, it runs with that
// descriptor limit (soft and hard: it cannot raise it).
class Target {
 public:
  explicit Target(bool agent, const std::vector<std::string>& flags = {}, int nofile = 0)
      : agent_(agent) {
    auto argv = [&](std::vector<std::string> v, bool tested) {
      if (!tested) return v;
      v.insert(v.end(), flags.begin(), flags.end());
      if (nofile == 0) return v;
      std::vector<std::string> sh = {
          "/bin/sh", "-c", "ulimit -n " + std::to_string(nofile) + " && exec \"$0\" \"$@\""};
      sh.insert(sh.end(), v.begin(), v.end());
      return sh;
    };
    server_ = Process::spawn(
        argv({env_or_die("DC_SERVER"), "-listen", "UNIX:" + dir_.file("s")}, !agent_), {},
        dir_.file("server.log"));
    assert_true(wait_for_unix_socket(dir_.file("s"), 10000));
    if (agent_) {
      agent_proc_ =
          Process::spawn(argv({env_or_die("DC_AGENT"), "-server", "UNIX:" + dir_.file("s"),
                               "-listen", "UNIX:" + dir_.file("a"), "-retry", "100"},
                              true),
                         {}, dir_.file("agent.log"));
      assert_true(wait_for_unix_socket(dir_.file("a"), 10000));
    }
    // Wait until a request goes all the way through (the agent's upstream
    // connection is made asynchronously), then take the memory baseline.
    bool ok = false;
    for (int i = 0; i < 200 && !ok; ++i) {
      ok = probe_once();
      if (!ok) usleep(20000);
    }
    assert_true(ok);
    base_kb_ = rss();
  }
  ~Target() {
    agent_proc_.stop();
    server_.stop();
  }
  Address target() const { return addr("UNIX:" + dir_.file(agent_ ? "a" : "s")); }
  pid_t pid() { return agent_ ? agent_proc_.pid() : server_.pid(); }
  long rss() { return rss_kb(pid()); }
  long growth() { return rss() - base_kb_; }
  const char* name() const { return agent_ ? "dc_client" : "dc_server"; }
  bool agent() const { return agent_; }
  std::string log() const {
    std::string out;
    run({"/bin/cat", dir_.file(agent_ ? "agent.log" : "server.log")}, out);
    return out;
  }

  // One ADD + GET of a fresh session on a new connection; true when both
  // were answered correctly.
  bool probe_once() {
    RawConn c;
    if (!c.connect(target(), 2000)) return false;
    std::string id = "probe-" + std::to_string(++probes_);
    std::string data = "session-data-" + id;
    if (c.add(id, data, 600000) != 0) return false;
    auto got = c.get(id);
    return got && *got == data;
  }
  // The probe must work now; fails the test otherwise.
  void probe(const char* when) {
    if (!probe_once()) fail_msg("%s: the probe client was not served %s", name(), when);
  }
  void check_alive() {
    if (!server_.running()) fail_msg("dc_server died");
    if (agent_ && !agent_proc_.running()) fail_msg("dc_client died");
  }
  void check_growth(long bound_kb, const char* what) {
    long g = growth();
    fprintf(stderr, "# %s: RSS growth %ld KiB (bound %ld KiB) %s\n", name(), g, bound_kb, what);
    if (g > bound_kb)
      fail_msg("%s: RSS grew by %ld KiB (bound %ld KiB) %s", name(), g, bound_kb, what);
  }

 private:
  bool agent_;
  TempDir dir_;
  Process server_, agent_proc_;
  long base_kb_ = 0;
  int probes_ = 0;
};

std::vector<uint8_t> frame(uint32_t level, uint8_t is_resp, uint32_t uid, uint8_t cls, uint8_t op,
                           uint8_t complete, uint16_t len, size_t actual_len) {
  std::vector<uint8_t> f(proto::kHeaderSize + actual_len, 'x');
  proto::put_u32(&f[0], level);
  f[4] = is_resp;
  proto::put_u32(&f[5], uid);
  f[9] = cls;
  f[10] = op;
  f[11] = complete;
  proto::put_u16(&f[12], len);
  return f;
}

std::vector<uint8_t> request(Op op, uint32_t uid, const std::vector<uint8_t>& payload) {
  proto::Message m;
  m.op = op;
  m.uid = uid;
  m.payload = payload;
  std::vector<uint8_t> v;
  proto::append(v, m);
  return v;
}

std::vector<uint8_t> vec(const std::string& s) {
  return {s.begin(), s.end()};
}

void append(std::vector<uint8_t>& v, const std::vector<uint8_t>& w) {
  v.insert(v.end(), w.begin(), w.end());
}

// True when our own decoder finds `bytes` corrupt, or a request that the
// daemons close a connection for (an answer, an ADD too short to parse).
bool makes_close(const std::vector<uint8_t>& bytes) {
  proto::Decoder d;
  proto::Bytes in(bytes);
  while (!in.empty()) {
    proto::Message m;
    proto::DecodeResult r = d.decode(in, m);
    in = in.subspan(r.consumed);
    if (r.status == proto::DecodeStatus::corrupt) return true;
    if (r.status == proto::DecodeStatus::need_more) return false;
    if (m.is_response) return true;
    proto::AddRequest req;
    if (m.op == Op::add && proto::parse_add(m.payload, req).action == proto::AddCheck::close)
      return true;
  }
  return false;
}

int open_fds_raise() {
  rlimit rl{};
  getrlimit(RLIMIT_NOFILE, &rl);
  rlim_t want = kIdleConns + 1024;
  if (rl.rlim_cur < want) {
    rl.rlim_cur = want;
    if (rl.rlim_max < want) rl.rlim_max = want;  // root may raise the hard limit
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0) return -1;
  }
  return 0;
}

// A non-blocking connection for hostile use (RawConn's calls block).
UniqueFd raw_connect(const Address& a) {
  RawConn c;
  if (!c.connect(a, 5000)) return {};
  UniqueFd fd(dup(c.fd()));
  set_nonblock(fd.get());
  return fd;
}

// Waits up to timeout_ms for the peer to close `fd` (EOF or reset),
// discarding what it sends first.
bool closed_by_peer(int fd, int timeout_ms) {
  int64_t end = now_ms() + timeout_ms;
  uint8_t buf[65536];
  while (now_ms() < end) {
    pollfd p{fd, POLLIN, 0};
    poll(&p, 1, 50);
    ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
    if (n == 0) return true;
    if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) return true;
  }
  return false;
}

// True when the peer has closed `fd` (a hang-up shows at once on a UNIX
// socket, even with unread data queued).
bool hung_up(int fd) {
  pollfd p{fd, POLLIN | POLLRDHUP, 0};
  return poll(&p, 1, 0) == 1 && (p.revents & (POLLHUP | POLLRDHUP | POLLERR)) != 0;
}

uint32_t seed() {
  static uint32_t s = [] {
    const char* e = getenv("FAULTS_SEED");
    uint32_t v = e ? uint32_t(strtoul(e, nullptr, 10)) : uint32_t(now_ms() ^ getpid());
    fprintf(stderr, "# random seed %u (FAULTS_SEED=%u repeats it)\n", v, v);
    return v;
  }();
  return s;
}

// ---- the tests, each run against both daemons ----

void random_bytes(bool agent) {
  Target t(agent);
  std::mt19937 rng(seed());
  int closed_expected = 0;
  for (int round = 0; round < 10; ++round) {
    std::vector<UniqueFd> conns;
    std::vector<bool> expect_close;
    for (int i = 0; i < 20; ++i) {
      UniqueFd fd = raw_connect(t.target());
      assert_true(bool(fd));
      std::vector<uint8_t> junk(rng() % 4096 + 1);
      for (auto& b : junk) b = uint8_t(rng());
      // Half the time, start with a valid header so the junk gets further.
      if (i % 2) {
        auto h =
            frame(proto::kProtoLevel, 0, rng(), 0, uint8_t(rng() % 4), 1, uint16_t(rng() % 64), 0);
        junk.insert(junk.begin(), h.begin(), h.end());
      }
      (void)send(fd.get(), junk.data(), junk.size(), MSG_NOSIGNAL);
      expect_close.push_back(makes_close(junk));
      closed_expected += expect_close.back();
      conns.push_back(std::move(fd));
    }
    t.probe("during random bytes");
    for (size_t i = 0; i < conns.size(); ++i)
      if (expect_close[i] && !closed_by_peer(conns[i].get(), 5000))
        fail_msg("%s kept a connection that sent a corrupt stream", t.name());
  }
  assert_true(closed_expected > 0);
  t.check_alive();
  t.probe("after random bytes");
  t.check_growth(kChurnBoundKb, "after 200 connections of random bytes");
}

void corrupt_frames(bool agent) {
  Target t(agent);
  const uint32_t L = proto::kProtoLevel;
  struct Case {
    const char* what;
    std::vector<uint8_t> bytes;
  };
  std::vector<Case> cases;
  cases.push_back({"bad version", frame(0x00120000, 0, 9, 0, 1, 1, 1, 1)});
  cases.push_back({"is_response > 1", frame(L, 2, 9, 0, 1, 1, 1, 1)});
  cases.push_back({"complete > 1", frame(L, 0, 9, 0, 1, 2, 1, 1)});
  cases.push_back({"unknown class", frame(L, 0, 9, 1, 1, 1, 1, 1)});
  cases.push_back({"unknown operation", frame(L, 0, 9, 0, 4, 1, 1, 1)});
  cases.push_back({"data_len > 2048", frame(L, 0, 9, 0, 1, 1, 2049, 2049)});
  cases.push_back({"short non-final frame", frame(L, 0, 9, 0, 1, 0, 100, 100)});
  {
    std::vector<uint8_t> v;
    for (int i = 0; i < 17; ++i) append(v, frame(L, 0, 9, 0, 0, 0, 2048, 2048));
    cases.push_back({"more than 16 frames", v});
  }
  {
    std::vector<uint8_t> v = frame(L, 0, 9, 0, 0, 0, 2048, 2048);
    append(v, frame(L, 0, 10, 0, 0, 1, 10, 10));
    cases.push_back({"continuation uid differs", v});
    v = frame(L, 0, 9, 0, 0, 0, 2048, 2048);
    append(v, frame(L, 0, 9, 0, 1, 1, 10, 10));
    cases.push_back({"continuation operation differs", v});
  }
  cases.push_back({"an answer from a client", frame(L, 1, 9, 0, 1, 1, 1, 1)});
  cases.push_back({"ADD shorter than 8 bytes", request(Op::add, 9, {0, 0, 1})});
  for (const Case& c : cases) {
    assert_true(makes_close(c.bytes));  // the case is what it says
    RawConn rc;
    assert_true(rc.connect(t.target()));
    // A valid request first: it is answered, then the bad bytes close.
    std::vector<uint8_t> bytes = request(Op::get, 1, vec("nothing-here"));
    append(bytes, c.bytes);
    assert_true(rc.send_raw(bytes));
    std::vector<uint8_t> payload;
    // Answers to requests before the bad bytes are sent on a best-effort
    // basis only (dc_client closes the client before its server answers):
    // if one comes, it must be right; then the connection must close.
    auto m = rc.recv(payload, 3000);
    if (m && (m->uid != 1 || payload.size() != 1 || payload[0] != 1))
      fail_msg("%s, %s: a wrong answer to the request before the bad bytes", t.name(), c.what);
    if (m && !rc.wait_closed(3000)) fail_msg("%s did not close on: %s", t.name(), c.what);
    if (!m && rc.error().find("closed") == std::string::npos &&
        rc.error().find("reset") == std::string::npos)
      fail_msg("%s, %s: neither closed nor answered (%s)", t.name(), c.what, rc.error().c_str());
    t.probe(c.what);
  }
  t.check_alive();
  t.check_growth(kChurnBoundKb, "after every corrupt frame kind");
}

void oversized_and_trickled(bool agent) {
  Target t(agent);
  // A header announcing 65535 bytes: corrupt at once, no waiting for data.
  {
    RawConn rc;
    assert_true(rc.connect(t.target()));
    auto h = frame(proto::kProtoLevel, 0, 1, 0, 1, 1, 65535, 0);
    assert_true(rc.send_raw(h));
    assert_true(rc.wait_closed(3000));
  }
  // The largest legal message (16 full frames, an ADD of 32 KiB) works.
  {
    RawConn rc;
    assert_true(rc.connect(t.target()));
    std::string data(proto::kMaxPayload - proto::kAddPrefix - 3, 'D');
    assert_int_equal(rc.add("big", data, 600000), 0);
    auto got = rc.get("big");
    assert_true(got && *got == data);
  }
  // Frames trickled one byte every 3 ms on 20 connections at once: each
  // message is answered once complete; the probe is served meanwhile.
  {
    std::vector<UniqueFd> conns;
    std::vector<std::vector<uint8_t>> msgs;
    for (int i = 0; i < 20; ++i) {
      conns.push_back(raw_connect(t.target()));
      assert_true(bool(conns.back()));
      msgs.push_back(
          request(Op::add, 77,
                  add_payload("trickle-" + std::to_string(100 + i), std::string(40, 'T'), 600000)));
    }
    size_t len = msgs[0].size();  // all the same size
    for (size_t k = 0; k < len; ++k) {
      for (size_t i = 0; i < conns.size(); ++i)
        assert_int_equal(send(conns[i].get(), &msgs[i][k], 1, MSG_NOSIGNAL), 1);
      usleep(3000);
      if (k % 40 == 0) t.probe("while frames trickle in");
    }
    for (auto& fd : conns) {
      set_nonblock(fd.get());
      proto::Decoder d;
      std::vector<uint8_t> got;
      int64_t end = now_ms() + 3000;
      bool answered = false;
      while (!answered && now_ms() < end) {
        pollfd p{fd.get(), POLLIN, 0};
        poll(&p, 1, 50);
        uint8_t buf[256];
        ssize_t n = recv(fd.get(), buf, sizeof buf, MSG_DONTWAIT);
        if (n <= 0) continue;
        proto::Message m;
        auto r = d.decode(proto::Bytes(buf, size_t(n)), m);
        answered = r.status == proto::DecodeStatus::message && m.uid == 77 && m.is_response &&
                   m.payload.size() == 1 && m.payload[0] == 0;
      }
      if (!answered)
        fail_msg("%s: a trickled ADD was not answered OK (%zu bytes sent)", t.name(), len);
    }
  }
  t.check_alive();
  t.probe("after trickled frames");
  t.check_growth(kChurnBoundKb, "after oversized and trickled frames");
}

void half_open(bool agent) {
  Target t(agent);
  // Shut down the write side after a complete request: dc_server answers,
  // then closes. (dc_client may close before its server's answer arrives;
  // see docs/faults.md. Either way the connection is closed.)
  for (int i = 0; i < 20; ++i) {
    RawConn rc;
    assert_true(rc.connect(t.target()));
    assert_true(rc.send(Op::have, 5, vec("x")));
    shutdown(rc.fd(), SHUT_WR);
    std::vector<uint8_t> payload;
    auto m = rc.recv(payload, 3000);
    if (!agent && (!m || m->uid != 5)) fail_msg("dc_server did not answer a half-closed client");
    assert_true(rc.wait_closed(3000));
  }
  // 300 clients that send half a frame and then vanish (close), 300 that
  // shut down their write side after half a frame and stay.
  std::vector<UniqueFd> stay;
  for (int i = 0; i < 600; ++i) {
    UniqueFd fd = raw_connect(t.target());
    assert_true(bool(fd));
    auto req = request(Op::get, 1, vec("abc"));
    (void)send(fd.get(), req.data(), 7, MSG_NOSIGNAL);
    if (i % 2) {
      shutdown(fd.get(), SHUT_WR);
      stay.push_back(std::move(fd));
    }
    if (i % 100 == 0) t.probe("among half-open connections");
  }
  for (auto& fd : stay)
    if (!closed_by_peer(fd.get(), 5000)) fail_msg("%s kept a half-closed connection", t.name());
  t.check_alive();
  t.probe("after half-open connections");
  t.check_growth(kChurnBoundKb, "after 600 half-open connections");
}

void idle_connections(bool agent) {
  if (open_fds_raise() != 0) DC_SKIP("cannot raise RLIMIT_NOFILE to %d", kIdleConns + 1024);
  Target t(agent);
  std::vector<UniqueFd> conns;
  conns.reserve(kIdleConns);
  for (int i = 0; i < kIdleConns; ++i) {
    UniqueFd fd = raw_connect(t.target());
    if (!fd) fail_msg("%s: connection %d of %d failed", t.name(), i + 1, kIdleConns);
    // Every other one holds a partial header, the rest nothing at all.
    if (i % 2) (void)send(fd.get(), "\0\x11\0\0\0", 5, MSG_NOSIGNAL);
    conns.push_back(std::move(fd));
    if (i % 1000 == 999) t.probe("with thousands of idle connections");
  }
  usleep(200000);
  t.probe("with 5,000 idle connections");
  t.check_alive();
  t.check_growth(kIdleConnsBoundKb, "with 5,000 idle connections");
  // Closing them all gives nothing back to worry about, and serving goes on.
  conns.clear();
  usleep(200000);
  t.probe("after closing 5,000 connections");
}

void never_reads(bool agent) {
  Target t(agent);
  // A 32 KiB session, then a client that asks for it over and over and
  // never reads: 100,000 answers of 32 KiB would be 3 GiB.
  {
    RawConn rc;
    assert_true(rc.connect(t.target()));
    assert_int_equal(rc.add("big", std::string(32000, 'B'), 600000), 0);
  }
  UniqueFd hog = raw_connect(t.target());
  assert_true(bool(hog));
  auto get = request(Op::get, 3, vec("big"));
  std::vector<uint8_t> burst;
  for (int i = 0; i < 1000; ++i) append(burst, get);
  size_t sent = 0;
  int64_t end = now_ms() + 3000;
  while (now_ms() < end && sent < 100000 * get.size()) {
    ssize_t n = send(hog.get(), burst.data(), burst.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0)
      sent += size_t(n);
    else
      usleep(5000);
  }
  fprintf(stderr, "# %s: the non-reader got %zu requests in before being held\n", t.name(),
          sent / get.size());
  // The daemon stopped reading it: its socket is full, far short of 100,000.
  assert_true(sent < 50000 * get.size());
  t.probe("while a client never reads");
  t.check_alive();
  t.check_growth(kNonReaderBoundKb, "while a client never reads");
  hog.reset();
  usleep(100000);
  t.probe("after the non-reader left");
}

// A legitimate client, on a thread of its own, while an attack runs: ADD
// and GET of fresh sessions, alternately on a connection made before the
// attack (as an agent's is) and on a new connection each time (as a new
// client's), every answer timed. stop() checks the 99th percentile in ms
// of each kind; any wrong or missing answer fails. With `misses_ok`, an
// answer DISCONNECTED (dc_client's answer when its shared upstream is
// saturated: a miss, in time) is counted and allowed.
class ProbeThread {
 public:
  explicit ProbeThread(Target& t, bool misses_ok = false) : t_(t), misses_ok_(misses_ok) {
    assert_true(kept_.connect(t.target()));
    th_ = std::thread([this] { loop(); });
  }
  ~ProbeThread() {
    if (th_.joinable()) {
      stop_ = true;
      th_.join();
    }
  }
  void stop() {
    stop_ = true;
    th_.join();
    auto p99 = [](std::vector<int64_t> v) {
      if (v.empty()) return int64_t(-1);
      std::sort(v.begin(), v.end());
      return v[std::min(v.size() - 1, v.size() * 99 / 100)];
    };
    int64_t kept = p99(kept_ms_), fresh = p99(fresh_ms_);
    int64_t worst =
        std::max(kept_ms_.empty() ? 0 : *std::max_element(kept_ms_.begin(), kept_ms_.end()),
                 fresh_ms_.empty() ? 0 : *std::max_element(fresh_ms_.begin(), fresh_ms_.end()));
    fprintf(stderr,
            "# %s: probe answers: %zu on its connection (p99 %lld ms), %zu on new connections "
            "(p99 %lld ms), slowest %lld ms, %d failed, %d answered DISCONNECTED\n",
            t_.name(), kept_ms_.size(), (long long)kept, fresh_ms_.size(), (long long)fresh,
            (long long)worst, failures_, misses_);
    if (failures_ > 0)
      fail_msg("%s: %d probe requests failed: %s", t_.name(), failures_, why_.c_str());
    if (kept_ms_.size() < 20 || fresh_ms_.size() < 20)
      fail_msg("%s: too few probe answers to measure", t_.name());
    if (kept > kProbeP99BoundMs || fresh > kProbeP99BoundMs)
      fail_msg("%s: probe p99 %lld / %lld ms, over %lld ms", t_.name(), (long long)kept,
               (long long)fresh, (long long)kProbeP99BoundMs);
  }

 private:
  // One ADD and one GET of a fresh session on `c`, each timed into `ms`.
  bool round(RawConn& c, std::vector<int64_t>& ms, int64_t started) {
    std::string id = "probe-thread-" + std::to_string(++n_);
    std::string data = "probe-data-" + id;
    int st = c.add(id, data, 600000);
    int64_t t1 = now_ms();
    ms.push_back(t1 - started);
    if (st == 2 && misses_ok_) {
      ++misses_;
      return true;
    }
    if (st != 0) return failed("ADD answered " + std::to_string(st) + " (" + c.error() + ")");
    auto got = c.get(id);
    ms.push_back(now_ms() - t1);
    if (got && got->empty() && misses_ok_) {
      ++misses_;
      return true;
    }
    if (!got || *got != data)
      return failed("GET " + (got ? std::string("answered wrong data") : c.error()));
    return true;
  }
  bool failed(const std::string& why) {
    if (failures_++ == 0) why_ = why;
    return false;
  }
  void loop() {
    while (!stop_) {
      int64_t t0 = now_ms();
      round(kept_, kept_ms_, t0);
      RawConn fresh;
      t0 = now_ms();
      if (fresh.connect(t_.target(), 2000))
        round(fresh, fresh_ms_, t0);  // the connect counts in the first answer
      else
        failed("connect: " + fresh.error());
      usleep(10000);
    }
  }

  Target& t_;
  bool misses_ok_;
  int misses_ = 0;
  RawConn kept_;
  std::thread th_;
  std::atomic<bool> stop_{false};
  std::vector<int64_t> kept_ms_, fresh_ms_;
  int failures_ = 0;
  std::string why_;
  int n_ = 0;
};

// Issue 14: "21,000 connections each holding five bytes of a header took
// every descriptor, and a legitimate client timed out." Here 1,000 against
// a daemon allowed 800 descriptors (its default -maxconns is capped below
// that) and -frametimeout 1000: new clients keep being served (a new one
// takes the place of the oldest unfinished request), and every attacking
// connection is closed within the frame deadline.
void partial_flood(bool agent) {
  if (open_fds_raise() != 0) DC_SKIP("cannot raise RLIMIT_NOFILE to %d", kIdleConns + 1024);
  Target t(agent, {"-frametimeout", "1000"}, kAttackNofile);
  ProbeThread probe(t);
  usleep(100000);
  std::vector<UniqueFd> conns;
  long peak = 0;
  for (int i = 0; i < kAttackConns; ++i) {
    UniqueFd fd = raw_connect(t.target());
    if (!fd) continue;  // refused at the limit: counted below
    (void)send(fd.get(), "\0\x11\0\0\0", 5, MSG_NOSIGNAL);
    conns.push_back(std::move(fd));
    if (i % 100 == 99) peak = std::max(peak, t.growth());
  }
  // Hold them while the probe runs.
  for (int i = 0; i < 8; ++i) {
    usleep(100000);
    peak = std::max(peak, t.growth());
  }
  probe.stop();
  t.check_alive();
  fprintf(
      stderr,
      "# %s: RSS growth peak %ld KiB (bound %ld KiB) with %d connections holding half a header\n",
      t.name(), peak, kPartialFloodBoundKb, kAttackConns);
  if (peak > kPartialFloodBoundKb)
    fail_msg("%s: RSS grew by %ld KiB (bound %ld KiB)", t.name(), peak, kPartialFloodBoundKb);
  // Every attacking connection is closed: at the limit, displaced, or at
  // the frame deadline (1 s after its 5 bytes).
  usleep(1500000);
  int open = 0;
  for (auto& fd : conns) open += !hung_up(fd.get());
  if (open)
    fail_msg("%s: %d connections holding half a header outlived -frametimeout", t.name(), open);
  t.probe("after the flood of half headers");
}

// Issue 14: "1,000 TCP connections pipelining GETs of a 32 KB session and
// never reading drove dc_server from 3 MB to 418 MB." Here over the UNIX
// socket, with -connmemory 16M: the daemons close the connections holding
// the most, RSS stays within the budget plus slack, and the probe is served.
void many_non_readers(bool agent) {
  if (open_fds_raise() != 0) DC_SKIP("cannot raise RLIMIT_NOFILE to %d", kIdleConns + 1024);
  Target t(agent, {"-connmemory", std::to_string(kConnMemoryKb) + "K"});
  {
    RawConn rc;
    assert_true(rc.connect(t.target()));
    assert_int_equal(rc.add("big", std::string(32000, 'B'), 600000), 0);
  }
  // dc_client forwards every client's GETs on one connection: answers to
  // the non-readers' GETs go ahead of the probe's, and past its -timeout
  // or -maxpending the probe is answered DISCONNECTED (a miss, in time).
  ProbeThread probe(t, agent);
  usleep(100000);
  auto get = request(Op::get, 3, vec("big"));
  std::vector<uint8_t> burst;
  for (int i = 0; i < 200; ++i) append(burst, get);
  std::vector<UniqueFd> conns;
  long peak = 0;
  for (int i = 0; i < kAttackConns; ++i) {
    UniqueFd fd = raw_connect(t.target());
    if (!fd) continue;
    (void)send(fd.get(), burst.data(), burst.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    conns.push_back(std::move(fd));
    if (i % 50 == 49) peak = std::max(peak, t.growth());
  }
  for (int i = 0; i < 10; ++i) {
    usleep(100000);
    peak = std::max(peak, t.growth());
  }
  probe.stop();
  t.check_alive();
  int closed = 0;
  for (auto& fd : conns) closed += hung_up(fd.get());
  fprintf(stderr,
          "# %s: RSS growth peak %ld KiB (bound %ld KiB) with %d non-readers, %d of them closed\n",
          t.name(), peak, kNonReadersBoundKb, kAttackConns, closed);
  if (peak > kNonReadersBoundKb)
    fail_msg("%s: RSS grew by %ld KiB (bound %ld KiB)", t.name(), peak, kNonReadersBoundKb);
  conns.clear();
  usleep(100000);
  t.probe("after the non-readers left");
}

#define BOTH(fn)             \
  void fn##_server(void**) { \
    fn(false);               \
  }                          \
  void fn##_agent(void**) {  \
    fn(true);                \
  }

BOTH(random_bytes)
BOTH(corrupt_frames)
BOTH(oversized_and_trickled)
BOTH(half_open)
BOTH(idle_connections)
BOTH(never_reads)
BOTH(partial_flood)
BOTH(many_non_readers)

}  // namespace

// Arguments: the cases to run (see dc::test::run_cases); meson runs the
// idle_connections ones, which may skip, as a test of their own.
int main(int argc, char** argv) {
  signal(SIGPIPE, SIG_IGN);
  seed();
  const CMUnitTest tests[] = {
      cmocka_unit_test(random_bytes_server),
      cmocka_unit_test(random_bytes_agent),
      cmocka_unit_test(corrupt_frames_server),
      cmocka_unit_test(corrupt_frames_agent),
      cmocka_unit_test(oversized_and_trickled_server),
      cmocka_unit_test(oversized_and_trickled_agent),
      cmocka_unit_test(half_open_server),
      cmocka_unit_test(half_open_agent),
      cmocka_unit_test(idle_connections_server),
      cmocka_unit_test(idle_connections_agent),
      cmocka_unit_test(never_reads_server),
      cmocka_unit_test(never_reads_agent),
      cmocka_unit_test(partial_flood_server),
      cmocka_unit_test(partial_flood_agent),
      cmocka_unit_test(many_non_readers_server),
      cmocka_unit_test(many_non_readers_agent),
  };
  return dc::test::run_cases(tests, argc, argv);
}
