// dc_client's multiplexer: local clients on one side, the backend on the
// other (backend.h): a pool of dc_servers (dc_pool.h), one upstream
// connection to each (PROTOCOL.md, "Ordering and multiplexing"). main() owns
// the loop and the process concerns; the Agent owns the listeners, the local
// connections and the backend. What follows describes one upstream
// connection (a dc_pool.h ServerNode: each server of a pool has its own).
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
// slots, "waiting on the store", "answered locally" (DISCONNECTED) or
// "answered, waiting for its turn", numbered by a per-client sequence (the
// Ticket's seq: slots' numbers are consecutive, so a slot is found by
// subtraction). With one server an answer always belongs to the client's
// first slot (the server answers in order) and is sent at once; with a pool,
// servers answer independently, so an answer to a later slot is kept (copied)
// until the slots before it are answered. A client sees its answers in the
// order it asked.
//
// Deadline: a timer watches the oldest request still waiting for its answer
// (-timeout, default 50 ms: below the client library's 100 ms deadline, so
// a client hears DISCONNECTED before it gives up, not after). A request past
// its deadline is answered DISCONNECTED at once, but its FIFO entry stays,
// marked abandoned, and the connection is kept: uids keep matching, and the
// server's answer, when it comes, is dropped and counted as late (a slow
// server is not a dead one, and recycling the connection would only make it
// slower). Abandoned entries are always a prefix of the FIFO (entries are
// abandoned oldest first), so a client's abandoned requests are the front of
// its slots: their slots become "answered locally" and leave in order.
// Late answers are reported on stderr, at most one line per
// kLateReportEveryMs, saying how many came and how late.
//
// Stall: when the oldest entry, abandoned or not, has waited the stall bound
// (max(20 x -timeout, 1000 ms), stall_ms()) the server is taken for dead:
// the connection is closed, every request still owed an answer is answered
// DISCONNECTED, and a reconnect follows (the `deadlines` statistic counts
// these). Connect attempts are never closer together than -retry ms and each
// may take up to the stall bound; while there is no connection every request
// is answered DISCONNECTED at once.
//
// Names: the server's address is resolved once before the loop starts (by
// main(), so a failure shows on the terminal; an unresolvable name is not
// fatal: it may be a name server not up yet at boot, like a server not up
// yet, and the agent answers DISCONNECTED until it resolves). After that a
// name is looked up again only off the loop (ev::Resolver, a thread), when
// connects fail, at most once per -retry period; until a lookup succeeds
// the last address is used. getaddrinfo() can block for seconds, and no
// local client may wait for it. UNIX paths and literal addresses need no
// lookup.
#pragma once

#include <algorithm>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "addr.h"
#include "agent/backend.h"
#include "ev/connection.h"
#include "ev/listener.h"
#include "ev/loop.h"
#include "ev/stats.h"
#include "ev/tls.h"
#include "net.h"

namespace dc::agent {

// A server's address as given (-server) and, when main() resolved it
// before the loop (and said so when it could not), its socket address;
// empty: the agent resolves it, a name off the loop.
struct ServerAddr {
  Address addr;
  std::optional<SockAddr> sa;
};

// The default -timeout: below libdistcache's own default deadline
// (DC_DEFAULT_OP_TIMEOUT_MS, 100 ms), so the agent's DISCONNECTED reaches a
// client that still waits for it.
inline constexpr int64_t kDefaultTimeoutMs = 50;

// What the Agent runs with. The flags' part (-retry, -idle, -timeout,
// -maxpending, -clientpending, -maxout) is filled by parse_options
// (Options::agent, options.h), the rest by main().
struct AgentConfig {
  // The first (or only) -server, and its address as main() resolved it.
  Address server;
  std::optional<SockAddr> server_sa;
  // The other -server flags, in order: a pool (dc_pool.h).
  std::vector<ServerAddr> more_servers;
  // -server REDIS:host:port (or REDIS-CLUSTER:...): a Redis backend
  // instead of dc_servers.
  std::optional<RedisConfig> redis;
  int64_t retry_ms = 5000;                 // -retry: least time between connect attempts
  int64_t idle_ms = 0;                     // -idle: 0 = never drop idle clients
  int64_t timeout_ms = kDefaultTimeoutMs;  // -timeout: deadline of a request on the server
  size_t max_pending = 10000;    // -maxpending: requests waiting on one server, all clients
  size_t client_pending = 1000;  // -clientpending: unanswered requests of one client
  size_t max_out = 256 * 1024;   // -maxout: a client's unread answers before its input is held
  // TLS to the server (-tls-*), when set; only for an IP -server.
  std::shared_ptr<const ev::TlsContext> tls;
  // -tls-name as given; empty: each server's certificate is checked for
  // that server's host (a pool member's, a Redis Cluster node's address).
  std::string tls_name;

  // How long the oldest request may wait on the server before the server is
  // taken for dead and the connection recycled: long enough that a merely
  // slow server (answers a few deadlines late) keeps its connection, short
  // enough that a dead one (no FIN, e.g. a partition) is noticed in seconds.
  int64_t stall_ms() const { return std::max<int64_t>(20 * timeout_ms, 1000); }
};

// The counters behind the statistics table (Agent::stats_table(), whose
// rows name them; docs/dc_server.md lists them).
struct AgentStats {
  uint64_t accepted = 0;
  uint64_t requests = 0;  // from local clients (by operation: responses)
  // Answers sent to local clients by proto::Op and result: 0 the server
  // said yes (a GET hit, ADD stored, REMOVE/HAVE found), 1 it said no, 2
  // DISCONNECTED (from the agent).
  uint64_t responses[4][3] = {};
  uint64_t forwarded = 0;  // sent upstream
  uint64_t answered = 0;   // answers from the server delivered to a client
  // DISCONNECTED answers the agent made, by Disconnected.
  uint64_t disconnected[kDisconnectedReasons] = {};
  uint64_t dropped = 0;        // answers for clients that had gone
  uint64_t unmatched = 0;      // answers from the server matching nothing pending
  uint64_t resolves = 0;       // lookups of the server's name done off the loop
  uint64_t connects = 0;       // upstream connections established
  uint64_t losses = 0;         // upstream connections lost (closed, error, corrupt)
  uint64_t late = 0;           // server answers that came after the deadline (dropped)
  int64_t late_max_ms = 0;     // the slowest of them: how long it took
  uint64_t deadlines = 0;      // upstream connections recycled: stalled past stall_ms()
  uint64_t client_errors = 0;  // local clients closed for corrupt input
  uint64_t overflows = 0;      // times a local client was held (-clientpending, GETs in flight)
  uint64_t idle_drops = 0;     // local clients closed for idleness
  uint64_t half_closed = 0;    // local clients that half-closed with answers owed
  // Upstream round trips: from a request's forwarding to its answer (late
  // ones too), on the loop's clock.
  ev::Histogram upstream_rtt;
};

class Agent : private BackendHost {
 public:
  // Starts the first connect attempt at once.
  Agent(ev::Loop& loop, AgentConfig cfg);
  // Closes every connection and listener (UNIX socket files are removed).
  ~Agent();
  Agent(const Agent&) = delete;
  Agent& operator=(const Agent&) = delete;

  // Serves local clients accepted on `fd`, a socket listening on `a`.
  void add_listener(UniqueFd fd, const Address& a);

  // The statistics table (ev/stats.h): the statistics line, the -stats
  // file and the -metrics endpoint all print it.
  std::vector<ev::Stat> stats_table();
  // stats_table() as one line of "key=value" (no newline).
  std::string stats_line();
  // The prefix of its Prometheus names.
  static constexpr const char* kMetricsPrefix = "distcache_agent_";
  const AgentStats& stats() const { return stats_; }
  // Whether requests can be forwarded (a pool: to at least one server).
  bool upstream_up() const { return backend_->up(); }

 private:
  // A slot's state.
  enum class SlotState : uint8_t {
    on_server,  // forwarded, not answered yet
    local,      // answered locally (DISCONNECTED), waiting for its turn
    answered,   // answered by the store (answer below), waiting for its turn
  };
  // One unanswered request of a local client, in request order.
  struct Slot {
    uint32_t uid;  // the client's own uid
    proto::Op op;
    SlotState state;
    std::vector<uint8_t> answer;  // SlotState::answered only
  };
  struct Local;

  // BackendHost: a forwarded request's answer, or DISCONNECTED.
  void settle(const Ticket& t, proto::Bytes payload) override;
  void fail(const Ticket& t, Disconnected why) override;
  AgentStats& counters() override { return stats_; }

  void accept(UniqueFd fd);
  void on_request(Local& l, const proto::Message& m);
  void on_local_close(Local& l, ev::CloseReason why);

  // Answers `l`'s request (uid, op) with a DISCONNECTED status, after any
  // earlier answers it still waits for.
  void answer_local(Local& l, uint32_t uid, proto::Op op, Disconnected why);
  // Counts an answer sent to a local client (AgentStats::responses).
  void count_response(proto::Op op, proto::Bytes payload);
  // Answers ticket `t`'s slot: `payload`, or DISCONNECTED when `local`.
  void deliver(const Ticket& t, proto::Bytes payload, bool local);
  // Sends the answered slots at the front of `l`'s queue.
  void drain_local(Local& l);
  // After `l`'s first slot was answered: sends what may follow it, releases
  // held input below the limits, closes a half-closed client owed nothing.
  void after_answer(Local& l);
  // Whether `l` has reached 1/divisor of -clientpending or of its GET budget.
  bool over_limits(const Local& l, size_t divisor) const;
  void hold_if_full(Local& l);
  void sweep_idle();

  ev::Loop& loop_;
  AgentConfig cfg_;
  AgentStats stats_;
  int64_t started_ms_;
  ev::Timer idle_;
  std::unique_ptr<Backend> backend_;
  uint64_t next_client_ = 1;
  std::unordered_map<uint64_t, std::unique_ptr<Local>> locals_;
  std::vector<std::unique_ptr<ev::Listener>> listeners_;
};

}  // namespace dc::agent
