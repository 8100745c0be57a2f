// dc_bench: a load generator that speaks the distcache protocol natively.
// Many connections in one process on one libev loop, non-blocking sockets,
// each connection keeping `-depth` requests in flight (1 = lockstep). Ids
// and session data are derived from the key number, so separate runs against
// the same server agree on what a key holds and every GET hit is checked
// byte for byte. Latency is kept in a log-linear histogram (about 3%
// precision, a few nanoseconds per operation); the clock is read once per
// read or write batch, not per operation.
//
// Output: a progress line per second on stderr (unless -quiet) and one JSON
// line on stdout at the end. Exit status: 0 when the run had no errors, 1
// when it had some (or nothing could connect), 2 for a bad command line.
#include <ev.h>
#include <signal.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "addr.h"
#include "cli.h"
#include "common/hash.h"
#include "net.h"
#include "proto.h"

namespace {

using dc::tools::Range;
namespace proto = dc::proto;

const char* const kUsage =
    "usage: dc_bench [options]\n"
    "  -connect ADDR     cache to load (UNIX:/path, IP:host:port); default "
    "UNIX:/run/distcache/dc_client.sock\n"
    "  -conns N          connections (default 16)\n"
    "  -depth N          requests in flight per connection, 1 = lockstep (default 1)\n"
    "  -mix A,G,R,H      percentages of ADD,GET,REMOVE,HAVE summing to 100 (default 10,90,0,0)\n"
    "  -idsize N|MIN-MAX session id bytes, 4..64 (default 32)\n"
    "  -datasize N|MIN-MAX session data bytes, 5..32768 (default 256)\n"
    "  -keys N           distinct ids (default 100000)\n"
    "  -duration SECS    run this long (default 10)\n"
    "  -ops N            run N operations instead of a duration (0: only -prefill)\n"
    "  -prefill          ADD every key once before measuring\n"
    "  -timeout MS       lifetime of added sessions, 500..604800000 (default 3600000)\n"
    "  -seed N           random seed of the operation sequence (default 1)\n"
    "  -quiet            no progress line on stderr\n"
    "  -h, --help        this text\n"
    "Prints one JSON line on stdout at the end; exit 0 when there were no errors, 1 otherwise.\n";

struct Options {
  std::string target = "UNIX:/run/distcache/dc_client.sock";  // dc_client's default
  uint32_t conns = 16;
  uint32_t depth = 1;
  std::array<uint32_t, 4> mix = {10, 90, 0, 0};  // indexed by proto::Op
  Range id_size = {32, 32};
  Range data_size = {256, 256};
  uint64_t keys = 100000;
  double duration = 10;
  bool by_ops = false;
  uint64_t ops = 0;
  bool prefill = false;
  uint32_t timeout_ms = 3600000;
  uint64_t seed = 1;
  bool quiet = false;
};

Options parse_options(int argc, char** argv) {
  Options o;
  auto bad = [](const std::string& m) { dc::tools::usage_error("dc_bench", m, kUsage); };
  for (int i = 1; i < argc; ++i) {
    std::string f = argv[i];
    dc::tools::answer_help(f, kUsage);
    if (f == "-prefill") {
      o.prefill = true;
      continue;
    }
    if (f == "-quiet") {
      o.quiet = true;
      continue;
    }
    if (i + 1 >= argc) bad("flag " + f + " needs a value (or is unknown)");
    std::string v = argv[++i];
    uint64_t n = 0;
    auto num = [&](uint64_t lo, uint64_t hi) {
      if (!dc::tools::parse_decimal(v, lo, hi, n))
        bad("bad value '" + v + "' for " + f + " (want " + std::to_string(lo) + ".." +
            std::to_string(hi) + ")");
      return n;
    };
    if (f == "-connect" || f == "-server") {
      dc::Address a;
      std::string err;
      if (!dc::parse_address(v, a, err)) bad(err);
      o.target = v;
    } else if (f == "-conns" || f == "-connections") {
      o.conns = uint32_t(num(1, 100000));
    } else if (f == "-depth") {
      o.depth = uint32_t(num(1, 4096));
    } else if (f == "-mix") {
      std::array<uint32_t, 4> m{};
      size_t pos = 0, k = 0;
      bool ok = true;
      while (ok && k < 4) {
        size_t comma = v.find(',', pos);
        std::string part =
            v.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
        uint64_t p = 0;
        ok = dc::tools::parse_decimal(part, 0, 100, p);
        m[k++] = uint32_t(p);
        if (comma == std::string::npos) break;
        pos = comma + 1;
      }
      if (!ok || k != 4 || v.find(',', pos) != std::string::npos ||
          m[0] + m[1] + m[2] + m[3] != 100)
        bad("bad -mix '" + v + "' (want four percentages ADD,GET,REMOVE,HAVE summing to 100)");
      o.mix = m;
    } else if (f == "-idsize") {
      if (!dc::tools::parse_range(v, 4, proto::kMaxIdLen, o.id_size))
        bad("bad -idsize '" + v + "' (want N or MIN-MAX within 4..64)");
    } else if (f == "-datasize") {
      if (!dc::tools::parse_range(v, proto::kMinRetrievableData, proto::kMaxSessionData,
                                  o.data_size))
        bad("bad -datasize '" + v + "' (want N or MIN-MAX within 5..32768)");
    } else if (f == "-keys") {
      o.keys = num(1, uint64_t(1) << 32);
    } else if (f == "-duration") {
      if (!dc::tools::parse_double(v, 0.001, 1e7, o.duration))
        bad("bad -duration '" + v + "' (want seconds > 0)");
      o.by_ops = false;
    } else if (f == "-ops") {
      o.ops = num(0, UINT64_MAX);
      o.by_ops = true;
    } else if (f == "-timeout") {
      o.timeout_ms = uint32_t(num(proto::kMinTimeoutMs, proto::kMaxTimeoutMs));
    } else if (f == "-seed") {
      o.seed = num(0, UINT64_MAX);
    } else {
      bad("unknown flag " + f);
    }
  }
  if (o.by_ops && o.ops == 0 && !o.prefill) bad("-ops 0 makes sense only with -prefill");
  return o;
}

int64_t mono_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

// splitmix64 (its golden-ratio step, then the daemons' finalizer): the
// per-key hash and the per-connection random stream.
uint64_t mix64(uint64_t x) {
  return dc::common::mix64(x + 0x9e3779b97f4a7c15ULL);
}

struct Rng {
  uint64_t s;
  uint64_t next() { return mix64(s++); }
  // Uniform in [0, n) by multiply-shift (no division on the hot path).
  uint64_t below(uint64_t n) { return uint64_t((unsigned __int128)next() * n >> 64); }
};

// A bijection of 32-bit numbers, so the first four id bytes of distinct keys differ.
uint32_t permute32(uint32_t x) {
  x ^= x >> 16;
  x *= 0x7feb352dU;
  x ^= x >> 15;
  x *= 0x846ca68bU;
  x ^= x >> 16;
  return x;
}

// What a key means on the wire: its id and its session data, both a pure
// function of the key number and the size ranges.
class Keyspace {
 public:
  // Ids depend on the size ranges too, so that runs with other sizes use
  // other ids and never read sessions of a different length as corrupt.
  Keyspace(Range id, Range data)
      : id_(id),
        data_(data),
        salt_(mix64((uint64_t(id.min) << 48) ^ (uint64_t(id.max) << 32) ^
                    (uint64_t(data.min) << 16) ^ data.max)),
        pattern_(kPatternLen) {
    Rng r{0x5eed};  // fixed: runs with other seeds agree on the data
    for (auto& b : pattern_) b = uint8_t(r.next());
  }
  // Writes the id of key `k` into `out` (64 bytes) and returns its length.
  size_t id(uint64_t k, uint8_t* out) const {
    uint64_t h = mix64(k ^ salt_);
    size_t len = pick(id_, h);
    uint8_t full[proto::kMaxIdLen];
    proto::put_u32(full, permute32(uint32_t(k) ^ uint32_t(salt_)));
    for (size_t i = 4; i < sizeof full; i += 8) {
      uint64_t w = mix64(h + i);
      std::memcpy(full + i, &w, std::min<size_t>(8, sizeof full - i));
    }
    std::memcpy(out, full, len);
    return len;
  }
  // The session data of key `k`: a slice of a fixed random pattern.
  proto::Bytes data(uint64_t k) const {
    uint64_t h = mix64(k ^ 0xda7a);
    size_t len = pick(data_, h);
    size_t off = size_t((h >> 32) % (kPatternLen - proto::kMaxSessionData));
    return {pattern_.data() + off, len};
  }

 private:
  static constexpr size_t kPatternLen = proto::kMaxSessionData + 4096;
  static size_t pick(Range r, uint64_t h) { return r.min + size_t(h % (r.max - r.min + 1)); }
  Range id_, data_;
  uint64_t salt_;
  std::vector<uint8_t> pattern_;
};

// Log-linear latency histogram in nanoseconds: exact below 64 ns, then 32
// buckets per power of two (about 3% relative error). Recording is a few
// integer operations; no allocation after construction.
class Histogram {
 public:
  void record(int64_t ns) {
    uint64_t v = ns > 0 ? uint64_t(ns) : 0;
    ++buckets_[index(v)];
    ++count_;
    sum_ += v;
    max_ = std::max(max_, v);
  }
  void merge(const Histogram& o) {
    for (size_t i = 0; i < kBuckets; ++i) buckets_[i] += o.buckets_[i];
    count_ += o.count_;
    sum_ += o.sum_;
    max_ = std::max(max_, o.max_);
  }
  void clear() { *this = Histogram(); }
  uint64_t count() const { return count_; }
  uint64_t max() const { return max_; }
  double mean() const { return count_ ? double(sum_) / double(count_) : 0; }
  // The value below which a fraction q of the samples fall (bucket midpoint,
  // never above the exact maximum); 0 for an empty histogram.
  uint64_t quantile(double q) const {
    if (count_ == 0) return 0;
    uint64_t want = uint64_t(std::ceil(q * double(count_)));
    if (want == 0) want = 1;
    uint64_t seen = 0;
    for (size_t i = 0; i < kBuckets; ++i) {
      seen += buckets_[i];
      if (seen >= want) return std::min(max_, midpoint(i));
    }
    return max_;
  }

 private:
  static constexpr unsigned kSubBits = 5;
  static constexpr uint64_t kLinear = uint64_t(2) << kSubBits;  // 64
  static constexpr size_t kBuckets = kLinear + (40 - kSubBits) * (1u << kSubBits);
  static size_t index(uint64_t v) {
    if (v < kLinear) return size_t(v);
    unsigned m = 63 - unsigned(__builtin_clzll(v));  // >= kSubBits + 1
    unsigned shift = m - kSubBits;
    size_t i = kLinear + (m - kSubBits - 1) * (1u << kSubBits) +
               size_t((v >> shift) - (uint64_t(1) << kSubBits));
    return std::min(i, kBuckets - 1);
  }
  static uint64_t midpoint(size_t i) {
    if (i < kLinear) return i;
    size_t j = i - kLinear;
    unsigned shift = unsigned(j >> kSubBits) + 1;
    uint64_t lo = ((uint64_t(1) << kSubBits) + (j & ((1u << kSubBits) - 1))) << shift;
    return lo + (uint64_t(1) << shift) / 2;
  }
  std::array<uint64_t, kBuckets> buckets_{};
  uint64_t count_ = 0, sum_ = 0, max_ = 0;
};

struct Counters {
  uint64_t ops = 0;
  uint64_t add_ok = 0, add_exists = 0;
  uint64_t get_hit = 0, get_miss = 0;
  uint64_t remove_ok = 0, remove_missing = 0;
  uint64_t have_yes = 0, have_no = 0;
  // errors
  uint64_t unexpected = 0;    // an answer that is not one of the normal ones
  uint64_t bad_data = 0;      // a GET hit whose data is not what the key holds
  uint64_t disconnected = 0;  // DISCONNECTED answers (an agent without its server)
  uint64_t closed = 0;        // connections closed by the peer or a socket error
  uint64_t connect = 0;       // connections that could not be made
  uint64_t lost = 0;          // requests unanswered at the end
  uint64_t errors() const { return unexpected + bad_data + disconnected + closed + connect + lost; }
};

class Bench;

// One connection: a non-blocking socket, its output buffer and the requests
// in flight (a ring of `depth` entries, answered in order).
struct Conn {
  struct Pending {
    uint32_t uid;
    proto::Op op;
    uint64_t key;
    int64_t sent_ns;
  };
  Bench* bench = nullptr;
  size_t index = 0;
  dc::UniqueFd fd;
  ev_io io{};
  bool connecting = true;
  bool alive = false;
  bool want_write = false;
  Rng rng{0};
  uint32_t next_uid = 1;
  std::vector<Pending> ring;  // capacity = depth
  size_t head = 0, inflight = 0;
  std::vector<uint8_t> out;
  size_t out_off = 0;
  proto::Decoder dec;
};

class Bench {
 public:
  explicit Bench(const Options& o)
      : o_(o), keys_(o.id_size, o.data_size), loop_(ev_loop_new(EVFLAG_AUTO), &ev_loop_destroy) {}

  // Runs the whole benchmark; returns the exit status.
  int run();

 private:
  enum class Phase { connecting, prefill, measure, done };

  static void on_io(struct ev_loop*, ev_io* w, int revents);
  static void on_tick(struct ev_loop*, ev_timer* w, int);
  static void on_stop(struct ev_loop*, ev_timer* w, int);

  void connected(Conn& c);
  void fail(Conn& c, bool counted_closed);
  void readable(Conn& c);
  void flush(Conn& c);
  void set_write(Conn& c, bool on);
  void top_up(Conn& c, int64_t now);
  bool next_op(Conn& c, proto::Op& op, uint64_t& key);
  void issue(Conn& c, proto::Op op, uint64_t key, int64_t now);
  void answer(Conn& c, const proto::Message& m, int64_t now);
  void start_phase(Phase p);
  void check_done();
  void progress();
  void report();

  const Options& o_;
  Keyspace keys_;
  std::unique_ptr<struct ev_loop, decltype(&ev_loop_destroy)> loop_;
  std::vector<std::unique_ptr<Conn>> conns_;
  std::vector<uint8_t> rbuf_ = std::vector<uint8_t>(64 * 1024);
  ev_timer tick_{}, stop_{};
  Phase phase_ = Phase::connecting;
  size_t pending_connects_ = 0, alive_ = 0;
  uint64_t inflight_ = 0;
  // Measured phase.
  bool stopping_ = false;
  uint64_t issued_ = 0;
  int64_t t_start_ = 0, t_end_ = 0;
  Counters c_;
  Histogram lat_, sec_lat_;
  uint64_t sec_ops_ = 0;
  int64_t sec_start_ = 0;
  int seconds_ = 0;
  // Prefill phase.
  uint64_t prefill_next_ = 0, prefill_done_ = 0;
  int64_t prefill_start_ = 0;
  double prefill_secs_ = 0;
};

int Bench::run() {
  if (!loop_) {
    std::fprintf(stderr, "dc_bench: cannot create an event loop\n");
    return 1;
  }
  dc::Address a;
  dc::SockAddr sa;
  std::string err;
  if (!dc::parse_address(o_.target, a, err) || !dc::resolve(a, false, sa, err)) {
    std::fprintf(stderr, "dc_bench: %s\n", err.c_str());
    return 1;
  }
  long fds = dc::raise_fd_limit();
  if (fds > 0 && uint64_t(fds) < uint64_t(o_.conns) + 16)
    std::fprintf(stderr, "dc_bench: warning: file descriptor limit %ld is below -conns %u\n", fds,
                 o_.conns);
  for (uint32_t i = 0; i < o_.conns; ++i) {
    auto c = std::make_unique<Conn>();
    c->bench = this;
    c->index = i;
    c->rng = Rng{mix64(o_.seed * 0x10001 + i)};
    c->ring.resize(std::max<uint32_t>(o_.depth, o_.prefill ? 64 : 1));
    c->fd = dc::connect_start(sa, err);
    if (!c->fd) {
      if (c_.connect++ == 0)
        std::fprintf(stderr, "dc_bench: connect %s: %s\n", o_.target.c_str(), err.c_str());
      conns_.push_back(std::move(c));
      continue;
    }
    ev_io_init(&c->io, on_io, c->fd.get(), EV_WRITE);
    c->io.data = c.get();
    ev_io_start(loop_.get(), &c->io);
    ++pending_connects_;
    conns_.push_back(std::move(c));
  }
  ev_init(&tick_, on_tick);
  tick_.data = this;
  ev_init(&stop_, on_stop);
  stop_.data = this;
  if (pending_connects_ == 0) {
    std::fprintf(stderr, "dc_bench: no connection to %s could be made\n", o_.target.c_str());
    return 1;
  }
  ev_run(loop_.get(), 0);
  report();
  for (auto& c : conns_)
    if (c->fd) ev_io_stop(loop_.get(), &c->io);
  ev_timer_stop(loop_.get(), &tick_);
  ev_timer_stop(loop_.get(), &stop_);
  if (alive_ == 0 && c_.ops == 0 && !(o_.by_ops && o_.ops == 0)) return 1;
  return c_.errors() == 0 ? 0 : 1;
}

void Bench::on_io(struct ev_loop*, ev_io* w, int revents) {
  Conn& c = *static_cast<Conn*>(w->data);
  Bench& b = *c.bench;
  if (c.connecting) {
    int e = dc::connect_result(c.fd.get());
    c.connecting = false;
    --b.pending_connects_;
    if (e != 0) {
      if (b.c_.connect++ == 0)
        std::fprintf(stderr, "dc_bench: connect %s: %s\n", b.o_.target.c_str(), strerror(e));
      b.fail(c, false);
    } else {
      b.connected(c);
    }
    if (b.pending_connects_ == 0 && b.phase_ == Phase::connecting)
      b.start_phase(b.o_.prefill ? Phase::prefill : Phase::measure);
    return;
  }
  if (revents & EV_READ) b.readable(c);
  if (c.alive && (revents & EV_WRITE)) b.flush(c);
}

void Bench::connected(Conn& c) {
  c.alive = true;
  ++alive_;
  ev_io_stop(loop_.get(), &c.io);
  ev_io_set(&c.io, c.fd.get(), EV_READ);
  ev_io_start(loop_.get(), &c.io);
}

// Drops a connection; what it had in flight is lost.
void Bench::fail(Conn& c, bool counted_closed) {
  if (c.alive) --alive_;
  if (counted_closed) ++c_.closed;
  inflight_ -= c.inflight;
  if (phase_ == Phase::measure || phase_ == Phase::prefill) c_.lost += c.inflight;
  if (phase_ == Phase::prefill) prefill_done_ += c.inflight;  // never to be answered
  c.inflight = 0;
  c.alive = false;
  ev_io_stop(loop_.get(), &c.io);
  c.fd.reset();
  check_done();
}

void Bench::set_write(Conn& c, bool on) {
  if (c.want_write == on) return;
  c.want_write = on;
  ev_io_stop(loop_.get(), &c.io);
  ev_io_set(&c.io, c.fd.get(), on ? EV_READ | EV_WRITE : EV_READ);
  ev_io_start(loop_.get(), &c.io);
}

void Bench::readable(Conn& c) {
  ssize_t n = ::read(c.fd.get(), rbuf_.data(), rbuf_.size());
  if (n <= 0) {
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
    if (phase_ != Phase::done && (c.inflight > 0 || phase_ != Phase::connecting))
      std::fprintf(stderr, "dc_bench: connection %zu %s\n", c.index,
                   n == 0 ? "closed by the peer" : strerror(errno));
    fail(c, true);
    return;
  }
  int64_t now = mono_ns();
  proto::Bytes in(rbuf_.data(), size_t(n));
  while (!in.empty()) {
    proto::Message m;
    proto::DecodeResult r = c.dec.decode(in, m);
    in = in.subspan(r.consumed);
    if (r.status == proto::DecodeStatus::need_more) break;
    if (r.status == proto::DecodeStatus::corrupt) {
      std::fprintf(stderr, "dc_bench: connection %zu: corrupt answer stream (%s)\n", c.index,
                   proto::to_string(r.reason));
      ++c_.unexpected;
      fail(c, false);
      return;
    }
    answer(c, m, now);
    if (!c.alive) return;
  }
  top_up(c, now);
  flush(c);
}

void Bench::answer(Conn& c, const proto::Message& m, int64_t now) {
  if (c.inflight == 0 || !m.is_response || m.uid != c.ring[c.head].uid ||
      m.op != c.ring[c.head].op) {
    std::fprintf(stderr, "dc_bench: connection %zu: unexpected answer (uid %u, %s)\n", c.index,
                 m.uid, proto::to_string(m.op));
    ++c_.unexpected;
    fail(c, false);
    return;
  }
  Conn::Pending p = c.ring[c.head];
  c.head = (c.head + 1) % c.ring.size();
  --c.inflight;
  --inflight_;
  if (phase_ == Phase::prefill) {
    ++prefill_done_;
    bool ok =
        m.payload.size() == 1 && (m.payload[0] == uint8_t(proto::AddStatus::ok) ||
                                  m.payload[0] == uint8_t(proto::AddStatus::matching_session));
    if (!ok) {
      if (m.payload.size() == 1 && m.payload[0] == uint8_t(proto::Status::disconnected))
        ++c_.disconnected;
      else
        ++c_.unexpected;
    }
    check_done();
    return;
  }
  uint8_t s = m.payload.size() == 1 ? m.payload[0] : 0xff;
  bool normal = true;
  switch (p.op) {
    case proto::Op::add:
      if (s == uint8_t(proto::AddStatus::ok))
        ++c_.add_ok;
      else if (s == uint8_t(proto::AddStatus::matching_session))
        ++c_.add_exists;
      else
        normal = false;
      break;
    case proto::Op::get:
      switch (proto::classify_get(m.payload)) {
        case proto::GetAnswer::data: {
          proto::Bytes want = keys_.data(p.key);
          if (m.payload.size() == want.size() &&
              std::memcmp(m.payload.data(), want.data(), want.size()) == 0) {
            ++c_.get_hit;
          } else {
            ++c_.bad_data;
          }
          break;
        }
        case proto::GetAnswer::miss:
          if (s == uint8_t(proto::Status::notok))
            ++c_.get_miss;
          else
            normal = false;
          break;
        default:
          normal = false;
      }
      break;
    case proto::Op::remove:
      if (s == uint8_t(proto::Status::ok))
        ++c_.remove_ok;
      else if (s == uint8_t(proto::Status::notok))
        ++c_.remove_missing;
      else
        normal = false;
      break;
    case proto::Op::have:
      if (s == uint8_t(proto::Status::ok))
        ++c_.have_yes;
      else if (s == uint8_t(proto::Status::notok))
        ++c_.have_no;
      else
        normal = false;
      break;
  }
  if (!normal) {
    if (s == uint8_t(proto::Status::disconnected))
      ++c_.disconnected;
    else
      ++c_.unexpected;
  }
  ++c_.ops;
  ++sec_ops_;
  lat_.record(now - p.sent_ns);
  sec_lat_.record(now - p.sent_ns);
  t_end_ = now;
  check_done();
}

// Chooses the next operation of the current phase; false when none is due.
bool Bench::next_op(Conn& c, proto::Op& op, uint64_t& key) {
  if (phase_ == Phase::prefill) {
    if (prefill_next_ >= o_.keys) return false;
    op = proto::Op::add;
    key = prefill_next_++;
    return true;
  }
  if (phase_ != Phase::measure || stopping_) return false;
  if (o_.by_ops && issued_ >= o_.ops) return false;
  ++issued_;
  uint64_t r = c.rng.below(100);
  uint32_t acc = 0;
  op = proto::Op::have;
  for (size_t i = 0; i < 4; ++i) {
    acc += o_.mix[i];
    if (r < acc) {
      op = proto::Op(i);
      break;
    }
  }
  key = c.rng.below(o_.keys);
  return true;
}

void Bench::top_up(Conn& c, int64_t now) {
  if (!c.alive) return;
  size_t depth = phase_ == Phase::prefill ? c.ring.size() : o_.depth;
  proto::Op op;
  uint64_t key;
  while (c.inflight < depth && next_op(c, op, key)) issue(c, op, key, now);
}

void Bench::issue(Conn& c, proto::Op op, uint64_t key, int64_t now) {
  uint8_t id[proto::kMaxIdLen];
  size_t id_len = keys_.id(key, id);
  proto::Message m;
  m.uid = c.next_uid++;
  m.op = op;
  uint8_t prefix[proto::kAddPrefix];
  std::array<proto::Bytes, 3> parts;
  size_t nparts = 0;
  if (op == proto::Op::add) {
    proto::Bytes data = keys_.data(key);
    proto::add_prefix(o_.timeout_ms, uint32_t(id_len), prefix);
    parts = {proto::Bytes(prefix, sizeof prefix), proto::Bytes(id, id_len), data};
    nparts = 3;
  } else {
    parts[0] = proto::Bytes(id, id_len);
    nparts = 1;
  }
  size_t len = 0;
  for (size_t i = 0; i < nparts; ++i) len += parts[i].size();
  size_t old = c.out.size();
  c.out.resize(old + proto::encoded_size(len));
  proto::encode(m, std::span(parts.data(), nparts), std::span(c.out).subspan(old));
  size_t slot = (c.head + c.inflight) % c.ring.size();
  c.ring[slot] = {m.uid, op, key, now};
  ++c.inflight;
  ++inflight_;
}

void Bench::flush(Conn& c) {
  while (c.out_off < c.out.size()) {
    ssize_t n =
        ::send(c.fd.get(), c.out.data() + c.out_off, c.out.size() - c.out_off, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) break;
      std::fprintf(stderr, "dc_bench: connection %zu: %s\n", c.index, strerror(errno));
      fail(c, true);
      return;
    }
    c.out_off += size_t(n);
  }
  if (c.out_off == c.out.size()) {
    c.out.clear();
    c.out_off = 0;
  }
  set_write(c, !c.out.empty());
}

void Bench::start_phase(Phase p) {
  phase_ = p;
  if (alive_ == 0) {
    std::fprintf(stderr, "dc_bench: no connection to %s could be made\n", o_.target.c_str());
    phase_ = Phase::done;
    ev_break(loop_.get(), EVBREAK_ALL);
    return;
  }
  int64_t now = mono_ns();
  if (p == Phase::prefill) {
    prefill_start_ = now;
    if (!o_.quiet)
      std::fprintf(stderr, "dc_bench: adding %llu keys\n", (unsigned long long)o_.keys);
  } else if (p == Phase::measure) {
    t_start_ = t_end_ = sec_start_ = now;
    if (o_.by_ops && o_.ops == 0) {
      phase_ = Phase::done;
      ev_break(loop_.get(), EVBREAK_ALL);
      return;
    }
    ev_timer_set(&tick_, 1.0, 1.0);
    ev_timer_start(loop_.get(), &tick_);
    if (!o_.by_ops) {
      ev_timer_set(&stop_, o_.duration, 0);
      ev_timer_start(loop_.get(), &stop_);
    }
  }
  for (auto& c : conns_) {
    top_up(*c, now);
    if (c->alive) flush(*c);
  }
}

void Bench::check_done() {
  if (phase_ == Phase::prefill) {
    if (prefill_done_ >= o_.keys || alive_ == 0) {
      if (inflight_ > 0 && alive_ > 0) return;
      prefill_secs_ = double(mono_ns() - prefill_start_) / 1e9;
      if (!o_.quiet)
        std::fprintf(stderr, "dc_bench: added %llu keys in %.2f s\n",
                     (unsigned long long)prefill_done_, prefill_secs_);
      start_phase(Phase::measure);
    }
    return;
  }
  if (phase_ != Phase::measure) {
    if (phase_ == Phase::connecting && alive_ == 0 && pending_connects_ == 0)
      ev_break(loop_.get(), EVBREAK_ALL);
    return;
  }
  bool all_issued = stopping_ || (o_.by_ops && issued_ >= o_.ops);
  if ((all_issued && inflight_ == 0) || alive_ == 0) {
    phase_ = Phase::done;
    ev_break(loop_.get(), EVBREAK_ALL);
  }
}

void Bench::on_tick(struct ev_loop*, ev_timer* w, int) {
  static_cast<Bench*>(w->data)->progress();
}

// End of the duration: stop issuing, give what is in flight a few seconds.
void Bench::on_stop(struct ev_loop* loop, ev_timer* w, int) {
  Bench& b = *static_cast<Bench*>(w->data);
  if (!b.stopping_) {
    b.stopping_ = true;
    if (b.inflight_ > 0) {
      ev_timer_set(&b.stop_, 5.0, 0);
      ev_timer_start(loop, &b.stop_);
    }
    b.check_done();
    return;
  }
  std::fprintf(stderr, "dc_bench: %llu requests unanswered 5 s after the end\n",
               (unsigned long long)b.inflight_);
  b.c_.lost += b.inflight_;
  b.phase_ = Phase::done;
  ev_break(loop, EVBREAK_ALL);
}

void Bench::progress() {
  int64_t now = mono_ns();
  ++seconds_;
  if (!o_.quiet) {
    double secs = double(now - sec_start_) / 1e9;
    std::fprintf(stderr,
                 "dc_bench: %3ds %10.0f ops/s  p50 %7.1f us  p99 %7.1f us  max %8.1f us  "
                 "errors %llu  conns %zu\n",
                 seconds_, secs > 0 ? double(sec_ops_) / secs : 0.0,
                 double(sec_lat_.quantile(0.5)) / 1e3, double(sec_lat_.quantile(0.99)) / 1e3,
                 double(sec_lat_.max()) / 1e3, (unsigned long long)c_.errors(), alive_);
  }
  sec_ops_ = 0;
  sec_lat_.clear();
  sec_start_ = now;
}

void Bench::report() {
  double secs = t_end_ > t_start_ ? double(t_end_ - t_start_) / 1e9 : 0;
  auto us = [](uint64_t ns) { return double(ns) / 1e3; };
  auto u = [](uint64_t v) { return (unsigned long long)v; };
  std::printf(
      "{\"tool\":\"dc_bench\",\"target\":\"%s\",\"connections\":%u,\"connected\":%zu,"
      "\"depth\":%u,\"mix\":{\"add\":%u,\"get\":%u,\"remove\":%u,\"have\":%u},"
      "\"keys\":%llu,\"id_size\":[%u,%u],\"data_size\":[%u,%u],"
      "\"seconds\":%.3f,\"ops\":%llu,\"ops_per_sec\":%.1f,"
      "\"latency_us\":{\"p50\":%.1f,\"p99\":%.1f,\"p999\":%.1f,\"max\":%.1f,\"mean\":%.1f},"
      "\"prefill\":{\"ops\":%llu,\"seconds\":%.3f},"
      "\"add\":{\"ok\":%llu,\"exists\":%llu},\"get\":{\"hits\":%llu,\"misses\":%llu},"
      "\"remove\":{\"ok\":%llu,\"missing\":%llu},\"have\":{\"yes\":%llu,\"no\":%llu},"
      "\"errors\":{\"total\":%llu,\"unexpected\":%llu,\"bad_data\":%llu,\"disconnected\":%llu,"
      "\"closed\":%llu,\"connect\":%llu,\"lost\":%llu}}\n",
      dc::tools::json_escape(o_.target).c_str(), o_.conns, alive_, o_.depth, o_.mix[0], o_.mix[1],
      o_.mix[2], o_.mix[3], u(o_.keys), o_.id_size.min, o_.id_size.max, o_.data_size.min,
      o_.data_size.max, secs, u(c_.ops), secs > 0 ? double(c_.ops) / secs : 0.0,
      us(lat_.quantile(0.5)), us(lat_.quantile(0.99)), us(lat_.quantile(0.999)), us(lat_.max()),
      lat_.mean() / 1e3, u(prefill_done_), prefill_secs_, u(c_.add_ok), u(c_.add_exists),
      u(c_.get_hit), u(c_.get_miss), u(c_.remove_ok), u(c_.remove_missing), u(c_.have_yes),
      u(c_.have_no), u(c_.errors()), u(c_.unexpected), u(c_.bad_data), u(c_.disconnected),
      u(c_.closed), u(c_.connect), u(c_.lost));
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  Options o = parse_options(argc, argv);
  signal(SIGPIPE, SIG_IGN);
  Bench b(o);
  return b.run();
}
