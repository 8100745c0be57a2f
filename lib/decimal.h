// The one decimal parser of the project: addresses' ports (addr.cc), the
// environment of libdistcache and the shim, the daemons' flags and the
// tools' command lines. A value is a whole number in range or it is an
// error, never silently truncated. Header-only and pure (no I/O, no
// allocation), so every layer may use it without linking anything.
#pragma once

#include <cstdint>
#include <string_view>

namespace dc {

// Why a text is not a number in range.
enum class DecimalError : uint8_t {
  none,   // it is
  empty,  // nothing at all
  junk,   // anything but the digits 0-9: a sign, a space, a suffix
  below,  // digits, under the lower bound
  above,  // digits, over the upper bound (or over 2^64 - 1)
};

constexpr const char* to_string(DecimalError e) {
  switch (e) {
    case DecimalError::none:
      return "none";
    case DecimalError::empty:
      return "empty";
    case DecimalError::junk:
      return "not a decimal number";
    case DecimalError::below:
      return "below the range";
    case DecimalError::above:
      return "above the range";
  }
  return "?";
}

// Parses all of `s` as an unsigned decimal (digits only: no sign, no
// spaces, leading zeros allowed) in [lo, hi]. Returns DecimalError::none
// and sets `out`, or why not, with `out` unchanged.
constexpr DecimalError check_decimal(std::string_view s, uint64_t lo, uint64_t hi, uint64_t& out) {
  if (s.empty()) return DecimalError::empty;
  uint64_t v = 0;
  bool overflow = false;
  for (char c : s) {
    if (c < '0' || c > '9') return DecimalError::junk;
    uint64_t d = uint64_t(c - '0');
    if (v > (UINT64_MAX - d) / 10) overflow = true;
    if (!overflow) v = v * 10 + d;
  }
  if (overflow || v > hi) return DecimalError::above;
  if (v < lo) return DecimalError::below;
  out = v;
  return DecimalError::none;
}

// check_decimal as a yes or no: true and `out` set when all of `s` is a
// decimal in [lo, hi].
constexpr bool parse_decimal(std::string_view s, uint64_t lo, uint64_t hi, uint64_t& out) {
  return check_decimal(s, lo, hi, out) == DecimalError::none;
}

}  // namespace dc
