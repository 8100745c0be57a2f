// The one decimal parser of the daemons' flags and the tools' command lines
// (header-only, so the tools use it without linking anything of the
// daemons): a value is a whole number in range or it is an error, never
// silently truncated. Nothing here knows the event loop or the protocol.
#pragma once

#include <cstdint>
#include <string_view>

namespace dc::common {

// Parses all of `s` as an unsigned decimal (digits only: no sign, no
// spaces) in [lo, hi]. Returns false on anything else, on overflow or out
// of range; `out` is then unchanged.
inline bool parse_decimal(std::string_view s, uint64_t lo, uint64_t hi, uint64_t& out) {
  if (s.empty()) return false;
  uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    uint64_t d = uint64_t(c - '0');
    if (v > (UINT64_MAX - d) / 10) return false;
    v = v * 10 + d;
  }
  if (v < lo || v > hi) return false;
  out = v;
  return true;
}

}  // namespace dc::common
