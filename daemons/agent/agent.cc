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

void Agent::UpstreamHandler::on_established(ev::Connection&) {
  a_.on_upstream_ready();
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
      late_report_(loop, [this] { report_late(); }),
      handshake_deadline_(loop, [this] { on_handshake_deadline(); }) {
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
  if (!upstream_up()) return answer_local(l, m.uid, m.op, Disconnected::no_upstream);
  if (pending_.size() >= cfg_.max_pending)
    return answer_local(l, m.uid, m.op, Disconnected::maxpending);
  if (up_->pending_output() >= kUpstreamOutMax)
    return answer_local(l, m.uid, m.op, Disconnected::backlog);
  proto::Message fwd = m;
  fwd.proto_level = proto::kProtoLevel;  // we are the sender now
  fwd.uid = next_uid_++;
  // The payload came through the decoder, so it always fits.
  up_->send(fwd);
  ++stats_.forwarded;
  pending_.push_back({l.id, fwd.uid, m.op, loop_.now_us()});
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

void Agent::answer_local(Local& l, uint32_t uid, proto::Op op, Disconnected why) {
  ++stats_.disconnected[size_t(why)];
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
  count_response(op, r.payload);
}

void Agent::count_response(proto::Op op, proto::Bytes payload) {
  size_t result;
  if (payload.size() == 1 && payload[0] == kDisconnected)
    result = 2;
  else if (op == proto::Op::get)
    result = proto::classify_get(payload) == proto::GetAnswer::data ? 0 : 1;
  else
    result = payload.size() == 1 && payload[0] == uint8_t(proto::Status::ok) ? 0 : 1;
  ++stats_.responses[size_t(op) & 3][result];
}

void Agent::drain_local(Local& l) {
  proto::Message r;
  r.is_response = true;
  r.payload = proto::Bytes(&kDisconnected, 1);
  while (!l.slots.empty() && !l.slots.front().on_server) {
    r.uid = l.slots.front().uid;
    r.op = l.slots.front().op;
    l.conn.send(r);
    count_response(r.op, r.payload);
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
  count_response(p.op, payload);
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
  ++stats_.disconnected[size_t(Disconnected::deadline)];
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
  int64_t took = now - p.sent_ms();
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
    ++stats_.disconnected[size_t(Disconnected::skipped)];
    deliver(p, proto::Bytes(&kDisconnected, 1));
  }
  reported_down_ = reported_up_ = false;  // it works: the next loss is news
  Pending p = take_front();
  stats_.upstream_rtt.observe(loop_.now_us() - p.sent_us);
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
  handshake_deadline_.stop();
  std::string what = ev::to_string(why);
  if (!c.transport_error().empty()) what += ": " + c.transport_error();
  // A certificate refused by either side shows here (TLS 1.3: the server's
  // refusal of ours comes as an alert just after our side finished).
  if (cfg_.tls && (why == ev::CloseReason::tls || !c.transport_error().empty()))
    what += "; check -tls-cert, -tls-key, -tls-ca and -tls-name against the server's";
  lost(what);
}

void Agent::on_upstream_ready() {
  handshake_deadline_.stop();
  ++stats_.connects;
  // Logged once per outage: a stalled server accepts connections that
  // then fail again, and that must not fill the log.
  if (reported_down_ && !reported_up_) {
    std::fprintf(stderr, "dc_client: connected to the server %s%s\n",
                 cfg_.server.to_string().c_str(), cfg_.tls ? " (TLS)" : "");
    reported_up_ = true;
  }
}

void Agent::on_handshake_deadline() {
  if (!up_ || up_->established()) return;
  // Destroyed here, not from its own callback: no close notice follows.
  up_.reset();
  lost("the TLS handshake did not finish within " + std::to_string(cfg_.stall_ms()) + " ms");
}

void Agent::fail_pending() {
  std::deque<Pending> q;
  q.swap(pending_);
  abandoned_ = 0;
  deadline_.stop();
  for (const Pending& p : q) {
    if (p.abandoned) continue;  // answered at its deadline
    ++stats_.disconnected[size_t(Disconnected::lost)];
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
        std::unique_ptr<ev::Transport> t;
        if (cfg_.tls) {
          std::string why;
          t = cfg_.tls->wrap(fd.get(), why);
          if (!t) {
            lost(why);
            return;
          }
        }
        up_ =
            std::make_unique<ev::Connection>(loop_, std::move(fd), up_handler_, opt, std::move(t));
        if (!cfg_.tls) {
          on_upstream_ready();
          return;
        }
        // The handshake gets what is left of the connect deadline.
        int64_t left = last_attempt_ms_ + cfg_.stall_ms() - loop_.now_ms();
        handshake_deadline_.start(std::max<int64_t>(left, 1));
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
  int64_t due = pending_.front().sent_ms() + cfg_.stall_ms();
  if (abandoned_ < pending_.size())
    due = std::min(due, pending_[abandoned_].sent_ms() + cfg_.timeout_ms);
  deadline_.start(std::max<int64_t>(due - loop_.now_ms(), 1));
}

void Agent::on_deadline() {
  if (pending_.empty()) return;
  int64_t now = loop_.now_ms();
  if (now - pending_.front().sent_ms() >= cfg_.stall_ms()) {
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
  while (abandoned_ < pending_.size() && now - pending_[abandoned_].sent_ms() >= cfg_.timeout_ms)
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

std::vector<ev::Stat> Agent::stats_table() {
  using ev::StatKind;
  const AgentStats& s = stats_;
  auto i = [](auto v) { return int64_t(v); };
  std::vector<ev::Stat> t = {
      {"uptime_ms", "uptime_seconds", "", StatKind::gauge, "Seconds since dc_client started.",
       loop_.now_ms() - started_ms_, 1e-3},
      {"upstream_up", "upstream_up", "", StatKind::gauge,
       "1 while the connection to dc_server is up (with TLS: its handshake done), else 0.",
       upstream_up() ? 1 : 0},
      {"upstream_backoff", "upstream_backoff", "", StatKind::gauge,
       "1 while there is no connection to dc_server and none is being made: waiting out -retry "
       "(or a name lookup) before the next attempt; requests are answered DISCONNECTED.",
       !up_ && !connector_.busy() ? 1 : 0},
      {"clients", "clients", "", StatKind::gauge, "Local client connections open.",
       i(locals_.size())},
      {"pending", "pending_requests", "", StatKind::gauge,
       "Requests forwarded to dc_server and not answered yet (abandoned ones included).",
       i(pending_.size())},
      {"accepted", "clients_accepted_total", "", StatKind::counter,
       "Local client connections accepted (including those then refused at -maxconns).",
       i(s.accepted)},
  };
  t.push_back({"requests", "requests_total", "", StatKind::counter,
               "Requests from local clients (by operation and result: responses_total).",
               i(s.requests)});
  // Keys as dc_server's: hits/misses for GET, remove_hits, ..., add_ok.
  static const char* const kResponseRows[4][3][2] = {
      {{"add_ok", R"(op="add",result="ok")"},
       {"add_notok", R"(op="add",result="notok")"},
       {"add_disconnected", R"(op="add",result="disconnected")"}},
      {{"hits", R"(op="get",result="hit")"},
       {"misses", R"(op="get",result="miss")"},
       {"get_disconnected", R"(op="get",result="disconnected")"}},
      {{"remove_hits", R"(op="remove",result="hit")"},
       {"remove_misses", R"(op="remove",result="miss")"},
       {"remove_disconnected", R"(op="remove",result="disconnected")"}},
      {{"have_hits", R"(op="have",result="hit")"},
       {"have_misses", R"(op="have",result="miss")"},
       {"have_disconnected", R"(op="have",result="disconnected")"}},
  };
  for (size_t op = 0; op < 4; ++op)
    for (size_t r = 0; r < 3; ++r)
      t.push_back(
          {kResponseRows[op][r][0], "responses_total", kResponseRows[op][r][1], StatKind::counter,
           op == 0 && r == 0 ? "Answers sent to local clients, by operation and result: hit/miss "
                               "(ok/notok for ADD) as dc_server answered, or disconnected when the "
                               "agent answered DISCONNECTED itself."
                             : nullptr,
           i(s.responses[op][r])});
  t.push_back({"forwarded", "forwarded_total", "", StatKind::counter, "Requests sent to dc_server.",
               i(s.forwarded)});
  t.push_back({"answered", "answered_total", "", StatKind::counter,
               "Answers from dc_server delivered to a local client in time.", i(s.answered)});
  static const char* const kWhy[kDisconnectedReasons][2] = {
      {"disconnected_no_upstream", R"(reason="no_upstream")"},
      {"disconnected_maxpending", R"(reason="maxpending")"},
      {"disconnected_backlog", R"(reason="backlog")"},
      {"disconnected_deadline", R"(reason="deadline")"},
      {"disconnected_skipped", R"(reason="skipped")"},
      {"disconnected_lost", R"(reason="lost")"},
  };
  for (size_t k = 0; k < kDisconnectedReasons; ++k)
    t.push_back({kWhy[k][0], "disconnected_total", kWhy[k][1], StatKind::counter,
                 k == 0 ? "Requests the agent answered DISCONNECTED itself, by reason: "
                          "no_upstream (no connection to dc_server), maxpending (-maxpending "
                          "requests waiting), backlog (too much queued for dc_server), deadline "
                          "(no answer within -timeout), skipped (dc_server answered a later "
                          "request first), lost (the connection went with it pending)."
                        : nullptr,
                 i(s.disconnected[k])});
  t.push_back({"dropped", "dropped_total", "", StatKind::counter,
               "Answers for local clients that had gone.", i(s.dropped)});
  t.push_back({"unmatched", "unmatched_total", "", StatKind::counter,
               "Answers from dc_server that matched no request.", i(s.unmatched)});
  t.push_back({"late", "late_total", "", StatKind::counter,
               "Answers from dc_server that came after -timeout (dropped: the client was "
               "answered DISCONNECTED).",
               i(s.late)});
  t.push_back({"late_max_ms", "late_max_seconds", "", StatKind::gauge,
               "How long the slowest late answer took.", s.late_max_ms, 1e-3});
  t.push_back({"upstream_rtt", "upstream_rtt_seconds", "", StatKind::histogram,
               "Round trips to dc_server: from forwarding a request to its answer (late ones "
               "too), on the event loop's clock.",
               0, 1, &s.upstream_rtt});
  t.push_back({"resolves", "resolves_total", "", StatKind::counter,
               "Lookups of the server's name, done off the event loop.", i(s.resolves)});
  t.push_back({"connects", "upstream_connects_total", "", StatKind::counter,
               "Connections to dc_server established.", i(s.connects)});
  t.push_back({"losses", "upstream_losses_total", "", StatKind::counter,
               "Connections to dc_server lost (closed, failed, or recycled).", i(s.losses)});
  t.push_back({"deadlines", "upstream_stalls_total", "", StatKind::counter,
               "Connections to dc_server recycled because nothing came back for max(20 x "
               "-timeout, 1000 ms).",
               i(s.deadlines)});
  t.push_back({"client_errors", "protocol_errors_total", "", StatKind::counter,
               "Local clients closed because their bytes broke the protocol.", i(s.client_errors)});
  t.push_back({"overflows", "client_holds_total", "", StatKind::counter,
               "Times a local client was not read from: -clientpending unanswered requests, or "
               "GETs in flight whose answers could pass 4 x -maxout.",
               i(s.overflows)});
  t.push_back({"idle_drops", "idle_closes_total", "", StatKind::counter,
               "Local clients closed after -idle without a request.", i(s.idle_drops)});
  t.push_back({"half_closed", "half_closed_total", "", StatKind::counter,
               "Local clients that shut down their sending side with answers still owed.",
               i(s.half_closed)});
  ev::append_limit_stats(t, loop_);
  return t;
}

std::string Agent::stats_line() {
  return ev::stats_line(stats_table());
}

}  // namespace dc::agent
