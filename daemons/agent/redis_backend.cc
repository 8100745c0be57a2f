// The Redis backend: see redis_backend.h.
#include "agent/redis_backend.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <string_view>

#include "agent/agent.h"

namespace dc::agent {

namespace {

// Formatted commands queued but not yet written, beyond which requests are
// answered DISCONNECTED (backlog) instead of queued.
constexpr size_t kOutMax = 4 * 1024 * 1024;

std::string trim(std::string s) {
  while (!s.empty() && std::strchr(" \t\r\n", s.back())) s.pop_back();
  size_t b = 0;
  while (b < s.size() && std::strchr(" \t", s[b])) ++b;
  return s.substr(b);
}

}  // namespace

bool load_redis_auth(const std::string& path, RedisConfig& out, std::string& err) {
  auto fail = [&](const std::string& why) {
    err = "-redis-auth " + path + ": " + why;
    return false;
  };
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) return fail(std::strerror(errno));
  struct stat st;
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > 4096) {
    ::close(fd);
    return fail("not a regular file of at most 4 KiB");
  }
  if ((st.st_mode & 077) != 0) {
    ::close(fd);
    return fail("group or others may access it; make it readable by its owner only: chmod 600 " +
                path);
  }
  std::string text(size_t(st.st_size), '\0');
  ssize_t n = ::read(fd, text.data(), text.size());
  ::close(fd);
  if (n < 0) return fail(std::strerror(errno));
  text.resize(size_t(n));
  std::string line = trim(text.substr(0, text.find('\n')));
  if (line.empty()) return fail("empty: write \"password\" or \"user password\" on its first line");
  size_t sp = line.find_first_of(" \t");
  if (sp == std::string::npos) {
    out.user.clear();
    out.password = line;
  } else {
    out.user = line.substr(0, sp);
    out.password = trim(line.substr(sp + 1));
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

RedisBackend::RedisBackend(ev::Loop& loop, BackendHost& host, const AgentConfig& cfg,
                           RedisConfig rc)
    : loop_(loop),
      host_(host),
      cfg_(cfg),
      rc_(std::move(rc)),
      connector_(loop),
      retry_(loop, [this] { connect_now(); }),
      deadline_(loop, [this] { on_deadline(); }) {
  ev_init(&io_, io_cb);
  io_.data = this;
  connect_now();
}

RedisBackend::~RedisBackend() {
  if (watching_) ev_io_stop(loop_.raw(), &io_);
  connector_.cancel();
  if (reader_) redisReaderFree(reader_);
}

void RedisBackend::connect_now() {
  retry_.stop();
  attempted_ = true;
  last_attempt_ms_ = loop_.now_ms();
  int deadline = int(std::min<int64_t>(cfg_.stall_ms(), 60000));
  connector_.start(rc_.server, deadline, [this](UniqueFd fd, const std::string& err) {
    on_connected(std::move(fd), err);
  });
}

void RedisBackend::on_connected(UniqueFd fd, const std::string& err) {
  if (!fd) {
    if (!reported_down_) {
      std::fprintf(stderr,
                   "dc_client: Redis %s: %s: answering DISCONNECTED, retrying every %" PRId64
                   " ms\n",
                   rc_.server.to_string().c_str(), err.c_str(), cfg_.retry_ms);
      reported_down_ = true;
    }
    retry_.start(cfg_.retry_ms);
    return;
  }
  fd_ = std::move(fd);
  if (reader_) redisReaderFree(reader_);
  reader_ = redisReaderCreate();
  out_.clear();
  out_off_ = 0;
  ready_ = false;
  ev_io_set(&io_, fd_.get(), EV_READ);
  // The connection's start, ahead of any request: AUTH, SELECT.
  Ticket none{0, 0, proto::Op::have};
  char* cmd = nullptr;
  int len = 0;
  if (!rc_.password.empty()) {
    if (rc_.user.empty()) {
      const char* argv[] = {"AUTH", rc_.password.c_str()};
      len = redisFormatCommandArgv(&cmd, 2, argv, nullptr);
    } else {
      const char* argv[] = {"AUTH", rc_.user.c_str(), rc_.password.c_str()};
      len = redisFormatCommandArgv(&cmd, 3, argv, nullptr);
    }
    if (len > 0) queue(cmd, len, none, true);
    redisFreeCommand(cmd);
  }
  if (rc_.db != 0) {
    std::string db = std::to_string(rc_.db);
    const char* argv[] = {"SELECT", db.c_str()};
    len = redisFormatCommandArgv(&cmd, 2, argv, nullptr);
    if (len > 0) queue(cmd, len, none, true);
    redisFreeCommand(cmd);
  }
  ++connects_;
  ++host_.counters().connects;
  if (pending_.empty()) {
    ready_ = true;  // nothing to wait for
    if (reported_down_)
      std::fprintf(stderr, "dc_client: connected to Redis %s\n", rc_.server.to_string().c_str());
    reported_down_ = false;
  }
  watch();
}

void RedisBackend::queue(const char* cmd, int len, const Ticket& t, bool internal, int fixed) {
  out_.append(cmd, size_t(len));
  pending_.push_back({t, internal, false, loop_.now_ms(), fixed});
  if (!deadline_.active()) arm_deadline();
}

std::optional<Disconnected> RedisBackend::submit(const Ticket& t, const proto::Message& m,
                                                 proto::Bytes id) {
  if (!up()) return Disconnected::no_upstream;
  if (pending_.size() >= cfg_.max_pending) return Disconnected::maxpending;
  if (out_.size() - out_off_ >= kOutMax) return Disconnected::backlog;
  std::string key = rc_.prefix;
  char* cmd = nullptr;
  int len = -1;
  int fixed = -1;
  switch (m.op) {
    case proto::Op::add: {
      proto::AddRequest req;
      // The agent checked that it parses (an ADD too short closes the client).
      proto::AddParse ap = proto::parse_add(m.payload, req);
      if (ap.status != proto::AddStatus::ok) {
        const char* argv[] = {"PING"};
        len = redisFormatCommandArgv(&cmd, 1, argv, nullptr);
        fixed = int(ap.status);
        break;
      }
      key.append(reinterpret_cast<const char*>(req.id.data()), req.id.size());
      std::string ttl = std::to_string(req.timeout_ms);
      const char* argv[] = {"SET", key.data(),  reinterpret_cast<const char*>(req.data.data()),
                            "PX",  ttl.c_str(), "NX"};
      size_t lens[] = {3, key.size(), req.data.size(), 2, ttl.size(), 2};
      len = redisFormatCommandArgv(&cmd, 6, argv, lens);
      break;
    }
    case proto::Op::get:
    case proto::Op::remove:
    case proto::Op::have: {
      key.append(reinterpret_cast<const char*>(id.data()), id.size());
      const char* verb = m.op == proto::Op::get      ? "GET"
                         : m.op == proto::Op::remove ? "DEL"
                                                     : "EXISTS";
      const char* argv[] = {verb, key.data()};
      size_t lens[] = {std::strlen(verb), key.size()};
      len = redisFormatCommandArgv(&cmd, 2, argv, lens);
      break;
    }
  }
  if (len <= 0) return Disconnected::refused;
  queue(cmd, len, t, false, fixed);
  redisFreeCommand(cmd);
  ++host_.counters().forwarded;
  watch();
  return std::nullopt;
}

void RedisBackend::io_cb(struct ev_loop*, ev_io* w, int revents) {
  static_cast<RedisBackend*>(w->data)->on_io(revents);
}

void RedisBackend::watch() {
  if (!fd_) return;
  int want = EV_READ | (out_off_ < out_.size() ? EV_WRITE : 0);
  if (watching_ && (io_.events & (EV_READ | EV_WRITE)) == want) return;
  if (watching_) ev_io_stop(loop_.raw(), &io_);
  ev_io_set(&io_, fd_.get(), want);
  ev_io_start(loop_.raw(), &io_);
  watching_ = true;
}

void RedisBackend::on_io(int revents) {
  if (revents & EV_WRITE) write_some();
  if (fd_ && (revents & EV_READ)) read_some();
  if (fd_) watch();
}

void RedisBackend::write_some() {
  while (fd_ && out_off_ < out_.size()) {
    ssize_t n = ::send(fd_.get(), out_.data() + out_off_, out_.size() - out_off_,
                       MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      out_off_ += size_t(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    return lost(std::string("send: ") + std::strerror(errno));
  }
  out_.clear();
  out_off_ = 0;
}

void RedisBackend::read_some() {
  char buf[65536];
  for (;;) {
    ssize_t n = ::recv(fd_.get(), buf, sizeof buf, MSG_DONTWAIT);
    if (n == 0) return lost("Redis closed the connection");
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;
      return lost(std::string("recv: ") + std::strerror(errno));
    }
    if (redisReaderFeed(reader_, buf, size_t(n)) != REDIS_OK)
      return lost(std::string("corrupt reply: ") + reader_->errstr);
    for (;;) {
      void* reply = nullptr;
      if (redisReaderGetReply(reader_, &reply) != REDIS_OK)
        return lost(std::string("corrupt reply: ") + reader_->errstr);
      if (reply == nullptr) break;
      redisReply* r = static_cast<redisReply*>(reply);
      on_reply(r);
      freeReplyObject(r);
      if (!fd_) return;  // the reply cost the connection
    }
    if (size_t(n) < sizeof buf) return;
  }
}

void RedisBackend::refused(const char* what, const std::string& reply) {
  ++refusals_;
  int64_t now = loop_.now_ms();
  if (now - last_refusal_log_ms_ < 60000) return;
  last_refusal_log_ms_ = now;
  std::fprintf(stderr,
               "dc_client: Redis %s refused %s: %s (answered DISCONNECTED; check the user's "
               "permissions, -redis-auth, and that Redis is 6.2 or newer)\n",
               rc_.server.to_string().c_str(), what, reply.c_str());
}

void RedisBackend::on_reply(redisReply* r) {
  if (pending_.empty()) return lost("a reply to nothing asked");
  Pending p = pending_.front();
  pending_.pop_front();
  if (p.abandoned) --abandoned_;
  arm_deadline();
  std::string error = r->type == REDIS_REPLY_ERROR ? std::string(r->str, r->len) : std::string();
  if (p.internal) {
    if (!error.empty()) {
      // AUTH or SELECT refused: nothing will work on this connection. Said
      // once until the connection works again, not at every attempt.
      if (!told_start_)
        std::fprintf(stderr,
                     "dc_client: Redis %s refused the connection's start: %s; check "
                     "-redis-auth and -redis-db\n",
                     rc_.server.to_string().c_str(), error.c_str());
      told_start_ = true;
      reported_down_ = true;
      return lost("AUTH or SELECT refused");
    }
    bool more =
        std::any_of(pending_.begin(), pending_.end(), [](const Pending& x) { return x.internal; });
    if (!more) {
      ready_ = true;
      told_start_ = false;
      if (reported_down_)
        std::fprintf(stderr, "dc_client: connected to Redis %s\n", rc_.server.to_string().c_str());
      reported_down_ = false;
    }
    return;
  }
  if (p.abandoned) {
    ++host_.counters().late;
    return;
  }
  if (p.fixed >= 0) {
    uint8_t st = uint8_t(p.fixed);
    ++host_.counters().answered;
    host_.settle(p.ticket, proto::Bytes(&st, 1));
    return;
  }
  proto::Bytes answer;
  uint8_t status = 0;
  if (!error.empty() || !map_reply(p.ticket.op, r, answer, status)) {
    refused(proto::to_string(p.ticket.op),
            error.empty() ? "an unexpected reply (type " + std::to_string(r->type) + ")" : error);
    host_.fail(p.ticket, Disconnected::refused);
    return;
  }
  ++host_.counters().answered;
  host_.settle(p.ticket, answer.empty() ? proto::Bytes(&status, 1) : answer);
}

void RedisBackend::lost(const std::string& why) {
  if (watching_) ev_io_stop(loop_.raw(), &io_);
  watching_ = false;
  fd_.reset();
  ready_ = false;
  ++host_.counters().losses;
  if (!reported_down_) {
    std::fprintf(
        stderr,
        "dc_client: lost Redis %s (%s): answering DISCONNECTED, reconnecting every %" PRId64
        " ms\n",
        rc_.server.to_string().c_str(), why.c_str(), cfg_.retry_ms);
    reported_down_ = true;
  }
  std::deque<Pending> q;
  q.swap(pending_);
  abandoned_ = 0;
  deadline_.stop();
  for (const Pending& p : q)
    if (!p.internal && !p.abandoned) host_.fail(p.ticket, Disconnected::lost);
  int64_t at = attempted_ ? last_attempt_ms_ + cfg_.retry_ms : loop_.now_ms();
  retry_.start(std::max<int64_t>(at - loop_.now_ms(), 0));
}

void RedisBackend::arm_deadline() {
  // The oldest entry not yet answered at its deadline, else the oldest
  // (for the stall bound).
  for (const Pending& p : pending_) {
    if (p.abandoned) continue;
    deadline_.start(std::max<int64_t>(p.sent_ms + cfg_.timeout_ms - loop_.now_ms(), 1));
    return;
  }
  if (!pending_.empty())
    deadline_.start(
        std::max<int64_t>(pending_.front().sent_ms + cfg_.stall_ms() - loop_.now_ms(), 1));
  else
    deadline_.stop();
}

void RedisBackend::on_deadline() {
  int64_t now = loop_.now_ms();
  if (!pending_.empty() && now - pending_.front().sent_ms >= cfg_.stall_ms()) {
    ++host_.counters().deadlines;
    return lost("no reply within " + std::to_string(cfg_.stall_ms()) + " ms");
  }
  for (Pending& p : pending_) {
    if (p.abandoned) continue;
    if (now - p.sent_ms < cfg_.timeout_ms) break;
    if (p.internal) continue;  // the connection's start has the stall bound
    p.abandoned = true;
    ++abandoned_;
    host_.fail(p.ticket, Disconnected::deadline);
  }
  arm_deadline();
}

void RedisBackend::append_stats(std::vector<ev::Stat>& t) {
  using ev::StatKind;
  t.push_back({"redis_up", "backend_node_up", R"(node="redis")", StatKind::gauge,
               "Whether the Redis backend is connected and ready (AUTH and SELECT done).",
               int64_t(up() ? 1 : 0)});
  t.push_back({"redis_refusals", "redis_refusals_total", "", StatKind::counter,
               "Error replies from Redis (answered DISCONNECTED).", int64_t(refusals_)});
  t.push_back({"redis_pending", "backend_node_pending", R"(node="redis")", StatKind::gauge,
               "Requests sent to Redis and not answered yet.", int64_t(pending_.size())});
}

}  // namespace dc::agent
