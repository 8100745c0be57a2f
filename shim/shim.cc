// libdistcache_shim.so: gives an unmodified OpenSSL 3 server a distributed
// session cache when loaded with LD_PRELOAD and DC_CACHE_ADDR set.
//
// It interposes SSL_CTX_new / SSL_CTX_new_ex (to attach the cache to every
// context that can act as a server), the session callback setters and
// getters (the application's callbacks are recorded and chained instead of
// replacing ours, and the getters still return them), and the calls that
// make a connection or fix its role (SSL_new, SSL_set_connect_state,
// SSL_connect, SSL_set_accept_state, SSL_clear_options): the ticket policy
// is applied per connection, to server connections only, so a context
// that also makes client connections (TLS_method: nginx upstreams, Python,
// curl) keeps its options and its clients keep their tickets. SSL_CTX_ctrl
// is watched for the cache mode: the callbacks respect SSL_SESS_CACHE_OFF,
// and the operator is told once. The real functions come from
// dlsym(RTLD_NEXT, ...); shim.map exports only these symbols.
//
// With DC_CACHE_ADDR unset (or empty) every interposer only forwards to the
// real function. Nothing here can fail the host's start-up: a malformed
// variable gets one line on stderr and a safe default, a malformed address
// disables the cache. Connections are opened lazily, per thread, by the
// worker that runs handshakes (libdistcache_ssl), so forking masters and
// threaded servers work.
#include <dlfcn.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

// The version-specific client methods are deprecated, not gone: a context
// made with one of them is recognised as client-only.
#define OPENSSL_SUPPRESS_DEPRECATED
#include <distcache/dc_ssl.h>
#include <openssl/ssl.h>

#include "decimal.h"
#include "ssl_attach.h"

#define DC_SHIM_EXPORT extern "C" __attribute__((visibility("default")))

namespace dc::shim {
namespace {

using ssl::LogLevel;

// ---- the real OpenSSL functions ----

template <typename F>
void resolve(F& fn, const char* name) {
  fn = reinterpret_cast<F>(dlsym(RTLD_NEXT, name));
  if (fn == nullptr) {
    // Without the real function the host cannot work at all; say why.
    const char* why = dlerror();
    fprintf(stderr, "distcache-shim: cannot find the real %s: %s\n", name, why ? why : "?");
    abort();
  }
}

// The real functions, found once, at the first interposed call, and handed
// to the glue (ssl_attach.h): the one table both use.
const ssl::RealFns& real() {
  static const bool resolved = [] {
    ssl::RealFns x;
    resolve(x.ctx_new, "SSL_CTX_new");
    resolve(x.ctx_new_ex, "SSL_CTX_new_ex");
    resolve(x.ctx_ctrl, "SSL_CTX_ctrl");
    resolve(x.ctx_callback_ctrl, "SSL_CTX_callback_ctrl");
    resolve(x.ssl_new, "SSL_new");
    resolve(x.set_connect_state, "SSL_set_connect_state");
    resolve(x.set_accept_state, "SSL_set_accept_state");
    resolve(x.connect, "SSL_connect");
    resolve(x.clear_options, "SSL_clear_options");
    resolve(x.sess_set_new_cb, "SSL_CTX_sess_set_new_cb");
    resolve(x.sess_set_get_cb, "SSL_CTX_sess_set_get_cb");
    resolve(x.sess_set_remove_cb, "SSL_CTX_sess_set_remove_cb");
    resolve(x.sess_get_new_cb, "SSL_CTX_sess_get_new_cb");
    resolve(x.sess_get_get_cb, "SSL_CTX_sess_get_get_cb");
    resolve(x.sess_get_remove_cb, "SSL_CTX_sess_get_remove_cb");
    resolve(x.set_ticket_key_cb, "SSL_CTX_set_tlsext_ticket_key_evp_cb");
    ssl::set_real_fns(x);
    return true;
  }();
  (void)resolved;
  return ssl::real();
}

// ---- configuration from the environment ----

struct Config {
  bool enabled = false;
  std::shared_ptr<ssl::Target> target;  // every context of the process uses it
  unsigned timeout_ms = 0;              // 0: the library default
  ssl::TicketPolicy tickets = ssl::TicketPolicy::stateful;
  unsigned epoch_s = ssl::kDefaultTicketEpochS;
  std::string seal_keys;  // DC_CACHE_SEAL_KEYS: the keyring file, read per context
  LogLevel log = LogLevel::error;
};

LogLevel g_log_level = LogLevel::error;

// One line on stderr, written with one write() so that lines of several
// workers do not interleave.
void write_line(const char* level, const char* text) {
  char line[640];
  int n = snprintf(line, sizeof line, "distcache-shim[%ld]: %s: %s\n", long(getpid()), level, text);
  if (n <= 0) return;
  size_t len = size_t(n) < sizeof line ? size_t(n) : sizeof line - 1;
  int saved = errno;  // the host may look at errno after an OpenSSL call
  ssize_t w = write(STDERR_FILENO, line, len);
  (void)w;
  errno = saved;
}

void log_sink(LogLevel level, const char* text) {
  write_line(ssl::to_string(level), text);
}

__attribute__((format(printf, 2, 3))) void log(LogLevel level, const char* fmt, ...) {
  if (level > g_log_level) return;
  char text[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(text, sizeof text, fmt, ap);
  va_end(ap);
  write_line(ssl::to_string(level), text);
}

// Configuration problems are always reported, whatever DC_CACHE_LOG says.
__attribute__((format(printf, 1, 2))) void config_error(const char* fmt, ...) {
  char text[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(text, sizeof text, fmt, ap);
  va_end(ap);
  write_line("config", text);
}

Config load_config() {
  Config c;
  const char* addr = getenv("DC_CACHE_ADDR");
  if (addr == nullptr || *addr == '\0') return c;  // the shim changes nothing

  if (const char* v = getenv("DC_CACHE_LOG"); v != nullptr && *v != '\0') {
    std::string_view s = v;
    if (s == "off" || s == "0")
      c.log = LogLevel::off;
    else if (s == "error" || s == "1")
      c.log = LogLevel::error;
    else if (s == "info" || s == "2")
      c.log = LogLevel::info;
    else if (s == "debug" || s == "3")
      c.log = LogLevel::debug;
    else
      config_error("DC_CACHE_LOG='%s' is not off, error, info or debug; using error", v);
  }
  g_log_level = c.log;

  if (const char* v = getenv("DC_CACHE_TIMEOUT_MS"); v != nullptr && *v != '\0') {
    uint64_t ms = 0;
    if (parse_decimal(v, 1, DC_MAX_OP_TIMEOUT_MS, ms)) {
      c.timeout_ms = unsigned(ms);
    } else {
      config_error("DC_CACHE_TIMEOUT_MS='%s' is not a number of milliseconds in 1..%d; using %d", v,
                   DC_MAX_OP_TIMEOUT_MS, DC_DEFAULT_OP_TIMEOUT_MS);
    }
  }

  if (const char* v = getenv("DC_CACHE_TICKETS"); v != nullptr && *v != '\0') {
    std::string_view s = v;
    if (s == "stateful")
      c.tickets = ssl::TicketPolicy::stateful;
    else if (s == "keep")
      c.tickets = ssl::TicketPolicy::keep;
    else if (s == "shared")
      c.tickets = ssl::TicketPolicy::shared;
    else
      config_error("DC_CACHE_TICKETS='%s' is not stateful, keep or shared; using stateful", v);
  }

  if (const char* v = getenv("DC_CACHE_TICKET_EPOCH_S"); v != nullptr && *v != '\0') {
    uint64_t n = 0;
    if (parse_decimal(v, ssl::kMinTicketEpochS, ssl::kMaxTicketEpochS, n))
      c.epoch_s = unsigned(n);
    else
      config_error("DC_CACHE_TICKET_EPOCH_S='%s' is not a number of seconds in %u..%u; using %u", v,
                   ssl::kMinTicketEpochS, ssl::kMaxTicketEpochS, ssl::kDefaultTicketEpochS);
  }

  if (const char* v = getenv("DC_CACHE_SEAL_KEYS"); v != nullptr && *v != '\0') {
    c.seal_keys = v;
  } else {
    if (c.tickets == ssl::TicketPolicy::shared) {
      // Ticket keys are never stored in the clear.
      config_error(
          "DC_CACHE_TICKETS=shared needs DC_CACHE_SEAL_KEYS (ticket keys are stored "
          "sealed); using stateful");
      c.tickets = ssl::TicketPolicy::stateful;
    }
    write_line("notice",
               "sessions are stored unsealed (DC_CACHE_SEAL_KEYS is not set): whoever can reach "
               "the cache can read and forge them; see docs/security.md");
  }

  // The address is parsed and resolved once, here (during the host's
  // configuration, at its first SSL_CTX_new), never on a handshake; a typo
  // is one line at start-up.
  std::string err;
  c.target = ssl::make_target(addr, c.timeout_ms, err);
  if (!c.target) {
    config_error("DC_CACHE_ADDR='%s': %s; distributed cache disabled", addr, err.c_str());
    return c;
  }

  (void)real();  // the glue calls the real functions from here on
  ssl::set_log(log_sink, c.log);
  c.enabled = true;
  log(LogLevel::info, "distributed cache %s, tickets %s, timeout %u ms, %s", addr,
      ssl::to_string(c.tickets), c.timeout_ms ? c.timeout_ms : unsigned(DC_DEFAULT_OP_TIMEOUT_MS),
      c.seal_keys.empty() ? "unsealed" : "sealed");
  return c;
}

// Read once, at the first interposed call (static init is thread-safe).
// A forked child inherits the result.
const Config& config() {
  static const Config c = load_config();
  return c;
}

// Contexts made with a client-only method never accept connections: they
// are left exactly as the application makes them.
bool client_only(const SSL_METHOD* m) {
  if (m == TLS_client_method() || m == DTLS_client_method()) return true;
#ifndef OPENSSL_NO_DEPRECATED_1_1_0
#ifndef OPENSSL_NO_TLS1_METHOD
  if (m == TLSv1_client_method()) return true;
#endif
#ifndef OPENSSL_NO_TLS1_1_METHOD
  if (m == TLSv1_1_client_method()) return true;
#endif
#ifndef OPENSSL_NO_TLS1_2_METHOD
  if (m == TLSv1_2_client_method()) return true;
#endif
#ifndef OPENSSL_NO_DTLS1_METHOD
  if (m == DTLSv1_client_method()) return true;
#endif
#ifndef OPENSSL_NO_DTLS1_2_METHOD
  if (m == DTLSv1_2_client_method()) return true;
#endif
#endif
  return false;
}

void on_new_ctx(SSL_CTX* ctx, const SSL_METHOD* meth) {
  const Config& c = config();
  if (!c.enabled || ctx == nullptr || client_only(meth) || DC_SSL_CTX_is_attached(ctx)) return;
  std::string err;
  // The keyring is read for every new context, so that a server that
  // reloads its configuration (nginx -s reload) reads it again. A keyring
  // that cannot be used leaves the context without the cache: never a
  // fall-back to sessions in the clear.
  std::unique_ptr<dc::seal::Keyring> keyring;
  if (!c.seal_keys.empty()) {
    keyring = std::make_unique<dc::seal::Keyring>();
    if (!dc::seal::load_keyring(c.seal_keys, *keyring, err)) {
      static std::mutex mu;
      static std::string said;  // one line per distinct problem, not per context
      std::lock_guard<std::mutex> lk(mu);
      if (err != said) {
        config_error("DC_CACHE_SEAL_KEYS: %s; the distributed cache is off for this server",
                     err.c_str());
        said = err;
      }
      return;
    }
  }
  // SSL_CTX_new may call SSL_CTX_new_ex through the interposer: attach once.
  if (!ssl::attach_shared(ctx, c.target, c.tickets, c.epoch_s, std::move(keyring), err)) {
    log(LogLevel::error, "cache not attached to a context: %s", err.c_str());
    return;
  }
  log(LogLevel::debug, "attached to SSL_CTX %p", static_cast<void*>(ctx));
}

}  // namespace
}  // namespace dc::shim

using namespace dc::shim;
namespace ssl = dc::ssl;

DC_SHIM_EXPORT SSL_CTX* SSL_CTX_new(const SSL_METHOD* meth) {
  SSL_CTX* ctx = real().ctx_new(meth);
  on_new_ctx(ctx, meth);
  return ctx;
}

DC_SHIM_EXPORT SSL_CTX* SSL_CTX_new_ex(OSSL_LIB_CTX* libctx, const char* propq,
                                       const SSL_METHOD* meth) {
  SSL_CTX* ctx = real().ctx_new_ex(libctx, propq, meth);
  on_new_ctx(ctx, meth);
  return ctx;
}

// Passes every control through. SSL_CTX_set_session_cache_mode is a macro
// over this: the callbacks respect whatever mode the application sets.
// Turning caching off is what the application asked for, but usually not
// what the operator wants with a distributed cache: said once per process.
// Under DC_CACHE_TICKETS=shared the cluster's ticket keys win over the
// application's own (nginx's ssl_session_ticket_key, HAProxy's
// tls-ticket-keys, SSL_CTX_set_tlsext_ticket_keys): said once at info.
void note_own_ticket_keys(SSL_CTX* ctx, const char* how) {
  static std::atomic<bool> told{false};
  if (config().enabled && ssl::shares_tickets(ctx) && !told.exchange(true))
    log(LogLevel::info,
        "the application set its own ticket keys (%s); DC_CACHE_TICKETS=shared "
        "uses the cluster's instead",
        how);
}

DC_SHIM_EXPORT long SSL_CTX_ctrl(SSL_CTX* ctx, int cmd, long larg, void* parg) {
  if (cmd == SSL_CTRL_SET_TLSEXT_TICKET_KEYS) note_own_ticket_keys(ctx, "a key list");
  long r = real().ctx_ctrl(ctx, cmd, larg, parg);
  if (cmd == SSL_CTRL_SET_SESS_CACHE_MODE && config().enabled && DC_SSL_CTX_is_attached(ctx)) {
    static std::atomic<bool> told{false};
    if (larg == SSL_SESS_CACHE_OFF && !told.exchange(true)) {
      log(LogLevel::error,
          "the application turned session caching off (SSL_SESS_CACHE_OFF): its sessions are not "
          "shared; enable its session cache (Apache: SSLSessionCache shmcb:..., lighttpd: "
          "ssl.session-cache) to use the distributed cache");
    } else {
      log(LogLevel::debug, "SSL_CTX %p: application set session cache mode 0x%lx",
          static_cast<void*>(ctx), larg);
    }
  }
  return r;
}

// The legacy ticket key callback (nginx 1.22): OpenSSL prefers the EVP
// callback the glue installs, so it is passed on and only noted.
DC_SHIM_EXPORT long SSL_CTX_callback_ctrl(SSL_CTX* ctx, int cmd, void (*fp)(void)) {
  if (cmd == SSL_CTRL_SET_TLSEXT_TICKET_KEY_CB && fp != nullptr)
    note_own_ticket_keys(ctx, "a ticket key callback");
  return real().ctx_callback_ctrl(ctx, cmd, fp);
}

// The EVP ticket key callback (HAProxy): it would replace the glue's.
DC_SHIM_EXPORT int SSL_CTX_set_tlsext_ticket_key_evp_cb(SSL_CTX* ctx, ssl::TicketKeyCb cb) {
  if (config().enabled && ssl::shares_tickets(ctx)) {
    note_own_ticket_keys(ctx, "an EVP ticket key callback");
    return 1;
  }
  return real().set_ticket_key_cb(ctx, cb);
}

// A new connection: the ticket policy in its initial role (a context made
// with TLS_method or a server method makes server connections until told
// otherwise).
DC_SHIM_EXPORT SSL* SSL_new(SSL_CTX* ctx) {
  SSL* s = real().ssl_new(ctx);
  if (s != nullptr && config().enabled) ssl::apply_ticket_policy(s, SSL_is_server(s) != 0);
  return s;
}

DC_SHIM_EXPORT void SSL_set_connect_state(SSL* s) {
  real().set_connect_state(s);
  if (config().enabled) ssl::apply_ticket_policy(s, false);
}

DC_SHIM_EXPORT void SSL_set_accept_state(SSL* s) {
  real().set_accept_state(s);
  if (config().enabled) ssl::apply_ticket_policy(s, true);
}

// SSL_connect makes a connection without a role a client (it calls
// SSL_set_connect_state inside OpenSSL, where no interposer sees it).
DC_SHIM_EXPORT int SSL_connect(SSL* s) {
  if (config().enabled && SSL_in_before(s)) ssl::apply_ticket_policy(s, false);
  return real().connect(s);
}

// SSL_OP_NO_TICKET cleared on a server connection is put back where the
// ticket policy wants it (a context that caches server sessions, stateful).
DC_SHIM_EXPORT uint64_t SSL_clear_options(SSL* s, uint64_t op) {
  uint64_t r = real().clear_options(s, op);
  if ((op & SSL_OP_NO_TICKET) == 0 || !config().enabled || !SSL_is_server(s)) return r;
  ssl::apply_ticket_policy(s, true);
  if ((SSL_get_options(s) & SSL_OP_NO_TICKET) != 0)
    log(LogLevel::debug, "SSL %p: kept SSL_OP_NO_TICKET (DC_CACHE_TICKETS=%s)",
        static_cast<void*>(s), ssl::to_string(config().tickets));
  return SSL_get_options(s);
}

// The application's session callbacks: recorded and chained on an attached
// context (ours stay installed), installed as usual on any other; the
// getters give the application back what it set, never ours.
// The application's callbacks of an attached context, or null.
static ssl::AppCallbacks* app(SSL_CTX* ctx) {
  return config().enabled ? ssl::app_callbacks(ctx) : nullptr;
}

DC_SHIM_EXPORT void SSL_CTX_sess_set_new_cb(SSL_CTX* ctx, ssl::NewCb cb) {
  if (ssl::AppCallbacks* a = app(ctx))
    a->new_cb = cb;
  else
    real().sess_set_new_cb(ctx, cb);
}

DC_SHIM_EXPORT void SSL_CTX_sess_set_get_cb(SSL_CTX* ctx, ssl::GetCb cb) {
  if (ssl::AppCallbacks* a = app(ctx))
    a->get_cb = cb;
  else
    real().sess_set_get_cb(ctx, cb);
}

DC_SHIM_EXPORT void SSL_CTX_sess_set_remove_cb(SSL_CTX* ctx, ssl::RemoveCb cb) {
  if (ssl::AppCallbacks* a = app(ctx))
    a->remove_cb = cb;
  else
    real().sess_set_remove_cb(ctx, cb);
}

DC_SHIM_EXPORT ssl::NewCb SSL_CTX_sess_get_new_cb(SSL_CTX* ctx) {
  ssl::AppCallbacks* a = app(ctx);
  return a ? a->new_cb.load() : real().sess_get_new_cb(ctx);
}

DC_SHIM_EXPORT ssl::GetCb SSL_CTX_sess_get_get_cb(SSL_CTX* ctx) {
  ssl::AppCallbacks* a = app(ctx);
  return a ? a->get_cb.load() : real().sess_get_get_cb(ctx);
}

DC_SHIM_EXPORT ssl::RemoveCb SSL_CTX_sess_get_remove_cb(SSL_CTX* ctx) {
  ssl::AppCallbacks* a = app(ctx);
  return a ? a->remove_cb.load() : real().sess_get_remove_cb(ctx);
}
