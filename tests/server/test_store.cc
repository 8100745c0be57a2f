// Unit tests of dc_server's store (daemons/server/store.*), driven with a
// hand-made clock: operations, ADD never overwriting, expiry at its exact
// boundary, eviction (expired first, then oldest stored) by count and by
// bytes, a burst of long-lived sessions that must not push out the rest,
// the -maxlifetime cap, and a randomized run against a simple reference
// model with every invariant checked along the way.
#include <cstring>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "cmocka_cpp.h"
#include "server/store.h"

using dc::proto::AddStatus;
using dc::proto::Bytes;
using dc::server::Store;
using dc::server::StoreLimits;

namespace {

Bytes b(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}
std::string str(Bytes x) {
  return std::string(x.begin(), x.end());
}

std::string data_of(size_t n, char seed) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) s[i] = char(seed + i * 13);
  return s;
}

void test_basic_ops(void**) {
  Store st({100, 1 << 20}, 42);
  assert_int_equal(int(st.add(b("id-1"), b("hello world"), 10000, 0)), int(AddStatus::ok));
  assert_string_equal(str(st.get(b("id-1"), 1)).c_str(), "hello world");
  assert_true(st.have(b("id-1"), 1));
  assert_false(st.have(b("id-2"), 1));
  assert_true(st.get(b("id-2"), 1).empty());
  // Ids compare byte for byte, length included.
  assert_false(st.have(b("id-"), 1));
  assert_false(st.have(b("id-10"), 1));
  assert_int_equal(st.sessions(), 1);
  assert_int_equal(st.bytes(), Store::cost(4, 11));
  assert_true(st.remove(b("id-1"), 2));
  assert_false(st.remove(b("id-1"), 2));
  assert_false(st.have(b("id-1"), 2));
  assert_int_equal(st.sessions(), 0);
  assert_int_equal(st.bytes(), 0);
  assert_true(st.check());
}

void test_binary_ids_and_limits(void**) {
  Store st({100, 1 << 20}, 7);
  std::string id64(64, '\0'), id1(1, '\0');
  for (size_t i = 0; i < 64; ++i) id64[i] = char(255 - i);
  std::string big = data_of(32768, 3);
  assert_int_equal(int(st.add(b(id64), b(big), 1000, 0)), int(AddStatus::ok));
  assert_int_equal(int(st.add(b(id1), b("12345"), 1000, 0)), int(AddStatus::ok));
  assert_true(st.get(b(id64), 0).size() == big.size());
  assert_memory_equal(st.get(b(id64), 0).data(), big.data(), big.size());
  assert_string_equal(str(st.get(b(id1), 0)).c_str(), "12345");
  // Ids the protocol forbids are never found (and never stored).
  assert_false(st.have(b(""), 0));
  assert_false(st.have(b(std::string(65, 'x')), 0));
  assert_int_equal(int(st.add(b(std::string(65, 'x')), b("12345"), 1000, 0)),
                   int(AddStatus::notok));
  assert_int_equal(int(st.add(b("x"), b(data_of(32769, 1)), 1000, 0)), int(AddStatus::notok));
  assert_true(st.check());
}

void test_add_never_overwrites(void**) {
  Store st({100, 1 << 20}, 1);
  assert_int_equal(int(st.add(b("k"), b("first"), 1000, 0)), int(AddStatus::ok));
  assert_int_equal(int(st.add(b("k"), b("second"), 5000, 500)), int(AddStatus::matching_session));
  assert_string_equal(str(st.get(b("k"), 999)).c_str(), "first");
  // Once expired, the id is free again.
  assert_int_equal(int(st.add(b("k"), b("third"), 1000, 1000)), int(AddStatus::ok));
  assert_string_equal(str(st.get(b("k"), 1500)).c_str(), "third");
  assert_int_equal(st.sessions(), 1);
  assert_int_equal(st.counters().expirations, 1);
  assert_true(st.check());
}

void test_expiry_boundary(void**) {
  Store st({100, 1 << 20}, 1);
  assert_int_equal(int(st.add(b("a"), b("aaaaa"), 500, 1000)), int(AddStatus::ok));
  assert_true(st.have(b("a"), 1499));
  assert_false(st.have(b("a"), 1500));  // expired exactly at add time + timeout
  assert_int_equal(st.sessions(), 0);   // and reclaimed by the lookup
  assert_int_equal(st.counters().expirations, 1);
  // A zero timeout is expired on arrival: OK, nothing kept.
  assert_int_equal(int(st.add(b("z"), b("zzzzz"), 0, 2000)), int(AddStatus::ok));
  assert_false(st.have(b("z"), 2000));
  assert_int_equal(st.sessions(), 0);
}

void test_expire_reclaims_in_order(void**) {
  Store st({100, 1 << 20}, 1);
  const uint32_t timeouts[] = {700, 100, 500, 300, 900};
  for (size_t i = 0; i < 5; ++i)
    assert_int_equal(int(st.add(b("s" + std::to_string(i)), b("data!"), timeouts[i], 0)),
                     int(AddStatus::ok));
  assert_int_equal(st.next_expiry(), 100);
  assert_int_equal(st.expire(99), 0);
  assert_int_equal(st.expire(300), 2);  // s1 (100) and s3 (300)
  assert_false(st.have(b("s1"), 0));
  assert_false(st.have(b("s3"), 0));
  assert_true(st.have(b("s2"), 0));
  assert_int_equal(st.next_expiry(), 500);
  assert_int_equal(st.expire(10000, 1), 1);  // a budget is honoured
  assert_int_equal(st.sessions(), 2);
  assert_int_equal(st.expire(10000), 2);
  assert_int_equal(st.next_expiry(), INT64_MAX);
  assert_int_equal(st.counters().expirations, 5);
  assert_int_equal(st.counters().evictions, 0);
  assert_true(st.check());
}

void test_evict_by_count(void**) {
  Store st({3, 1 << 20}, 9);
  assert_int_equal(int(st.add(b("a"), b("AAAAA"), 60000, 0)), int(AddStatus::ok));
  assert_int_equal(int(st.add(b("b"), b("BBBBB"), 10000, 0)), int(AddStatus::ok));
  assert_int_equal(int(st.add(b("c"), b("CCCCC"), 30000, 0)), int(AddStatus::ok));
  assert_int_equal(int(st.add(b("d"), b("DDDDD"), 40000, 0)), int(AddStatus::ok));
  assert_false(st.have(b("a"), 0));  // stored first, though it lives longest
  assert_true(st.have(b("b"), 0));
  assert_true(st.have(b("c"), 0));
  assert_int_equal(int(st.add(b("e"), b("EEEEE"), 50000, 0)), int(AddStatus::ok));
  assert_false(st.have(b("b"), 0));
  assert_true(st.have(b("c"), 0) && st.have(b("d"), 0) && st.have(b("e"), 0));
  assert_int_equal(st.sessions(), 3);
  assert_int_equal(st.counters().evictions, 2);
  // An expired session goes first, and counts as an expiration.
  assert_int_equal(int(st.add(b("f"), b("FFFFF"), 5000, 35000)), int(AddStatus::ok));
  assert_int_equal(st.counters().expirations, 1);  // c expired at 30000
  assert_int_equal(st.counters().evictions, 2);
  assert_true(st.have(b("d"), 35000) && st.have(b("e"), 35000) && st.have(b("f"), 35000));
  // A session removed from the middle leaves the order of the others.
  assert_true(st.remove(b("e"), 35000));
  assert_int_equal(int(st.add(b("g"), b("GGGGG"), 5000, 35000)), int(AddStatus::ok));
  assert_int_equal(int(st.add(b("h"), b("HHHHH"), 5000, 35000)), int(AddStatus::ok));
  assert_false(st.have(b("d"), 35000));  // the oldest left
  assert_true(st.have(b("f"), 35000) && st.have(b("g"), 35000) && st.have(b("h"), 35000));
  assert_true(st.check());
}

void test_evict_by_bytes(void**) {
  const size_t kData = 10000;
  const size_t one = Store::cost(2, kData);
  Store st({1000, one * 3 + one / 2}, 5);  // room for three
  const uint32_t timeouts[] = {30000, 10000, 50000};
  for (int i = 0; i < 3; ++i)
    assert_int_equal(
        int(st.add(b("k" + std::to_string(i)), b(data_of(kData, char(i))), timeouts[i], 0)),
        int(AddStatus::ok));
  assert_int_equal(st.bytes(), 3 * one);
  assert_int_equal(int(st.add(b("k3"), b(data_of(kData, 3)), 70000, 0)), int(AddStatus::ok));
  assert_false(st.have(b("k0"), 0));  // stored first
  assert_true(st.have(b("k1"), 0) && st.have(b("k2"), 0) && st.have(b("k3"), 0));
  // A bigger session evicts as many as it needs.
  assert_int_equal(int(st.add(b("k4"), b(data_of(2 * kData, 4)), 90000, 0)), int(AddStatus::ok));
  assert_false(st.have(b("k1"), 0));
  assert_false(st.have(b("k2"), 0));
  assert_true(st.have(b("k3"), 0) && st.have(b("k4"), 0));
  assert_true(st.bytes() <= st.limits().max_bytes);
  // A session larger than the whole store is refused, evicting nothing.
  Store tiny({10, 1000}, 5);
  assert_int_equal(int(tiny.add(b("x"), b("xxxxx"), 1000, 0)), int(AddStatus::ok));
  assert_int_equal(int(tiny.add(b("y"), b(data_of(2000, 1)), 1000, 0)), int(AddStatus::notok));
  assert_true(tiny.have(b("x"), 0));
  assert_true(st.check() && tiny.check());
}

// Issue 14: a store of 1,000 filled with 1,000 sessions of 7 days, then 50
// legitimate 5-minute ones. Evicting nearest-to-expiry dropped 49 of the
// 50 at once; every one of them must stay, and the long-lived sessions
// stored first are the ones that go.
void test_eviction_not_steered_by_lifetime(void**) {
  const uint32_t kWeek = 7 * 24 * 3600 * 1000u, kFiveMin = 5 * 60 * 1000;
  Store st({1000, size_t(1) << 30}, 77);
  int64_t now = 0;
  for (int i = 0; i < 1000; ++i)
    assert_int_equal(
        int(st.add(b("attacker-" + std::to_string(i)), b(data_of(200, 'a')), kWeek, now++)),
        int(AddStatus::ok));
  for (int i = 0; i < 50; ++i)
    assert_int_equal(
        int(st.add(b("user-" + std::to_string(i)), b(data_of(200, 'u')), kFiveMin, now++)),
        int(AddStatus::ok));
  int kept = 0;
  for (int i = 0; i < 50; ++i) kept += st.have(b("user-" + std::to_string(i)), now);
  assert_int_equal(kept, 50);
  for (int i = 0; i < 50; ++i) assert_false(st.have(b("attacker-" + std::to_string(i)), now));
  assert_true(st.have(b("attacker-50"), now));
  assert_int_equal(st.counters().evictions, 50);
  // Each later session still pushes out only the oldest.
  for (int i = 50; i < 100; ++i)
    assert_int_equal(
        int(st.add(b("user-" + std::to_string(i)), b(data_of(200, 'u')), kFiveMin, now++)),
        int(AddStatus::ok));
  for (int i = 0; i < 100; ++i) assert_true(st.have(b("user-" + std::to_string(i)), now));
  assert_true(st.check());
  // Expiry still reclaims the short-lived ones on time.
  assert_int_equal(st.expire(now + kFiveMin), 100);
  assert_int_equal(st.sessions(), 900);
  assert_true(st.check());
}

void test_max_lifetime_clamps(void**) {
  StoreLimits lim;
  lim.max_sessions = 100;
  lim.max_bytes = 1 << 20;
  lim.max_lifetime_ms = 60000;
  Store st(lim, 3);
  assert_int_equal(int(st.add(b("long"), b("LLLLL"), 7 * 24 * 3600 * 1000u, 1000)),
                   int(AddStatus::ok));
  assert_int_equal(int(st.add(b("short"), b("SSSSS"), 500, 1000)), int(AddStatus::ok));
  assert_int_equal(st.next_expiry(), 1500);  // shorter than the cap: as asked
  assert_true(st.have(b("long"), 60999));
  assert_false(st.have(b("long"), 61000));  // cut to 60 s
  assert_int_equal(st.counters().expirations, 1);
  assert_true(st.check());
}

void test_many_sessions(void**) {
  Store st({200000, size_t(1) << 30}, 123);
  const int n = 100000;
  for (int i = 0; i < n; ++i)
    assert_int_equal(int(st.add(b("session-" + std::to_string(i)),
                                b("payload-" + std::to_string(i)), uint32_t(1000 + i % 5000), 0)),
                     int(AddStatus::ok));
  assert_int_equal(st.sessions(), n);
  assert_true(st.check());
  for (int i = 0; i < n; i += 7)
    assert_string_equal(str(st.get(b("session-" + std::to_string(i)), 0)).c_str(),
                        ("payload-" + std::to_string(i)).c_str());
  for (int i = 0; i < n; i += 2) assert_true(st.remove(b("session-" + std::to_string(i)), 0));
  assert_int_equal(st.sessions(), n / 2);
  assert_true(st.check());
  assert_int_equal(st.expire(1000000), n / 2);
  assert_int_equal(st.sessions(), 0);
  assert_int_equal(st.bytes(), 0);
  assert_true(st.check());
}

// A reference model: a map id -> (expiry, data, when stored), evicting the
// smallest expiry when it has passed, else the one stored first. Expiries
// are kept unique so the victim is never ambiguous.
void test_randomized_against_model(void**) {
  std::mt19937 rng(12345);
  const size_t kMaxSessions = 200;
  const size_t kMaxBytes = 200 * Store::cost(8, 100);
  Store st({kMaxSessions, kMaxBytes}, 99);
  struct Entry {
    int64_t expiry;
    std::string data;
    uint64_t seq;  // order of storing
  };
  uint64_t seq = 0;
  std::map<std::string, Entry> model;
  std::map<int64_t, int> used_expiry;
  size_t model_bytes = 0;
  int64_t now = 0;
  auto model_drop = [&](std::map<std::string, Entry>::iterator it) {
    model_bytes -= Store::cost(it->first.size(), it->second.data.size());
    model.erase(it);
  };
  auto model_expired = [&](const std::string& id) {
    auto it = model.find(id);
    if (it != model.end() && it->second.expiry <= now) model_drop(it);
  };
  for (int step = 0; step < 30000; ++step) {
    now += rng() % 20;
    std::string id = "id" + std::to_string(rng() % 1000);
    switch (rng() % 5) {
      case 0:
      case 1: {
        std::string data = data_of(5 + rng() % 200, char(rng()));
        uint32_t timeout;
        do timeout = 1 + rng() % 20000;
        while (used_expiry.count(now + timeout));
        model_expired(id);
        AddStatus want = AddStatus::ok;
        if (model.count(id)) {
          want = AddStatus::matching_session;
        } else {
          size_t c = Store::cost(id.size(), data.size());
          while (!model.empty() && (model.size() >= kMaxSessions || model_bytes + c > kMaxBytes)) {
            auto nearest = model.begin(), oldest = model.begin();
            for (auto it = model.begin(); it != model.end(); ++it) {
              if (it->second.expiry < nearest->second.expiry) nearest = it;
              if (it->second.seq < oldest->second.seq) oldest = it;
            }
            model_drop(nearest->second.expiry <= now ? nearest : oldest);
          }
          model[id] = {now + timeout, data, seq++};
          model_bytes += c;
          used_expiry[now + timeout] = 1;
        }
        assert_int_equal(int(st.add(b(id), b(data), timeout, now)), int(want));
        break;
      }
      case 2: {
        model_expired(id);
        auto it = model.find(id);
        std::string got = str(st.get(b(id), now));
        assert_string_equal(got.c_str(), it == model.end() ? "" : it->second.data.c_str());
        break;
      }
      case 3: {
        model_expired(id);
        auto it = model.find(id);
        bool want = it != model.end();
        if (want) model_drop(it);
        assert_int_equal(st.remove(b(id), now), want);
        break;
      }
      case 4: {
        model_expired(id);
        assert_int_equal(st.have(b(id), now), model.count(id) == 1);
        break;
      }
    }
    if (step % 1000 == 0) {
      // Reclaim everything expired on both sides and compare wholesale.
      st.expire(now);
      for (auto it = model.begin(); it != model.end();)
        if (it->second.expiry <= now)
          model_drop(it++);
        else
          ++it;
      assert_int_equal(st.sessions(), model.size());
      assert_int_equal(st.bytes(), model_bytes);
      assert_true(st.check());
    }
  }
  assert_true(st.counters().evictions > 0);
  assert_true(st.counters().expirations > 0);
}

}  // namespace

int main() {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_basic_ops),
      cmocka_unit_test(test_binary_ids_and_limits),
      cmocka_unit_test(test_add_never_overwrites),
      cmocka_unit_test(test_expiry_boundary),
      cmocka_unit_test(test_expire_reclaims_in_order),
      cmocka_unit_test(test_evict_by_count),
      cmocka_unit_test(test_evict_by_bytes),
      cmocka_unit_test(test_eviction_not_steered_by_lifetime),
      cmocka_unit_test(test_max_lifetime_clamps),
      cmocka_unit_test(test_many_sessions),
      cmocka_unit_test(test_randomized_against_model),
  };
  return cmocka_run_group_tests(tests, nullptr, nullptr);
}
