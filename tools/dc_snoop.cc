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
// One libev loop, non-blocking sockets.
#include <ev.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
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
    "usage: dc_snoop -listen ADDR -server ADDR\n"
    "  -listen ADDR   where clients connect (UNIX:/path, IP:port, IP:host:port)\n"
    "  -server ADDR   the cache to forward to (synonym: -connect)\n"
    "  -h, --help     this text\n"
    "Passes every byte through unchanged and prints one decoded line per message on stdout.\n";

constexpr size_t kHighWater = 1 << 20;  // stop reading while this much waits for the peer
constexpr size_t kReadChunk = 64 * 1024;

struct Pair;

// One socket of a pair. `out` holds bytes waiting to be written to it; `dec`
// decodes what is read from it.
struct Side {
  Pair* pair = nullptr;
  bool is_client = false;
  dc::UniqueFd fd;
  ev_io io{};
  int events = 0;         // what `io` currently watches
  bool eof_in = false;    // the peer closed its write side
  bool shut_out = false;  // we shut down our write side towards it
  std::vector<uint8_t> out;
  size_t out_off = 0;
  proto::Decoder dec;
  size_t pending() const { return out.size() - out_off; }
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
  Snoop(dc::SockAddr upstream, dc::UniqueFd listener, struct ev_loop* loop)
      : upstream_(upstream), listener_(std::move(listener)), loop_(loop) {}
  ~Snoop();
  // Runs until SIGINT or SIGTERM.
  void run();

 private:
  static void on_accept(struct ev_loop*, ev_io* w, int);
  static void on_io(struct ev_loop*, ev_io* w, int revents);
  static void on_signal(struct ev_loop* loop, ev_signal*, int);

  void accept_all();
  bool readable(Side& from, Side& to);
  bool flush(Side& s);
  void update(Pair& p);
  void watch(Side& s, int events);
  void close_pair(Pair& p, const std::string& why);
  void print(const Pair& p, const Side& from, const proto::Message& m);

  dc::SockAddr upstream_;
  dc::UniqueFd listener_;
  struct ev_loop* loop_;
  ev_io accept_io_{};
  ev_signal sigint_{}, sigterm_{};
  std::vector<std::unique_ptr<Pair>> pairs_;
  unsigned long next_id_ = 1;
  std::vector<uint8_t> rbuf_ = std::vector<uint8_t>(kReadChunk);
};

Snoop::~Snoop() {
  while (!pairs_.empty()) close_pair(*pairs_.back(), "shutting down");
  ev_io_stop(loop_, &accept_io_);
  ev_signal_stop(loop_, &sigint_);
  ev_signal_stop(loop_, &sigterm_);
}

void Snoop::run() {
  ev_io_init(&accept_io_, on_accept, listener_.get(), EV_READ);
  accept_io_.data = this;
  ev_io_start(loop_, &accept_io_);
  ev_signal_init(&sigint_, on_signal, SIGINT);
  ev_signal_init(&sigterm_, on_signal, SIGTERM);
  ev_signal_start(loop_, &sigint_);
  ev_signal_start(loop_, &sigterm_);
  ev_run(loop_, 0);
}

void Snoop::on_signal(struct ev_loop* loop, ev_signal*, int) {
  ev_break(loop, EVBREAK_ALL);
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
    from.eof_in = true;  // flush() passes the half-close on once `to` is drained
    return can_write ? flush(to) : true;
  }
  to.out.insert(to.out.end(), rbuf_.begin(), rbuf_.begin() + n);
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
  Side& from = s.is_client ? p.server : p.client;
  if (from.eof_in && !s.shut_out) {
    ::shutdown(s.fd.get(), SHUT_WR);
    s.shut_out = true;
  }
  if (p.client.eof_in && p.server.eof_in && p.client.pending() == 0 && p.server.pending() == 0) {
    close_pair(p, "both sides closed");
    return false;
  }
  return true;
}

// Sets what each side of `p` waits for.
void Snoop::update(Pair& p) {
  if (p.connecting) {
    watch(p.server, EV_WRITE);
    watch(p.client, !p.client.eof_in && p.server.pending() < kHighWater ? EV_READ : 0);
    return;
  }
  for (Side* s : {&p.client, &p.server}) {
    Side& other = s == &p.client ? p.server : p.client;
    int ev = 0;
    if (!s->eof_in && other.pending() < kHighWater) ev |= EV_READ;
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
  auto bad = [](const std::string& m) { dc::tools::usage_error("dc_snoop", m, kUsage); };
  for (int i = 1; i < argc; ++i) {
    std::string f = argv[i];
    if (f == "-h" || f == "--help" || f == "-help") {
      std::fputs(kUsage, stdout);
      return 0;
    }
    if (f != "-listen" && f != "-server" && f != "-connect") bad("unknown flag " + f);
    if (i + 1 >= argc) bad("flag " + f + " needs a value");
    (f == "-listen" ? listen : server) = argv[++i];
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
    Snoop s(up, std::move(lfd), loop);
    s.run();
  }
  if (la.kind == dc::Address::Kind::unix_path) ::unlink(la.path.c_str());
  std::fprintf(stderr, "dc_snoop: stopped\n");
  return 0;
}
