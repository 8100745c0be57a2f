// The Redis backend: see redis_backend.h.
#include "agent/redis_backend.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "agent/agent.h"

namespace dc::agent {

namespace {

std::string trim(std::string s) {
  while (!s.empty() && std::strchr(" \t\r\n", s.back())) s.pop_back();
  size_t b = 0;
  while (b < s.size() && std::strchr(" \t", s[b])) ++b;
  return s.substr(b);
}

}  // namespace

bool load_redis_auth(const std::string& path, RedisConfig& out, std::string& err) {
  auto fail = [&](const std::string& why) {
    err = "-redis-auth " + path + ": " + why;
    return false;
  };
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) return fail(std::strerror(errno));
  struct stat st;
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > 4096) {
    ::close(fd);
    return fail("not a regular file of at most 4 KiB");
  }
  if ((st.st_mode & 077) != 0) {
    ::close(fd);
    return fail("group or others may access it; make it readable by its owner only: chmod 600 " +
                path);
  }
  std::string text(size_t(st.st_size), '\0');
  ssize_t n = ::read(fd, text.data(), text.size());
  ::close(fd);
  if (n < 0) return fail(std::strerror(errno));
  text.resize(size_t(n));
  std::string line = trim(text.substr(0, text.find('\n')));
  if (line.empty()) return fail("empty: write \"password\" or \"user password\" on its first line");
  size_t sp = line.find_first_of(" \t");
  if (sp == std::string::npos) {
    out.user.clear();
    out.password = line;
  } else {
    out.user = line.substr(0, sp);
    out.password = trim(line.substr(sp + 1));
  }
  return true;
}

LinkSettings link_settings(const AgentConfig& cfg, const RedisConfig& rc, const Address& node,
                           std::string what) {
  LinkSettings s;
  s.addr = node;
  s.user = rc.user;
  s.password = rc.password;
  s.db = rc.db;
  s.tls = cfg.tls;
  s.tls_name = cfg.tls_name.empty() ? node.host : cfg.tls_name;
  s.what = std::move(what);
  return s;
}

RedisBackend::RedisBackend(ev::Loop& loop, BackendHost& host, const AgentConfig& cfg,
                           RedisConfig rc)
    : loop_(loop),
      rc_(std::move(rc)),
      link_(loop, host, cfg,
            link_settings(cfg, rc_, rc_.server,
                          "Redis " + rc_.server.host + ":" + std::to_string(rc_.server.port))) {
  key_ = rc_.prefix;
}

std::optional<Disconnected> RedisBackend::submit(const Ticket& t, const proto::Message& m,
                                                 proto::Bytes id) {
  if (!link_.up()) return Disconnected::no_upstream;
  key_.resize(rc_.prefix.size());
  key_.append(reinterpret_cast<const char*>(id.data()), id.size());
  RedisLink::Request r;
  r.ticket = t;
  r.cmd = request_command(m, key_, r.fixed);
  r.since_ms = loop_.now_ms();
  return link_.submit(std::move(r));
}

void RedisBackend::append_stats(std::vector<ev::Stat>& t) {
  using ev::StatKind;
  t.push_back({"redis_up", "backend_node_up", R"(node="redis")", StatKind::gauge,
               "Whether the Redis backend is connected and ready (AUTH and SELECT done).",
               int64_t(up() ? 1 : 0)});
  t.push_back({"redis_refusals", "redis_refusals_total", "", StatKind::counter,
               "Error replies from Redis (answered DISCONNECTED).", int64_t(link_.refusals())});
  t.push_back({"redis_pending", "backend_node_pending", R"(node="redis")", StatKind::gauge,
               "Requests sent to Redis and not answered yet.", int64_t(link_.pending())});
}

}  // namespace dc::agent
