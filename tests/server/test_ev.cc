// Unit tests of the libev connection layer (daemons/ev): in-process, over
// socketpairs and a temporary UNIX socket, one Loop driven by the test.
// Pipelined messages answered in order, backpressure (reading stops while
// output is queued, resumes when drained, nothing lost), close notices
// (peer close, corrupt input) with the handler destroying the connection,
// the Listener and the Connector (success and failure), hold_input, a
// half-closed peer (Handler::on_eof) and flush_last ordering.
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "ev/connection.h"
#include "ev/connector.h"
#include "ev/listener.h"
#include "ev/loop.h"
#include "harness.h"
// cmocka last: its macros (fail, ...) clash with names in C++ headers.
#include "cmocka_cpp.h"

using namespace dc;
using dc::proto::Bytes;
using dc::proto::Message;

namespace {

// Answers every request with a response carrying `reply_size` bytes (or
// the request's own payload when 0). Destroys connections on close.
struct Echo : ev::Handler {
  size_t reply_size = 0;
  std::vector<std::unique_ptr<ev::Connection>> owned;
  std::vector<ev::CloseReason> closes;
  void on_message(ev::Connection& c, const Message& m) override {
    Message r = m;
    r.is_response = true;
    std::vector<uint8_t> big(reply_size, 'r');
    if (reply_size) r.payload = big;
    assert_true(c.send(r));
  }
  void on_close(ev::Connection& c, ev::CloseReason why) override {
    closes.push_back(why);
    for (auto& p : owned)
      if (p.get() == &c) p.reset();  // destroying it here is allowed
  }
};

// Collects responses; stops the loop after `want` of them.
struct Collector : ev::Handler {
  ev::Loop& loop;
  size_t want;
  std::vector<uint32_t> uids;
  std::vector<size_t> sizes;
  std::vector<ev::CloseReason> closes;
  Collector(ev::Loop& l, size_t w) : loop(l), want(w) {}
  void on_message(ev::Connection&, const Message& m) override {
    uids.push_back(m.uid);
    sizes.push_back(m.payload.size());
    if (uids.size() == want) loop.stop();
  }
  void on_close(ev::Connection&, ev::CloseReason why) override {
    closes.push_back(why);
    loop.stop();
  }
};

void socket_pair(UniqueFd& a, UniqueFd& b) {
  int sv[2];
  assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
  a.reset(sv[0]);
  b.reset(sv[1]);
}

std::vector<uint8_t> requests(size_t n, size_t payload) {
  std::vector<uint8_t> wire;
  std::vector<uint8_t> p(payload, 'q');
  for (size_t i = 0; i < n; ++i) {
    Message m;
    m.op = proto::Op::get;
    m.uid = uint32_t(i);
    m.payload = p;
    proto::append(wire, m);
  }
  return wire;
}

// Runs the loop with a watchdog, so a bug fails the test instead of hanging.
void run_for(ev::Loop& loop, int64_t ms) {
  ev::Timer dog(loop, [&] { loop.stop(); });
  dog.start(ms);
  loop.run();
}

void test_pipelined_in_order(void**) {
  ev::Loop loop;
  UniqueFd a, b;
  socket_pair(a, b);
  Echo echo;
  echo.owned.push_back(std::make_unique<ev::Connection>(loop, std::move(a), echo));
  Collector col(loop, 500);
  // The client's output is its own requests: no backpressure on it (with
  // it, both ends would stop reading, each waiting for the other to drain).
  ev::ConnectionOptions copt;
  copt.backpressure = false;
  ev::Connection client(loop, std::move(b), col, copt);
  auto wire = requests(500, 3000);  // 500 two-frame messages
  assert_true(client.send_raw(wire));
  run_for(loop, 10000);
  assert_int_equal(col.uids.size(), 500);
  for (uint32_t i = 0; i < 500; ++i) {
    assert_int_equal(col.uids[i], i);
    assert_int_equal(col.sizes[i], 3000);
  }
}

void test_backpressure_pauses_and_resumes(void**) {
  ev::Loop loop;
  UniqueFd a, b;
  socket_pair(a, b);
  Echo echo;
  echo.reply_size = 30000;
  ev::ConnectionOptions opt;
  opt.out_high = 100 * 1024;
  opt.out_low = 20 * 1024;
  echo.owned.push_back(std::make_unique<ev::Connection>(loop, std::move(a), echo, opt));
  ev::Connection& srv = *echo.owned[0];
  // 2,000 small requests asking for 60 MB of answers; nobody reads yet.
  auto wire = requests(2000, 10);
  size_t off = 0;
  while (off < wire.size()) {
    ssize_t n = ::send(b.get(), wire.data() + off, wire.size() - off, MSG_NOSIGNAL);
    if (n <= 0) break;
    off += size_t(n);
  }
  run_for(loop, 200);
  assert_true(srv.paused());
  // Queued output is bounded by the high mark plus one answer.
  assert_true(srv.pending_output() < opt.out_high + 31000);
  assert_true(srv.heap_bytes() < 512 * 1024);
  // Now read: every answer arrives, in order, and the rest of the requests
  // get in as the output drains.
  Collector col(loop, 2000);
  ev::ConnectionOptions copt;
  copt.backpressure = false;
  ev::Connection client(loop, std::move(b), col, copt);
  while (off < wire.size()) {
    assert_true(client.send_raw(Bytes(wire.data() + off, wire.size() - off)));
    off = wire.size();
  }
  run_for(loop, 20000);
  assert_int_equal(col.uids.size(), 2000);
  for (uint32_t i = 0; i < 2000; ++i) assert_int_equal(col.uids[i], i);
  assert_false(srv.paused());
}

// Counts requests without answering; holds its input after `hold_at` of
// them; on a half-close keeps the connection when `keep_on_eof`.
struct Holder : ev::Handler {
  size_t hold_at = 0;
  bool keep_on_eof = false;
  std::vector<Message> got;
  int eofs = 0;
  std::vector<ev::CloseReason> closes;
  void on_message(ev::Connection& c, const Message& m) override {
    Message keep = m;
    keep.payload = {};
    got.push_back(keep);
    if (hold_at && got.size() == hold_at) c.hold_input(true);
  }
  void on_close(ev::Connection&, ev::CloseReason why) override { closes.push_back(why); }
  bool on_eof(ev::Connection&) override {
    ++eofs;
    return keep_on_eof;
  }
};

// hold_input: no message is decoded and the socket is not read while held
// (even when the hold comes with the last message of a read); released, the
// held input is decoded, in order, before the loop blocks again, and
// reading resumes.
void test_hold_input(void**) {
  ev::Loop loop;
  UniqueFd a, b;
  socket_pair(a, b);
  Holder h;
  h.hold_at = 5;
  ev::Connection srv(loop, std::move(a), h);
  auto wire = requests(20, 10);
  assert_true(::send(b.get(), wire.data(), wire.size(), MSG_NOSIGNAL) == ssize_t(wire.size()));
  run_for(loop, 100);
  assert_int_equal(h.got.size(), 5);
  assert_true(srv.input_held() && srv.paused());
  // More input while held stays in the socket.
  auto more = requests(3, 10);
  assert_true(::send(b.get(), more.data(), more.size(), MSG_NOSIGNAL) == ssize_t(more.size()));
  run_for(loop, 100);
  assert_int_equal(h.got.size(), 5);
  int queued = 0;
  assert_int_equal(ioctl(srv.fd(), FIONREAD, &queued), 0);
  assert_int_equal(queued, int(more.size()));
  h.hold_at = 0;
  srv.hold_input(false);
  run_for(loop, 100);
  assert_int_equal(h.got.size(), 23);
  for (uint32_t i = 0; i < 20; ++i) assert_int_equal(h.got[i].uid, i);
  for (uint32_t i = 0; i < 3; ++i) assert_int_equal(h.got[20 + i].uid, i);
  assert_false(srv.paused());
  srv.hold_input(true);  // nothing buffered: the next bytes stay in the socket
  assert_true(::send(b.get(), more.data(), more.size(), MSG_NOSIGNAL) == ssize_t(more.size()));
  run_for(loop, 100);
  assert_int_equal(h.got.size(), 23);
  int unread = 0;
  assert_int_equal(ioctl(srv.fd(), FIONREAD, &unread), 0);
  assert_int_equal(unread, int(more.size()));
  srv.hold_input(false);
  run_for(loop, 100);
  assert_int_equal(h.got.size(), 26);
}

// on_eof: a half-closed peer stays connected while the handler says so,
// still gets what is sent, and the connection closes after
// close_after_flush; a peer that hung up is closed without asking.
void test_half_close(void**) {
  ev::Loop loop;
  {
    UniqueFd a, b;
    socket_pair(a, b);
    Holder h;
    h.keep_on_eof = true;
    ev::Connection srv(loop, std::move(a), h);
    auto wire = requests(2, 10);
    assert_true(::send(b.get(), wire.data(), wire.size(), MSG_NOSIGNAL) == ssize_t(wire.size()));
    assert_int_equal(::shutdown(b.get(), SHUT_WR), 0);
    run_for(loop, 100);
    assert_int_equal(h.got.size(), 2);
    assert_int_equal(h.eofs, 1);
    assert_false(srv.closed());
    Message r = h.got[1];
    r.is_response = true;
    uint8_t ok = 0;
    r.payload = Bytes(&ok, 1);
    assert_true(srv.send(r));
    srv.close_after_flush(ev::CloseReason::peer_closed);
    run_for(loop, 100);
    assert_true(srv.closed());
    assert_int_equal(h.closes.size(), 1);
    assert_true(h.closes[0] == ev::CloseReason::peer_closed);
    uint8_t buf[64];
    ssize_t n = ::recv(b.get(), buf, sizeof buf, 0);
    assert_int_equal(n, ssize_t(proto::kHeaderSize + 1));  // the answer, then EOF
    assert_int_equal(::recv(b.get(), buf, sizeof buf, 0), 0);
  }
  {
    UniqueFd a, b;
    socket_pair(a, b);
    Holder h;
    h.keep_on_eof = true;
    ev::Connection srv(loop, std::move(a), h);
    b.reset();  // hung up entirely
    run_for(loop, 100);
    assert_int_equal(h.eofs, 0);
    assert_true(srv.closed());
  }
}

// flush_last: flushed after the other connections of the same wake-up.
// Seen from inside a flush: releasing held input decodes it during the
// connection's flush, and the handler then looks at whether `up` (queued
// before it) has been flushed yet.
struct Peek : ev::Handler {
  ev::Connection* up = nullptr;
  std::vector<size_t> up_pending;  // up->pending_output() at each message
  void on_message(ev::Connection& c, const Message&) override {
    up_pending.push_back(up->pending_output());
    c.hold_input(true);  // one message per release
  }
  void on_close(ev::Connection&, ev::CloseReason) override {}
};

void test_flush_last(void**) {
  for (bool last : {true, false}) {
    ev::Loop loop;
    UniqueFd a1, b1, a2, b2;
    socket_pair(a1, b1);
    socket_pair(a2, b2);
    Holder quiet;
    ev::ConnectionOptions uopt;
    uopt.flush_last = last;
    ev::Connection up(loop, std::move(a1), quiet, uopt);
    Peek peek;
    peek.up = &up;
    ev::Connection local(loop, std::move(a2), peek);
    auto wire = requests(2, 4);
    assert_true(::send(b2.get(), wire.data(), wire.size(), MSG_NOSIGNAL) == ssize_t(wire.size()));
    run_for(loop, 50);  // the first message is handled, the second held
    assert_int_equal(peek.up_pending.size(), 1);
    auto one = requests(1, 4);
    assert_true(up.send_raw(one));  // queued first...
    local.hold_input(false);        // ...then the release, decoded in local's flush
    run_for(loop, 50);
    assert_int_equal(peek.up_pending.size(), 2);
    // flush_last: `up` still holds its bytes while `local` is flushed;
    // without it, `up` went first (queued first) and holds nothing.
    if (last)
      assert_int_equal(peek.up_pending[1], one.size());
    else
      assert_int_equal(peek.up_pending[1], 0);
    uint8_t buf[64];
    assert_int_equal(::recv(b1.get(), buf, sizeof buf, MSG_DONTWAIT), ssize_t(one.size()));
  }
}

void test_close_notices(void**) {
  ev::Loop loop;
  Echo echo;
  {  // the peer closes: on_close(peer_closed), the handler destroys it
    UniqueFd a, b;
    socket_pair(a, b);
    echo.owned.push_back(std::make_unique<ev::Connection>(loop, std::move(a), echo));
    b.reset();
    run_for(loop, 100);
    assert_int_equal(echo.closes.size(), 1);
    assert_int_equal(int(echo.closes[0]), int(ev::CloseReason::peer_closed));
    assert_null(echo.owned[0].get());
  }
  {  // corrupt input: on_close(corrupt), the peer sees the close
    UniqueFd a, b;
    socket_pair(a, b);
    echo.owned.push_back(std::make_unique<ev::Connection>(loop, std::move(a), echo));
    uint8_t junk[20];
    std::memset(junk, 0x55, sizeof junk);
    assert_int_equal(::send(b.get(), junk, sizeof junk, 0), sizeof junk);
    run_for(loop, 100);
    assert_int_equal(echo.closes.size(), 2);
    assert_int_equal(int(echo.closes[1]), int(ev::CloseReason::corrupt));
    assert_null(echo.owned[1].get());
    char c;
    assert_int_equal(::recv(b.get(), &c, 1, 0), 0);
  }
  {  // close_after_flush: queued answers are delivered, then EOF
    UniqueFd a, b;
    socket_pair(a, b);
    echo.owned.push_back(std::make_unique<ev::Connection>(loop, std::move(a), echo));
    Message m;
    m.is_response = true;
    m.uid = 9;
    std::vector<uint8_t> p(5000, 'z');
    m.payload = p;
    assert_true(echo.owned[2]->send(m));
    echo.owned[2]->close_after_flush();
    Collector col(loop, 1);
    ev::Connection client(loop, std::move(b), col);
    run_for(loop, 2000);
    assert_int_equal(col.uids.size(), 1);
    assert_int_equal(col.sizes[0], 5000);
    run_for(loop, 100);
    assert_int_equal(int(echo.closes.back()), int(ev::CloseReason::local));
  }
}

void test_listener_and_connector(void**) {
  ev::Loop loop;
  test::TempDir dir;
  std::string path = dir.file("l");
  Address a = test::addr("UNIX:" + path);
  std::string err;
  Echo echo;
  auto lst = ev::Listener::open(
      loop, a, {},
      [&](UniqueFd fd) {
        echo.owned.push_back(std::make_unique<ev::Connection>(loop, std::move(fd), echo));
      },
      err);
  assert_non_null(lst.get());
  // A second listener on the live socket is refused.
  assert_null(ev::Listener::open(
                  loop, a, {}, [](UniqueFd) {}, err)
                  .get());
  assert_non_null(strstr(err.c_str(), "in use"));

  ev::Connector conn(loop);
  UniqueFd got;
  std::string cerr = "unset";
  conn.start(a, 2000, [&](UniqueFd fd, const std::string& e) {
    got = std::move(fd);
    cerr = e;
    loop.stop();
  });
  run_for(loop, 5000);
  assert_true(bool(got));
  assert_string_equal(cerr.c_str(), "");
  Collector col(loop, 1);
  ev::Connection client(loop, std::move(got), col);
  auto wire = requests(1, 7);
  assert_true(client.send_raw(wire));
  run_for(loop, 5000);
  assert_int_equal(col.uids.size(), 1);
  assert_int_equal(lst->accepted(), 2);  // ours, and the liveness probe of the refused listener

  // Nothing listens there: the callback reports an error, from the loop.
  bool called = false;
  conn.start(test::addr("UNIX:" + dir.file("none")), 2000, [&](UniqueFd fd, const std::string& e) {
    called = true;
    assert_false(bool(fd));
    assert_non_null(strstr(e.c_str(), "cannot connect to UNIX:"));
    loop.stop();
  });
  assert_false(called);  // never from inside start()
  run_for(loop, 5000);
  assert_true(called);

  lst.reset();  // removes the socket file
  struct stat st;
  assert_int_not_equal(stat(path.c_str(), &st), 0);
}

}  // namespace

int main() {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_pipelined_in_order),
      cmocka_unit_test(test_backpressure_pauses_and_resumes),
      cmocka_unit_test(test_hold_input),
      cmocka_unit_test(test_half_close),
      cmocka_unit_test(test_flush_last),
      cmocka_unit_test(test_close_notices),
      cmocka_unit_test(test_listener_and_connector),
  };
  return cmocka_run_group_tests(tests, nullptr, nullptr);
}
