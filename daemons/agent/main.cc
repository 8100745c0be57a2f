// dc_client: the distcache local agent. This file does the process work in
// order: flags, descriptor limit, the default socket's directory, the
// server's address, listening sockets (errors are seen before detaching),
// -daemon, -pidfile, -user, then the loop with its signal handlers; on
// SIGTERM/SIGINT it stops the loop, removes its UNIX socket files and
// pidfile, and exits 0. The multiplexing itself is the Agent's.
#include <errno.h>
#include <signal.h>
#include <unistd.h>

#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "agent/agent.h"
#include "agent/options.h"
#include "agent/redis_backend.h"
#include "common/daemon_util.h"
#include "ev/http_metrics.h"
#include "ev/loop.h"
#include "ev/tls.h"
#include "net.h"

int main(int argc, char** argv) {
  signal(SIGPIPE, SIG_IGN);
  // SIGHUP prints the statistics once the loop runs; until then it is
  // ignored, not fatal (logrotate, or anyone who sees the socket appear,
  // may send it while the daemon starts).
  signal(SIGHUP, SIG_IGN);
  dc::agent::Options opt;
  std::string err;
  if (!dc::agent::parse_options(argc, argv, opt, err)) {
    std::fprintf(stderr, "dc_client: %s\n%s", err.c_str(), dc::agent::usage().c_str());
    return 2;
  }
  if (opt.help) {
    std::fputs(dc::agent::usage().c_str(), stdout);
    return 0;
  }

  opt.limits.max_conns =
      dc::common::usable_max_conns("dc_client", opt.limits.max_conns, opt.max_conns_given);

  // A relative UNIX path for the server must survive -daemon's chdir("/").
  dc::Address server = opt.server;
  if (server.kind == dc::Address::Kind::unix_path)
    server.path = dc::common::absolute_path(server.path);
  if (opt.default_listen && !dc::common::make_socket_dir(dc::agent::kDefaultListenDir, err)) {
    std::fprintf(stderr,
                 "dc_client: cannot make the directory of the default -listen %s (%s): make it "
                 "for this user (e.g. systemd's RuntimeDirectory=distcache), or give -listen "
                 "UNIX:/path in a directory this user owns\n",
                 dc::agent::kDefaultListen, err.c_str());
    return 1;
  }
  // The server's address, resolved once before the loop (and before
  // detaching, so a failure shows on the terminal). A name that does not
  // resolve is not fatal: at boot the name server may not be up yet, as
  // the cache server may not be; the agent keeps looking it up, off its loop.
  auto resolve_first = [&](const dc::Address& a) {
    std::optional<dc::SockAddr> out;
    dc::SockAddr sa;
    std::string why;
    if (dc::resolve(a, false, sa, why))
      out = sa;
    else
      std::fprintf(stderr,
                   "dc_client: %s: answering DISCONNECTED until it resolves, looking it up again "
                   "every %" PRId64 " ms\n",
                   why.c_str(), opt.agent.retry_ms);
    return out;
  };
  std::optional<dc::SockAddr> server_sa = resolve_first(server);
  std::vector<dc::agent::ServerAddr> more_servers;
  for (dc::Address a : opt.more_servers) {
    if (a.kind == dc::Address::Kind::unix_path) a.path = dc::common::absolute_path(a.path);
    more_servers.push_back({a, resolve_first(a)});
  }
  // Certificates are read now, as the user that started us (before -user),
  // and a bad one stops the start: an operator's error, seen at once.
  std::shared_ptr<const dc::ev::TlsContext> tls;
  if (!opt.tls.cert.empty()) {
    // Every IP server of a pool speaks TLS (its certificate checked for
    // -tls-name, else its own host); a UNIX one is spoken plainly.
    std::vector<dc::Address> members = {server};
    for (const dc::agent::ServerAddr& s : more_servers) members.push_back(s.addr);
    const dc::Address* first_ip = nullptr;
    for (const dc::Address& a : members) {
      if (a.kind == dc::Address::Kind::ip) {
        if (!first_ip) first_ip = &a;
        continue;
      }
      std::fprintf(stderr,
                   "dc_client: -tls-* apply to an IP -server only; %s is a UNIX socket, spoken "
                   "plainly (its file permissions protect it)\n",
                   a.to_string().c_str());
    }
    if (first_ip) {
      dc::ev::TlsFiles files = opt.tls;
      if (files.name.empty()) files.name = first_ip->host;
      tls = dc::ev::TlsContext::load(dc::ev::TlsContext::Role::client, files, err);
      if (!tls) {
        std::fprintf(stderr, "dc_client: %s\n", err.c_str());
        return 1;
      }
    }
  }
  // -stats is relative to where we were started, not to -daemon's "/"; the
  // -metrics port is opened with the listeners (see dc_server's main).
  opt.stats.file = dc::common::absolute_path(opt.stats.file);
  dc::UniqueFd metrics_fd;
  if (opt.stats.metrics) {
    metrics_fd = dc::ev::MetricsServer::open_socket(*opt.stats.metrics, err);
    if (!metrics_fd) {
      std::fprintf(stderr, "dc_client: %s\n", err.c_str());
      return 1;
    }
  }
  // Redis: the credentials are read now, as root if started so, and a
  // problem is one line at start.
  dc::agent::RedisConfig redis;
  if (opt.redis) {
    redis.server = opt.server;
    redis.prefix = opt.redis_prefix;
    redis.db = opt.redis_db;
    std::string err;
    if (!opt.redis_auth.empty() && !dc::agent::load_redis_auth(opt.redis_auth, redis, err)) {
      std::fprintf(stderr, "dc_client: %s\n", err.c_str());
      return 1;
    }
    redis.cluster = opt.redis_cluster;
    redis.seeds = opt.redis_seeds;
  }
  std::vector<dc::common::OpenedListener> opened;
  std::string pidfile;
  if (!dc::common::start_daemon("dc_client", opt.listen, opt.proc, opened, pidfile)) return 1;

  {
    dc::ev::Loop loop;
    loop.set_limits(opt.limits);
    dc::agent::AgentConfig& cfg = opt.agent;
    cfg.server = server;
    cfg.server_sa = server_sa;
    cfg.more_servers = more_servers;
    if (opt.redis) cfg.redis = redis;
    cfg.tls = tls;
    cfg.tls_name = opt.tls.name;
    dc::agent::Agent agent(loop, cfg);
    for (dc::common::OpenedListener& o : opened) agent.add_listener(std::move(o.fd), o.addr);
    dc::ev::StatsPublisher publish(
        loop, opt.stats, dc::agent::Agent::kMetricsPrefix, [&] { return agent.stats_table(); },
        std::move(metrics_fd));

    auto stop = [&] { loop.stop(); };
    dc::ev::Signal sigterm(loop, SIGTERM, stop);
    dc::ev::Signal sigint(loop, SIGINT, stop);
    dc::ev::Signal sighup(loop, SIGHUP, [&] {
      std::fprintf(stderr, "dc_client: %s\n", agent.stats_line().c_str());
      std::fflush(stderr);
      publish.write_file();
    });
    loop.run();
    publish.write_file();
  }  // the agent's destructor closes connections and removes socket files
  if (!pidfile.empty()) unlink(pidfile.c_str());
  return 0;
}
