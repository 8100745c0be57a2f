// cmocka for C++ test files: its header has no extern "C" of its own and
// needs these includes first.
#pragma once
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
extern "C" {
#include <cmocka.h>
}

#include <cstdio>
#include <cstring>
#include <vector>

namespace dc::test {

// Cases skipped with DC_SKIP so far in this program.
inline int& skipped_cases() {
  static int n = 0;
  return n;
}

// Runs the cases of `tests` named on the command line, all of them when
// none is; "-NAME" leaves NAME out. Returns cmocka's count of failures, or
// 77 (meson's SKIP) when none failed and a case called DC_SKIP: cmocka's
// own skip() leaves the exit status 0, which meson counts as a pass. A case
// that may skip is therefore registered as a meson test of its own (or with
// the cases that need the same thing), so that a skip is never hidden behind
// the passes of the rest and never hides them either.
template <size_t N>
int run_cases(const CMUnitTest (&tests)[N], int argc, char** argv) {
  std::vector<CMUnitTest> chosen;
  bool any_named = false;
  for (int i = 1; i < argc; ++i) any_named |= argv[i][0] != '-';
  for (const CMUnitTest& t : tests) {
    bool named = false, left_out = false;
    for (int i = 1; i < argc; ++i) {
      named |= std::strcmp(argv[i], t.name) == 0;
      left_out |= argv[i][0] == '-' && std::strcmp(argv[i] + 1, t.name) == 0;
    }
    if ((named || !any_named) && !left_out) chosen.push_back(t);
  }
  if (chosen.empty()) {
    std::fprintf(stderr, "no test case matches the command line\n");
    return 1;
  }
  int failed = _cmocka_run_group_tests(argv[0], chosen.data(), chosen.size(), nullptr, nullptr);
  return failed == 0 && skipped_cases() > 0 ? 77 : failed;
}

}  // namespace dc::test

// Skips the running case, saying why (printf arguments), in a way that
// run_cases reports to meson.
#define DC_SKIP(...)                   \
  do {                                 \
    std::fprintf(stderr, "# SKIP: ");  \
    std::fprintf(stderr, __VA_ARGS__); \
    std::fprintf(stderr, "\n");        \
    ++dc::test::skipped_cases();       \
    skip();                            \
  } while (0)
