// dc_server: the distcache session cache daemon. This file does the process
// work in order: flags, descriptor limit, listening sockets (errors are seen
// before detaching), -daemon, -pidfile, -user, then the loop with its signal
// handlers; on SIGTERM/SIGINT (and SIGUSR1/SIGUSR2 with -killable) it stops
// the loop, removes its UNIX socket files and pidfile, and exits 0.
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

#include "ev/daemon_util.h"
#include "ev/loop.h"
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

  long fd_limit = dc::raise_fd_limit();
  size_t max_conns = dc::ev::connection_cap(opt.max_conns, fd_limit);
  if (opt.max_conns_given && max_conns < opt.max_conns)
    std::fprintf(stderr,
                 "dc_server: -maxconns %zu is more than the descriptor limit (%ld) allows: using "
                 "%zu; raise the limit (ulimit -n, systemd LimitNOFILE=) to serve more\n",
                 opt.max_conns, fd_limit, max_conns);

  // -stats is relative to where we were started, not to -daemon's "/".
  std::string stats_file = dc::ev::absolute_path(opt.stats_file);
  std::vector<dc::ev::OpenedListener> opened;
  std::string pidfile;
  if (!dc::ev::start_daemon("dc_server", opt.listen, opt.proc, opened, pidfile)) return 1;

  // The session heap grows in 32 MB steps, so the store can ask for huge
  // pages on each new step before it is touched (see advise_heap() in
  // store.cc). Untouched, the pad costs no resident memory.
  mallopt(M_TOP_PAD, 32 << 20);

  int status = 0;
  {
    dc::ev::Loop loop;
    dc::ev::ConnectionLimits limits;
    limits.max_conns = max_conns;
    limits.frame_timeout_ms = opt.frame_timeout_ms;
    limits.memory = opt.conn_memory;
    limits.name = "dc_server";
    loop.set_limits(limits);
    dc::server::Store store({opt.sessions, opt.memory, opt.max_lifetime_ms}, random_seed());
    dc::server::ServerConfig cfg;
    cfg.progress = opt.progress;
    dc::server::Server server(loop, store, cfg);
    for (dc::ev::OpenedListener& o : opened) server.add_listener(std::move(o.fd), o.addr);

    auto write_stats = [&] {
      if (!stats_file.empty()) dc::ev::write_file_atomic(stats_file, server.stats_line() + "\n");
    };
    dc::ev::Timer stats_timer(loop, write_stats);
    if (!stats_file.empty()) {
      write_stats();
      stats_timer.start(opt.stats_interval_ms, opt.stats_interval_ms);
    }

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
      write_stats();
    });

    loop.run();
    write_stats();
    if (opt.progress) std::fprintf(stderr, "dc_server: exiting: %s\n", server.stats_line().c_str());
  }  // the server's destructor closes connections and removes socket files
  if (!pidfile.empty()) unlink(pidfile.c_str());
  return status;
}
