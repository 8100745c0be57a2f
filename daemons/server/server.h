// dc_server's protocol handler: answers ADD/GET/REMOVE/HAVE from the Store
// on every accepted connection, in order, and keeps the statistics. It owns
// the listeners and the connections; main() owns the loop, the store and
// the process concerns (flags, daemon, signals, privileges).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "ev/connection.h"
#include "ev/listener.h"
#include "ev/loop.h"
#include "ev/stats.h"
#include "ev/tls.h"
#include "server/store.h"

namespace dc::server {

// The counters behind the statistics table (Server::stats_table(), whose rows
// name them: docs/dc_server.md lists them).
struct Stats {
  uint64_t requests[4] = {};  // by proto::Op: add, get, remove, have
  // GET, REMOVE and HAVE answers by proto::Op (add unused): hits, misses,
  // remove_hits, ...
  uint64_t hits[4] = {}, misses[4] = {};
  // ADD answers by their status, indexed by add_result(): add_ok,
  // add_matching_session, ...
  static constexpr size_t kAddResults = 7;
  uint64_t add_results[kAddResults] = {};
  uint64_t protocol_errors = 0;  // connections closed for corrupt input
  uint64_t accepted = 0;
};

// The index in Stats::add_results of an ADD answer's status.
size_t add_result(proto::AddStatus st);

struct ServerConfig {
  uint64_t progress = 0;  // a stats line to stderr every N operations (0: never)
  ev::ConnectionOptions conn;
  // TLS on the IP listeners (-tls-*), when set: clients must finish a TLS
  // 1.3 handshake with a certificate chained to -tls-ca before any request
  // is read. UNIX listeners stay plain (their file permissions protect them).
  std::shared_ptr<const ev::TlsContext> tls;
};

class Server : public ev::Handler {
 public:
  Server(ev::Loop& loop, Store& store, ServerConfig cfg);
  ~Server() override;

  // Serves connections accepted on `fd`, a socket listening on `a`.
  void add_listener(UniqueFd fd, const Address& a);

  // The statistics table (ev/stats.h): the statistics line, the -stats
  // file and the -metrics endpoint all print it.
  std::vector<ev::Stat> stats_table();
  // stats_table() as one line of "key=value" (no newline).
  std::string stats_line();
  // The prefix of its Prometheus names.
  static constexpr const char* kMetricsPrefix = "distcache_server_";
  const Stats& stats() const { return stats_; }
  size_t connections() const { return conns_.size(); }

  void on_message(ev::Connection& c, const proto::Message& m) override;
  void prefetch(ev::Connection& c, std::span<const proto::Message> ms) override;
  void on_close(ev::Connection& c, ev::CloseReason why) override;

 private:
  void accept(UniqueFd fd, bool tls);
  void reply(ev::Connection& c, const proto::Message& req, proto::Bytes payload);
  void reap_expired();

  ev::Loop& loop_;
  Store& store_;
  ServerConfig cfg_;
  Stats stats_;
  uint64_t since_progress_ = 0;
  int64_t started_ms_;
  std::vector<std::unique_ptr<ev::Listener>> listeners_;
  std::unordered_map<ev::Connection*, std::unique_ptr<ev::Connection>> conns_;
  ev::Timer expiry_;
  ev::TlsRefusals tls_refusals_;  // TLS clients refused: counted, logged rate-limited
};

}  // namespace dc::server
