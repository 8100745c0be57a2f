// Integration tests of dc_server under load and abuse, against the real
// binary: 2,000 simultaneous connections (half UNIX, half TCP) all served,
// and a client that sends requests but never reads its answers: the server
// stops reading from it instead of buffering answers, so its memory stays
// bounded, and it goes on serving everyone else; hanging up on queued
// answers (EPIPE) does not hurt the server.
#include <errno.h>
#include <poll.h>
#include <sys/socket.h>

#include <memory>
#include <string>
#include <vector>

#include "server_fixture.h"

using namespace dc;
using namespace dc::test;
using proto::Op;

namespace {

// The statistics line of the -stats file once `pred` holds for it, polling
// for up to 10 s; the last line read otherwise.
template <class Pred>
std::string stats_when(const std::string& path, Pred pred) {
  std::string line;
  int64_t deadline = now_ms() + 10000;
  while (now_ms() < deadline) {
    line = read_file(path);
    if (!line.empty() && pred(line)) break;
    usleep(20000);
  }
  return line;
}

bool connect_retrying(RawConn& c, const Address& a) {
  // A full accept queue refuses a non-blocking UNIX connect (EAGAIN) for a
  // moment; the server drains it as fast as it can.
  for (int i = 0; i < 500; ++i) {
    if (c.connect(a)) return true;
    usleep(10000);
  }
  return false;
}

void test_two_thousand_connections(void**) {
  TempDir stats_dir;
  std::string stats = stats_dir.file("stats");
  ServerProc s({"-stats", stats, "-stats-interval", "50"}, true);
  const int kConns = 2000;
  // ServerProc's two readiness probes (one per listener) were connections
  // too: start once the server has accepted and closed both.
  long long accepted0 =
      stat_value(stats_when(stats,
                            [](const std::string& l) {
                              return stat_value(l, "accepted") >= 2 && stat_value(l, "conns") == 0;
                            }),
                 "accepted");
  assert_int_equal(accepted0, 2);
  std::vector<std::unique_ptr<RawConn>> conns;
  for (int i = 0; i < kConns; ++i) {
    auto c = std::make_unique<RawConn>();
    if (!connect_retrying(*c, i % 2 ? s.tcp_addr() : s.unix_addr()))
      fail_msg("connection %d: %s", i, c->error().c_str());
    conns.push_back(std::move(c));
  }
  // Every connection is open at once on the server's side.
  std::string line =
      stats_when(stats, [&](const std::string& l) { return stat_value(l, "conns") == kConns; });
  assert_int_equal(stat_value(line, "conns"), kConns);
  // Each sends an ADD first (all in flight together), then reads its answer.
  for (int i = 0; i < kConns; ++i) {
    auto p = add_payload("conn-" + std::to_string(i), "session-of-" + std::to_string(i), 60000);
    assert_true(conns[i]->send(Op::add, uint32_t(i), p));
  }
  for (int i = 0; i < kConns; ++i) {
    std::vector<uint8_t> payload;
    auto m = conns[i]->recv(payload, 10000);
    if (!m) fail_msg("connection %d: %s", i, conns[i]->error().c_str());
    assert_int_equal(m->uid, uint32_t(i));
    assert_true(payload.size() == 1 && payload[0] == 0);
  }
  // Each reads what another one stored.
  for (int i = 0; i < kConns; ++i) {
    int other = (i + 7) % kConns;
    auto got = conns[i]->get("conn-" + std::to_string(other));
    assert_true(got.has_value());
    assert_string_equal(got->c_str(), ("session-of-" + std::to_string(other)).c_str());
  }
  conns.clear();
  line = stats_when(stats, [](const std::string& l) { return stat_value(l, "conns") == 0; });
  assert_int_equal(stat_value(line, "conns"), 0);
  assert_int_equal(stat_value(line, "accepted"), accepted0 + kConns);
  assert_int_equal(stat_value(line, "sessions"), kConns);
}

void test_never_reading_client_is_bounded(void**) {
  ServerProc s;
  RawConn setup = s.client();
  std::string big(32000, 'B');
  assert_int_equal(setup.add("big", big, 600000), 0);
  long rss_before = rss_kb(s.proc().pid());
  assert_true(rss_before > 0);

  // Ask for the 32 KB session 60,000 times (about 1 MB of requests, 1.9 GB
  // of answers) and never read. Send until the server stops taking input:
  // the socket stays full for a whole second.
  RawConn slow = s.client();
  std::vector<uint8_t> chunk;
  const int kPerChunk = 1000, kChunks = 60;
  for (int i = 0; i < kPerChunk; ++i) {
    auto r = request(Op::get, uint32_t(i), bytes("big"));
    chunk.insert(chunk.end(), r.begin(), r.end());
  }
  size_t total = chunk.size() * kChunks, sent = 0;
  int64_t stuck_since = -1;
  while (sent < total) {
    size_t off = sent % chunk.size();
    ssize_t n =
        ::send(slow.fd(), chunk.data() + off, chunk.size() - off, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      sent += size_t(n);
      stuck_since = -1;
      continue;
    }
    assert_true(n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK));
    if (stuck_since < 0) stuck_since = now_ms();
    if (now_ms() - stuck_since > 1000) break;
    pollfd p{slow.fd(), POLLOUT, 0};
    poll(&p, 1, 50);
  }
  // The server stopped reading long before all the requests went in...
  assert_true(sent < total);
  // ...so it did not build up answers: a few hundred KB of output at most,
  // where unbounded buffering would need gigabytes.
  long rss_after = rss_kb(s.proc().pid());
  fprintf(stderr, "never-reading client: sent %zu of %zu request bytes; server RSS %ld -> %ld KB\n",
          sent, total, rss_before, rss_after);
  assert_true(rss_after - rss_before < 32 * 1024);

  // Everyone else is still served.
  RawConn other = s.client();
  assert_int_equal(other.add("other", "still-served", 60000), 0);
  assert_string_equal(other.get("other")->c_str(), "still-served");

  // Once the slow client reads, its answers come, in order.
  for (int i = 0; i < 50; ++i) {
    std::vector<uint8_t> payload;
    auto m = slow.recv(payload, 10000);
    if (!m) fail_msg("answer %d: %s", i, slow.error().c_str());
    assert_int_equal(m->uid, uint32_t(i));
    assert_int_equal(payload.size(), big.size());
  }
  // Hanging up with answers still queued makes the server's next write fail
  // (EPIPE / reset): that must cost the connection, not the process.
  slow.close();
  RawConn after = s.client();
  for (int i = 0; i < 20; ++i) assert_string_equal(after.get("other")->c_str(), "still-served");
  assert_true(s.proc().running());
}

}  // namespace

int main() {
  raise_fd_limit();
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_two_thousand_connections),
      cmocka_unit_test(test_never_reading_client_is_bounded),
  };
  return cmocka_run_group_tests(tests, nullptr, nullptr);
}
