// CHECK for the test programs that run every check and report each failed
// one, instead of stopping at the first as cmocka does: the e2e programs
// that run under the shim or against a real server (shim_contexts,
// test_ssl_api). Header-only: shim_contexts must link nothing of ours.
#pragma once

#include <cstdio>

namespace dc::test {

// How many CHECKs have failed so far in this program.
inline int& check_failures() {
  static int n = 0;
  return n;
}

// The program's exit status: 1 with "N check(s) failed" on stderr when a
// CHECK failed, else 0 with "all checks passed" on stdout.
inline int check_exit_status() {
  if (check_failures() != 0) {
    std::fprintf(stderr, "%d check(s) failed\n", check_failures());
    return 1;
  }
  std::printf("all checks passed\n");
  return 0;
}

}  // namespace dc::test

// Checks `cond`; when false, names it with its file and line on stderr,
// counts the failure and goes on.
#define CHECK(cond)                                                                 \
  do {                                                                              \
    if (!(cond)) {                                                                  \
      std::fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
      ++dc::test::check_failures();                                                 \
    }                                                                               \
  } while (0)
