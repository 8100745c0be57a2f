// TLS between dc_client and Redis (-tls-cert, -tls-key, -tls-ca with
// -server REDIS: and REDIS-CLUSTER:), against Debian's redis-server on a
// tls-port with tls-auth-clients yes and throw-away certificates (pki.h):
// the operations work with the right certificates; an agent that does not
// trust Redis's certificate (another CA in -tls-ca), or whose certificate
// Redis does not trust, answers DISCONNECTED and says so in one line; a
// Redis Cluster whose nodes speak TLS only (clients, bus, replication) works
// through the agent, each node's certificate checked for its IP address.
// Skips (exit 77) without redis-server.
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "harness.h"
#include "pki.h"
#include "proto.h"
#include "redis_cluster_fixture.h"

// Last: cmocka defines macros that clash with the standard headers.
#include "cmocka_cpp.h"

using namespace dc;
using namespace dc::test;

namespace {

constexpr int kDisc = int(proto::Status::disconnected);

std::string redis_tls_conf() {
  const Pki& p = pki();
  return "tls-cert-file " + p.f("server.pem") + "\ntls-key-file " + p.f("server.key") +
         "\ntls-ca-cert-file " + p.f("ca.pem") + "\n";
}

std::vector<std::string> cli_tls() {
  const Pki& p = pki();
  return {"--tls",          "--cert",   p.f("agent.pem"), "--key",
          p.f("agent.key"), "--cacert", p.f("ca.pem")};
}

// A standalone redis-server on a TLS port only, asking clients for a
// certificate of the test CA.
struct TlsRedis {
  TempDir dir;
  uint16_t port = free_tcp_port();
  Process proc;
  TlsRedis() {
    std::string conf = dir.file("redis.conf");
    std::ofstream(conf) << "port 0\ntls-port " << port << "\ntls-auth-clients yes\n"
                        << redis_tls_conf() << "bind 127.0.0.1\nsave \"\"\nappendonly no\n"
                        << "dir " << dir.path() << "\n";
    proc = Process::spawn({kRedisServer, conf}, {}, dir.file("redis.log"));
    for (int i = 0; i < 100; ++i) {
      if (redis_cli(port, {"PING"}, cli_tls()).find("PONG") != std::string::npos) return;
      usleep(50000);
    }
    fail_msg("redis-server with TLS did not start: %s", slurp(dir.file("redis.log")).c_str());
  }
};

struct Agent {
  TempDir dir;
  Process proc;
  Address addr;
  std::string log = dir.file("agent.log");
  Agent(const std::string& server, const std::vector<std::string>& tls) {
    std::string sock = dir.file("agent.sock");
    std::vector<std::string> argv = {env_or_die("DC_AGENT"),
                                     "-listen",
                                     "UNIX:" + sock,
                                     "-server",
                                     server,
                                     "-retry",
                                     "100",
                                     "-timeout",
                                     "1000"};
    argv.insert(argv.end(), tls.begin(), tls.end());
    proc = Process::spawn(argv, {}, log);
    if (!wait_for_unix_socket(sock)) fail_msg("dc_client did not start: %s", slurp(log).c_str());
    addr = test::addr("UNIX:" + sock);
  }
  // A HAVE answered by Redis (not DISCONNECTED) within a few seconds.
  bool ready(RawConn& c) {
    for (int i = 0; i < 100; ++i) {
      int st = c.have("probe");
      if (st == int(proto::Status::ok) || st == int(proto::Status::notok)) return true;
      usleep(50000);
    }
    return false;
  }
};

size_t count(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

void test_standalone_over_tls(void**) {
  TlsRedis redis;
  Agent agent("REDIS:127.0.0.1:" + std::to_string(redis.port), pki().agent_flags("agent"));
  RawConn c;
  assert_true(c.connect(agent.addr));
  if (!agent.ready(c)) fail_msg("no TLS connection to Redis: %s", slurp(agent.log).c_str());
  assert_int_equal(c.add("tls-session", "data-over-tls", 60000), int(proto::AddStatus::ok));
  auto got = c.get("tls-session");
  assert_true(got && *got == "data-over-tls");
  assert_true(
      redis_cli(redis.port, {"GET", "dc:tls-session"}, cli_tls()).rfind("data-over-tls", 0) == 0);
  assert_int_equal(c.remove("tls-session"), int(proto::Status::ok));
  // Redis's TLS port refuses plaintext: the agent without -tls-* gets nowhere.
  Agent plain("REDIS:127.0.0.1:" + std::to_string(redis.port), {});
  RawConn p;
  assert_true(p.connect(plain.addr));
  usleep(300000);
  assert_int_equal(p.have("tls-session"), kDisc);
}

// The agent does not trust Redis's certificate (-tls-ca of another CA), or
// Redis does not trust the agent's: DISCONNECTED at once, one line saying
// what failed and what to check, however many reconnects.
void refused(const std::vector<std::string>& flags, const std::string& reason) {
  TlsRedis redis;
  Agent agent("REDIS:127.0.0.1:" + std::to_string(redis.port), flags);
  RawConn c;
  assert_true(c.connect(agent.addr));
  usleep(1000000);  // about ten reconnects at -retry 100
  for (int i = 0; i < 3; ++i) {
    int64_t t0 = now_ms();
    assert_int_equal(c.add("s" + std::to_string(i), "data-data", 60000), kDisc);
    assert_true(now_ms() - t0 < 1000);
  }
  std::string log = slurp(agent.log);
  if (count(log, "lost Redis") != 1 || count(log, "\n") != 1 ||
      log.find(reason) == std::string::npos ||
      log.find("check -tls-cert, -tls-key, -tls-ca and -tls-name") == std::string::npos)
    fail_msg("expected one line with '%s':\n%s", reason.c_str(), log.c_str());
  assert_true(agent.proc.running());
}

void test_wrong_ca(void**) {
  const Pki& p = pki();
  refused(
      {"-tls-cert", p.f("agent.pem"), "-tls-key", p.f("agent.key"), "-tls-ca", p.f("otherca.pem")},
      "certificate verify failed");
}

void test_certificate_redis_refuses(void**) {
  refused(pki().agent_flags("foreign"), "TLS");
}

void test_cluster_over_tls(void**) {
  RedisClusterFixture cluster;
  cluster.tls_conf = redis_tls_conf();
  cluster.cli_flags = cli_tls();
  cluster.start();
  ClusterAgent agent;
  agent.start(cluster.seeds(), pki().agent_flags("agent"));
  if (!agent.wait_slots_up()) fail_msg("no TLS cluster: %s", slurp(agent.log).c_str());
  RawConn c;
  assert_true(c.connect(agent.addr));
  for (int i = 0; i < 60; ++i)
    assert_int_equal(c.add("tls-" + std::to_string(i), "data-over-tls", 60000),
                     int(proto::AddStatus::ok));
  for (int i = 0; i < 60; ++i) {
    auto got = c.get("tls-" + std::to_string(i));
    assert_true(got && *got == "data-over-tls");
  }
  long total = 0;
  for (uint16_t m : cluster.masters()) {
    long k = cluster.dbsize(m);
    assert_true(k > 0);
    total += k;
  }
  assert_int_equal(total, 60);
  assert_int_equal(agent.stat("redis_cluster_moved"), 0);
}

}  // namespace

int main() {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_standalone_over_tls),
      cmocka_unit_test(test_wrong_ca),
      cmocka_unit_test(test_certificate_redis_refuses),
      cmocka_unit_test(test_cluster_over_tls),
  };
  return run_redis_tests(tests);
}
