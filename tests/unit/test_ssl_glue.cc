// Unit tests of the OpenSSL glue's pure parts (lib/ssl.cc through
// ssl_attach.h): the lifetime a session is given in the cache, in
// milliseconds, at the boundaries of the protocol's range.
#include <openssl/ssl.h>

#include "proto.h"
#include "ssl_attach.h"

// Last: cmocka defines macros (fail...) that clash with the standard headers.
#include "cmocka_cpp.h"

namespace {

using dc::ssl::lifetime_ms;

// A session made at `made` (seconds since the epoch) lasting `timeout` s.
SSL_SESSION* session(long made, long timeout) {
  SSL_SESSION* s = SSL_SESSION_new();
  SSL_SESSION_set_time(s, made);
  SSL_SESSION_set_timeout(s, timeout);
  return s;
}

void test_lifetime_is_what_is_left_in_ms(void**) {
  const long now = 1'800'000'000;
  SSL_SESSION* s = session(now, 300);  // nginx's default: 5 minutes
  assert_int_equal(lifetime_ms(s, now), 300'000);
  assert_int_equal(lifetime_ms(s, now + 100), 200'000);
  assert_int_equal(lifetime_ms(s, now + 299), 1'000);
  assert_int_equal(lifetime_ms(s, now + 300), 0);  // expired: not stored
  assert_int_equal(lifetime_ms(s, now + 5000), 0);
  // A clock that went backwards counts as no time passed.
  assert_int_equal(lifetime_ms(s, now - 50), 300'000);
  SSL_SESSION_free(s);
}

void test_lifetime_is_clamped_to_the_protocol(void**) {
  const long now = 1'800'000'000;
  SSL_SESSION* week = session(now, 30L * 86400);  // more than the 7 days allowed
  assert_int_equal(lifetime_ms(week, now), dc::proto::kMaxTimeoutMs);
  SSL_SESSION_free(week);
  SSL_SESSION* exact = session(now, long(dc::proto::kMaxTimeoutMs / 1000));
  assert_int_equal(lifetime_ms(exact, now), dc::proto::kMaxTimeoutMs);
  SSL_SESSION_free(exact);
}

}  // namespace

int main() {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_lifetime_is_what_is_left_in_ms),
      cmocka_unit_test(test_lifetime_is_clamped_to_the_protocol),
  };
  return cmocka_run_group_tests(tests, nullptr, nullptr);
}
