// The Redis backend (backend.h): -server REDIS:host:port. The agent keeps
// speaking the 1.x protocol to its local clients; upstream it speaks RESP to
// one Redis server over one connection of its own on the agent's loop,
// pipelined, with the same deadline, late-answer and recycling rules as the
// dc_server backend (agent.h).
//
// Mapping (key = -redis-prefix followed by the raw session id):
//   ADD     SET key value PX ttl NX   OK: stored; nil: MATCHING_SESSION
//   GET     GET key                   bulk: the session; nil: a miss
//   REMOVE  DEL key                   1: removed; 0: not there
//   HAVE    EXISTS key                1: there; 0: not there
// An error reply (a user without the permission, a Redis that refuses the
// command, an out-of-memory Redis) is answered DISCONNECTED (reason
// `refused`) and logged, at most one line a minute.
//
// RESP is hiredis's (Debian's libhiredis-dev 0.14): its reply reader and
// command formatter, nothing of its networking (which has no deadlines).
// At each connect the agent sends AUTH (-redis-auth: "password" or "user
// password", for Redis 6 ACLs) and SELECT (-redis-db) ahead of any request;
// the connection is up once both are answered OK. A refused AUTH is one log
// line per outage and a reconnect after -retry.
#pragma once

#include <ev.h>
#include <hiredis/hiredis.h>

#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <vector>

#include "addr.h"
#include "agent/backend.h"
#include "ev/connector.h"
#include "ev/loop.h"
#include "net.h"

namespace dc::agent {

struct AgentConfig;

// Reads a -redis-auth file: one line, "password" or "user password". The
// file must be readable by its owner only. Returns false with `err` set.
bool load_redis_auth(const std::string& path, RedisConfig& out, std::string& err);

// What Redis's reply `r` to the command for `op` answers, as dc_server
// would: `data` (a GET's session) or, when `data` is empty, the status byte
// `status`. False when the reply is not one the command returns (an error,
// another type): the request is then answered DISCONNECTED.
bool map_reply(proto::Op op, const redisReply* r, proto::Bytes& data, uint8_t& status);

class RedisBackend final : public Backend {
 public:
  RedisBackend(ev::Loop& loop, BackendHost& host, const AgentConfig& cfg, RedisConfig rc);
  ~RedisBackend() override;
  RedisBackend(const RedisBackend&) = delete;
  RedisBackend& operator=(const RedisBackend&) = delete;

  std::optional<Disconnected> submit(const Ticket& t, const proto::Message& m,
                                     proto::Bytes id) override;
  bool up() const override { return fd_ && ready_; }
  bool backing_off() const override { return !fd_ && !connector_.busy(); }
  size_t pending() const override { return pending_.size(); }
  void append_stats(std::vector<ev::Stat>& table) override;

 private:
  struct Pending {
    Ticket ticket;
    bool internal;   // AUTH or SELECT of the connection's start
    bool abandoned;  // answered DISCONNECTED at its deadline; its reply is dropped
    int64_t sent_ms;
    // An ADD that dc_server would refuse (out-of-range lifetime, id or
    // data): answered with this AddStatus when the PING sent in its place
    // comes back, so that answers keep their order. -1: none.
    int fixed = -1;
  };

  void connect_now();
  void on_connected(UniqueFd fd, const std::string& err);
  // Queues one command (already formatted by hiredis).
  void queue(const char* cmd, int len, const Ticket& t, bool internal, int fixed = -1);
  void on_io(int revents);
  void read_some();
  void write_some();
  void on_reply(redisReply* r);
  // The connection is gone: everything pending is answered, a reconnect planned.
  void lost(const std::string& why);
  void arm_deadline();
  void on_deadline();
  void watch();
  void refused(const char* what, const std::string& reply);
  static void io_cb(struct ev_loop*, ev_io* w, int revents);

  ev::Loop& loop_;
  BackendHost& host_;
  const AgentConfig& cfg_;
  const RedisConfig rc_;
  ev::Connector connector_;
  ev::Timer retry_;
  ev::Timer deadline_;
  UniqueFd fd_;
  ev_io io_{};
  bool watching_ = false;
  bool ready_ = false;  // AUTH and SELECT answered
  redisReader* reader_ = nullptr;
  std::string out_;  // formatted commands not yet written
  size_t out_off_ = 0;
  std::deque<Pending> pending_;
  size_t abandoned_ = 0;
  int64_t last_attempt_ms_ = 0;
  bool attempted_ = false;
  bool reported_down_ = false;
  bool told_start_ = false;  // a refused AUTH/SELECT was said
  int64_t last_refusal_log_ms_ = -60000;
  uint64_t refusals_ = 0, connects_ = 0;
};

}  // namespace dc::agent
