// The -metrics endpoint of the daemons: a minimal HTTP/1.1 responder for
// Prometheus scrapes, on the daemon's own loop (no thread: the statistics it
// serves are the loop's, read between two events). It answers one request
// per connection and closes:
//   GET /metrics (a query string is ignored)  200, the text exposition format 0.0.4
//   any other method or path                  404
//   a request line that is not HTTP           400
// and it is bounded like everything else an untrusted peer reaches: a
// request over kMaxRequest bytes, or not whole within kTimeoutMs of the
// connection's start (or an answer the peer does not read within as long),
// is closed without an answer; at most kMaxClients connections at a time,
// more are closed as soon as accepted. None of it touches the cache's own
// connections or limits.
// Also StatsPublisher, which keeps a daemon's -stats file and -metrics.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "addr.h"
#include "common/daemon_util.h"
#include "ev/listener.h"
#include "ev/loop.h"
#include "ev/stats.h"
#include "net.h"

namespace dc::ev {

class MetricsServer {
 public:
  static constexpr size_t kMaxRequest = 4096;
  static constexpr int64_t kTimeoutMs = 1000;
  static constexpr size_t kMaxClients = 16;

  // The body of a 200 answer, made when a scrape asks.
  using BodyFn = std::function<std::string()>;

  // Opens a TCP listening socket for -metrics on `a` (an IP address; a UNIX
  // path is refused: scrapers speak TCP). nullptr-like (invalid) fd with
  // `err` one line naming the address on failure.
  static UniqueFd open_socket(const Address& a, std::string& err);

  // Serves `fd`, a socket listening on `a`.
  MetricsServer(Loop& loop, UniqueFd fd, const Address& a, BodyFn body);
  ~MetricsServer();
  MetricsServer(const MetricsServer&) = delete;
  MetricsServer& operator=(const MetricsServer&) = delete;

  uint16_t port() const { return listener_.port(); }

 private:
  struct Client;
  void accept(UniqueFd fd);
  void finish(Client* c);

  Loop& loop_;
  BodyFn body_;
  Listener listener_;
  std::unordered_map<Client*, std::unique_ptr<Client>> clients_;
};

// What a daemon does with its statistics table besides logging it: keeps
// the -stats file (StatsOptions::format) rewritten every -stats-interval
// and serves -metrics. The table is made anew for each (TableFn).
class StatsPublisher {
 public:
  using TableFn = std::function<std::vector<Stat>()>;

  // `o.file` must be absolute already (-daemon changes directory);
  // `metrics_fd` is the -metrics socket (MetricsServer::open_socket), or
  // none. `prefix` names the daemon's Prometheus families.
  StatsPublisher(Loop& loop, const common::StatsOptions& o, std::string prefix, TableFn table,
                 UniqueFd metrics_fd);
  // Rewrites the -stats file now (SIGHUP, exit); nothing without -stats.
  void write_file();
  // The -metrics port (0 without -metrics).
  uint16_t metrics_port() const { return metrics_ ? metrics_->port() : 0; }

 private:
  std::string text();

  common::StatsOptions opt_;
  std::string prefix_;
  TableFn table_;
  Timer timer_;
  std::unique_ptr<MetricsServer> metrics_;
};

}  // namespace dc::ev
