// What the dc_client integration tests share: a fresh temporary directory
// holding a real dc_server ($DC_SERVER) and a real dc_client
// ($DC_AGENT) on UNIX sockets, each of which can be started, killed,
// stopped and restarted on the same socket path; waiting until the agent
// has its upstream connection; the agent's statistics (SIGHUP) and logs.
#pragma once

#include <signal.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <initializer_list>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "cmocka_cpp.h"
#include "harness.h"

namespace dc::test {

inline std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// The sum of the values of every key starting with `prefix` (e.g. all the
// disconnected_<reason> counters), or 0 when there is none.
inline long long stat_sum(const std::string& line, const std::string& prefix) {
  long long sum = 0;
  std::string padded = " " + line;
  for (size_t at = padded.find(" " + prefix); at != std::string::npos;
       at = padded.find(" " + prefix, at + 1)) {
    size_t eq = padded.find('=', at);
    if (eq != std::string::npos) sum += std::atoll(padded.c_str() + eq + 1);
  }
  return sum;
}

// Statistics lines in `log`, complete ones only: a line being written as
// the log is read (or written in pieces: it can be longer than stdio's
// buffer with many upstream nodes) is not counted until its newline is in.
inline size_t count_stats(const std::string& log) {
  size_t end = log.rfind('\n');
  if (end == std::string::npos) return 0;
  size_t n = 0;
  for (size_t at = log.find("uptime_ms="); at != std::string::npos && at < end;
       at = log.find("uptime_ms=", at + 1))
    ++n;
  return n;
}

// Sends SIGHUP to a dc_client writing its stderr to `log` and returns the
// statistics line it prints; fails the test when none comes within 10 s.
// SIGHUP is sent again every second: one that came before the agent's
// handler was in place (just after start) is ignored.
inline std::string request_stats(Process& agent, const std::string& log) {
  size_t lines = count_stats(slurp(log));
  for (int i = 0; i < 1000; ++i) {
    if (i % 100 == 0) assert_true(agent.signal(SIGHUP));
    std::string text = slurp(log);
    if (count_stats(text) > lines) {
      size_t at = text.rfind("uptime_ms=", text.rfind('\n'));
      return text.substr(at, text.find('\n', at) - at);
    }
    usleep(10000);
  }
  std::string text = slurp(log);
  fail_msg("no statistics line from the agent within 10 s (running: %s); its log ends:\n%s",
           agent.running() ? "yes" : "no",
           text.substr(text.size() > 2000 ? text.size() - 2000 : 0).c_str());
  return "";
}

class Cluster {
 public:
  Cluster() : server_sock_(dir_.file("s")), agent_sock_(dir_.file("a")) {}
  ~Cluster() {
    // A stopped process would make stop() wait for its grace period.
    if (agent_.pid() > 0) {
      agent_.signal(SIGCONT);
      agent_.stop();
    }
    if (server_.pid() > 0) {
      server_.signal(SIGCONT);
      server_.stop();
    }
  }

  // Starts dc_server on the server socket and waits until it accepts.
  void start_server() {
    server_ = Process::spawn({env_or_die("DC_SERVER"), "-listen", "UNIX:" + server_sock_}, {},
                             dir_.file("server.log"));
    bool up = wait_for_unix_socket(server_sock_, 10000);
    if (!up)
      fprintf(stderr, "---- dc_server log ----\n%s----\n", slurp(dir_.file("server.log")).c_str());
    assert_true(up);
  }
  // Kills dc_server at once (SIGKILL: no goodbye) and reaps it.
  void kill_server() {
    assert_true(server_.signal(SIGKILL));
    assert_true(server_.wait(10000).has_value());
    // The socket file stays, as after a crash: connects are refused.
  }
  // Starts dc_client -listen <agent socket> -server <server socket> plus
  // `extra` and waits until it accepts local clients.
  void start_agent(const std::vector<std::string>& extra = {}) {
    std::vector<std::string> argv = {env_or_die("DC_AGENT"), "-listen", "UNIX:" + agent_sock_,
                                     "-server", "UNIX:" + server_sock_};
    argv.insert(argv.end(), extra.begin(), extra.end());
    agent_ = Process::spawn(argv, {}, dir_.file("agent.log"));
    bool up = wait_for_unix_socket(agent_sock_, 10000);
    if (!up) print_agent_log();
    assert_true(up);
  }

  // A client connected to the agent.
  RawConn client() const {
    RawConn c;
    bool ok = c.connect(agent_addr(), 5000);
    if (!ok) fprintf(stderr, "connect to the agent: %s\n", c.error().c_str());
    assert_true(ok);
    return c;
  }

  // Polls the agent with HAVE until an answer is not DISCONNECTED, i.e. the
  // upstream connection works; returns false after timeout_ms.
  bool wait_upstream(int timeout_ms = 10000) const {
    int64_t end = now_ms() + timeout_ms;
    while (now_ms() < end) {
      RawConn c;
      if (c.connect(agent_addr(), 2000)) {
        int st = c.have("probe-upstream");
        if (st == 0 || st == 1) return true;
      }
      usleep(10000);
    }
    return false;
  }

  // Asks the agent for its statistics line (SIGHUP) and returns it.
  std::string agent_stats() { return request_stats(agent_, dir_.file("agent.log")); }
  // Polls the agent's statistics (up to 5 s) until every key=value of
  // `want` holds; returns the last line read (the caller asserts on it).
  std::string wait_stats(std::initializer_list<std::pair<const char*, long long>> want) {
    std::string st;
    for (int i = 0; i < 500; ++i) {
      st = agent_stats();
      bool all = true;
      for (const auto& [key, value] : want) all = all && stat_value(st, key) == value;
      if (all) break;
      usleep(10000);
    }
    return st;
  }

  void print_agent_log() const {
    fprintf(stderr, "---- dc_client log ----\n%s----\n", slurp(dir_.file("agent.log")).c_str());
  }

  Address agent_addr() const { return addr("UNIX:" + agent_sock_); }
  Address server_addr() const { return addr("UNIX:" + server_sock_); }
  const std::string& agent_sock() const { return agent_sock_; }
  TempDir& dir() { return dir_; }
  Process& server() { return server_; }
  Process& agent() { return agent_; }

 private:
  TempDir dir_;
  std::string server_sock_, agent_sock_;
  Process server_, agent_;
};

// Receives one answer on `c` and checks it is the response to (uid, op)
// with `payload`; fails the test with what differed otherwise.
inline void expect_answer(RawConn& c, uint32_t uid, proto::Op op,
                          const std::vector<uint8_t>& payload, int timeout_ms = 10000) {
  std::vector<uint8_t> got;
  auto m = c.recv(got, timeout_ms);
  if (!m) fail_msg("no answer for uid %u: %s", uid, c.error().c_str());
  if (!m->is_response || m->uid != uid || m->op != op)
    fail_msg("answer uid %u op %d (response %d), expected uid %u op %d", m->uid, int(m->op),
             int(m->is_response), uid, int(op));
  if (got != payload)
    fail_msg("answer for uid %u: %zu bytes (first %d), expected %zu bytes (first %d)", uid,
             got.size(), got.empty() ? -1 : got[0], payload.size(),
             payload.empty() ? -1 : payload[0]);
}

inline std::vector<uint8_t> status(uint8_t b) {
  return {b};
}
inline std::vector<uint8_t> vec(const std::string& s) {
  return {s.begin(), s.end()};
}

inline constexpr uint8_t kOk = 0, kNotOk = 1, kDisconnected = 2;

}  // namespace dc::test
