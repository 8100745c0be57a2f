// TLS between dc_client and dc_server (-tls-cert, -tls-key, -tls-ca,
// -tls-name), with the real binaries and throw-away certificates made here
// with the openssl command: a CA, another CA, a server certificate for
// localhost and 127.0.0.1, an agent certificate, an expired one and one
// from the other CA. An agent with a valid certificate works through a TLS
// dc_server; an agent with a certificate from another CA, an expired one,
// none (s_client) and a plaintext client are refused before any operation
// (dc_server counts no request and logs the refusal); an agent that finds
// another name in the server's certificate gets nothing and answers its
// clients DISCONNECTED; unusable files stop either daemon at start with one
// line naming the file; a pool of two TLS dc_servers works, each server's
// certificate checked for its own host or for -tls-name.
#include <signal.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "agent_fixture.h"
#include "cmocka_cpp.h"
#include "harness.h"
#include "pki.h"

namespace dc::test {
namespace {

// A TLS dc_server: a UNIX socket (plain) and a loopback TCP port (TLS).
struct TlsServer {
  TempDir dir;
  Process proc;
  uint16_t port = free_tcp_port();
  TlsServer() {
    std::vector<std::string> argv = {env_or_die("DC_SERVER"), "-listen",
                                     "UNIX:" + dir.file("s"), "-listen",
                                     "IP:127.0.0.1:" + std::to_string(port)};
    for (const std::string& f : pki().server_flags()) argv.push_back(f);
    proc = Process::spawn(argv, {}, dir.file("log"));
    bool up = wait_for_unix_socket(dir.file("s"), 10000) && wait_for_tcp(port, 10000);
    if (!up) print_log();
    assert_true(up);
  }
  ~TlsServer() { proc.stop(); }
  std::string log() const { return slurp(dir.file("log")); }
  void print_log() const { fprintf(stderr, "---- dc_server log ----\n%s----\n", log().c_str()); }
  Address tcp_addr() const { return addr("IP:127.0.0.1:" + std::to_string(port)); }
  RawConn unix_client() const {
    RawConn c;
    assert_true(c.connect(addr("UNIX:" + dir.file("s"))));
    return c;
  }

  // The statistics line dc_server prints on SIGHUP.
  std::string stats() {
    size_t before = count_stats(log());
    assert_true(proc.signal(SIGHUP));
    for (int i = 0; i < 500; ++i) {
      std::string log = this->log();
      if (count_stats(log) > before) {
        size_t at = log.rfind("uptime_ms=");
        return log.substr(at, log.find('\n', at) - at);
      }
      usleep(10000);
    }
    fail_msg("no statistics line from dc_server");
    return "";
  }
  // No request of any kind reached the store.
  void expect_no_operation() {
    std::string st = stats();
    for (const char* k : {"add", "get", "remove", "have"})
      if (stat_value(st, k) != 0) fail_msg("dc_server counted %s: %s", k, st.c_str());
  }
  // Waits (up to 15 s: the log is rate-limited to a line per 10 s) until
  // the log holds a refusal line containing `what`.
  void expect_refusal(const std::string& what) {
    for (int i = 0; i < 1500; ++i) {
      std::string log = this->log();
      for (size_t at = log.find("refused"); at != std::string::npos;
           at = log.find("refused", at + 1)) {
        std::string line = log.substr(at, log.find('\n', at) - at);
        if (line.find("TLS client") != std::string::npos && line.find(what) != std::string::npos)
          return;
      }
      usleep(10000);
    }
    print_log();
    fail_msg("no line about a refused TLS client (%s) in dc_server's log", what.c_str());
  }
};

// A dc_client on its own UNIX socket in front of the TLS server's port.
struct Agent {
  TempDir dir;
  Process proc;
  std::string sock = dir.file("a");
  Agent(uint16_t port, const std::vector<std::string>& extra) {
    std::vector<std::string> argv = {env_or_die("DC_AGENT"),
                                     "-listen",
                                     "UNIX:" + sock,
                                     "-server",
                                     "IP:127.0.0.1:" + std::to_string(port),
                                     "-retry",
                                     "100"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    proc = Process::spawn(argv, {}, dir.file("log"));
    bool up = wait_for_unix_socket(sock, 10000);
    if (!up) print_log();
    assert_true(up);
  }
  ~Agent() { proc.stop(); }
  std::string log() const { return slurp(dir.file("log")); }
  void print_log() const { fprintf(stderr, "---- dc_client log ----\n%s----\n", log().c_str()); }
  RawConn client() const {
    RawConn c;
    assert_true(c.connect(addr("UNIX:" + sock), 5000));
    return c;
  }
  // Polls with HAVE until an answer is not DISCONNECTED (true) or 10 s pass.
  bool wait_upstream() const {
    for (int i = 0; i < 1000; ++i) {
      RawConn c = client();
      int st = c.have("probe");
      if (st == 0 || st == 1) return true;
      usleep(10000);
    }
    return false;
  }
};

uint16_t port_of(const TlsServer& s) {
  return s.port;
}

void test_operations_through_tls(void**) {
  TlsServer srv;
  Agent agent(port_of(srv), pki().agent_flags("agent"));
  if (!agent.wait_upstream()) {
    agent.print_log();
    srv.print_log();
    fail_msg("the agent did not get a TLS connection to dc_server");
  }
  RawConn c = agent.client();
  assert_int_equal(c.add("tls-id", "tls-session", 60000), kOk);
  auto got = c.get("tls-id");
  assert_true(got.has_value());
  assert_string_equal(got->c_str(), "tls-session");
  assert_int_equal(c.remove("tls-id"), kOk);
  std::string st = srv.stats();
  assert_true(stat_value(st, "add") >= 1);
  assert_true(stat_value(st, "get") >= 1);
  assert_int_equal(stat_value(st, "tls_refused"), 0);
  // And the UNIX socket stays plain.
  RawConn u = srv.unix_client();
  assert_int_equal(u.have("tls-id"), kNotOk);
}

// A pool of two TLS dc_servers: every server speaks TLS, each one's
// certificate checked for its own host (127.0.0.1, in the certificate) and,
// with -tls-name, for that name instead; both get a share of the ids.
void test_pool_through_tls(void**) {
  TlsServer one, two;
  for (const char* name : {"", "localhost"}) {
    std::vector<std::string> extra = {"-server", "IP:127.0.0.1:" + std::to_string(two.port)};
    for (const std::string& f : pki().agent_flags("agent")) extra.push_back(f);
    if (*name) extra.insert(extra.end(), {"-tls-name", name});
    Agent agent(port_of(one), extra);
    // Both TLS connections up (before that, a server's ids would go to the
    // other one).
    bool both = false;
    for (int k = 0; k < 100 && !both; ++k) {
      std::string st = request_stats(agent.proc, agent.dir.file("log"));
      both = stat_value(st, "node0_up") == 1 && stat_value(st, "node1_up") == 1;
      if (!both) usleep(100000);
    }
    if (!both) fail_msg("the pool's TLS connections did not come up:\n%s", agent.log().c_str());
    RawConn c = agent.client();
    const int n = 40;
    for (int i = 0; i < n; ++i)
      assert_int_equal(
          c.add(std::string("pool-") + name + std::to_string(i), "pool-session", 60000), kOk);
    for (int i = 0; i < n; ++i) {
      auto got = c.get(std::string("pool-") + name + std::to_string(i));
      assert_true(got.has_value() && *got == "pool-session");
    }
    std::string log = agent.log();
    for (const TlsServer* s : {&one, &two})
      if (log.find("IP:127.0.0.1:" + std::to_string(s->port)) != std::string::npos &&
          log.find("lost") != std::string::npos)
        fail_msg("the agent lost a server:\n%s", log.c_str());
  }
  // Each server stored some, over TLS (nothing refused).
  for (TlsServer* s : {&one, &two}) {
    std::string st = s->stats();
    if (stat_value(st, "add") <= 0) fail_msg("a server of the pool got no ADD: %s", st.c_str());
    assert_int_equal(stat_value(st, "tls_refused"), 0);
  }
}

// An agent whose certificate dc_server refuses: its clients get DISCONNECTED,
// dc_server counts no operation and logs the refusal with `reason`.
void refused_agent(const std::string& cert, const std::string& reason) {
  TlsServer srv;
  Agent agent(port_of(srv), pki().agent_flags(cert));
  srv.expect_refusal(reason);
  for (int i = 0; i < 20; ++i) {
    RawConn c = agent.client();
    int st = c.add("refused-" + std::to_string(i), "data", 60000);
    assert_int_equal(st, kDisconnected);
  }
  srv.expect_no_operation();
  std::string log = agent.log();
  if (log.find("TLS handshake failed") == std::string::npos) {
    agent.print_log();
    fail_msg("the agent did not say its TLS handshake failed");
  }
}

void test_certificate_from_another_ca(void**) {
  refused_agent("foreign", "unable to get local issuer certificate");
}

void test_expired_certificate(void**) {
  refused_agent("expired", "certificate has expired");
}

void test_no_certificate(void**) {
  TlsServer srv;
  std::string out;
  std::string cmd = "printf 'not a request' | timeout 10 openssl s_client -connect 127.0.0.1:" +
                    std::to_string(port_of(srv)) + " -tls1_3 -CAfile " + pki().f("ca.pem") +
                    " -ign_eof";
  run({"/bin/sh", "-c", cmd}, out);
  srv.expect_refusal("did not return a certificate");
  srv.expect_no_operation();
}

void test_plaintext_client(void**) {
  TlsServer srv;
  RawConn c;
  assert_true(c.connect(srv.tcp_addr()));
  // A 1.x client's request: no answer, the connection is closed.
  assert_int_equal(c.add("plain", "data", 60000), -1);
  srv.expect_refusal("127.0.0.1");
  srv.expect_no_operation();
  // An agent without TLS is such a client too.
  Agent plain(port_of(srv), {});
  RawConn l = plain.client();
  assert_int_equal(l.have("x"), kDisconnected);
  srv.expect_no_operation();
}

void test_server_name_mismatch(void**) {
  TlsServer srv;
  std::vector<std::string> flags = pki().agent_flags("agent");
  flags.insert(flags.end(), {"-tls-name", "cache.example.org"});
  Agent agent(port_of(srv), flags);
  for (int i = 0; i < 1000 && agent.log().find("hostname mismatch") == std::string::npos; ++i)
    usleep(10000);
  if (agent.log().find("hostname mismatch") == std::string::npos) {
    agent.print_log();
    fail_msg("the agent did not report the name mismatch");
  }
  // Answered DISCONNECTED at once, never forwarded.
  for (int i = 0; i < 20; ++i) {
    RawConn c = agent.client();
    int64_t t0 = now_ms();
    assert_int_equal(c.add("mismatch-" + std::to_string(i), "data", 60000), kDisconnected);
    assert_true(now_ms() - t0 < 2000);  // a bound far above "at once", far below a deadline
  }
  srv.expect_no_operation();
  // One line per outage, however many attempts failed.
  std::string log = agent.log();
  size_t lines = 0;
  for (size_t at = log.find("hostname mismatch"); at != std::string::npos;
       at = log.find("hostname mismatch", at + 1))
    ++lines;
  assert_int_equal(lines, 1);
  // The default name is the host of -server (127.0.0.1 is in the certificate).
  Agent good(port_of(srv), pki().agent_flags("agent"));
  assert_true(good.wait_upstream());
}

// A daemon started with `flags` exits 1 at once with one line containing
// `want` (the file).
void expect_start_error(const std::vector<std::string>& argv, const std::string& want) {
  std::string out;
  int rc = run(argv, out, 10000);
  if (rc != 1 || out.find(want) == std::string::npos)
    fail_msg("%s: exit %d, output: %s", argv[0].c_str(), rc, out.c_str());
  size_t lines = 0;
  for (char ch : out) lines += ch == '\n';
  if (lines != 1) fail_msg("expected one line, got: %s", out.c_str());
}

void test_bad_files_at_start(void**) {
  TempDir d;
  const Pki& p = pki();
  std::string port = "IP:127.0.0.1:" + std::to_string(free_tcp_port());
  auto server = [&](const std::string& cert, const std::string& key, const std::string& ca) {
    return std::vector<std::string>{env_or_die("DC_SERVER"),
                                    "-listen",
                                    port,
                                    "-tls-cert",
                                    cert,
                                    "-tls-key",
                                    key,
                                    "-tls-ca",
                                    ca};
  };
  expect_start_error(server(p.f("missing.pem"), p.f("server.key"), p.f("ca.pem")),
                     p.f("missing.pem"));
  expect_start_error(server(p.f("server.pem"), p.f("agent.key"), p.f("ca.pem")), "does not match");
  expect_start_error(server(p.f("server.pem"), p.f("server.key"), p.f("empty.pem")),
                     p.f("empty.pem"));
  auto agent = [&](const std::string& cert, const std::string& key, const std::string& ca) {
    return std::vector<std::string>{env_or_die("DC_AGENT"),
                                    "-listen",
                                    "UNIX:" + d.file("a"),
                                    "-server",
                                    port,
                                    "-tls-cert",
                                    cert,
                                    "-tls-key",
                                    key,
                                    "-tls-ca",
                                    ca};
  };
  expect_start_error(agent(p.f("agent.pem"), p.f("missing.key"), p.f("ca.pem")),
                     p.f("missing.key"));
  expect_start_error(agent(p.f("agent.pem"), p.f("server.key"), p.f("ca.pem")), "does not match");
  expect_start_error(agent(p.f("agent.pem"), p.f("agent.key"), p.f("empty.pem")), p.f("empty.pem"));
  // One of the three without the others: a usage error.
  std::string out;
  assert_int_equal(
      run({env_or_die("DC_SERVER"), "-listen", port, "-tls-cert", p.f("server.pem")}, out,
          10000),
      2);
  assert_true(out.find("-tls-key") != std::string::npos);
}

}  // namespace
}  // namespace dc::test

int main(int argc, char** argv) {
  using namespace dc::test;
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_operations_through_tls),
      cmocka_unit_test(test_pool_through_tls),
      cmocka_unit_test(test_certificate_from_another_ca),
      cmocka_unit_test(test_expired_certificate),
      cmocka_unit_test(test_no_certificate),
      cmocka_unit_test(test_plaintext_client),
      cmocka_unit_test(test_server_name_mismatch),
      cmocka_unit_test(test_bad_files_at_start),
  };
  return run_cases(tests, argc, argv);
}
