// dc_client: the distcache local agent. This file does the process work in
// order: flags, descriptor limit, listening sockets (errors are seen before
// detaching), -daemon, -pidfile, -user, then the loop with its signal
// handlers; on SIGTERM/SIGINT it stops the loop, removes its UNIX socket
// files and pidfile, and exits 0. The multiplexing itself is the Agent's.
#include <errno.h>
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "agent/agent.h"
#include "agent/options.h"
#include "ev/daemon_util.h"
#include "ev/loop.h"
#include "net.h"

int main(int argc, char** argv) {
  signal(SIGPIPE, SIG_IGN);
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

  dc::raise_fd_limit();

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
      std::fprintf(stderr, "dc_client: %s\n", err.c_str());
      for (Opened& o : opened)  // do not leave our own socket files behind
        if (o.addr.kind == dc::Address::Kind::unix_path) unlink(o.addr.path.c_str());
      return 1;
    }
    dc::Address abs = a;
    if (abs.kind == dc::Address::Kind::unix_path) abs.path = dc::ev::absolute_path(abs.path);
    opened.push_back({std::move(fd), abs});
  }
  // A relative UNIX path for the server must survive -daemon's chdir("/").
  dc::Address server = opt.server;
  if (server.kind == dc::Address::Kind::unix_path) server.path = dc::ev::absolute_path(server.path);
  std::string pidfile = dc::ev::absolute_path(opt.pidfile);

  auto unlink_sockets = [&] {
    for (Opened& o : opened)
      if (o.addr.kind == dc::Address::Kind::unix_path) unlink(o.addr.path.c_str());
  };
  if (opt.daemon && !dc::ev::daemonize(err)) {
    std::fprintf(stderr, "dc_client: %s\n", err.c_str());
    unlink_sockets();
    return 1;
  }
  if (!pidfile.empty() && !dc::ev::write_file_atomic(pidfile, std::to_string(getpid()) + "\n")) {
    std::fprintf(stderr, "dc_client: cannot write the pidfile %s: %s\n", pidfile.c_str(),
                 strerror(errno));
    unlink_sockets();
    return 1;
  }
  if (!opt.user.empty() && !dc::ev::drop_privileges(opt.user, err)) {
    std::fprintf(stderr, "dc_client: -user: %s\n", err.c_str());
    unlink_sockets();
    if (!pidfile.empty()) unlink(pidfile.c_str());
    return 1;
  }

  {
    dc::ev::Loop loop;
    dc::agent::AgentConfig cfg;
    cfg.server = server;
    cfg.retry_ms = opt.retry_ms;
    cfg.idle_ms = opt.idle_ms;
    cfg.timeout_ms = opt.timeout_ms;
    cfg.max_pending = opt.max_pending;
    cfg.client_pending = opt.client_pending;
    cfg.max_out = opt.max_out;
    dc::agent::Agent agent(loop, cfg);
    for (Opened& o : opened) agent.add_listener(std::move(o.fd), o.addr);

    auto stop = [&] { loop.stop(); };
    dc::ev::Signal sigterm(loop, SIGTERM, stop);
    dc::ev::Signal sigint(loop, SIGINT, stop);
    dc::ev::Signal sighup(loop, SIGHUP, [&] {
      std::fprintf(stderr, "dc_client: %s\n", agent.stats_line().c_str());
      std::fflush(stderr);
    });
    loop.run();
  }  // the agent's destructor closes connections and removes socket files
  if (!pidfile.empty()) unlink(pidfile.c_str());
  return 0;
}
