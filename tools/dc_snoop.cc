// dc_snoop: the distcache 1.x protocol snooper. A transparent proxy: it
// accepts clients on -listen, opens one upstream connection to -server per
// client, and passes every byte through unchanged in both directions, while
// decoding a copy of each direction with dc::proto::Decoder and printing one
// line per message on stdout:
//
//   #3 c->s request  uid=7 ADD id=6b2f19a0c4d1e8f2..(32) data_len=256 timeout_ms=300000
//   #3 s->c response uid=7 ADD status=0 (OK)
//   #3 s->c response uid=8 GET data_len=256
//
// plus "#N open", "#N closed (...)" lines. When a direction is corrupt the
// reason is printed and that pair of connections is closed (others go on).
// Half-closes are passed on (shutdown of the write side) once the bytes before
// them are delivered. A side whose peer does not read gets backpressure: the
// proxy stops reading from the other side while 1 MiB waits for it.
//
// -delay MS emulates a distant peer (tc netem is not always available): each
// chunk read, in either direction, and each half-close, waits in a per-side
// FIFO and is forwarded MS ms after it arrived, on a libev timer, so other
// connections and the other direction go on meanwhile. SIGUSR1 sets the delay
// to 0 and SIGUSR2 back to MS without touching any connection, so a benchmark
// can start and end the fault at will. A chunk waits the delay in force when
// it is due, so a change applies to what waits too and the order holds.
// One libev loop, non-blocking sockets.
#include <ev.h>
#include <signal.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "addr.h"
#include "cli.h"
#include "net.h"
#include "proto.h"

namespace {

namespace proto = dc::proto;

const char* const kUsage =
    "usage: dc_snoop -listen ADDR -server ADDR [-delay MS]\n"
    "  -listen ADDR   where clients connect (UNIX:/path, IP:port, IP:host:port)\n"
    "  -server ADDR   the cache to forward to (synonym: -connect)\n"
    "  -delay MS      forward what is read in either direction (bytes and half-closes) MS ms\n"
    "                 after it arrived, in order, other traffic going on meanwhile; 0..600000,\n"
    "                 default 0. Connecting to the server is not delayed\n"
    "  -h, --help     this text\n"
    "Passes every byte through unchanged and prints one decoded line per message on stdout.\n"
    "SIGUSR1 sets the delay to 0 (what waits goes out at once), SIGUSR2 back to -delay MS;\n"
    "connections stay open. SIGINT or SIGTERM stops it.\n";

constexpr size_t kHighWater = 1 << 20;  // stop reading while this much waits for the peer
constexpr size_t kReadChunk = 64 * 1024;

// CLOCK_MONOTONIC in seconds: arrival and due times of delayed chunks, immune
// to changes of the wall clock (libev's ev_now follows the wall clock).
double mono_now() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return double(ts.tv_sec) + double(ts.tv_nsec) * 1e-9;
}

struct Pair;

// What was read from one side and waits out the delay before it goes to the
// other; no bytes: the reader's half-close.
struct Chunk {
  double arrived = 0;
  std::vector<uint8_t> bytes;
};

// One socket of a pair. `out` holds bytes waiting to be written to it;
// `delayed` what waits out -delay before it joins `out`; `dec` decodes what
// is read from it.
struct Side {
  Pair* pair = nullptr;
  bool is_client = false;
  dc::UniqueFd fd;
  ev_io io{};
  int events = 0;         // what `io` currently watches
  bool eof_in = false;    // the peer closed its write side
  bool eof_out = false;   // the other side's half-close is due: pass it on once `out` drains
  bool shut_out = false;  // we shut down our write side towards it
  std::vector<uint8_t> out;
  size_t out_off = 0;
  std::deque<Chunk> delayed;
  size_t delayed_bytes = 0;
  ev_timer timer{};  // runs while `delayed` is not empty: when its head is due
  proto::Decoder dec;
  size_t pending() const { return out.size() - out_off; }
  // Everything on its way to this side, for backpressure.
  size_t backlog() const { return pending() + delayed_bytes; }
};

class Snoop;

struct Pair {
  Snoop* snoop = nullptr;
  unsigned long id = 0;
  bool connecting = true;
  Side client, server;
};

class Snoop {
 public:
  Snoop(dc::SockAddr upstream, dc::UniqueFd listener, struct ev_loop* loop, unsigned delay_ms)
      : upstream_(upstream),
        listener_(std::move(listener)),
        loop_(loop),
        delay_ms_(delay_ms),
        delay_(delay_ms / 1000.0) {}
  ~Snoop();
  // Runs until SIGINT or SIGTERM.
  void run();

 private:
  static void on_accept(struct ev_loop*, ev_io* w, int);
  static void on_io(struct ev_loop*, ev_io* w, int revents);
  static void on_signal(struct ev_loop* loop, ev_signal*, int);
  static void on_delay_signal(struct ev_loop*, ev_signal* w, int);
  static void on_timer(struct ev_loop*, ev_timer* w, int);

  void accept_all();
  bool readable(Side& from, Side& to);
  void forward(Side& to, const uint8_t* data, size_t n);
  void arm(Side& s);
  void release(Side& s);
  void set_delay(unsigned ms, int signo);
  bool flush(Side& s);
  void update(Pair& p);
  void watch(Side& s, int events);
  void close_pair(Pair& p, const std::string& why);
  void print(const Pair& p, const Side& from, const proto::Message& m);

  dc::SockAddr upstream_;
  dc::UniqueFd listener_;
  struct ev_loop* loop_;
  ev_io accept_io_{};
  ev_signal sigint_{}, sigterm_{}, sigusr1_{}, sigusr2_{};
  const unsigned delay_ms_;  // -delay, what SIGUSR2 restores
  double delay_;             // in force, seconds
  std::vector<std::unique_ptr<Pair>> pairs_;
  unsigned long next_id_ = 1;
  std::vector<uint8_t> rbuf_ = std::vector<uint8_t>(kReadChunk);
};

Snoop::~Snoop() {
  while (!pairs_.empty()) close_pair(*pairs_.back(), "shutting down");
  ev_io_stop(loop_, &accept_io_);
  ev_signal_stop(loop_, &sigint_);
  ev_signal_stop(loop_, &sigterm_);
  ev_signal_stop(loop_, &sigusr1_);
  ev_signal_stop(loop_, &sigusr2_);
}

void Snoop::run() {
  ev_io_init(&accept_io_, on_accept, listener_.get(), EV_READ);
  accept_io_.data = this;
  ev_io_start(loop_, &accept_io_);
  ev_signal_init(&sigint_, on_signal, SIGINT);
  ev_signal_init(&sigterm_, on_signal, SIGTERM);
  ev_signal_start(loop_, &sigint_);
  ev_signal_start(loop_, &sigterm_);
  for (ev_signal* w : {&sigusr1_, &sigusr2_}) {
    ev_signal_init(w, on_delay_signal, w == &sigusr1_ ? SIGUSR1 : SIGUSR2);
    w->data = this;
    ev_signal_start(loop_, w);
  }
  ev_run(loop_, 0);
}

void Snoop::on_signal(struct ev_loop* loop, ev_signal*, int) {
  ev_break(loop, EVBREAK_ALL);
}

void Snoop::on_delay_signal(struct ev_loop*, ev_signal* w, int) {
  Snoop& self = *static_cast<Snoop*>(w->data);
  self.set_delay(w->signum == SIGUSR1 ? 0 : self.delay_ms_, w->signum);
}

// Applies to what already waits too (see the top of the file): every timer is
// set again from the new delay, so with 0 everything waiting leaves at once.
void Snoop::set_delay(unsigned ms, int signo) {
  delay_ = ms / 1000.0;
  std::printf("delay %u ms (%s)\n", ms, signo == SIGUSR1 ? "SIGUSR1" : "SIGUSR2");
  for (auto& p : pairs_) {
    for (Side* s : {&p->client, &p->server}) {
      ev_timer_stop(loop_, &s->timer);
      arm(*s);
    }
  }
}

void Snoop::on_accept(struct ev_loop*, ev_io* w, int) {
  static_cast<Snoop*>(w->data)->accept_all();
}

void Snoop::accept_all() {
  for (;;) {
    int fd = ::accept4(listener_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      if (errno != EAGAIN) std::fprintf(stderr, "dc_snoop: accept: %s\n", strerror(errno));
      return;
    }
    auto p = std::make_unique<Pair>();
    p->snoop = this;
    p->id = next_id_++;
    p->client.fd.reset(fd);
    dc::set_nodelay(fd);
    std::string err;
    p->server.fd = dc::connect_start(upstream_, err);
    for (Side* s : {&p->client, &p->server}) {
      s->pair = p.get();
      s->is_client = s == &p->client;
      ev_init(&s->io, on_io);
      s->io.data = s;
      ev_init(&s->timer, on_timer);
      s->timer.data = s;
    }
    std::printf("#%lu open\n", p->id);
    Pair& ref = *p;
    pairs_.push_back(std::move(p));
    if (!ref.server.fd) {
      close_pair(ref, "cannot connect to the server: " + err);
      continue;
    }
    update(ref);
  }
}

void Snoop::on_io(struct ev_loop*, ev_io* w, int revents) {
  Side& s = *static_cast<Side*>(w->data);
  Pair& p = *s.pair;
  Snoop& self = *p.snoop;
  Side& other = s.is_client ? p.server : p.client;
  if (!s.is_client && p.connecting) {
    int e = dc::connect_result(s.fd.get());
    if (e != 0) {
      self.close_pair(p, std::string("cannot connect to the server: ") + strerror(e));
      return;
    }
    p.connecting = false;
    if (!self.flush(s)) return;
    self.update(p);
    return;
  }
  // Either step may close the pair (and free `p`).
  if ((revents & EV_WRITE) && !self.flush(s)) return;
  if ((revents & EV_READ) && !self.readable(s, other)) return;
  self.update(p);
}

// Reads once from `from`, decodes a copy, queues the bytes for `to` and
// tries to write them. Returns false when the pair was closed.
bool Snoop::readable(Side& from, Side& to) {
  Pair& p = *from.pair;
  // Bytes for a server still connecting wait until the connect completes.
  bool can_write = !(p.connecting && &to == &p.server);
  ssize_t n = ::read(from.fd.get(), rbuf_.data(), rbuf_.size());
  if (n < 0) {
    if (errno == EAGAIN || errno == EINTR) return true;
    close_pair(p, std::string(from.is_client ? "client" : "server") + " read: " + strerror(errno));
    return false;
  }
  if (n == 0) {
    from.eof_in = true;
    forward(to, nullptr, 0);  // flush() passes the half-close on once `to` is drained
    return can_write ? flush(to) : true;
  }
  forward(to, rbuf_.data(), size_t(n));
  proto::Bytes in(rbuf_.data(), size_t(n));
  while (!in.empty()) {
    proto::Message m;
    proto::DecodeResult r = from.dec.decode(in, m);
    in = in.subspan(r.consumed);
    if (r.status == proto::DecodeStatus::need_more) break;
    if (r.status == proto::DecodeStatus::corrupt) {
      std::printf("#%lu %s corrupt: %s\n", p.id, from.is_client ? "c->s" : "s->c",
                  proto::to_string(r.reason));
      // Pass on what was read (the peer judges it too), then close the pair.
      if (can_write && !flush(to)) return false;
      close_pair(p, "corrupt stream");
      return false;
    }
    print(p, from, m);
  }
  return can_write ? flush(to) : true;
}

// Queues n bytes (none: the half-close) for `to`: straight into its output
// without a delay, else behind what already waits for it.
void Snoop::forward(Side& to, const uint8_t* data, size_t n) {
  if (delay_ <= 0 && to.delayed.empty()) {
    if (n == 0) to.eof_out = true;
    to.out.insert(to.out.end(), data, data + n);
    return;
  }
  to.delayed.push_back({mono_now(), std::vector<uint8_t>(data, data + n)});
  to.delayed_bytes += n;
  if (!ev_is_active(&to.timer)) arm(to);
}

// Starts the timer of `s` for the head of its queue, if any.
void Snoop::arm(Side& s) {
  if (s.delayed.empty()) return;
  double wait = s.delayed.front().arrived + delay_ - mono_now();
  ev_timer_set(&s.timer, wait > 0 ? wait : 0, 0);
  ev_timer_start(loop_, &s.timer);
}

void Snoop::on_timer(struct ev_loop*, ev_timer* w, int) {
  Side& s = *static_cast<Side*>(w->data);
  s.pair->snoop->release(s);
}

// Moves what is due from the queue of `s` to its output and writes it.
void Snoop::release(Side& s) {
  double now = mono_now();
  while (!s.delayed.empty() && s.delayed.front().arrived + delay_ <= now) {
    Chunk& c = s.delayed.front();
    if (c.bytes.empty()) s.eof_out = true;
    s.out.insert(s.out.end(), c.bytes.begin(), c.bytes.end());
    s.delayed_bytes -= c.bytes.size();
    s.delayed.pop_front();
  }
  arm(s);
  Pair& p = *s.pair;
  // Bytes for a server still connecting wait until the connect completes.
  if (!(p.connecting && &s == &p.server) && !flush(s)) return;
  update(p);
}

// Writes what waits for `s`; false when the pair was closed.
bool Snoop::flush(Side& s) {
  while (s.pending() > 0) {
    ssize_t n = ::send(s.fd.get(), s.out.data() + s.out_off, s.pending(), MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) return true;
      close_pair(*s.pair,
                 std::string(s.is_client ? "client" : "server") + " write: " + strerror(errno));
      return false;
    }
    s.out_off += size_t(n);
  }
  s.out.clear();
  s.out_off = 0;
  Pair& p = *s.pair;
  if (s.eof_out && !s.shut_out) {
    ::shutdown(s.fd.get(), SHUT_WR);
    s.shut_out = true;
  }
  // Both half-closes passed on: each came after the last byte of its direction.
  if (p.client.shut_out && p.server.shut_out) {
    close_pair(p, "both sides closed");
    return false;
  }
  return true;
}

// Sets what each side of `p` waits for.
void Snoop::update(Pair& p) {
  if (p.connecting) {
    watch(p.server, EV_WRITE);
    watch(p.client, !p.client.eof_in && p.server.backlog() < kHighWater ? EV_READ : 0);
    return;
  }
  for (Side* s : {&p.client, &p.server}) {
    Side& other = s == &p.client ? p.server : p.client;
    int ev = 0;
    if (!s->eof_in && other.backlog() < kHighWater) ev |= EV_READ;
    if (s->pending() > 0) ev |= EV_WRITE;
    watch(*s, ev);
  }
}

void Snoop::watch(Side& s, int events) {
  if (s.events == events) return;
  if (s.events) ev_io_stop(loop_, &s.io);
  s.events = events;
  if (events) {
    ev_io_set(&s.io, s.fd.get(), events);
    ev_io_start(loop_, &s.io);
  }
}

void Snoop::close_pair(Pair& p, const std::string& why) {
  std::printf("#%lu closed (%s)\n", p.id, why.c_str());
  for (Side* s : {&p.client, &p.server}) {
    if (s->events) ev_io_stop(loop_, &s->io);
    s->events = 0;
    ev_timer_stop(loop_, &s->timer);
  }
  for (auto it = pairs_.begin(); it != pairs_.end(); ++it) {
    if (it->get() == &p) {
      pairs_.erase(it);  // closes both fds
      return;
    }
  }
}

std::string hex_id(proto::Bytes id) {
  static const char* digits = "0123456789abcdef";
  std::string s;
  size_t n = std::min<size_t>(id.size(), 8);
  for (size_t i = 0; i < n; ++i) {
    s += digits[id[i] >> 4];
    s += digits[id[i] & 15];
  }
  if (id.size() > n) s += "..";
  return s + "(" + std::to_string(id.size()) + ")";
}

const char* status_name(proto::Op op, uint8_t b) {
  if (op == proto::Op::add) return proto::to_string(proto::AddStatus(b));
  switch (b) {
    case 0:
      return "OK";
    case 1:
      return "NOTOK";
    case 2:
      return "DISCONNECTED";
    default:
      return "UNKNOWN";
  }
}

void Snoop::print(const Pair& p, const Side& from, const proto::Message& m) {
  char extra[160] = "";
  if (!m.is_response) {
    if (m.op == proto::Op::add) {
      proto::AddRequest a;
      proto::AddParse r = proto::parse_add(m.payload, a);
      if (r.action == proto::AddCheck::answer && r.status == proto::AddStatus::ok)
        std::snprintf(extra, sizeof extra, "id=%s data_len=%zu timeout_ms=%u", hex_id(a.id).c_str(),
                      a.data.size(), a.timeout_ms);
      else
        std::snprintf(extra, sizeof extra, "invalid (%s) payload=%zu",
                      r.action == proto::AddCheck::close ? "too short" : proto::to_string(r.status),
                      m.payload.size());
    } else {
      std::snprintf(extra, sizeof extra, "id=%s", hex_id(m.payload).c_str());
    }
  } else if (m.payload.size() == 1) {
    std::snprintf(extra, sizeof extra, "status=%u (%s)", m.payload[0],
                  status_name(m.op, m.payload[0]));
  } else if (m.op == proto::Op::get) {
    std::snprintf(extra, sizeof extra, "data_len=%zu", m.payload.size());
  } else {
    std::snprintf(extra, sizeof extra, "payload=%zu", m.payload.size());
  }
  char level[32] = "";
  if (m.proto_level != proto::kProtoLevel)
    std::snprintf(level, sizeof level, " level=0x%08x", m.proto_level);
  std::printf("#%lu %s %-8s uid=%u %s %s%s\n", p.id, from.is_client ? "c->s" : "s->c",
              m.is_response ? "response" : "request", m.uid, proto::to_string(m.op), extra, level);
}

}  // namespace

int main(int argc, char** argv) {
  std::string listen, server;
  uint64_t delay_ms = 0;
  auto bad = [](const std::string& m) { dc::tools::usage_error("dc_snoop", m, kUsage); };
  for (int i = 1; i < argc; ++i) {
    std::string f = argv[i];
    dc::tools::answer_help(f, kUsage);
    if (f != "-listen" && f != "-server" && f != "-connect" && f != "-delay")
      bad("unknown flag " + f);
    if (i + 1 >= argc) bad("flag " + f + " needs a value");
    std::string v = argv[++i];
    if (f == "-delay") {
      if (!dc::tools::parse_decimal(v, 0, 600000, delay_ms))
        bad("bad -delay '" + v + "' (want 0..600000 ms)");
    } else {
      (f == "-listen" ? listen : server) = v;
    }
  }
  if (listen.empty()) bad("-listen is required");
  if (server.empty()) bad("-server is required");
  dc::Address la, sa;
  std::string err;
  if (!dc::parse_address(listen, la, err)) bad(err);
  if (!dc::parse_address(server, sa, err)) bad(err);
  dc::SockAddr up;
  if (!dc::resolve(sa, false, up, err)) {
    std::fprintf(stderr, "dc_snoop: %s\n", err.c_str());
    return 1;
  }
  signal(SIGPIPE, SIG_IGN);
  dc::UniqueFd lfd = dc::listen_on(la, dc::ListenOptions{}, err);
  if (!lfd) {
    std::fprintf(stderr, "dc_snoop: cannot listen on %s: %s\n", listen.c_str(), err.c_str());
    return 1;
  }
  setvbuf(stdout, nullptr, _IOLBF, 0);
  struct ev_loop* loop = ev_default_loop(0);
  if (!loop) {
    std::fprintf(stderr, "dc_snoop: cannot create an event loop\n");
    return 1;
  }
  {
    Snoop s(up, std::move(lfd), loop, unsigned(delay_ms));
    s.run();
  }
  if (la.kind == dc::Address::Kind::unix_path) ::unlink(la.path.c_str());
  std::fprintf(stderr, "dc_snoop: stopped\n");
  return 0;
}
