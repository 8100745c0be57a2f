// dc_client's multiplexer: see agent.h.
#include "agent/agent.h"

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <optional>

#include "agent/dc_pool.h"
#include "agent/redis_backend.h"
#include "agent/redis_cluster.h"

namespace dc::agent {

namespace {

const uint8_t kDisconnected = uint8_t(proto::Status::disconnected);

// The answers a client's GETs in flight may bring, at most this many times
// -maxout (see Agent::over_limits).
constexpr size_t kAnswerBudget = 4;

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
  uint64_t first_seq = 0;     // slots.front()'s Ticket::seq (the next one's when empty)
  int64_t last_ms;            // when it last sent a request (or connected)
  size_t gets_in_flight = 0;  // GETs forwarded and not answered yet
  bool eof = false;           // it sent all it will send (see on_eof)
};

Agent::Agent(ev::Loop& loop, AgentConfig cfg)
    : loop_(loop),
      cfg_(std::move(cfg)),
      started_ms_(loop.now_ms()),
      idle_(loop, [this] { sweep_idle(); }) {
  if (cfg_.idle_ms > 0) {
    // Checked a few times per period: a client goes between idle and 1.25 idle.
    int64_t every = std::max<int64_t>(cfg_.idle_ms / 4, 5);
    idle_.start(every, every);
  }
  if (cfg_.redis && cfg_.redis->cluster)
    backend_ =
        std::make_unique<RedisCluster>(loop_, static_cast<BackendHost&>(*this), cfg_, *cfg_.redis);
  else if (cfg_.redis)
    backend_ =
        std::make_unique<RedisBackend>(loop_, static_cast<BackendHost&>(*this), cfg_, *cfg_.redis);
  else
    backend_ = std::make_unique<DcPool>(loop_, static_cast<BackendHost&>(*this), cfg_);
}

Agent::~Agent() {
  // Connections refer to this object: they go first. The listeners'
  // destructors remove the UNIX socket files.
  locals_.clear();
  backend_.reset();
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
  proto::Bytes id = m.payload;  // the session id (routing)
  if (m.op == proto::Op::add) {
    // An ADD too short to parse makes the server close its connection:
    // forwarded, it would cost every client the upstream connection.
    proto::AddRequest req;
    if (proto::parse_add(m.payload, req).action == proto::AddCheck::close) {
      l.conn.close(ev::CloseReason::corrupt);
      return;
    }
    id = req.id;
  }
  Ticket t{l.id, l.first_seq + l.slots.size(), m.op};
  if (std::optional<Disconnected> why = backend_->submit(t, m, id))
    return answer_local(l, m.uid, m.op, *why);
  l.slots.push_back({m.uid, m.op, SlotState::on_server, {}});
  if (m.op == proto::Op::get) ++l.gets_in_flight;
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
    l.slots.push_back({uid, op, SlotState::local, {}});  // after the answers it still waits for
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
  while (!l.slots.empty() && l.slots.front().state != SlotState::on_server) {
    Slot& s = l.slots.front();
    r.uid = s.uid;
    r.op = s.op;
    r.payload = s.state == SlotState::local ? proto::Bytes(&kDisconnected, 1)
                                            : proto::Bytes(s.answer.data(), s.answer.size());
    l.conn.send(r);
    count_response(r.op, r.payload);
    l.slots.pop_front();
    ++l.first_seq;
  }
}

void Agent::deliver(const Ticket& t, proto::Bytes payload, bool local) {
  auto it = locals_.find(t.client);
  if (it == locals_.end() || it->second->conn.closed()) {
    ++stats_.dropped;
    return;
  }
  Local& l = *it->second;
  // Slots are numbered consecutively from first_seq; a ticket is settled
  // once, so its slot is there and still waits on the store.
  size_t idx = size_t(t.seq - l.first_seq);
  if (idx >= l.slots.size() || l.slots[idx].state != SlotState::on_server ||
      l.slots[idx].op != t.op) {
    std::fprintf(stderr, "dc_client: internal error: answer order lost for a client\n");
    std::abort();
  }
  if (t.op == proto::Op::get) --l.gets_in_flight;
  Slot& s = l.slots[idx];
  if (local) {
    s.state = SlotState::local;  // drain_local sends it in its turn
  } else if (idx == 0) {
    // Its turn (always, with one server): sent without a copy.
    proto::Message r;
    r.is_response = true;
    r.uid = s.uid;
    r.op = t.op;
    r.payload = payload;
    l.conn.send(r);
    count_response(t.op, payload);
    l.slots.pop_front();
    ++l.first_seq;
  } else {
    // An earlier request is still on another server: kept until its turn.
    s.state = SlotState::answered;
    s.answer.assign(payload.begin(), payload.end());
    return;
  }
  if (idx == 0) after_answer(l);
}

void Agent::settle(const Ticket& t, proto::Bytes payload) {
  deliver(t, payload, false);
}

void Agent::fail(const Ticket& t, Disconnected why) {
  ++stats_.disconnected[size_t(why)];
  deliver(t, {}, true);
}

void Agent::after_answer(Local& l) {
  drain_local(l);
  if (l.conn.input_held() && !over_limits(l, 2)) l.conn.hold_input(false);
  if (l.eof && l.slots.empty()) l.conn.close_after_flush(ev::CloseReason::peer_closed);
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
       "1 while the connection to the store (dc_server or Redis) is up, with TLS its "
       "handshake done (a pool or a Redis Cluster: to at least one node), else 0.",
       upstream_up() ? 1 : 0},
      {"upstream_backoff", "upstream_backoff", "", StatKind::gauge,
       "1 while there is no connection to the store and none is being made: waiting out -retry "
       "(or a name lookup) before the next attempt; requests are answered DISCONNECTED.",
       backend_->backing_off() ? 1 : 0},
      {"clients", "clients", "", StatKind::gauge, "Local client connections open.",
       i(locals_.size())},
      {"pending", "pending_requests", "", StatKind::gauge,
       "Requests forwarded to the store and not answered yet (abandoned ones included).",
       i(backend_->pending())},
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
                               "(ok/notok for ADD) as the store answered, or disconnected when the "
                               "agent answered DISCONNECTED itself."
                             : nullptr,
           i(s.responses[op][r])});
  t.push_back({"forwarded", "forwarded_total", "", StatKind::counter, "Requests sent to the store.",
               i(s.forwarded)});
  t.push_back({"answered", "answered_total", "", StatKind::counter,
               "Answers from the store delivered to a local client in time.", i(s.answered)});
  static const char* const kWhy[kDisconnectedReasons][2] = {
      {"disconnected_no_upstream", R"(reason="no_upstream")"},
      {"disconnected_maxpending", R"(reason="maxpending")"},
      {"disconnected_backlog", R"(reason="backlog")"},
      {"disconnected_deadline", R"(reason="deadline")"},
      {"disconnected_skipped", R"(reason="skipped")"},
      {"disconnected_lost", R"(reason="lost")"},
      {"disconnected_refused", R"(reason="refused")"},
  };
  for (size_t k = 0; k < kDisconnectedReasons; ++k)
    t.push_back({kWhy[k][0], "disconnected_total", kWhy[k][1], StatKind::counter,
                 k == 0 ? "Requests the agent answered DISCONNECTED itself, by reason: "
                          "no_upstream (no connection to the store), maxpending (-maxpending "
                          "requests waiting), backlog (too much queued for the store), deadline "
                          "(no answer within -timeout), skipped (the store answered a later "
                          "request first), lost (the connection went with it pending), refused "
                          "(the store answered an error)."
                        : nullptr,
                 i(s.disconnected[k])});
  t.push_back({"dropped", "dropped_total", "", StatKind::counter,
               "Answers for local clients that had gone.", i(s.dropped)});
  t.push_back({"unmatched", "unmatched_total", "", StatKind::counter,
               "Answers from the store that matched no request.", i(s.unmatched)});
  t.push_back({"late", "late_total", "", StatKind::counter,
               "Answers from the store that came after -timeout (dropped: the client was "
               "answered DISCONNECTED).",
               i(s.late)});
  t.push_back({"late_max_ms", "late_max_seconds", "", StatKind::gauge,
               "How long the slowest late answer took.", s.late_max_ms, 1e-3});
  t.push_back({"upstream_rtt", "upstream_rtt_seconds", "", StatKind::histogram,
               "Round trips to the store: from forwarding a request to its answer (late ones "
               "too), on the event loop's clock.",
               0, 1, &s.upstream_rtt});
  t.push_back({"resolves", "resolves_total", "", StatKind::counter,
               "Lookups of the server's name, done off the event loop.", i(s.resolves)});
  t.push_back({"connects", "upstream_connects_total", "", StatKind::counter,
               "Connections to the store established.", i(s.connects)});
  t.push_back({"losses", "upstream_losses_total", "", StatKind::counter,
               "Connections to the store lost (closed, failed, or recycled).", i(s.losses)});
  t.push_back({"deadlines", "upstream_stalls_total", "", StatKind::counter,
               "Connections to the store recycled because nothing came back for max(20 x "
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
  backend_->append_stats(t);
  ev::append_limit_stats(t, loop_);
  return t;
}

std::string Agent::stats_line() {
  return ev::stats_line(stats_table());
}

}  // namespace dc::agent
