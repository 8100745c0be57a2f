// with_server PROGRAM [ARGS...]: starts the real dc_server ($DC_SERVER) on a
// UNIX socket in a temporary directory, runs PROGRAM ARGS... ADDRESS, stops
// the server and exits with the program's exit code (1 if the server does
// not start). Lets tests written in C, or shell, run against a server.
#include <cstdio>
#include <string>
#include <vector>

#include "harness.h"

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: with_server PROGRAM [ARGS...]\n");
    return 2;
  }
  dc::test::TempDir dir;
  std::string addr = "UNIX:" + dir.file("server");
  dc::test::Process server = dc::test::Process::spawn(
      {dc::test::env_or_die("DC_SERVER"), "-listen", addr}, {}, dir.file("server.log"));
  if (!dc::test::wait_until_accepting(dc::test::addr(addr), 10000)) {
    std::fprintf(stderr, "with_server: dc_server did not start on %s\n", addr.c_str());
    return 1;
  }
  std::vector<std::string> args(argv + 1, argv + argc);
  args.push_back(addr);
  std::string out;
  int rc = dc::test::run(args, out, 120000);
  std::fputs(out.c_str(), stdout);
  server.stop();
  return rc;
}
