// dc_client's multiplexer: local clients on one side, exactly one upstream
// connection to dc_server on the other (PROTOCOL.md, "Ordering and
// multiplexing"). main() owns the loop and the process concerns; the Agent
// owns the listeners, the local connections, the upstream connection and
// its timers.
//
// Uids: every forwarded request gets the next upstream uid (a counter); the
// pending table is a FIFO of {client id, upstream uid, op, time sent}. The
// server answers in order, so the FIFO's uids are consecutive and an answer
// is found by subtraction from the front's uid; an answer matching nothing
// is dropped. Clients are named by a 64-bit id that is never reused, so an
// entry of a client that went away simply finds nobody: its answer is
// dropped, and nothing points at freed memory.
//
// Order per client: each client keeps its unanswered requests in order as
// slots, "waiting on the server" or "answered locally" (DISCONNECTED). An
// answer from the server always belongs to the client's first slot (the
// server answers in order and local answers are sent as soon as they reach
// the front), and local answers wait behind earlier requests that are still
// on the server, so a client sees its answers in the order it asked.
//
// Deadline: a timer watches the oldest pending request; when it is older
// than -timeout the upstream connection is closed, every pending request is
// answered DISCONNECTED, and a reconnect follows. Connect attempts are never
// closer together than -retry ms; while there is no connection every
// request is answered DISCONNECTED at once.
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "addr.h"
#include "ev/connection.h"
#include "ev/connector.h"
#include "ev/listener.h"
#include "ev/loop.h"
#include "net.h"

namespace dc::agent {

struct AgentConfig {
  Address server;
  int64_t retry_ms = 5000;
  int64_t idle_ms = 0;           // 0: never drop idle clients
  int64_t timeout_ms = 500;      // deadline of a request on the server
  size_t max_pending = 10000;    // requests waiting on the server, all clients
  size_t client_pending = 1000;  // unanswered requests of one client before it is not read
  size_t max_out = 256 * 1024;   // a client's unread answers before its input is held
};

struct AgentStats {
  uint64_t accepted = 0;
  uint64_t requests = 0;       // from local clients
  uint64_t forwarded = 0;      // sent upstream
  uint64_t answered = 0;       // answers from the server delivered to a client
  uint64_t disconnected = 0;   // DISCONNECTED answers made by the agent
  uint64_t dropped = 0;        // answers for clients that had gone
  uint64_t unmatched = 0;      // answers from the server matching nothing pending
  uint64_t connects = 0;       // upstream connections established
  uint64_t losses = 0;         // upstream connections lost (closed, error, corrupt)
  uint64_t deadlines = 0;      // upstream connections recycled for a missed deadline
  uint64_t client_errors = 0;  // local clients closed for corrupt input
  uint64_t overflows = 0;      // times a local client was held (-clientpending, GETs in flight)
  uint64_t idle_drops = 0;     // local clients closed for idleness
  uint64_t half_closed = 0;    // local clients that half-closed with answers owed
};

class Agent {
 public:
  // Starts the first connect attempt at once.
  Agent(ev::Loop& loop, AgentConfig cfg);
  // Closes every connection and listener (UNIX socket files are removed).
  ~Agent();
  Agent(const Agent&) = delete;
  Agent& operator=(const Agent&) = delete;

  // Serves local clients accepted on `fd`, a socket listening on `a`.
  void add_listener(UniqueFd fd, const Address& a);

  // One line of "key=value" statistics (no newline).
  std::string stats_line();
  const AgentStats& stats() const { return stats_; }
  bool upstream_up() const { return up_ && !up_->closed(); }

 private:
  // One unanswered request of a local client, in request order.
  struct Slot {
    uint32_t uid;  // the client's own uid
    proto::Op op;
    bool on_server;  // false: answered locally, waiting for its turn
  };
  struct Local;
  struct Pending {
    uint64_t client;  // Local::id
    uint32_t up_uid;
    proto::Op op;
    int64_t sent_ms;
  };
  // Receives the upstream connection's events.
  class UpstreamHandler : public ev::Handler {
   public:
    explicit UpstreamHandler(Agent& a) : a_(a) {}
    void on_message(ev::Connection& c, const proto::Message& m) override;
    void on_close(ev::Connection& c, ev::CloseReason why) override;

   private:
    Agent& a_;
  };

  void accept(UniqueFd fd);
  void on_request(Local& l, const proto::Message& m);
  void on_local_close(Local& l, ev::CloseReason why);
  void on_answer(ev::Connection& c, const proto::Message& m);
  void on_upstream_close(ev::Connection& c, ev::CloseReason why);

  // Answers `l`'s request (uid, op) with a DISCONNECTED status, after any
  // earlier answers it still waits for.
  void answer_local(Local& l, uint32_t uid, proto::Op op);
  // Delivers the answer to pending entry `p` (payload `payload`).
  void deliver(const Pending& p, proto::Bytes payload);
  // Sends the locally answered slots at the front of `l`'s queue.
  void drain_local(Local& l);
  // Whether `l` has reached 1/divisor of -clientpending or of its GET budget.
  bool over_limits(const Local& l, size_t divisor) const;
  void hold_if_full(Local& l);
  // Answers every pending request DISCONNECTED, in order, and empties the FIFO.
  void fail_pending();
  // The upstream connection is gone (already closed or about to be): fail
  // what is pending and plan the next connect attempt.
  void lost(const std::string& why);
  void schedule_connect();
  void connect_now();
  void on_deadline();
  void arm_deadline();
  void sweep_idle();

  ev::Loop& loop_;
  AgentConfig cfg_;
  AgentStats stats_;
  int64_t started_ms_;
  UpstreamHandler up_handler_;
  std::unique_ptr<ev::Connection> up_;
  ev::Connector connector_;
  ev::Timer retry_;
  ev::Timer deadline_;
  ev::Timer idle_;
  int64_t last_attempt_ms_ = 0;
  bool attempted_ = false;
  // Logging: one line when the server is lost, one when a connection is
  // made again, nothing more until the server has answered a request.
  bool reported_down_ = false;
  bool reported_up_ = false;
  uint32_t next_uid_ = 1;
  std::deque<Pending> pending_;
  uint64_t next_client_ = 1;
  std::unordered_map<uint64_t, std::unique_ptr<Local>> locals_;
  std::vector<std::unique_ptr<ev::Listener>> listeners_;
};

}  // namespace dc::agent
