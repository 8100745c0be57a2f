// One connection of the agent to one Redis node, on the agent's loop: what
// the standalone backend (redis_backend.h: one link) and the Cluster backend
// (redis_cluster.h: one link per master, and per seed) both need.
//
// A link connects (ev::Connector, an IP address), speaks through an
// ev::Transport (the plain socket, or TLS from the agent's -tls-* flags with
// the handshake driven on the loop), and pipelines RESP commands formatted
// by hiredis; replies are read with hiredis's reader. At each connect AUTH
// (-redis-auth) and SELECT (-redis-db) go first; the link is up once both
// are answered OK. Every request waits in a FIFO of pending entries (the
// start's commands, an ASKING, an owner's query, or a request with its
// agent ticket); Redis answers in order, so the front entry is the one
// answered.
//
// The failure promise (backend.h), per link: a request is answered
// DISCONNECTED (deadline) when its deadline passes, -timeout after the agent
// first forwarded it (a request redirected from another node keeps its
// first time); its entry stays, abandoned, and the late reply is dropped and
// counted. Nothing back for AgentConfig::stall_ms(): the link is taken for
// dead (recycled). A lost link answers every pending request DISCONNECTED
// (lost) and reconnects every -retry; meanwhile submit() refuses at once.
// An error reply answers its request DISCONNECTED (refused) and is logged at
// most one line a minute, unless the owner takes it over (a Cluster's MOVED
// or ASK: Owner::on_error).
#pragma once

#include <ev.h>
#include <hiredis/hiredis.h>

#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "addr.h"
#include "agent/backend.h"
#include "ev/connector.h"
#include "ev/loop.h"
#include "ev/tls.h"
#include "ev/transport.h"
#include "net.h"

namespace dc::agent {

struct AgentConfig;

// What Redis's reply `r` to the command for `op` answers, as dc_server
// would: `data` (a GET's session) or, when `data` is empty, the status byte
// `status`. False when the reply is not one the command returns (an error,
// another type): the request is then answered DISCONNECTED.
bool map_reply(proto::Op op, const redisReply* r, proto::Bytes& data, uint8_t& status);

// Text from Redis as it goes into a log line: at most 200 bytes, bytes
// outside printable ASCII written \xNN, so that a reply cannot flood the
// log or forge lines.
std::string for_log(std::string_view text);

// hiredis's reply reader with bounds on what one reply may cost, so that a
// hostile or broken Redis (or anyone on the path without TLS) cannot make
// the agent allocate without limit: a reply may take at most
// kMaxReplyBytes of input and make at most kMaxReplyElements objects, its
// nested elements included (each costs some 50-100 bytes; and hiredis 0.14
// allocates an aggregate's pointer array from its announced count alone:
// "*2000000000" would be 16 GB). Both are far above any reply the agent
// asks for (a session is a few KB; the slot map of a cluster of 1,000
// shards is about 100,000 objects).
class ReplyReader {
 public:
  static constexpr size_t kMaxReplyBytes = 8u << 20;
  static constexpr int kMaxReplyElements = 1 << 18;
  ReplyReader();
  ~ReplyReader();
  ReplyReader(const ReplyReader&) = delete;
  ReplyReader& operator=(const ReplyReader&) = delete;
  // Takes bytes read from the connection. False with `err` set when they
  // cannot be taken (the connection is then useless).
  bool feed(const uint8_t* data, size_t n, std::string& err);
  // The next complete reply (free it with freeReplyObject), or nullptr when
  // it has not all arrived. False with `err` set when the input is not RESP
  // or breaks a bound.
  bool next(redisReply*& out, std::string& err);

 private:
  redisReader* r_;
  size_t since_reply_ = 0;  // input bytes of the reply in progress
  size_t made_ = 0;         // objects made for it (its elements, nested ones too)
};

// A command as hiredis formats it (RESP), owned.
class RedisCommand {
 public:
  RedisCommand() = default;
  // Formats argv[0..argc) (lens: each argument's bytes; nullptr: C strings).
  RedisCommand(int argc, const char** argv, const size_t* lens = nullptr);
  ~RedisCommand() { reset(); }
  RedisCommand(RedisCommand&& o) noexcept : text_(o.text_), len_(o.len_) {
    o.text_ = nullptr;
    o.len_ = -1;
  }
  RedisCommand& operator=(RedisCommand&& o) noexcept {
    if (this != &o) {
      reset();
      text_ = o.text_;
      len_ = o.len_;
      o.text_ = nullptr;
      o.len_ = -1;
    }
    return *this;
  }
  RedisCommand(const RedisCommand&) = delete;
  RedisCommand& operator=(const RedisCommand&) = delete;
  bool ok() const { return text_ != nullptr && len_ > 0; }
  std::string_view text() const { return ok() ? std::string_view(text_, size_t(len_)) : ""; }
  void reset();

 private:
  char* text_ = nullptr;
  int len_ = -1;
};

// The command for the 1.x request `m` on `key` (the prefix and the session
// id): ADD is SET key value PX ttl NX, GET is GET, REMOVE is DEL, HAVE is
// EXISTS. An ADD dc_server would refuse (a lifetime, id or data out of
// range) is a PING instead, and `fixed` the AddStatus to answer when its
// reply comes (so that answers keep their order); else `fixed` is -1.
RedisCommand request_command(const proto::Message& m, std::string_view key, int& fixed);

// Where a link goes and how it starts.
struct LinkSettings {
  Address addr;          // an IP address and port
  std::string user;      // empty: the default user
  std::string password;  // empty: no AUTH
  unsigned db = 0;       // SELECT when not 0
  // TLS (nullptr: plaintext) and the name Redis's certificate must carry.
  std::shared_ptr<const ev::TlsContext> tls;
  std::string tls_name;
  // For log lines: "Redis 10.0.0.7:6379", "Redis Cluster node 10.0.0.7:7000".
  std::string what;
  // Keep each request's command until its reply (a Cluster resends it on
  // MOVED or ASK).
  bool keep_commands = false;
};

class RedisLink {
 public:
  // A request on its way.
  struct Request {
    Ticket ticket;
    RedisCommand cmd;       // kept until the reply only with keep_commands
    int fixed = -1;         // see request_command
    int64_t since_ms = 0;   // when the agent first forwarded it: its deadline counts from here
    uint8_t redirects = 0;  // MOVED or ASK followed so far
  };
  // What the link tells its owner (the Cluster backend). Called last in
  // what the link does, so the owner may submit to this or another link,
  // or retire() this one.
  class Owner {
   public:
    virtual ~Owner() = default;
    // The link became usable (connected, start answered).
    virtual void link_up(RedisLink&) {}
    // The link was lost (its pending requests were answered DISCONNECTED).
    virtual void link_down(RedisLink&) {}
    // An error reply to request `r`: true when the owner took `r` over
    // (resent or settled it), false to answer it DISCONNECTED (refused).
    virtual bool on_error(RedisLink&, Request& r, std::string_view error) {
      (void)r;
      (void)error;
      return false;
    }
    // The reply to query() (an error reply too).
    virtual void on_query(RedisLink&, const redisReply*) {}
  };

  RedisLink(ev::Loop& loop, BackendHost& host, const AgentConfig& cfg, LinkSettings s,
            Owner* owner = nullptr);
  ~RedisLink();
  RedisLink(const RedisLink&) = delete;
  RedisLink& operator=(const RedisLink&) = delete;

  // Queues request `r` (r.cmd formatted), after an ASKING when `asking`.
  // Nothing when it is on its way (settled later through the host), else
  // why not (the caller answers DISCONNECTED; nothing was queued).
  std::optional<Disconnected> submit(Request r, bool asking = false);
  // Queues the owner's own command; its reply goes to Owner::on_query.
  // False when the link is not up.
  bool query(RedisCommand cmd);
  // Answers what is pending DISCONNECTED (lost), closes the connection and
  // connects no more. The owner destroys the link later (not from inside
  // one of its callbacks).
  void retire();

  bool up() const { return fd_ && ready_; }
  bool backing_off() const { return !fd_ && !connector_.busy() && !retired_; }
  size_t pending() const { return pending_.size(); }
  const LinkSettings& settings() const { return s_; }
  uint64_t forwarded() const { return forwarded_; }
  uint64_t answered() const { return answered_; }
  uint64_t losses() const { return losses_; }
  uint64_t refusals() const { return refusals_; }

 private:
  enum class Kind : uint8_t { start, asking, query, request };
  struct Pending {
    Kind kind;
    bool abandoned;   // answered DISCONNECTED at its deadline; its reply is dropped
    int64_t sent_ms;  // queued here (the stall bound)
    bool ooo;         // a request due before one queued ahead of it (see out_of_order_)
    Request req;      // Kind::request only
  };

  void connect_now();
  void on_connected(UniqueFd fd, const std::string& err);
  void queue(Kind kind, std::string_view cmd, Request req);
  void queue_start();
  void on_io(int revents);
  void drive_handshake();
  void read_some();
  void write_some();
  void compact_out();
  void on_reply(redisReply* r);
  void on_started();
  void answer(Pending& p, const redisReply* r);
  // The connection is gone: everything pending is answered, a reconnect planned.
  void lost(const std::string& why);
  void close_fd();
  void arm_deadline();
  void on_deadline();
  void watch();
  void refused(const char* what, const std::string& reply);
  int64_t due(const Pending& p) const;
  static void io_cb(struct ev_loop*, ev_io* w, int revents);

  ev::Loop& loop_;
  BackendHost& host_;
  const AgentConfig& cfg_;
  const LinkSettings s_;
  Owner* owner_;
  ev::Connector connector_;
  ev::Timer retry_;
  ev::Timer deadline_;
  ev::Timer handshake_deadline_;
  UniqueFd fd_;
  std::unique_ptr<ev::Transport> t_;
  ev_io io_{};
  bool watching_ = false;
  bool handshaken_ = false;
  bool ready_ = false;             // AUTH and SELECT answered
  bool read_wants_write_ = false;  // the transport's last read said want_write
  bool write_wants_read_ = false;  // its last write said want_read
  bool retired_ = false;
  std::unique_ptr<ReplyReader> reader_;
  std::string out_;  // formatted commands not yet written
  size_t out_off_ = 0;
  std::deque<Pending> pending_;
  size_t abandoned_ = 0;
  // Requests whose deadline is earlier than that of a request queued
  // before them (redirected from another node): the deadline timer then
  // looks at every entry.
  size_t out_of_order_ = 0;
  int64_t last_since_ms_ = 0;  // since_ms of the last request queued in order
  int64_t last_attempt_ms_ = 0;
  bool attempted_ = false;
  bool reported_down_ = false;
  bool told_start_ = false;  // a refused AUTH/SELECT was said
  int64_t last_refusal_log_ms_ = -60000;
  uint64_t refusals_ = 0, forwarded_ = 0, answered_ = 0, losses_ = 0;
};

}  // namespace dc::agent
