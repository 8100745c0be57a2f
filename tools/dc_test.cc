// dc_test: a self-checking load test of a distcache server or agent through
// the public DC_CTX API (flags of distcache 1.x's dc_test).
//
// It keeps an array of -sessions slots, each with a random id and, when the
// cache should hold it, the data last added. Random ADD/GET/REMOVE/HAVE
// operations are checked against that expected state; the first unexpected
// answer stops the run with one line naming the operation, the id, and what
// was expected and got (exit 1). Expiry is accounted for: a slot whose
// session may have expired (its expiry, with a safety margin, overlaps the
// operation) accepts either answer and resynchronises on it. At the end it
// prints operations per second and latency p50/p99/max.
//
// It assumes it is the only writer of its (random) ids on the cache.
#include <distcache/dc_client.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "cli.h"  // --version, parse_decimal

namespace {

constexpr const char* kUsage =
    "usage: dc_test [options]\n"
    "  -connect ADDR   cache address (default UNIX:/run/distcache/dc_client.sock)\n"
    "  -progress N     print progress every N operations (default 0: never)\n"
    "  -sessions N     number of session slots (default 10)\n"
    "  -datamin N      smallest session data, bytes (default 50, at least 5)\n"
    "  -datamax N      largest session data, bytes (default 1000, at most 32000)\n"
    "  -timeout N      session timeout, ms (default 60000)\n"
    "  -timevar N      random extra session timeout 0..N ms (default 0)\n"
    "  -ops N          number of operations (default 1000)\n"
    "  -persistent     use one persistent connection (default: one per operation)\n"
    "  -deadline N     per-operation deadline, ms (default 100; extension)\n"
    "  -h              this help\n";

// Expiry is judged with this margin on each side of the client's own
// timestamps, so that clock granularity and the server's loop time never
// make a correct server look wrong.
constexpr int64_t kExpiryMarginMs = 1000;

int64_t mono_ms() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(steady_clock::now().time_since_epoch()).count();
}

struct Options {
  std::string connect = "UNIX:/run/distcache/dc_client.sock";  // dc_client's default
  unsigned long progress = 0;
  unsigned long sessions = 10;
  unsigned long datamin = 50;
  unsigned long datamax = 1000;
  unsigned long timeout = 60000;
  unsigned long timevar = 0;
  unsigned long ops = 1000;
  bool persistent = false;
  unsigned long deadline = DC_DEFAULT_OP_TIMEOUT_MS;
};

[[noreturn]] void usage_error(const std::string& line) {
  std::fprintf(stderr, "dc_test: %s\n%s", line.c_str(), kUsage);
  std::exit(2);
}

unsigned long number(const char* flag, const char* text, unsigned long min, unsigned long max) {
  uint64_t v = 0;
  if (!dc::parse_decimal(text, min, max, v))
    usage_error(std::string(flag) + " needs a number in " + std::to_string(min) + ".." +
                std::to_string(max) + ", got \"" + text + "\"");
  return v;
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string f = argv[i];
    if (f == "-h") {
      std::fputs(kUsage, stdout);
      std::exit(0);
    }
    if (f == "-persistent") {
      o.persistent = true;
      continue;
    }
    if (i + 1 >= argc)
      usage_error(f == "-connect" || f == "-progress" || f == "-sessions" || f == "-datamin" ||
                          f == "-datamax" || f == "-timeout" || f == "-timevar" || f == "-ops" ||
                          f == "-deadline"
                      ? f + " needs a value"
                      : "unknown flag " + f);
    const char* v = argv[++i];
    if (f == "-connect")
      o.connect = v;
    else if (f == "-progress")
      o.progress = number("-progress", v, 0, 1UL << 40);
    else if (f == "-sessions")
      o.sessions = number("-sessions", v, 1, 1000000);
    else if (f == "-datamin")
      o.datamin = number("-datamin", v, 5, 32000);
    else if (f == "-datamax")
      o.datamax = number("-datamax", v, 5, 32000);
    else if (f == "-timeout")
      o.timeout = number("-timeout", v, DC_MIN_TIMEOUT, 604800000);
    else if (f == "-timevar")
      o.timevar = number("-timevar", v, 0, 604800000);
    else if (f == "-ops")
      o.ops = number("-ops", v, 1, 1UL << 40);
    else if (f == "-deadline")
      o.deadline = number("-deadline", v, 1, DC_MAX_OP_TIMEOUT_MS);
    else
      usage_error("unknown flag " + f);
  }
  if (o.datamin > o.datamax) usage_error("-datamin is larger than -datamax");
  if (o.timeout + o.timevar > 604800000) usage_error("-timeout plus -timevar exceeds 7 days");
  return o;
}

// What the cache should hold for one id.
struct Slot {
  std::string id;
  bool present = false;         // as far as we know
  std::string data;             // when present
  int64_t earliest_expiry = 0;  // the session surely lives until then
  int64_t latest_expiry = 0;    // and is surely gone after
};

std::string hex(const std::string& s) {
  static const char* d = "0123456789abcdef";
  std::string out;
  for (unsigned char c : s.substr(0, 8)) {
    out += d[c >> 4];
    out += d[c & 15];
  }
  return out + (s.size() > 8 ? "..." : "");
}

const unsigned char* u(const std::string& s) {
  return reinterpret_cast<const unsigned char*>(s.data());
}

class Runner {
 public:
  Runner(const Options& o, DC_CTX* ctx) : o_(o), ctx_(ctx), rng_(std::random_device{}()) {
    slots_.resize(o.sessions);
    for (Slot& s : slots_) s.id = random_bytes(32);
    buf_.resize(32768);
  }

  int run() {
    int64_t start = mono_ms();
    latencies_us_.reserve(o_.ops);
    for (op_no_ = 1; op_no_ <= o_.ops; ++op_no_) {
      Slot& s = slots_[pick(o_.sessions)];
      if (!step(s)) return 1;
      if (o_.progress && op_no_ % o_.progress == 0)
        std::printf("dc_test: %lu operations done\n", op_no_);
    }
    report(mono_ms() - start);
    return 0;
  }

 private:
  unsigned long pick(unsigned long n) {
    return std::uniform_int_distribution<unsigned long>(0, n - 1)(rng_);
  }

  std::string random_bytes(size_t n) {
    std::string s(n, '\0');
    for (char& c : s) c = char(pick(256));
    return s;
  }

  // Whether, for an operation run in [t0, t1], the slot's session is surely
  // alive (1), surely expired (0), or either (-1).
  static int alive(const Slot& s, int64_t t0, int64_t t1) {
    if (!s.present) return 0;
    if (t1 + kExpiryMarginMs < s.earliest_expiry) return 1;
    if (t0 > s.latest_expiry + kExpiryMarginMs) return 0;
    return -1;
  }

  bool fail(const char* op, const Slot& s, const std::string& expected, const std::string& got) {
    std::fprintf(stderr, "dc_test: FAILED at operation %lu: %s id=%s expected %s, got %s\n", op_no_,
                 op, hex(s.id).c_str(), expected.c_str(), got.c_str());
    return false;
  }

  // An error code other than NONE is a failure of the cache, never a
  // legitimate answer: it always fails the run.
  bool check_error(const char* op, const Slot& s) {
    if (DC_CTX_last_error(ctx_) == DC_ERR_NONE) return true;
    return fail(op, s, "an answer", std::string("error: ") + DC_CTX_last_error_string(ctx_));
  }

  bool step(Slot& s) {
    // Absent slots mostly get ADDs; present ones a mix of everything
    // (including ADDs that must be refused).
    unsigned long r = pick(100);
    int64_t t0 = mono_ms();
    auto t_us0 = std::chrono::steady_clock::now();
    bool ok;
    if (!s.present ? r < 60 : r < 20)
      ok = do_add(s, t0);
    else if (r < (s.present ? 60 : 75))
      ok = do_get(s, t0);
    else if (r < (s.present ? 80 : 90))
      ok = do_have(s, t0);
    else
      ok = do_remove(s, t0);
    auto us = std::chrono::duration_cast<std::chrono::microseconds>(
                  std::chrono::steady_clock::now() - t_us0)
                  .count();
    latencies_us_.push_back(uint64_t(us));
    return ok;
  }

  bool do_add(Slot& s, int64_t t0) {
    std::string data = random_bytes(o_.datamin + pick(o_.datamax - o_.datamin + 1));
    unsigned long timeout = o_.timeout + (o_.timevar ? pick(o_.timevar + 1) : 0);
    int rc = DC_CTX_add_session(ctx_, u(s.id), unsigned(s.id.size()), u(data),
                                unsigned(data.size()), timeout);
    int64_t t1 = mono_ms();
    int a = alive(s, t0, t1);
    if (rc) {
      if (a == 1) return fail("ADD", s, "refusal (session already stored)", "success");
      s.present = true;
      s.data = data;
      s.earliest_expiry = t0 + int64_t(timeout);
      s.latest_expiry = t1 + int64_t(timeout);
      return true;
    }
    // A refusal is an answer (the id is taken); any other error is not.
    if (DC_CTX_last_error(ctx_) != DC_ERR_REFUSED) return check_error("ADD", s);
    if (a == 0)
      return fail("ADD", s, "success", std::string("\"") + DC_CTX_last_error_string(ctx_) + "\"");
    return true;  // still stored, with the data we knew
  }

  bool do_get(Slot& s, int64_t t0) {
    unsigned used = 0;
    int rc = DC_CTX_get_session(ctx_, u(s.id), unsigned(s.id.size()), buf_.data(),
                                unsigned(buf_.size()), &used);
    int a = alive(s, t0, mono_ms());
    if (!check_error("GET", s)) return false;
    if (rc) {
      if (a == 0) return fail("GET", s, "miss", "hit of " + std::to_string(used) + " bytes");
      if (used != s.data.size() || std::memcmp(buf_.data(), s.data.data(), used) != 0)
        return fail("GET", s, std::to_string(s.data.size()) + " bytes of the data added",
                    std::to_string(used) + " bytes that differ");
      return true;
    }
    if (a == 1) return fail("GET", s, "hit of " + std::to_string(s.data.size()) + " bytes", "miss");
    s.present = false;
    return true;
  }

  bool do_have(Slot& s, int64_t t0) {
    int rc = DC_CTX_has_session(ctx_, u(s.id), unsigned(s.id.size()));
    int a = alive(s, t0, mono_ms());
    if (rc < 0) return check_error("HAVE", s) && fail("HAVE", s, "1 or 0", "-1");
    if (a == 1 && rc == 0) return fail("HAVE", s, "1 (present)", "0");
    if (a == 0 && rc == 1) return fail("HAVE", s, "0 (absent)", "1");
    if (rc == 0) s.present = false;
    return true;
  }

  bool do_remove(Slot& s, int64_t t0) {
    int rc = DC_CTX_remove_session(ctx_, u(s.id), unsigned(s.id.size()));
    int a = alive(s, t0, mono_ms());
    if (!check_error("REMOVE", s)) return false;
    if (a == 1 && !rc) return fail("REMOVE", s, "removed", "not present");
    if (a == 0 && rc) return fail("REMOVE", s, "not present", "removed");
    s.present = false;
    return true;
  }

  void report(int64_t elapsed_ms) {
    std::sort(latencies_us_.begin(), latencies_us_.end());
    auto pct = [&](double p) {
      size_t i = size_t(p * double(latencies_us_.size() - 1) + 0.5);
      return double(latencies_us_[i]) / 1000.0;
    };
    double secs = double(std::max<int64_t>(elapsed_ms, 1)) / 1000.0;
    std::printf("dc_test: %lu operations in %.3f s: %.0f ops/sec\n", o_.ops, secs,
                double(o_.ops) / secs);
    std::printf("dc_test: latency ms: p50 %.3f  p99 %.3f  max %.3f\n", pct(0.50), pct(0.99),
                double(latencies_us_.back()) / 1000.0);
    std::printf("dc_test: all answers as expected\n");
  }

  const Options& o_;
  DC_CTX* ctx_;
  std::mt19937_64 rng_;
  std::vector<Slot> slots_;
  std::vector<unsigned char> buf_;
  std::vector<uint64_t> latencies_us_;
  unsigned long op_no_ = 0;
};

}  // namespace

int main(int argc, char** argv) {
  Options o = parse(argc, argv);
  unsigned flags = o.persistent ? DC_CTX_FLAG_PERSISTENT | DC_CTX_FLAG_PERSISTENT_LATE : 0;
  DC_CTX* ctx = DC_CTX_new(o.connect.c_str(), flags);
  if (ctx == nullptr) {
    std::fprintf(stderr, "dc_test: %s\n", DC_last_new_error());
    return 1;
  }
  DC_CTX_set_timeout(ctx, unsigned(o.deadline));
  int rc = Runner(o, ctx).run();
  DC_CTX_free(ctx);
  return rc;
}
