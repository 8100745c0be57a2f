// Unit tests of the OpenSSL glue's pure parts: the lifetime a session is
// given in the cache, in milliseconds, at the boundaries of the protocol's
// range (lib/ssl.cc through ssl_internal.h); sealed entries and keyrings
// (lib/seal.h): round trips, every byte tampered, another id, key, context
// or expiry, entries in the clear, rotation, and each keyring error.
#include <openssl/ssl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "proto.h"
#include "seal.h"
#include "ssl_internal.h"

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

namespace seal = dc::seal;

const char kKeyA[] = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
const char kKeyB[] = "F0E1D2C3B4A5968778695A4B3C2D1E0F00112233445566778899AABBCCDDEEFF";

seal::Keyring ring(const std::string& text) {
  seal::Keyring kr;
  std::string err;
  if (!seal::parse_keyring(text, kr, err)) fail_msg("keyring rejected: %s", err.c_str());
  return kr;
}

std::vector<uint8_t> bytes(const std::string& s) {
  return std::vector<uint8_t>(s.begin(), s.end());
}

const long kNow = 1'800'000'000;

void test_seal_round_trip(void**) {
  seal::Keyring kr = ring(kKeyA);
  std::vector<uint8_t> id = bytes("session-id-32-bytes-long-exactly"), ctx = bytes("cluster");
  std::vector<uint8_t> der(300);
  for (size_t i = 0; i < der.size(); ++i) der[i] = uint8_t(i * 7);
  std::vector<uint8_t> entry;
  assert_true(seal::seal(kr, id, ctx, kNow + 300, der, entry));
  assert_int_equal(entry.size(), 30 + ctx.size() + der.size() + seal::kTagSize);
  assert_int_equal(entry[0], seal::kVersion);
  // The session's bytes are not there in the clear.
  assert_true(std::search(entry.begin(), entry.end(), der.begin() + 10, der.begin() + 26) ==
              entry.end());
  std::vector<uint8_t> got, got_ctx;
  assert_int_equal(int(seal::open(kr, id, kNow, entry, got, got_ctx)), int(seal::OpenError::none));
  assert_true(got == der);
  assert_true(got_ctx == ctx);
  // Two seals of the same session differ (a fresh salt each).
  std::vector<uint8_t> again;
  assert_true(seal::seal(kr, id, ctx, kNow + 300, der, again));
  assert_true(again != entry);
}

void test_seal_refuses_what_does_not_authenticate(void**) {
  seal::Keyring kr = ring(kKeyA);
  std::vector<uint8_t> id = bytes("id-1"), ctx = bytes("cluster"), der(100, 0x30);
  std::vector<uint8_t> entry, got, got_ctx;
  assert_true(seal::seal(kr, id, ctx, kNow + 300, der, entry));
  // Every byte flipped: never opens (the key id byte: unknown key; the
  // expiry: forged or expired; the rest: forged).
  for (size_t i = 0; i < entry.size(); ++i) {
    std::vector<uint8_t> bad = entry;
    bad[i] ^= 0x01;
    seal::OpenError e = seal::open(kr, id, kNow, bad, got, got_ctx);
    if (e == seal::OpenError::none) fail_msg("byte %zu flipped and the entry still opened", i);
  }
  // Every truncation.
  for (size_t n = 0; n < entry.size(); ++n) {
    std::vector<uint8_t> cut(entry.begin(), entry.begin() + long(n));
    if (seal::open(kr, id, kNow, cut, got, got_ctx) == seal::OpenError::none)
      fail_msg("cut to %zu bytes and the entry still opened", n);
  }
  // Moved to another id.
  assert_int_equal(int(seal::open(kr, bytes("id-2"), kNow, entry, got, got_ctx)),
                   int(seal::OpenError::forged));
  // Past its expiry.
  assert_int_equal(int(seal::open(kr, id, kNow + 300, entry, got, got_ctx)),
                   int(seal::OpenError::expired));
  // Another cluster's keyring.
  assert_int_equal(int(seal::open(ring(kKeyB), id, kNow, entry, got, got_ctx)),
                   int(seal::OpenError::unknown_key));
  // A session in the clear (DER starts with 0x30).
  assert_int_equal(int(seal::open(kr, id, kNow, std::vector<uint8_t>(200, 0x30), got, got_ctx)),
                   int(seal::OpenError::not_sealed));
  // A header claiming a session id context over 32 bytes.
  std::vector<uint8_t> long_ctx = entry;
  long_ctx[29] = 33;
  assert_int_equal(int(seal::open(kr, id, kNow, long_ctx, got, got_ctx)),
                   int(seal::OpenError::bad_header));
  // The same key id with another key (a forged keyring line): forged.
  seal::Keyring twin = ring(kKeyB);
  twin.keys[0].id = kr.keys[0].id;
  assert_int_equal(int(seal::open(twin, id, kNow, entry, got, got_ctx)),
                   int(seal::OpenError::forged));
}

void test_keyring_rotation(void**) {
  std::vector<uint8_t> id = bytes("id"), der(50, 7), entry, got, got_ctx;
  seal::Keyring old_ring = ring(kKeyA);
  assert_true(seal::seal(old_ring, id, {}, kNow + 60, der, entry));
  // A new first line seals; the old key still opens what it sealed.
  seal::Keyring rotated = ring(std::string("# rotated\n") + kKeyB + "\n\n  " + kKeyA + "  \n");
  assert_int_equal(rotated.keys.size(), 2);
  assert_int_equal(int(seal::open(rotated, id, kNow, entry, got, got_ctx)),
                   int(seal::OpenError::none));
  std::vector<uint8_t> fresh;
  assert_true(seal::seal(rotated, id, {}, kNow + 60, der, fresh));
  assert_int_equal(int(seal::open(old_ring, id, kNow, fresh, got, got_ctx)),
                   int(seal::OpenError::unknown_key));
  assert_int_equal(int(seal::open(ring(kKeyB), id, kNow, fresh, got, got_ctx)),
                   int(seal::OpenError::none));
}

void test_keyring_errors(void**) {
  seal::Keyring kr;
  std::string err;
  assert_false(seal::parse_keyring("", kr, err));
  assert_non_null(strstr(err.c_str(), "no key"));
  assert_false(seal::parse_keyring("# only a comment\n", kr, err));
  assert_false(seal::parse_keyring(std::string(kKeyA) + "00\n", kr, err));
  assert_non_null(strstr(err.c_str(), "line 1"));
  std::string bad = kKeyA;
  bad[10] = 'g';
  assert_false(seal::parse_keyring(std::string(kKeyA) + "\n" + bad, kr, err));
  assert_non_null(strstr(err.c_str(), "line 2"));

  char dir[] = "/tmp/dc-keyring.XXXXXX";
  assert_non_null(mkdtemp(dir));
  std::string path = std::string(dir) + "/keys";
  assert_false(seal::load_keyring(path, kr, err));  // missing
  assert_non_null(strstr(err.c_str(), path.c_str()));
  FILE* f = std::fopen(path.c_str(), "w");
  std::fprintf(f, "%s\n", kKeyA);
  std::fclose(f);
  chmod(path.c_str(), 0644);
  assert_false(seal::load_keyring(path, kr, err));  // others may read it
  assert_non_null(strstr(err.c_str(), "chmod 600"));
  chmod(path.c_str(), 0600);
  assert_true(seal::load_keyring(path, kr, err));
  assert_int_equal(kr.keys.size(), 1);
  std::string link = std::string(dir) + "/link";
  assert_int_equal(symlink(path.c_str(), link.c_str()), 0);
  assert_false(seal::load_keyring(link, kr, err));  // a link is not followed
  unlink(link.c_str());
  assert_false(seal::load_keyring(dir, kr, err));  // a directory
  unlink(path.c_str());
  rmdir(dir);
}

}  // namespace

int main() {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_seal_round_trip),
      cmocka_unit_test(test_seal_refuses_what_does_not_authenticate),
      cmocka_unit_test(test_keyring_rotation),
      cmocka_unit_test(test_keyring_errors),
      cmocka_unit_test(test_lifetime_is_what_is_left_in_ms),
      cmocka_unit_test(test_lifetime_is_clamped_to_the_protocol),
  };
  return cmocka_run_group_tests(tests, nullptr, nullptr);
}
