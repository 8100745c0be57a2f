// dc_server's session store: a pure data structure (no I/O, no clock of its
// own: every call takes the current time in milliseconds, so tests drive
// time by hand).
//
// Layout, chosen for memory per session and O(1)/O(log n) operations:
//   - one malloc block per session: a small header, the id, then the data;
//   - an open-addressing hash index (linear probing, backward-shift
//     deletion, no tombstones) of pointers to the blocks, keyed by a seeded
//     hash of the id; each slot carries 16 more bits of the hash in the
//     pointer's unused top bits, so a probe past a different id costs no
//     cache miss on its block (with a million sessions those misses were
//     most of a GET's time);
//   - an indexed binary min-heap of (expiry, block) pairs; each block knows
//     its heap position, so removing any session is O(log n);
//   - a doubly-linked list of the blocks in the order they were stored.
// The heap's top is the session nearest to expiry: expired sessions are
// reclaimed from the top without scanning. When the store is full (by count
// or by bytes) an expired session goes first, else the session stored
// longest ago (first in, first out). Not the one nearest to expiry: clients
// choose lifetimes, so a burst of long-lived sessions would make every
// shorter-lived one the next victim; in insertion order a session survives
// until max_sessions (or max_bytes) newer ones have come, whatever anyone's
// lifetime.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "proto.h"

namespace dc::server {

using proto::Bytes;

struct StoreLimits {
  size_t max_sessions = 1000000;
  size_t max_bytes = size_t(1) << 30;  // charged bytes, see Store::cost()
  // A longer lifetime asked for is cut to this (the protocol allows 7 days).
  uint32_t max_lifetime_ms = proto::kMaxTimeoutMs;
};

struct StoreCounters {
  uint64_t evictions = 0;    // unexpired sessions dropped to make room
  uint64_t expirations = 0;  // expired sessions reclaimed
};

// The allocator of the index: its own mapping, with transparent huge pages
// asked for once it is 2 MB or more. A lookup touches one random slot; with
// a million sessions the index is 16 MB, and on 4 KB pages nearly every
// lookup also missed the TLB.
template <typename T>
struct IndexAllocator {
  using value_type = T;
  IndexAllocator() = default;
  template <typename U>
  IndexAllocator(const IndexAllocator<U>&) {}
  T* allocate(size_t n);
  void deallocate(T* p, size_t n);
  bool operator==(const IndexAllocator&) const { return true; }
};

class Store {
 public:
  // `hash_seed` keys the index hash (pick it at random in a server, so
  // clients cannot aim ids at one probe chain).
  explicit Store(StoreLimits limits, uint64_t hash_seed = 0);
  ~Store();
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  // Bytes a session is charged against max_bytes: its id and data plus a
  // fixed overhead for the block header (40), the allocator (8), the index
  // slot (8 to 16) and the heap entry (16).
  static constexpr size_t kOverhead = 80;
  static size_t cost(size_t id_len, size_t data_len) { return id_len + data_len + kOverhead; }

  // Stores a session expiring at now + min(timeout_ms, max_lifetime_ms).
  // Expects an id of 1..64 bytes and data of 1..32768 bytes (the server
  // checks these with proto::parse_add first). Returns
  //   ok                when stored (evicting expired sessions, then the
  //                     oldest stored, if the store was full), or when
  //                     timeout_ms is 0 (the session is expired at once:
  //                     nothing is kept);
  //   matching_session  when an unexpired session has this id (never
  //                     overwritten);
  //   notok             when it cannot be stored: larger than max_bytes
  //                     alone, or out of memory.
  proto::AddStatus add(Bytes id, Bytes data, uint32_t timeout_ms, int64_t now);

  // The data of the unexpired session `id`, or an empty span when there is
  // none. The span is valid until the next non-const call.
  Bytes get(Bytes id, int64_t now);
  // A hint: the next lookups (get, remove, have, add) will be of `ids`, in
  // this order (at most 64 are taken). Starts loading their index slots,
  // then, a few lookups ahead, the blocks those slots point to, so the
  // cache misses overlap. Changes no session; a wrong hint costs only time.
  void prefetch(std::span<const Bytes> ids);
  // Removes session `id`; true when an unexpired one was there.
  bool remove(Bytes id, int64_t now);
  // True when an unexpired session `id` is stored.
  bool have(Bytes id, int64_t now);

  // Reclaims up to `max` expired sessions, nearest-to-expiry first; returns
  // how many. Cost O(k log n) for k reclaimed.
  size_t expire(int64_t now, size_t max = SIZE_MAX);
  // When the next session expires (INT64_MAX when empty).
  int64_t next_expiry() const;

  size_t sessions() const { return heap_.size(); }
  size_t bytes() const { return bytes_; }  // charged bytes, see cost()
  const StoreLimits& limits() const { return limits_; }
  const StoreCounters& counters() const { return counters_; }
  // Bytes of heap held by the index and the expiry heap (not the sessions).
  size_t table_bytes() const;

  // Checks every internal invariant (heap order and positions, index
  // reachability, the insertion list, counts, byte total). For tests: O(n).
  bool check() const;

 private:
  struct Session;
  struct HeapEntry {
    int64_t expiry;
    Session* s;
  };

  uint64_t hash(Bytes id) const;
  // Index slot holding `id`, or SIZE_MAX.
  size_t find_slot(Bytes id, uint64_t h) const;
  // Index slot holding `s` (which is stored).
  size_t slot_of(const Session* s) const;
  Session* find(Bytes id, int64_t now);
  // Prefetch pipeline (see prefetch()): one lookup done, start the next block.
  void step();
  void prefetch_block(uint64_t h) const;
  void index_insert(Session* s, uint64_t h);
  void index_erase(size_t slot);
  // Doubles the index and reinserts every session.
  void grow();
  void heap_push(Session* s, int64_t expiry);
  void heap_erase(size_t pos);
  void sift_up(size_t pos);
  void sift_down(size_t pos);
  void set_entry(size_t pos, HeapEntry e);
  // Unlinks and frees `s` (found at index slot `slot`).
  void destroy(Session* s, size_t slot);
  // Drops the heap top (expired).
  void drop_top();
  // Makes room for one more session: an expired one if any, else the
  // oldest stored.
  void evict_one(int64_t now);
  void list_append(Session* s);
  void list_unlink(Session* s);

  StoreLimits limits_;
  uint64_t seed_;
  // Power-of-two size; 0 = empty, else a Session* in the low 48 bits and
  // bits 48..63 of the id's hash in the top 16 (see tag()).
  std::vector<uint64_t, IndexAllocator<uint64_t>> slots_;
  size_t mask_ = 0;
  std::vector<HeapEntry> heap_;
  size_t bytes_ = 0;
  // The insertion list: oldest_ is stored longest ago, newest_ last.
  Session* oldest_ = nullptr;
  Session* newest_ = nullptr;
  StoreCounters counters_;
  // Hashes announced by prefetch(), and how many lookups of them were made.
  static constexpr size_t kAheadMax = 64, kBlockAhead = 4;
  uint64_t ahead_[kAheadMax];
  size_t ahead_n_ = 0, ahead_pos_ = 0;
};

}  // namespace dc::server
