// dc_server's protocol handler: see server.h.
#include "server/server.h"

#include <cinttypes>
#include <cstdio>

namespace dc::server {

namespace {
// Expired sessions are reclaimed by a timer in batches of this many, so one
// tick never stalls the loop; a full batch schedules the next one soon.
constexpr size_t kReapBatch = 20000;
constexpr int64_t kReapIdleMs = 1000;
constexpr int64_t kReapBusyMs = 5;
// Requests announced to the store's prefetch at a time (see prefetch()).
constexpr size_t kLookahead = 32;
}  // namespace

size_t add_result(proto::AddStatus st) {
  // The order of the rows add_ok, add_matching_session, ... in stats_table().
  switch (st) {
    case proto::AddStatus::ok:
      return 0;
    case proto::AddStatus::matching_session:
      return 1;
    case proto::AddStatus::timeout_range:
      return 2;
    case proto::AddStatus::corrupt:
      return 3;
    case proto::AddStatus::id_range:
      return 4;
    case proto::AddStatus::data_range:
      return 5;
    default:
      return 6;  // notok
  }
}

Server::Server(ev::Loop& loop, Store& store, ServerConfig cfg)
    : loop_(loop),
      store_(store),
      cfg_(cfg),
      started_ms_(loop.now_ms()),
      expiry_(loop, [this] { reap_expired(); }),
      tls_refusals_(loop, "dc_server") {
  expiry_.start(kReapIdleMs);
}

Server::~Server() {
  // Connections first (they refer to this handler), then the listeners,
  // whose destructors remove UNIX socket files.
  conns_.clear();
  listeners_.clear();
}

void Server::add_listener(UniqueFd fd, const Address& a) {
  listeners_.push_back(std::make_unique<ev::Listener>(
      loop_, std::move(fd), a, [this, tls = cfg_.tls && a.kind == Address::Kind::ip](UniqueFd c) {
        accept(std::move(c), tls);
      }));
}

void Server::accept(UniqueFd fd, bool tls) {
  ++stats_.accepted;
  // At the connection limit the socket is closed at once (the client sees
  // its connection end: a miss), rather than left in the listen backlog
  // where it would wait out its deadline.
  if (!loop_.admit()) return;
  ev::ConnectionOptions o = cfg_.conn;
  o.limited = true;  // every client is untrusted
  if (o.lookahead == 0) o.lookahead = kLookahead;
  std::unique_ptr<ev::Transport> t;
  if (tls) {
    std::string why;
    t = cfg_.tls->wrap(fd.get(), why);
    if (!t) {
      tls_refusals_.note(why);  // no memory for it: closed like one over -maxconns
      return;
    }
  }
  auto c = std::make_unique<ev::Connection>(loop_, std::move(fd), *this, o, std::move(t));
  ev::Connection* key = c.get();
  conns_.emplace(key, std::move(c));
}

void Server::on_close(ev::Connection& c, ev::CloseReason why) {
  if (why == ev::CloseReason::corrupt) ++stats_.protocol_errors;
  // No certificate, another CA's, an expired one, plaintext: nothing of
  // it was read as a request.
  if (why == ev::CloseReason::tls) tls_refusals_.note(c.transport_error());
  conns_.erase(&c);  // destroys c
}

void Server::reap_expired() {
  size_t n = store_.expire(loop_.now_ms(), kReapBatch);
  expiry_.start(n == kReapBatch ? kReapBusyMs : kReapIdleMs);
}

void Server::reply(ev::Connection& c, const proto::Message& req, proto::Bytes payload) {
  proto::Message r;
  r.is_response = true;
  r.uid = req.uid;
  r.op_class = req.op_class;
  r.op = req.op;
  r.payload = payload;
  c.send(r);
}

// With many sessions, a lookup is cache misses (index slot, then block):
// announcing a batch lets them overlap. Ids only; nothing is checked here.
void Server::prefetch(ev::Connection&, std::span<const proto::Message> ms) {
  proto::Bytes ids[kLookahead];
  size_t n = 0;
  for (const proto::Message& m : ms) {
    if (n == kLookahead) break;
    if (m.is_response) continue;
    if (m.op == proto::Op::add) {
      proto::AddRequest req;
      if (proto::parse_add(m.payload, req).status == proto::AddStatus::ok) ids[n++] = req.id;
    } else {
      ids[n++] = m.payload;
    }
  }
  store_.prefetch(std::span<const proto::Bytes>(ids, n));
}

void Server::on_message(ev::Connection& c, const proto::Message& m) {
  if (m.is_response) {
    // A client never sends answers: the stream is not the protocol.
    c.close(ev::CloseReason::corrupt);
    return;
  }
  int64_t now = loop_.now_ms();
  ++stats_.requests[size_t(m.op) & 3];
  const uint8_t kYes = uint8_t(proto::Status::ok), kNo = uint8_t(proto::Status::notok);
  switch (m.op) {
    case proto::Op::add: {
      proto::AddRequest req;
      proto::AddParse p = proto::parse_add(m.payload, req);
      if (p.action == proto::AddCheck::close) {
        c.close(ev::CloseReason::corrupt);
        return;
      }
      proto::AddStatus st = p.status;
      if (st == proto::AddStatus::ok) st = store_.add(req.id, req.data, req.timeout_ms, now);
      ++stats_.add_results[add_result(st)];
      uint8_t b = uint8_t(st);
      reply(c, m, proto::Bytes(&b, 1));
      break;
    }
    case proto::Op::get: {
      proto::Bytes d = store_.get(m.payload, now);
      if (!d.empty()) {
        ++stats_.hits[size_t(m.op)];
        reply(c, m, d);
      } else {
        ++stats_.misses[size_t(m.op)];
        reply(c, m, proto::Bytes(&kNo, 1));
      }
      break;
    }
    case proto::Op::remove: {
      bool hit = store_.remove(m.payload, now);
      ++(hit ? stats_.hits : stats_.misses)[size_t(m.op)];
      reply(c, m, proto::Bytes(hit ? &kYes : &kNo, 1));
      break;
    }
    case proto::Op::have: {
      bool hit = store_.have(m.payload, now);
      ++(hit ? stats_.hits : stats_.misses)[size_t(m.op)];
      reply(c, m, proto::Bytes(hit ? &kYes : &kNo, 1));
      break;
    }
  }
  if (cfg_.progress && ++since_progress_ >= cfg_.progress) {
    since_progress_ = 0;
    std::fprintf(stderr, "dc_server: %s\n", stats_line().c_str());
  }
}

std::vector<ev::Stat> Server::stats_table() {
  using ev::StatKind;
  const Stats& s = stats_;
  const StoreCounters& sc = store_.counters();
  auto i = [](auto v) { return int64_t(v); };
  std::vector<ev::Stat> t = {
      {"uptime_ms", "uptime_seconds", "", StatKind::gauge, "Seconds since dc_server started.",
       loop_.now_ms() - started_ms_, 1e-3},
      {"conns", "connections", "", StatKind::gauge, "Client connections open.", i(conns_.size())},
      {"accepted", "connections_accepted_total", "", StatKind::counter,
       "Client connections accepted (including those then refused at -maxconns).", i(s.accepted)},
      {"protocol_errors", "protocol_errors_total", "", StatKind::counter,
       "Client connections closed because their bytes broke the protocol.", i(s.protocol_errors)},
      {"tls_refused", "tls_refused_total", "", StatKind::counter,
       "Client connections refused in the TLS handshake (no certificate, another CA's, an "
       "expired one, or plaintext).",
       i(tls_refusals_.count())},
  };
  const size_t add = size_t(proto::Op::add), get = size_t(proto::Op::get),
               remove = size_t(proto::Op::remove), have = size_t(proto::Op::have);
  t.push_back({"add", "requests_total", R"(op="add")", StatKind::counter,
               "Requests received, by operation.", i(s.requests[add])});
  t.push_back(
      {"get", "requests_total", R"(op="get")", StatKind::counter, nullptr, i(s.requests[get])});
  t.push_back({"remove", "requests_total", R"(op="remove")", StatKind::counter, nullptr,
               i(s.requests[remove])});
  t.push_back(
      {"have", "requests_total", R"(op="have")", StatKind::counter, nullptr, i(s.requests[have])});
  t.push_back(
      {"hits", "responses_total", R"(op="get",result="hit")", StatKind::counter,
       "Answers, by operation and result: GET, REMOVE and HAVE hit or miss; ADD ok (stored) "
       "or the status it was refused with (notok: larger than -memory alone).",
       i(s.hits[get])});
  t.push_back({"misses", "responses_total", R"(op="get",result="miss")", StatKind::counter, nullptr,
               i(s.misses[get])});
  t.push_back({"remove_hits", "responses_total", R"(op="remove",result="hit")", StatKind::counter,
               nullptr, i(s.hits[remove])});
  t.push_back({"remove_misses", "responses_total", R"(op="remove",result="miss")",
               StatKind::counter, nullptr, i(s.misses[remove])});
  t.push_back({"have_hits", "responses_total", R"(op="have",result="hit")", StatKind::counter,
               nullptr, i(s.hits[have])});
  t.push_back({"have_misses", "responses_total", R"(op="have",result="miss")", StatKind::counter,
               nullptr, i(s.misses[have])});
  static const char* const kAddRows[Stats::kAddResults][2] = {
      {"add_ok", R"(op="add",result="ok")"},
      {"add_matching_session", R"(op="add",result="matching_session")"},
      {"add_timeout_range", R"(op="add",result="timeout_range")"},
      {"add_corrupt", R"(op="add",result="corrupt")"},
      {"add_id_range", R"(op="add",result="id_range")"},
      {"add_data_range", R"(op="add",result="data_range")"},
      {"add_notok", R"(op="add",result="notok")"},
  };
  for (size_t k = 0; k < Stats::kAddResults; ++k)
    t.push_back({kAddRows[k][0], "responses_total", kAddRows[k][1], StatKind::counter, nullptr,
                 i(s.add_results[k])});
  t.push_back({"evictions", "evictions_total", "", StatKind::counter,
               "Live sessions dropped to make room (-sessions or -memory full).", i(sc.evictions)});
  t.push_back({"expirations", "expirations_total", "", StatKind::counter,
               "Expired sessions reclaimed.", i(sc.expirations)});
  t.push_back(
      {"sessions", "sessions", "", StatKind::gauge, "Sessions stored.", i(store_.sessions())});
  t.push_back({"bytes", "session_bytes", "", StatKind::gauge,
               "Bytes of sessions stored, as charged against -memory (id + data + 80 each).",
               i(store_.bytes())});
  t.push_back({"max_sessions", "sessions_max", "", StatKind::gauge, "The -sessions limit.",
               i(store_.limits().max_sessions)});
  t.push_back({"max_bytes", "session_bytes_max", "", StatKind::gauge, "The -memory limit.",
               i(store_.limits().max_bytes)});
  ev::append_limit_stats(t, loop_);
  return t;
}

std::string Server::stats_line() {
  return ev::stats_line(stats_table());
}

}  // namespace dc::server
