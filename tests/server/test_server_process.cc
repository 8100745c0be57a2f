// Integration tests of dc_server as a process: bad flags (one clear line,
// the usage, exit 2), clean exit on SIGTERM/SIGINT removing the socket
// file, -killable, a stale socket file replaced and a live one refused,
// -daemon with -pidfile, -sockperms, -user, and the statistics (-stats
// file, SIGHUP, -progress lines), and -metrics (counts, promtool, and what
// a hostile HTTP client cannot do to it).
#include <grp.h>
#include <pwd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>

#include <algorithm>
#include <cstring>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "server_fixture.h"

using namespace dc;
using namespace dc::test;

namespace {

std::string bin() {
  return env_or_die("DC_SERVER");
}

void expect_bad(const std::vector<std::string>& args, const std::string& names) {
  std::vector<std::string> argv = {bin()};
  argv.insert(argv.end(), args.begin(), args.end());
  expect_usage_error("dc_server", argv, names);
}

void test_bad_flags_exit_2(void**) {
  expect_bad({"-listen", "UNIX:/tmp/x", "-frobnicate"}, "unknown flag \"-frobnicate\"");
  expect_bad({}, "-listen");  // no address at all
  expect_bad({"-listen", "TCP:1234"}, "-listen");
  expect_bad({"-listen", "IP:99999"}, "-listen");
  expect_bad({"-listen", "UNIX:/tmp/x", "-sessions", "lots"}, "-sessions: \"lots\"");
  expect_bad({"-listen", "UNIX:/tmp/x", "-sessions", "0"}, "-sessions");
  expect_bad({"-listen", "UNIX:/tmp/x", "-memory", "12X"}, "-memory: \"12X\"");
  expect_bad({"-listen", "UNIX:/tmp/x", "-memory", "1K"}, "-memory");  // under 64K
  expect_bad({"-listen", "UNIX:/tmp/x", "-progress", "-5"}, "-progress");
  expect_bad({"-listen", "UNIX:/tmp/x", "-sockperms", "0999"}, "-sockperms");
  expect_bad({"-listen", "UNIX:/tmp/x", "-user", "no-such-user-here"}, "-user");
  expect_bad({"-listen", "UNIX:/tmp/x", "-sockgroup", "no-such-group-here"}, "-sockgroup");
  expect_bad({"-listen", "UNIX:/tmp/x", "-pidfile"}, "-pidfile: missing value");
  expect_bad({"-listen", "UNIX:/tmp/x", "-stats-format", "json"}, "-stats-format: \"json\"");
  expect_bad({"-listen", "UNIX:/tmp/x", "-metrics", "UNIX:/tmp/m"}, "-metrics");
  expect_bad({"-listen", "UNIX:/tmp/x", "-metrics", "IP:99999"}, "-metrics");
  // Help is not an error.
  for (const char* h : {"-h", "-help", "-?", "--help"}) {
    std::string out;
    assert_int_equal(run({bin(), h}, out, 10000), 0);
    assert_non_null(strstr(out.c_str(), "-memory SIZE"));
    assert_non_null(strstr(out.c_str(), "default 1000000"));
  }
}

void test_sigterm_and_sigint_clean_exit(void**) {
  for (int sig : {SIGTERM, SIGINT}) {
    ServerProc s;
    RawConn c = s.client();  // an open connection does not hold it up
    assert_int_equal(c.add("x", "12345", 60000), 0);
    assert_true(s.proc().signal(sig));
    auto st = s.proc().wait(10000);
    assert_true(st.has_value());
    assert_int_equal(exit_code(*st), 0);
    assert_false(path_exists(s.sock()));
  }
}

void test_killable(void**) {
  {
    ServerProc s({"-killable"});
    assert_true(s.proc().signal(SIGUSR1));
    auto st = s.proc().wait(10000);
    assert_true(st.has_value());
    assert_int_equal(exit_code(*st), 0);
    assert_false(path_exists(s.sock()));
  }
  {
    ServerProc s({"-killable"});
    assert_true(s.proc().signal(SIGUSR2));
    auto st = s.proc().wait(10000);
    assert_true(st.has_value());
    assert_int_equal(exit_code(*st), 0);
  }
}

void test_stale_socket_replaced_live_refused(void**) {
  TempDir d;
  std::string path = d.file("s");
  {  // a socket file whose process is gone
    UniqueFd fd(socket(AF_UNIX, SOCK_STREAM, 0));
    sockaddr_un un{};
    un.sun_family = AF_UNIX;
    std::strcpy(un.sun_path, path.c_str());
    assert_int_equal(bind(fd.get(), reinterpret_cast<sockaddr*>(&un), sizeof un), 0);
  }
  assert_true(path_exists(path));
  Process p = Process::spawn({bin(), "-listen", "UNIX:" + path}, {}, d.file("log1"));
  assert_true(wait_for_unix_socket(path, 10000));
  RawConn c;
  assert_true(c.connect(addr("UNIX:" + path)));
  assert_int_equal(c.add("first", "server-one", 60000), 0);

  // A second server on the same live socket is refused, and the first one
  // keeps its socket and its sessions.
  std::string out;
  int rc = run({bin(), "-listen", "UNIX:" + path}, out, 10000);
  assert_int_equal(rc, 1);
  assert_non_null(strstr(out.c_str(), "address in use"));
  assert_true(path_exists(path));
  RawConn c2;
  assert_true(c2.connect(addr("UNIX:" + path)));
  assert_string_equal(c2.get("first")->c_str(), "server-one");
  assert_int_equal(exit_code(p.stop()), 0);
  assert_false(path_exists(path));
}

void test_daemon_and_pidfile(void**) {
  TempDir d;
  std::string sock = d.file("s"), pidfile = d.file("pid");
  std::string out;
  // -daemon returns at once in the foreground process, exit 0.
  int rc = run({bin(), "-listen", "UNIX:" + sock, "-daemon", "-pidfile", pidfile}, out, 10000);
  assert_int_equal(rc, 0);
  // The socket accepts as soon as it is open, before the detached process
  // writes its pid: wait for the file.
  std::string text;
  for (int i = 0; i < 1000 && text.empty(); ++i) {
    text = read_file(pidfile);
    if (text.empty()) usleep(10000);
  }
  assert_true(wait_for_unix_socket(sock, 10000));
  pid_t pid = pid_t(std::atol(text.c_str()));
  assert_true(pid > 1);
  live_servers().push_back(pid);      // killed at exit should a check below fail
  assert_int_equal(kill(pid, 0), 0);  // the daemon runs under that pid
  RawConn c;
  assert_true(c.connect(addr("UNIX:" + sock)));
  assert_int_equal(c.add("d", "daemonized", 60000), 0);
  assert_string_equal(c.get("d")->c_str(), "daemonized");
  c.close();
  assert_int_equal(kill(pid, SIGTERM), 0);
  assert_true(wait_gone(pidfile));
  assert_true(wait_gone(sock));
  for (int i = 0; i < 1000 && kill(pid, 0) == 0; ++i) usleep(10000);
  assert_int_equal(kill(pid, 0), -1);
}

void test_sockperms(void**) {
  {
    ServerProc s({"-sockperms", "0600"});
    RawConn c = s.client();  // serving: the mode was set before listen()
    struct stat st;
    assert_int_equal(stat(s.sock().c_str(), &st), 0);
    assert_int_equal(st.st_mode & 07777, 0600);
  }
}

// Changing owners and dropping privileges need root: a case (and a meson
// test) of its own, so that without root it shows as skipped.
void test_sockowner_and_user(void**) {
  if (geteuid() != 0) DC_SKIP("-sockowner, -sockgroup and -user need root");
  // -sockowner / -sockgroup: the socket file belongs to them, as created.
  {
    struct passwd* pw = getpwnam("nobody");
    struct group* gr = getgrnam("nogroup");
    assert_non_null(pw);
    assert_non_null(gr);
    uid_t want_uid = pw->pw_uid;
    gid_t want_gid = gr->gr_gid;
    ServerProc s({"-sockowner", "nobody", "-sockgroup", "nogroup", "-sockperms", "0660"});
    // Serving: the ownership was applied before listen().
    RawConn c = s.client();
    assert_int_equal(c.add("owned", "by-nobody", 60000), 0);
    struct stat st;
    assert_int_equal(stat(s.sock().c_str(), &st), 0);
    assert_int_equal(st.st_uid, want_uid);
    assert_int_equal(st.st_gid, want_gid);
    assert_int_equal(st.st_mode & 07777, 0660);
  }
  // -user: the listener is opened as root, then the process runs as nobody.
  TempDir d;
  uint16_t port = free_tcp_port();
  Process p =
      Process::spawn({bin(), "-listen", "IP:127.0.0.1:" + std::to_string(port), "-user", "nobody"},
                     {}, d.file("log"));
  assert_true(wait_for_tcp(port, 10000));
  std::string status = read_file("/proc/" + std::to_string(p.pid()) + "/status");
  size_t at = status.find("Uid:");
  assert_true(at != std::string::npos);
  unsigned uid = unsigned(std::atoi(status.c_str() + at + 4));
  assert_int_equal(uid, 65534);
  RawConn c;
  assert_true(c.connect(addr("IP:127.0.0.1:" + std::to_string(port))));
  assert_int_equal(c.add("u", "as-nobody", 60000), 0);
  assert_int_equal(exit_code(p.stop()), 0);
}

void test_statistics(void**) {
  TempDir d;
  std::string stats = d.file("stats");
  ServerProc s({"-stats", stats, "-stats-interval", "50", "-progress", "5", "-sessions", "2"});
  RawConn c = s.client();
  assert_int_equal(c.add("s1", "11111", 60000), 0);
  assert_int_equal(c.add("s2", "22222", 120000), 0);
  assert_int_equal(c.add("s1", "11111", 60000), 101);  // matching
  assert_int_equal(c.add("s3", "333", 60000), 104);    // data range
  assert_int_equal(c.add("s3", "33333", 600000), 0);   // evicts s1
  assert_string_equal(c.get("s2")->c_str(), "22222");  // hit
  assert_string_equal(c.get("s1")->c_str(), "");       // miss
  assert_int_equal(c.have("s3"), 0);
  assert_int_equal(c.remove("s3"), 0);
  assert_int_equal(c.remove("s3"), 1);
  RawConn bad = s.client();
  std::vector<uint8_t> junk(20, 0xee);
  assert_true(bad.send_raw(junk));
  assert_true(bad.wait_closed(5000));

  // The -stats file catches up within a few intervals.
  std::string line;
  for (int i = 0; i < 500; ++i) {
    line = read_file(stats);
    if (stat_value(line, "protocol_errors") == 1 && stat_value(line, "remove") == 2) break;
    usleep(20000);
  }
  fprintf(stderr, "stats: %s", line.c_str());
  assert_int_equal(stat_value(line, "add"), 5);
  assert_int_equal(stat_value(line, "get"), 2);
  assert_int_equal(stat_value(line, "have"), 1);
  assert_int_equal(stat_value(line, "remove"), 2);
  assert_int_equal(stat_value(line, "hits"), 1);
  assert_int_equal(stat_value(line, "misses"), 1);
  assert_int_equal(stat_value(line, "add_ok"), 3);
  assert_int_equal(stat_value(line, "add_matching_session"), 1);
  assert_int_equal(stat_value(line, "add_data_range"), 1);
  assert_int_equal(stat_value(line, "remove_hits"), 1);
  assert_int_equal(stat_value(line, "remove_misses"), 1);
  assert_int_equal(stat_value(line, "evictions"), 1);
  assert_int_equal(stat_value(line, "sessions"), 1);
  assert_int_equal(stat_value(line, "bytes"), 2 + 5 + 80);
  assert_int_equal(stat_value(line, "protocol_errors"), 1);
  assert_int_equal(stat_value(line, "conns"), 1);

  // -progress 5: a line every 5 operations (10 so far).
  std::string log = s.log();
  size_t lines = 0;
  for (size_t at = 0; (at = log.find("dc_server: uptime_ms=", at)) != std::string::npos; ++at)
    ++lines;
  assert_int_equal(lines, 2);
  // SIGHUP prints one more, on demand.
  assert_true(s.proc().signal(SIGHUP));
  for (int i = 0; i < 500 && lines < 3; ++i) {
    usleep(20000);
    log = s.log();
    lines = 0;
    for (size_t at = 0; (at = log.find("dc_server: uptime_ms=", at)) != std::string::npos; ++at)
      ++lines;
  }
  assert_int_equal(lines, 3);
  assert_true(s.proc().running());
}

// -metrics and -stats-format prom: a known load moves the counters by
// exactly what it did, under the same names as the statistics line, and
// both the endpoint and the file pass promtool.
void test_metrics_counts(void**) {
  TempDir d;
  std::string prom = d.file("dc_server.prom");
  uint16_t port = free_tcp_port();
  ServerProc s({"-metrics", "IP:127.0.0.1:" + std::to_string(port), "-stats", prom, "-stats-format",
                "prom", "-stats-interval", "50"});
  RawConn c = s.client();
  // 10 ADDs, then 20 GETs of which 15 hit.
  for (int k = 0; k < 10; ++k)
    assert_int_equal(c.add("m" + std::to_string(k), "data-" + std::to_string(k), 60000), 0);
  for (int k = 0; k < 20; ++k) {
    bool hit = k < 15;
    std::string id = hit ? "m" + std::to_string(k % 10) : "absent" + std::to_string(k);
    std::optional<std::string> got = c.get(id);
    assert_true(got.has_value());
    assert_string_equal(got->c_str(), hit ? ("data-" + std::to_string(k % 10)).c_str() : "");
  }
  std::string text = scrape(port);
  fprintf(stderr, "%s", text.c_str());
  assert_true(promtool_ok(text));
  const std::string p = "distcache_server_";
  assert_true(metric_value(text, p + R"(requests_total{op="add"})") == 10);
  assert_true(metric_value(text, p + R"(requests_total{op="get"})") == 20);
  assert_true(metric_value(text, p + R"(requests_total{op="remove"})") == 0);
  assert_true(metric_value(text, p + R"(responses_total{op="get",result="hit"})") == 15);
  assert_true(metric_value(text, p + R"(responses_total{op="get",result="miss"})") == 5);
  assert_true(metric_value(text, p + R"(responses_total{op="add",result="ok"})") == 10);
  assert_true(metric_value(text, p + "sessions") == 10);
  assert_true(metric_value(text, p + "connections") == 1);
  assert_true(metric_value(text, p + "evictions_total") == 0);
  assert_true(metric_value(text, p + "protocol_errors_total") == 0);

  // The same numbers under the table's keys in the statistics line.
  assert_true(s.proc().signal(SIGHUP));
  std::string line;
  for (int i = 0; i < 500 && line.empty(); ++i) {
    std::string log = s.log();
    size_t at = log.rfind("dc_server: uptime_ms=");
    if (at != std::string::npos) line = log.substr(at, log.find('\n', at) - at);
    if (line.empty()) usleep(10000);
  }
  assert_int_equal(stat_value(line, "add"), 10);
  assert_int_equal(stat_value(line, "get"), 20);
  assert_int_equal(stat_value(line, "hits"), 15);
  assert_int_equal(stat_value(line, "misses"), 5);
  assert_int_equal(stat_value(line, "add_ok"), 10);
  assert_int_equal(stat_value(line, "sessions"), 10);

  // The -stats file in Prometheus text, for node_exporter's textfile collector.
  std::string file;
  for (int i = 0; i < 500; ++i) {
    file = read_file(prom);
    if (metric_value(file, p + R"(requests_total{op="get"})") == 20) break;
    usleep(20000);
  }
  assert_true(metric_value(file, p + R"(responses_total{op="get",result="hit"})") == 15);
  assert_true(promtool_ok(file));
  assert_false(path_exists(prom + ".tmp"));  // renamed into place, nothing left behind
}

// What the metrics port must survive: other paths and methods (404), a
// request that is not HTTP, one of 64 KB of headers, one trickled for
// longer than a second, more connections than it serves at once; meanwhile
// a cache client keeps getting its answers and the daemon stays up.
void test_metrics_hostile(void**) {
  uint16_t port = free_tcp_port();
  ServerProc s({"-metrics", "IP:127.0.0.1:" + std::to_string(port)});
  RawConn c = s.client();
  assert_int_equal(c.add("h", "hostile-data", 600000), 0);
  auto still_serving = [&] {
    std::optional<std::string> got = c.get("h");
    assert_true(got.has_value());
    assert_string_equal(got->c_str(), "hostile-data");
    assert_true(s.proc().running());
  };
  auto starts = [](const HttpResult& r, const char* status) {
    if (!r.closed || r.response.rfind(status, 0) != 0)
      fail_msg("expected \"%s\" and a close, got (%s):\n%s", status, r.closed ? "closed" : "open",
               r.response.c_str());
  };
  starts(http_exchange(port, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"), "HTTP/1.1 404 ");
  starts(http_exchange(port, "GET /metricsx HTTP/1.1\r\n\r\n"), "HTTP/1.1 404 ");
  starts(http_exchange(port, "POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n"),
         "HTTP/1.1 404 ");
  starts(http_exchange(port, "GET /metrics?x=1 HTTP/1.0\r\n\r\n"), "HTTP/1.1 200 ");
  starts(http_exchange(port, std::string("\x16\x03\x01\x02\x05 junk\r\n\r\n")), "HTTP/1.1 400 ");
  still_serving();

  // 64 KB of headers: closed once past the bound, without an answer.
  std::string big = "GET /metrics HTTP/1.1\r\n";
  while (big.size() < 65536) big += "X-Pad: " + std::string(100, 'a') + "\r\n";
  big += "\r\n";
  HttpResult r = http_exchange(port, big, 5000);
  assert_true(r.closed);
  assert_true(r.response.find("200 OK") == std::string::npos);
  still_serving();

  // A request trickled a byte per 100 ms (whole after about 4 s) is closed
  // at the 1 s bound; the cache answers promptly all along.
  HttpResult slow;
  std::thread t([&] {
    slow = http_exchange(port, "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", 6000, 1, 100);
  });
  int64_t until = now_ms() + 1500, worst = 0;
  while (now_ms() < until) {
    int64_t t0 = now_ms();
    still_serving();
    worst = std::max(worst, now_ms() - t0);
    usleep(20000);
  }
  t.join();
  if (!slow.closed || slow.took_ms > 2500 || slow.response.find("200 OK") != std::string::npos)
    fail_msg("slow request: %s after %lld ms, got:\n%s", slow.closed ? "closed" : "open",
             (long long)slow.took_ms, slow.response.c_str());
  if (worst > 500)
    fail_msg("a cache answer took %lld ms during the slow request", (long long)worst);

  // More idle connections than it serves at once: all are closed within
  // about the 1 s bound (the excess at once), and the cache is unharmed.
  std::vector<RawConn> idle(40);
  for (RawConn& i : idle) assert_true(i.connect(addr("IP:127.0.0.1:" + std::to_string(port))));
  still_serving();
  for (RawConn& i : idle) assert_true(i.wait_closed(3000));
  still_serving();

  // And it still answers scrapes, which count what the cache did.
  std::string text = scrape(port);
  assert_true(metric_value(text, R"(distcache_server_responses_total{op="get",result="hit"})") >=
              4);
  assert_true(promtool_ok(text));
}

}  // namespace

// Arguments: the cases to run (see dc::test::run_cases).
int main(int argc, char** argv) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_bad_flags_exit_2),
      cmocka_unit_test(test_sigterm_and_sigint_clean_exit),
      cmocka_unit_test(test_killable),
      cmocka_unit_test(test_stale_socket_replaced_live_refused),
      cmocka_unit_test(test_daemon_and_pidfile),
      cmocka_unit_test(test_sockperms),
      cmocka_unit_test(test_sockowner_and_user),
      cmocka_unit_test(test_statistics),
      cmocka_unit_test(test_metrics_counts),
      cmocka_unit_test(test_metrics_hostile),
  };
  return dc::test::run_cases(tests, argc, argv);
}
