// dc_server's session store: see store.h.
#include "server/store.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <new>

#include "common/hash.h"

namespace dc::server {

// The one block of a session: this header, then id_len bytes of id, then
// data_len bytes of data. The expiry is kept here too (for lookups) and in
// the heap entry (so sifting never touches the blocks). `older`/`newer`
// link the insertion list (eviction order): 16 bytes a session, against a
// second heap's 16 plus O(log n) per operation.
struct Store::Session {
  int64_t expiry;
  Session* older;
  Session* newer;
  uint32_t heap_pos;
  uint32_t hash;
  uint16_t data_len;
  uint8_t id_len;

  uint8_t* id() { return reinterpret_cast<uint8_t*>(this) + sizeof(Session); }
  uint8_t* data() { return id() + id_len; }
};

namespace {

constexpr size_t kInitialSlots = 1024;

// Index slots: a block pointer (user-space addresses fit in 48 bits on the
// 64-bit targets we build for) with 16 bits of the hash above it.
constexpr unsigned kTagShift = 48;
constexpr uint64_t kPtrMask = (uint64_t(1) << kTagShift) - 1;
uint64_t tag_of(uint64_t h) {
  return h & ~kPtrMask;
}

uint64_t load64(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}

uint64_t mix(uint64_t x) {
  return common::mix64(x);
}

// Asks for transparent huge pages on the part of the malloc heap (the brk
// area) that appeared since the last call; a no-op while it has not grown
// (sbrk(0) only reads glibc's cached break) and when blocks come from
// elsewhere (mmap, a sanitizer's allocator). Sessions are small blocks
// spread over hundreds of MB: on 4 KB pages nearly every GET of a large
// store missed the TLB (the measured effect is in docs/performance.md). The heap grows in large
// steps (dc_server sets M_TOP_PAD) so the new part is advised before most of it is touched.
void advise_heap() {
  // The break up to which the hint is given; one per process (the heap is),
  // and stores are only used from one thread.
  static uintptr_t advised = 0;
  auto brk = reinterpret_cast<uintptr_t>(::sbrk(0));
  if (brk == uintptr_t(-1) || brk <= advised) return;
  // The first call only notes where the heap is: what is below was
  // allocated before the store grew and is left alone.
  if (advised != 0) (void)::madvise(reinterpret_cast<void*>(advised), brk - advised, MADV_HUGEPAGE);
  advised = brk;
}

}  // namespace

template <typename T>
T* IndexAllocator<T>::allocate(size_t n) {
  size_t len = n * sizeof(T);
  void* p = ::mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) throw std::bad_alloc();
  constexpr size_t kHuge = size_t(2) << 20;
  if (len >= kHuge) (void)::madvise(p, len, MADV_HUGEPAGE);  // a hint: fine if refused
  return static_cast<T*>(p);
}

template <typename T>
void IndexAllocator<T>::deallocate(T* p, size_t n) {
  ::munmap(p, n * sizeof(T));
}

template struct IndexAllocator<uint64_t>;

Store::Store(StoreLimits limits, uint64_t hash_seed)
    : limits_(limits), seed_(hash_seed), slots_(kInitialSlots, 0), mask_(kInitialSlots - 1) {
  if (limits_.max_sessions == 0) limits_.max_sessions = 1;
}

Store::~Store() {
  for (HeapEntry& e : heap_) std::free(e.s);
}

void Store::list_append(Session* s) {
  s->older = newest_;
  s->newer = nullptr;
  if (newest_)
    newest_->newer = s;
  else
    oldest_ = s;
  newest_ = s;
}

void Store::list_unlink(Session* s) {
  (s->older ? s->older->newer : oldest_) = s->newer;
  (s->newer ? s->newer->older : newest_) = s->older;
}

size_t Store::table_bytes() const {
  return slots_.capacity() * sizeof(uint64_t) + heap_.capacity() * sizeof(HeapEntry);
}

// A seeded multiply-mix hash over 8-byte words: ids are at most 64 bytes,
// and the random seed keeps probe chains out of a client's control.
uint64_t Store::hash(Bytes id) const {
  uint64_t h = seed_ ^ (uint64_t(id.size()) * 0x9e3779b97f4a7c15ULL);
  size_t i = 0;
  for (; i + 8 <= id.size(); i += 8) h = mix(h ^ load64(id.data() + i));
  if (i < id.size()) {
    uint8_t tail[8] = {};
    std::memcpy(tail, id.data() + i, id.size() - i);
    h = mix(h ^ load64(tail) ^ 0xff);
  }
  return mix(h);
}

size_t Store::find_slot(Bytes id, uint64_t h) const {
  uint32_t h32 = uint32_t(h);
  uint64_t tag = tag_of(h);
  for (size_t i = h32 & mask_;; i = (i + 1) & mask_) {
    uint64_t v = slots_[i];
    if (!v) return SIZE_MAX;
    if ((v & ~kPtrMask) != tag) continue;  // a different id: its block stays cold
    auto* s = reinterpret_cast<Session*>(v & kPtrMask);
    if (s->hash == h32 && s->id_len == id.size() && std::memcmp(s->id(), id.data(), id.size()) == 0)
      return i;
  }
}

size_t Store::slot_of(const Session* s) const {
  size_t i = s->hash & mask_;
  while ((slots_[i] & kPtrMask) != reinterpret_cast<uintptr_t>(s)) i = (i + 1) & mask_;
  return i;
}

Store::Session* Store::find(Bytes id, int64_t now) {
  step();
  if (!proto::valid_id(id)) return nullptr;
  size_t slot = find_slot(id, hash(id));
  if (slot == SIZE_MAX) return nullptr;
  auto* s = reinterpret_cast<Session*>(slots_[slot] & kPtrMask);
  if (s->expiry <= now) {
    ++counters_.expirations;
    destroy(s, slot);
    return nullptr;
  }
  return s;
}

void Store::grow() {
  decltype(slots_) old(slots_.size() * 2, 0);
  old.swap(slots_);
  mask_ = slots_.size() - 1;
  for (uint64_t v : old) {
    if (!v) continue;
    auto* s = reinterpret_cast<Session*>(v & kPtrMask);
    size_t i = s->hash & mask_;
    while (slots_[i]) i = (i + 1) & mask_;
    slots_[i] = v;
  }
}

void Store::index_insert(Session* s, uint64_t h) {
  size_t i = s->hash & mask_;
  while (slots_[i]) i = (i + 1) & mask_;
  slots_[i] = reinterpret_cast<uintptr_t>(s) | tag_of(h);
}

// Backward-shift deletion: later members of the probe run move up into the
// hole when their home slot allows, so lookups never meet tombstones.
void Store::index_erase(size_t i) {
  size_t j = i;
  while (true) {
    j = (j + 1) & mask_;
    uint64_t v = slots_[j];
    if (!v) break;
    size_t k = reinterpret_cast<Session*>(v & kPtrMask)->hash & mask_;
    bool home_in_gap = i <= j ? (i < k && k <= j) : (i < k || k <= j);
    if (!home_in_gap) {
      slots_[i] = v;
      i = j;
    }
  }
  slots_[i] = 0;
}

void Store::set_entry(size_t pos, HeapEntry e) {
  heap_[pos] = e;
  e.s->heap_pos = uint32_t(pos);
}

void Store::sift_up(size_t pos) {
  HeapEntry e = heap_[pos];
  while (pos > 0) {
    size_t parent = (pos - 1) / 2;
    if (heap_[parent].expiry <= e.expiry) break;
    set_entry(pos, heap_[parent]);
    pos = parent;
  }
  set_entry(pos, e);
}

void Store::sift_down(size_t pos) {
  HeapEntry e = heap_[pos];
  size_t n = heap_.size();
  while (true) {
    size_t child = 2 * pos + 1;
    if (child >= n) break;
    if (child + 1 < n && heap_[child + 1].expiry < heap_[child].expiry) ++child;
    if (e.expiry <= heap_[child].expiry) break;
    set_entry(pos, heap_[child]);
    pos = child;
  }
  set_entry(pos, e);
}

void Store::heap_push(Session* s, int64_t expiry) {
  heap_.push_back({expiry, s});
  sift_up(heap_.size() - 1);
}

void Store::heap_erase(size_t pos) {
  size_t last = heap_.size() - 1;
  if (pos != last) {
    set_entry(pos, heap_[last]);
    heap_.pop_back();
    // The moved entry may belong above or below its new place.
    if (pos > 0 && heap_[pos].expiry < heap_[(pos - 1) / 2].expiry)
      sift_up(pos);
    else
      sift_down(pos);
  } else {
    heap_.pop_back();
  }
}

void Store::destroy(Session* s, size_t slot) {
  index_erase(slot);
  heap_erase(s->heap_pos);
  list_unlink(s);
  bytes_ -= cost(s->id_len, s->data_len);
  std::free(s);
}

void Store::drop_top() {
  Session* s = heap_[0].s;
  ++counters_.expirations;
  destroy(s, slot_of(s));
}

void Store::evict_one(int64_t now) {
  if (heap_[0].expiry <= now) {
    drop_top();  // free room: nobody can use it any more
    return;
  }
  ++counters_.evictions;
  destroy(oldest_, slot_of(oldest_));
}

proto::AddStatus Store::add(Bytes id, Bytes data, uint32_t timeout_ms, int64_t now) {
  step();
  if (!proto::valid_id(id) || data.empty() || data.size() > proto::kMaxSessionData)
    return proto::AddStatus::notok;  // the caller checks first; never store junk
  uint64_t h = hash(id);
  if (size_t slot = find_slot(id, h); slot != SIZE_MAX) {
    auto* old = reinterpret_cast<Session*>(slots_[slot] & kPtrMask);
    if (old->expiry > now) return proto::AddStatus::matching_session;
    ++counters_.expirations;
    destroy(old, slot);
  }
  if (timeout_ms == 0) return proto::AddStatus::ok;  // expired on arrival
  size_t c = cost(id.size(), data.size());
  if (c > limits_.max_bytes) return proto::AddStatus::notok;
  while (!heap_.empty() && (heap_.size() >= limits_.max_sessions || bytes_ + c > limits_.max_bytes))
    evict_one(now);

  auto* s = static_cast<Session*>(std::malloc(sizeof(Session) + id.size() + data.size()));
  if (!s) return proto::AddStatus::notok;
  advise_heap();
  // No room for the tag: never on Linux x86-64/arm64 (48-bit user space).
  if (reinterpret_cast<uintptr_t>(s) & ~kPtrMask) {
    std::free(s);
    return proto::AddStatus::notok;
  }
  s->expiry = now + int64_t(std::min(timeout_ms, limits_.max_lifetime_ms));
  s->hash = uint32_t(h);
  s->id_len = uint8_t(id.size());
  s->data_len = uint16_t(data.size());
  std::memcpy(s->id(), id.data(), id.size());
  std::memcpy(s->data(), data.data(), data.size());
  if ((heap_.size() + 1) * 4 > slots_.size() * 3) grow();
  index_insert(s, h);
  heap_push(s, s->expiry);
  list_append(s);
  bytes_ += c;
  return proto::AddStatus::ok;
}

Bytes Store::get(Bytes id, int64_t now) {
  Session* s = find(id, now);
  if (!s) return {};
  return Bytes(s->data(), s->data_len);
}

// Two stages, so that no load waits for memory: prefetch() computes the
// hashes and starts loading every slot of the batch, and starts the blocks
// of the first kBlockAhead (their slots are read now: the only wait); each
// lookup that follows (step()) starts the block kBlockAhead further on,
// whose slot has long arrived. Only hashes are kept, never the ids, so a
// batch not looked up to the end (a connection paused or closed) leaves
// nothing dangling: at worst a useless prefetch.
void Store::prefetch(std::span<const Bytes> ids) {
  ahead_n_ = std::min(ids.size(), kAheadMax);
  ahead_pos_ = 0;
  for (size_t k = 0; k < ahead_n_; ++k) {
    ahead_[k] = proto::valid_id(ids[k]) ? hash(ids[k]) : 0;
    __builtin_prefetch(&slots_[uint32_t(ahead_[k]) & mask_]);
  }
  for (size_t k = 0; k < std::min(ahead_n_, kBlockAhead); ++k) prefetch_block(ahead_[k]);
}

void Store::step() {
  if (ahead_pos_ >= ahead_n_) return;
  size_t k = ahead_pos_++ + kBlockAhead;
  if (k < ahead_n_) prefetch_block(ahead_[k]);
}

void Store::prefetch_block(uint64_t h) const {
  // Lines of a block fetched: header, a 32-byte id and 256 bytes of data
  // (longer data is streamed by the hardware prefetcher while copying).
  constexpr size_t kBlockLines = 6;
  if (h == 0) return;
  uint64_t tag = tag_of(h);
  for (size_t i = uint32_t(h) & mask_;; i = (i + 1) & mask_) {
    uint64_t v = slots_[i];
    if (!v) return;
    if ((v & ~kPtrMask) != tag) continue;
    const char* b = reinterpret_cast<const char*>(v & kPtrMask);
    for (size_t l = 0; l < kBlockLines; ++l) __builtin_prefetch(b + 64 * l);
    return;
  }
}

bool Store::remove(Bytes id, int64_t now) {
  Session* s = find(id, now);
  if (!s) return false;
  destroy(s, slot_of(s));
  return true;
}

bool Store::have(Bytes id, int64_t now) {
  return find(id, now) != nullptr;
}

size_t Store::expire(int64_t now, size_t max) {
  size_t n = 0;
  while (n < max && !heap_.empty() && heap_[0].expiry <= now) {
    drop_top();
    ++n;
  }
  return n;
}

int64_t Store::next_expiry() const {
  return heap_.empty() ? INT64_MAX : heap_[0].expiry;
}

bool Store::check() const {
  size_t total = 0;
  for (size_t i = 0; i < heap_.size(); ++i) {
    const HeapEntry& e = heap_[i];
    if (e.s->heap_pos != i || e.s->expiry != e.expiry) return false;
    if (i > 0 && heap_[(i - 1) / 2].expiry > e.expiry) return false;
    Bytes id(e.s->id(), e.s->id_len);
    size_t slot = find_slot(id, hash(id));
    if (slot == SIZE_MAX || slots_[slot] != (reinterpret_cast<uintptr_t>(e.s) | tag_of(hash(id))))
      return false;
    total += cost(e.s->id_len, e.s->data_len);
  }
  size_t used = 0;
  for (uint64_t v : slots_) used += v != 0;
  // The insertion list holds every session once, linked both ways.
  size_t listed = 0;
  const Session* prev = nullptr;
  for (const Session* s = oldest_; s; prev = s, s = s->newer) {
    if (s->older != prev || s->heap_pos >= heap_.size() || heap_[s->heap_pos].s != s) return false;
    if (++listed > heap_.size()) return false;
  }
  return prev == newest_ && listed == heap_.size() && used == heap_.size() && total == bytes_ &&
         heap_.size() <= limits_.max_sessions && bytes_ <= limits_.max_bytes;
}

}  // namespace dc::server
