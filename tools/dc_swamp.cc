// dc_swamp: a TLS handshake load generator (OpenSSL). Each of `-conns`
// threads makes handshakes back to back on blocking sockets (with deadlines):
// a full handshake on one server, and, with probability `-resume`, a
// resumption attempt of a session it holds on the *next* server of the list
// (round robin), which is what a distributed session cache must make work.
// It reports handshakes per second, full vs resumed (JSON: "full" counts
// every handshake that was not resumed, "fresh" those that offered no
// session), and the share of resumption attempts the servers accepted
// (SSL_session_reused).
//
// Sessions: TLS 1.2 sessions are reused freely. A TLS 1.3 session arrives as
// a ticket after the handshake, so after every handshake the thread reads
// (with a short deadline, -ticketwait) until it holds a resumable session;
// TLS 1.3 tickets are used once (RFC 8446 advises single use), the ticket
// issued by the resumed handshake replacing it. Certificates are not
// verified (test servers use self-signed ones).
//
// Output: a progress line per second on stderr (unless -quiet) and one JSON
// line on stdout. Exit status 0 when every handshake succeeded, 1 otherwise,
// 2 for a bad command line.
//
// -ticks MS adds a machine-readable line on stderr every MS ms, for scripts
// that inject a fault during the run and must place its start and end among
// the counts (bench/stall.sh): wall-clock time (what `date +%s%3N` shows) and
// cumulative counters, plus the wall-clock time of the first resumed
// handshake since the previous tick, so the moment resumption returns is
// known to the millisecond rather than to the tick.
#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "addr.h"
#include "cli.h"
#include "net.h"

namespace {

const char* const kUsage =
    "usage: dc_swamp -connect HOST:PORT [-connect HOST:PORT ...] [options]\n"
    "  -connect SERVER   a TLS server (host:port, IP:host:port or UNIX:/path); repeatable\n"
    "  -conns N          parallel connections (threads), default 8\n"
    "  -resume RATIO     share of handshakes that try to resume, 0..1 (default 0.9)\n"
    "  -tls 1.2|1.3      protocol version (default 1.3)\n"
    "  -duration SECS    run this long (default 10)\n"
    "  -count N          run N handshakes instead of a duration\n"
    "  -sni NAME         server name to send (default none)\n"
    "  -ticketwait MS    how long to wait for a TLS 1.3 ticket after a handshake (default 500)\n"
    "  -quiet            no progress line on stderr\n"
    "  -ticks MS         every MS ms also a line on stderr: tick unix_ms=T handshakes=N\n"
    "                    attempts=N resumed=N failed=N first_resumed_unix_ms=T (cumulative\n"
    "                    counts; the last field is the first resumption since the previous\n"
    "                    tick, 0 if none); not silenced by -quiet\n"
    "  -h, --help        this text\n"
    "Resumes each session on the server after the one that made it (round robin).\n"
    "Prints one JSON line on stdout; exit 0 when no handshake failed, 1 otherwise.\n";

struct Options {
  std::vector<std::string> servers;
  uint32_t conns = 8;
  double resume = 0.9;
  int tls = 13;  // 12 or 13
  double duration = 10;
  bool by_count = false;
  uint64_t count = 0;
  std::string sni;
  int ticket_wait_ms = 500;
  bool quiet = false;
  int ticks_ms = 0;  // 0: no tick lines
};

Options parse_options(int argc, char** argv) {
  Options o;
  auto bad = [](const std::string& m) { dc::tools::usage_error("dc_swamp", m, kUsage); };
  for (int i = 1; i < argc; ++i) {
    std::string f = argv[i];
    dc::tools::answer_help(f, kUsage);
    if (f == "-quiet") {
      o.quiet = true;
      continue;
    }
    if (i + 1 >= argc) bad("flag " + f + " needs a value (or is unknown)");
    std::string v = argv[++i];
    uint64_t n = 0;
    if (f == "-connect" || f == "-server") {
      o.servers.push_back(v);
    } else if (f == "-conns" || f == "-connections") {
      if (!dc::tools::parse_decimal(v, 1, 10000, n)) bad("bad -conns '" + v + "' (want 1..10000)");
      o.conns = uint32_t(n);
    } else if (f == "-resume") {
      if (!dc::tools::parse_double(v, 0, 1, o.resume)) bad("bad -resume '" + v + "' (want 0..1)");
    } else if (f == "-tls") {
      if (v == "1.2")
        o.tls = 12;
      else if (v == "1.3")
        o.tls = 13;
      else
        bad("bad -tls '" + v + "' (want 1.2 or 1.3)");
    } else if (f == "-duration") {
      if (!dc::tools::parse_double(v, 0.001, 1e7, o.duration))
        bad("bad -duration '" + v + "' (want seconds > 0)");
      o.by_count = false;
    } else if (f == "-count") {
      if (!dc::tools::parse_decimal(v, 1, UINT64_MAX, o.count)) bad("bad -count '" + v + "'");
      o.by_count = true;
    } else if (f == "-sni") {
      o.sni = v;
    } else if (f == "-ticketwait") {
      if (!dc::tools::parse_decimal(v, 0, 60000, n))
        bad("bad -ticketwait '" + v + "' (want 0..60000)");
      o.ticket_wait_ms = int(n);
    } else if (f == "-ticks") {
      if (!dc::tools::parse_decimal(v, 10, 60000, n))
        bad("bad -ticks '" + v + "' (want 10..60000)");
      o.ticks_ms = int(n);
    } else {
      bad("unknown flag " + f);
    }
  }
  if (o.servers.empty()) bad("at least one -connect SERVER is required");
  return o;
}

// Reads a server as the project's address syntax, or as plain host:port.
bool server_address(const std::string& s, dc::SockAddr& out, std::string& err) {
  dc::Address a;
  std::string text = s;
  if (s.rfind("IP:", 0) != 0 && s.rfind("UNIX:", 0) != 0) text = "IP:" + s;
  if (!dc::parse_address(text, a, err)) return false;
  if (a.kind == dc::Address::Kind::ip && a.host.empty()) a.host = "127.0.0.1";
  return dc::resolve(a, false, out, err);
}

struct SslCtxFree {
  void operator()(SSL_CTX* c) const { SSL_CTX_free(c); }
};
struct SslFree {
  void operator()(SSL* s) const { SSL_free(s); }
};
struct SessionFree {
  void operator()(SSL_SESSION* s) const { SSL_SESSION_free(s); }
};
using CtxPtr = std::unique_ptr<SSL_CTX, SslCtxFree>;
using SslPtr = std::unique_ptr<SSL, SslFree>;
using SessionPtr = std::unique_ptr<SSL_SESSION, SessionFree>;

// Counters shared by the threads (relaxed atomics: only totals matter).
struct Totals {
  std::atomic<uint64_t> handshakes{0};  // successful, full or resumed
  std::atomic<uint64_t> fresh{0};       // handshakes that offered no session
  std::atomic<uint64_t> attempts{0};    // handshakes that offered a session
  std::atomic<uint64_t> resumed{0};     // ... and were resumed
  std::atomic<uint64_t> failed{0};      // connect or handshake failures
  std::atomic<uint64_t> no_session{0};  // handshakes after which no resumable session came
  std::atomic<uint64_t> started{0};     // handshakes begun (for -count)
  // Wall-clock ms of the first resumption since the last -ticks line; 0: none.
  std::atomic<int64_t> first_resumed_ms{0};
};

int64_t unix_ms() {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return int64_t(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

// The first failure message, printed once.
std::mutex g_err_mu;
bool g_err_printed = false;
void report_failure(const std::string& what) {
  std::lock_guard<std::mutex> l(g_err_mu);
  if (g_err_printed) return;
  g_err_printed = true;
  std::fprintf(stderr, "dc_swamp: %s (further failures are only counted)\n", what.c_str());
}

std::string ssl_errors() {
  std::string s;
  unsigned long e;
  char buf[256];
  while ((e = ERR_get_error()) != 0) {
    ERR_error_string_n(e, buf, sizeof buf);
    if (!s.empty()) s += "; ";
    s += buf;
  }
  return s.empty() ? "no OpenSSL error" : s;
}

// Waits for `events` on fd until `deadline` (now_ms based); false on timeout.
bool wait_fd(int fd, short events, int64_t deadline) {
  for (;;) {
    int64_t left = deadline - dc::now_ms();
    if (left <= 0) return false;
    pollfd p{fd, events, 0};
    int r = ::poll(&p, 1, int(left));
    if (r > 0) return true;
    if (r == 0) return false;
    if (errno != EINTR) return false;
  }
}

constexpr int kIoTimeoutMs = 5000;

// A connected blocking socket with send/receive timeouts, or an empty fd.
dc::UniqueFd connect_to(const dc::SockAddr& sa, std::string& err) {
  dc::UniqueFd fd = dc::connect_start(sa, err);
  if (!fd) return fd;
  if (!wait_fd(fd.get(), POLLOUT, dc::now_ms() + kIoTimeoutMs)) {
    err = "connect timed out";
    return {};
  }
  if (int e = dc::connect_result(fd.get()); e != 0) {
    err = strerror(e);
    return {};
  }
  int fl = fcntl(fd.get(), F_GETFL);
  fcntl(fd.get(), F_SETFL, fl & ~O_NONBLOCK);
  timeval tv{kIoTimeoutMs / 1000, 0};
  setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  return fd;
}

struct Held {
  SessionPtr s;
  size_t origin;  // the server that issued it
};

class Swamp {
 public:
  explicit Swamp(const Options& o) : o_(o) {}
  int run();

 private:
  void worker(size_t index);
  // One handshake on server `srv`, offering `offer` when not null. Returns
  // the resumable session it ended with (may be null); counts everything.
  SessionPtr handshake(size_t srv, SSL_SESSION* offer);
  bool more();

  const Options& o_;
  std::vector<dc::SockAddr> addrs_;
  CtxPtr ctx_;
  Totals t_;
  std::atomic<bool> stop_{false};
};

bool Swamp::more() {
  if (stop_.load(std::memory_order_relaxed)) return false;
  if (!o_.by_count) return true;
  return t_.started.fetch_add(1, std::memory_order_relaxed) < o_.count;
}

SessionPtr Swamp::handshake(size_t srv, SSL_SESSION* offer) {
  std::string err;
  dc::UniqueFd fd = connect_to(addrs_[srv], err);
  if (!fd) {
    t_.failed.fetch_add(1, std::memory_order_relaxed);
    report_failure("connect to " + o_.servers[srv] + ": " + err);
    return nullptr;
  }
  SslPtr ssl(SSL_new(ctx_.get()));
  if (!ssl || !SSL_set_fd(ssl.get(), fd.get())) {
    t_.failed.fetch_add(1, std::memory_order_relaxed);
    report_failure("SSL_new: " + ssl_errors());
    return nullptr;
  }
  if (!o_.sni.empty()) SSL_set_tlsext_host_name(ssl.get(), o_.sni.c_str());
  if (offer) SSL_set_session(ssl.get(), offer);
  ERR_clear_error();
  if (SSL_connect(ssl.get()) != 1) {
    t_.failed.fetch_add(1, std::memory_order_relaxed);
    report_failure("handshake with " + o_.servers[srv] + " failed: " + ssl_errors());
    return nullptr;
  }
  t_.handshakes.fetch_add(1, std::memory_order_relaxed);
  if (offer) {
    t_.attempts.fetch_add(1, std::memory_order_relaxed);
    if (SSL_session_reused(ssl.get())) {
      t_.resumed.fetch_add(1, std::memory_order_relaxed);
      // Only the first of each tick writes, so the shared line stays read-mostly.
      if (o_.ticks_ms > 0 && t_.first_resumed_ms.load(std::memory_order_relaxed) == 0) {
        int64_t none = 0;
        t_.first_resumed_ms.compare_exchange_strong(none, unix_ms(), std::memory_order_relaxed);
      }
    }
  } else {
    t_.fresh.fetch_add(1, std::memory_order_relaxed);
  }
  // TLS 1.3: the ticket (the resumable session) comes after the handshake.
  // Without auto-retry, SSL_read returns after each non-data record, so the
  // loop stops as soon as a ticket has been processed.
  if (o_.tls == 13 && o_.ticket_wait_ms > 0) {
    int64_t deadline = dc::now_ms() + o_.ticket_wait_ms;
    char b[256];
    // After a resumption the offered (used) session is current until the
    // new ticket replaces it, so wait for a resumable session that differs.
    auto have_ticket = [&] {
      SSL_SESSION* cur = SSL_get0_session(ssl.get());
      return cur && cur != offer && SSL_SESSION_is_resumable(cur);
    };
    while (!have_ticket()) {
      if (SSL_pending(ssl.get()) == 0 && !wait_fd(fd.get(), POLLIN, deadline)) break;
      int r = SSL_read(ssl.get(), b, sizeof b);
      if (r <= 0 && SSL_get_error(ssl.get(), r) != SSL_ERROR_WANT_READ) break;
    }
    ERR_clear_error();
  }
  SessionPtr s(SSL_get1_session(ssl.get()));
  if (s && (!SSL_SESSION_is_resumable(s.get()) || (o_.tls == 13 && s.get() == offer))) s.reset();
  if (!s) t_.no_session.fetch_add(1, std::memory_order_relaxed);
  // A clean close_notify keeps OpenSSL from marking the session unusable.
  SSL_shutdown(ssl.get());
  ERR_clear_error();
  return s;
}

void Swamp::worker(size_t index) {
  const size_t n = addrs_.size();
  uint64_t rng = 0x9e3779b97f4a7c15ULL * (index + 1);
  std::deque<Held> held;  // sessions this thread may offer
  constexpr size_t kMaxHeld = 16;
  size_t next_full = index % n;
  while (more()) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    double u = double(rng >> 11) / double(uint64_t(1) << 53);
    bool try_resume = !held.empty() && u < o_.resume;
    if (try_resume) {
      Held h = std::move(held.front());
      held.pop_front();
      size_t srv = (h.origin + 1) % n;  // another server, round robin
      SessionPtr s = handshake(srv, h.s.get());
      // TLS 1.2: `s` is the offered session again when it resumed, so it
      // stays in use; TLS 1.3: it is the fresh ticket of this handshake.
      if (s) held.push_back({std::move(s), srv});
    } else {
      size_t srv = next_full;
      next_full = (next_full + 1) % n;
      SessionPtr s = handshake(srv, nullptr);
      if (s) held.push_back({std::move(s), srv});
    }
    while (held.size() > kMaxHeld) held.pop_front();
  }
}

int Swamp::run() {
  for (const auto& s : o_.servers) {
    dc::SockAddr sa;
    std::string err;
    if (!server_address(s, sa, err)) {
      std::fprintf(stderr, "dc_swamp: %s\n", err.c_str());
      return 2;
    }
    addrs_.push_back(sa);
  }
  ctx_.reset(SSL_CTX_new(TLS_client_method()));
  if (!ctx_) {
    std::fprintf(stderr, "dc_swamp: SSL_CTX_new: %s\n", ssl_errors().c_str());
    return 1;
  }
  int ver = o_.tls == 12 ? TLS1_2_VERSION : TLS1_3_VERSION;
  SSL_CTX_set_min_proto_version(ctx_.get(), ver);
  SSL_CTX_set_max_proto_version(ctx_.get(), ver);
  SSL_CTX_set_verify(ctx_.get(), SSL_VERIFY_NONE, nullptr);
  SSL_CTX_clear_mode(ctx_.get(), SSL_MODE_AUTO_RETRY);

  auto t0 = std::chrono::steady_clock::now();
  std::vector<std::thread> threads;
  for (size_t i = 0; i < o_.conns; ++i) threads.emplace_back([this, i] { worker(i); });

  uint64_t last = 0;
  int sec = 0;
  auto next = t0 + std::chrono::seconds(1);
  auto tick_every = std::chrono::milliseconds(o_.ticks_ms);
  auto next_tick = t0 + tick_every;
  auto tick = [&] {
    // The time and the counts are read apart, so a resumption made meanwhile
    // may show in one line's counts and the next line's time (or the reverse).
    uint64_t h = t_.handshakes.load(), a = t_.attempts.load(), r = t_.resumed.load();
    uint64_t f = t_.failed.load();
    int64_t first = t_.first_resumed_ms.exchange(0);
    std::fprintf(stderr,
                 "tick unix_ms=%lld handshakes=%llu attempts=%llu resumed=%llu failed=%llu "
                 "first_resumed_unix_ms=%lld\n",
                 (long long)unix_ms(), (unsigned long long)h, (unsigned long long)a,
                 (unsigned long long)r, (unsigned long long)f, (long long)first);
  };
  auto end = t0 + std::chrono::duration<double>(o_.duration);
  std::atomic<size_t> running{threads.size()};
  // The main thread keeps time; threads end on their own in -count mode.
  std::thread joiner([&] {
    for (auto& th : threads) th.join();
    running = 0;
  });
  // Short ticks need a shorter nap to come on time.
  const int nap_ms = o_.ticks_ms > 0 && o_.ticks_ms < 20 ? o_.ticks_ms : 20;
  if (o_.ticks_ms > 0) tick();  // the start, all counts 0
  while (running.load() > 0) {
    std::this_thread::sleep_for(std::chrono::milliseconds(nap_ms));
    auto now = std::chrono::steady_clock::now();
    if (!o_.by_count && now >= end) stop_ = true;
    if (o_.ticks_ms > 0 && now >= next_tick) {
      tick();
      while (next_tick <= now) next_tick += tick_every;
    }
    if (now >= next) {
      ++sec;
      next += std::chrono::seconds(1);
      uint64_t h = t_.handshakes.load();
      if (!o_.quiet) {
        uint64_t a = t_.attempts.load();
        std::fprintf(stderr,
                     "dc_swamp: %3ds %8llu handshakes/s  full %llu  resumed %llu/%llu (%.1f%%)  "
                     "failed %llu\n",
                     sec, (unsigned long long)(h - last),
                     (unsigned long long)(h - t_.resumed.load()),
                     (unsigned long long)t_.resumed.load(), (unsigned long long)a,
                     a ? 100.0 * double(t_.resumed.load()) / double(a) : 0.0,
                     (unsigned long long)t_.failed.load());
      }
      last = h;
    }
  }
  joiner.join();
  if (o_.ticks_ms > 0) tick();  // the end: the totals of the JSON line
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  uint64_t h = t_.handshakes, a = t_.attempts, r = t_.resumed;
  std::string servers;
  for (const auto& s : o_.servers) {
    if (!servers.empty()) servers += ",";
    servers += "\"" + dc::tools::json_escape(s) + "\"";
  }
  std::printf(
      "{\"tool\":\"dc_swamp\",\"servers\":[%s],\"connections\":%u,\"tls\":\"%s\","
      "\"resume_ratio\":%.3f,\"seconds\":%.3f,\"handshakes\":%llu,\"handshakes_per_sec\":%.1f,"
      "\"full\":%llu,\"fresh\":%llu,\"resume_attempts\":%llu,\"resumed\":%llu,\"resumed_per_sec\":%"
      ".1f,"
      "\"resume_accept_rate\":%.4f,\"failed\":%llu,\"no_session\":%llu}\n",
      servers.c_str(), o_.conns, o_.tls == 12 ? "1.2" : "1.3", o_.resume, secs,
      (unsigned long long)h, secs > 0 ? double(h) / secs : 0.0, (unsigned long long)(h - r),
      (unsigned long long)t_.fresh.load(), (unsigned long long)a, (unsigned long long)r,
      secs > 0 ? double(r) / secs : 0.0, a ? double(r) / double(a) : 0.0,
      (unsigned long long)t_.failed.load(), (unsigned long long)t_.no_session.load());
  std::fflush(stdout);
  return t_.failed.load() == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  Options o = parse_options(argc, argv);
  signal(SIGPIPE, SIG_IGN);
  Swamp s(o);
  return s.run();
}
