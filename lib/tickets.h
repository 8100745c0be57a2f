// Shared ticket keys (DC_CACHE_TICKETS=shared): the pure parts. Time is cut
// in epochs of E seconds; each epoch has one random 32-byte secret, agreed
// through the cache (lib/ssl.cc, class TicketKeys): stored sealed under a
// reserved session id with ADD, so the first writer wins and every process
// reads the same secret back. From the secret come the three things
// OpenSSL's ticket callback needs: a 16-byte key name (which key sealed a
// ticket), an AES-256-CBC key and an HMAC-SHA256 key.
#pragma once

#include <array>
#include <cstdint>
#include <string>

namespace dc::tickets {

inline constexpr size_t kSecretSize = 32;
inline constexpr size_t kNameSize = 16;

struct Key {
  int64_t epoch = 0;
  bool cluster = false;  // agreed through the cache (false: this process's own)
  std::array<uint8_t, kSecretSize> secret{};
  std::array<uint8_t, kNameSize> name{};
  std::array<uint8_t, 32> aes{};
  std::array<uint8_t, 32> hmac{};
};

// The epoch that second `t` (since 1970) falls in.
inline int64_t epoch_of(int64_t t, int64_t epoch_s) {
  return t >= 0 ? t / epoch_s : -((-t + epoch_s - 1) / epoch_s);
}

// The session id the secret of `epoch` is stored under: printable, shorter
// than any id OpenSSL makes (32 bytes), and outside what it makes (random).
std::string reserved_id(int64_t epoch, int64_t epoch_s);

// Fills name, aes and hmac of `k` from its secret and epoch:
// HKDF-SHA256(secret, salt none, info "distcache ticket v1" || epoch as 8
// bytes big-endian || epoch length in seconds as 8 bytes), 80 bytes: name
// (16), AES key (32), HMAC key (32). Returns false when OpenSSL fails.
bool derive(Key& k, int64_t epoch_s);

}  // namespace dc::tickets
