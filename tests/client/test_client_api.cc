// Tests of libdistcache (DC_CTX) that need no dc_server: bad arguments, the
// constructors and their error texts, and every failure path against a
// scripted peer (tests/client/fake_peer.h) that counts connections: the
// deadline, the back-off, RETRY, PIDCHECK across fork(), a wrong uid, a
// corrupt stream, and the connection modes. Timing assertions are upper
// bounds many times the deadline, so a slow machine never fails them.
#include <distcache/dc_client.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "fake_peer.h"
#include "harness.h"
#include "net.h"

// Last: cmocka defines macros (fail...) that clash with the standard headers.
#include "cmocka_cpp.h"

using dc::test::FakePeer;
using dc::test::TempDir;
using Mode = dc::test::FakePeer::Mode;

namespace {

const unsigned char* u(const std::string& s) {
  return reinterpret_cast<const unsigned char*>(s.data());
}

const std::string kId = "session-id-0001";

// Generous: this is the deadline of operations that must succeed, so that a
// loaded machine never turns them into timeouts.
constexpr unsigned kSlowOk = 10000;

DC_CTX* new_ctx(const std::string& addr, unsigned flags) {
  DC_CTX* ctx = DC_CTX_new(addr.c_str(), flags);
  if (ctx == nullptr) fail_msg("DC_CTX_new(%s): %s", addr.c_str(), DC_last_new_error());
  DC_CTX_set_timeout(ctx, kSlowOk);
  return ctx;
}

int have(DC_CTX* ctx) {
  return DC_CTX_has_session(ctx, u(kId), unsigned(kId.size()));
}

// Accepts every connection pending on a listener that nobody serves;
// returns how many there were (connect() to a UNIX socket is queued
// synchronously, so this counts every attempt made so far).
int drain_pending(int listen_fd, std::vector<dc::UniqueFd>& keep) {
  int n = 0;
  for (;;) {
    int fd = ::accept4(listen_fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) return n;
    keep.emplace_back(fd);
    ++n;
  }
}

void test_bad_arguments(void**) {
  TempDir dir;
  FakePeer peer(dir.file("p"), Mode::answer);
  DC_CTX* ctx = new_ctx(peer.address(), 0);
  std::string id65(65, 'i'), id64(64, 'i'), data(100, 'd'), big(32769, 'd');
  unsigned char buf[16];
  unsigned used = 0;

  // NULL context: failure, never a crash.
  assert_int_equal(DC_CTX_add_session(nullptr, u(kId), 4, u(data), 100, 1000), 0);
  assert_int_equal(DC_CTX_remove_session(nullptr, u(kId), 4), 0);
  assert_int_equal(DC_CTX_get_session(nullptr, u(kId), 4, buf, 16, &used), 0);
  assert_int_equal(DC_CTX_reget_session(nullptr, u(kId), 4, buf, 16, &used), 0);
  assert_int_equal(DC_CTX_has_session(nullptr, u(kId), 4), -1);
  assert_int_equal(DC_CTX_set_timeout(nullptr, 100), 0);
  assert_int_equal(DC_CTX_set_backoff(nullptr, 100), 0);
  assert_int_equal(DC_CTX_last_error(nullptr), DC_ERR_ARGUMENT);
  assert_non_null(DC_CTX_last_error_string(nullptr));
  DC_CTX_free(nullptr);

  struct Case {
    const unsigned char* id;
    unsigned id_len;
    const unsigned char* data;
    unsigned data_len;
    unsigned long timeout;
  } cases[] = {
      {nullptr, 4, u(data), 100, 1000},               // NULL id
      {u(kId), 0, u(data), 100, 1000},                // empty id
      {u(id65), 65, u(data), 100, 1000},              // id of 65 bytes
      {u(kId), 4, nullptr, 100, 1000},                // NULL data
      {u(kId), 4, u(data), 0, 1000},                  // empty data
      {u(kId), 4, u(big), 32769, 1000},               // data over the limit
      {u(id64), 64, u(big), 32768 - 8 - 63, 1000},    // id + data over one message
      {u(kId), 4, u(data), 100, DC_MIN_TIMEOUT - 1},  // timeout 499
      {u(kId), 4, u(data), 100, 604800001},           // timeout over 7 days
  };
  for (const Case& c : cases) {
    assert_int_equal(DC_CTX_add_session(ctx, c.id, c.id_len, c.data, c.data_len, c.timeout), 0);
    assert_int_equal(DC_CTX_last_error(ctx), DC_ERR_ARGUMENT);
  }
  assert_int_equal(DC_CTX_remove_session(ctx, u(id65), 65), 0);
  assert_int_equal(DC_CTX_last_error(ctx), DC_ERR_ARGUMENT);
  assert_int_equal(DC_CTX_get_session(ctx, nullptr, 4, buf, 16, &used), 0);
  assert_int_equal(DC_CTX_last_error(ctx), DC_ERR_ARGUMENT);
  assert_int_equal(DC_CTX_reget_session(ctx, u(kId), 0, buf, 16, &used), 0);
  assert_int_equal(DC_CTX_last_error(ctx), DC_ERR_ARGUMENT);
  assert_int_equal(DC_CTX_has_session(ctx, u(kId), 0), -1);
  assert_int_equal(DC_CTX_last_error(ctx), DC_ERR_ARGUMENT);
  // None of them reached the network.
  assert_int_equal(peer.accepts(), 0);

  // The limits themselves are accepted: 64-byte id, 500 ms, 32768 bytes
  // of payload in all.
  assert_int_not_equal(DC_CTX_add_session(ctx, u(id64), 64, u(big), 32768 - 8 - 64, 500), 0);
  assert_int_equal(DC_CTX_last_error(ctx), DC_ERR_NONE);
  assert_int_equal(peer.requests(), 1);

  assert_int_equal(DC_CTX_set_timeout(ctx, 0), 0);
  assert_int_equal(DC_CTX_set_timeout(ctx, 60001), 0);
  assert_int_not_equal(DC_CTX_set_timeout(ctx, 60000), 0);
  assert_int_equal(DC_CTX_set_backoff(ctx, 600001), 0);
  assert_int_not_equal(DC_CTX_set_backoff(ctx, 0), 0);
  DC_CTX_free(ctx);
}

void test_new_errors(void**) {
  assert_null(DC_CTX_new(nullptr, 0));
  assert_string_not_equal(DC_last_new_error(), "");
  assert_null(DC_CTX_new("TCP:nowhere", 0));
  assert_non_null(std::strstr(DC_last_new_error(), "TCP:nowhere"));
  // PERSISTENT without LATE connects at once, and fails creation.
  TempDir dir;
  std::string missing = "UNIX:" + dir.file("missing");
  assert_null(DC_CTX_new(missing.c_str(), DC_CTX_FLAG_PERSISTENT));
  assert_non_null(std::strstr(DC_last_new_error(), missing.c_str()));
  // ...but not with LATE, nor without PERSISTENT.
  DC_CTX* ctx = DC_CTX_new(missing.c_str(), DC_CTX_FLAG_PERSISTENT | DC_CTX_FLAG_PERSISTENT_LATE);
  assert_non_null(ctx);
  assert_string_equal(DC_last_new_error(), "");
  assert_int_equal(have(ctx), -1);
  assert_int_equal(DC_CTX_last_error(ctx), DC_ERR_CONNECT);
  assert_non_null(std::strstr(DC_CTX_last_error_string(ctx), missing.c_str()));
  DC_CTX_free(ctx);
  ctx = DC_CTX_new(missing.c_str(), 0);
  assert_non_null(ctx);
  DC_CTX_free(ctx);
}

void test_new_env(void**) {
  TempDir dir;
  FakePeer peer(dir.file("p"), Mode::answer);
  unsetenv("DC_CACHE_TIMEOUT_MS");
  unsetenv("DC_CACHE_ADDR");
  assert_null(DC_CTX_new_env(0));
  assert_non_null(std::strstr(DC_last_new_error(), "DC_CACHE_ADDR"));

  setenv("DC_CACHE_ADDR", "bogus", 1);
  assert_null(DC_CTX_new_env(0));
  assert_non_null(std::strstr(DC_last_new_error(), "bogus"));

  setenv("DC_CACHE_ADDR", peer.address().c_str(), 1);
  for (const char* bad : {"", "abc", "0", "60001", "-5", "12ms", " 5", "99999999999999999999"}) {
    setenv("DC_CACHE_TIMEOUT_MS", bad, 1);
    assert_null(DC_CTX_new_env(0));
    if (!std::strstr(DC_last_new_error(), "DC_CACHE_TIMEOUT_MS"))
      fail_msg("DC_CACHE_TIMEOUT_MS=\"%s\": message \"%s\"", bad, DC_last_new_error());
  }
  setenv("DC_CACHE_TIMEOUT_MS", "5000", 1);
  DC_CTX* ctx = DC_CTX_new_env(DC_CTX_FLAG_PERSISTENT);
  assert_non_null(ctx);
  assert_int_equal(have(ctx), 1);
  DC_CTX_free(ctx);

  // The variable's deadline is the one applied: 150 ms against a silent peer.
  peer.set_mode(Mode::silent);
  setenv("DC_CACHE_TIMEOUT_MS", "150", 1);
  ctx = DC_CTX_new_env(0);
  assert_non_null(ctx);
  int64_t t0 = dc::now_ms();
  assert_int_equal(have(ctx), -1);
  int64_t took = dc::now_ms() - t0;
  assert_int_equal(DC_CTX_last_error(ctx), DC_ERR_TIMEOUT);
  assert_true(took >= 140);
  assert_true(took < 3000);
  DC_CTX_free(ctx);
  unsetenv("DC_CACHE_TIMEOUT_MS");
  unsetenv("DC_CACHE_ADDR");
}

// A peer that accepts and never answers costs one deadline, in both modes;
// then the breaker is open: operations fail at once, without a request.
void test_deadline(void**) {
  TempDir dir;
  FakePeer peer(dir.file("p"), Mode::silent);
  for (unsigned flags : {0u, unsigned(DC_CTX_FLAG_PERSISTENT)}) {
    // Stable: every earlier connection was followed by an answered one, and
    // the peer accepts in arrival order.
    int base = peer.accepts();
    DC_CTX* ctx = DC_CTX_new(peer.address().c_str(), flags);
    assert_non_null(ctx);  // default deadline: DC_DEFAULT_OP_TIMEOUT_MS
    DC_CTX_set_backoff(ctx, 60000);
    unsigned char buf[512];
    unsigned used = 0;
    int64_t t0 = dc::now_ms();
    assert_int_equal(DC_CTX_get_session(ctx, u(kId), 4, buf, sizeof buf, &used), 0);
    int64_t took = dc::now_ms() - t0;
    assert_int_equal(DC_CTX_last_error(ctx), DC_ERR_TIMEOUT);
    assert_true(took >= DC_DEFAULT_OP_TIMEOUT_MS - 5);
    assert_true(took < 2000);
    int requests = peer.requests();
    t0 = dc::now_ms();
    for (int i = 0; i < 50; ++i) {
      assert_int_equal(have(ctx), -1);
      assert_int_equal(DC_CTX_last_error(ctx), DC_ERR_BACKOFF);
    }
    assert_true(dc::now_ms() - t0 < 1000);  // 50 skipped operations cost ~nothing
    assert_non_null(std::strstr(DC_CTX_last_error_string(ctx), "deadline"));
    // The back-off over, the probe goes out and its answer closes the
    // breaker. A persistent connection survived its timeout: the answer
    // comes on it, with no new connection.
    peer.set_mode(Mode::answer);
    DC_CTX_set_timeout(ctx, kSlowOk);
    DC_CTX_set_backoff(ctx, 0);
    assert_int_equal(have(ctx), 1);
    assert_int_equal(peer.requests(), requests + 1);
    assert_int_equal(peer.accepts(), base + (flags ? 1 : 2));
    DC_CTX_set_backoff(ctx, 60000);
    assert_int_equal(have(ctx), 1);  // closed again: no skipping
    peer.set_mode(Mode::silent);
    DC_CTX_free(ctx);
  }
}

// A late answer is dropped by its uid on the connection that waited for
// it: the next operation gets its own answer on the same connection, so a
// slow cache costs no reconnect.
void test_late_answer(void**) {
  TempDir dir;
  FakePeer peer(dir.file("p"), Mode::slow);
  peer.set_delay(300);
  DC_CTX* ctx =
      DC_CTX_new(peer.address().c_str(), DC_CTX_FLAG_PERSISTENT | DC_CTX_FLAG_PERSISTENT_LATE);
  assert_non_null(ctx);
  DC_CTX_set_timeout(ctx, 50);
  DC_CTX_set_backoff(ctx, 0);
  unsigned char buf[512];
  unsigned used = 0;
  // A GET abandoned at its deadline; its 300-byte answer arrives later.
  assert_int_equal(DC_CTX_get_session(ctx, u(kId), 4, buf, sizeof buf, &used), 0);
  assert_int_equal(DC_CTX_last_error(ctx), DC_ERR_TIMEOUT);
  peer.set_mode(Mode::answer);
  DC_CTX_set_timeout(ctx, kSlowOk);
  for (int i = 0; i < 3; ++i) {
    if (have(ctx) != 1) fail_msg("op %d: %s", i, DC_CTX_last_error_string(ctx));
  }
  assert_int_equal(peer.accepts(), 1);
  assert_int_equal(peer.requests(), 4);

  // Several abandoned in a row, then answers for all of them: dropped, in
  // order, before the answer of the operation that waits.
  peer.set_mode(Mode::slow);
  peer.set_delay(100);
  DC_CTX_set_timeout(ctx, 20);
  for (int i = 0; i < 3; ++i) {
    assert_int_equal(have(ctx), -1);
    assert_int_equal(DC_CTX_last_error(ctx), DC_ERR_TIMEOUT);
  }
  DC_CTX_set_timeout(ctx, kSlowOk);
  if (have(ctx) != 1) fail_msg("after 3 late answers: %s", DC_CTX_last_error_string(ctx));
  assert_int_equal(peer.accepts(), 1);
  DC_CTX_free(ctx);
}

// The agent's DISCONNECTED answer opens the breaker like a timeout: the
// agent would answer the same at once, or after its own deadline.
void test_disconnected_opens_breaker(void**) {
  TempDir dir;
  // A DISCONNECTED that took the agent its deadline: the breaker opens.
  FakePeer peer(dir.file("p"), Mode::slow_disconnected);
  peer.set_delay(3 * DC_PROMPT_DISCONNECTED_MS);
  DC_CTX* ctx = new_ctx(peer.address(), DC_CTX_FLAG_PERSISTENT);
  DC_CTX_set_backoff(ctx, 60000);
  unsigned char buf[64];
  unsigned used = 0;
  assert_int_equal(DC_CTX_get_session(ctx, u(kId), 4, buf, sizeof buf, &used), 0);
  assert_int_equal(DC_CTX_last_error(ctx), DC_ERR_DISCONNECTED);
  int requests = peer.requests();
  assert_int_equal(have(ctx), -1);
  assert_int_equal(DC_CTX_last_error(ctx), DC_ERR_BACKOFF);
  assert_non_null(std::strstr(DC_CTX_last_error_string(ctx), "DISCONNECTED"));
  assert_int_equal(peer.requests(), requests);
  // A DISCONNECTED given at once (the store of this session is away, as
  // one server of a pool or one master of a cluster can be): no breaker,
  // every operation still reaches the agent.
  peer.set_mode(Mode::disconnected);
  DC_CTX_set_backoff(ctx, 0);
  DC_CTX_set_backoff(ctx, 60000);
  requests = peer.requests();
  for (int i = 0; i < 5; ++i) {
    assert_int_equal(have(ctx), -1);
    assert_int_equal(DC_CTX_last_error(ctx), DC_ERR_DISCONNECTED);
  }
  assert_int_equal(peer.requests(), requests + 5);
  // A refused ADD (a duplicate) is an answer, not an outage: no breaker.
  peer.set_mode(Mode::answer);
  assert_int_equal(have(ctx), 1);
  assert_int_equal(have(ctx), 1);
  DC_CTX_free(ctx);
}

// One DC_CTX shared by threads (as Apache's mod_socache_dc does under the
// event MPM): every operation gets its own answer; none sees another's.
void test_shared_by_threads(void**) {
  TempDir dir;
  FakePeer peer(dir.file("p"), Mode::answer);
  DC_CTX* ctx = new_ctx(peer.address(), DC_CTX_FLAG_PERSISTENT | DC_CTX_FLAG_PERSISTENT_RETRY);
  constexpr int kThreads = 4, kOps = 300;
  std::atomic<int> bad{0};
  std::vector<std::thread> ts;
  for (int t = 0; t < kThreads; ++t) {
    ts.emplace_back([&, t] {
      std::string data(100 + t, char('a' + t));
      std::vector<unsigned char> buf(512);
      for (int i = 0; i < kOps; ++i) {
        unsigned used = 0;
        bool ok = (i % 3 == 0) ? DC_CTX_add_session(ctx, u(kId), 4, u(data), unsigned(data.size()),
                                                    1000) == 1
                  : (i % 3 == 1) ? DC_CTX_get_session(ctx, u(kId), 4, buf.data(),
                                                      unsigned(buf.size()), &used) == 1 &&
                                       used == FakePeer::data().size()
                                 : have(ctx) == 1;
        if (!ok) {
          bad.fetch_add(1);
          std::fprintf(stderr, "thread %d op %d: %s\n", t, i, DC_CTX_last_error_string(ctx));
        }
      }
    });
  }
  for (auto& t : ts) t.join();
  assert_int_equal(bad.load(), 0);
  assert_int_equal(peer.accepts(), 1);
  assert_int_equal(peer.requests(), kThreads * kOps);
  DC_CTX_free(ctx);
}

// DC_CTX_dup: the same cache and settings, its own connection, made
// without resolving or connecting; DC_CTX_FLAG_NO_ENV ignores the
// environment's deadline, even a malformed one.
void test_dup_and_no_env(void**) {
  TempDir dir;
  FakePeer peer(dir.file("p"), Mode::silent);
  setenv("DC_CACHE_TIMEOUT_MS", "soon", 1);
  assert_null(DC_CTX_new(peer.address().c_str(), DC_CTX_FLAG_PERSISTENT_LATE));
  DC_CTX* tmpl =
      DC_CTX_new(peer.address().c_str(),
                 DC_CTX_FLAG_PERSISTENT | DC_CTX_FLAG_PERSISTENT_LATE | DC_CTX_FLAG_NO_ENV);
  unsetenv("DC_CACHE_TIMEOUT_MS");
  assert_non_null(tmpl);
  assert_int_equal(peer.accepts(), 0);
  DC_CTX_set_timeout(tmpl, 60);
  DC_CTX* a = DC_CTX_dup(tmpl);
  DC_CTX* b = DC_CTX_dup(tmpl);
  assert_non_null(a);
  assert_non_null(b);
  assert_null(DC_CTX_dup(nullptr));
  int64_t t0 = dc::now_ms();
  assert_int_equal(have(a), -1);  // the template's 60 ms deadline
  int64_t took = dc::now_ms() - t0;
  assert_int_equal(DC_CTX_last_error(a), DC_ERR_TIMEOUT);
  assert_true(took >= 55 && took < 2000);
  // b has a breaker of its own: a's failure does not skip b's operation.
  peer.set_mode(Mode::answer);
  DC_CTX_set_timeout(b, kSlowOk);
  assert_int_equal(have(b), 1);
  assert_int_equal(DC_CTX_last_error(a), DC_ERR_TIMEOUT);
  assert_int_equal(have(a), -1);
  assert_int_equal(DC_CTX_last_error(a), DC_ERR_BACKOFF);
  assert_int_equal(peer.accepts(), 2);
  DC_CTX_free(a);
  DC_CTX_free(b);
  DC_CTX_free(tmpl);
}

// After a failed connect, operations are skipped without any connection
// attempt until the back-off has passed.
void test_backoff(void**) {
  TempDir dir;
  std::string path = dir.file("late");
  std::string addr = "UNIX:" + path;
  DC_CTX* ctx = DC_CTX_new(addr.c_str(), 0);
  assert_non_null(ctx);
  DC_CTX_set_backoff(ctx, 60000);
  assert_int_equal(have(ctx), -1);  // nobody listens: connect fails
  assert_int_equal(DC_CTX_last_error(ctx), DC_ERR_CONNECT);

  // Now a listener exists, but nobody accepts: each attempt would be queued.
  dc::Address a = dc::test::addr(addr);
  std::string err;
  dc::UniqueFd lfd = dc::listen_on(a, {}, err);
  assert_true(bool(lfd));
  std::vector<dc::UniqueFd> keep;
  unsigned char buf[64];
  unsigned used;
  std::string data(50, 'x');
  int64_t t0 = dc::now_ms();
  for (int i = 0; i < 20; ++i) {
    assert_int_equal(have(ctx), -1);
    assert_int_equal(DC_CTX_last_error(ctx), DC_ERR_BACKOFF);
    assert_int_equal(DC_CTX_get_session(ctx, u(kId), 4, buf, 64, &used), 0);
    assert_int_equal(DC_CTX_add_session(ctx, u(kId), 4, u(data), 50, 1000), 0);
    assert_int_equal(DC_CTX_remove_session(ctx, u(kId), 4), 0);
    assert_int_equal(DC_CTX_last_error(ctx), DC_ERR_BACKOFF);
  }
  assert_true(dc::now_ms() - t0 < 2000);  // 80 skipped operations cost ~nothing
  assert_int_equal(drain_pending(lfd.get(), keep), 0);

  // Shortening the back-off applies to the running one: the next operation
  // connects (and times out, as nobody answers).
  DC_CTX_set_backoff(ctx, 0);
  DC_CTX_set_timeout(ctx, 50);
  assert_int_equal(have(ctx), -1);
  assert_int_equal(DC_CTX_last_error(ctx), DC_ERR_TIMEOUT);
  assert_int_equal(drain_pending(lfd.get(), keep), 1);

  // A back-off ends by itself once its time has passed.
  lfd.reset();
  ::unlink(path.c_str());
  DC_CTX_set_backoff(ctx, 200);
  assert_int_equal(have(ctx), -1);
  assert_int_equal(DC_CTX_last_error(ctx), DC_ERR_CONNECT);
  lfd = dc::listen_on(a, {}, err);
  assert_true(bool(lfd));
  usleep(400 * 1000);  // more than the back-off: only a lower bound matters
  assert_int_equal(have(ctx), -1);
  assert_int_equal(DC_CTX_last_error(ctx), DC_ERR_TIMEOUT);
  assert_int_equal(drain_pending(lfd.get(), keep), 1);
  DC_CTX_free(ctx);
}

// Without PERSISTENT each operation has its own connection; with it, one.
void test_connection_modes(void**) {
  TempDir dir;
  FakePeer peer(dir.file("p"), Mode::answer);
  DC_CTX* ctx = new_ctx(peer.address(), 0);
  for (int i = 0; i < 3; ++i) assert_int_equal(have(ctx), 1);
  assert_int_equal(peer.accepts(), 3);
  DC_CTX_free(ctx);

  ctx = new_ctx(peer.address(), DC_CTX_FLAG_PERSISTENT);  // connects here
  for (int i = 0; i < 3; ++i) assert_int_equal(have(ctx), 1);
  assert_int_equal(peer.accepts(), 4);
  DC_CTX_free(ctx);

  ctx = new_ctx(peer.address(), DC_CTX_FLAG_PERSISTENT | DC_CTX_FLAG_PERSISTENT_LATE);
  for (int i = 0; i < 3; ++i) assert_int_equal(have(ctx), 1);
  assert_int_equal(peer.accepts(), 5);
  assert_int_equal(peer.requests(), 9);
  DC_CTX_free(ctx);

  // When DC_CTX_new connects, seen from a listener nobody serves (connect()
  // to a UNIX socket is queued synchronously): LATE does not, plain
  // PERSISTENT does, and without PERSISTENT nothing does.
  std::string err;
  dc::UniqueFd lfd = dc::listen_on(dc::test::addr("UNIX:" + dir.file("q")), {}, err);
  assert_true(bool(lfd));
  std::vector<dc::UniqueFd> keep;
  std::string q = "UNIX:" + dir.file("q");
  DC_CTX_free(new_ctx(q, DC_CTX_FLAG_PERSISTENT | DC_CTX_FLAG_PERSISTENT_LATE));
  DC_CTX_free(new_ctx(q, 0));
  assert_int_equal(drain_pending(lfd.get(), keep), 0);
  DC_CTX_free(new_ctx(q, DC_CTX_FLAG_PERSISTENT));
  assert_int_equal(drain_pending(lfd.get(), keep), 1);
}

// A GET answer larger than the buffer: success, the full length, a prefix
// copied; reget returns it all without a request.
void test_small_buffer_and_reget(void**) {
  TempDir dir;
  FakePeer peer(dir.file("p"), Mode::answer);
  DC_CTX* ctx = new_ctx(peer.address(), DC_CTX_FLAG_PERSISTENT);
  const std::string d = FakePeer::data();
  std::vector<unsigned char> buf(d.size() + 10, 0xee);
  unsigned used = 0;
  assert_int_not_equal(DC_CTX_get_session(ctx, u(kId), unsigned(kId.size()), buf.data(), 10, &used),
                       0);
  assert_int_equal(used, d.size());
  assert_memory_equal(buf.data(), d.data(), 10);
  assert_int_equal(buf[10], 0xee);  // nothing beyond result_size
  int reqs = peer.requests();
  used = 0;
  assert_int_not_equal(DC_CTX_reget_session(ctx, u(kId), unsigned(kId.size()), buf.data(),
                                            unsigned(buf.size()), &used),
                       0);
  assert_int_equal(used, d.size());
  assert_memory_equal(buf.data(), d.data(), d.size());
  // NULL storage (size query) and NULL result_used are accepted.
  assert_int_not_equal(DC_CTX_reget_session(ctx, u(kId), unsigned(kId.size()), nullptr, 0, &used),
                       0);
  assert_int_not_equal(DC_CTX_reget_session(ctx, u(kId), unsigned(kId.size()), buf.data(),
                                            unsigned(buf.size()), nullptr),
                       0);
  // Another id: nothing to reget.
  assert_int_equal(DC_CTX_reget_session(ctx, u(kId), 3, buf.data(), unsigned(buf.size()), &used),
                   0);
  assert_int_equal(peer.requests(), reqs);  // no network for any reget
  // Any other operation in between discards the cached answer.
  assert_int_equal(have(ctx), 1);
  assert_int_equal(DC_CTX_reget_session(ctx, u(kId), unsigned(kId.size()), buf.data(),
                                        unsigned(buf.size()), &used),
                   0);
  DC_CTX_free(ctx);
}

// RETRY: a persistent connection that the peer closed is replaced once, and
// the operation succeeds; without RETRY the operation fails and the next one
// reconnects.
void test_retry(void**) {
  signal(SIGPIPE, SIG_DFL);  // a send without MSG_NOSIGNAL would kill us here
  TempDir dir;
  FakePeer peer(dir.file("p"), Mode::close_after_answer);
  DC_CTX* ctx = new_ctx(peer.address(), DC_CTX_FLAG_PERSISTENT | DC_CTX_FLAG_PERSISTENT_RETRY);
  for (int i = 0; i < 4; ++i) {
    if (have(ctx) != 1) fail_msg("op %d: %s", i, DC_CTX_last_error_string(ctx));
  }
  assert_int_equal(peer.accepts(), 4);  // each op after the first needed its retry
  DC_CTX_free(ctx);

  ctx = new_ctx(peer.address(), DC_CTX_FLAG_PERSISTENT);
  assert_int_equal(have(ctx), 1);
  assert_int_equal(have(ctx), -1);
  assert_int_equal(DC_CTX_last_error(ctx), DC_ERR_IO);
  assert_int_equal(have(ctx), -1);  // the broken connection opened the breaker
  assert_int_equal(DC_CTX_last_error(ctx), DC_ERR_BACKOFF);
  DC_CTX_set_backoff(ctx, 0);
  assert_int_equal(have(ctx), 1);  // the probe reconnects
  assert_int_equal(peer.accepts(), 6);
  DC_CTX_free(ctx);
}

// PIDCHECK: a forked child opens its own connection; the parent keeps its.
void test_fork_pidcheck(void**) {
  TempDir dir;
  FakePeer peer(dir.file("p"), Mode::answer);
  for (bool pidcheck : {true, false}) {
    unsigned flags = DC_CTX_FLAG_PERSISTENT | (pidcheck ? DC_CTX_FLAG_PERSISTENT_PIDCHECK : 0);
    int base = peer.accepts();
    DC_CTX* ctx = new_ctx(peer.address(), flags);
    assert_int_equal(have(ctx), 1);
    assert_int_equal(peer.accepts(), base + 1);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) _exit(have(ctx) == 1 && have(ctx) == 1 ? 0 : 1);
    int st = 0;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    // With PIDCHECK the child connected on its own; without, it used (and
    // shared) the parent's socket, as 1.x does.
    assert_int_equal(peer.accepts(), base + (pidcheck ? 2 : 1));
    assert_int_equal(have(ctx), 1);
    assert_int_equal(have(ctx), 1);
    assert_int_equal(peer.accepts(), base + (pidcheck ? 2 : 1));  // parent kept its own
    DC_CTX_free(ctx);
  }
}

// A response with another uid, or bytes that are not the protocol: an
// error, and the connection is not reused.
void test_bad_peer(void**) {
  TempDir dir;
  FakePeer peer(dir.file("p"), Mode::wrong_uid);
  DC_CTX* ctx = new_ctx(peer.address(), DC_CTX_FLAG_PERSISTENT);
  DC_CTX_set_backoff(ctx, 0);  // about the connection, not the breaker
  assert_int_equal(have(ctx), -1);
  assert_int_equal(DC_CTX_last_error(ctx), DC_ERR_PROTOCOL);
  peer.set_mode(Mode::garbage);
  assert_int_equal(have(ctx), -1);
  assert_int_equal(DC_CTX_last_error(ctx), DC_ERR_PROTOCOL);
  assert_non_null(std::strstr(DC_CTX_last_error_string(ctx), "protocol"));
  peer.set_mode(Mode::answer);
  assert_int_equal(have(ctx), 1);
  assert_int_equal(DC_CTX_last_error(ctx), DC_ERR_NONE);
  assert_int_equal(peer.accepts(), 3);  // a fresh connection after each bad one
  DC_CTX_free(ctx);
}

// Two contexts in one process do not disturb each other.
void test_two_contexts(void**) {
  TempDir dir;
  FakePeer good(dir.file("good"), Mode::answer);
  FakePeer silent(dir.file("silent"), Mode::silent);
  DC_CTX* a = new_ctx(good.address(), DC_CTX_FLAG_PERSISTENT);
  DC_CTX* b = DC_CTX_new(silent.address().c_str(), DC_CTX_FLAG_PERSISTENT);
  assert_non_null(b);
  DC_CTX_set_timeout(b, 30);
  assert_int_equal(have(b), -1);
  assert_int_equal(have(a), 1);
  assert_int_equal(DC_CTX_last_error(b), DC_ERR_TIMEOUT);
  assert_int_equal(DC_CTX_last_error(a), DC_ERR_NONE);
  DC_CTX_free(b);
  assert_int_equal(have(a), 1);
  DC_CTX_free(a);
}

// dc_test's self-check catches a cache that lies: the peer says yes to
// everything and answers every GET with the same data.
void test_dc_test_catches_lies(void**) {
  TempDir dir;
  FakePeer peer(dir.file("p"), Mode::answer);
  std::string out;
  int rc = dc::test::run({dc::test::env_or_die("DC_TEST"), "-connect", peer.address(), "-sessions",
                          "1", "-ops", "100", "-deadline", "10000"},
                         out);
  if (rc != 1 || out.find("FAILED at operation") == std::string::npos ||
      out.find("expected") == std::string::npos)
    fail_msg("dc_test exited %d:\n%s", rc, out.c_str());
}

}  // namespace

int main() {
  const CMUnitTest tests[] = {
      cmocka_unit_test(test_bad_arguments),
      cmocka_unit_test(test_new_errors),
      cmocka_unit_test(test_new_env),
      cmocka_unit_test(test_deadline),
      cmocka_unit_test(test_late_answer),
      cmocka_unit_test(test_disconnected_opens_breaker),
      cmocka_unit_test(test_shared_by_threads),
      cmocka_unit_test(test_dup_and_no_env),
      cmocka_unit_test(test_backoff),
      cmocka_unit_test(test_connection_modes),
      cmocka_unit_test(test_small_buffer_and_reget),
      cmocka_unit_test(test_retry),
      cmocka_unit_test(test_fork_pidcheck),
      cmocka_unit_test(test_bad_peer),
      cmocka_unit_test(test_two_contexts),
      cmocka_unit_test(test_dc_test_catches_lies),
  };
  return cmocka_run_group_tests(tests, nullptr, nullptr);
}
