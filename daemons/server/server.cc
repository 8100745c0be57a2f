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

Server::Server(ev::Loop& loop, Store& store, ServerConfig cfg)
    : loop_(loop), store_(store), cfg_(cfg), started_ms_(loop.now_ms()), expiry_(loop, [this] {
        reap_expired();
      }) {
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
      loop_, std::move(fd), a, [this](UniqueFd c) { accept(std::move(c)); }));
}

void Server::accept(UniqueFd fd) {
  ++stats_.accepted;
  // At the connection limit the socket is closed at once (the client sees
  // its connection end: a miss), rather than left in the listen backlog
  // where it would wait out its deadline.
  if (!loop_.admit()) return;
  ev::ConnectionOptions o = cfg_.conn;
  o.limited = true;  // every client is untrusted
  if (o.lookahead == 0) o.lookahead = kLookahead;
  auto c = std::make_unique<ev::Connection>(loop_, std::move(fd), *this, o);
  ev::Connection* key = c.get();
  conns_.emplace(key, std::move(c));
}

void Server::on_close(ev::Connection& c, ev::CloseReason why) {
  if (why == ev::CloseReason::corrupt) ++stats_.protocol_errors;
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
  ++stats_.ops[size_t(m.op) & 3];
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
      switch (st) {
        case proto::AddStatus::ok:
          ++stats_.add_ok;
          break;
        case proto::AddStatus::matching_session:
          ++stats_.add_matching;
          break;
        case proto::AddStatus::timeout_range:
          ++stats_.add_timeout_range;
          break;
        case proto::AddStatus::corrupt:
          ++stats_.add_corrupt;
          break;
        case proto::AddStatus::id_range:
          ++stats_.add_id_range;
          break;
        case proto::AddStatus::data_range:
          ++stats_.add_data_range;
          break;
        default:
          ++stats_.add_notok;
          break;
      }
      uint8_t b = uint8_t(st);
      reply(c, m, proto::Bytes(&b, 1));
      break;
    }
    case proto::Op::get: {
      proto::Bytes d = store_.get(m.payload, now);
      if (!d.empty()) {
        ++stats_.get_hits;
        reply(c, m, d);
      } else {
        ++stats_.get_misses;
        reply(c, m, proto::Bytes(&kNo, 1));
      }
      break;
    }
    case proto::Op::remove: {
      bool hit = store_.remove(m.payload, now);
      ++(hit ? stats_.remove_hits : stats_.remove_misses);
      reply(c, m, proto::Bytes(hit ? &kYes : &kNo, 1));
      break;
    }
    case proto::Op::have: {
      bool hit = store_.have(m.payload, now);
      ++(hit ? stats_.have_hits : stats_.have_misses);
      reply(c, m, proto::Bytes(hit ? &kYes : &kNo, 1));
      break;
    }
  }
  if (cfg_.progress && ++since_progress_ >= cfg_.progress) {
    since_progress_ = 0;
    std::fprintf(stderr, "dc_server: %s\n", stats_line().c_str());
  }
}

std::string Server::stats_line() {
  const Stats& s = stats_;
  const StoreCounters& sc = store_.counters();
  const ev::LimitCounters& lc = loop_.limit_counters();
  char buf[1536];
  std::snprintf(
      buf, sizeof buf,
      "uptime_ms=%" PRId64 " conns=%zu accepted=%" PRIu64 " protocol_errors=%" PRIu64
      " add=%" PRIu64 " get=%" PRIu64 " remove=%" PRIu64 " have=%" PRIu64 " hits=%" PRIu64
      " misses=%" PRIu64 " remove_hits=%" PRIu64 " remove_misses=%" PRIu64 " have_hits=%" PRIu64
      " have_misses=%" PRIu64 " add_ok=%" PRIu64 " add_matching_session=%" PRIu64
      " add_timeout_range=%" PRIu64 " add_corrupt=%" PRIu64 " add_id_range=%" PRIu64
      " add_data_range=%" PRIu64 " add_notok=%" PRIu64 " evictions=%" PRIu64 " expirations=%" PRIu64
      " sessions=%zu bytes=%zu max_sessions=%zu max_bytes=%zu buffered=%zu refused=%" PRIu64
      " displaced=%" PRIu64 " frame_timeouts=%" PRIu64 " memory_closes=%" PRIu64,
      loop_.now_ms() - started_ms_, conns_.size(), s.accepted, s.protocol_errors, s.ops[0],
      s.ops[1], s.ops[2], s.ops[3], s.get_hits, s.get_misses, s.remove_hits, s.remove_misses,
      s.have_hits, s.have_misses, s.add_ok, s.add_matching, s.add_timeout_range, s.add_corrupt,
      s.add_id_range, s.add_data_range, s.add_notok, sc.evictions, sc.expirations,
      store_.sessions(), store_.bytes(), store_.limits().max_sessions, store_.limits().max_bytes,
      loop_.buffered(), lc.refused, lc.displaced, lc.frame_timeouts, lc.memory_closes);
  return buf;
}

}  // namespace dc::server
