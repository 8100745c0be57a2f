// The Redis Cluster backend (backend.h): -server
// REDIS-CLUSTER:host:port[,host:port...], the seed nodes. The mapping of
// the four operations is the standalone backend's (redis_backend.h); what is
// added is routing.
//
// Routing: the key (-redis-prefix and the raw session id) goes to the
// master of its slot, CRC16 (XMODEM: polynomial 0x1021, initial value 0) of
// the key, or of its hash tag (the bytes between the first '{' and the
// first '}' after it, when not empty), modulo 16384: Redis Cluster's rule,
// so a prefix holding "{...}" puts every session in one slot.
//
// The slot map comes from CLUSTER SHARDS (CLUSTER SLOTS when a node answers
// that with an error: Redis before 7.0), asked of any node the agent is
// connected to: the seeds first, then the masters. It is asked again every
// kRefreshEveryMs, soon after a MOVED or a lost master (every
// kRefreshSoonMs while a slot has no master the agent is connected to), and
// never more often than once per kRefreshSoonMs.
//
// Per request: a MOVED reply updates that slot's entry (a refresh follows)
// and the request is sent again, once, to the node named; an ASK sends
// ASKING then the request to the node named, the map unchanged; a second
// redirection, TRYAGAIN, CLUSTERDOWN or any other error answers
// DISCONNECTED (refused). A slot whose master the agent has no connection
// to (none known, connecting, down) is answered DISCONNECTED at once
// (no_upstream); a master lost with requests pending answers them
// DISCONNECTED (lost). Each master has its own RedisLink (redis_link.h):
// connection, pipeline, -timeout deadline, stall bound and reconnect, AUTH
// on every connection, TLS when -tls-* are given (the certificate's name:
// -tls-name, else the node's IP address).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "agent/backend.h"
#include "agent/redis_link.h"
#include "ev/loop.h"

namespace dc::agent {

struct AgentConfig;

inline constexpr size_t kClusterSlots = 16384;

// CRC16/XMODEM of `b`.
uint16_t crc16_xmodem(std::string_view b);
// The slot of `key` (hash tags included).
uint16_t key_slot(std::string_view key);

// A range of slots and its master, from the slot map.
struct SlotRange {
  uint16_t first = 0, last = 0;
  std::string host;  // an IP address
  uint16_t port = 0;
};

// Parses a CLUSTER SHARDS reply: each shard's slot ranges and its master
// (role master, preferably health online; its "ip" and, with `tls`, its
// "tls-port" when there is one, else its "port"). Shards without slots or
// without a usable master are left out. False with `err` when the reply is
// not the command's. An empty ip (a node that does not know its own
// address: a cluster of one) means `asked`, the node that answered, as
// Redis documents; a master named by anything but an IP address is left out.
bool parse_cluster_shards(const redisReply* r, bool tls, const std::string& asked,
                          std::vector<SlotRange>& out, std::string& err);
// The same for a CLUSTER SLOTS reply (the master is each entry's first node;
// an empty or nil ip: `asked`).
bool parse_cluster_slots(const redisReply* r, const std::string& asked,
                         std::vector<SlotRange>& out, std::string& err);

// A MOVED or ASK error: "MOVED 3999 127.0.0.1:6381" (an empty host means
// the node that answered).
struct Redirect {
  bool ask = false;
  uint16_t slot = 0;
  std::string host;
  uint16_t port = 0;
};
bool parse_redirect(std::string_view error, Redirect& out);

class RedisCluster final : public Backend, private RedisLink::Owner {
 public:
  static constexpr int64_t kRefreshEveryMs = 15000;
  static constexpr int64_t kRefreshSoonMs = 1000;
  // Nodes (each a connection) a redirection may add beyond those of the
  // slot map and the seeds: MOVED and ASK to yet another address are
  // answered DISCONNECTED past it, until the next map drops the extras.
  static constexpr size_t kMaxRedirectNodes = 16;
  // Masters a slot map may name (Redis Cluster's own advice is at most
  // 1,000 nodes); a map naming more is refused, the old one kept.
  static constexpr size_t kMaxMasters = 1024;

  RedisCluster(ev::Loop& loop, BackendHost& host, const AgentConfig& cfg, RedisConfig rc);
  ~RedisCluster() override;
  RedisCluster(const RedisCluster&) = delete;
  RedisCluster& operator=(const RedisCluster&) = delete;

  std::optional<Disconnected> submit(const Ticket& t, const proto::Message& m,
                                     proto::Bytes id) override;
  bool up() const override;
  bool backing_off() const override;
  size_t pending() const override;
  void append_stats(std::vector<ev::Stat>& table) override;

 private:
  struct Node {
    std::string name;  // "ip:port" ("[ip]:port" for IPv6)
    Address addr;
    std::unique_ptr<RedisLink> link;
    bool seed = false;
    bool master = false;  // in the slot map (or named by a MOVED since)
    bool redirected = false;  // made for a MOVED or ASK, not named by a map since
  };

  // RedisLink::Owner
  void link_up(RedisLink& l) override;
  void link_down(RedisLink& l) override;
  bool on_error(RedisLink& l, RedisLink::Request& r, std::string_view error) override;
  void on_query(RedisLink& l, const redisReply* r) override;

  Node& node(const std::string& host, uint16_t port);
  Node* node_of(const RedisLink& l);
  // Asks for the map now if it may be asked (rate limit), else as soon as
  // it may; `soon` also for a periodic refresh.
  void want_refresh();
  void refresh();
  void schedule_next();
  // False (nothing changed) when the map names more than kMaxMasters masters.
  bool apply(const std::vector<SlotRange>& ranges);
  void reap();

  ev::Loop& loop_;
  BackendHost& host_;
  const AgentConfig& cfg_;
  const RedisConfig rc_;
  std::map<std::string, std::unique_ptr<Node>> nodes_;
  std::vector<Node*> slots_;     // kClusterSlots entries; nullptr: no master known
  bool mapped_ = false;          // a map came once
  bool use_slots_ = false;       // CLUSTER SHARDS was refused: CLUSTER SLOTS
  RedisLink* asking_ = nullptr;  // the link a map query waits on
  int64_t last_query_ms_ = -kRefreshSoonMs;
  ev::Timer refresh_;
  std::vector<std::unique_ptr<RedisLink>> retired_;
  ev::Timer reap_;
  std::string key_;       // reused: the prefix and the session id
  std::string map_said_;  // the masters last logged
  int64_t last_map_error_log_ms_ = -60000;
  uint64_t moved_ = 0, asks_ = 0, refreshes_ = 0, retired_refusals_ = 0;
};

}  // namespace dc::agent
