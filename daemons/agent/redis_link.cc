// One connection to one Redis node: see redis_link.h.
#include "agent/redis_link.h"

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <limits>
#include <new>
#include <string_view>

#include "agent/agent.h"

namespace dc::agent {

namespace {

// Formatted commands queued but not yet written, beyond which requests are
// answered DISCONNECTED (backlog) instead of queued.
constexpr size_t kOutMax = 4 * 1024 * 1024;
// out_'s memory kept once it is empty again; what is above is given back.
constexpr size_t kOutKeep = 1024 * 1024;
constexpr int64_t kNever = std::numeric_limits<int64_t>::max();

bool starts_with(std::string_view s, std::string_view p) {
  return s.substr(0, p.size()) == p;
}

// hiredis's own reply object functions, wrapped to count what one reply
// makes (the reader's privdata is its ReplyReader's counter) and to bound an
// aggregate's announced size.
redisReplyObjectFunctions g_hiredis{};

bool count_one(const redisReadTask* t) {
  auto* made = static_cast<size_t*>(t->privdata);
  return made == nullptr || ++*made <= size_t(ReplyReader::kMaxReplyElements);
}

void* bounded_string(const redisReadTask* t, char* str, size_t len) {
  return count_one(t) ? g_hiredis.createString(t, str, len) : nullptr;
}
void* bounded_array(const redisReadTask* t, int n) {
  // nullptr: hiredis stops with REDIS_ERR_OOM, which next() explains.
  return n <= ReplyReader::kMaxReplyElements && count_one(t) ? g_hiredis.createArray(t, n)
                                                            : nullptr;
}
void* bounded_integer(const redisReadTask* t, long long v) {
  return count_one(t) ? g_hiredis.createInteger(t, v) : nullptr;
}
void* bounded_nil(const redisReadTask* t) {
  return count_one(t) ? g_hiredis.createNil(t) : nullptr;
}

redisReplyObjectFunctions* bounded_functions() {
  static redisReplyObjectFunctions* fns = [] {
    static redisReplyObjectFunctions f{};
    redisReader* plain = redisReaderCreate();
    if (plain == nullptr) abort();  // out of memory at start-up
    g_hiredis = *plain->fn;
    redisReaderFree(plain);
    f = g_hiredis;
    f.createString = bounded_string;
    f.createArray = bounded_array;
    f.createInteger = bounded_integer;
    f.createNil = bounded_nil;
    return &f;
  }();
  return fns;
}

}  // namespace

std::string for_log(std::string_view text) {
  constexpr size_t kMax = 200;
  std::string out;
  for (size_t i = 0; i < text.size() && out.size() < kMax; ++i) {
    auto c = static_cast<unsigned char>(text[i]);
    if (c >= 0x20 && c < 0x7f) {
      out += char(c);
    } else {
      char hex[5];
      std::snprintf(hex, sizeof hex, "\\x%02x", c);
      out += hex;
    }
  }
  if (out.size() >= kMax) out += "...";
  return out;
}

ReplyReader::ReplyReader() : r_(redisReaderCreateWithFunctions(bounded_functions())) {
  if (r_ == nullptr) throw std::bad_alloc();
  r_->privdata = &made_;
}

ReplyReader::~ReplyReader() {
  redisReaderFree(r_);
}

bool ReplyReader::feed(const uint8_t* data, size_t n, std::string& err) {
  if (redisReaderFeed(r_, reinterpret_cast<const char*>(data), n) != REDIS_OK) {
    err = std::string("corrupt reply: ") + r_->errstr;
    return false;
  }
  since_reply_ += n;
  return true;
}

bool ReplyReader::next(redisReply*& out, std::string& err) {
  void* reply = nullptr;
  if (redisReaderGetReply(r_, &reply) != REDIS_OK) {
    err = r_->err == REDIS_ERR_OOM
              ? "a reply of more than " + std::to_string(kMaxReplyElements) +
                    " elements (or out of memory)"
              : std::string("corrupt reply: ") + r_->errstr;
    return false;
  }
  out = static_cast<redisReply*>(reply);
  if (out != nullptr) {
    since_reply_ = r_->len - r_->pos;  // what is left belongs to the next ones
    made_ = 0;
  } else if (since_reply_ > kMaxReplyBytes) {
    err = "a reply larger than " + std::to_string(kMaxReplyBytes >> 20) + " MiB";
    return false;
  }
  return true;
}

bool map_reply(proto::Op op, const redisReply* r, proto::Bytes& data, uint8_t& status) {
  const uint8_t kYes = uint8_t(proto::Status::ok), kNo = uint8_t(proto::Status::notok);
  data = {};
  switch (op) {
    case proto::Op::add:
      // SET ... NX: OK stored it; nil means another session has the id.
      if (r->type == REDIS_REPLY_NIL) {
        status = uint8_t(proto::AddStatus::matching_session);
        return true;
      }
      if (r->type == REDIS_REPLY_STATUS && std::string_view(r->str, r->len) == "OK") {
        status = uint8_t(proto::AddStatus::ok);
        return true;
      }
      return false;
    case proto::Op::get:
      if (r->type == REDIS_REPLY_NIL) {
        status = kNo;
        return true;
      }
      if (r->type != REDIS_REPLY_STRING) return false;
      // What no dc_server could hold (shorter than a session, which a
      // client would read as a status byte, or longer than a message) is a
      // miss: someone else's key under the prefix.
      if (r->len < proto::kMinRetrievableData || r->len > proto::kMaxSessionData) {
        status = kNo;
        return true;
      }
      data = proto::Bytes(reinterpret_cast<const uint8_t*>(r->str), r->len);
      return true;
    case proto::Op::remove:
    case proto::Op::have:
      if (r->type != REDIS_REPLY_INTEGER) return false;
      status = r->integer > 0 ? kYes : kNo;
      return true;
  }
  return false;
}

RedisCommand::RedisCommand(int argc, const char** argv, const size_t* lens) {
  len_ = redisFormatCommandArgv(&text_, argc, argv, lens);
  if (len_ <= 0) reset();
}

void RedisCommand::reset() {
  if (text_) redisFreeCommand(text_);
  text_ = nullptr;
  len_ = -1;
}

RedisCommand request_command(const proto::Message& m, std::string_view key, int& fixed) {
  fixed = -1;
  switch (m.op) {
    case proto::Op::add: {
      proto::AddRequest req;
      // The agent checked that it parses (an ADD too short closes the client).
      proto::AddParse ap = proto::parse_add(m.payload, req);
      if (ap.status != proto::AddStatus::ok) {
        fixed = int(ap.status);
        const char* argv[] = {"PING"};
        return RedisCommand(1, argv);
      }
      // A lifetime of 0 ms, which dc_server takes as expired on arrival
      // (OK unless the id is there), is 1 ms here: Redis refuses PX 0.
      std::string ttl = std::to_string(std::max<uint64_t>(req.timeout_ms, 1));
      const char* argv[] = {"SET", key.data(),  reinterpret_cast<const char*>(req.data.data()),
                            "PX",  ttl.c_str(), "NX"};
      size_t lens[] = {3, key.size(), req.data.size(), 2, ttl.size(), 2};
      return RedisCommand(6, argv, lens);
    }
    case proto::Op::get:
    case proto::Op::remove:
    case proto::Op::have: {
      const char* verb = m.op == proto::Op::get      ? "GET"
                         : m.op == proto::Op::remove ? "DEL"
                                                     : "EXISTS";
      const char* argv[] = {verb, key.data()};
      size_t lens[] = {std::strlen(verb), key.size()};
      return RedisCommand(2, argv, lens);
    }
  }
  return RedisCommand();
}

RedisLink::RedisLink(ev::Loop& loop, BackendHost& host, const AgentConfig& cfg, LinkSettings s,
                     Owner* owner)
    : loop_(loop),
      host_(host),
      cfg_(cfg),
      s_(std::move(s)),
      owner_(owner),
      connector_(loop),
      retry_(loop, [this] { connect_now(); }),
      deadline_(loop, [this] { on_deadline(); }),
      handshake_deadline_(loop, [this] {
        lost("the TLS handshake did not finish within " + std::to_string(cfg_.stall_ms()) + " ms");
      }) {
  ev_init(&io_, io_cb);
  io_.data = this;
  connect_now();
}

RedisLink::~RedisLink() {
  close_fd();
  connector_.cancel();
}

void RedisLink::close_fd() {
  if (watching_) ev_io_stop(loop_.raw(), &io_);
  watching_ = false;
  if (t_) {
    if (handshaken_) t_->shutdown();
    t_->close();
  }
  t_.reset();
  fd_.reset();
  handshaken_ = ready_ = false;
  read_wants_write_ = write_wants_read_ = false;
  handshake_deadline_.stop();
}

void RedisLink::connect_now() {
  retry_.stop();
  if (retired_) return;
  attempted_ = true;
  last_attempt_ms_ = loop_.now_ms();
  int deadline = int(std::min<int64_t>(cfg_.stall_ms(), 60000));
  connector_.start(s_.addr, deadline, [this](UniqueFd fd, const std::string& err) {
    on_connected(std::move(fd), err);
  });
}

void RedisLink::on_connected(UniqueFd fd, const std::string& err) {
  if (!fd) {
    if (!reported_down_) {
      std::fprintf(stderr,
                   "dc_client: %s: %s: answering DISCONNECTED, retrying every %" PRId64 " ms\n",
                   s_.what.c_str(), err.c_str(), cfg_.retry_ms);
      reported_down_ = true;
    }
    retry_.start(cfg_.retry_ms);
    return;
  }
  std::string why;
  std::unique_ptr<ev::Transport> t =
      s_.tls ? s_.tls->wrap(fd.get(), s_.tls_name, why) : ev::plain_transport(fd.get());
  if (!t) {
    std::fprintf(stderr, "dc_client: %s: %s\n", s_.what.c_str(), why.c_str());
    retry_.start(cfg_.retry_ms);
    return;
  }
  fd_ = std::move(fd);
  t_ = std::move(t);
  reader_ = std::make_unique<ReplyReader>();
  out_.clear();
  out_off_ = 0;
  ready_ = false;
  handshaken_ = !s_.tls;
  queue_start();
  if (!handshaken_) {
    // The handshake gets what is left of the connect's time.
    int64_t left = last_attempt_ms_ + cfg_.stall_ms() - loop_.now_ms();
    handshake_deadline_.start(std::max<int64_t>(left, 1));
    drive_handshake();
    if (fd_) watch();
    return;
  }
  watch();
  if (pending_.empty()) on_started();  // nothing to wait for
}

void RedisLink::queue_start() {
  // The connection's start, ahead of any request: AUTH, SELECT.
  if (!s_.password.empty()) {
    if (s_.user.empty()) {
      const char* argv[] = {"AUTH", s_.password.c_str()};
      queue(Kind::start, RedisCommand(2, argv).text(), {});
    } else {
      const char* argv[] = {"AUTH", s_.user.c_str(), s_.password.c_str()};
      queue(Kind::start, RedisCommand(3, argv).text(), {});
    }
  }
  if (s_.db != 0) {
    std::string db = std::to_string(s_.db);
    const char* argv[] = {"SELECT", db.c_str()};
    queue(Kind::start, RedisCommand(2, argv).text(), {});
  }
}

void RedisLink::on_started() {
  ready_ = true;
  told_start_ = false;
  ++host_.counters().connects;
  if (reported_down_)
    std::fprintf(stderr, "dc_client: connected to %s%s\n", s_.what.c_str(), s_.tls ? " (TLS)" : "");
  reported_down_ = false;
  if (owner_) owner_->link_up(*this);
}

void RedisLink::queue(Kind kind, std::string_view cmd, Request req) {
  out_.append(cmd);
  bool ooo = false;
  if (kind == Kind::request) {
    if (req.since_ms < last_since_ms_)
      ooo = true;
    else
      last_since_ms_ = req.since_ms;
    if (ooo) ++out_of_order_;
    if (!s_.keep_commands) req.cmd.reset();
  }
  pending_.push_back({kind, false, loop_.now_ms(), ooo, std::move(req)});
  // Cheap: the scan stops at the first request still waiting.
  if (kind == Kind::request || !deadline_.active()) arm_deadline();
}

std::optional<Disconnected> RedisLink::submit(Request r, bool asking) {
  if (!up()) return Disconnected::no_upstream;
  if (pending_.size() >= cfg_.max_pending) return Disconnected::maxpending;
  if (out_.size() - out_off_ >= kOutMax) return Disconnected::backlog;
  if (!r.cmd.ok()) return Disconnected::refused;
  if (asking) {
    static const RedisCommand kAsking = [] {
      const char* argv[] = {"ASKING"};
      return RedisCommand(1, argv);
    }();
    queue(Kind::asking, kAsking.text(), {});
  }
  if (r.redirects == 0) ++host_.counters().forwarded;
  ++forwarded_;
  std::string_view text = r.cmd.text();
  queue(Kind::request, text, std::move(r));
  watch();
  return std::nullopt;
}

bool RedisLink::query(RedisCommand cmd) {
  if (!up() || !cmd.ok()) return false;
  queue(Kind::query, cmd.text(), {});
  watch();
  return true;
}

void RedisLink::retire() {
  if (retired_) return;
  retired_ = true;
  retry_.stop();
  connector_.cancel();
  if (fd_) {
    Owner* o = owner_;
    owner_ = nullptr;  // it is retiring us: no news back
    lost("no longer a master of the cluster's map");
    owner_ = o;
  }
  retry_.stop();
  owner_ = nullptr;
}

void RedisLink::io_cb(struct ev_loop*, ev_io* w, int revents) {
  static_cast<RedisLink*>(w->data)->on_io(revents);
}

void RedisLink::watch() {
  if (!fd_) return;
  bool write = handshaken_ ? (out_off_ < out_.size() || read_wants_write_)
                           : read_wants_write_;  // the handshake's wish (drive_handshake)
  int want = EV_READ | (write ? EV_WRITE : 0);
  if (watching_ && (io_.events & (EV_READ | EV_WRITE)) == want) return;
  if (watching_) ev_io_stop(loop_.raw(), &io_);
  ev_io_set(&io_, fd_.get(), want);
  ev_io_start(loop_.raw(), &io_);
  watching_ = true;
}

void RedisLink::drive_handshake() {
  ev::IoResult r = t_->handshake();
  read_wants_write_ = r == ev::IoResult::want_write;
  switch (r) {
    case ev::IoResult::ok:
      handshaken_ = true;
      handshake_deadline_.stop();
      read_wants_write_ = false;
      if (pending_.empty()) on_started();
      return;
    case ev::IoResult::want_read:
    case ev::IoResult::want_write:
      return;
    case ev::IoResult::closed:
      return lost(
          "Redis closed the connection during the TLS handshake; check -tls-cert, "
          "-tls-key, -tls-ca and -tls-name against Redis's tls-* settings");
    case ev::IoResult::error:
      return lost("TLS: " + t_->error() +
                  "; check -tls-cert, -tls-key, -tls-ca and -tls-name against Redis's tls-* "
                  "settings");
  }
}

void RedisLink::on_io(int revents) {
  if (!handshaken_) {
    drive_handshake();
    if (!fd_) return;
    if (!handshaken_) return watch();
    revents |= EV_WRITE | EV_READ;  // what waited for the handshake, and what came with it
  }
  if ((revents & EV_WRITE) || write_wants_read_) write_some();
  if (fd_ && ((revents & EV_READ) || read_wants_write_)) read_some();
  if (fd_) watch();
}

void RedisLink::write_some() {
  write_wants_read_ = false;
  while (fd_ && out_off_ < out_.size()) {
    ev::IoStep s = t_->write(std::span<const uint8_t>(
        reinterpret_cast<const uint8_t*>(out_.data()) + out_off_, out_.size() - out_off_));
    switch (s.result) {
      case ev::IoResult::ok:
        out_off_ += s.n;
        continue;
      case ev::IoResult::want_write:
        return compact_out();
      case ev::IoResult::want_read:
        write_wants_read_ = true;
        return compact_out();
      case ev::IoResult::closed:
        return lost("Redis closed the connection");
      case ev::IoResult::error:
        return lost(std::string("send: ") + t_->error());
    }
  }
  out_.clear();
  out_off_ = 0;
  if (out_.capacity() > kOutKeep) std::string().swap(out_);
}

// Drops what was written from the front of out_ once it is most of it, so
// that a Redis that never quite catches up (out_ never empty) does not make
// it grow by every byte ever sent. The transport accepts the unwritten
// bytes at another address (TLS: SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER).
void RedisLink::compact_out() {
  if (out_off_ >= kOutKeep / 16 && out_off_ >= out_.size() / 2) {
    out_.erase(0, out_off_);
    out_off_ = 0;
  }
}

void RedisLink::read_some() {
  read_wants_write_ = false;
  uint8_t buf[65536];
  for (;;) {
    ev::IoStep s = t_->read(buf);
    switch (s.result) {
      case ev::IoResult::ok:
        break;
      case ev::IoResult::want_read:
        return;
      case ev::IoResult::want_write:
        read_wants_write_ = true;
        return;
      case ev::IoResult::closed:
        return lost("Redis closed the connection");
      case ev::IoResult::error:
        return lost(std::string(s_.tls ? "TLS: " : "recv: ") + t_->error());
    }
    std::string err;
    if (!reader_->feed(buf, s.n, err)) return lost(err);
    for (;;) {
      redisReply* r = nullptr;
      if (!reader_->next(r, err)) return lost(err);
      if (r == nullptr) break;
      on_reply(r);
      freeReplyObject(r);
      if (!fd_) return;  // the reply cost the connection
    }
    if (s.n < sizeof buf && !t_->pending()) return;
  }
}

void RedisLink::refused(const char* what, const std::string& reply) {
  ++refusals_;
  int64_t now = loop_.now_ms();
  if (now - last_refusal_log_ms_ < 60000) return;
  last_refusal_log_ms_ = now;
  const char* hint =
      starts_with(reply, "CLUSTERDOWN") || starts_with(reply, "TRYAGAIN") ||
              starts_with(reply, "MOVED") || starts_with(reply, "ASK")
          ? "the cluster is failing over or moving slots; it goes on by itself"
          : "check the user's permissions, -redis-auth, and that Redis is 6.2 or newer";
  std::fprintf(stderr, "dc_client: %s refused %s: %s (answered DISCONNECTED; %s)\n",
               s_.what.c_str(), what, for_log(reply).c_str(), hint);
}

void RedisLink::on_reply(redisReply* r) {
  if (pending_.empty()) return lost("a reply to nothing asked");
  Pending p = std::move(pending_.front());
  pending_.pop_front();
  if (p.abandoned) --abandoned_;
  if (p.ooo) --out_of_order_;
  arm_deadline();
  if (p.abandoned) {
    ++host_.counters().late;
    return;
  }
  std::string error = r->type == REDIS_REPLY_ERROR ? std::string(r->str, r->len) : std::string();
  switch (p.kind) {
    case Kind::start: {
      if (!error.empty()) {
        // AUTH or SELECT refused: nothing will work on this connection. Said
        // once until the connection works again, not at every attempt.
        if (!told_start_)
          std::fprintf(stderr,
                       "dc_client: %s refused the connection's start: %s; check -redis-auth "
                       "and -redis-db\n",
                       s_.what.c_str(), for_log(error).c_str());
        told_start_ = true;
        reported_down_ = true;
        return lost("AUTH or SELECT refused");
      }
      bool more = std::any_of(pending_.begin(), pending_.end(),
                              [](const Pending& x) { return x.kind == Kind::start; });
      if (!more) on_started();
      return;
    }
    case Kind::asking:
      return;  // an error shows in the reply to the request that follows
    case Kind::query:
      if (owner_) owner_->on_query(*this, r);
      return;
    case Kind::request:
      break;
  }
  if (p.req.fixed >= 0) {
    // The PING in place of an ADD dc_server would refuse: whatever came
    // back (an ACL user may not PING), the answer is known.
    uint8_t st = uint8_t(p.req.fixed);
    ++host_.counters().answered;
    ++answered_;
    host_.settle(p.req.ticket, proto::Bytes(&st, 1));
    return;
  }
  if (!error.empty()) {
    if (owner_ && owner_->on_error(*this, p.req, error)) return;
    refused(proto::to_string(p.req.ticket.op), error);
    host_.fail(p.req.ticket, Disconnected::refused);
    return;
  }
  proto::Bytes data;
  uint8_t status = 0;
  if (!map_reply(p.req.ticket.op, r, data, status)) {
    refused(proto::to_string(p.req.ticket.op),
            "an unexpected reply (type " + std::to_string(r->type) + ")");
    host_.fail(p.req.ticket, Disconnected::refused);
    return;
  }
  ++host_.counters().answered;
  ++answered_;
  host_.settle(p.req.ticket, data.empty() ? proto::Bytes(&status, 1) : data);
}

void RedisLink::lost(const std::string& why) {
  close_fd();
  ++host_.counters().losses;
  ++losses_;
  if (!reported_down_ && !retired_) {
    std::fprintf(stderr,
                 "dc_client: lost %s (%s): answering DISCONNECTED, reconnecting every %" PRId64
                 " ms\n",
                 s_.what.c_str(), why.c_str(), cfg_.retry_ms);
    reported_down_ = true;
  }
  std::deque<Pending> q;
  q.swap(pending_);
  abandoned_ = out_of_order_ = 0;
  last_since_ms_ = 0;
  deadline_.stop();
  if (!retired_) {
    int64_t at = attempted_ ? last_attempt_ms_ + cfg_.retry_ms : loop_.now_ms();
    retry_.start(std::max<int64_t>(at - loop_.now_ms(), 0));
  }
  for (const Pending& p : q)
    if (p.kind == Kind::request && !p.abandoned) host_.fail(p.req.ticket, Disconnected::lost);
  if (owner_) owner_->link_down(*this);
}

int64_t RedisLink::due(const Pending& p) const {
  if (p.kind != Kind::request || p.abandoned) return kNever;
  return p.req.since_ms + cfg_.timeout_ms;
}

void RedisLink::arm_deadline() {
  if (pending_.empty()) {
    deadline_.stop();
    return;
  }
  // The earliest deadline of a request not yet answered, and the stall
  // bound of the oldest entry.
  int64_t at = pending_.front().sent_ms + cfg_.stall_ms();
  for (const Pending& p : pending_) {
    int64_t d = due(p);
    at = std::min(at, d);
    if (d != kNever && out_of_order_ == 0) break;  // the rest are due later
  }
  deadline_.start(std::max<int64_t>(at - loop_.now_ms(), 1));
}

void RedisLink::on_deadline() {
  if (pending_.empty()) return;
  int64_t now = loop_.now_ms();
  if (now - pending_.front().sent_ms >= cfg_.stall_ms()) {
    ++host_.counters().deadlines;
    return lost("no reply within " + std::to_string(cfg_.stall_ms()) + " ms");
  }
  for (size_t i = 0; i < pending_.size(); ++i) {
    Pending& p = pending_[i];
    int64_t d = due(p);
    if (d == kNever) continue;
    if (d > now) {
      if (out_of_order_ == 0) break;
      continue;
    }
    p.abandoned = true;
    ++abandoned_;
    host_.fail(p.req.ticket, Disconnected::deadline);
  }
  arm_deadline();
}

}  // namespace dc::agent
