// dc_client with -server REDIS:host:port against a real redis-server
// (Debian's, started here on a free loopback port, no persistence): the
// four operations and their mapping (SET ... PX NX, GET, DEL, EXISTS), the
// key prefix, seen from Redis itself with redis-cli; an ACL user and its
// password from -redis-auth; a wrong password and a user without the
// permission for SET each give DISCONNECTED answers and one log line; so
// do a Redis without a command the agent uses and a Redis that answers an
// error to everything (20,000 of them: prompt answers, one line, no growth);
// Redis restarted: caching comes back by itself. Skips (exit 77) when
// redis-server is not installed.
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "harness.h"
#include "proto.h"

// Last: cmocka defines macros that clash with the standard headers.
#include "cmocka_cpp.h"

using namespace dc;
using namespace dc::test;

namespace {

const char* kRedis = "/usr/bin/redis-server";
const char* kRedisCli = "/usr/bin/redis-cli";
const uint8_t kDisconnected = uint8_t(proto::Status::disconnected);

std::string read_file(const std::string& path) {
  std::ifstream f(path);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

// A redis-server with an ACL user "dc" (password "s3cret", only the four
// commands on keys dc:*) and a user "ro" that may only GET.
struct Redis {
  TempDir dir;
  uint16_t port = free_tcp_port();
  Process proc;
  std::string extra;  // more redis.conf lines, after the users
  void start() {
    std::string conf = dir.file("redis.conf");
    std::ofstream(conf) << "port " << port << "\nbind 127.0.0.1\nsave \"\"\nappendonly no\n"
                        << "dir " << dir.path() << "\n"
                        << "user default on nopass ~* &* +@all\n"
                        << "user dc on >s3cret ~dc:* -@all +get +set +del +exists +getdel\n"
                        << "user ro on >r0 ~* -@all +get\n"
                        << extra;
    proc = Process::spawn({kRedis, conf}, {}, dir.file("redis.log"));
    if (!wait_for_tcp(port))
      fail_msg("redis-server did not start: %s", read_file(dir.file("redis.log")).c_str());
  }
  // What redis-cli prints for `args` (as the default user).
  std::string cli(const std::vector<std::string>& args) {
    std::vector<std::string> argv = {kRedisCli, "-p", std::to_string(port)};
    argv.insert(argv.end(), args.begin(), args.end());
    std::string out = dir.file("cli.out");
    unlink(out.c_str());
    Process p = Process::spawn(argv, {}, out);
    p.wait(5000);
    return read_file(out);
  }
};

struct Agent {
  TempDir dir;
  Process proc;
  Address addr;
  std::string log;
  void start(uint16_t redis_port, const std::vector<std::string>& extra) {
    std::string sock = dir.file("agent.sock");
    log = dir.file("agent.log");
    std::vector<std::string> argv = {env_or_die("DC_AGENT"),
                                     "-listen",
                                     "UNIX:" + sock,
                                     "-server",
                                     "REDIS:127.0.0.1:" + std::to_string(redis_port),
                                     "-retry",
                                     "100",
                                     "-timeout",
                                     "2000"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    proc = Process::spawn(argv, {}, log);
    if (!wait_for_unix_socket(sock))
      fail_msg("dc_client did not start: %s", read_file(log).c_str());
    addr = test::addr("UNIX:" + sock);
  }
  // A GET answered by Redis (not DISCONNECTED) within a few seconds.
  bool ready(RawConn& c) {
    for (int i = 0; i < 100; ++i) {
      auto r = c.call(proto::Op::have, proto::Bytes(reinterpret_cast<const uint8_t*>("x"), 1));
      if (r && r->size() == 1 && (*r)[0] != kDisconnected) return true;
      usleep(50000);
    }
    return false;
  }
};

std::string auth_file(const TempDir& d, const std::string& text) {
  std::string path = d.file("auth");
  std::ofstream(path) << text << "\n";
  chmod(path.c_str(), 0600);
  return path;
}

void test_operations_and_mapping(void**) {
  Redis redis;
  redis.start();
  Agent agent;
  agent.start(redis.port, {"-redis-auth", auth_file(agent.dir, "dc s3cret")});
  RawConn c;
  assert_true(c.connect(agent.addr));
  assert_true(agent.ready(c));
  std::string data(300, 'x');
  data[0] = '\0';  // binary safe
  assert_int_equal(c.add("session-1", data, 60000), int(proto::AddStatus::ok));
  // SET ... NX: a second ADD of the id is MATCHING_SESSION, the first stays.
  assert_int_equal(c.add("session-1", "other", 60000), int(proto::AddStatus::matching_session));
  auto got = c.get("session-1");
  assert_true(got && *got == data);
  assert_int_equal(c.have("session-1"), int(proto::Status::ok));
  assert_int_equal(c.have("nothing"), int(proto::Status::notok));
  auto miss = c.get("nothing");
  assert_true(miss && miss->empty());
  // A value no session could be (shorter than 5 bytes: a client would read
  // it as a status byte, e.g. "2" as DISCONNECTED) is a miss.
  redis.cli({"SET", "dc:foreign", "2"});
  auto foreign = c.get("foreign");
  assert_true(foreign && foreign->empty());
  // In Redis: key dc:session-1 with the session's lifetime in ms.
  std::string ttl = redis.cli({"PTTL", "dc:session-1"});
  long ms = std::atol(ttl.c_str());
  if (ms <= 50000 || ms > 60000) fail_msg("PTTL dc:session-1 is '%s'", ttl.c_str());
  // An ADD dc_server would refuse gets dc_server's answer, in its turn.
  // (data shorter than 5 bytes: DATA_RANGE, and nothing stored)
  assert_int_equal(c.add("tiny", "data", 60000), int(proto::AddStatus::data_range));
  assert_true(redis.cli({"EXISTS", "dc:tiny"}).rfind("0", 0) == 0);
  // A lifetime of 0 ms: OK and expired at once, as dc_server answers it
  // (Redis itself refuses PX 0).
  assert_int_equal(c.add("zero", "data-data", 0), int(proto::AddStatus::ok));
  usleep(20000);
  auto zero = c.get("zero");
  assert_true(zero && zero->empty());
  assert_int_equal(c.remove("session-1"), int(proto::Status::ok));
  assert_int_equal(c.remove("session-1"), int(proto::Status::notok));
  assert_true(redis.cli({"EXISTS", "dc:session-1"}).rfind("0", 0) == 0);
}

void test_prefix_and_db(void**) {
  Redis redis;
  redis.start();
  Agent agent;
  agent.start(redis.port, {"-redis-prefix", "tls/", "-redis-db", "3"});
  RawConn c;
  assert_true(c.connect(agent.addr));
  assert_true(agent.ready(c));
  assert_int_equal(c.add("abc", "data-data", 60000), int(proto::AddStatus::ok));
  assert_true(redis.cli({"-n", "3", "GET", "tls/abc"}).rfind("data-data", 0) == 0);
  assert_true(redis.cli({"-n", "0", "EXISTS", "tls/abc"}).rfind("0", 0) == 0);
}

// How many times `what` occurs in `text`.
size_t count(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

// A wrong password: nothing works, every request is DISCONNECTED at once,
// one line says so; a user who may only GET: an ADD is refused by Redis and
// answered DISCONNECTED, one line, and GETs still work.
void test_refusals(void**) {
  Redis redis;
  redis.start();
  Agent wrong;
  wrong.start(redis.port, {"-redis-auth", auth_file(wrong.dir, "dc not-the-password")});
  RawConn c;
  assert_true(c.connect(wrong.addr));
  usleep(500000);
  for (int i = 0; i < 5; ++i) {
    int64_t t0 = now_ms();
    assert_int_equal(c.add("s" + std::to_string(i), "data-data", 60000), int(kDisconnected));
    assert_true(now_ms() - t0 < 1000);
  }
  std::string log = read_file(wrong.log);
  if (log.find("refused the connection's start") == std::string::npos)
    fail_msg("no line about the refused AUTH:\n%s", log.c_str());
  assert_true(wrong.proc.running());

  Agent ro;
  ro.start(redis.port, {"-redis-auth", auth_file(ro.dir, "ro r0")});
  RawConn d;
  assert_true(d.connect(ro.addr));
  redis.cli({"SET", "dc:there", "yes-it-is"});
  std::optional<std::string> got;
  for (int i = 0; i < 100 && !(got && *got == "yes-it-is"); ++i) {
    got = d.get("there");
    if (!(got && *got == "yes-it-is")) usleep(50000);
  }
  assert_true(got && *got == "yes-it-is");
  for (int i = 0; i < 3; ++i)
    assert_int_equal(d.add("new", "data-data", 60000), int(kDisconnected));
  log = read_file(ro.log);
  size_t n = count(log, "refused");
  if (n != 1) fail_msg("expected one line about refused commands, got %zu:\n%s", n, log.c_str());
  assert_true(ro.proc.running());
}

// Redis restarted: the agent reconnects by itself and caching works again.
void test_restart(void**) {
  Redis redis;
  redis.start();
  Agent agent;
  agent.start(redis.port, {});
  RawConn c;
  assert_true(c.connect(agent.addr));
  assert_true(agent.ready(c));
  assert_int_equal(c.add("before", "data-1", 60000), int(proto::AddStatus::ok));
  redis.proc.stop();
  assert_int_equal(c.add("during", "data-2", 60000), int(kDisconnected));
  redis.start();
  assert_true(agent.ready(c));
  assert_int_equal(c.add("after", "data-3", 60000), int(proto::AddStatus::ok));
  auto got = c.get("after");
  assert_true(got && *got == "data-3");
}

// A Redis without a command the agent uses (SET renamed away, as an older or
// locked-down Redis answers "unknown command"): ADD is DISCONNECTED with one
// log line naming the command and what to check; GET, REMOVE and HAVE keep
// working.
void test_unknown_command(void**) {
  Redis redis;
  redis.extra = "rename-command SET \"\"\n";
  redis.start();
  Agent agent;
  agent.start(redis.port, {});
  RawConn c;
  assert_true(c.connect(agent.addr));
  assert_true(agent.ready(c));
  for (int i = 0; i < 10; ++i)
    assert_int_equal(c.add("s" + std::to_string(i), "data-data", 60000), int(kDisconnected));
  redis.cli({"SETEX", "dc:there", "60", "yes-it-is"});
  auto got = c.get("there");
  assert_true(got && *got == "yes-it-is");
  assert_int_equal(c.have("there"), int(proto::Status::ok));
  assert_int_equal(c.remove("there"), int(proto::Status::ok));
  std::string log = read_file(agent.log);
  if (count(log, "refused ADD") != 1 || log.find("unknown command") == std::string::npos ||
      log.find("check") == std::string::npos)
    fail_msg("expected one line about the unknown command:\n%s", log.c_str());
  assert_true(agent.proc.running());
}

// A Redis that answers an error to everything (the agent's user may run no
// command): every request is answered DISCONNECTED, promptly; one log line
// for the first 20,000 refusals; the agent's memory does not grow with them.
void test_error_to_everything(void**) {
  Redis redis;
  redis.extra = "user none on >n0ne ~* -@all\n";
  redis.start();
  Agent agent;
  agent.start(redis.port, {"-redis-auth", auth_file(agent.dir, "none n0ne")});
  RawConn c;
  assert_true(c.connect(agent.addr));
  auto burst = [&](int n) {
    for (int i = 0; i < n; ++i) {
      std::string id = "id-" + std::to_string(i % 64);
      uint8_t st = i % 2 ? uint8_t(c.add(id, "data-data", 60000)) : 0;
      if (i % 2 == 0) {
        auto r = c.call(proto::Op::get, proto::Bytes(reinterpret_cast<const uint8_t*>(id.data()),
                                                     id.size()));
        assert_true(r && r->size() == 1);
        st = (*r)[0];
      }
      assert_int_equal(st, kDisconnected);
    }
  };
  int64_t t0 = now_ms();
  burst(2000);
  long rss_warm = rss_kb(agent.proc.pid());
  burst(18000);
  long rss_after = rss_kb(agent.proc.pid());
  int64_t ms = now_ms() - t0;
  // Each answer comes from Redis's error, not the deadline (2000 ms).
  if (ms > 20000) fail_msg("20,000 refused requests took %lld ms", (long long)ms);
  assert_true(rss_warm > 0 && rss_after > 0);
#if defined(__SANITIZE_ADDRESS__)
  // ASan holds freed memory in quarantine, so RSS grows with any traffic;
  // there, LeakSanitizer checks the agent for leaks when it exits instead.
  std::printf("(ASan: RSS %ld -> %ld KiB, not compared)\n", rss_warm, rss_after);
#else
  if (rss_after > rss_warm + 1024)
    fail_msg("the agent grew from %ld to %ld KiB over 18,000 refused requests", rss_warm,
             rss_after);
#endif
  std::string log = read_file(agent.log);
  if (count(log, " refused ") != 1 || log.find("NOPERM") == std::string::npos)
    fail_msg("expected one line about the refusals:\n%s", log.c_str());
  assert_true(agent.proc.running());
}

void test_bad_flags(void**) {
  std::string agent = env_or_die("DC_AGENT");
  TempDir d;
  std::string loose = d.file("loose");
  std::ofstream(loose) << "pw\n";
  chmod(loose.c_str(), 0644);
  struct Case {
    std::vector<std::string> args;
    const char* says;
  };
  const Case cases[] = {
      {{"-server", "REDIS:nohostport"}, "REDIS:host:port"},
      {{"-server", "REDIS:127.0.0.1:6379", "-server", "IP:127.0.0.1:9001"}, "alone"},
      {{"-server", "REDIS:127.0.0.1:6379", "-redis-auth", loose}, "chmod 600"},
      {{"-server", "REDIS:127.0.0.1:6379", "-redis-db", "x"}, "database"},
      {{"-server", "REDIS:localhost:6379"}, "not an IP address"},
  };
  for (const Case& k : cases) {
    std::vector<std::string> argv = {agent, "-listen", "UNIX:" + d.file("a.sock")};
    argv.insert(argv.end(), k.args.begin(), k.args.end());
    std::string log = d.file("bad.log");
    unlink(log.c_str());
    Process p = Process::spawn(argv, {}, log);
    auto st = p.wait(5000);
    assert_true(st && exit_code(*st) != 0);
    std::string out = read_file(log);
    if (out.find(k.says) == std::string::npos)
      fail_msg("%s: expected '%s' in: %s", k.args.back().c_str(), k.says, out.c_str());
  }
}

}  // namespace

int main() {
  if (access(kRedis, X_OK) != 0 || access(kRedisCli, X_OK) != 0) {
    std::printf("SKIP: redis-server or redis-cli is not installed\n");
    return 77;
  }
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_operations_and_mapping),
      cmocka_unit_test(test_prefix_and_db),
      cmocka_unit_test(test_refusals),
      cmocka_unit_test(test_restart),
      cmocka_unit_test(test_unknown_command),
      cmocka_unit_test(test_error_to_everything),
      cmocka_unit_test(test_bad_flags),
  };
  return cmocka_run_group_tests(tests, nullptr, nullptr);
}
