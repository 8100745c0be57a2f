// dc_client's multiplexer: see agent.h.
#include "agent/agent.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>

namespace dc::agent {

namespace {

// The upstream connection always reads, without the layer's backpressure
// (that would stop reading the answers that drain the server, and a server
// doing the same would wait on us forever); instead no request is forwarded
// while this much is queued for the server, and the stall bound recycles a
// stalled one.
constexpr size_t kUpstreamOutMax = 4 * 1024 * 1024;

const uint8_t kDisconnected = uint8_t(proto::Status::disconnected);

// The answers a client's GETs in flight may bring, at most this many times
// -maxout (see Agent::over_limits).
constexpr size_t kAnswerBudget = 4;

// Late answers are reported in one line per episode: the first late answer
// starts a report kLateGatherMs later (the rest of a burst is counted in
// it), and reports are at least kLateReportEveryMs apart, so a server that
// is always slow costs one line every 10 s, not one per answer.
constexpr int64_t kLateGatherMs = 1000;
constexpr int64_t kLateReportEveryMs = 10000;

// "1.2.3.4:9001" or "[::1]:9001", for the log.
std::string to_string(const SockAddr& sa) {
  char host[INET6_ADDRSTRLEN] = "?";
  uint16_t port = 0;
  if (sa.family() == AF_INET) {
    auto* in = reinterpret_cast<const sockaddr_in*>(&sa.ss);
    inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
    port = ntohs(in->sin_port);
    return std::string(host) + ":" + std::to_string(port);
  }
  if (sa.family() == AF_INET6) {
    auto* in6 = reinterpret_cast<const sockaddr_in6*>(&sa.ss);
    inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
    port = ntohs(in6->sin6_port);
  }
  return "[" + std::string(host) + "]:" + std::to_string(port);
}

bool same(const SockAddr& a, const SockAddr& b) {
  return a.len == b.len && std::memcmp(&a.ss, &b.ss, a.len) == 0;
}

}  // namespace

// A local client: its connection and its unanswered requests in order.
struct Agent::Local : ev::Handler {
  Local(Agent& a, uint64_t id_, UniqueFd fd, ev::ConnectionOptions opt)
      : agent(a), id(id_), conn(a.loop_, std::move(fd), *this, opt), last_ms(a.loop_.now_ms()) {}
  void on_message(ev::Connection&, const proto::Message& m) override { agent.on_request(*this, m); }
  void on_close(ev::Connection&, ev::CloseReason why) override { agent.on_local_close(*this, why); }
  // A client that shut down its sending side still gets the answers to
  // what it sent: the connection closes once the last one is queued.
  bool on_eof(ev::Connection&) override {
    eof = true;
    if (slots.empty()) return false;
    ++agent.stats_.half_closed;
    return true;
  }

  Agent& agent;
  const uint64_t id;  // never reused
  ev::Connection conn;
  std::deque<Slot> slots;
  int64_t last_ms;            // when it last sent a request (or connected)
  size_t gets_in_flight = 0;  // GETs forwarded and not answered yet
  bool eof = false;           // it sent all it will send (see on_eof)
};

void Agent::UpstreamHandler::on_message(ev::Connection& c, const proto::Message& m) {
  a_.on_answer(c, m);
}

void Agent::UpstreamHandler::on_close(ev::Connection& c, ev::CloseReason why) {
  a_.on_upstream_close(c, why);
}

Agent::Agent(ev::Loop& loop, AgentConfig cfg)
    : loop_(loop),
      cfg_(std::move(cfg)),
      started_ms_(loop.now_ms()),
      up_handler_(*this),
      connector_(loop),
      resolver_(loop),
      look_up_retry_(loop,
                     [this] {
                       if (!upstream_up()) look_up();
                     }),
      server_sa_(cfg_.server_sa),
      needs_lookup_(!ev::is_numeric(cfg_.server)),
      // main() already said so when the name did not resolve.
      reported_unresolved_(needs_lookup_ && !server_sa_),
      retry_(loop, [this] { connect_now(); }),
      deadline_(loop, [this] { on_deadline(); }),
      idle_(loop, [this] { sweep_idle(); }),
      late_report_(loop, [this] { report_late(); }) {
  if (cfg_.idle_ms > 0) {
    // Checked a few times per period: a client goes between idle and 1.25 idle.
    int64_t every = std::max<int64_t>(cfg_.idle_ms / 4, 5);
    idle_.start(every, every);
  }
  if (!server_sa_ && !needs_lookup_) {
    // A UNIX path or a literal: no lookup, nothing that can block.
    SockAddr sa;
    std::string err;
    if (resolve(cfg_.server, false, sa, err))
      server_sa_ = sa;
    else
      std::fprintf(stderr, "dc_client: %s\n", err.c_str());
  }
  connect_now();
}

Agent::~Agent() {
  // Connections refer to this object: they go first. The listeners'
  // destructors remove the UNIX socket files.
  locals_.clear();
  up_.reset();
  connector_.cancel();
  resolver_.cancel();
  listeners_.clear();
}

void Agent::add_listener(UniqueFd fd, const Address& a) {
  listeners_.push_back(std::make_unique<ev::Listener>(
      loop_, std::move(fd), a, [this](UniqueFd c) { accept(std::move(c)); }));
}

void Agent::accept(UniqueFd fd) {
  ++stats_.accepted;
  // At -maxconns the socket is closed at once: the client's library sees
  // a failed connection (a miss, then its back-off) instead of waiting in
  // the listen backlog.
  if (!loop_.admit()) return;
  ev::ConnectionOptions opt;
  opt.limited = true;  // -maxconns, -frametimeout, -connmemory
  opt.out_high = cfg_.max_out;
  opt.out_low = cfg_.max_out / 4;
  uint64_t id = next_client_++;
  locals_.emplace(id, std::make_unique<Local>(*this, id, std::move(fd), opt));
}

void Agent::on_local_close(Local& l, ev::CloseReason why) {
  if (why == ev::CloseReason::corrupt) ++stats_.client_errors;
  // Its pending entries stay in the FIFO (the server will answer them);
  // they name this id, which nothing will ever have again, so their answers
  // are dropped.
  locals_.erase(l.id);  // destroys l
}

void Agent::on_request(Local& l, const proto::Message& m) {
  ++stats_.requests;
  int64_t now = loop_.now_ms();
  l.last_ms = now;
  if (m.is_response) {
    // A client never sends answers: the stream is not the protocol.
    l.conn.close(ev::CloseReason::corrupt);
    return;
  }
  if (m.op == proto::Op::add) {
    // An ADD too short to parse makes the server close its connection:
    // forwarded, it would cost every client the upstream connection.
    proto::AddRequest req;
    if (proto::parse_add(m.payload, req).action == proto::AddCheck::close) {
      l.conn.close(ev::CloseReason::corrupt);
      return;
    }
  }
  if (!upstream_up() || pending_.size() >= cfg_.max_pending ||
      up_->pending_output() >= kUpstreamOutMax) {
    answer_local(l, m.uid, m.op);
    return;
  }
  proto::Message fwd = m;
  fwd.proto_level = proto::kProtoLevel;  // we are the sender now
  fwd.uid = next_uid_++;
  // The payload came through the decoder, so it always fits.
  up_->send(fwd);
  ++stats_.forwarded;
  pending_.push_back({l.id, fwd.uid, m.op, now});
  l.slots.push_back({m.uid, m.op, true});
  if (m.op == proto::Op::get) ++l.gets_in_flight;
  // With every other entry abandoned the timer waits for the stall bound;
  // this entry's deadline comes sooner.
  if (!deadline_.active() || abandoned_ + 1 == pending_.size()) arm_deadline();
  hold_if_full(l);
}

// A client is not read further (its requests wait in its socket) while it
// has -clientpending unanswered requests, or while the largest answers its
// GETs in flight could bring would not fit in kAnswerBudget x -maxout: the
// connection layer stops reading a client whose unread answers pass
// -maxout, but answers already asked for arrive anyway, and a thousand
// 32 KiB sessions would be 32 MiB for one client that does not read.
// A held client is released once both are below half their limit, so a
// client that pipelines deeply is not held and released on every answer.
bool Agent::over_limits(const Local& l, size_t divisor) const {
  return l.slots.size() * divisor >= cfg_.client_pending ||
         l.gets_in_flight * proto::kMaxPayload * divisor >= kAnswerBudget * cfg_.max_out;
}

void Agent::hold_if_full(Local& l) {
  if (!l.conn.input_held() && over_limits(l, 1)) {
    ++stats_.overflows;
    l.conn.hold_input(true);
  }
}

void Agent::answer_local(Local& l, uint32_t uid, proto::Op op) {
  ++stats_.disconnected;
  if (!l.slots.empty()) {
    l.slots.push_back({uid, op, false});  // after the answers it still waits for
    hold_if_full(l);
    return;
  }
  proto::Message r;
  r.is_response = true;
  r.uid = uid;
  r.op = op;
  r.payload = proto::Bytes(&kDisconnected, 1);
  l.conn.send(r);
}

void Agent::drain_local(Local& l) {
  proto::Message r;
  r.is_response = true;
  r.payload = proto::Bytes(&kDisconnected, 1);
  while (!l.slots.empty() && !l.slots.front().on_server) {
    r.uid = l.slots.front().uid;
    r.op = l.slots.front().op;
    l.conn.send(r);
    l.slots.pop_front();
  }
}

void Agent::deliver(const Pending& p, proto::Bytes payload) {
  auto it = locals_.find(p.client);
  if (it == locals_.end() || it->second->conn.closed()) {
    ++stats_.dropped;
    return;
  }
  Local& l = *it->second;
  // The server answers in order and locally answered slots leave as soon
  // as they reach the front, so this answer is for the first slot.
  if (l.slots.empty() || !l.slots.front().on_server || l.slots.front().op != p.op) {
    std::fprintf(stderr, "dc_client: internal error: answer order lost for a client\n");
    std::abort();
  }
  proto::Message r;
  r.is_response = true;
  r.uid = l.slots.front().uid;
  r.op = p.op;
  r.payload = payload;
  l.slots.pop_front();
  if (p.op == proto::Op::get) --l.gets_in_flight;
  l.conn.send(r);
  after_answer(l);
}

void Agent::after_answer(Local& l) {
  drain_local(l);
  if (l.conn.input_held() && !over_limits(l, 2)) l.conn.hold_input(false);
  if (l.eof && l.slots.empty()) l.conn.close_after_flush(ev::CloseReason::peer_closed);
}

Agent::Pending Agent::take_front() {
  Pending p = pending_.front();
  pending_.pop_front();
  if (p.abandoned) --abandoned_;
  return p;
}

void Agent::expire(Pending& p) {
  p.abandoned = true;
  ++abandoned_;
  ++stats_.expired;
  ++stats_.disconnected;
  auto it = locals_.find(p.client);
  if (it == locals_.end() || it->second->conn.closed()) return;  // nobody to tell
  Local& l = *it->second;
  // Entries are abandoned oldest first, so this is the client's oldest
  // request on the server: its first slot (as in deliver).
  if (l.slots.empty() || !l.slots.front().on_server || l.slots.front().op != p.op) {
    std::fprintf(stderr, "dc_client: internal error: answer order lost for a client\n");
    std::abort();
  }
  // Answered now (drain_local sends it); the server's answer will find the
  // entry abandoned and go nowhere.
  l.slots.front().on_server = false;
  if (p.op == proto::Op::get) --l.gets_in_flight;
  after_answer(l);
}

void Agent::on_late(const Pending& p) {
  int64_t now = loop_.now_ms();
  int64_t took = now - p.sent_ms;
  ++stats_.late;
  stats_.late_max_ms = std::max(stats_.late_max_ms, took);
  ++late_unreported_;
  late_unreported_max_ms_ = std::max(late_unreported_max_ms_, took);
  if (!late_report_.active())
    late_report_.start(std::max(now + kLateGatherMs, next_late_report_ms_) - now);
}

void Agent::report_late() {
  if (late_unreported_ == 0) return;
  std::fprintf(stderr,
               "dc_client: %" PRIu64 " answer%s from the server %s came after the %" PRId64
               " ms deadline (slowest %" PRId64
               " ms) and were dropped, their clients already answered DISCONNECTED: raise "
               "-timeout or bring the cache closer\n",
               late_unreported_, late_unreported_ == 1 ? "" : "s", cfg_.server.to_string().c_str(),
               cfg_.timeout_ms, late_unreported_max_ms_);
  late_unreported_ = 0;
  late_unreported_max_ms_ = 0;
  next_late_report_ms_ = loop_.now_ms() + kLateReportEveryMs;
}

void Agent::on_answer(ev::Connection& c, const proto::Message& m) {
  if (!m.is_response) {
    c.close(ev::CloseReason::corrupt);  // a server never sends requests
    return;
  }
  // Uids in the FIFO are consecutive (modulo 2^32), so the entry is found
  // by subtraction; anything outside it matches nothing and is dropped.
  size_t idx = pending_.empty() ? 0 : size_t(uint32_t(m.uid - pending_.front().up_uid));
  if (pending_.empty() || idx >= pending_.size()) {
    ++stats_.unmatched;
    return;
  }
  if (pending_[idx].op != m.op) {
    c.close(ev::CloseReason::corrupt);  // same uid, another operation
    return;
  }
  // A server answers in order; one that skipped requests will not answer
  // them later, so they are answered DISCONNECTED to keep each client's order
  // (abandoned ones already were).
  for (; idx > 0; --idx) {
    Pending p = take_front();
    if (p.abandoned) continue;
    ++stats_.disconnected;
    deliver(p, proto::Bytes(&kDisconnected, 1));
  }
  reported_down_ = reported_up_ = false;  // it works: the next loss is news
  Pending p = take_front();
  if (p.abandoned) {
    on_late(p);  // its client was answered at the deadline
    return;
  }
  ++stats_.answered;
  deliver(p, m.payload);
}

void Agent::on_upstream_close(ev::Connection& c, ev::CloseReason why) {
  if (&c != up_.get()) return;  // not ours any more (cannot happen: kept for safety)
  std::unique_ptr<ev::Connection> gone = std::move(up_);  // freed on return
  lost(ev::to_string(why));
}

void Agent::fail_pending() {
  std::deque<Pending> q;
  q.swap(pending_);
  abandoned_ = 0;
  deadline_.stop();
  for (const Pending& p : q) {
    if (p.abandoned) continue;  // answered at its deadline
    ++stats_.disconnected;
    deliver(p, proto::Bytes(&kDisconnected, 1));
  }
}

void Agent::lost(const std::string& why) {
  ++stats_.losses;
  if (!reported_down_) {
    std::fprintf(stderr,
                 "dc_client: lost the server %s (%s): answering DISCONNECTED, "
                 "reconnecting every %" PRId64 " ms\n",
                 cfg_.server.to_string().c_str(), why.c_str(), cfg_.retry_ms);
    reported_down_ = true;
  }
  fail_pending();
  schedule_connect();
}

void Agent::schedule_connect() {
  if (up_ || connector_.busy() || retry_.active()) return;
  int64_t now = loop_.now_ms();
  int64_t at = attempted_ ? last_attempt_ms_ + cfg_.retry_ms : now;
  retry_.start(std::max<int64_t>(at - now, 0));
}

void Agent::connect_now() {
  retry_.stop();
  if (!server_sa_) {
    look_up();  // a connect follows once the name resolves
    return;
  }
  attempted_ = true;
  last_attempt_ms_ = loop_.now_ms();
  // A connect may take as long as an answer may before the server counts
  // as dead: clients are answered DISCONNECTED at once meanwhile, and a
  // cache farther away than -timeout must still be reachable.
  int deadline = int(std::min<int64_t>(cfg_.stall_ms(), std::numeric_limits<int>::max()));
  connector_.start(
      *server_sa_, cfg_.server.to_string(), deadline, [this](UniqueFd fd, const std::string& err) {
        if (!fd) {
          if (!reported_down_) {
            std::fprintf(stderr,
                         "dc_client: %s: answering DISCONNECTED, retrying every %" PRId64 " ms\n",
                         err.c_str(), cfg_.retry_ms);
            reported_down_ = true;
          }
          look_up();  // the name may lead elsewhere by now
          schedule_connect();
          return;
        }
        ev::ConnectionOptions opt;
        opt.backpressure = false;  // always read answers: see kUpstreamOutMax
        opt.flush_last = true;
        up_ = std::make_unique<ev::Connection>(loop_, std::move(fd), up_handler_, opt);
        ++stats_.connects;
        // Logged once per outage: a stalled server accepts connections that
        // then fail again, and that must not fill the log.
        if (reported_down_ && !reported_up_) {
          std::fprintf(stderr, "dc_client: connected to the server %s\n",
                       cfg_.server.to_string().c_str());
          reported_up_ = true;
        }
      });
}

void Agent::look_up() {
  if (!needs_lookup_ || resolver_.busy() || look_up_retry_.active()) return;
  int64_t now = loop_.now_ms();
  if (looked_up_ && now < last_lookup_ms_ + cfg_.retry_ms) {
    look_up_retry_.start(last_lookup_ms_ + cfg_.retry_ms - now);
    return;
  }
  looked_up_ = true;
  last_lookup_ms_ = now;
  resolver_.start(cfg_.server, [this](bool ok, const SockAddr& sa, const std::string& err) {
    on_looked_up(ok, sa, err);
  });
}

void Agent::on_looked_up(bool ok, const SockAddr& sa, const std::string& err) {
  ++stats_.resolves;
  if (!ok) {
    if (!reported_unresolved_) {
      std::fprintf(stderr, "dc_client: %s: %s, looking it up again every %" PRId64 " ms\n",
                   err.c_str(), server_sa_ ? "using the address it had" : "answering DISCONNECTED",
                   cfg_.retry_ms);
      reported_unresolved_ = true;
    }
    if (!server_sa_) look_up();  // else failed connects ask again
    return;
  }
  if (reported_unresolved_ || (server_sa_ && !same(*server_sa_, sa)))
    std::fprintf(stderr, "dc_client: the server %s resolves to %s\n",
                 cfg_.server.to_string().c_str(), to_string(sa).c_str());
  reported_unresolved_ = false;
  server_sa_ = sa;
  schedule_connect();  // nothing when connected or connecting
}

void Agent::arm_deadline() {
  if (pending_.empty()) {
    deadline_.stop();
    return;
  }
  // The earlier of the oldest waiting request's deadline and the stall bound
  // of the oldest entry.
  int64_t due = pending_.front().sent_ms + cfg_.stall_ms();
  if (abandoned_ < pending_.size())
    due = std::min(due, pending_[abandoned_].sent_ms + cfg_.timeout_ms);
  deadline_.start(std::max<int64_t>(due - loop_.now_ms(), 1));
}

void Agent::on_deadline() {
  if (pending_.empty()) return;
  int64_t now = loop_.now_ms();
  if (now - pending_.front().sent_ms >= cfg_.stall_ms()) {
    // Nothing for that long, not even late: the server is stalled (or the
    // network drops everything). Recycle. The connection is destroyed here
    // (not from its own callback), so no close notice follows.
    ++stats_.deadlines;
    up_.reset();
    char why[96];
    std::snprintf(why, sizeof why, "no answer within %" PRId64 " ms", cfg_.stall_ms());
    lost(why);
    return;
  }
  while (abandoned_ < pending_.size() && now - pending_[abandoned_].sent_ms >= cfg_.timeout_ms)
    expire(pending_[abandoned_]);
  arm_deadline();
}

void Agent::sweep_idle() {
  int64_t now = loop_.now_ms();
  for (auto& [id, l] : locals_) {
    if (l->conn.closed() || !l->slots.empty() || now - l->last_ms < cfg_.idle_ms) continue;
    ++stats_.idle_drops;
    l->conn.close(ev::CloseReason::local);  // erased when the loop reports it
  }
}

std::string Agent::stats_line() {
  const AgentStats& s = stats_;
  const ev::LimitCounters& lc = loop_.limit_counters();
  char buf[1536];
  std::snprintf(
      buf, sizeof buf,
      "uptime_ms=%" PRId64 " upstream=%s clients=%zu pending=%zu accepted=%" PRIu64
      " requests=%" PRIu64 " forwarded=%" PRIu64 " answered=%" PRIu64 " disconnected=%" PRIu64
      " dropped=%" PRIu64 " unmatched=%" PRIu64 " resolves=%" PRIu64 " connects=%" PRIu64
      " losses=%" PRIu64 " expired=%" PRIu64 " late=%" PRIu64 " late_max_ms=%" PRId64
      " deadlines=%" PRIu64 " client_errors=%" PRIu64 " overflows=%" PRIu64 " idle_drops=%" PRIu64
      " half_closed=%" PRIu64 " buffered=%zu refused=%" PRIu64 " displaced=%" PRIu64
      " frame_timeouts=%" PRIu64 " memory_closes=%" PRIu64,
      loop_.now_ms() - started_ms_, upstream_up() ? "up" : "down", locals_.size(), pending_.size(),
      s.accepted, s.requests, s.forwarded, s.answered, s.disconnected, s.dropped, s.unmatched,
      s.resolves, s.connects, s.losses, s.expired, s.late, s.late_max_ms, s.deadlines,
      s.client_errors, s.overflows, s.idle_drops, s.half_closed, loop_.buffered(), lc.refused,
      lc.displaced, lc.frame_timeouts, lc.memory_closes);
  return buf;
}

}  // namespace dc::agent
