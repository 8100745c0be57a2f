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
#include "common/daemon_util.h"
#include "ev/loop.h"
#include "ev/tls.h"
#include "server/server.h"
#include "server/store.h"

namespace dc::server {

struct Options {
  std::vector<Address> listen;  // at least one
  common::ProcessOptions proc;  // -daemon, -pidfile, -user, -sock*
  // -sessions, -memory (charged bytes, see Store::cost), and -maxlifetime
  // (longer ADD timeouts are cut to it: a day, where the store allows 7).
  StoreLimits store{.max_lifetime_ms = 86400000};
  // -maxconns (capped by the descriptor limit), -frametimeout and
  // -connmemory, 0 = none for the last two.
  ev::ConnectionLimits limits{.max_conns = 10000,
                              .frame_timeout_ms = 5000,
                              .memory = size_t(256) << 20,
                              .name = "dc_server"};
  bool max_conns_given = false;
  ServerConfig server;         // -progress; main() adds TLS
  common::StatsOptions stats;  // -stats, -stats-interval, -stats-format, -metrics
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
