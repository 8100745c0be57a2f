// The -metrics HTTP responder: see http_metrics.h.
#include "ev/http_metrics.h"

#include <errno.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string_view>

namespace dc::ev {

// One scrape: the request is read whole into `in`, then the answer is
// written from `out`; one deadline timer covers each of the two phases.
struct MetricsServer::Client {
  Client(MetricsServer& s, UniqueFd f) : server(s), fd(std::move(f)) {
    ev_io_init(&io, on_io, fd.get(), EV_READ);
    io.data = this;
    ev_timer_init(&timer, on_timeout, double(kTimeoutMs) / 1000.0, 0.0);
    timer.data = this;
    ev_io_start(s.loop_.raw(), &io);
    ev_timer_start(s.loop_.raw(), &timer);
  }
  ~Client() {
    ev_io_stop(server.loop_.raw(), &io);
    ev_timer_stop(server.loop_.raw(), &timer);
  }

  static void on_io(struct ev_loop*, ev_io* w, int) {
    auto* c = static_cast<Client*>(w->data);
    if (c->out.empty())
      c->read();
    else
      c->write();  // may destroy c
  }
  // Too slow, reading or written to: closed without more ado.
  static void on_timeout(struct ev_loop*, ev_timer* w, int) {
    auto* c = static_cast<Client*>(w->data);
    c->server.finish(c);
  }

  void read();
  void answer(std::string_view request);
  void respond(const char* status, const std::string& type, const std::string& body);
  void write();

  MetricsServer& server;
  UniqueFd fd;
  ev_io io{};
  ev_timer timer{};
  std::string in;
  std::string out;
  size_t out_off = 0;
};

void MetricsServer::Client::read() {
  char buf[1024];
  for (;;) {
    ssize_t n = ::recv(fd.get(), buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    if (n <= 0) return server.finish(this);  // gone before asking
    in.append(buf, size_t(n));
    // Headers are not needed, only their end: a request is whole at the
    // blank line (a bare LF is taken too, as most servers do).
    size_t end = in.find("\r\n\r\n");
    if (end == std::string::npos) end = in.find("\n\n");
    if (end != std::string::npos && end < kMaxRequest) return answer(in);
    if (in.size() >= kMaxRequest) return server.finish(this);  // too large: not worth an answer
  }
}

void MetricsServer::Client::answer(std::string_view request) {
  // The request line: METHOD SP TARGET SP HTTP/1.x
  std::string_view line = request.substr(0, request.find('\n'));
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  size_t sp1 = line.find(' ');
  size_t sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos || sp1 == 0 || sp2 == sp1 + 1 ||
      line.substr(sp2 + 1).substr(0, 5) != "HTTP/")
    return respond("400 Bad Request", "text/plain; charset=utf-8", "bad request\n");
  std::string_view method = line.substr(0, sp1);
  std::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  std::string_view path = target.substr(0, target.find('?'));
  if (method != "GET" || path != "/metrics")
    return respond("404 Not Found", "text/plain; charset=utf-8",
                   "not found: this daemon serves GET /metrics\n");
  respond("200 OK", "text/plain; version=0.0.4; charset=utf-8", server.body_());
}

void MetricsServer::Client::respond(const char* status, const std::string& type,
                                    const std::string& body) {
  out = std::string("HTTP/1.1 ") + status + "\r\nContent-Type: " + type +
        "\r\nContent-Length: " + std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" +
        body;
  in.clear();
  in.shrink_to_fit();
  // Nothing more is read; the answer gets its own deadline.
  ev_io_stop(server.loop_.raw(), &io);
  ev_io_set(&io, fd.get(), EV_WRITE);
  ev_io_start(server.loop_.raw(), &io);
  ev_timer_stop(server.loop_.raw(), &timer);
  ev_timer_set(&timer, double(kTimeoutMs) / 1000.0, 0.0);
  ev_timer_start(server.loop_.raw(), &timer);
  write();
}

void MetricsServer::Client::write() {
  while (out_off < out.size()) {
    ssize_t n = ::send(fd.get(), out.data() + out_off, out.size() - out_off, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;  // on writability
    if (n <= 0) break;
    out_off += size_t(n);
  }
  // All sent (or the peer is gone): end our side so the peer reads to EOF.
  ::shutdown(fd.get(), SHUT_WR);
  server.finish(this);
}

UniqueFd MetricsServer::open_socket(const Address& a, std::string& err) {
  if (a.kind != Address::Kind::ip) {
    err = "-metrics: " + a.to_string() + " is not an IP address (IP:port or IP:host:port)";
    return UniqueFd();
  }
  UniqueFd fd = listen_on(a, ListenOptions{}, err);
  if (!fd) err = "-metrics: " + err;
  return fd;
}

MetricsServer::MetricsServer(Loop& loop, UniqueFd fd, const Address& a, BodyFn body)
    : loop_(loop),
      body_(std::move(body)),
      listener_(loop, std::move(fd), a, [this](UniqueFd c) { accept(std::move(c)); }) {}

MetricsServer::~MetricsServer() = default;

void MetricsServer::accept(UniqueFd fd) {
  if (clients_.size() >= kMaxClients) return;  // closed at once: a scraper retries
  auto c = std::make_unique<Client>(*this, std::move(fd));
  Client* key = c.get();
  clients_.emplace(key, std::move(c));
}

void MetricsServer::finish(Client* c) {
  clients_.erase(c);  // closes its socket
}

StatsPublisher::StatsPublisher(Loop& loop, const common::StatsOptions& o, std::string prefix,
                               TableFn table, UniqueFd metrics_fd)
    : opt_(o),
      prefix_(std::move(prefix)),
      table_(std::move(table)),
      timer_(loop, [this] { write_file(); }) {
  if (metrics_fd)
    metrics_ = std::make_unique<MetricsServer>(loop, std::move(metrics_fd), *o.metrics, [this] {
      return prometheus_text(prefix_, table_());
    });
  if (!opt_.file.empty()) {
    write_file();
    timer_.start(opt_.interval_ms, opt_.interval_ms);
  }
}

void StatsPublisher::write_file() {
  if (opt_.file.empty()) return;
  // Through a temporary file in the same directory and rename(2): a reader
  // (node_exporter's textfile collector reads only *.prom) never sees half.
  common::write_file_atomic(opt_.file, text());
}

std::string StatsPublisher::text() {
  if (opt_.format == common::StatsFormat::prom) return prometheus_text(prefix_, table_());
  return stats_line(table_()) + "\n";
}

}  // namespace dc::ev
