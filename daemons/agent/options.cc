// dc_client's command line: see options.h.
#include "agent/options.h"

#include <algorithm>

#include "common/daemon_util.h"
#include "distcache/dc_client.h"

namespace dc::agent {

// The agent's deadline must pass before the client's: a client that gave up
// first never hears the DISCONNECTED, and the late answer goes unnoticed.
static_assert(kDefaultTimeoutMs < DC_DEFAULT_OP_TIMEOUT_MS,
              "dc_client's default -timeout must be below libdistcache's default deadline");

namespace {
constexpr uint64_t kMaxMs = 86400000;  // one day: more is surely a typo
constexpr size_t kMinOut = 4096;
constexpr size_t kMinConnMemory = 1024 * 1024;  // a few clients' worth of output
// Redis nodes are connected to from the agent's loop, which never waits on
// a name lookup (and a cluster names its nodes by address anyway).
constexpr const char* kRedisNeedsIp =
    " names a host, not an IP address: give Redis's address (e.g. from getent hosts NAME)";
}  // namespace

std::string usage() {
  return "Usage: dc_client -server ADDR [options]\n"
         "The local agent of a distributed TLS session cache (distcache protocol 1.x):\n"
         "carries the requests of every local client over one connection to dc_server\n"
         "(to each dc_server of a pool; to Redis; to each master of a Redis Cluster).\n"
         "  -server ADDR        the dc_server to use: UNIX:/path, IP:host:port (required).\n"
         "                      Given several times: a pool of dc_servers, one connection\n"
         "                      to each; each session id goes to one server by rendezvous\n"
         "                      hashing (docs/backends.md), to the next in hash order\n"
         "                      while that one is down\n"
         "  -connect ADDR       the same as -server\n"
         "  -server REDIS:IP:PORT  use a Redis server (6.2 or newer) instead of dc_server:\n"
         "                      ADD is SET key value PX ttl NX, GET, DEL, EXISTS\n"
         "                      (docs/backends.md)\n"
         "  -redis-auth FILE    AUTH with the first line of FILE: \"password\" or \"user\n"
         "                      password\" (Redis 6 ACLs); FILE readable by its owner only\n"
         "  -redis-prefix STR   put STR before each session id to make the key (default dc:)\n"
         "  -redis-db N         SELECT database N after connecting (default 0; not with\n"
         "                      REDIS-CLUSTER:)\n"
         "  -server REDIS-CLUSTER:IP:PORT[,IP:PORT...]  use a Redis Cluster (7.0 or\n"
         "                      newer; older ones through CLUSTER SLOTS): the seed nodes to\n"
         "                      ask for the slot map; one connection to each master; MOVED\n"
         "                      and ASK are followed once; the map is asked again every\n"
         "                      15 s and after a MOVED or a lost master (docs/backends.md).\n"
         "                      A -redis-prefix with {...} in it is a hash tag: every key\n"
         "                      would go to one slot\n"
         "  -listen ADDR        accept local clients on ADDR (default\n"
         "                      UNIX:/run/distcache/dc_client.sock, its directory made if\n"
         "                      missing; may be given more than once). A UNIX socket in a\n"
         "                      directory every user may write to that is not sticky, or\n"
         "                      where another user's file is, is refused\n"
         "  -retry MS           try to reconnect to the server every MS milliseconds\n"
         "                      while it is unreachable (default 5000)\n"
         "  -idle MS            drop a client that sent nothing for MS milliseconds and\n"
         "                      waits for no answer (default 0: never)\n"
         "  -timeout MS         a request the server has not answered within MS\n"
         "                      milliseconds is answered DISCONNECTED (default 50), in\n"
         "                      time for libdistcache's own 100 ms deadline; the\n"
         "                      connection is kept, and answers that come later are\n"
         "                      dropped, counted (late=) and reported. A server that\n"
         "                      answers nothing for max(20 x MS, 1000) ms is taken for\n"
         "                      dead: the connection is recycled. A connect may take as\n"
         "                      long\n"
         "  -maxpending N       at most N requests waiting on a server; beyond, requests\n"
         "                      are answered DISCONNECTED (default 10000)\n"
         "  -clientpending N    a client with N unanswered requests is not read from until\n"
         "                      answers come back (default 1000)\n"
         "  -maxout SIZE        stop reading a client whose unread answers pass SIZE bytes,\n"
         "                      suffix K, M or G, until it reads them (default 256K, least 4K);\n"
         "                      also at most 4 x SIZE / 32K of its GETs wait on the server\n"
         "  -maxconns N         serve at most N local clients; one more is closed as soon\n"
         "                      as accepted (its library takes that as a miss), unless a\n"
         "                      client holds an unfinished request: the one holding it\n"
         "                      longest is closed instead (default 10000, fewer when the\n"
         "                      descriptor limit is lower)\n"
         "  -frametimeout MS    close a client that started a request and has not sent all\n"
         "                      of it within MS milliseconds (default 5000; 0: never)\n"
         "  -connmemory SIZE    when the buffers of all clients (unread answers, held input,\n"
         "                      requests in pieces) pass SIZE bytes, close the clients\n"
         "                      holding the most (default 128M; 0: no limit)\n"
         "  -tls-cert FILE      with -tls-key and -tls-ca: speak TLS 1.3 to each IP -server\n"
         "                      (a dc_server, every dc_server of a pool, Redis, every node\n"
         "                      of a Redis Cluster: on their tls-port),\n"
         "                      presenting this certificate (PEM, with any intermediates)\n"
         "  -tls-key FILE       the private key of -tls-cert (PEM)\n"
         "  -tls-ca FILE        the CA certificate(s) (PEM) the server's must chain to\n"
         "  -tls-name NAME      the name (DNS or IP address) every server's certificate\n"
         "                      must carry (default: each server's own host; a Redis\n"
         "                      Cluster node's: its IP address). Certificates are\n"
         "                      read at start. A UNIX -server or -listen is never TLS:\n"
         "                      its file permissions protect it\n" +
         std::string(common::stats_usage()) + common::process_usage() +
         "  -h, -help, -?       show this help\n"
         "While the server is unreachable every request is answered at once with the\n"
         "status DISCONNECTED (2); caching resumes by itself once it is back.\n"
         "SIGTERM and SIGINT exit cleanly (UNIX socket files are removed);\n"
         "SIGHUP prints the statistics line to stderr and rewrites the -stats file.\n";
}

bool parse_options(int argc, char** argv, Options& o, std::string& err) {
  common::FlagReader args(argc, argv, err);
  while (args.next()) {
    const std::string& flag = args.flag();
    // A number of milliseconds in [min, kMaxMs].
    auto millis = [&](int64_t& out, uint64_t min) {
      std::string v;
      if (!args.value(v)) return false;
      uint64_t n = 0;
      if (!parse_decimal(v, 0, kMaxMs, n) || n < min) {
        err = flag + ": \"" + v + "\" is not a number of milliseconds from " + std::to_string(min) +
              " to " + std::to_string(kMaxMs);
        return false;
      }
      out = int64_t(n);
      return true;
    };
    auto count = [&](size_t& out) {
      std::string v;
      if (!args.value(v)) return false;
      uint64_t n = 0;
      if (!parse_decimal(v, 0, 100000000, n) || n == 0) {
        err = flag + ": \"" + v + "\" is not a number from 1 to 100000000";
        return false;
      }
      out = size_t(n);
      return true;
    };
    std::string v;
    if (args.is_help()) {
      o.help = true;
      return true;
    } else if (flag == "-listen") {
      if (!args.listen(o.listen)) return false;
    } else if ((flag == "-server" || flag == "-connect") &&
               args.peek_value().rfind("REDIS-CLUSTER:", 0) == 0) {
      if (!args.value(v)) return false;
      if (o.have_server) {
        err = flag + ": " + v + ": a Redis Cluster is used alone, not with another -server";
        return false;
      }
      std::string list = v.substr(14);
      for (size_t at = 0; at <= list.size();) {
        size_t comma = std::min(list.find(',', at), list.size());
        std::string seed = list.substr(at, comma - at);
        std::string why;
        Address a;
        if (!parse_address("IP:" + seed, a, why) || a.host.empty()) {
          err = flag + ": \"" + seed + "\" in " + v +
                " is not host:port (REDIS-CLUSTER:host:port[,host:port...])" +
                (why.empty() ? "" : ": " + why);
          return false;
        }
        if (!is_ip_literal(a.host)) {
          err = flag + ": \"" + seed + "\" in " + v + kRedisNeedsIp;
          return false;
        }
        o.redis_seeds.push_back(a);
        at = comma + 1;
      }
      o.server = o.redis_seeds.front();
      o.have_server = true;
      o.redis = true;
      o.redis_cluster = true;
    } else if ((flag == "-server" || flag == "-connect") &&
               args.peek_value().rfind("REDIS:", 0) == 0) {
      if (!args.value(v)) return false;
      std::string why;
      Address a;
      if (!parse_address("IP:" + v.substr(6), a, why) || a.host.empty()) {
        err = flag + ": \"" + v + "\" is not REDIS:host:port" + (why.empty() ? "" : ": " + why);
        return false;
      }
      if (!is_ip_literal(a.host)) {
        err = flag + ": \"" + v + "\"" + kRedisNeedsIp;
        return false;
      }
      if (o.have_server) {
        err = flag + ": " + v + ": a Redis server is used alone, not with another -server";
        return false;
      }
      o.server = a;
      o.have_server = true;
      o.redis = true;
    } else if (flag == "-redis-auth") {
      if (!args.value(o.redis_auth)) return false;
    } else if (flag == "-redis-prefix") {
      if (!args.value(o.redis_prefix)) return false;
      if (o.redis_prefix.size() > 64) {
        err = "-redis-prefix: longer than 64 bytes";
        return false;
      }
    } else if (flag == "-redis-db") {
      if (!args.value(v)) return false;
      uint64_t n = 0;
      if (!parse_decimal(v, 0, 1000000, n)) {
        err = "-redis-db: \"" + v + "\" is not a database number";
        return false;
      }
      o.redis_db = unsigned(n);
      o.redis_db_given = true;
    } else if (flag == "-server" || flag == "-connect") {
      if (!args.value(v)) return false;
      std::string why;
      Address a;
      if (!parse_address(v, a, why)) {
        err = flag + ": " + why;
        return false;
      }
      // The same server twice would double its share of the pool.
      bool dup = o.have_server && a.to_string() == o.server.to_string();
      for (const Address& m : o.more_servers) dup = dup || a.to_string() == m.to_string();
      if (dup) {
        err = flag + ": " + a.to_string() + " given twice";
        return false;
      }
      if (o.redis) {
        err = flag + ": a Redis server is used alone, not with another -server";
        return false;
      }
      if (o.have_server)
        o.more_servers.push_back(a);
      else
        o.server = a;
      o.have_server = true;
    } else if (flag == "-retry") {
      if (!millis(o.agent.retry_ms, 1)) return false;
    } else if (flag == "-idle") {
      if (!millis(o.agent.idle_ms, 0)) return false;
    } else if (flag == "-timeout") {
      if (!millis(o.agent.timeout_ms, 1)) return false;
    } else if (flag == "-maxpending") {
      if (!count(o.agent.max_pending)) return false;
    } else if (flag == "-clientpending") {
      if (!count(o.agent.client_pending)) return false;
    } else if (flag == "-maxout") {
      if (!args.value(v)) return false;
      if (!common::parse_size(v, o.agent.max_out) || o.agent.max_out < kMinOut) {
        err = "-maxout: \"" + v +
              "\" is not a size of at least 4K (a number with an optional K, M or G)";
        return false;
      }
    } else if (flag == "-maxconns") {
      if (!count(o.limits.max_conns)) return false;
      o.max_conns_given = true;
    } else if (flag == "-frametimeout") {
      if (!millis(o.limits.frame_timeout_ms, 0)) return false;
    } else if (flag == "-connmemory") {
      if (!args.value(v)) return false;
      if (!common::parse_size(v, o.limits.memory) ||
          (o.limits.memory != 0 && o.limits.memory < kMinConnMemory)) {
        err = "-connmemory: \"" + v +
              "\" is not 0 (no limit) or a size of at least 1M (a number with an optional K, M "
              "or G)";
        return false;
      }
    } else if (flag == "-tls-cert" || flag == "-tls-key" || flag == "-tls-ca" ||
               flag == "-tls-name") {
      if (!args.value(v)) return false;
      if (v.empty()) {
        err = flag + ": empty value";
        return false;
      }
      (flag == "-tls-cert"  ? o.tls.cert
       : flag == "-tls-key" ? o.tls.key
       : flag == "-tls-ca"  ? o.tls.ca
                            : o.tls.name) = v;
    } else if (common::FlagParse r = args.stats_flag(o.stats); r != common::FlagParse::not_mine) {
      if (r == common::FlagParse::error) return false;
    } else if (!args.process_flag(o.proc)) {
      return false;
    }
  }
  bool tls = false;
  if (!ev::tls_flags_complete(o.tls, tls, err)) return false;
  if (!tls && !o.tls.name.empty()) {
    err = "-tls-name: given without -tls-cert, -tls-key and -tls-ca";
    return false;
  }
  if (!o.have_server) {
    err = "-server: no server address given (required)";
    return false;
  }
  if (o.redis_cluster && o.redis_db_given) {
    err = "-redis-db: a Redis Cluster has database 0 only: leave -redis-db out with REDIS-CLUSTER:";
    return false;
  }
  if (o.listen.empty()) {
    Address a;
    std::string why;
    parse_address(kDefaultListen, a, why);
    o.listen.push_back(a);
    o.default_listen = true;
  }
  return true;
}

}  // namespace dc::agent
