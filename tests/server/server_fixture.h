// What the dc_server integration tests share: starting the real dc_server
// (found through $DC_SERVER, set by meson) on a UNIX socket in a fresh
// temporary directory and, when asked, on a free loopback TCP port; waiting
// until it accepts; reading its log; and small helpers over the harness.
#pragma once

#include <signal.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "cmocka_cpp.h"
#include "harness.h"

namespace dc::test {

// A failed cmocka assertion leaves a test by longjmp, skipping destructors:
// servers still registered here are killed when the test program exits.
inline std::vector<pid_t>& live_servers() {
  static std::vector<pid_t> pids;
  static bool hooked = false;
  if (!hooked) {
    hooked = true;
    std::atexit([] {
      for (pid_t p : live_servers()) kill(p, SIGKILL);
    });
  }
  return pids;
}

class ServerProc {
 public:
  // Starts dc_server -listen UNIX:<tmp>/s [-listen IP:127.0.0.1:<port>] plus
  // `extra` flags, and waits until every listener accepts. Fails the test
  // when it does not come up.
  explicit ServerProc(const std::vector<std::string>& extra = {}, bool tcp = false) {
    sock_ = dir_.file("s");
    log_ = dir_.file("log");
    std::vector<std::string> argv = {env_or_die("DC_SERVER"), "-listen", "UNIX:" + sock_};
    if (tcp) {
      port_ = free_tcp_port();
      argv.push_back("-listen");
      argv.push_back("IP:127.0.0.1:" + std::to_string(port_));
    }
    argv.insert(argv.end(), extra.begin(), extra.end());
    proc_ = Process::spawn(argv, {}, log_);
    live_servers().push_back(proc_.pid());
    bool up = wait_for_unix_socket(sock_, 10000) && (!tcp || wait_for_tcp(port_, 10000));
    if (!up) print_log();
    assert_true(up);
  }
  ~ServerProc() {
    auto& live = live_servers();
    std::erase(live, proc_.pid());
    proc_.stop();
  }

  Address unix_addr() const { return addr("UNIX:" + sock_); }
  Address tcp_addr() const { return addr("IP:127.0.0.1:" + std::to_string(port_)); }
  const std::string& sock() const { return sock_; }
  TempDir& dir() { return dir_; }
  Process& proc() { return proc_; }
  std::string log() const {
    std::ifstream in(log_);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }
  void print_log() const { fprintf(stderr, "---- dc_server log ----\n%s----\n", log().c_str()); }

  // A connected client on the UNIX socket (or TCP).
  RawConn client(bool tcp = false) const {
    RawConn c;
    bool ok = c.connect(tcp ? tcp_addr() : unix_addr());
    if (!ok) fprintf(stderr, "connect: %s\n", c.error().c_str());
    assert_true(ok);
    return c;
  }

 private:
  TempDir dir_;
  std::string sock_, log_;
  uint16_t port_ = 0;
  Process proc_;
};

inline std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// A whole request as bytes.
inline std::vector<uint8_t> request(proto::Op op, uint32_t uid, proto::Bytes payload) {
  proto::Message m;
  m.op = op;
  m.uid = uid;
  m.payload = payload;
  std::vector<uint8_t> v;
  proto::append(v, m);
  return v;
}

}  // namespace dc::test
