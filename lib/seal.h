// Sealed cache entries: what libdistcache_ssl stores instead of a session
// in the clear, so that the agent, dc_server and any later backend hold
// only ciphertext (docs/security.md has the threat model and this format).
//
// An entry is sealed with AES-256-GCM under a key and nonce derived for it
// alone (HKDF-SHA256 of a cluster key and 16 random bytes of salt), so no
// nonce count has to be shared between hosts. The associated data binds the
// header (format version, key id, salt, expiry, session id context) and the
// session id, so an entry cannot be moved to another id, context or
// lifetime. Format, version 1:
//
//   offset  size  field
//   0       1     version, 0xD1 (a session in the clear, DER, starts 0x30)
//   1       4     key id: the first 4 bytes of SHA-256("distcache key id" || key)
//   5       16    salt, random
//   21      8     expiry, seconds since 1970, big-endian
//   29      1     length L of the session id context, 0..32
//   30      L     the session id context
//   30+L    N     the session (i2d_SSL_SESSION), encrypted
//   30+L+N  16    the GCM tag
//
//   AES key (32) || nonce (12) = HKDF-SHA256(key, salt, "distcache seal v1")
//   associated data = bytes 0 .. 30+L-1, then the session id's length (1
//   byte) and the session id.
//
// Pure functions over bytes, on OpenSSL's libcrypto only: what the unit
// tests and the fuzzer drive.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace dc::seal {

using Bytes = std::span<const uint8_t>;

inline constexpr uint8_t kVersion = 0xD1;
inline constexpr size_t kKeySize = 32;
inline constexpr size_t kKeyIdSize = 4;
inline constexpr size_t kSaltSize = 16;
inline constexpr size_t kTagSize = 16;
inline constexpr size_t kMaxSidCtx = 32;
// Bytes a sealed entry adds to its session, at most.
inline constexpr size_t kOverhead = 30 + kMaxSidCtx + kTagSize;

struct Key {
  std::array<uint8_t, kKeySize> bytes{};
  std::array<uint8_t, kKeyIdSize> id{};
};

// The cluster's keys: the first seals, every one opens.
struct Keyring {
  std::vector<Key> keys;
};

// Parses a keyring file's text: one key per line as 64 hex digits;
// blank lines and lines starting with '#' are ignored, and so is white
// space around a key. Returns false with `err` saying which line is wrong,
// or that there is no key.
bool parse_keyring(std::string_view text, Keyring& out, std::string& err);

// Reads and parses the keyring file at `path`. Refuses a file that group
// or others may read or write (the keys are the cluster's secret), one that
// is not a regular file, or one over 64 KiB. Returns false with `err` set
// (one line naming the path and what to do).
bool load_keyring(const std::string& path, Keyring& out, std::string& err);

// Why an entry did not open.
enum class OpenError : uint8_t {
  none,
  too_short,    // shorter than a header and a tag
  not_sealed,   // another version byte (a session in the clear, say)
  unknown_key,  // no key of the keyring has its key id
  expired,      // its expiry has passed
  bad_header,   // session id context longer than 32 bytes
  forged,       // the tag does not verify: tampered, another id, another key
  crypto,       // OpenSSL failed (out of memory)
};
const char* to_string(OpenError e);

// Seals `session` (a DER session) for session id `id`, session id context
// `sid_ctx` (at most 32 bytes) and absolute `expiry` (seconds since 1970)
// with the keyring's first key, appending the entry to `out`. Returns false
// (nothing appended) when the keyring is empty, sid_ctx too long, or
// OpenSSL fails.
bool seal(const Keyring& kr, Bytes id, Bytes sid_ctx, int64_t expiry, Bytes session,
          std::vector<uint8_t>& out);

// Opens `entry` as stored under session id `id` at time `now` (seconds
// since 1970): on success `session` holds the DER session and `sid_ctx`
// the session id context the entry was sealed for. Nothing of `entry`
// reaches `session` unless its tag verified.
OpenError open(const Keyring& kr, Bytes id, int64_t now, Bytes entry, std::vector<uint8_t>& session,
               std::vector<uint8_t>& sid_ctx);

}  // namespace dc::seal
