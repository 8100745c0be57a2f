// The dc_server backend (backend.h): a pool of one or more dc_servers
// (-server given once or several times), one upstream connection to each.
//
// Routing: the session id picks a server by rendezvous (highest random
// weight) hashing. A server's weight for an id is
//   mix64(fnv1a64(id) ^ fnv1a64(the server's -server text, e.g.
//   "IP:10.0.0.1:9001"))
// where fnv1a64 is 64-bit FNV-1a (offset 0xcbf29ce484222325, prime
// 0x100000001b3) and mix64 the SplitMix64 finalizer (xor-shift 30, multiply
// 0xbf58476d1ce4e5b9, xor-shift 27, multiply 0x94d049bb133111eb, xor-shift
// 31). The id goes to the server of highest weight, so adding or removing a
// server moves only that server's share, and every agent given the same
// -server texts (in any order) routes alike. A server that is not up (not
// connected, connecting, backing off) is passed over: its ids go to the up
// server of next highest weight until it is back. With no server up the
// request is answered DISCONNECTED.
//
// Each server (ServerNode) has what a single upstream always had: its own
// pending FIFO of consecutive uids, -timeout deadline with late answers
// dropped, stall bound, reconnect every -retry and name lookups off the loop
// (see agent.h's header comment: the rules are unchanged, per server).
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "addr.h"
#include "agent/backend.h"
#include "ev/connection.h"
#include "ev/connector.h"
#include "ev/loop.h"
#include "ev/stats.h"
#include "ev/tls.h"
#include "net.h"

namespace dc::agent {

struct AgentConfig;

// The hashes of the routing rule above.
uint64_t fnv1a64(proto::Bytes b);
uint64_t mix64(uint64_t x);
inline uint64_t rendezvous_weight(uint64_t id_hash, uint64_t node_hash) {
  return mix64(id_hash ^ node_hash);
}

// One dc_server of the pool and its upstream connection.
class ServerNode {
 public:
  // `sa`: the address main() resolved, if it did.
  ServerNode(ev::Loop& loop, BackendHost& host, const AgentConfig& cfg, Address server,
             std::optional<SockAddr> sa, size_t index);
  ~ServerNode();
  ServerNode(const ServerNode&) = delete;
  ServerNode& operator=(const ServerNode&) = delete;

  std::optional<Disconnected> submit(const Ticket& t, const proto::Message& m);
  bool up() const { return up_ && !up_->closed() && up_->established(); }
  bool backing_off() const { return !up_ && !connector_.busy(); }
  size_t pending() const { return pending_.size(); }
  uint64_t hash() const { return hash_; }
  const Address& address() const { return server_; }
  // For the statistics table (DcPool::append_stats).
  uint64_t forwarded() const { return forwarded_; }
  uint64_t answered() const { return answered_; }
  uint64_t losses() const { return losses_; }
  const std::string& key_up() const { return key_up_; }
  const std::string& key_forwarded() const { return key_forwarded_; }
  const std::string& key_answered() const { return key_answered_; }
  const std::string& key_losses() const { return key_losses_; }
  const std::string& key_pending() const { return key_pending_; }
  const std::string& labels() const { return labels_; }

 private:
  struct Pending {
    Ticket ticket;
    uint32_t up_uid;
    int64_t sent_us;  // the loop's clock (Loop::now_us)
    int64_t sent_ms() const { return sent_us / 1000; }
    bool abandoned = false;  // answered DISCONNECTED at its deadline; its answer is dropped
  };
  class Handler : public ev::Handler {
   public:
    explicit Handler(ServerNode& n) : n_(n) {}
    void on_message(ev::Connection& c, const proto::Message& m) override { n_.on_answer(c, m); }
    void on_close(ev::Connection& c, ev::CloseReason why) override { n_.on_close(c, why); }
    void on_established(ev::Connection&) override { n_.on_ready(); }

   private:
    ServerNode& n_;
  };

  // Whether this server is spoken to in TLS (-tls-* and an IP address).
  bool tls() const;
  void on_answer(ev::Connection& c, const proto::Message& m);
  void on_close(ev::Connection& c, ev::CloseReason why);
  void on_ready();
  void on_handshake_deadline();
  Pending take_front();
  void expire(Pending& p);
  void on_late(const Pending& p);
  void report_late();
  void fail_pending();
  void lost(const std::string& why);
  void schedule_connect();
  void connect_now();
  void look_up();
  void on_looked_up(bool ok, const SockAddr& sa, const std::string& err);
  void on_deadline();
  void arm_deadline();

  ev::Loop& loop_;
  BackendHost& host_;
  const AgentConfig& cfg_;
  AgentStats& stats_;
  const Address server_;
  const std::string name_;  // server_.to_string()
  const uint64_t hash_;     // fnv1a64(name_)
  Handler handler_;
  std::unique_ptr<ev::Connection> up_;
  ev::Connector connector_;
  ev::Resolver resolver_;
  ev::Timer look_up_retry_;
  std::optional<SockAddr> server_sa_;
  bool needs_lookup_;
  bool looked_up_ = false;
  int64_t last_lookup_ms_ = 0;
  bool reported_unresolved_ = false;
  ev::Timer retry_;
  ev::Timer deadline_;
  ev::Timer late_report_;
  ev::Timer handshake_deadline_;
  int64_t last_attempt_ms_ = 0;
  bool attempted_ = false;
  bool reported_down_ = false;
  bool reported_up_ = false;
  uint32_t next_uid_ = 1;
  std::deque<Pending> pending_;
  size_t abandoned_ = 0;
  uint64_t late_unreported_ = 0;
  int64_t late_unreported_max_ms_ = 0;
  int64_t next_late_report_ms_ = 0;
  // Per-node statistics (rows node<i>_up, node<i>_forwarded, ...).
  uint64_t forwarded_ = 0;
  uint64_t answered_ = 0;
  uint64_t losses_ = 0;
  std::string key_up_, key_forwarded_, key_answered_, key_losses_, key_pending_, labels_;
};

// The pool: the Backend the Agent uses for dc_servers.
class DcPool : public Backend {
 public:
  DcPool(ev::Loop& loop, BackendHost& host, const AgentConfig& cfg);
  std::optional<Disconnected> submit(const Ticket& t, const proto::Message& m,
                                     proto::Bytes id) override;
  bool up() const override;
  bool backing_off() const override;
  size_t pending() const override;
  void append_stats(std::vector<ev::Stat>& table) override;

  // The index of the server `id` goes to while every server is up.
  size_t preferred(proto::Bytes id) const;
  size_t size() const { return nodes_.size(); }

 private:
  std::vector<std::unique_ptr<ServerNode>> nodes_;
};

}  // namespace dc::agent
