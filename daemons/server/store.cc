// dc_server's session store: see store.h.
#include "server/store.h"

#include <cstdlib>
#include <cstring>

namespace dc::server {

// The one block of a session: this header, then id_len bytes of id, then
// data_len bytes of data. The expiry is kept here too (for lookups) and in
// the heap entry (so sifting never touches the blocks).
struct Store::Session {
  int64_t expiry;
  uint32_t heap_pos;
  uint32_t hash;
  uint16_t data_len;
  uint8_t id_len;

  uint8_t* id() { return reinterpret_cast<uint8_t*>(this) + sizeof(Session); }
  uint8_t* data() { return id() + id_len; }
};

namespace {

constexpr size_t kInitialSlots = 1024;

uint64_t load64(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}

uint64_t mix(uint64_t x) {
  // splitmix64's finalizer
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  x ^= x >> 31;
  return x;
}

}  // namespace

Store::Store(StoreLimits limits, uint64_t hash_seed)
    : limits_(limits), seed_(hash_seed), slots_(kInitialSlots, nullptr), mask_(kInitialSlots - 1) {
  if (limits_.max_sessions == 0) limits_.max_sessions = 1;
}

Store::~Store() {
  for (HeapEntry& e : heap_) std::free(e.s);
}

size_t Store::table_bytes() const {
  return slots_.capacity() * sizeof(Session*) + heap_.capacity() * sizeof(HeapEntry);
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
  for (size_t i = h32 & mask_;; i = (i + 1) & mask_) {
    Session* s = slots_[i];
    if (!s) return SIZE_MAX;
    if (s->hash == h32 && s->id_len == id.size() && std::memcmp(s->id(), id.data(), id.size()) == 0)
      return i;
  }
}

Store::Session* Store::find(Bytes id, int64_t now) {
  if (!proto::valid_id(id)) return nullptr;
  size_t slot = find_slot(id, hash(id));
  if (slot == SIZE_MAX) return nullptr;
  Session* s = slots_[slot];
  if (s->expiry <= now) {
    ++counters_.expirations;
    destroy(s, slot);
    return nullptr;
  }
  return s;
}

bool Store::grow() {
  std::vector<Session*> old(slots_.size() * 2, nullptr);
  old.swap(slots_);
  mask_ = slots_.size() - 1;
  for (Session* s : old)
    if (s) index_insert(s);
  return true;
}

void Store::index_insert(Session* s) {
  size_t i = s->hash & mask_;
  while (slots_[i]) i = (i + 1) & mask_;
  slots_[i] = s;
}

// Backward-shift deletion: later members of the probe run move up into the
// hole when their home slot allows, so lookups never meet tombstones.
void Store::index_erase(size_t i) {
  size_t j = i;
  while (true) {
    j = (j + 1) & mask_;
    Session* s = slots_[j];
    if (!s) break;
    size_t k = s->hash & mask_;
    bool home_in_gap = i <= j ? (i < k && k <= j) : (i < k || k <= j);
    if (!home_in_gap) {
      slots_[i] = s;
      i = j;
    }
  }
  slots_[i] = nullptr;
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
  bytes_ -= cost(s->id_len, s->data_len);
  std::free(s);
}

void Store::drop_top(int64_t now) {
  Session* s = heap_[0].s;
  if (heap_[0].expiry <= now)
    ++counters_.expirations;
  else
    ++counters_.evictions;
  size_t i = s->hash & mask_;
  while (slots_[i] != s) i = (i + 1) & mask_;
  destroy(s, i);
}

proto::AddStatus Store::add(Bytes id, Bytes data, uint32_t timeout_ms, int64_t now) {
  if (!proto::valid_id(id) || data.empty() || data.size() > proto::kMaxSessionData)
    return proto::AddStatus::notok;  // the caller checks first; never store junk
  uint64_t h = hash(id);
  if (size_t slot = find_slot(id, h); slot != SIZE_MAX) {
    Session* old = slots_[slot];
    if (old->expiry > now) return proto::AddStatus::matching_session;
    ++counters_.expirations;
    destroy(old, slot);
  }
  if (timeout_ms == 0) return proto::AddStatus::ok;  // expired on arrival
  size_t c = cost(id.size(), data.size());
  if (c > limits_.max_bytes) return proto::AddStatus::notok;
  // Make room: the heap's top is the session nearest to expiry (expired
  // ones first, since their expiry is the smallest).
  while (!heap_.empty() && (heap_.size() >= limits_.max_sessions || bytes_ + c > limits_.max_bytes))
    drop_top(now);

  auto* s = static_cast<Session*>(std::malloc(sizeof(Session) + id.size() + data.size()));
  if (!s) return proto::AddStatus::notok;
  s->expiry = now + int64_t(timeout_ms);
  s->hash = uint32_t(h);
  s->id_len = uint8_t(id.size());
  s->data_len = uint16_t(data.size());
  std::memcpy(s->id(), id.data(), id.size());
  std::memcpy(s->data(), data.data(), data.size());
  if ((heap_.size() + 1) * 4 > slots_.size() * 3) grow();
  index_insert(s);
  heap_push(s, s->expiry);
  bytes_ += c;
  return proto::AddStatus::ok;
}

Bytes Store::get(Bytes id, int64_t now) {
  Session* s = find(id, now);
  if (!s) return {};
  return Bytes(s->data(), s->data_len);
}

bool Store::remove(Bytes id, int64_t now) {
  Session* s = find(id, now);
  if (!s) return false;
  size_t i = s->hash & mask_;
  while (slots_[i] != s) i = (i + 1) & mask_;
  destroy(s, i);
  return true;
}

bool Store::have(Bytes id, int64_t now) {
  return find(id, now) != nullptr;
}

size_t Store::expire(int64_t now, size_t max) {
  size_t n = 0;
  while (n < max && !heap_.empty() && heap_[0].expiry <= now) {
    drop_top(now);
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
    if (slot == SIZE_MAX || slots_[slot] != e.s) return false;
    total += cost(e.s->id_len, e.s->data_len);
  }
  size_t used = 0;
  for (Session* s : slots_) used += s != nullptr;
  return used == heap_.size() && total == bytes_ && heap_.size() <= limits_.max_sessions &&
         bytes_ <= limits_.max_bytes;
}

}  // namespace dc::server
