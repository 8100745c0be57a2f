// TLS for the daemons' connections (dc_server's IP listeners, dc_client's
// upstream): TLS 1.3 only, both sides authenticated by certificates chained
// to one CA (-tls-ca). A TlsContext is made once at start from the files the
// flags name (an unreadable file, a key that does not match its
// certificate, a CA file without a certificate: one line naming the file,
// and the daemon exits); it then wraps each connected socket in a Transport
// (ev/transport.h) that is driven by the Connection's read and write
// readiness on the daemon's own loop: no threads, no blocking.
//
// Both roles: no renegotiation (TLS 1.3 has none; key updates are fine), no
// session tickets or session cache (connections are long-lived), close_notify
// on an orderly close, a peer's end without close_notify taken as an end of
// stream (the protocol's framing shows a cut message). OpenSSL's errors are
// turned into text in one place (tls.cc, take_errors), which empties the
// thread's error queue.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "ev/loop.h"
#include "ev/transport.h"

typedef struct ssl_ctx_st SSL_CTX;

namespace dc::ev {

struct TlsFiles {
  std::string cert;  // -tls-cert: PEM, the certificate and any intermediates
  std::string key;   // -tls-key: PEM, its private key
  std::string ca;    // -tls-ca: PEM, the CA (or CAs) the peer's chain must end in
  // A client's: the name the server's certificate must carry (DNS name or
  // IP address; -tls-name, by default the host of -server).
  std::string name;
};

class TlsContext {
 public:
  enum class Role : uint8_t { server, client };

  // Loads the files. nullptr with `err` one line naming the flag, the file
  // and what to do, when a file is missing or unreadable, a PEM is
  // malformed, the key does not match the certificate or the CA file holds
  // no certificate.
  static std::unique_ptr<TlsContext> load(Role role, const TlsFiles& f, std::string& err);
  ~TlsContext();
  TlsContext(const TlsContext&) = delete;
  TlsContext& operator=(const TlsContext&) = delete;

  // A TLS transport over `fd` (a connected non-blocking socket, borrowed).
  // nullptr when OpenSSL cannot make one (no memory), `err` saying so.
  std::unique_ptr<Transport> wrap(int fd, std::string& err) const;
  // A client's, checking the server's certificate for `name` (a DNS name or
  // an IP address) instead of the context's: one context for many servers.
  std::unique_ptr<Transport> wrap(int fd, const std::string& name, std::string& err) const;
  Role role() const { return role_; }
  const std::string& peer_name() const { return name_; }

 private:
  TlsContext(Role role, SSL_CTX* ctx, std::string name) : role_(role), ctx_(ctx), name_(name) {}
  Role role_;
  SSL_CTX* ctx_;
  std::string name_;
};

// Whether the files of `f` are all given (true) or none (false); one given
// without the others is an error: `err` names what is missing.
bool tls_flags_complete(const TlsFiles& f, bool& any, std::string& err);

// The rate-limited log of refused TLS peers (dc_server's clients that had
// no certificate, one from another CA, an expired one, or spoke plaintext):
// the first of a quiet spell is told at once with its reason, the rest of a
// burst in one line at most every 10 s, so a scan of the port cannot fill
// the log.
class TlsRefusals {
 public:
  TlsRefusals(Loop& loop, std::string name);
  // A peer was refused; `why` (Transport::error()) names it and the reason.
  void note(const std::string& why);
  uint64_t count() const { return count_; }

 private:
  void report();
  static constexpr int64_t kEveryMs = 10000;
  Loop& loop_;
  std::string name_;
  uint64_t count_ = 0;
  uint64_t unreported_ = 0;
  std::string last_;
  int64_t next_ms_ = 0;
  Timer timer_;
};

}  // namespace dc::ev
