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
#include "server/store.h"

namespace dc::server {

struct Stats {
  uint64_t ops[4] = {};  // by proto::Op
  uint64_t get_hits = 0, get_misses = 0;
  uint64_t remove_hits = 0, remove_misses = 0;
  uint64_t have_hits = 0, have_misses = 0;
  // ADD answers: stored, and rejections by reason.
  uint64_t add_ok = 0, add_matching = 0, add_timeout_range = 0, add_corrupt = 0, add_id_range = 0,
           add_data_range = 0, add_notok = 0;
  uint64_t protocol_errors = 0;  // connections closed for corrupt input
  uint64_t accepted = 0;
};

struct ServerConfig {
  uint64_t progress = 0;  // a stats line to stderr every N operations (0: never)
  ev::ConnectionOptions conn;
};

class Server : public ev::Handler {
 public:
  Server(ev::Loop& loop, Store& store, ServerConfig cfg);
  ~Server() override;

  // Serves connections accepted on `fd`, a socket listening on `a`.
  void add_listener(UniqueFd fd, const Address& a);

  // One line of "key=value" statistics (no newline).
  std::string stats_line();
  const Stats& stats() const { return stats_; }
  size_t connections() const { return conns_.size(); }

  void on_message(ev::Connection& c, const proto::Message& m) override;
  void prefetch(ev::Connection& c, std::span<const proto::Message> ms) override;
  void on_close(ev::Connection& c, ev::CloseReason why) override;

 private:
  void accept(UniqueFd fd);
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
};

}  // namespace dc::server
