// dc_client with a pool of dc_servers (-server given several times): real
// dc_server processes on UNIX sockets. Each session id goes to one server
// by rendezvous hashing (daemons/agent/dc_pool.h), computed here again from
// the documented rule (not from the agent's code) to check where each id
// lands: directly on each server, with HAVE. Ids spread over every server,
// the same id always to the same one; a killed server's ids go to the next
// in hash order and come back once it is restarted; a fourth server takes
// about a quarter of the ids, only from the others. One client's answers
// stay in its order when its requests went to different servers, one of
// them stopped.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "agent_fixture.h"

using namespace dc;
using namespace dc::test;

namespace {

// 64-bit FNV-1a and the SplitMix64 finalizer, as docs/backends.md states them.
uint64_t fnv(const std::string& s) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (unsigned char c : s) {
    h ^= c;
    h *= 0x100000001b3ULL;
  }
  return h;
}
uint64_t mix(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  x ^= x >> 31;
  return x;
}

// Servers on UNIX sockets s0, s1, ... and one agent in front of some of them.
class Pool {
 public:
  explicit Pool(size_t n) : servers_(n) {
    for (size_t i = 0; i < n; ++i) {
      socks_.push_back(dir_.file("s" + std::to_string(i)));
      start_server(i);
    }
  }
  ~Pool() {
    for (Process* p : all()) {
      if (p->pid() > 0) {
        p->signal(SIGCONT);
        p->stop();
      }
    }
  }

  void start_server(size_t i) {
    unlink(socks_[i].c_str());
    servers_[i] = Process::spawn({env_or_die("DC_SERVER"), "-listen", "UNIX:" + socks_[i]}, {},
                                 dir_.file("server" + std::to_string(i) + ".log"));
    assert_true(wait_for_unix_socket(socks_[i], 10000));
  }
  void stop_server(size_t i) { assert_true(servers_[i].signal(SIGSTOP)); }
  void cont_server(size_t i) { assert_true(servers_[i].signal(SIGCONT)); }
  void kill_server(size_t i) {
    assert_true(servers_[i].signal(SIGKILL));
    assert_true(servers_[i].wait(10000).has_value());
  }
  // The agent in front of servers [0, n), reconnecting every 100 ms.
  void start_agent(size_t n, const std::vector<std::string>& extra = {}) {
    if (agent_.pid() > 0) agent_.stop();
    agent_sock_ = dir_.file("a" + std::to_string(++agents_));
    std::vector<std::string> argv = {env_or_die("DC_AGENT"), "-listen", "UNIX:" + agent_sock_,
                                     "-retry", "100"};
    for (size_t i = 0; i < n; ++i) {
      argv.push_back("-server");
      argv.push_back("UNIX:" + socks_[i]);
    }
    argv.insert(argv.end(), extra.begin(), extra.end());
    used_ = n;
    agent_log_ = dir_.file("agent" + std::to_string(agents_) + ".log");
    agent_ = Process::spawn(argv, {}, agent_log_);
    assert_true(wait_for_unix_socket(agent_sock_, 10000));
    for (size_t i = 0; i < n; ++i) wait_node(i, 1);
  }
  // Waits until the agent's statistics say node i is up (1) or down (0).
  std::string wait_node(size_t i, long long up) {
    std::string key = "node" + std::to_string(i) + "_up", st;
    for (int k = 0; k < 500; ++k) {
      st = request_stats(agent_, agent_log_);
      if (stat_value(st, key) == up) return st;
      usleep(10000);
    }
    fprintf(stderr, "%s\n", slurp(agent_log_).c_str());
    fail_msg("%s never became %lld", key.c_str(), up);
    return st;
  }
  std::string agent_stats() { return request_stats(agent_, agent_log_); }

  // The servers among [0, used) in hash order for `id`, best first; with
  // `up` given, only those marked up.
  std::vector<size_t> order(const std::string& id) const {
    std::vector<std::pair<uint64_t, size_t>> w;
    for (size_t i = 0; i < used_; ++i) w.push_back({mix(fnv(id) ^ fnv("UNIX:" + socks_[i])), i});
    std::sort(w.rbegin(), w.rend());
    std::vector<size_t> out;
    for (auto& [weight, i] : w) out.push_back(i);
    return out;
  }

  RawConn agent() const {
    RawConn c;
    assert_true(c.connect(addr("UNIX:" + agent_sock_), 5000));
    return c;
  }
  RawConn server(size_t i) const {
    RawConn c;
    assert_true(c.connect(addr("UNIX:" + socks_[i]), 5000));
    return c;
  }
  // Which servers hold `id` (asked directly).
  std::vector<size_t> holders(const std::string& id, size_t n) const {
    std::vector<size_t> out;
    for (size_t i = 0; i < n; ++i) {
      RawConn c = server(i);
      if (c.have(id) == kOk) out.push_back(i);
    }
    return out;
  }
  long long server_sessions(size_t i) {
    return stat_value(request_stats(servers_[i], dir_.file("server" + std::to_string(i) + ".log")),
                      "sessions");
  }

 private:
  std::vector<Process*> all() {
    std::vector<Process*> v = {&agent_};
    for (Process& p : servers_) v.push_back(&p);
    return v;
  }
  TempDir dir_;
  std::vector<std::string> socks_;
  std::vector<Process> servers_;
  Process agent_;
  std::string agent_sock_, agent_log_;
  size_t used_ = 0;
  int agents_ = 0;
};

std::string id_of(int i) {
  return "pool-session-" + std::to_string(i);
}

}  // namespace

// 3 servers, 600 ids: each lands on exactly the server the rule names, every
// server gets a share (its own statistics say so), and GET through the
// agent finds every one again.
static void test_ids_spread_over_every_server(void**) {
  Pool p(3);
  p.start_agent(3);
  RawConn c = p.agent();
  std::vector<int> share(3);
  for (int i = 0; i < 600; ++i) assert_int_equal(c.add(id_of(i), "data" + id_of(i), 60000), kOk);
  for (int i = 0; i < 600; ++i) {
    size_t want = p.order(id_of(i))[0];
    std::vector<size_t> h = p.holders(id_of(i), 3);
    assert_int_equal(h.size(), 1);
    assert_int_equal(h[0], want);
    ++share[want];
    std::optional<std::string> got = c.get(id_of(i));
    assert_true(got.has_value());
    assert_string_equal(got->c_str(), ("data" + id_of(i)).c_str());
  }
  for (size_t s = 0; s < 3; ++s) {
    // A third each, give or take.
    assert_true(share[s] > 120);
    assert_int_equal(p.server_sessions(s), share[s]);
  }
  // The same id again: the same server (ADD of an id it has: MATCHING_SESSION).
  for (int i = 0; i < 600; i += 7)
    assert_int_equal(c.add(id_of(i), "value-x", 60000), int(proto::AddStatus::matching_session));
  std::string st = p.agent_stats();
  assert_int_equal(stat_sum(st, "disconnected_"), 0);
  long long fwd = 0;
  for (int s = 0; s < 3; ++s) {
    long long n = stat_value(st, "node" + std::to_string(s) + "_forwarded");
    assert_true(n > 0);
    fwd += n;
  }
  assert_int_equal(fwd, stat_value(st, "forwarded"));
}

// kill -9 of one server: once the agent has noticed, its ids go to the next
// server in hash order (answered, never DISCONNECTED); restarted, it gets
// its share back.
static void test_killed_server_share_moves_and_returns(void**) {
  Pool p(3);
  p.start_agent(3);
  RawConn c = p.agent();
  for (int i = 0; i < 300; ++i) assert_int_equal(c.add(id_of(i), "value-v", 60000), kOk);
  p.kill_server(1);
  p.wait_node(1, 0);
  long long before = stat_sum(p.agent_stats(), "disconnected_");
  int moved = 0;
  for (int i = 0; i < 300; ++i) {
    std::vector<size_t> o = p.order(id_of(i));
    if (o[0] != 1) {
      // Not its: still found where it was.
      assert_true(c.get(id_of(i)) == std::optional<std::string>("value-v"));
      continue;
    }
    ++moved;
    // Lost with the server: a miss, then stored on the next in hash order.
    assert_true(c.get(id_of(i)) == std::optional<std::string>(""));
    assert_int_equal(c.add(id_of(i), "value-w", 60000), kOk);
    RawConn next = p.server(o[1]);
    assert_int_equal(next.have(id_of(i)), kOk);
  }
  assert_true(moved > 50);
  assert_int_equal(stat_sum(p.agent_stats(), "disconnected_"), before);
  // Back (empty): its ids go to it again.
  p.start_server(1);
  p.wait_node(1, 1);
  for (int i = 0; i < 300; ++i) {
    if (p.order(id_of(i))[0] != 1) continue;
    assert_true(c.get(id_of(i)) == std::optional<std::string>(""));  // the new, empty server
    assert_int_equal(c.add(id_of(i), "value-z", 60000), kOk);
    RawConn s1 = p.server(1);
    assert_int_equal(s1.have(id_of(i)), kOk);
  }
  assert_int_equal(stat_sum(p.agent_stats(), "disconnected_"), before);
}

// A fourth server: about a quarter of the ids now go to it, and only to it;
// every other id still finds its session where it was.
static void test_fourth_server_takes_a_quarter(void**) {
  Pool p(4);
  p.start_agent(3);
  {
    RawConn c = p.agent();
    for (int i = 0; i < 1000; ++i) assert_int_equal(c.add(id_of(i), "value-v", 60000), kOk);
  }
  p.start_agent(4);
  RawConn c = p.agent();
  int moved = 0;
  for (int i = 0; i < 1000; ++i) {
    std::optional<std::string> got = c.get(id_of(i));
    assert_true(got.has_value());
    if (p.order(id_of(i))[0] == 3) {
      ++moved;
      assert_string_equal(got->c_str(), "");  // the new server has nothing yet
    } else {
      assert_string_equal(got->c_str(), "value-v");
    }
  }
  assert_true(moved > 170 && moved < 330);
  assert_int_equal(p.server_sessions(3), 0);
}

// One client pipelines requests whose ids go to all three servers, one of
// them stopped (SIGSTOP): its requests are answered DISCONNECTED at the
// deadline, the others by their servers, each answer in the client's order.
static void test_order_kept_across_servers(void**) {
  Pool p(3);
  p.start_agent(3, {"-timeout", "200"});
  RawConn c = p.agent();
  for (int i = 0; i < 60; ++i) assert_int_equal(c.add(id_of(i), "value-v", 60000), kOk);
  p.stop_server(0);
  for (int i = 0; i < 60; ++i) {
    std::vector<uint8_t> id = vec(id_of(i));
    assert_true(c.send(proto::Op::get, uint32_t(1000 + i), id));
  }
  for (int i = 0; i < 60; ++i) {
    bool on0 = p.order(id_of(i))[0] == 0;
    std::vector<uint8_t> want = on0 ? status(kDisconnected) : vec("value-v");
    expect_answer(c, uint32_t(1000 + i), proto::Op::get, want);
  }
  p.cont_server(0);
}

// Flags: the same server twice is refused (it would double its share);
// -tls-* with a pool reads the certificates at start like with one server
// (test_agent_tls has a pool speaking TLS).
static void test_pool_flags(void**) {
  std::string out;
  std::vector<std::string> argv = {env_or_die("DC_AGENT"), "-server", "UNIX:/tmp/dc-x",
                                   "-server", "UNIX:/tmp/dc-x"};
  Process p = Process::spawn(argv, {}, "");
  std::optional<int> st = p.wait(10000);
  assert_true(st.has_value() && WIFEXITED(*st) && WEXITSTATUS(*st) == 2);
  TempDir d;
  std::string log = d.file("log");
  for (const char* f : {"cert", "key", "ca"}) {
    FILE* fp = fopen(d.file(f).c_str(), "w");
    fclose(fp);
  }
  argv = {env_or_die("DC_AGENT"),
          "-listen",
          "UNIX:" + d.file("a"),
          "-server",
          "IP:127.0.0.1:1",
          "-server",
          "IP:127.0.0.1:2",
          "-tls-cert",
          d.file("cert"),
          "-tls-key",
          d.file("key"),
          "-tls-ca",
          d.file("ca")};
  p = Process::spawn(argv, {}, log);
  st = p.wait(10000);
  assert_true(st.has_value() && WIFEXITED(*st) && WEXITSTATUS(*st) == 1);
  // TLS to a pool: the certificates are read at start (these are empty).
  assert_true(slurp(log).find("-tls-cert " + d.file("cert") + ": not a PEM certificate") !=
              std::string::npos);
}

int main() {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_ids_spread_over_every_server),
      cmocka_unit_test(test_killed_server_share_moves_and_returns),
      cmocka_unit_test(test_fourth_server_takes_a_quarter),
      cmocka_unit_test(test_order_kept_across_servers),
      cmocka_unit_test(test_pool_flags),
  };
  return cmocka_run_group_tests(tests, nullptr, nullptr);
}
