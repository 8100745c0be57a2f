// tls_load: a steady stream of TLS connections for the fault tests, which
// records every connection so a script can judge what a fault cost.
//
//   tls_load -a PORT -b PORT [-threads N] -out FILE
//
// Each thread, until SIGTERM/SIGINT: a full handshake with the server on
// 127.0.0.1:A, an HTTP/1.0 request read to the end (so TLS 1.3 tickets and
// the server's cache writes are part of the connection), then the session
// it got offered to the server on 127.0.0.1:B the same way. Even threads
// speak TLS 1.2, odd ones TLS 1.3. Each connection is one line of FILE:
//
//   START_MS DURATION_MS SERVER(A|B) OFFERED(0|1) REUSED(0|1) OK(0|1) TLS(12|13)
//
// START_MS is CLOCK_REALTIME in milliseconds (the script compares it with
// bash's $EPOCHREALTIME); OK=0 is a failed connection (connect, handshake,
// or no "hello" in the answer within 10 s). Exit 0 after the signal.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace {

std::atomic<bool> g_stop{false};
std::mutex g_out_mu;
FILE* g_out = nullptr;

int64_t realtime_ms() {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  return int64_t(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

int64_t mono_ms() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

struct Result {
  bool ok = false;
  bool reused = false;
  SSL_SESSION* session = nullptr;  // owned by the caller when set
};

// One TLS connection to 127.0.0.1:port offering `offer` (may be null).
Result connect_once(SSL_CTX* ctx, int port, SSL_SESSION* offer) {
  Result r;
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return r;
  timeval tv{10, 0};  // a stuck server shows up as a failure, not a hang
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(uint16_t(port));
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
    close(fd);
    return r;
  }
  SSL* ssl = SSL_new(ctx);
  SSL_set_fd(ssl, fd);
  SSL_set_tlsext_host_name(ssl, "localhost");
  if (offer) SSL_set_session(ssl, offer);
  std::string body;
  if (SSL_connect(ssl) == 1) {
    static const char req[] = "GET / HTTP/1.0\r\n\r\n";
    if (SSL_write(ssl, req, int(sizeof req - 1)) > 0) {
      char buf[4096];
      int n;
      while ((n = SSL_read(ssl, buf, sizeof buf)) > 0) body.append(buf, size_t(n));
    }
    r.reused = SSL_session_reused(ssl);
    r.ok = body.find("hello from") != std::string::npos;
    if (r.ok) r.session = SSL_get1_session(ssl);
    // A clean shutdown, or OpenSSL may count the session as bad.
    SSL_shutdown(ssl);
  }
  ERR_clear_error();
  SSL_free(ssl);
  close(fd);
  return r;
}

void record(int64_t start, int64_t dur, char server, bool offered, const Result& r, int tls) {
  std::lock_guard<std::mutex> lock(g_out_mu);
  std::fprintf(g_out, "%lld %lld %c %d %d %d %d\n", (long long)start, (long long)dur, server,
               int(offered), int(r.reused), int(r.ok), tls);
}

void worker(int port_a, int port_b, int tls) {
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  int v = tls == 12 ? TLS1_2_VERSION : TLS1_3_VERSION;
  SSL_CTX_set_min_proto_version(ctx, v);
  SSL_CTX_set_max_proto_version(ctx, v);
  SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, nullptr);
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL);
  while (!g_stop) {
    int64_t s0 = realtime_ms(), m0 = mono_ms();
    Result full = connect_once(ctx, port_a, nullptr);
    record(s0, mono_ms() - m0, 'A', false, full, tls);
    if (!full.session || g_stop) {
      if (full.session) SSL_SESSION_free(full.session);
      continue;
    }
    s0 = realtime_ms();
    m0 = mono_ms();
    Result res = connect_once(ctx, port_b, full.session);
    record(s0, mono_ms() - m0, 'B', true, res, tls);
    SSL_SESSION_free(full.session);
    if (res.session) SSL_SESSION_free(res.session);
  }
  SSL_CTX_free(ctx);
}

[[noreturn]] void usage() {
  std::fputs("usage: tls_load -a PORT -b PORT [-threads N] -out FILE\n", stderr);
  std::exit(2);
}

}  // namespace

int main(int argc, char** argv) {
  int port_a = 0, port_b = 0, threads = 4;
  std::string out;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string f = argv[i], v = argv[i + 1];
    if (f == "-a")
      port_a = std::atoi(v.c_str());
    else if (f == "-b")
      port_b = std::atoi(v.c_str());
    else if (f == "-threads")
      threads = std::atoi(v.c_str());
    else if (f == "-out")
      out = v;
    else
      usage();
  }
  if (argc % 2 == 0 || port_a <= 0 || port_b <= 0 || threads < 1 || out.empty()) usage();
  g_out = std::fopen(out.c_str(), "w");
  if (!g_out) {
    std::perror(out.c_str());
    return 1;
  }
  signal(SIGPIPE, SIG_IGN);
  // The workers never see the stop signal (an interrupted read would look
  // like a failed connection): the main thread waits for it, and each
  // worker ends after its current connection.
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGTERM);
  sigaddset(&stop, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);
  std::vector<std::thread> ts;
  for (int i = 0; i < threads; ++i) ts.emplace_back(worker, port_a, port_b, i % 2 ? 13 : 12);
  int sig = 0;
  sigwait(&stop, &sig);
  g_stop = true;
  for (auto& t : ts) t.join();
  std::fclose(g_out);
  return 0;
}
