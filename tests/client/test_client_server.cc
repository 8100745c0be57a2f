// Integration tests of libdistcache against the real dc_server ($DC_SERVER)
// on temporary UNIX sockets and loopback TCP ports: every operation and its
// answers, the too-small buffer and reget, has_session's three results, a
// fork with PIDCHECK (counted connections, and parent and child at once),
// RETRY across a server restart, and tools/dc_test ($DC_TEST) in both
// connection modes.
#include <distcache/dc_client.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "cmocka_cpp.h"
#include "harness.h"

using dc::test::Process;
using dc::test::stat_value;
using dc::test::TempDir;

namespace {

const unsigned char* u(const std::string& s) {
  return reinterpret_cast<const unsigned char*>(s.data());
}

// Deadline of operations that must succeed: generous, so that a loaded
// machine never turns them into timeouts.
constexpr unsigned kSlowOk = 10000;

// A dc_server on a UNIX socket (or a TCP port) in a temporary directory;
// with `stats`, it rewrites its counters to stats() every 50 ms.
struct Server {
  TempDir dir;
  std::string addr;
  bool with_stats;
  Process proc;

  explicit Server(bool tcp = false, bool stats = false) : with_stats(stats) {
    addr = tcp ? "IP:127.0.0.1:" + std::to_string(dc::test::free_tcp_port())
               : "UNIX:" + dir.file("server");
    start();
  }
  std::string stats() const { return dir.file("stats"); }
  void start() {
    std::vector<std::string> argv = {dc::test::env_or_die("DC_SERVER"), "-listen", addr};
    if (with_stats) argv.insert(argv.end(), {"-stats", stats(), "-stats-interval", "50"});
    proc = Process::spawn(argv, {}, dir.file("server.log"));
    if (!dc::test::wait_until_accepting(dc::test::addr(addr), 10000))
      fail_msg("dc_server did not start on %s", addr.c_str());
  }
  void stop() { proc.stop(); }
};

DC_CTX* new_ctx(const std::string& addr, unsigned flags) {
  DC_CTX* ctx = DC_CTX_new(addr.c_str(), flags);
  if (ctx == nullptr) fail_msg("DC_CTX_new(%s): %s", addr.c_str(), DC_last_new_error());
  DC_CTX_set_timeout(ctx, kSlowOk);
  return ctx;
}

bool add(DC_CTX* ctx, const std::string& id, const std::string& data,
         unsigned long timeout = 60000) {
  return DC_CTX_add_session(ctx, u(id), unsigned(id.size()), u(data), unsigned(data.size()),
                            timeout) != 0;
}
int have(DC_CTX* ctx, const std::string& id) {
  return DC_CTX_has_session(ctx, u(id), unsigned(id.size()));
}
bool remove_(DC_CTX* ctx, const std::string& id) {
  return DC_CTX_remove_session(ctx, u(id), unsigned(id.size())) != 0;
}
// The session's data on a hit; fails the test on anything else but a miss.
bool get(DC_CTX* ctx, const std::string& id, std::string& out) {
  std::vector<unsigned char> buf(32768);
  unsigned used = 0;
  if (!DC_CTX_get_session(ctx, u(id), unsigned(id.size()), buf.data(), unsigned(buf.size()),
                          &used)) {
    if (DC_CTX_last_error(ctx) != DC_ERR_NONE)
      fail_msg("GET failed: %s", DC_CTX_last_error_string(ctx));
    return false;
  }
  out.assign(reinterpret_cast<char*>(buf.data()), used);
  return true;
}

// Each operation, each answer, in each connection mode and on both transports.
void run_operations(const std::string& addr, unsigned flags) {
  DC_CTX* ctx = new_ctx(addr, flags);
  const std::string id = "ops-" + std::to_string(flags), data(1000, 'a');
  std::string got;
  assert_int_equal(have(ctx, id), 0);
  assert_int_equal(DC_CTX_last_error(ctx), DC_ERR_NONE);
  assert_false(get(ctx, id, got));
  assert_false(remove_(ctx, id));
  assert_int_equal(DC_CTX_last_error(ctx), DC_ERR_NONE);  // absent is an answer
  assert_true(add(ctx, id, data));
  assert_int_equal(have(ctx, id), 1);
  assert_true(get(ctx, id, got));
  assert_true(got == data);
  // ADD never overwrites: refused, and the first data stays.
  assert_false(add(ctx, id, std::string(500, 'b')));
  assert_int_equal(DC_CTX_last_error(ctx), DC_ERR_REFUSED);
  assert_non_null(std::strstr(DC_CTX_last_error_string(ctx), "MATCHING_SESSION"));
  assert_true(get(ctx, id, got));
  assert_true(got == data);
  assert_true(remove_(ctx, id));
  assert_int_equal(have(ctx, id), 0);
  assert_false(remove_(ctx, id));
  // Largest session: the whole 32768-byte message.
  std::string big(32768 - 8 - id.size(), 'z');
  big[0] = 'A';
  big.back() = 'Q';
  assert_true(add(ctx, id, big));
  assert_true(get(ctx, id, got));
  assert_true(got == big);
  assert_true(remove_(ctx, id));
  DC_CTX_free(ctx);
}

void test_operations_unix(void**) {
  Server s;
  for (unsigned f : {0u, unsigned(DC_CTX_FLAG_PERSISTENT),
                     unsigned(DC_CTX_FLAG_PERSISTENT | DC_CTX_FLAG_PERSISTENT_LATE |
                              DC_CTX_FLAG_PERSISTENT_PIDCHECK | DC_CTX_FLAG_PERSISTENT_RETRY)})
    run_operations(s.addr, f);
}

void test_operations_tcp(void**) {
  Server s(true);
  run_operations(s.addr, 0);
  run_operations(s.addr, DC_CTX_FLAG_PERSISTENT);
}

// Sessions expire after their timeout (500 ms, the smallest allowed).
void test_expiry(void**) {
  Server s;
  DC_CTX* ctx = new_ctx(s.addr, DC_CTX_FLAG_PERSISTENT);
  assert_true(add(ctx, "short-lived", std::string(100, 's'), DC_MIN_TIMEOUT));
  usleep(1500 * 1000);  // well past the timeout: only a lower bound matters
  assert_int_equal(have(ctx, "short-lived"), 0);
  DC_CTX_free(ctx);
}

void test_small_buffer_and_reget(void**) {
  Server s;
  DC_CTX* ctx = new_ctx(s.addr, 0);
  std::string id = "reget", data(3000, '\0');
  for (size_t i = 0; i < data.size(); ++i) data[i] = char(i * 7);
  assert_true(add(ctx, id, data));
  std::vector<unsigned char> buf(4000, 0xee);
  unsigned used = 0;
  assert_int_not_equal(DC_CTX_get_session(ctx, u(id), unsigned(id.size()), buf.data(), 100, &used),
                       0);
  assert_int_equal(used, data.size());
  assert_memory_equal(buf.data(), data.data(), 100);  // the prefix that fits
  assert_int_equal(buf[100], 0xee);
  // The server goes away: reget still answers, from the cached result.
  s.stop();
  used = 0;
  assert_int_not_equal(DC_CTX_reget_session(ctx, u(id), unsigned(id.size()), buf.data(),
                                            unsigned(buf.size()), &used),
                       0);
  assert_int_equal(used, data.size());
  assert_memory_equal(buf.data(), data.data(), data.size());
  std::string other = "other";
  assert_int_equal(DC_CTX_reget_session(ctx, u(other), 5, buf.data(), unsigned(buf.size()), &used),
                   0);
  DC_CTX_free(ctx);
}

// has_session: 1 present, 0 absent, -1 when the cache cannot be asked.
void test_has_tristate(void**) {
  Server s;
  DC_CTX* ctx = new_ctx(s.addr, 0);
  DC_CTX_set_backoff(ctx, 600000);  // surely still running at the next call
  assert_true(add(ctx, "here", std::string(64, 'h')));
  assert_int_equal(have(ctx, "here"), 1);
  assert_int_equal(have(ctx, "absent"), 0);
  s.stop();
  assert_int_equal(have(ctx, "here"), -1);
  assert_int_equal(DC_CTX_last_error(ctx), DC_ERR_CONNECT);
  assert_int_equal(have(ctx, "here"), -1);
  assert_int_equal(DC_CTX_last_error(ctx), DC_ERR_BACKOFF);
  // The cache comes back: after the back-off, it works again by itself.
  s.start();
  DC_CTX_set_backoff(ctx, 0);
  assert_int_equal(have(ctx, "here"), 0);  // a new, empty server
  assert_int_equal(DC_CTX_last_error(ctx), DC_ERR_NONE);
  DC_CTX_free(ctx);
}

// The -stats file at `path` once its `key` reaches `least` (or after 10 s):
// with the count of the test's last operation, every earlier one is in it.
std::string stats_when(const std::string& path, const std::string& key, long long least) {
  std::string line;
  for (int i = 0; i < 500; ++i) {
    std::ifstream f(path);
    std::stringstream ss;
    ss << f.rdbuf();
    line = ss.str();
    if (stat_value(line, key) >= least) break;
    usleep(20000);
  }
  return line;
}

// PIDCHECK: after fork the child works on its own connection, the parent
// keeps working, and both see the same cache. Parent and child take turns
// here, which works on one shared socket too: what shows that the child
// opened its own is the server counting two accepted connections.
void test_fork_pidcheck(void**) {
  Server s(false, true);
  // The connection that saw the server ready counts too.
  long long before = stat_value(stats_when(s.stats(), "accepted", 1), "accepted");
  assert_true(before >= 1);
  DC_CTX* ctx = new_ctx(s.addr, DC_CTX_FLAG_PERSISTENT | DC_CTX_FLAG_PERSISTENT_PIDCHECK);
  assert_true(add(ctx, "parent", std::string(100, 'p')));
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    std::string got;
    bool ok = get(ctx, "parent", got) && got == std::string(100, 'p') &&
              add(ctx, "child", std::string(100, 'c')) && have(ctx, "child") == 1;
    _exit(ok ? 0 : 1);
  }
  int st = 0;
  assert_int_equal(waitpid(pid, &st, 0), pid);
  assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  std::string got;
  assert_true(get(ctx, "child", got));
  assert_true(got == std::string(100, 'c'));
  assert_int_equal(have(ctx, "parent"), 1);
  std::string line = stats_when(s.stats(), "have", 2);
  if (stat_value(line, "have") != 2 || stat_value(line, "accepted") != before + 2)
    fail_msg(
        "expected 2 HAVEs and %lld accepted connections (%lld before, then the parent's "
        "and the child's): %s",
        before + 2, before, line.c_str());
  DC_CTX_free(ctx);
}

// True when GET `id` answers exactly `want` (no cmocka failure: a forked
// child must not run the test runner's failure path).
bool fetched(DC_CTX* ctx, const std::string& id, const std::string& want) {
  std::vector<unsigned char> buf(32768);
  unsigned used = 0;
  return DC_CTX_get_session(ctx, u(id), unsigned(id.size()), buf.data(), unsigned(buf.size()),
                            &used) != 0 &&
         std::string(reinterpret_cast<char*>(buf.data()), used) == want;
}

// PIDCHECK with parent and child at the same time: on one shared socket
// their requests and answers would interleave, and each would read answers
// meant for the other (both count uids from the same value, so the uids
// match and only the data tells). Each side checks every answer.
void test_fork_pidcheck_concurrent(void**) {
  Server s;
  DC_CTX* ctx = new_ctx(s.addr, DC_CTX_FLAG_PERSISTENT | DC_CTX_FLAG_PERSISTENT_PIDCHECK);
  const std::string pdata(300, 'p'), cdata(700, 'c');
  assert_true(add(ctx, "p", pdata));
  assert_true(add(ctx, "c", cdata));
  int go[2];
  assert_int_equal(pipe(go), 0);
  // Enough rounds that two processes on one socket mix up answers many
  // times over; a few tens of milliseconds when each has its own.
  constexpr int kRounds = 3000;
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    close(go[1]);
    char c;
    if (read(go[0], &c, 1) != 1) _exit(2);  // both start together
    for (int i = 0; i < kRounds; ++i)
      if (!fetched(ctx, "c", cdata)) _exit(1);
    _exit(0);
  }
  close(go[0]);
  assert_int_equal(write(go[1], "g", 1), 1);
  close(go[1]);
  int wrong = 0;
  for (int i = 0; i < kRounds; ++i)
    if (!fetched(ctx, "p", pdata)) ++wrong;
  int st = 0;
  assert_int_equal(waitpid(pid, &st, 0), pid);
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 0 || wrong != 0)
    fail_msg(
        "parent and child on one connection: the child exited %d, the parent had %d of "
        "%d answers wrong or failed",
        WIFEXITED(st) ? WEXITSTATUS(st) : -1, wrong, kRounds);
  DC_CTX_free(ctx);
}

// RETRY: the server restarts; the broken persistent connection is replaced
// within the operation. Without RETRY that operation fails and opens the
// breaker; the probe after the back-off works.
void test_retry_after_restart(void**) {
  signal(SIGPIPE, SIG_DFL);  // a send without MSG_NOSIGNAL would kill us
  Server s;
  DC_CTX* retry = new_ctx(s.addr, DC_CTX_FLAG_PERSISTENT | DC_CTX_FLAG_PERSISTENT_RETRY);
  DC_CTX* plain = new_ctx(s.addr, DC_CTX_FLAG_PERSISTENT);
  assert_true(add(retry, "r1", std::string(50, 'r')));
  assert_int_equal(have(plain, "r1"), 1);
  s.stop();
  s.start();
  assert_true(add(retry, "r2", std::string(50, 'r')));
  assert_int_equal(have(retry, "r2"), 1);
  assert_int_equal(have(plain, "r2"), -1);
  assert_int_equal(DC_CTX_last_error(plain), DC_ERR_IO);
  DC_CTX_set_backoff(plain, 600000);
  assert_int_equal(have(plain, "r2"), -1);
  assert_int_equal(DC_CTX_last_error(plain), DC_ERR_BACKOFF);
  DC_CTX_set_backoff(plain, 0);
  assert_int_equal(have(plain, "r2"), 1);
  DC_CTX_free(retry);
  DC_CTX_free(plain);
}

// tools/dc_test against the server, in both connection modes.
void run_dc_test(bool persistent) {
  Server s;
  std::vector<std::string> argv = {dc::test::env_or_die("DC_TEST"),
                                   "-connect",
                                   s.addr,
                                   "-sessions",
                                   "20",
                                   "-ops",
                                   "3000",
                                   "-datamin",
                                   "5",
                                   "-datamax",
                                   "5000",
                                   "-deadline",
                                   "10000",
                                   "-progress",
                                   "1000"};
  if (persistent) argv.push_back("-persistent");
  std::string out;
  int rc = dc::test::run(argv, out, 120000);
  if (rc != 0 || out.find("all answers as expected") == std::string::npos ||
      out.find("ops/sec") == std::string::npos || out.find("p99") == std::string::npos)
    fail_msg("dc_test exited %d:\n%s", rc, out.c_str());
}
void test_dc_test_per_operation(void**) {
  run_dc_test(false);
}
void test_dc_test_persistent(void**) {
  run_dc_test(true);
}

// dc_test itself: bad flags exit 2 with a line and the usage; no cache, 1.
void test_dc_test_errors(void**) {
  std::string out;
  std::string exe = dc::test::env_or_die("DC_TEST");
  assert_int_equal(dc::test::run({exe, "-bogus"}, out), 2);
  assert_non_null(std::strstr(out.c_str(), "unknown flag -bogus"));
  assert_non_null(std::strstr(out.c_str(), "usage:"));
  assert_int_equal(dc::test::run({exe, "-sessions", "x"}, out), 2);
  assert_non_null(std::strstr(out.c_str(), "-sessions"));
  assert_int_equal(dc::test::run({exe, "-datamin", "100", "-datamax", "50"}, out), 2);
  assert_int_equal(dc::test::run({exe, "-ops"}, out), 2);
  assert_int_equal(dc::test::run({exe, "-h"}, out), 0);
  TempDir dir;
  assert_int_equal(dc::test::run({exe, "-connect", "UNIX:" + dir.file("none"), "-ops", "10"}, out),
                   1);
  assert_non_null(std::strstr(out.c_str(), "FAILED"));
}

}  // namespace

int main() {
  const CMUnitTest tests[] = {
      cmocka_unit_test(test_operations_unix),
      cmocka_unit_test(test_operations_tcp),
      cmocka_unit_test(test_expiry),
      cmocka_unit_test(test_small_buffer_and_reget),
      cmocka_unit_test(test_has_tristate),
      cmocka_unit_test(test_fork_pidcheck),
      cmocka_unit_test(test_fork_pidcheck_concurrent),
      cmocka_unit_test(test_retry_after_restart),
      cmocka_unit_test(test_dc_test_per_operation),
      cmocka_unit_test(test_dc_test_persistent),
      cmocka_unit_test(test_dc_test_errors),
  };
  return cmocka_run_group_tests(tests, nullptr, nullptr);
}
