// The agent's upstream side: where the requests of local clients go. The
// Agent keeps the local side (each client's answers in the order it asked,
// its slots, its holds: agent.h); a Backend takes each forwarded request and
// later says what became of it, exactly once per request, through the
// BackendHost (the Agent): an answer, or a reason to answer DISCONNECTED.
//
// The failure promise, for every backend: a request the backend accepted is
// settled within the agent's -timeout (its deadline: DISCONNECTED when the
// store has not answered by then; a late answer is dropped), the backend
// notices a dead store by itself (a closed connection, or nothing back for
// AgentConfig::stall_ms()) and reconnects by itself, and while it cannot
// reach the store it refuses requests at once (submit returns the reason),
// so that no local client ever waits past the deadline.
//
// Backends today: a pool of dc_servers (dc_pool.h; one -server is a pool of
// one), with one upstream connection per server, each with its own pending
// FIFO, deadline and reconnect; one Redis server (redis_backend.h); and a
// Redis Cluster (redis_cluster.h), one connection per master. Both Redis
// backends speak through RedisLink (redis_link.h).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "addr.h"
#include "ev/stats.h"
#include "proto.h"

namespace dc::agent {

struct AgentStats;

// What -server REDIS:host:port (or REDIS-CLUSTER:host:port,...),
// -redis-auth, -redis-prefix and -redis-db say (redis_backend.h,
// redis_cluster.h).
struct RedisConfig {
  Address server;        // an IP address: host and port (a cluster: the first seed)
  std::string user;      // empty: the default user (AUTH password)
  std::string password;  // empty: no AUTH
  std::string prefix = "dc:";
  unsigned db = 0;
  // REDIS-CLUSTER: the seed nodes (IP addresses), in the order given.
  bool cluster = false;
  std::vector<Address> seeds;
};

// Why the agent answered a request DISCONNECTED itself (the reason label
// of distcache_agent_disconnected_total; keys disconnected_<reason>).
enum class Disconnected : uint8_t {
  no_upstream,  // no connection to the store (down, connecting, backing off)
  maxpending,   // -maxpending requests were already waiting on the server
  backlog,      // kUpstreamOutMax bytes were already queued for the server
  deadline,     // not answered within -timeout (its late answer is dropped)
  skipped,      // the server answered a later request first
  lost,         // the connection was lost (or recycled) with it pending
  refused,      // the store answered an error (Redis: a permission, an unknown command)
};
inline constexpr size_t kDisconnectedReasons = 7;

// One forwarded request, as the Agent names it: its client (Agent::Local's
// id, never reused), the client's request sequence number (its slot) and the
// operation. A backend keeps it and hands it back.
struct Ticket {
  uint64_t client;
  uint64_t seq;
  proto::Op op;
};

// What a backend tells the agent. Either call settles the ticket; each
// ticket is settled exactly once.
class BackendHost {
 public:
  virtual ~BackendHost() = default;
  // The store's answer (a payload as dc_server's).
  virtual void settle(const Ticket& t, proto::Bytes payload) = 0;
  // No answer: the client is answered DISCONNECTED, counted under `why`.
  virtual void fail(const Ticket& t, Disconnected why) = 0;
  // The agent's counters, which backends also count into (forwarded,
  // answered, late, connects, losses, ...).
  virtual AgentStats& counters() = 0;
};

class Backend {
 public:
  virtual ~Backend() = default;
  // Forwards request `m` (its uid is the backend's business) for ticket
  // `t`; `id` is the session id it is about (routing). Returns nothing when
  // the request is on its way (settled later through the host), else the
  // reason it was refused (the agent answers DISCONNECTED at once; the
  // ticket is not settled through the host).
  virtual std::optional<Disconnected> submit(const Ticket& t, const proto::Message& m,
                                             proto::Bytes id) = 0;
  // Whether requests can be forwarded now (a pool: at least one server).
  virtual bool up() const = 0;
  // No connection anywhere and none being made (waiting out -retry).
  virtual bool backing_off() const = 0;
  // Requests forwarded and not answered yet (abandoned ones included).
  virtual size_t pending() const = 0;
  // Appends per-node rows to the statistics table.
  virtual void append_stats(std::vector<ev::Stat>& table) = 0;
};

}  // namespace dc::agent
