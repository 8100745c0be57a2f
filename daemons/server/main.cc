// dc_server: the distcache session cache daemon. This file does the process
// work in order: flags, descriptor limit, listening sockets (errors are seen
// before detaching), -daemon, -pidfile, -user, then the loop with its signal
// handlers; on SIGTERM/SIGINT (and SIGUSR1/SIGUSR2 with -killable) it stops
// the loop, removes its UNIX socket files and pidfile, and exits 0.
#include <errno.h>
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

  dc::raise_fd_limit();

  // Open every listening socket before detaching so that errors reach the
  // terminal and the exit status.
  dc::ListenOptions lo;
  lo.owner = opt.sockowner;
  lo.group = opt.sockgroup;
  lo.perms = opt.sockperms;
  struct Opened {
    dc::UniqueFd fd;
    dc::Address addr;  // UNIX paths made absolute (for removal after chdir)
  };
  std::vector<Opened> opened;
  for (const dc::Address& a : opt.listen) {
    dc::UniqueFd fd = dc::listen_on(a, lo, err);
    if (!fd) {
      std::fprintf(stderr, "dc_server: %s\n", err.c_str());
      for (Opened& o : opened)  // do not leave our own socket files behind
        if (o.addr.kind == dc::Address::Kind::unix_path) unlink(o.addr.path.c_str());
      return 1;
    }
    dc::Address abs = a;
    if (abs.kind == dc::Address::Kind::unix_path) abs.path = dc::ev::absolute_path(abs.path);
    opened.push_back({std::move(fd), abs});
  }
  std::string pidfile = dc::ev::absolute_path(opt.pidfile);
  std::string stats_file = dc::ev::absolute_path(opt.stats_file);

  if (opt.daemon && !dc::ev::daemonize(err)) {
    std::fprintf(stderr, "dc_server: %s\n", err.c_str());
    return 1;
  }
  if (!pidfile.empty() && !dc::ev::write_file_atomic(pidfile, std::to_string(getpid()) + "\n")) {
    std::fprintf(stderr, "dc_server: cannot write the pidfile %s: %s\n", pidfile.c_str(),
                 strerror(errno));
    return 1;
  }
  if (!opt.user.empty() && !dc::ev::drop_privileges(opt.user, err)) {
    std::fprintf(stderr, "dc_server: -user: %s\n", err.c_str());
    if (!pidfile.empty()) unlink(pidfile.c_str());
    return 1;
  }

  int status = 0;
  {
    dc::ev::Loop loop;
    dc::server::Store store({opt.sessions, opt.memory}, random_seed());
    dc::server::ServerConfig cfg;
    cfg.progress = opt.progress;
    dc::server::Server server(loop, store, cfg);
    for (Opened& o : opened) server.add_listener(std::move(o.fd), o.addr);

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
