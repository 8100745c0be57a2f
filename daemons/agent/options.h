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
#include "agent/agent.h"
#include "common/daemon_util.h"
#include "ev/tls.h"

namespace dc::agent {

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
  bool redis_db_given = false;
  // -server REDIS-CLUSTER:host:port[,host:port...]: a Redis Cluster (also
  // sets `redis`; `server` is the first seed) (redis_cluster.h).
  bool redis_cluster = false;
  std::vector<Address> redis_seeds;
  // -retry, -idle, -timeout, -maxpending, -clientpending, -maxout, with
  // their defaults (agent.h); main() adds the servers and TLS.
  AgentConfig agent;
  // -maxconns (local clients, capped by the descriptor limit), -frametimeout
  // and -connmemory (all clients' buffers), 0 = none for the last two.
  ev::ConnectionLimits limits{.max_conns = 10000,
                              .frame_timeout_ms = 5000,
                              .memory = size_t(128) << 20,
                              .name = "dc_client"};
  bool max_conns_given = false;
  common::ProcessOptions proc;  // -daemon, -pidfile, -user, -sock*
  common::StatsOptions stats;   // -stats, -stats-interval, -stats-format, -metrics
  // -tls-cert, -tls-key, -tls-ca (all or none), -tls-name: TLS to every IP
  // -server (each dc_server of a pool, Redis, each Redis Cluster node);
  // tls.name empty: each server's own host.
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
