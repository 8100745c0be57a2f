// dc_server: the distcache session cache daemon. This file does the process
// work in order: flags, descriptor limit, listening sockets (errors are seen
// before detaching), -daemon, -pidfile, -user, then the loop with its signal
// handlers; on SIGTERM/SIGINT (and SIGUSR1/SIGUSR2 with -killable) it stops
// the loop, removes its UNIX socket files and pidfile, and exits 0.
// Its statistics go to stderr (-progress, SIGHUP), to the -stats file and to
// -metrics, all from one table (Server::stats_table).
#include <errno.h>
#include <malloc.h>
#include <signal.h>
#include <sys/random.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "common/daemon_util.h"
#include "ev/http_metrics.h"
#include "ev/loop.h"
#include "ev/tls.h"
#include "net.h"
#include "server/options.h"
#include "server/server.h"
#include "server/store.h"

namespace {

using dc::server::Options;

uint64_t random_seed() {
  uint64_t seed = 0;
  if (getrandom(&seed, sizeof seed, 0) != ssize_t(sizeof seed))
    seed = uint64_t(dc::now_ms()) * 0x9e3779b97f4a7c15ULL ^ uint64_t(getpid());
  return seed;
}

}  // namespace

int main(int argc, char** argv) {
  signal(SIGPIPE, SIG_IGN);
  // SIGHUP prints the statistics once the loop runs; until then it is
  // ignored, not fatal (logrotate, or anyone who sees the socket appear,
  // may send it while the daemon starts).
  signal(SIGHUP, SIG_IGN);
  Options opt;
  std::string err;
  if (!dc::server::parse_options(argc, argv, opt, err)) {
    std::fprintf(stderr, "dc_server: %s\n%s", err.c_str(), dc::server::usage().c_str());
    return 2;
  }
  if (opt.help) {
    std::fputs(dc::server::usage().c_str(), stdout);
    return 0;
  }

  opt.limits.max_conns =
      dc::common::usable_max_conns("dc_server", opt.limits.max_conns, opt.max_conns_given);

  // -stats is relative to where we were started, not to -daemon's "/".
  opt.stats.file = dc::common::absolute_path(opt.stats.file);
  // The -metrics port is opened with the listeners: a port in use is
  // reported on the terminal, and a low port needs the privileges -user drops.
  dc::UniqueFd metrics_fd;
  if (opt.stats.metrics) {
    metrics_fd = dc::ev::MetricsServer::open_socket(*opt.stats.metrics, err);
    if (!metrics_fd) {
      std::fprintf(stderr, "dc_server: %s\n", err.c_str());
      return 1;
    }
  }
  // Certificates are read now, as the user that started us (before -user),
  // and a bad one stops the start: an operator's error, seen at once.
  std::shared_ptr<const dc::ev::TlsContext> tls;
  if (!opt.tls.cert.empty()) {
    tls = dc::ev::TlsContext::load(dc::ev::TlsContext::Role::server, opt.tls, err);
    if (!tls) {
      std::fprintf(stderr, "dc_server: %s\n", err.c_str());
      return 1;
    }
    bool any_ip = false;
    for (const dc::Address& a : opt.listen) any_ip = any_ip || a.kind == dc::Address::Kind::ip;
    if (!any_ip)
      std::fprintf(stderr,
                   "dc_server: -tls-* apply to IP listeners only, and every -listen is a UNIX "
                   "socket: nothing is served over TLS\n");
  }
  std::vector<dc::common::OpenedListener> opened;
  std::string pidfile;
  if (!dc::common::start_daemon("dc_server", opt.listen, opt.proc, opened, pidfile)) return 1;

  // The session heap grows in 32 MB steps, so the store can ask for huge
  // pages on each new step before it is touched (see advise_heap() in
  // store.cc). Untouched, the pad costs no resident memory.
  mallopt(M_TOP_PAD, 32 << 20);

  {
    dc::ev::Loop loop;
    loop.set_limits(opt.limits);
    dc::server::Store store(opt.store, random_seed());
    opt.server.tls = tls;
    dc::server::Server server(loop, store, opt.server);
    for (dc::common::OpenedListener& o : opened) server.add_listener(std::move(o.fd), o.addr);

    dc::ev::StatsPublisher publish(
        loop, opt.stats, dc::server::Server::kMetricsPrefix, [&] { return server.stats_table(); },
        std::move(metrics_fd));

    auto stop = [&] { loop.stop(); };
    dc::ev::Signal sigterm(loop, SIGTERM, stop);
    dc::ev::Signal sigint(loop, SIGINT, stop);
    std::unique_ptr<dc::ev::Signal> sigusr1, sigusr2;
    if (opt.killable) {
      sigusr1 = std::make_unique<dc::ev::Signal>(loop, SIGUSR1, stop);
      sigusr2 = std::make_unique<dc::ev::Signal>(loop, SIGUSR2, stop);
    }
    dc::ev::Signal sighup(loop, SIGHUP, [&] {
      std::fprintf(stderr, "dc_server: %s\n", server.stats_line().c_str());
      publish.write_file();
    });

    loop.run();
    publish.write_file();
    if (opt.server.progress)
      std::fprintf(stderr, "dc_server: exiting: %s\n", server.stats_line().c_str());
  }  // the server's destructor closes connections and removes socket files
  if (!pidfile.empty()) unlink(pidfile.c_str());
  return 0;
}
