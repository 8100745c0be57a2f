// Integration tests of dc_client's multiplexing with the real dc_server and
// dc_client: a hundred clients pipelining interleaved requests (every client
// uses the same uids) each get exactly their own answers; multi-frame
// sessions pass intact; answers the agent makes itself never overtake a
// client's earlier answers; 1.x-style clients (patch level 0 frames, one
// connection per operation) work; a thousand short-lived connections; a
// client that goes away with requests in flight harms nobody and leaves
// nothing behind; corrupt or abusive clients lose only their own
// connection; dc_test through the agent, per operation and persistent.
#include <sys/socket.h>

#include <cstring>
#include <string>
#include <vector>

#include "agent_fixture.h"

using namespace dc;
using namespace dc::test;
using proto::Op;

namespace {

struct Req {
  Op op;
  uint32_t uid;
  std::vector<uint8_t> payload;
  std::vector<uint8_t> expect;
};

// Starts the cluster's server, then its agent with a -timeout no test here
// reaches (they are about multiplexing, not deadlines) and `extra`.
void start(Cluster& cl, std::vector<std::string> extra = {}) {
  cl.start_server();
  extra.insert(extra.begin(), {"-timeout", "20000"});
  cl.start_agent(extra);
}

void append_req(std::vector<uint8_t>& wire, const Req& r) {
  proto::Message m;
  m.op = r.op;
  m.uid = r.uid;
  m.payload = r.payload;
  assert_true(proto::append(wire, m));
}

// Sends `reqs` pipelined in one write and checks every answer, in order.
void roundtrip(RawConn& c, const std::vector<Req>& reqs) {
  std::vector<uint8_t> wire;
  for (const Req& r : reqs) append_req(wire, r);
  assert_true(c.send_raw(wire, 10000));
  for (const Req& r : reqs) expect_answer(c, r.uid, r.op, r.expect);
}

std::string sid(int client, int j) {
  return "c" + std::to_string(client) + "-s" + std::to_string(j);
}

std::string session_data(int client, int j) {
  std::string d = "client-" + std::to_string(client) + "-session-" + std::to_string(j) + "-";
  size_t len = 20 + size_t((client * 37 + j * 101) % 400);
  // Two clients hold sessions that need many frames each way.
  if (j == 0 && (client == 7 || client == 42))
    len = client == 7 ? 20000 : proto::kMaxPayload - proto::kAddPrefix - sid(client, j).size();
  while (d.size() < len) d += char('a' + (d.size() * 7 + size_t(client)) % 26);
  return d;
}

void test_hundred_clients_pipelined(void**) {
  Cluster cl;
  start(cl);
  assert_true(cl.wait_upstream());

  constexpr int kClients = 100, kSessions = 3, kRounds = 4;
  std::vector<RawConn> cs;
  for (int i = 0; i < kClients; ++i) cs.push_back(cl.client());

  // Every client stores its sessions, all pipelined at once.
  std::vector<std::vector<Req>> setup(kClients);
  for (int i = 0; i < kClients; ++i)
    for (int j = 0; j < kSessions; ++j)
      setup[i].push_back(
          {Op::add, uint32_t(j), add_payload(sid(i, j), session_data(i, j), 600000), status(kOk)});
  for (int i = 0; i < kClients; ++i) {
    std::vector<uint8_t> wire;
    for (const Req& r : setup[i]) append_req(wire, r);
    assert_true(cs[i].send_raw(wire, 10000));
  }
  for (int i = 0; i < kClients; ++i)
    for (const Req& r : setup[i]) expect_answer(cs[i], r.uid, r.op, r.expect);

  // Rounds: each client sends a batch in two writes, the clients' writes
  // interleaved, all before anyone reads. Every client uses the same uids
  // (including 0 and 0xffffffff), so only the agent's mapping can route the
  // answers right.
  for (int round = 0; round < kRounds; ++round) {
    std::vector<std::vector<Req>> batch(kClients);
    for (int i = 0; i < kClients; ++i) {
      std::vector<Req>& b = batch[i];
      uint32_t u = uint32_t(round) * 1000;
      b.push_back({Op::get, 0xffffffffu, vec(sid(i, round % kSessions)),
                   vec(session_data(i, round % kSessions))});
      for (int k = 0; k < 6; ++k) {
        int j = (k + i) % kSessions;
        b.push_back({Op::get, u++, vec(sid(i, j)), vec(session_data(i, j))});
        b.push_back({Op::have, u++, vec(sid(i, j)), status(kOk)});
        b.push_back({Op::have, u++, vec(sid(i, 99)), status(kNotOk)});
      }
      std::string fresh = "c" + std::to_string(i) + "-r" + std::to_string(round);
      std::string fresh_data = "fresh-" + fresh + "-payload";
      b.push_back({Op::add, u++, add_payload(fresh, fresh_data, 600000), status(kOk)});
      b.push_back({Op::get, u++, vec(fresh), vec(fresh_data)});
      b.push_back({Op::remove, u++, vec(fresh), status(kOk)});
      b.push_back({Op::remove, u++, vec(fresh), status(kNotOk)});
      b.push_back({Op::get, 0, vec(fresh), status(kNotOk)});
    }
    for (int half = 0; half < 2; ++half) {
      for (int i = 0; i < kClients; ++i) {
        std::vector<uint8_t> wire;
        size_t mid = batch[i].size() / 2;
        size_t from = half == 0 ? 0 : mid, to = half == 0 ? mid : batch[i].size();
        for (size_t k = from; k < to; ++k) append_req(wire, batch[i][k]);
        assert_true(cs[i].send_raw(wire, 10000));
      }
    }
    for (int i = 0; i < kClients; ++i)
      for (const Req& r : batch[i]) expect_answer(cs[i], r.uid, r.op, r.expect);
  }
  std::string st = cl.agent_stats();
  assert_int_equal(stat_sum(st, "disconnected_"), 0);
  assert_int_equal(stat_value(st, "connects"), 1);
  assert_int_equal(stat_value(st, "pending"), 0);
}

void test_multiframe_sessions_intact(void**) {
  Cluster cl;
  start(cl);
  assert_true(cl.wait_upstream());
  RawConn c = cl.client();
  std::vector<Req> reqs;
  std::vector<std::string> datas;
  // The largest: an ADD payload of exactly 32768 bytes (16 full frames).
  for (size_t len : {size_t(2047), size_t(2048), size_t(2049), size_t(4096), size_t(20000),
                     proto::kMaxPayload - proto::kAddPrefix - 4}) {
    std::string d(len, 'x');
    for (size_t k = 0; k < len; ++k) d[k] = char((k * 131 + len) & 0xff);
    datas.push_back(d);
  }
  for (uint32_t k = 0; k < datas.size(); ++k)
    reqs.push_back(
        {Op::add, 100 + k, add_payload("big" + std::to_string(k), datas[k], 600000), status(kOk)});
  for (uint32_t k = 0; k < datas.size(); ++k) {
    reqs.push_back({Op::get, 200 + k, vec("big" + std::to_string(k)), vec(datas[k])});
    reqs.push_back({Op::have, 300 + k, vec("big" + std::to_string(k)), status(kOk)});
  }
  roundtrip(c, reqs);
  // ADD errors come from the server through the agent like any answer.
  roundtrip(c, {{Op::add, 7, add_payload("tiny", "abc", 600000), status(104)},
                {Op::add, 8, add_payload("big0", "again", 600000), status(101)}});
}

// With room for two requests on the server, a pipelined burst gets real
// answers for the first and DISCONNECTED for the rest, and the local
// DISCONNECTED answers wait behind the earlier answers still on the server.
void test_local_answers_keep_client_order(void**) {
  Cluster cl;
  start(cl, {"-maxpending", "2"});
  assert_true(cl.wait_upstream());
  RawConn c = cl.client();
  std::string data = "a-session-for-ordering";
  assert_int_equal(c.add("ord", data, 600000), kOk);

  std::vector<uint8_t> wire;
  constexpr uint32_t kN = 50;
  for (uint32_t k = 0; k < kN; ++k) append_req(wire, {Op::get, 1000 + k, vec("ord"), {}});
  assert_true(c.send_raw(wire, 10000));  // one write: the agent reads the burst at once
  int real = 0, disconnected = 0;
  for (uint32_t k = 0; k < kN; ++k) {
    std::vector<uint8_t> got;
    auto m = c.recv(got, 10000);
    assert_true(m.has_value());
    assert_int_equal(m->uid, 1000 + k);  // in request order, whatever the source
    assert_int_equal(int(m->op), int(Op::get));
    if (got == vec(data)) {
      ++real;
    } else {
      assert_true(got == status(kDisconnected));
      ++disconnected;
    }
    // The first two always go to the server (nothing else is pending); a
    // DISCONNECTED sent the moment it was made would arrive before them.
    if (k < 2) assert_true(got == vec(data));
  }
  assert_true(disconnected >= 1);  // 50 requests in one read, room for 2
  assert_int_equal(real + disconnected, int(kN));
  // And the client goes on working once the burst is over.
  assert_string_equal(c.get("ord")->c_str(), data.c_str());
}

// An old-style client: hand-written 1.x frames (patch level 0), one
// connection per operation; a newer patch level of version 0x0011 is fine too.
void test_1x_client_interop(void**) {
  Cluster cl;
  start(cl);
  assert_true(cl.wait_upstream());

  auto frame = [](uint32_t level, uint32_t uid, Op op, const std::vector<uint8_t>& data) {
    std::vector<uint8_t> f(14 + data.size());
    proto::put_u32(&f[0], level);
    f[4] = 0;  // request
    proto::put_u32(&f[5], uid);
    f[9] = 0;  // user class
    f[10] = uint8_t(op);
    f[11] = 1;  // complete
    proto::put_u16(&f[12], uint16_t(data.size()));
    std::memcpy(f.data() + 14, data.data(), data.size());
    return f;
  };
  // Reads one answer frame by hand and checks the 1.x header bytes.
  auto read_answer = [](RawConn& c, uint32_t uid, Op op) {
    uint8_t h[14];
    size_t got = 0;
    int64_t end = now_ms() + 10000;
    while (got < 14 && now_ms() < end) {
      ssize_t n = ::recv(c.fd(), h + got, 14 - got, MSG_DONTWAIT);
      if (n > 0)
        got += size_t(n);
      else if (n == 0)
        break;
      else
        usleep(1000);
    }
    assert_int_equal(got, 14);
    assert_int_equal(proto::get_u32(h) >> 16, 0x0011);  // version 1
    assert_int_equal(h[4], 1);                          // a response
    assert_int_equal(proto::get_u32(h + 5), uid);
    assert_int_equal(h[9], 0);
    assert_int_equal(h[10], uint8_t(op));
    assert_int_equal(h[11], 1);  // one frame
    std::vector<uint8_t> data(proto::get_u16(h + 12));
    got = 0;
    while (got < data.size() && now_ms() < end) {
      ssize_t n = ::recv(c.fd(), data.data() + got, data.size() - got, MSG_DONTWAIT);
      if (n > 0)
        got += size_t(n);
      else if (n == 0)
        break;
      else
        usleep(1000);
    }
    assert_int_equal(got, data.size());
    return data;
  };
  const uint32_t kLevel0 = 0x00110000, kLevelNewer = 0x00110007;
  std::string sess = "old-style-session-data";
  {
    RawConn c = cl.client();
    assert_true(c.send_raw(frame(kLevel0, 77, Op::add, add_payload("old1", sess, 600000))));
    assert_true(read_answer(c, 77, Op::add) == status(kOk));
  }
  {
    RawConn c = cl.client();
    assert_true(c.send_raw(frame(kLevel0, 78, Op::get, vec("old1"))));
    assert_true(read_answer(c, 78, Op::get) == vec(sess));
  }
  {
    RawConn c = cl.client();
    assert_true(c.send_raw(frame(kLevelNewer, 79, Op::have, vec("old1"))));
    assert_true(read_answer(c, 79, Op::have) == status(kOk));
  }
  {
    RawConn c = cl.client();
    assert_true(c.send_raw(frame(kLevel0, 80, Op::remove, vec("old1"))));
    assert_true(read_answer(c, 80, Op::remove) == status(kOk));
  }
  // The harness's RawConn speaks 1.x framing (patch level 0) as well.
  RawConn c = cl.client();
  assert_int_equal(c.have("old1"), kNotOk);
}

void test_thousand_short_connections(void**) {
  Cluster cl;
  start(cl);
  assert_true(cl.wait_upstream());
  {
    RawConn c = cl.client();
    assert_int_equal(c.add("short", "short-lived-data", 600000), kOk);
  }
  for (int i = 0; i < 1000; ++i) {
    RawConn c = cl.client();
    auto got = c.get("short");
    if (!got || *got != "short-lived-data") fail_msg("connection %d: %s", i, c.error().c_str());
  }
  // Every one of them is gone from the agent, and nothing is left pending.
  std::string st = cl.wait_stats({{"clients", 0}});
  assert_int_equal(stat_value(st, "clients"), 0);
  assert_int_equal(stat_value(st, "pending"), 0);
  assert_true(stat_value(st, "accepted") >= 1001);
}

// Requests surely in flight: the server is stopped while they are sent.
void test_client_gone_with_requests_in_flight(void**) {
  Cluster cl;
  // -maxout 1M: up to 128 GETs of one client in flight (4 x 1M / 32K), so
  // all 50 are forwarded.
  start(cl, {"-maxout", "1M"});
  assert_true(cl.wait_upstream());
  RawConn keep = cl.client();
  assert_int_equal(keep.add("stay", "stays-around", 600000), kOk);

  assert_true(cl.server().signal(SIGSTOP));
  {
    RawConn gone = cl.client();
    std::vector<uint8_t> wire;
    for (uint32_t k = 0; k < 50; ++k) append_req(wire, {Op::get, k, vec("stay"), {}});
    assert_true(gone.send_raw(wire));
    std::vector<uint8_t> wire2;
    append_req(wire2, {Op::get, 5, vec("stay"), {}});
    append_req(wire2, {Op::have, 6, vec("stay"), {}});
    assert_true(keep.send_raw(wire2));
    // Both requests of `keep` are pending behind `gone`'s.
    std::string st = cl.wait_stats({{"pending", 52}});
    assert_int_equal(stat_value(st, "pending"), 52);
  }  // `gone` closes with 50 requests in flight
  usleep(100000);
  assert_true(cl.server().signal(SIGCONT));
  expect_answer(keep, 5, Op::get, vec("stays-around"));
  expect_answer(keep, 6, Op::have, status(kOk));
  assert_string_equal(keep.get("stay")->c_str(), "stays-around");

  std::string st = cl.agent_stats();
  assert_int_equal(stat_value(st, "pending"), 0);
  assert_int_equal(stat_value(st, "clients"), 1);
  assert_int_equal(stat_value(st, "dropped"), 50);
  assert_int_equal(stat_sum(st, "disconnected_"), 0);
  assert_int_equal(stat_value(st, "connects"), 1);
}

// A client that shuts down its sending side right after its requests still
// gets every answer, in order, then the end of the stream: here the server
// is stopped, so no answer is even queued when the agent reads the EOF.
void test_half_closed_client_gets_its_answers(void**) {
  Cluster cl;
  start(cl);
  assert_true(cl.wait_upstream());
  RawConn setup = cl.client();
  assert_int_equal(setup.add("half", "answered-after-eof", 600000), kOk);

  assert_true(cl.server().signal(SIGSTOP));
  RawConn c = cl.client();
  std::vector<uint8_t> wire;
  for (uint32_t k = 0; k < 20; ++k)
    append_req(wire, {k % 2 ? Op::have : Op::get, k, vec("half"), {}});
  assert_true(c.send_raw(wire));
  assert_int_equal(::shutdown(c.fd(), SHUT_WR), 0);
  std::string st = cl.wait_stats({{"pending", 20}});
  assert_int_equal(stat_value(st, "pending"), 20);
  st = cl.wait_stats({{"half_closed", 1}});
  assert_int_equal(stat_value(st, "half_closed"), 1);  // the EOF was read, answers owed
  assert_true(cl.server().signal(SIGCONT));
  for (uint32_t k = 0; k < 20; ++k)
    expect_answer(c, k, k % 2 ? Op::have : Op::get,
                  k % 2 ? status(kOk) : vec("answered-after-eof"));
  assert_true(c.wait_closed(10000));
  st = cl.agent_stats();
  assert_int_equal(stat_value(st, "dropped"), 0);
  assert_int_equal(stat_value(st, "clients"), 1);  // `setup` only
}

// GETs in flight are bounded by what their answers could weigh: with the
// default -maxout (256K) one client has at most 32 GETs on the server
// (4 x 256K / 32K); the rest of its requests wait in its socket and are all
// answered, in order, once the server answers.
void test_gets_in_flight_bounded(void**) {
  Cluster cl;
  start(cl);
  assert_true(cl.wait_upstream());
  RawConn c = cl.client();
  assert_int_equal(c.add("g", "some-session", 600000), kOk);
  assert_true(cl.server().signal(SIGSTOP));
  std::vector<uint8_t> wire;
  for (uint32_t k = 0; k < 100; ++k) append_req(wire, {Op::get, k, vec("g"), {}});
  assert_true(c.send_raw(wire));
  cl.wait_stats({{"pending", 32}});
  usleep(100000);
  std::string st = cl.agent_stats();
  assert_int_equal(stat_value(st, "pending"), 32);
  assert_true(stat_value(st, "overflows") >= 1);
  assert_true(cl.server().signal(SIGCONT));
  for (uint32_t k = 0; k < 100; ++k) expect_answer(c, k, Op::get, vec("some-session"));
}

// A client held for its GETs in flight that then hangs up: its connection
// goes once the answers come back (their write fails), and nothing more of
// what it had sent is forwarded for it.
void test_held_client_hangs_up(void**) {
  Cluster cl;
  start(cl);
  assert_true(cl.wait_upstream());
  RawConn keep = cl.client();
  assert_int_equal(keep.add("h", "held-session", 600000), kOk);
  assert_true(cl.server().signal(SIGSTOP));
  uint64_t before = stat_value(cl.agent_stats(), "forwarded");
  {
    RawConn gone = cl.client();
    std::vector<uint8_t> wire;
    for (uint32_t k = 0; k < 200; ++k) append_req(wire, {Op::get, k, vec("h"), {}});
    assert_true(gone.send_raw(wire));
    std::string st = cl.wait_stats({{"pending", 32}});
    assert_int_equal(stat_value(st, "pending"), 32);
  }  // hangs up while held
  usleep(100000);
  assert_true(cl.server().signal(SIGCONT));
  std::string st = cl.wait_stats({{"clients", 1}, {"pending", 0}});
  assert_int_equal(stat_value(st, "clients"), 1);
  assert_int_equal(stat_value(st, "pending"), 0);
  assert_int_equal(stat_value(st, "forwarded"), before + 32);
  assert_string_equal(keep.get("h")->c_str(), "held-session");
}

void test_bad_clients_lose_only_their_connection(void**) {
  Cluster cl;
  start(cl, {"-clientpending", "10"});
  assert_true(cl.wait_upstream());
  RawConn good = cl.client();
  assert_int_equal(good.add("good", "good-client-data", 600000), kOk);
  {  // junk bytes
    RawConn bad = cl.client();
    std::vector<uint8_t> junk(40, 0xee);
    assert_true(bad.send_raw(junk));
    assert_true(bad.wait_closed(5000));
  }
  {  // an ADD too short to parse would make the server drop the upstream connection
    RawConn bad = cl.client();
    assert_true(bad.send(Op::add, 1, vec("abc")));
    assert_true(bad.wait_closed(5000));
  }
  {  // a response sent as if it were a request
    RawConn bad = cl.client();
    proto::Message m;
    m.is_response = true;
    m.op = Op::get;
    std::vector<uint8_t> wire;
    assert_true(proto::append(wire, m));
    assert_true(bad.send_raw(wire));
    assert_true(bad.wait_closed(5000));
  }
  {  // more requests than -clientpending while the server is stopped: the
     // agent stops reading at 10 unanswered, then takes the rest as answers
     // come back; nothing is lost and the client stays connected
    assert_true(cl.server().signal(SIGSTOP));
    uint64_t before = stat_value(cl.agent_stats(), "requests");
    RawConn greedy = cl.client();
    std::vector<uint8_t> wire;
    for (uint32_t k = 0; k < 25; ++k) append_req(wire, {Op::have, k, vec("good"), {}});
    assert_true(greedy.send_raw(wire));
    cl.wait_stats({{"pending", 10}});
    usleep(100000);  // still 10 after a while: the rest is not read
    std::string st = cl.agent_stats();
    assert_int_equal(stat_value(st, "pending"), 10);
    assert_int_equal(stat_value(st, "requests"), before + 10);
    assert_true(cl.server().signal(SIGCONT));
    for (uint32_t k = 0; k < 25; ++k) expect_answer(greedy, k, Op::have, status(kOk));
    assert_int_equal(greedy.have("good"), kOk);  // still connected, still served
  }
  assert_string_equal(good.get("good")->c_str(), "good-client-data");
  std::string st = cl.agent_stats();
  assert_int_equal(stat_value(st, "client_errors"), 3);
  assert_true(stat_value(st, "overflows") >= 1);    // held at least once
  assert_int_equal(stat_value(st, "connects"), 1);  // the upstream connection never suffered
  assert_int_equal(stat_value(st, "losses"), 0);
}

void run_dc_test(const Cluster& cl, bool persistent) {
  std::vector<std::string> argv = {env_or_die("DC_TEST"),
                                   "-connect",
                                   "UNIX:" + cl.agent_sock(),
                                   "-ops",
                                   "3000",
                                   "-deadline",
                                   "5000"};
  if (persistent) argv.push_back("-persistent");
  std::string out;
  int rc = run(argv, out, 60000);
  if (rc != 0 || out.find("all answers as expected") == std::string::npos)
    fail_msg("dc_test%s: exit %d\n%s", persistent ? " -persistent" : "", rc, out.c_str());
}

void test_dc_test_through_agent(void**) {
  Cluster cl;
  start(cl);
  assert_true(cl.wait_upstream());
  run_dc_test(cl, false);
  run_dc_test(cl, true);
  std::string st = cl.agent_stats();
  assert_true(stat_value(st, "answered") >= 6000);
  assert_int_equal(stat_sum(st, "disconnected_"), 0);
}

}  // namespace

int main() {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_hundred_clients_pipelined),
      cmocka_unit_test(test_multiframe_sessions_intact),
      cmocka_unit_test(test_local_answers_keep_client_order),
      cmocka_unit_test(test_1x_client_interop),
      cmocka_unit_test(test_thousand_short_connections),
      cmocka_unit_test(test_client_gone_with_requests_in_flight),
      cmocka_unit_test(test_half_closed_client_gets_its_answers),
      cmocka_unit_test(test_gets_in_flight_bounded),
      cmocka_unit_test(test_held_client_hangs_up),
      cmocka_unit_test(test_bad_clients_lose_only_their_connection),
      cmocka_unit_test(test_dc_test_through_agent),
  };
  return cmocka_run_group_tests(tests, nullptr, nullptr);
}
