// Integration tests of dc_server's protocol behaviour, against the real
// binary on a temporary UNIX socket and a free loopback TCP port: every
// operation's answers, every ADD status, expiry, eviction by count and by
// bytes (oldest stored first, not steered by lifetimes), -maxlifetime,
// corrupt input closing only its own
// connection, 1,000 pipelined requests in one write, and a 32 KB session.
#include <string>
#include <vector>

#include "server_fixture.h"

using namespace dc;
using namespace dc::test;
using proto::Op;

namespace {

constexpr int kOk = 0, kNotOk = 1;
constexpr int kCorrupt = 100, kMatching = 101, kTimeoutRange = 102, kIdRange = 103,
              kDataRange = 104;

void check_ops(RawConn& c) {
  assert_int_equal(c.have("alpha"), kNotOk);
  assert_string_equal(c.get("alpha")->c_str(), "");  // a miss
  assert_int_equal(c.remove("alpha"), kNotOk);
  assert_int_equal(c.add("alpha", "session-data-alpha", 60000), kOk);
  assert_int_equal(c.have("alpha"), kOk);
  assert_string_equal(c.get("alpha")->c_str(), "session-data-alpha");
  assert_int_equal(c.remove("alpha"), kOk);
  assert_int_equal(c.have("alpha"), kNotOk);
  assert_int_equal(c.remove("alpha"), kNotOk);
  assert_string_equal(c.get("alpha")->c_str(), "");
  // GET of a miss is exactly one NOTOK byte.
  auto raw = c.call(Op::get, bytes("alpha"));
  assert_true(raw.has_value());
  assert_int_equal(raw->size(), 1);
  assert_int_equal((*raw)[0], kNotOk);
}

void test_ops_unix_and_tcp(void**) {
  ServerProc s({}, /*tcp=*/true);
  RawConn u = s.client();
  check_ops(u);
  RawConn t = s.client(true);
  check_ops(t);
  // One store behind both listeners.
  assert_int_equal(u.add("shared", "from-the-unix-socket", 60000), kOk);
  assert_string_equal(t.get("shared")->c_str(), "from-the-unix-socket");
  assert_int_equal(t.remove("shared"), kOk);
  assert_int_equal(u.have("shared"), kNotOk);
}

void test_add_statuses(void**) {
  ServerProc s;
  RawConn c = s.client();
  assert_int_equal(c.add("id", "12345", 604800000), kOk);             // 7 days: the limit
  assert_int_equal(c.add("id2", "12345", 604800001), kTimeoutRange);  // just over
  assert_int_equal(c.add("id", "other", 1000), kMatching);            // never overwritten
  assert_string_equal(c.get("id")->c_str(), "12345");
  assert_int_equal(c.add("", "12345", 1000), kIdRange);
  assert_int_equal(c.add(std::string(65, 'i'), "12345", 1000), kIdRange);
  assert_int_equal(c.add(std::string(64, 'i'), "12345", 1000), kOk);
  for (size_t n = 1; n <= 4; ++n)  // stored data nobody could GET back
    assert_int_equal(c.add("short" + std::to_string(n), std::string(n, 'd'), 1000), kDataRange);
  assert_int_equal(c.have("short4"), kNotOk);
  // id_len leaving no room for data: CORRUPT (checked before ID_RANGE).
  std::vector<uint8_t> p(8);
  proto::add_prefix(1000, 3, p.data());
  p.insert(p.end(), {'a', 'b', 'c'});
  auto r = c.call(Op::add, p);
  assert_true(r && r->size() == 1);
  assert_int_equal((*r)[0], kCorrupt);
  proto::add_prefix(1000, 0xffffffff, p.data());
  r = c.call(Op::add, p);
  assert_true(r && r->size() == 1);
  assert_int_equal((*r)[0], kCorrupt);
  // TIMEOUT_RANGE is checked first of all.
  proto::add_prefix(604800001, 0, p.data());
  r = c.call(Op::add, p);
  assert_true(r && r->size() == 1);
  assert_int_equal((*r)[0], kTimeoutRange);
  // The connection is still in order after all the rejections.
  assert_int_equal(c.have("id"), kOk);
  // A payload shorter than the 8-byte prefix closes the connection.
  assert_true(c.send(Op::add, 77, bytes("1234567")));
  assert_true(c.wait_closed(5000));
  RawConn d = s.client();
  assert_int_equal(d.have("id"), kOk);
}

void test_expiry(void**) {
  ServerProc s;
  RawConn c = s.client();
  assert_int_equal(c.add("short", "expires-soon", 500), kOk);
  assert_int_equal(c.add("long", "stays-a-minute", 60000), kOk);
  usleep(1500 * 1000);  // three times the timeout
  assert_int_equal(c.have("short"), kNotOk);
  assert_string_equal(c.get("short")->c_str(), "");
  assert_int_equal(c.add("short", "a-new-session", 60000), kOk);  // the id is free again
  assert_string_equal(c.get("short")->c_str(), "a-new-session");
  assert_string_equal(c.get("long")->c_str(), "stays-a-minute");
}

void test_evict_at_count_limit(void**) {
  ServerProc s({"-sessions", "3"});
  RawConn c = s.client();
  // Expiries far apart (seconds), so the order never depends on speed.
  assert_int_equal(c.add("a", "aaaaa", 600000), kOk);
  assert_int_equal(c.add("b", "bbbbb", 100000), kOk);
  assert_int_equal(c.add("c", "ccccc", 300000), kOk);
  assert_int_equal(c.add("d", "ddddd", 400000), kOk);
  assert_int_equal(c.have("a"), kNotOk);  // stored first (though it lives longest)
  assert_int_equal(c.have("b"), kOk);
  assert_int_equal(c.have("c"), kOk);
  assert_int_equal(c.have("d"), kOk);
  assert_int_equal(c.add("e", "eeeee", 500000), kOk);
  assert_int_equal(c.have("b"), kNotOk);  // then the next stored
  assert_int_equal(c.have("c"), kOk);
  assert_int_equal(c.have("d"), kOk);
  assert_int_equal(c.have("e"), kOk);
}

void test_evict_at_byte_limit(void**) {
  // Each session is charged id + data + 80 bytes: 2 + 10000 + 80. Six fit
  // in 64K (60492), a seventh does not.
  ServerProc s({"-memory", "64K"});
  RawConn c = s.client();
  const int timeouts_s[] = {300, 100, 500, 200, 600, 400};
  for (int i = 0; i < 6; ++i)
    assert_int_equal(c.add("k" + std::to_string(i), std::string(10000, char('a' + i)),
                           uint32_t(timeouts_s[i]) * 1000),
                     kOk);
  for (int i = 0; i < 6; ++i) assert_int_equal(c.have("k" + std::to_string(i)), kOk);
  assert_int_equal(c.add("k6", std::string(10000, 'g'), 700000), kOk);
  assert_int_equal(c.have("k0"), kNotOk);  // stored first
  assert_int_equal(c.add("k7", std::string(10000, 'h'), 800000), kOk);
  assert_int_equal(c.have("k1"), kNotOk);  // stored next (though nearest to expiry)
  for (int i : {2, 3, 4, 5, 6, 7}) assert_int_equal(c.have("k" + std::to_string(i)), kOk);
  assert_string_equal(c.get("k7")->c_str(), std::string(10000, 'h').c_str());
}

// Issue 14: 1,000 sessions of 7 days fill a store of 1,000, then 50 of 5
// minutes come: all 50 stay (nearest-to-expiry eviction kept 1 of them).
// And -maxlifetime cuts what a client asks for.
void test_eviction_not_steered_and_maxlifetime(void**) {
  ServerProc s({"-sessions", "1000", "-maxlifetime", "400"});
  RawConn c = s.client();
  const uint32_t kWeek = 7 * 24 * 3600 * 1000u;
  for (int i = 0; i < 1000; ++i)
    assert_int_equal(c.add("attacker-" + std::to_string(i), "long-lived", kWeek), kOk);
  for (int i = 0; i < 50; ++i)
    assert_int_equal(c.add("user-" + std::to_string(i), "five-minutes", 300000), kOk);
  int kept = 0;
  for (int i = 0; i < 50; ++i) kept += c.have("user-" + std::to_string(i)) == kOk;
  assert_int_equal(kept, 50);
  assert_int_equal(c.have("attacker-49"), kNotOk);
  assert_int_equal(c.have("attacker-50"), kOk);
  // Everything was cut to 400 ms.
  usleep(600 * 1000);
  assert_int_equal(c.have("attacker-999"), kNotOk);
  assert_int_equal(c.have("user-0"), kNotOk);
}

void test_corrupt_closes_only_that_connection(void**) {
  ServerProc s({}, true);
  RawConn good = s.client();
  assert_int_equal(good.add("keep", "kept-session", 60000), kOk);

  struct Case {
    const char* what;
    std::vector<uint8_t> bytes;
  };
  std::vector<Case> cases;
  auto base = request(Op::have, 1, bytes("keep"));
  {
    auto v = base;
    v[1] = 0x12;  // version 0x0012
    cases.push_back({"bad version", v});
  }
  {
    auto v = base;
    v[11] = 0;  // not final, yet shorter than 2048
    cases.push_back({"short non-final frame", v});
  }
  {
    auto v = base;
    v[10] = 9;  // unknown operation
    cases.push_back({"unknown operation", v});
  }
  {
    auto v = base;
    v[12] = 0x08;  // data_len 2052
    v[13] = 0x04;
    cases.push_back({"data_len over 2048", v});
  }
  {
    auto v = base;
    v[4] = 1;  // a response sent to the server
    cases.push_back({"a response", v});
  }
  for (bool tcp : {false, true}) {
    for (const Case& k : cases) {
      RawConn bad = s.client(tcp);
      assert_int_equal(bad.have("keep"), kOk);  // a working connection first
      assert_true(bad.send_raw(k.bytes));
      if (!bad.wait_closed(5000)) fail_msg("not closed after: %s", k.what);
      // The other connection keeps its data and keeps working.
      assert_string_equal(good.get("keep")->c_str(), "kept-session");
      assert_int_equal(good.add("more-" + std::string(k.what) + (tcp ? "t" : "u"), "12345", 60000),
                       kOk);
    }
  }
  assert_true(s.proc().running());
}

void test_pipelined_thousand(void**) {
  ServerProc s({}, true);
  for (bool tcp : {false, true}) {
    RawConn c = s.client(tcp);
    // 1,000 requests in one write: 400 ADDs, then for each id a GET and a
    // HAVE (skipping some), answers expected in order with their uids.
    std::vector<uint8_t> wire;
    struct Want {
      uint32_t uid;
      Op op;
      std::string payload;
    };
    std::vector<Want> want;
    uint32_t uid = 1000;
    std::string pre = tcp ? "t" : "u";
    for (int i = 0; i < 400; ++i) {
      std::string id = pre + "pipe-" + std::to_string(i);
      std::string data = "data-of-" + id;
      auto p = add_payload(id, data, 60000);
      auto r = request(Op::add, uid, p);
      wire.insert(wire.end(), r.begin(), r.end());
      want.push_back({uid++, Op::add, std::string(1, char(kOk))});
    }
    for (int i = 0; i < 300; ++i) {
      std::string id = pre + "pipe-" + std::to_string(i * 2);  // half are misses past 400
      auto r = request(Op::get, uid, bytes(id));
      wire.insert(wire.end(), r.begin(), r.end());
      want.push_back(
          {uid++, Op::get, i * 2 < 400 ? "data-of-" + id : std::string(1, char(kNotOk))});
      auto h = request(Op::have, uid, bytes(id));
      wire.insert(wire.end(), h.begin(), h.end());
      want.push_back({uid++, Op::have, std::string(1, char(i * 2 < 400 ? kOk : kNotOk))});
    }
    assert_int_equal(want.size(), 1000);
    assert_true(c.send_raw(wire, 10000));
    for (const Want& w : want) {
      std::vector<uint8_t> payload;
      auto m = c.recv(payload, 10000);
      if (!m) fail_msg("answer %u missing: %s", w.uid, c.error().c_str());
      assert_true(m->is_response);
      assert_int_equal(m->uid, w.uid);
      assert_int_equal(int(m->op), int(w.op));
      assert_string_equal(std::string(payload.begin(), payload.end()).c_str(), w.payload.c_str());
    }
  }
}

void test_32k_session_round_trip(void**) {
  ServerProc s({}, true);
  // The largest session a message can carry: 32768 payload bytes less the
  // 8-byte prefix and the id. Request and answer both take 16 frames.
  std::string id(32, 'q');
  std::string data(proto::kMaxPayload - proto::kAddPrefix - id.size(), '\0');
  for (size_t i = 0; i < data.size(); ++i) data[i] = char((i * 31) ^ (i >> 7));
  for (bool tcp : {false, true}) {
    RawConn c = s.client(tcp);
    std::string myid = id + (tcp ? "t" : "u");
    std::string mydata = data.substr(1);  // the id grew by one byte
    assert_int_equal(c.add(myid, mydata, 60000), kOk);
    auto got = c.call(Op::get, bytes(myid), 5000);
    assert_true(got.has_value());
    assert_int_equal(got->size(), mydata.size());
    assert_memory_equal(got->data(), mydata.data(), mydata.size());
  }
  // Split at an odd place into many small writes: the server reassembles.
  RawConn c = s.client();
  auto p = add_payload("slow-id", std::string(5000, 's'), 60000);
  auto wire = request(Op::add, 5, p);
  for (size_t off = 0; off < wire.size(); off += 777) {
    size_t n = std::min<size_t>(777, wire.size() - off);
    assert_true(c.send_raw(proto::Bytes(wire.data() + off, n)));
    usleep(1000);
  }
  std::vector<uint8_t> payload;
  auto m = c.recv(payload, 5000);
  assert_true(m && m->uid == 5 && payload.size() == 1 && payload[0] == kOk);
  assert_int_equal(c.have("slow-id"), kOk);
}

}  // namespace

int main() {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_ops_unix_and_tcp),
      cmocka_unit_test(test_add_statuses),
      cmocka_unit_test(test_expiry),
      cmocka_unit_test(test_evict_at_count_limit),
      cmocka_unit_test(test_evict_at_byte_limit),
      cmocka_unit_test(test_eviction_not_steered_and_maxlifetime),
      cmocka_unit_test(test_corrupt_closes_only_that_connection),
      cmocka_unit_test(test_pipelined_thousand),
      cmocka_unit_test(test_32k_session_round_trip),
  };
  return cmocka_run_group_tests(tests, nullptr, nullptr);
}
