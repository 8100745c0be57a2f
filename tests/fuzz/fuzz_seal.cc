// libFuzzer target for the opening of sealed cache entries (lib/seal.h):
// the bytes a cache returns are untrusted. The first input byte picks:
//   even: the rest is an entry, opened as stored under a fixed id;
//   odd:  the rest is a session, sealed, then changed at one position
//         (from the input) and opened.
// Checks: nothing crashes or leaks; an unchanged sealed entry opens to
// exactly what was sealed; a changed one never opens; what opens from
// arbitrary bytes is only what the fuzzer could have sealed, which it
// cannot without the key, so it never opens.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "seal.h"

namespace {

const dc::seal::Keyring& keyring() {
  static const dc::seal::Keyring kr = [] {
    dc::seal::Keyring k;
    std::string err;
    if (!dc::seal::parse_keyring(
            "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n"
            "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100\n",
            k, err))
      std::abort();
    return k;
  }();
  return kr;
}

const uint8_t kId[] = "fuzzed-session-id";
constexpr int64_t kNow = 1'800'000'000;

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  dc::seal::Bytes id(kId, sizeof kId - 1);
  dc::seal::Bytes rest(data + 1, size - 1);
  std::vector<uint8_t> got, ctx;
  if (data[0] % 2 == 0) {
    if (dc::seal::open(keyring(), id, kNow, rest, got, ctx) == dc::seal::OpenError::none) {
      std::fprintf(stderr, "arbitrary bytes opened as a sealed entry\n");
      std::abort();
    }
    return 0;
  }
  if (rest.size() < 2) return 0;
  size_t pos = rest[0];
  uint8_t ctx_len = rest[1] % 40;  // over 32 must be refused by seal()
  dc::seal::Bytes session = rest.subspan(2);
  std::vector<uint8_t> sid_ctx(ctx_len, 'c'), entry;
  bool sealed = dc::seal::seal(keyring(), id, sid_ctx, kNow + 60, session, entry);
  if (sealed != (ctx_len <= dc::seal::kMaxSidCtx)) std::abort();
  if (!sealed) return 0;
  if (dc::seal::open(keyring(), id, kNow, entry, got, ctx) != dc::seal::OpenError::none ||
      got != std::vector<uint8_t>(session.begin(), session.end()) || ctx != sid_ctx) {
    std::fprintf(stderr, "a sealed entry did not open to what was sealed\n");
    std::abort();
  }
  pos %= entry.size();
  entry[pos] ^= uint8_t(data[0] | 1);
  if (dc::seal::open(keyring(), id, kNow, entry, got, ctx) == dc::seal::OpenError::none) {
    std::fprintf(stderr, "a changed sealed entry (byte %zu) opened\n", pos);
    std::abort();
  }
  return 0;
}
