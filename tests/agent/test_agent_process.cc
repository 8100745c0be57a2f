// Integration tests of dc_client as a process: bad flags (one clear line
// naming the flag, the usage, exit 2), a truthful -h, -daemon with
// -pidfile, clean exit on SIGTERM/SIGINT removing the socket file and the
// pidfile, -sockperms, and -connect as a synonym of -server.
#include <sys/stat.h>

#include <cstring>
#include <string>
#include <vector>

#include "agent_fixture.h"

using namespace dc;
using namespace dc::test;

namespace {

std::string bin() {
  return env_or_die("DC_CLIENT_BIN");
}

bool exists(const std::string& path) {
  struct stat st;
  return lstat(path.c_str(), &st) == 0;
}

bool gone(const std::string& path) {
  for (int i = 0; i < 1000 && exists(path); ++i) usleep(10000);
  return !exists(path);
}

std::string first_line(const std::string& s) {
  return s.substr(0, s.find('\n'));
}

void expect_bad(const std::vector<std::string>& args, const std::string& names) {
  std::vector<std::string> argv = {bin()};
  argv.insert(argv.end(), args.begin(), args.end());
  std::string out;
  int rc = run(argv, out, 10000);
  std::string line = first_line(out);
  if (rc != 2 || line.find("dc_client: ") != 0 || line.find(names) == std::string::npos ||
      out.find("Usage: dc_client") == std::string::npos)
    fail_msg("args ending %s: exit %d, output:\n%s", args.empty() ? "(none)" : args.back().c_str(),
             rc, out.c_str());
}

void test_bad_flags_exit_2(void**) {
  const std::vector<std::string> s = {"-server", "UNIX:/tmp/dc-agent-test-none"};
  auto with = [&](std::vector<std::string> more) {
    std::vector<std::string> v = s;
    v.insert(v.end(), more.begin(), more.end());
    return v;
  };
  expect_bad(with({"-frobnicate"}), "unknown flag \"-frobnicate\"");
  expect_bad({}, "-server");  // no server at all
  expect_bad({"-server", "TCP:1234"}, "-server");
  expect_bad({"-connect", "IP:99999"}, "-connect");
  expect_bad(with({"-listen", "nowhere"}), "-listen");
  expect_bad(with({"-retry", "soon"}), "-retry: \"soon\"");
  expect_bad(with({"-retry", "0"}), "-retry");
  expect_bad(with({"-idle", "-5"}), "-idle");
  expect_bad(with({"-timeout", "0"}), "-timeout");
  expect_bad(with({"-timeout", "12ms"}), "-timeout");
  expect_bad(with({"-maxpending", "0"}), "-maxpending");
  expect_bad(with({"-clientpending", "many"}), "-clientpending");
  expect_bad(with({"-maxout", "1K"}), "-maxout");
  expect_bad(with({"-sockperms", "0999"}), "-sockperms");
  expect_bad(with({"-user", "no-such-user-here"}), "-user");
  expect_bad(with({"-sockowner", "no-such-user-here"}), "-sockowner");
  expect_bad(with({"-sockgroup", "no-such-group-here"}), "-sockgroup");
  expect_bad(with({"-pidfile"}), "-pidfile: missing value");
  for (const char* h : {"-h", "-help", "-?", "--help"}) {
    std::string out;
    assert_int_equal(run({bin(), h}, out, 10000), 0);
    for (const char* want :
         {"-server ADDR", "-connect ADDR", "default UNIX:/tmp/scache", "-retry MS",
          "(default 5000)", "-idle MS", "-timeout MS", "(default 500)", "-maxpending N",
          "-clientpending N", "-maxout SIZE", "-daemon", "-pidfile PATH", "-user USER",
          "-sockowner", "-sockgroup", "-sockperms"})
      if (!strstr(out.c_str(), want)) fail_msg("%s: no \"%s\" in:\n%s", h, want, out.c_str());
  }
}

void test_daemon_pidfile_and_clean_exit(void**) {
  Cluster cl;
  cl.start_server();
  std::string pidfile = cl.dir().file("pid");
  std::string sock = cl.dir().file("d");
  std::string out;
  int rc = run({bin(), "-listen", "UNIX:" + sock, "-connect", "UNIX:" + cl.dir().file("s"),
                "-daemon", "-pidfile", pidfile, "-sockperms", "0600"},
               out, 10000);
  assert_int_equal(rc, 0);
  assert_true(wait_for_unix_socket(sock, 10000));
  // The detached child writes the pidfile after the foreground process exits.
  for (int i = 0; i < 1000 && slurp(pidfile).find('\n') == std::string::npos; ++i) usleep(10000);
  pid_t pid = pid_t(std::atol(slurp(pidfile).c_str()));
  assert_true(pid > 1);
  assert_int_equal(kill(pid, 0), 0);
  struct stat st;
  assert_int_equal(stat(sock.c_str(), &st), 0);
  assert_int_equal(st.st_mode & 07777, 0600);
  // It reaches the server (the -connect synonym).
  bool working = false;
  for (int i = 0; i < 500 && !working; ++i) {
    RawConn c;
    if (c.connect(addr("UNIX:" + sock)) && c.add("via-daemon", "daemon-data", 600000) == 0)
      working = true;
    else
      usleep(20000);
  }
  assert_true(working);
  assert_int_equal(kill(pid, SIGTERM), 0);
  assert_true(gone(pidfile));
  assert_true(gone(sock));
  for (int i = 0; i < 1000 && kill(pid, 0) == 0; ++i) usleep(10000);
  assert_int_equal(kill(pid, 0), -1);
}

void test_sigint_clean_exit(void**) {
  Cluster cl;
  cl.start_agent({"-retry", "300"});
  RawConn c = cl.client();  // an open client does not hold it up
  assert_true(cl.agent().signal(SIGINT));
  auto st = cl.agent().wait(10000);
  assert_true(st.has_value());
  assert_int_equal(exit_code(*st), 0);
  assert_false(exists(cl.agent_sock()));
}

}  // namespace

int main() {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_bad_flags_exit_2),
      cmocka_unit_test(test_daemon_pidfile_and_clean_exit),
      cmocka_unit_test(test_sigint_clean_exit),
  };
  return cmocka_run_group_tests(tests, nullptr, nullptr);
}
