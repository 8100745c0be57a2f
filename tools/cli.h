// Small helpers the tools share for their command lines: strict number
// parsing (a flag value is a whole number in range or it is an error, never
// silently truncated), "N" or "MIN-MAX" ranges, and the uniform way a bad
// flag is reported (one clear line, then the usage, exit status 2).
// Header-only; nothing here touches sockets or the protocol.
//
// Including this header also gives a tool its --version (see the end).
#pragma once

#include <errno.h>  // program_invocation_short_name (_GNU_SOURCE)

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "decimal.h"

namespace dc::tools {

// Whole numbers: dc::parse_decimal (lib/decimal.h), the one decimal
// parser of the libraries, the daemons and the tools.
using dc::parse_decimal;

// Parses a non-negative decimal with an optional fraction ("2", "0.5") in
// [lo, hi]. Returns false on junk or out-of-range values.
inline bool parse_double(std::string_view s, double lo, double hi, double& out) {
  if (s.empty() || s.size() > 32) return false;
  std::string tmp(s);
  char* end = nullptr;
  errno = 0;
  double v = std::strtod(tmp.c_str(), &end);
  if (errno != 0 || end != tmp.c_str() + tmp.size() || !(v >= lo && v <= hi)) return false;
  out = v;
  return true;
}

// A closed range of sizes.
struct Range {
  uint32_t min = 0;
  uint32_t max = 0;
};

// Parses "N" (min = max = N) or "MIN-MAX" with lo <= MIN <= MAX <= hi.
inline bool parse_range(std::string_view s, uint32_t lo, uint32_t hi, Range& out) {
  uint64_t a = 0, b = 0;
  size_t dash = s.find('-');
  if (dash == std::string_view::npos) {
    if (!parse_decimal(s, lo, hi, a)) return false;
    out = {uint32_t(a), uint32_t(a)};
    return true;
  }
  if (!parse_decimal(s.substr(0, dash), lo, hi, a) ||
      !parse_decimal(s.substr(dash + 1), lo, hi, b) || a > b)
    return false;
  out = {uint32_t(a), uint32_t(b)};
  return true;
}

// Reports a command-line error the same way in every tool: "<tool>: <msg>",
// the usage text, and exit status 2.
[[noreturn]] inline void usage_error(const char* tool, const std::string& msg, const char* usage) {
  std::fprintf(stderr, "%s: %s\n%s", tool, msg.c_str(), usage);
  std::exit(2);
}

// The help flags of every tool (-h, -help, --help): when `flag` is one,
// prints `usage` on stdout and exits 0.
inline void answer_help(std::string_view flag, const char* usage) {
  if (flag != "-h" && flag != "-help" && flag != "--help") return;
  std::fputs(usage, stdout);
  std::exit(std::fflush(stdout) == 0 ? 0 : 1);
}

// Escapes `s` for use inside a JSON string literal.
inline std::string json_escape(std::string_view s) {
  std::string o;
  o.reserve(s.size());
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      o += '\\';
      o += char(c);
    } else if (c < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      o += buf;
    } else {
      o += char(c);
    }
  }
  return o;
}

// --version (or -version) as the first argument: prints "NAME VERSION" (the
// program's name, the project version from meson) on stdout and exits 0,
// before main() and its flag parsing run. glibc calls the functions of
// .init_array with main's argc and argv, so every tool that includes this
// header gets the flag without a line of its own.
#ifndef DC_VERSION
#error "DC_VERSION (the project version) is defined by meson.build"
#endif
namespace detail {
[[gnu::constructor, gnu::used]] static void answer_version_flag(int argc, char** argv, char**) {
  if (argc < 2 || argv == nullptr || argv[1] == nullptr) return;
  std::string_view a = argv[1];
  if (a != "--version" && a != "-version") return;
  std::printf("%s %s\n", program_invocation_short_name, DC_VERSION);
  std::exit(std::fflush(stdout) == 0 ? 0 : 1);
}
}  // namespace detail

}  // namespace dc::tools
