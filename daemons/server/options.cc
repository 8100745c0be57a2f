// dc_server's command line: see options.h.
#include "server/options.h"

#include <limits>

#include "common/daemon_util.h"
#include "proto.h"

namespace dc::server {

namespace {

constexpr size_t kMaxSessions = size_t(1) << 31;
constexpr size_t kMinMemory = 64 * 1024;  // room for one largest session
constexpr uint64_t kMaxConns = 1000000;
constexpr uint64_t kMaxFrameTimeoutMs = 86400000;
constexpr size_t kMinConnMemory = 1024 * 1024;  // a few clients' worth of output

}  // namespace

std::string usage() {
  return "Usage: dc_server -listen ADDR [options]\n"
         "Serves a distributed TLS session cache (distcache protocol 1.x).\n"
         "  -listen ADDR        listen on ADDR: UNIX:/path, IP:port or IP:host:port\n"
         "                      (may be given more than once; required)\n"
         "  -sessions N         store at most N sessions (default 1000000)\n"
         "  -memory SIZE        store at most SIZE bytes of sessions, suffix K, M or G;\n"
         "                      each session counts id + data + 80 (default 1G, least 64K)\n"
         "                      When full, expired sessions go first, then those stored\n"
         "                      longest ago.\n"
         "  -maxlifetime MS     keep no session longer than MS milliseconds, whatever the\n"
         "                      client asks (default 86400000, one day; at most 604800000)\n"
         "  -maxconns N         serve at most N client connections; one more is closed as\n"
         "                      soon as accepted, unless a client holds an unfinished\n"
         "                      request: the one holding it longest is closed instead\n"
         "                      (default 10000, fewer when the descriptor limit is lower)\n"
         "  -frametimeout MS    close a client that started a request and has not sent all\n"
         "                      of it within MS milliseconds (default 5000; 0: never)\n"
         "  -connmemory SIZE    when the buffers of all clients (unread answers, held input,\n"
         "                      requests in pieces) pass SIZE bytes, close the clients\n"
         "                      holding the most (default 256M; 0: no limit)\n"
         "  -progress N         print a statistics line to stderr every N operations\n"
         "  -killable           also exit cleanly on SIGUSR1 or SIGUSR2\n"
         "  -tls-cert FILE      with -tls-key and -tls-ca: speak only TLS 1.3 on the IP\n"
         "                      listeners, presenting this certificate (PEM, with any\n"
         "                      intermediates); every client must present a certificate\n"
         "                      chained to -tls-ca, or is refused before any request\n"
         "  -tls-key FILE       the private key of -tls-cert (PEM)\n"
         "  -tls-ca FILE        the CA certificate(s) (PEM) clients' certificates must chain\n"
         "                      to. Certificates are read at start. UNIX listeners stay\n"
         "                      plain: their file permissions protect them\n" +
         std::string(common::stats_usage()) + common::process_usage() +
         "  -h, -help, -?       show this help\n"
         "SIGTERM and SIGINT exit cleanly (UNIX socket files are removed);\n"
         "SIGHUP prints the statistics line to stderr and rewrites the -stats file.\n";
}

bool parse_options(int argc, char** argv, Options& o, std::string& err) {
  common::FlagReader args(argc, argv, err);
  while (args.next()) {
    const std::string& flag = args.flag();
    std::string v;
    if (args.is_help()) {
      o.help = true;
      return true;
    } else if (flag == "-listen") {
      if (!args.listen(o.listen)) return false;
    } else if (flag == "-killable") {
      o.killable = true;
    } else if (flag == "-sessions") {
      if (!args.value(v)) return false;
      uint64_t n = 0;
      if (!parse_decimal(v, 1, kMaxSessions, n)) {
        err = "-sessions: \"" + v + "\" is not a number from 1 to " + std::to_string(kMaxSessions);
        return false;
      }
      o.store.max_sessions = size_t(n);
    } else if (flag == "-memory") {
      if (!args.value(v)) return false;
      size_t n = 0;
      if (!common::parse_size(v, n)) {
        err = "-memory: \"" + v + "\" is not a size (a number with an optional K, M or G)";
        return false;
      }
      if (n < kMinMemory) {
        err = "-memory: \"" + v + "\" is below the least size, 64K (one largest session)";
        return false;
      }
      o.store.max_bytes = n;
    } else if (flag == "-maxlifetime") {
      if (!args.value(v)) return false;
      uint64_t n = 0;
      if (!parse_decimal(v, 1, proto::kMaxTimeoutMs, n)) {
        err = "-maxlifetime: \"" + v + "\" is not a number of milliseconds from 1 to " +
              std::to_string(proto::kMaxTimeoutMs);
        return false;
      }
      o.store.max_lifetime_ms = uint32_t(n);
    } else if (flag == "-maxconns") {
      if (!args.value(v)) return false;
      uint64_t n = 0;
      if (!parse_decimal(v, 1, kMaxConns, n)) {
        err = "-maxconns: \"" + v + "\" is not a number from 1 to " + std::to_string(kMaxConns);
        return false;
      }
      o.limits.max_conns = size_t(n);
      o.max_conns_given = true;
    } else if (flag == "-frametimeout") {
      if (!args.value(v)) return false;
      uint64_t n = 0;
      if (!parse_decimal(v, 0, kMaxFrameTimeoutMs, n)) {
        err = "-frametimeout: \"" + v + "\" is not a number of milliseconds from 0 (never) to " +
              std::to_string(kMaxFrameTimeoutMs);
        return false;
      }
      o.limits.frame_timeout_ms = int64_t(n);
    } else if (flag == "-connmemory") {
      if (!args.value(v)) return false;
      size_t n = 0;
      if (!common::parse_size(v, n) || (n != 0 && n < kMinConnMemory)) {
        err = "-connmemory: \"" + v +
              "\" is not 0 (no limit) or a size of at least 1M (a number with an optional K, M "
              "or G)";
        return false;
      }
      o.limits.memory = n;
    } else if (flag == "-progress") {
      if (!args.value(v)) return false;
      uint64_t n = 0;
      if (!parse_decimal(v, 1, std::numeric_limits<uint32_t>::max(), n)) {
        err = "-progress: \"" + v + "\" is not a number of operations from 1 to 4294967295";
        return false;
      }
      o.server.progress = n;
    } else if (common::FlagParse r = args.stats_flag(o.stats); r != common::FlagParse::not_mine) {
      if (r == common::FlagParse::error) return false;
    } else if (flag == "-tls-cert" || flag == "-tls-key" || flag == "-tls-ca") {
      if (!args.value(v)) return false;
      if (v.empty()) {
        err = flag + ": empty path";
        return false;
      }
      (flag == "-tls-cert" ? o.tls.cert : flag == "-tls-key" ? o.tls.key : o.tls.ca) = v;
    } else if (!args.process_flag(o.proc)) {
      return false;
    }
  }
  bool tls = false;
  if (!ev::tls_flags_complete(o.tls, tls, err)) return false;
  if (o.listen.empty()) {
    err = "-listen: no address given (at least one is required)";
    return false;
  }
  return true;
}

}  // namespace dc::server
