// libdistcache_shim.so: gives an unmodified OpenSSL 3 server a distributed
// session cache when loaded with LD_PRELOAD and DC_CACHE_ADDR set.
//
// It interposes SSL_CTX_new / SSL_CTX_new_ex (to attach the cache to every
// context that can act as a server) and the later calls that could undo that
// work: the session callback setters (the application's callbacks are
// recorded and chained instead of replacing ours), SSL_CTX_clear_options and
// SSL_clear_options (SSL_OP_NO_TICKET stays set under the default ticket
// policy; SSL_CTX_set_options records the application's own wish), and
// SSL_CTX_ctrl (the cache mode: the callbacks respect SSL_SESS_CACHE_OFF, and
// the ticket policy gives the application its own ticket settings back when
// it turns caching off). The real functions
// come from dlsym(RTLD_NEXT, ...); shim.map exports only these symbols.
//
// With DC_CACHE_ADDR unset (or empty) every interposer only forwards to the
// real function. Nothing here can fail the host's start-up: a malformed
// variable gets one line on stderr and a safe default, a malformed address
// disables the cache. Connections are opened lazily, per thread, by the
// worker that runs handshakes (libdistcache_ssl), so forking masters and
// threaded servers work.
#include <dlfcn.h>
#include <unistd.h>

#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>

// The version-specific client methods are deprecated, not gone: a context
// made with one of them is recognised as client-only.
#define OPENSSL_SUPPRESS_DEPRECATED
#include <openssl/ssl.h>

#include "ssl_attach.h"

#define DC_SHIM_EXPORT extern "C" __attribute__((visibility("default")))

namespace dc::shim {
namespace {

using ssl::LogLevel;

// ---- the real OpenSSL functions ----

struct Real {
  SSL_CTX* (*ctx_new)(const SSL_METHOD*) = nullptr;
  SSL_CTX* (*ctx_new_ex)(OSSL_LIB_CTX*, const char*, const SSL_METHOD*) = nullptr;
  long (*ctx_ctrl)(SSL_CTX*, int, long, void*) = nullptr;
  uint64_t (*ctx_set_options)(SSL_CTX*, uint64_t) = nullptr;
  uint64_t (*ctx_clear_options)(SSL_CTX*, uint64_t) = nullptr;
  uint64_t (*clear_options)(SSL*, uint64_t) = nullptr;
  void (*set_new_cb)(SSL_CTX*, ssl::NewCb) = nullptr;
  void (*set_get_cb)(SSL_CTX*, ssl::GetCb) = nullptr;
  void (*set_remove_cb)(SSL_CTX*, ssl::RemoveCb) = nullptr;
};

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

const Real& real() {
  static const Real r = [] {
    Real x;
    resolve(x.ctx_new, "SSL_CTX_new");
    resolve(x.ctx_new_ex, "SSL_CTX_new_ex");
    resolve(x.ctx_ctrl, "SSL_CTX_ctrl");
    resolve(x.ctx_set_options, "SSL_CTX_set_options");
    resolve(x.ctx_clear_options, "SSL_CTX_clear_options");
    resolve(x.clear_options, "SSL_clear_options");
    resolve(x.set_new_cb, "SSL_CTX_sess_set_new_cb");
    resolve(x.set_get_cb, "SSL_CTX_sess_set_get_cb");
    resolve(x.set_remove_cb, "SSL_CTX_sess_set_remove_cb");
    return x;
  }();
  return r;
}

// ---- configuration from the environment ----

struct Config {
  bool enabled = false;
  ssl::TargetOptions opt;
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

bool parse_uint(std::string_view s, unsigned long max, unsigned long& out) {
  if (s.empty() || s.size() > 10) return false;
  unsigned long v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + unsigned(c - '0');
  }
  if (v > max) return false;
  out = v;
  return true;
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
    unsigned long ms = 0;
    if (parse_uint(v, 60000, ms) && ms >= 1) {
      c.opt.timeout_ms = unsigned(ms);
    } else {
      config_error("DC_CACHE_TIMEOUT_MS='%s' is not a number of milliseconds in 1..60000; using %d",
                   v, DC_DEFAULT_OP_TIMEOUT_MS);
      // DC_CTX_new reads this variable too and refuses a malformed value;
      // the shim promises a default instead. This runs at the host's first
      // SSL_CTX_new, during its configuration, before it starts threads.
      unsetenv("DC_CACHE_TIMEOUT_MS");
    }
  }

  if (const char* v = getenv("DC_CACHE_TICKETS"); v != nullptr && *v != '\0') {
    std::string_view s = v;
    if (s == "stateful")
      c.opt.keep_tickets = false;
    else if (s == "keep")
      c.opt.keep_tickets = true;
    else
      config_error("DC_CACHE_TICKETS='%s' is not stateful or keep; using stateful", v);
  }

  c.opt.target = addr;
  // Validate the address once, here, so a typo is one line at start-up.
  DC_CTX* probe = DC_CTX_new(addr, DC_CTX_FLAG_PERSISTENT | DC_CTX_FLAG_PERSISTENT_LATE);
  if (probe == nullptr) {
    config_error("DC_CACHE_ADDR='%s': %s; distributed cache disabled", addr, DC_last_new_error());
    return c;
  }
  DC_CTX_free(probe);
  c.opt.validated = true;

  ssl::RealFns fns;
  fns.sess_set_new_cb = real().set_new_cb;
  fns.sess_set_get_cb = real().set_get_cb;
  fns.sess_set_remove_cb = real().set_remove_cb;
  fns.set_options = real().ctx_set_options;
  fns.clear_options = real().ctx_clear_options;
  ssl::set_real_fns(fns);
  ssl::set_log(log_sink, c.log);
  c.enabled = true;
  log(LogLevel::info, "distributed cache %s, tickets %s, timeout %u ms", addr,
      c.opt.keep_tickets ? "keep" : "stateful",
      c.opt.timeout_ms ? c.opt.timeout_ms : unsigned(DC_DEFAULT_OP_TIMEOUT_MS));
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
  if (!c.enabled || ctx == nullptr || client_only(meth) || ssl::is_attached(ctx)) return;
  std::string err;
  // SSL_CTX_new may call SSL_CTX_new_ex through the interposer: attach once.
  if (!ssl::attach_target(ctx, c.opt, true, err)) {
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
// over this: the callbacks respect whatever mode the application sets (an
// explicit SSL_SESS_CACHE_OFF included); the ticket policy follows it.
DC_SHIM_EXPORT long SSL_CTX_ctrl(SSL_CTX* ctx, int cmd, long larg, void* parg) {
  long r = real().ctx_ctrl(ctx, cmd, larg, parg);
  if (cmd == SSL_CTRL_SET_SESS_CACHE_MODE && config().enabled && ssl::is_attached(ctx)) {
    if ((larg & SSL_SESS_CACHE_SERVER) == 0) {
      log(LogLevel::info,
          "SSL_CTX %p: the application turned server session caching off (mode 0x%lx); respected",
          static_cast<void*>(ctx), larg);
    } else {
      log(LogLevel::debug, "SSL_CTX %p: application set session cache mode 0x%lx",
          static_cast<void*>(ctx), larg);
    }
    ssl::apply_ticket_policy(ctx);
  }
  return r;
}

// The application's own SSL_OP_NO_TICKET is recorded, so that the ticket
// policy can give it back when caching is turned off.
DC_SHIM_EXPORT uint64_t SSL_CTX_set_options(SSL_CTX* ctx, uint64_t op) {
  uint64_t r = real().ctx_set_options(ctx, op);
  if ((op & SSL_OP_NO_TICKET) != 0 && config().enabled) ssl::note_app_ticket_option(ctx, true);
  return r;
}

// Under the stateful policy SSL_OP_NO_TICKET stays set while the context
// caches server sessions, whatever the application clears.
DC_SHIM_EXPORT uint64_t SSL_CTX_clear_options(SSL_CTX* ctx, uint64_t op) {
  uint64_t r = real().ctx_clear_options(ctx, op);
  if ((op & SSL_OP_NO_TICKET) != 0 && config().enabled && ssl::is_attached(ctx)) {
    ssl::note_app_ticket_option(ctx, false);
    ssl::apply_ticket_policy(ctx);
    r = SSL_CTX_get_options(ctx);
    if ((r & SSL_OP_NO_TICKET) != 0) {
      log(LogLevel::debug, "SSL_CTX %p: kept SSL_OP_NO_TICKET (DC_CACHE_TICKETS=stateful)",
          static_cast<void*>(ctx));
    }
  }
  return r;
}

DC_SHIM_EXPORT uint64_t SSL_clear_options(SSL* s, uint64_t op) {
  SSL_CTX* ctx = SSL_get_SSL_CTX(s);
  if ((op & SSL_OP_NO_TICKET) != 0 && config().enabled && ssl::forces_no_ticket(ctx) &&
      (SSL_CTX_get_options(ctx) & SSL_OP_NO_TICKET) != 0) {
    op &= ~uint64_t{SSL_OP_NO_TICKET};  // per connection, like the context
  }
  return real().clear_options(s, op);
}

// The application's session callbacks: recorded and chained on an attached
// context (ours stay installed), installed as usual on any other.
DC_SHIM_EXPORT void SSL_CTX_sess_set_new_cb(SSL_CTX* ctx, ssl::NewCb cb) {
  if (!config().enabled || !ssl::set_app_new_cb(ctx, cb)) real().set_new_cb(ctx, cb);
}

DC_SHIM_EXPORT void SSL_CTX_sess_set_get_cb(SSL_CTX* ctx, ssl::GetCb cb) {
  if (!config().enabled || !ssl::set_app_get_cb(ctx, cb)) real().set_get_cb(ctx, cb);
}

DC_SHIM_EXPORT void SSL_CTX_sess_set_remove_cb(SSL_CTX* ctx, ssl::RemoveCb cb) {
  if (!config().enabled || !ssl::set_app_remove_cb(ctx, cb)) real().set_remove_cb(ctx, cb);
}
