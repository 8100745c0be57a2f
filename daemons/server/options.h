// dc_server's command line: the flags of distcache 1.x with their meaning,
// plus this project's additions (-memory, -stats, -metrics, the limits on what one
// client may cost: -maxconns, -frametimeout, -connmemory, -maxlifetime). Parsing is separate from
// main() so that every rule lives in one place and errors are uniform: one
// line naming the flag and what is wrong, then the usage, exit status 2.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "addr.h"
#include "ev/daemon_util.h"
#include "ev/tls.h"

namespace dc::server {

struct Options {
  std::vector<Address> listen;          // at least one
  ev::ProcessOptions proc;              // -daemon, -pidfile, -user, -sock*
  size_t sessions = 1000000;            // -sessions
  size_t memory = size_t(1) << 30;      // -memory (charged bytes, see Store::cost)
  uint32_t max_lifetime_ms = 86400000;  // -maxlifetime: longer ADD timeouts are cut to this
  size_t max_conns = 10000;             // -maxconns (capped by the descriptor limit)
  bool max_conns_given = false;
  int64_t frame_timeout_ms = 5000;         // -frametimeout: 0 = none
  size_t conn_memory = size_t(256) << 20;  // -connmemory: 0 = none
  uint64_t progress = 0;                   // -progress: 0 = off
  ev::StatsOptions stats;                  // -stats, -stats-interval, -stats-format, -metrics
  bool killable = false;
  // -tls-cert, -tls-key, -tls-ca (all or none): TLS 1.3 with client
  // certificates on the IP listeners.
  ev::TlsFiles tls;
  bool help = false;
};

// The usage text (ends with a newline).
std::string usage();

// Parses argv[1..]. Returns true with `out` filled (out.help set for
// -h/-help/-?/--help); else false with `err` one line naming the flag and
// the reason.
bool parse_options(int argc, char** argv, Options& out, std::string& err);

}  // namespace dc::server
