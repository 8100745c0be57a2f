// dc_client's command line: the flags of distcache 1.x's dc_client with
// their meaning, plus this project's limits (-timeout, -maxpending,
// -clientpending, -maxout, -maxconns, -frametimeout, -connmemory) and its statistics
// (-stats, -metrics, as dc_server's). Parsing is apart from main() so
// every rule lives in one place and errors are uniform: one line naming the flag and what is wrong,
// then the usage, exit status 2.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "addr.h"
#include "ev/daemon_util.h"
#include "ev/tls.h"

namespace dc::agent {

// The default -timeout: below libdistcache's own default deadline
// (DC_DEFAULT_OP_TIMEOUT_MS, 100 ms), so the agent's DISCONNECTED reaches a
// client that still waits for it.
inline constexpr int64_t kDefaultTimeoutMs = 50;

// The default -listen. Not 1.x's UNIX:/tmp/scache: in /tmp any local user
// who binds that name first receives every session. /run/distcache is
// made (0755) when missing; see kDefaultListenDir.
inline constexpr const char* kDefaultListen = "UNIX:/run/distcache/dc_client.sock";
inline constexpr const char* kDefaultListenDir = "/run/distcache";

struct Options {
  std::vector<Address> listen;        // defaults to kDefaultListen when none given
  bool default_listen = false;        // no -listen given: kDefaultListen is used
  Address server;                     // -server / -connect (required): the first
  std::vector<Address> more_servers;  // more -server flags: a pool of dc_servers
  bool have_server = false;
  // -server REDIS:host:port (instead of dc_servers), -redis-auth FILE,
  // -redis-prefix, -redis-db (redis_backend.h).
  bool redis = false;
  std::string redis_auth;  // the file; read by main()
  std::string redis_prefix = "dc:";
  unsigned redis_db = 0;
  int64_t retry_ms = 5000;                 // -retry: least time between connect attempts
  int64_t idle_ms = 0;                     // -idle: 0 = never drop idle clients
  int64_t timeout_ms = kDefaultTimeoutMs;  // -timeout: deadline of a request on the server
  size_t max_pending = 10000;    // -maxpending: requests waiting on the server, all clients
  size_t client_pending = 1000;  // -clientpending: unanswered requests of one client
  size_t max_out = 256 * 1024;   // -maxout: a client's unread answers before backpressure
  size_t max_conns = 10000;      // -maxconns: local clients (capped by the descriptor limit)
  bool max_conns_given = false;
  int64_t frame_timeout_ms = 5000;         // -frametimeout: 0 = none
  size_t conn_memory = size_t(128) << 20;  // -connmemory: all clients' buffers; 0 = none
  ev::ProcessOptions proc;                 // -daemon, -pidfile, -user, -sock*
  ev::StatsOptions stats;                  // -stats, -stats-interval, -stats-format, -metrics
  // -tls-cert, -tls-key, -tls-ca (all or none), -tls-name: TLS to an IP
  // -server (tls.name empty: the host of -server).
  ev::TlsFiles tls;
  bool help = false;
};

// The usage text (ends with a newline).
std::string usage();

// Parses argv[1..]. Returns true with `out` filled (out.help set for
// -h/-help/-?/--help); else false with `err` one line naming the flag and
// the reason.
bool parse_options(int argc, char** argv, Options& out, std::string& err);

}  // namespace dc::agent
