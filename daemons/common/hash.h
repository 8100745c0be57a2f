// Hashing the daemons share: SplitMix64's finalizer, a fast 64-bit mixer
// with full avalanche (each input bit flips each output bit with
// probability about 1/2). dc_server's index hashes session ids with it, and
// the agent's pool routes them with it (dc_pool.h documents the rule).
#pragma once

#include <cstdint>

namespace dc::common {

inline uint64_t mix64(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  x ^= x >> 31;
  return x;
}

}  // namespace dc::common
