// The dc_server backend: see dc_pool.h.
#include "agent/dc_pool.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <limits>

#include "agent/agent.h"
#include "common/hash.h"

namespace dc::agent {

namespace {

// The upstream connection always reads, without the layer's backpressure
// (that would stop reading the answers that drain the server, and a server
// doing the same would wait on us forever); instead no request is forwarded
// while this much is queued for the server, and the stall bound recycles a
// stalled one.
constexpr size_t kUpstreamOutMax = 4 * 1024 * 1024;

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

uint64_t fnv1a64(proto::Bytes b) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (uint8_t c : b) {
    h ^= c;
    h *= 0x100000001b3ULL;
  }
  return h;
}

uint64_t mix64(uint64_t x) {
  return common::mix64(x);
}

ServerNode::ServerNode(ev::Loop& loop, BackendHost& host, const AgentConfig& cfg, Address server,
                       std::optional<SockAddr> sa, size_t index)
    : loop_(loop),
      host_(host),
      cfg_(cfg),
      stats_(host.counters()),
      server_(std::move(server)),
      name_(server_.to_string()),
      hash_(fnv1a64(proto::Bytes(reinterpret_cast<const uint8_t*>(name_.data()), name_.size()))),
      handler_(*this),
      connector_(loop),
      resolver_(loop),
      look_up_retry_(loop,
                     [this] {
                       if (!up()) look_up();
                     }),
      server_sa_(sa),
      needs_lookup_(!ev::is_numeric(server_)),
      // main() already said so when the name did not resolve.
      reported_unresolved_(needs_lookup_ && !server_sa_),
      retry_(loop, [this] { connect_now(); }),
      deadline_(loop, [this] { on_deadline(); }),
      late_report_(loop, [this] { report_late(); }),
      handshake_deadline_(loop, [this] { on_handshake_deadline(); }) {
  std::string n = std::to_string(index);
  key_up_ = "node" + n + "_up";
  key_forwarded_ = "node" + n + "_forwarded";
  key_answered_ = "node" + n + "_answered";
  key_losses_ = "node" + n + "_losses";
  key_pending_ = "node" + n + "_pending";
  labels_ = "node=\"" + name_ + "\"";
  if (!server_sa_ && !needs_lookup_) {
    // A UNIX path or a literal: no lookup, nothing that can block.
    SockAddr a;
    std::string err;
    if (resolve(server_, false, a, err))
      server_sa_ = a;
    else
      std::fprintf(stderr, "dc_client: %s\n", err.c_str());
  }
  connect_now();
}

bool ServerNode::tls() const {
  // A UNIX member of a pool is spoken plainly (main() said so).
  return cfg_.tls && server_.kind == Address::Kind::ip;
}

ServerNode::~ServerNode() {
  up_.reset();
  connector_.cancel();
  resolver_.cancel();
}

std::optional<Disconnected> ServerNode::submit(const Ticket& t, const proto::Message& m) {
  if (!up()) return Disconnected::no_upstream;
  if (pending_.size() >= cfg_.max_pending) return Disconnected::maxpending;
  if (up_->pending_output() >= kUpstreamOutMax) return Disconnected::backlog;
  proto::Message fwd = m;
  fwd.proto_level = proto::kProtoLevel;  // we are the sender now
  fwd.uid = next_uid_++;
  // The payload came through the decoder, so it always fits.
  up_->send(fwd);
  ++stats_.forwarded;
  ++forwarded_;
  pending_.push_back({t, fwd.uid, loop_.now_us()});
  // With every other entry abandoned the timer waits for the stall bound;
  // this entry's deadline comes sooner.
  if (!deadline_.active() || abandoned_ + 1 == pending_.size()) arm_deadline();
  return std::nullopt;
}

ServerNode::Pending ServerNode::take_front() {
  Pending p = pending_.front();
  pending_.pop_front();
  if (p.abandoned) --abandoned_;
  return p;
}

void ServerNode::expire(Pending& p) {
  p.abandoned = true;
  ++abandoned_;
  // Answered now; the server's answer will find the entry abandoned and go
  // nowhere.
  host_.fail(p.ticket, Disconnected::deadline);
}

void ServerNode::on_late(const Pending& p) {
  int64_t now = loop_.now_ms();
  int64_t took = now - p.sent_ms();
  ++stats_.late;
  stats_.late_max_ms = std::max(stats_.late_max_ms, took);
  ++late_unreported_;
  late_unreported_max_ms_ = std::max(late_unreported_max_ms_, took);
  if (!late_report_.active())
    late_report_.start(std::max(now + kLateGatherMs, next_late_report_ms_) - now);
}

void ServerNode::report_late() {
  if (late_unreported_ == 0) return;
  std::fprintf(stderr,
               "dc_client: %" PRIu64 " answer%s from the server %s came after the %" PRId64
               " ms deadline (slowest %" PRId64
               " ms) and were dropped, their clients already answered DISCONNECTED: raise "
               "-timeout or bring the cache closer\n",
               late_unreported_, late_unreported_ == 1 ? "" : "s", name_.c_str(), cfg_.timeout_ms,
               late_unreported_max_ms_);
  late_unreported_ = 0;
  late_unreported_max_ms_ = 0;
  next_late_report_ms_ = loop_.now_ms() + kLateReportEveryMs;
}

void ServerNode::on_answer(ev::Connection& c, const proto::Message& m) {
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
  if (pending_[idx].ticket.op != m.op) {
    c.close(ev::CloseReason::corrupt);  // same uid, another operation
    return;
  }
  // A server answers in order; one that skipped requests will not answer
  // them later, so they are answered DISCONNECTED (abandoned ones already
  // were).
  for (; idx > 0; --idx) {
    Pending p = take_front();
    if (p.abandoned) continue;
    host_.fail(p.ticket, Disconnected::skipped);
  }
  reported_down_ = reported_up_ = false;  // it works: the next loss is news
  Pending p = take_front();
  stats_.upstream_rtt.observe(loop_.now_us() - p.sent_us);
  if (p.abandoned) {
    on_late(p);  // its client was answered at the deadline
    return;
  }
  ++stats_.answered;
  ++answered_;
  host_.settle(p.ticket, m.payload);
}

void ServerNode::on_close(ev::Connection& c, ev::CloseReason why) {
  if (&c != up_.get()) return;  // not ours any more (cannot happen: kept for safety)
  std::unique_ptr<ev::Connection> gone = std::move(up_);  // freed on return
  handshake_deadline_.stop();
  std::string what = ev::to_string(why);
  if (!c.transport_error().empty()) what += ": " + c.transport_error();
  // A certificate refused by either side shows here (TLS 1.3: the server's
  // refusal of ours comes as an alert just after our side finished).
  if (tls() && (why == ev::CloseReason::tls || !c.transport_error().empty()))
    what += "; check -tls-cert, -tls-key, -tls-ca and -tls-name against the server's";
  lost(what);
}

void ServerNode::on_ready() {
  handshake_deadline_.stop();
  ++stats_.connects;
  // Logged once per outage: a stalled server accepts connections that
  // then fail again, and that must not fill the log.
  if (reported_down_ && !reported_up_) {
    std::fprintf(stderr, "dc_client: connected to the server %s%s\n", name_.c_str(),
                 tls() ? " (TLS)" : "");
    reported_up_ = true;
  }
}

void ServerNode::on_handshake_deadline() {
  if (!up_ || up_->established()) return;
  // Destroyed here, not from its own callback: no close notice follows.
  up_.reset();
  lost("the TLS handshake did not finish within " + std::to_string(cfg_.stall_ms()) + " ms");
}

void ServerNode::fail_pending() {
  std::deque<Pending> q;
  q.swap(pending_);
  abandoned_ = 0;
  deadline_.stop();
  for (const Pending& p : q) {
    if (p.abandoned) continue;  // answered at its deadline
    host_.fail(p.ticket, Disconnected::lost);
  }
}

void ServerNode::lost(const std::string& why) {
  ++stats_.losses;
  ++losses_;
  if (!reported_down_) {
    std::fprintf(stderr,
                 "dc_client: lost the server %s (%s): answering DISCONNECTED, "
                 "reconnecting every %" PRId64 " ms\n",
                 name_.c_str(), why.c_str(), cfg_.retry_ms);
    reported_down_ = true;
  }
  fail_pending();
  schedule_connect();
}

void ServerNode::schedule_connect() {
  if (up_ || connector_.busy() || retry_.active()) return;
  int64_t now = loop_.now_ms();
  int64_t at = attempted_ ? last_attempt_ms_ + cfg_.retry_ms : now;
  retry_.start(std::max<int64_t>(at - now, 0));
}

void ServerNode::connect_now() {
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
  connector_.start(*server_sa_, name_, deadline, [this](UniqueFd fd, const std::string& err) {
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
    if (tls()) {
      // The certificate must carry -tls-name, else this server's own host.
      std::string why;
      t = cfg_.tls->wrap(fd.get(), cfg_.tls_name.empty() ? server_.host : cfg_.tls_name, why);
      if (!t) {
        lost(why);
        return;
      }
    }
    up_ = std::make_unique<ev::Connection>(loop_, std::move(fd), handler_, opt, std::move(t));
    if (!tls()) {
      on_ready();
      return;
    }
    // The handshake gets what is left of the connect deadline.
    int64_t left = last_attempt_ms_ + cfg_.stall_ms() - loop_.now_ms();
    handshake_deadline_.start(std::max<int64_t>(left, 1));
  });
}

void ServerNode::look_up() {
  if (!needs_lookup_ || resolver_.busy() || look_up_retry_.active()) return;
  int64_t now = loop_.now_ms();
  if (looked_up_ && now < last_lookup_ms_ + cfg_.retry_ms) {
    look_up_retry_.start(last_lookup_ms_ + cfg_.retry_ms - now);
    return;
  }
  looked_up_ = true;
  last_lookup_ms_ = now;
  resolver_.start(server_, [this](bool ok, const SockAddr& sa, const std::string& err) {
    on_looked_up(ok, sa, err);
  });
}

void ServerNode::on_looked_up(bool ok, const SockAddr& sa, const std::string& err) {
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
    std::fprintf(stderr, "dc_client: the server %s resolves to %s\n", name_.c_str(),
                 to_string(sa).c_str());
  reported_unresolved_ = false;
  server_sa_ = sa;
  schedule_connect();  // nothing when connected or connecting
}

void ServerNode::arm_deadline() {
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

void ServerNode::on_deadline() {
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

DcPool::DcPool(ev::Loop& loop, BackendHost& host, const AgentConfig& cfg) {
  nodes_.push_back(std::make_unique<ServerNode>(loop, host, cfg, cfg.server, cfg.server_sa, 0));
  for (const ServerAddr& s : cfg.more_servers)
    nodes_.push_back(std::make_unique<ServerNode>(loop, host, cfg, s.addr, s.sa, nodes_.size()));
}

size_t DcPool::preferred(proto::Bytes id) const {
  uint64_t h = fnv1a64(id);
  size_t best = 0;
  for (size_t i = 1; i < nodes_.size(); ++i)
    if (rendezvous_weight(h, nodes_[i]->hash()) > rendezvous_weight(h, nodes_[best]->hash()))
      best = i;
  return best;
}

std::optional<Disconnected> DcPool::submit(const Ticket& t, const proto::Message& m,
                                           proto::Bytes id) {
  if (nodes_.size() == 1) return nodes_[0]->submit(t, m);
  // The up server of highest weight (ties, which need equal 64-bit
  // weights, go to the first given).
  uint64_t h = fnv1a64(id);
  ServerNode* best = nullptr;
  uint64_t best_w = 0;
  for (const auto& n : nodes_) {
    if (!n->up()) continue;
    uint64_t w = rendezvous_weight(h, n->hash());
    if (!best || w > best_w) {
      best = n.get();
      best_w = w;
    }
  }
  if (!best) return Disconnected::no_upstream;
  return best->submit(t, m);
}

bool DcPool::up() const {
  return std::any_of(nodes_.begin(), nodes_.end(), [](const auto& n) { return n->up(); });
}

bool DcPool::backing_off() const {
  return std::all_of(nodes_.begin(), nodes_.end(), [](const auto& n) { return n->backing_off(); });
}

size_t DcPool::pending() const {
  size_t n = 0;
  for (const auto& node : nodes_) n += node->pending();
  return n;
}

void DcPool::append_stats(std::vector<ev::Stat>& t) {
  using ev::StatKind;
  // One family at a time (a family's rows are adjacent), a row per server.
  bool first = true;
  for (const auto& n : nodes_) {
    t.push_back(
        {n->key_up().c_str(), "backend_node_up", n->labels().c_str(), StatKind::gauge,
         first ? "1 while the connection to this dc_server of the pool is up, else 0." : nullptr,
         n->up() ? 1 : 0});
    first = false;
  }
  first = true;
  for (const auto& n : nodes_) {
    t.push_back({n->key_pending().c_str(), "backend_node_pending_requests", n->labels().c_str(),
                 StatKind::gauge,
                 first ? "Requests forwarded to this dc_server and not answered yet." : nullptr,
                 int64_t(n->pending())});
    first = false;
  }
  first = true;
  for (const auto& n : nodes_) {
    t.push_back({n->key_forwarded().c_str(), "backend_node_forwarded_total", n->labels().c_str(),
                 StatKind::counter, first ? "Requests sent to this dc_server." : nullptr,
                 int64_t(n->forwarded())});
    first = false;
  }
  first = true;
  for (const auto& n : nodes_) {
    t.push_back(
        {n->key_answered().c_str(), "backend_node_answered_total", n->labels().c_str(),
         StatKind::counter,
         first ? "Answers from this dc_server delivered to a local client in time." : nullptr,
         int64_t(n->answered())});
    first = false;
  }
  first = true;
  for (const auto& n : nodes_) {
    t.push_back(
        {n->key_losses().c_str(), "backend_node_losses_total", n->labels().c_str(),
         StatKind::counter,
         first ? "Connections to this dc_server lost (closed, failed, or recycled)." : nullptr,
         int64_t(n->losses())});
    first = false;
  }
}

}  // namespace dc::agent
