// Unit tests of the one decimal parser (lib/decimal.h): the edges every
// caller relies on (empty, signs, spaces, junk before and after, leading
// zeros, the bounds, overflow of 64 bits), each with its own error.
#include <cstdint>
#include <string_view>

#include "cmocka_cpp.h"
#include "decimal.h"

using dc::check_decimal;
using dc::DecimalError;
using dc::parse_decimal;

namespace {

// `s` parsed in [lo, hi] must fail with `want`, leaving the output alone.
void rejects(std::string_view s, uint64_t lo, uint64_t hi, DecimalError want) {
  uint64_t out = 4242;
  DecimalError got = check_decimal(s, lo, hi, out);
  if (got != want)
    fail_msg("\"%.*s\" in %llu..%llu: %s, expected %s", int(s.size()), s.data(),
             (unsigned long long)lo, (unsigned long long)hi, dc::to_string(got),
             dc::to_string(want));
  assert_int_equal(out, 4242);
  assert_false(parse_decimal(s, lo, hi, out));
}

uint64_t accepts(std::string_view s, uint64_t lo, uint64_t hi) {
  uint64_t out = 4242;
  if (check_decimal(s, lo, hi, out) != DecimalError::none)
    fail_msg("\"%.*s\" rejected in %llu..%llu", int(s.size()), s.data(), (unsigned long long)lo,
             (unsigned long long)hi);
  return out;
}

void test_good(void**) {
  assert_int_equal(accepts("0", 0, 10), 0);
  assert_int_equal(accepts("7", 0, 10), 7);
  assert_int_equal(accepts("65535", 1, 65535), 65535);
  assert_int_equal(accepts("007", 0, 10), 7);  // leading zeros are digits
  assert_int_equal(accepts("18446744073709551615", 0, UINT64_MAX), UINT64_MAX);
}

void test_empty(void**) {
  rejects("", 0, 10, DecimalError::empty);
}

void test_sign_and_spaces(void**) {
  rejects("-1", 0, 10, DecimalError::junk);
  rejects("+1", 0, 10, DecimalError::junk);
  rejects("-0", 0, 10, DecimalError::junk);
  rejects(" 1", 0, 10, DecimalError::junk);
  rejects("1 ", 0, 10, DecimalError::junk);
}

void test_junk(void**) {
  rejects("x1", 0, 10, DecimalError::junk);
  rejects("1x", 0, 10, DecimalError::junk);
  rejects("1.5", 0, 10, DecimalError::junk);
  rejects("0x10", 0, 100, DecimalError::junk);
  rejects("1k", 0, 10000, DecimalError::junk);
  rejects(std::string_view("1\0"
                           "2",
                           3),
          0, 100, DecimalError::junk);                          // an embedded NUL
  rejects("99999999999999999999x", 0, 10, DecimalError::junk);  // junk wins over size
}

void test_bounds(void**) {
  assert_int_equal(accepts("10", 10, 20), 10);
  assert_int_equal(accepts("20", 10, 20), 20);
  rejects("9", 10, 20, DecimalError::below);
  rejects("21", 10, 20, DecimalError::above);
  rejects("0", 1, 65535, DecimalError::below);
  rejects("65536", 1, 65535, DecimalError::above);
}

void test_overflow(void**) {
  rejects("18446744073709551616", 0, UINT64_MAX, DecimalError::above);  // 2^64
  rejects("99999999999999999999", 0, UINT64_MAX, DecimalError::above);
  rejects("184467440737095516150", 0, UINT64_MAX, DecimalError::above);
  // Overflow is "above" even when the wrapped value would be in range.
  rejects("18446744073709551621", 0, 10, DecimalError::above);  // 2^64 + 5
}

void test_to_string(void**) {
  for (DecimalError e : {DecimalError::none, DecimalError::empty, DecimalError::junk,
                         DecimalError::below, DecimalError::above})
    assert_string_not_equal(dc::to_string(e), "?");
}

// constexpr: usable where a constant is parsed at compile time.
static_assert([] {
  uint64_t v = 0;
  return dc::parse_decimal("42", 0, 100, v) && v == 42;
}());

}  // namespace

int main() {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_good),
      cmocka_unit_test(test_empty),
      cmocka_unit_test(test_sign_and_spaces),
      cmocka_unit_test(test_junk),
      cmocka_unit_test(test_bounds),
      cmocka_unit_test(test_overflow),
      cmocka_unit_test(test_to_string),
  };
  return cmocka_run_group_tests_name("decimal", tests, nullptr, nullptr);
}
