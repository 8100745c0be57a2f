// TLS for the daemons' connections: see tls.h.
#include "ev/tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <sys/socket.h>

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <utility>

namespace dc::ev {

namespace {

// The one place OpenSSL's errors become text. Reads the reasons of the
// thread's error queue (the first two that differ; the rest repeat them in
// other words) and leaves the queue empty, so an old error is never blamed
// on a later call.
std::string take_errors() {
  std::string s;
  int kept = 0;
  while (unsigned long e = ERR_get_error()) {
    if (kept == 2) continue;  // drained, not kept
    char buf[160];
    const char* r = ERR_reason_error_string(e);
    if (!r) {
      ERR_error_string_n(e, buf, sizeof buf);
      r = buf;
    }
    if (s.find(r) != std::string::npos) continue;
    if (!s.empty()) s += ": ";
    s += r;
    ++kept;
  }
  return s;
}

// "1.2.3.4:5678" / "[::1]:5678" of the socket's peer, for log lines.
std::string peer_of(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return "a client";
  char host[INET6_ADDRSTRLEN] = "?";
  if (ss.ss_family == AF_INET) {
    auto* in = reinterpret_cast<sockaddr_in*>(&ss);
    inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
    return std::string(host) + ":" + std::to_string(ntohs(in->sin_port));
  }
  if (ss.ss_family == AF_INET6) {
    auto* in6 = reinterpret_cast<sockaddr_in6*>(&ss);
    inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
    return "[" + std::string(host) + "]:" + std::to_string(ntohs(in6->sin6_port));
  }
  return "a client";
}

bool readable(const char* flag, const std::string& path, std::string& err) {
  FILE* f = std::fopen(path.c_str(), "r");
  if (!f) {
    err = std::string(flag) + " " + path + ": cannot read it (" + std::strerror(errno) +
          "): give a PEM file this user can read";
    return false;
  }
  std::fclose(f);
  return true;
}

using CtxPtr = std::unique_ptr<SSL_CTX, decltype(&SSL_CTX_free)>;

// Puts every certificate of the PEM file `path` into the context's trust
// store (and, for a server, into the list of CAs it asks clients for).
// Returns how many, or -1 when the file cannot be opened.
int load_ca(SSL_CTX* ctx, const std::string& path, bool server) {
  BIO* in = BIO_new_file(path.c_str(), "r");
  if (!in) return -1;
  X509_STORE* store = SSL_CTX_get_cert_store(ctx);
  int n = 0;
  while (X509* x = PEM_read_bio_X509(in, nullptr, nullptr, nullptr)) {
    if (X509_STORE_add_cert(store, x) == 1) ++n;
    if (server) SSL_CTX_add_client_CA(ctx, x);
    X509_free(x);
  }
  BIO_free(in);
  take_errors();  // the end of the file reads as "no start line"
  return n;
}

bool is_ip_literal(const std::string& name) {
  in6_addr a;
  return inet_pton(AF_INET, name.c_str(), &a) == 1 || inet_pton(AF_INET6, name.c_str(), &a) == 1;
}

class TlsTransport final : public Transport {
 public:
  TlsTransport(SSL* ssl, std::string peer, bool client)
      : ssl_(ssl), peer_(std::move(peer)), client_(client) {
    SSL_set_app_data(ssl_, this);
  }
  ~TlsTransport() override { close(); }

  IoResult handshake() override {
    if (established_) return IoResult::ok;
    if (!ssl_) return IoResult::error;
    ERR_clear_error();
    if (!done_) {
      int r = SSL_do_handshake(ssl_);
      if (r != 1) return result(r);
      done_ = true;
    }
    if (client_ && !confirmed_) {
      // In TLS 1.3 a client has finished before the server has checked its
      // certificate; the server's refusal would come as an alert after our
      // first requests. The server sends one session ticket once it has
      // accepted us, and nothing before our first request: until that
      // ticket (on_ticket) the connection is not usable.
      uint8_t b;
      size_t n = 0;
      int r = SSL_peek_ex(ssl_, &b, 1, &n);
      if (r != 1) {
        IoResult res = result(r);
        if (!(res == IoResult::want_read && confirmed_)) return res;
      }
      confirmed_ = true;
    }
    established_ = true;
    return IoResult::ok;
  }

  // A client's new-session callback: the server's ticket (see handshake()).
  static int on_ticket(SSL* ssl, SSL_SESSION*) {
    if (auto* t = static_cast<TlsTransport*>(SSL_get_app_data(ssl))) t->confirmed_ = true;
    return 0;  // not kept: connections are not resumed
  }

  IoStep read(std::span<uint8_t> buf) override {
    if (!ssl_) return {IoResult::error};
    ERR_clear_error();
    size_t n = 0;
    int r = SSL_read_ex(ssl_, buf.data(), buf.size(), &n);
    if (r == 1) return {IoResult::ok, n};
    return {result(r)};
  }

  IoStep write(std::span<const uint8_t> buf) override {
    if (!ssl_) return {IoResult::error};
    ERR_clear_error();
    size_t n = 0;
    int r = SSL_write_ex(ssl_, buf.data(), buf.size(), &n);
    if (r == 1) return {IoResult::ok, n};
    return {result(r)};
  }

  void shutdown() override {
    // After a fatal error OpenSSL must not send anything more; before the
    // handshake there is no session to close.
    if (!ssl_ || !done_ || failed_) return;
    ERR_clear_error();
    (void)SSL_shutdown(ssl_);  // sends close_notify; the peer's is not waited for
    ERR_clear_error();
  }

  void close() override {
    if (ssl_) SSL_free(ssl_);
    ssl_ = nullptr;
  }

  bool pending() const override { return ssl_ && SSL_has_pending(ssl_) == 1; }
  // OpenSSL does not tell; its record buffers are about this much while a
  // connection is busy (a server's are given back when idle).
  size_t heap_bytes() const override { return ssl_ ? 8192 : 0; }
  const std::string& error() const override { return err_; }

 private:
  // What a failed SSL_* call means (SSL_get_error), with the reason taken
  // off the error queue when it is a failure.
  IoResult result(int r) {
    int e = SSL_get_error(ssl_, r);
    int saved_errno = errno;
    switch (e) {
      case SSL_ERROR_WANT_READ:
        return IoResult::want_read;
      case SSL_ERROR_WANT_WRITE:
        return IoResult::want_write;
      case SSL_ERROR_ZERO_RETURN:
        take_errors();
        return IoResult::closed;
      case SSL_ERROR_SYSCALL: {
        std::string why = take_errors();
        // No reason and no errno: the peer closed the socket (before the
        // handshake that is a port probe, not a refusal worth a line).
        if (why.empty() && saved_errno == 0) return IoResult::closed;
        fail(why.empty() ? std::strerror(saved_errno) : why);
        return IoResult::error;
      }
      default: {
        std::string why = take_errors();
        long v = SSL_get_verify_result(ssl_);
        if (v != X509_V_OK)
          why += std::string(why.empty() ? "" : " ") + "(" + X509_verify_cert_error_string(v) + ")";
        fail(why.empty() ? "TLS failure" : why);
        return IoResult::error;
      }
    }
  }

  void fail(const std::string& why) {
    failed_ = true;
    err_ = peer_.empty() ? why : peer_ + ": " + why;
  }

  SSL* ssl_;
  std::string peer_;  // a server's client, for the log; "" for a client
  std::string err_;
  bool client_;
  bool done_ = false;         // OpenSSL's handshake is done
  bool confirmed_ = false;    // a client: the server's ticket came (it accepted us)
  bool established_ = false;  // handshake() said ok
  bool failed_ = false;
};

}  // namespace

bool tls_flags_complete(const TlsFiles& f, bool& any, std::string& err) {
  any = !f.cert.empty() || !f.key.empty() || !f.ca.empty();
  if (!any) return true;
  std::string missing;
  if (f.cert.empty()) missing += " -tls-cert";
  if (f.key.empty()) missing += " -tls-key";
  if (f.ca.empty()) missing += " -tls-ca";
  if (missing.empty()) return true;
  err = "TLS needs -tls-cert, -tls-key and -tls-ca together: missing" + missing;
  return false;
}

std::unique_ptr<TlsContext> TlsContext::load(Role role, const TlsFiles& f, std::string& err) {
  ERR_clear_error();
  if (!readable("-tls-cert", f.cert, err) || !readable("-tls-key", f.key, err) ||
      !readable("-tls-ca", f.ca, err))
    return nullptr;
  bool server = role == Role::server;
  CtxPtr ctx(SSL_CTX_new(server ? TLS_server_method() : TLS_client_method()), SSL_CTX_free);
  if (!ctx) {
    err = "cannot make a TLS context: " + take_errors();
    return nullptr;
  }
  SSL_CTX* c = ctx.get();
  SSL_CTX_set_min_proto_version(c, TLS1_3_VERSION);
  SSL_CTX_set_max_proto_version(c, TLS1_3_VERSION);
  // AES-128-GCM first: every cache entry crosses twice (ADD, GET), and it
  // is about a third cheaper than AES-256 per byte with AES-NI.
  SSL_CTX_set_ciphersuites(c,
                           "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:"
                           "TLS_CHACHA20_POLY1305_SHA256");
  SSL_CTX_set_options(c, SSL_OP_NO_RENEGOTIATION | SSL_OP_IGNORE_UNEXPECTED_EOF);
  // Connections live long: nothing is resumed. A server still sends one
  // ticket, as the sign a client waits for that its certificate was
  // accepted (TlsTransport::handshake); the client drops it.
  if (server) {
    SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_num_tickets(c, 1);
  } else {
    SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL);
    SSL_CTX_sess_set_new_cb(c, TlsTransport::on_ticket);
  }
  // The output buffer moves (the connection compacts it) and a write may
  // take part of it, as send() does.
  long mode = SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER;
  // A server may hold thousands of idle clients: their record buffers are
  // given back between reads.
  if (server) mode |= SSL_MODE_RELEASE_BUFFERS;
  SSL_CTX_set_mode(c, mode);
  // Whole reads of what the socket holds, not a header then a body; what is
  // read ahead is drained by reading until want_read (Transport::pending).
  SSL_CTX_set_read_ahead(c, 1);
  if (SSL_CTX_use_certificate_chain_file(c, f.cert.c_str()) != 1) {
    err = "-tls-cert " + f.cert + ": not a PEM certificate (" + take_errors() + ")";
    return nullptr;
  }
  EVP_PKEY* key = nullptr;
  if (BIO* in = BIO_new_file(f.key.c_str(), "r")) {
    key = PEM_read_bio_PrivateKey(in, nullptr, nullptr, nullptr);
    BIO_free(in);
  }
  if (!key) {
    err = "-tls-key " + f.key + ": not a PEM private key (" + take_errors() + ")";
    return nullptr;
  }
  // Refused when it is not the certificate's key.
  int used = SSL_CTX_use_PrivateKey(c, key);
  EVP_PKEY_free(key);
  if (used != 1 || SSL_CTX_check_private_key(c) != 1) {
    take_errors();
    err = "-tls-key " + f.key + " does not match the certificate in -tls-cert " + f.cert +
          ": give the key that certificate was made for";
    return nullptr;
  }
  int n = load_ca(c, f.ca, server);
  if (n <= 0) {
    err = "-tls-ca " + f.ca +
          ": holds no PEM certificate: give the certificate of the CA that signs the peers' "
          "certificates";
    return nullptr;
  }
  // A server asks every client for a certificate and refuses one without.
  SSL_CTX_set_verify(c, SSL_VERIFY_PEER | (server ? SSL_VERIFY_FAIL_IF_NO_PEER_CERT : 0), nullptr);
  if (!server && f.name.empty()) {
    err = "-tls-name: no name to check the server's certificate against: give -tls-name";
    return nullptr;
  }
  return std::unique_ptr<TlsContext>(new TlsContext(role, ctx.release(), f.name));
}

TlsContext::~TlsContext() {
  SSL_CTX_free(ctx_);
}

std::unique_ptr<Transport> TlsContext::wrap(int fd, std::string& err) const {
  return wrap(fd, name_, err);
}

std::unique_ptr<Transport> TlsContext::wrap(int fd, const std::string& name,
                                            std::string& err) const {
  ERR_clear_error();
  SSL* ssl = SSL_new(ctx_);
  if (!ssl || SSL_set_fd(ssl, fd) != 1) {
    if (ssl) SSL_free(ssl);
    err = "cannot start TLS: " + take_errors();
    return nullptr;
  }
  if (role_ == Role::server) {
    SSL_set_accept_state(ssl);
    return std::make_unique<TlsTransport>(ssl, peer_of(fd), false);
  }
  SSL_set_connect_state(ssl);
  SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
  // SSL_set1_host takes an IP address as one (checked against the
  // certificate's IP addresses) and anything else as a DNS name.
  bool ok = SSL_set1_host(ssl, name.c_str()) == 1;
  if (ok && !is_ip_literal(name)) ok = SSL_set_tlsext_host_name(ssl, name.c_str()) == 1;
  if (!ok) {
    SSL_free(ssl);
    err = "cannot start TLS with the name " + name + ": " + take_errors();
    return nullptr;
  }
  return std::make_unique<TlsTransport>(ssl, "", true);
}

TlsRefusals::TlsRefusals(Loop& loop, std::string name)
    : loop_(loop), name_(std::move(name)), timer_(loop, [this] { report(); }) {}

void TlsRefusals::note(const std::string& why) {
  ++count_;
  ++unreported_;
  last_ = why;
  if (timer_.active()) return;
  // The first of a quiet spell at once, the rest of a burst together.
  timer_.start(std::max<int64_t>(next_ms_ - loop_.now_ms(), 0));
}

void TlsRefusals::report() {
  if (unreported_ == 0) return;
  if (unreported_ == 1)
    std::fprintf(stderr, "%s: refused a TLS client, %s", name_.c_str(), last_.c_str());
  else
    std::fprintf(stderr, "%s: refused %" PRIu64 " TLS clients in 10 s, the last %s", name_.c_str(),
                 unreported_, last_.c_str());
  std::fprintf(stderr,
               ": a client needs TLS 1.3 and a valid certificate issued by the -tls-ca CA\n");
  std::fflush(stderr);
  unreported_ = 0;
  next_ms_ = loop_.now_ms() + kEveryMs;
}

}  // namespace dc::ev
