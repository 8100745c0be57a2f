// Unit tests of the wire codec (lib/proto.*): round trips, every split of
// the input, one test per corrupt case of PROTOCOL.md, hand-written golden
// vectors, and the ADD/GET payload rules.
#include "cmocka_cpp.h"

#include <cstring>
#include <vector>

#include "proto.h"

using namespace dc::proto;

namespace {

std::vector<uint8_t> pattern(size_t n, uint8_t seed) {
  std::vector<uint8_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = uint8_t(seed + i * 7 + (i >> 8));
  return v;
}

struct Got {
  Message m;
  std::vector<uint8_t> payload;  // copied, since m.payload is borrowed
};

// Feeds `stream` to a fresh decoder in chunks cut at `cuts` (ascending
// positions) and collects every message. Fails the test on corruption or on
// a need_more that did not consume its whole chunk.
std::vector<Got> decode_chunks(const std::vector<uint8_t>& stream, const std::vector<size_t>& cuts) {
  Decoder d;
  std::vector<Got> out;
  size_t start = 0;
  std::vector<size_t> ends = cuts;
  ends.push_back(stream.size());
  for (size_t end : ends) {
    Bytes chunk(stream.data() + start, end - start);
    while (true) {
      Message m;
      DecodeResult r = d.decode(chunk, m);
      assert_int_not_equal(int(r.status), int(DecodeStatus::corrupt));
      if (r.status == DecodeStatus::need_more) {
        // The decoder buffers partial input itself: nothing is left over.
        assert_int_equal(r.consumed, chunk.size());
        break;
      }
      out.push_back({m, std::vector<uint8_t>(m.payload.begin(), m.payload.end())});
      chunk = chunk.subspan(r.consumed);
      if (chunk.empty()) break;
    }
    start = end;
  }
  assert_true(d.idle());
  return out;
}

std::vector<uint8_t> encode_one(const Message& m) {
  std::vector<uint8_t> v;
  assert_true(append(v, m));
  assert_int_equal(v.size(), encoded_size(m.payload.size()));
  return v;
}

const size_t kSizes[] = {0, 1, 2047, 2048, 2049, 32768};
const Op kOps[] = {Op::add, Op::get, Op::remove, Op::have};

void test_round_trip_every_op_and_size(void**) {
  for (Op op : kOps) {
    for (int resp = 0; resp < 2; ++resp) {
      for (size_t n : kSizes) {
        auto payload = pattern(n, uint8_t(n));
        Message m;
        m.op = op;
        m.is_response = resp;
        m.uid = 0xdeadbeef ^ uint32_t(n);
        m.payload = payload;
        auto wire = encode_one(m);
        auto got = decode_chunks(wire, {});
        assert_int_equal(got.size(), 1);
        assert_int_equal(int(got[0].m.op), int(op));
        assert_int_equal(got[0].m.is_response, resp);
        assert_int_equal(got[0].m.uid, m.uid);
        assert_int_equal(got[0].m.proto_level, kProtoLevel);
        assert_true(got[0].payload == payload);
      }
    }
  }
}

void test_payload_over_limit_rejected(void**) {
  auto payload = pattern(32769, 1);
  Message m;
  m.payload = payload;
  std::vector<uint8_t> v;
  assert_false(append(v, m));
  assert_int_equal(v.size(), 0);
  assert_int_equal(encoded_size(32769), 0);
  std::vector<uint8_t> big(40000);
  Bytes parts[1] = {payload};
  assert_int_equal(encode(m, parts, big), 0);
}

void test_encode_needs_room(void**) {
  auto payload = pattern(100, 1);
  Message m;
  m.payload = payload;
  std::vector<uint8_t> small(encoded_size(100) - 1);
  Bytes parts[1] = {payload};
  assert_int_equal(encode(m, parts, small), 0);
}

void test_encode_gathers_parts(void**) {
  // Parts that straddle frame boundaries give the same bytes as one payload.
  auto whole = pattern(5000, 3);
  Bytes parts[3] = {Bytes(whole).subspan(0, 7), Bytes(whole).subspan(7, 2100),
                    Bytes(whole).subspan(2107)};
  Message m;
  m.uid = 9;
  m.payload = whole;
  std::vector<uint8_t> a, b;
  assert_true(append(a, m));
  assert_true(append(b, m, parts));
  assert_true(a == b);
}

void test_one_byte_at_a_time(void**) {
  for (size_t n : kSizes) {
    auto payload = pattern(n, 5);
    Message m;
    m.op = Op::get;
    m.uid = 77;
    m.payload = payload;
    auto wire = encode_one(m);
    Decoder d;
    for (size_t i = 0; i < wire.size(); ++i) {
      Message out;
      DecodeResult r = d.decode(Bytes(&wire[i], 1), out);
      assert_int_equal(r.consumed, 1);
      if (i + 1 < wire.size()) {
        assert_int_equal(int(r.status), int(DecodeStatus::need_more));
      } else {
        assert_int_equal(int(r.status), int(DecodeStatus::message));
        assert_int_equal(out.uid, 77);
        assert_true(std::vector<uint8_t>(out.payload.begin(), out.payload.end()) == payload);
      }
    }
    assert_true(d.idle());
  }
}

void test_split_at_every_position(void**) {
  // Three messages back to back: multi-frame, tiny, empty.
  std::vector<uint8_t> stream;
  auto p1 = pattern(4100, 1), p2 = pattern(5, 2);
  Message a, b, c;
  a.uid = 1, a.op = Op::add, a.payload = p1;
  b.uid = 2, b.op = Op::get, b.payload = p2, b.is_response = true;
  c.uid = 3, c.op = Op::have;
  assert_true(append(stream, a) && append(stream, b) && append(stream, c));
  for (size_t cut = 0; cut <= stream.size(); ++cut) {
    auto got = decode_chunks(stream, {cut});
    assert_int_equal(got.size(), 3);
    assert_int_equal(got[0].m.uid, 1);
    assert_true(got[0].payload == p1);
    assert_int_equal(got[1].m.uid, 2);
    assert_true(got[1].m.is_response);
    assert_true(got[1].payload == p2);
    assert_int_equal(got[2].m.uid, 3);
    assert_int_equal(got[2].payload.size(), 0);
  }
  // And two cuts at once over a coarser grid.
  for (size_t i = 0; i <= stream.size(); i += 97)
    for (size_t j = i; j <= stream.size(); j += 211)
      assert_int_equal(decode_chunks(stream, {i, j}).size(), 3);
}

// ---- corrupt cases, one per row of PROTOCOL.md ----

std::vector<uint8_t> frame(uint32_t level, uint8_t resp, uint32_t uid, uint8_t cls, uint8_t op,
                           uint8_t complete, uint16_t len, size_t actual_data) {
  std::vector<uint8_t> f(kHeaderSize + actual_data, 0xab);
  put_u32(&f[0], level);
  f[4] = resp;
  put_u32(&f[5], uid);
  f[9] = cls;
  f[10] = op;
  f[11] = complete;
  put_u16(&f[12], len);
  return f;
}

// Decodes `stream` whole and byte by byte; both must report `want`.
void expect_corrupt(const std::vector<uint8_t>& stream, Corrupt want) {
  Decoder d;
  Bytes in(stream);
  Message m;
  DecodeResult r{};
  while (!in.empty()) {
    r = d.decode(in, m);
    if (r.status != DecodeStatus::message) break;
    in = in.subspan(r.consumed);
  }
  assert_int_equal(int(r.status), int(DecodeStatus::corrupt));
  assert_int_equal(int(r.reason), int(want));
  // A dead decoder stays dead.
  uint8_t more[20] = {};
  assert_int_equal(int(d.decode(more, m).status), int(DecodeStatus::corrupt));
  assert_string_not_equal(to_string(want), to_string(Corrupt::none));

  Decoder d2;
  bool seen = false;
  for (uint8_t byte : stream) {
    r = d2.decode(Bytes(&byte, 1), m);
    if (r.status == DecodeStatus::corrupt) {
      seen = true;
      break;
    }
  }
  assert_true(seen);
  assert_int_equal(int(r.reason), int(want));
}

void test_corrupt_version(void**) {
  expect_corrupt(frame(0x00120000, 0, 1, 0, 1, 1, 3, 3), Corrupt::bad_version);
  expect_corrupt(frame(0x00100000, 0, 1, 0, 1, 1, 3, 3), Corrupt::bad_version);
}

void test_any_patch_level_accepted(void**) {
  auto f = frame(0x0011abcd, 0, 1, 0, 1, 1, 3, 3);
  auto got = decode_chunks(f, {});
  assert_int_equal(got.size(), 1);
  assert_int_equal(got[0].m.proto_level, 0x0011abcd);
}

void test_corrupt_is_response(void**) {
  expect_corrupt(frame(kProtoLevel, 2, 1, 0, 1, 1, 3, 3), Corrupt::bad_is_response);
}

void test_corrupt_complete(void**) {
  expect_corrupt(frame(kProtoLevel, 0, 1, 0, 1, 2, 3, 3), Corrupt::bad_complete);
}

void test_corrupt_class(void**) {
  expect_corrupt(frame(kProtoLevel, 0, 1, 1, 1, 1, 3, 3), Corrupt::bad_class);
}

void test_corrupt_operation(void**) {
  expect_corrupt(frame(kProtoLevel, 0, 1, 0, 4, 1, 3, 3), Corrupt::bad_operation);
  expect_corrupt(frame(kProtoLevel, 0, 1, 0, 255, 1, 3, 3), Corrupt::bad_operation);
}

void test_corrupt_data_len(void**) {
  expect_corrupt(frame(kProtoLevel, 0, 1, 0, 1, 1, 2049, 0), Corrupt::data_len_too_big);
  expect_corrupt(frame(kProtoLevel, 0, 1, 0, 1, 1, 0xffff, 0), Corrupt::data_len_too_big);
}

void test_corrupt_short_nonfinal(void**) {
  expect_corrupt(frame(kProtoLevel, 0, 1, 0, 1, 0, 1, 1), Corrupt::short_nonfinal_frame);
  expect_corrupt(frame(kProtoLevel, 0, 1, 0, 1, 0, 2047, 2047), Corrupt::short_nonfinal_frame);
}

void test_corrupt_too_many_frames(void**) {
  // 16 full non-final frames announce a 17th: corrupt at the 16th header.
  std::vector<uint8_t> s;
  for (int i = 0; i < 16; ++i) {
    auto f = frame(kProtoLevel, 0, 9, 0, 0, 0, 2048, 2048);
    s.insert(s.end(), f.begin(), f.end());
  }
  expect_corrupt(s, Corrupt::too_many_frames);
  // 15 full frames and a final 16th is the largest legal message.
  std::vector<uint8_t> ok;
  for (int i = 0; i < 16; ++i) {
    auto f = frame(kProtoLevel, 0, 9, 0, 0, i == 15, 2048, 2048);
    ok.insert(ok.end(), f.begin(), f.end());
  }
  auto got = decode_chunks(ok, {});
  assert_int_equal(got.size(), 1);
  assert_int_equal(got[0].payload.size(), 32768);
}

void test_corrupt_continuation_mismatch(void**) {
  auto first = frame(kProtoLevel, 0, 5, 0, 0, 0, 2048, 2048);
  for (int which = 0; which < 3; ++which) {
    auto next = frame(kProtoLevel, 0, which == 0 ? 6 : 5, 0, which == 1 ? 1 : 0, 1, 1, 1);
    if (which == 2) next[4] = 1;  // direction flips mid-message
    std::vector<uint8_t> s = first;
    s.insert(s.end(), next.begin(), next.end());
    expect_corrupt(s, Corrupt::continuation_mismatch);
  }
}

void test_corrupt_after_good_message(void**) {
  // Corruption later in a stream still yields the earlier good message.
  Message m;
  m.uid = 4;
  std::vector<uint8_t> s = encode_one(m);
  auto bad = frame(0x22220000, 0, 1, 0, 1, 1, 0, 0);
  s.insert(s.end(), bad.begin(), bad.end());
  Decoder d;
  Message out;
  DecodeResult r = d.decode(s, out);
  assert_int_equal(int(r.status), int(DecodeStatus::message));
  assert_int_equal(out.uid, 4);
  r = d.decode(Bytes(s).subspan(r.consumed), out);
  assert_int_equal(int(r.status), int(DecodeStatus::corrupt));
  assert_int_equal(int(r.reason), int(Corrupt::bad_version));
}

// ---- golden vectors, written by hand from PROTOCOL.md's table ----

struct Golden {
  const char* name;
  std::vector<uint8_t> wire;
  bool is_response;
  uint32_t uid;
  Op op;
  std::vector<uint8_t> payload;
};

std::vector<Golden> goldens() {
  return {
      {"ADD request: uid 0x01020304, timeout 300000 ms, id \"abc\", data \"hello\"",
       {0x00, 0x11, 0x00, 0x00,  // proto_level 0x00110000
        0x00,                    // request
        0x01, 0x02, 0x03, 0x04,  // uid
        0x00, 0x00,              // class user, op ADD
        0x01,                    // complete
        0x00, 0x10,              // data_len 16
        0x00, 0x04, 0x93, 0xe0,  // timeout_ms 300000
        0x00, 0x00, 0x00, 0x03,  // id_len 3
        'a', 'b', 'c', 'h', 'e', 'l', 'l', 'o'},
       false, 0x01020304, Op::add,
       {0x00, 0x04, 0x93, 0xe0, 0x00, 0x00, 0x00, 0x03, 'a', 'b', 'c', 'h', 'e', 'l', 'l', 'o'}},
      {"ADD response MATCHING_SESSION",
       {0x00, 0x11, 0x00, 0x00, 0x01, 0x01, 0x02, 0x03, 0x04, 0x00, 0x00, 0x01, 0x00, 0x01, 101},
       true, 0x01020304, Op::add, {101}},
      {"GET request: uid 5, id \"abc\"",
       {0x00, 0x11, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x05, 0x00, 0x01, 0x01, 0x00, 0x03, 'a',
        'b', 'c'},
       false, 5, Op::get, {'a', 'b', 'c'}},
      {"GET response hit: uid 5, data \"hello\"",
       {0x00, 0x11, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x05, 0x00, 0x01, 0x01, 0x00, 0x05, 'h',
        'e', 'l', 'l', 'o'},
       true, 5, Op::get, {'h', 'e', 'l', 'l', 'o'}},
      {"GET response miss",
       {0x00, 0x11, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x06, 0x00, 0x01, 0x01, 0x00, 0x01, 0x01},
       true, 6, Op::get, {1}},
      {"REMOVE request: uid 0xfffffffe, id \"k\"",
       {0x00, 0x11, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xfe, 0x00, 0x02, 0x01, 0x00, 0x01, 'k'},
       false, 0xfffffffe, Op::remove, {'k'}},
      {"REMOVE response removed",
       {0x00, 0x11, 0x00, 0x00, 0x01, 0xff, 0xff, 0xff, 0xfe, 0x00, 0x02, 0x01, 0x00, 0x01, 0x00},
       true, 0xfffffffe, Op::remove, {0}},
      {"HAVE request: uid 7, id \"xy\"",
       {0x00, 0x11, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x07, 0x00, 0x03, 0x01, 0x00, 0x02, 'x',
        'y'},
       false, 7, Op::have, {'x', 'y'}},
      {"HAVE response not present, DISCONNECTED-free",
       {0x00, 0x11, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x07, 0x00, 0x03, 0x01, 0x00, 0x01, 0x01},
       true, 7, Op::have, {1}},
      {"GET response DISCONNECTED from an agent",
       {0x00, 0x11, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x08, 0x00, 0x01, 0x01, 0x00, 0x01, 0x02},
       true, 8, Op::get, {2}},
  };
}

void test_golden_vectors(void**) {
  for (const Golden& g : goldens()) {
    Message m;
    m.is_response = g.is_response;
    m.uid = g.uid;
    m.op = g.op;
    m.payload = g.payload;
    std::vector<uint8_t> enc;
    assert_true(append(enc, m));
    if (enc != g.wire) fail_msg("encoding differs from the specification: %s", g.name);
    auto got = decode_chunks(g.wire, {});
    assert_int_equal(got.size(), 1);
    assert_int_equal(got[0].m.uid, g.uid);
    assert_int_equal(int(got[0].m.op), int(g.op));
    assert_int_equal(got[0].m.is_response, g.is_response);
    assert_true(got[0].payload == g.payload);
  }
}

void test_golden_two_frames(void**) {
  // 2049 bytes of payload: a full non-final frame, then a 1-byte final one.
  std::vector<uint8_t> payload(2049, 0x5a);
  Message m;
  m.uid = 0x0a0b0c0d;
  m.op = Op::get;
  m.is_response = true;
  m.payload = payload;
  auto enc = encode_one(m);
  const uint8_t h1[14] = {0x00, 0x11, 0x00, 0x00, 0x01, 0x0a, 0x0b,
                          0x0c, 0x0d, 0x00, 0x01, 0x00, 0x08, 0x00};
  const uint8_t h2[14] = {0x00, 0x11, 0x00, 0x00, 0x01, 0x0a, 0x0b,
                          0x0c, 0x0d, 0x00, 0x01, 0x01, 0x00, 0x01};
  assert_int_equal(enc.size(), 14 + 2048 + 14 + 1);
  assert_memory_equal(enc.data(), h1, 14);
  assert_memory_equal(enc.data() + 14 + 2048, h2, 14);
}

// ---- payloads ----

std::vector<uint8_t> add_payload(uint32_t timeout, uint32_t id_len, size_t id_bytes,
                                 size_t data_bytes) {
  std::vector<uint8_t> p(kAddPrefix + id_bytes + data_bytes, 'z');
  add_prefix(timeout, id_len, p.data());
  return p;
}

void expect_add(const std::vector<uint8_t>& p, AddCheck action, AddStatus st) {
  AddRequest r;
  AddParse a = parse_add(p, r);
  assert_int_equal(int(a.action), int(action));
  if (action == AddCheck::answer) assert_int_equal(int(a.status), int(st));
}

void test_add_statuses_in_order(void**) {
  expect_add(std::vector<uint8_t>(7, 0), AddCheck::close, AddStatus::corrupt);
  expect_add(add_payload(604800001, 3, 3, 10), AddCheck::answer, AddStatus::timeout_range);
  // Timeout is checked before everything else.
  expect_add(add_payload(604800001, 0, 0, 0), AddCheck::answer, AddStatus::timeout_range);
  expect_add(add_payload(604800000, 3, 3, 10), AddCheck::answer, AddStatus::ok);
  // id_len >= bytes left: no room for data.
  expect_add(add_payload(1000, 3, 3, 0), AddCheck::answer, AddStatus::corrupt);
  expect_add(add_payload(1000, 500, 3, 0), AddCheck::answer, AddStatus::corrupt);
  expect_add(add_payload(1000, 0, 0, 0), AddCheck::answer, AddStatus::corrupt);
  expect_add(add_payload(1000, 0, 0, 10), AddCheck::answer, AddStatus::id_range);
  expect_add(add_payload(1000, 65, 65, 10), AddCheck::answer, AddStatus::id_range);
  expect_add(add_payload(1000, 64, 64, 10), AddCheck::answer, AddStatus::ok);
  for (size_t n = 1; n <= 4; ++n)
    expect_add(add_payload(1000, 3, 3, n), AddCheck::answer, AddStatus::data_range);
  expect_add(add_payload(1000, 3, 3, 5), AddCheck::answer, AddStatus::ok);
  AddRequest r;
  auto p = add_payload(1234, 2, 2, 6);
  p[8] = 'i', p[9] = 'd';
  assert_int_equal(int(parse_add(p, r).status), int(AddStatus::ok));
  assert_int_equal(r.timeout_ms, 1234);
  assert_int_equal(r.id.size(), 2);
  assert_memory_equal(r.id.data(), "id", 2);
  assert_int_equal(r.data.size(), 6);
}

void test_classify_get(void**) {
  const uint8_t miss[1] = {1}, disc[1] = {2}, four[4] = {1, 2, 3, 4}, five[5] = {1, 2, 3, 4, 5};
  assert_int_equal(int(classify_get(miss)), int(GetAnswer::miss));
  assert_int_equal(int(classify_get(disc)), int(GetAnswer::disconnected));
  assert_int_equal(int(classify_get(four)), int(GetAnswer::miss));
  assert_int_equal(int(classify_get(five)), int(GetAnswer::data));
  assert_int_equal(int(classify_get(Bytes())), int(GetAnswer::miss));
}

void test_names(void**) {
  assert_string_equal(to_string(Op::have), "HAVE");
  assert_string_equal(to_string(AddStatus::data_range), "DATA_RANGE");
  assert_string_equal(to_string(AddStatus::matching_session), "MATCHING_SESSION");
}

}  // namespace

int main() {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_round_trip_every_op_and_size),
      cmocka_unit_test(test_payload_over_limit_rejected),
      cmocka_unit_test(test_encode_needs_room),
      cmocka_unit_test(test_encode_gathers_parts),
      cmocka_unit_test(test_one_byte_at_a_time),
      cmocka_unit_test(test_split_at_every_position),
      cmocka_unit_test(test_corrupt_version),
      cmocka_unit_test(test_any_patch_level_accepted),
      cmocka_unit_test(test_corrupt_is_response),
      cmocka_unit_test(test_corrupt_complete),
      cmocka_unit_test(test_corrupt_class),
      cmocka_unit_test(test_corrupt_operation),
      cmocka_unit_test(test_corrupt_data_len),
      cmocka_unit_test(test_corrupt_short_nonfinal),
      cmocka_unit_test(test_corrupt_too_many_frames),
      cmocka_unit_test(test_corrupt_continuation_mismatch),
      cmocka_unit_test(test_corrupt_after_good_message),
      cmocka_unit_test(test_golden_vectors),
      cmocka_unit_test(test_golden_two_frames),
      cmocka_unit_test(test_add_statuses_in_order),
      cmocka_unit_test(test_classify_get),
      cmocka_unit_test(test_names),
  };
  return cmocka_run_group_tests_name("proto", tests, nullptr, nullptr);
}
