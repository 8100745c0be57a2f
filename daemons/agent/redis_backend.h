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
// line per outage and a reconnect after -retry. With -tls-* the connection
// is TLS (Redis's tls-port). The connection itself is a RedisLink
// (redis_link.h), which the Cluster backend uses once per node.
#pragma once

#include <string>
#include <vector>

#include "agent/backend.h"
#include "agent/redis_link.h"
#include "ev/loop.h"

namespace dc::agent {

struct AgentConfig;

// Reads a -redis-auth file: one line, "password" or "user password". The
// file must be readable by its owner only. Returns false with `err` set.
bool load_redis_auth(const std::string& path, RedisConfig& out, std::string& err);

// The settings of a link to `node` for -redis-auth, -redis-db and -tls-*
// (the certificate's name: -tls-name when given, else the node's address).
LinkSettings link_settings(const AgentConfig& cfg, const RedisConfig& rc, const Address& node,
                           std::string what);

class RedisBackend final : public Backend {
 public:
  RedisBackend(ev::Loop& loop, BackendHost& host, const AgentConfig& cfg, RedisConfig rc);
  RedisBackend(const RedisBackend&) = delete;
  RedisBackend& operator=(const RedisBackend&) = delete;

  std::optional<Disconnected> submit(const Ticket& t, const proto::Message& m,
                                     proto::Bytes id) override;
  bool up() const override { return link_.up(); }
  bool backing_off() const override { return link_.backing_off(); }
  size_t pending() const override { return link_.pending(); }
  void append_stats(std::vector<ev::Stat>& table) override;

 private:
  ev::Loop& loop_;
  const RedisConfig rc_;
  RedisLink link_;
  std::string key_;  // reused: the prefix and the session id
};

}  // namespace dc::agent
