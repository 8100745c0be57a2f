// libdistcache_ssl: attaches a distributed session cache (DC_CTX) to an
// OpenSSL 3 SSL_CTX through its session callbacks (dc_ssl.h), and the
// internal hooks the LD_PRELOAD shim needs (ssl_attach.h).
//
// Per-context state lives in the SSL_CTX's ex_data and is freed with it.
// Connections are per thread: a context attached by address gives every
// thread that runs a callback its own persistent DC_CTX (thread_local), and
// DC_CTX_FLAG_PERSISTENT_PIDCHECK gives a forked child a connection of its
// own, so no lock is ever held across network I/O. OpenSSL errors raised here
// (i2d/d2i) are logged and removed from the thread's error queue in one
// place, openssl_failed(), so the application never sees them.
#include <distcache/dc_ssl.h>
#include <openssl/err.h>

#include <algorithm>
#include <atomic>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "proto.h"
#include "ssl_attach.h"

namespace dc::ssl {
namespace {

// ---- configuration set by an interposer ----

RealFns g_real = {
    .sess_set_new_cb = &::SSL_CTX_sess_set_new_cb,
    .sess_set_get_cb = &::SSL_CTX_sess_set_get_cb,
    .sess_set_remove_cb = &::SSL_CTX_sess_set_remove_cb,
    .set_options = &::SSL_CTX_set_options,
    .clear_options = &::SSL_CTX_clear_options,
};
LogFn g_log_fn = nullptr;
LogLevel g_log_max = LogLevel::off;

__attribute__((format(printf, 2, 3))) void log(LogLevel level, const char* fmt, ...) {
  if (g_log_fn == nullptr || level > g_log_max) return;
  char line[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  g_log_fn(level, line);
}

thread_local std::string t_last_error = "no error";

int fail(const char* why) {
  t_last_error = why;
  return 0;
}

// The one place where OpenSSL errors raised by this library end up: logs the
// newest one and removes everything queued since `ERR_set_mark()`, so the
// application's own error handling never sees our failures.
void openssl_failed(const char* what) {
  unsigned long e = ERR_peek_last_error();
  char buf[256] = "unknown error";
  if (e != 0) ERR_error_string_n(e, buf, sizeof buf);
  log(LogLevel::info, "%s failed: %s", what, buf);
  ERR_pop_to_mark();
}

// Hex of the first bytes of a session id, for debug logs.
std::string hex_id(const unsigned char* id, unsigned len) {
  static const char digits[] = "0123456789abcdef";
  std::string s;
  for (unsigned i = 0; i < len && i < 8; ++i) {
    s += digits[id[i] >> 4];
    s += digits[id[i] & 15];
  }
  if (len > 8) s += "..";
  return s;
}

struct DcCtxFree {
  void operator()(DC_CTX* c) const { DC_CTX_free(c); }
};
using DcCtxPtr = std::unique_ptr<DC_CTX, DcCtxFree>;

// True for DC_CTX errors that mean "the cache is not reachable" (as opposed
// to a miss or a refused ADD).
bool is_outage(int err) {
  return err == DC_ERR_CONNECT || err == DC_ERR_BACKOFF || err == DC_ERR_TIMEOUT ||
         err == DC_ERR_IO || err == DC_ERR_PROTOCOL;
}

// ---- backends: where a callback gets a DC_CTX from ----

// A DC_CTX a callback may use until the lease is destroyed.
struct Lease {
  DC_CTX* dc = nullptr;
  bool* failing = nullptr;  // outage state to update, owned by the backend
  std::unique_lock<std::mutex> lock;
};

class Backend {
 public:
  virtual ~Backend() = default;
  // A context this thread may use now, or an empty lease (the operation is
  // then a miss); never blocks on another thread's network I/O.
  virtual Lease acquire() = 0;
  virtual void set_timeout(unsigned ms) = 0;
};

// One connection per thread per target.
struct ThreadConn {
  std::string target;
  unsigned timeout_ms = 0;
  bool failing = false;
  DcCtxPtr dc;
};
thread_local std::vector<ThreadConn> t_conns;

class TargetBackend final : public Backend {
 public:
  TargetBackend(std::string target, unsigned timeout_ms)
      : target_(std::move(target)), timeout_ms_(timeout_ms) {}

  Lease acquire() override {
    unsigned want = timeout_ms_.load(std::memory_order_relaxed);
    for (auto& c : t_conns) {
      if (c.target != target_) continue;
      if (c.timeout_ms != want) {
        // 0 means the library's default: only a fresh DC_CTX has it.
        if (want != 0 ? DC_CTX_set_timeout(c.dc.get(), want) != 0 : renew(c.dc))
          c.timeout_ms = want;
      }
      return Lease{c.dc.get(), &c.failing, {}};
    }
    DcCtxPtr dc;
    if (!renew(dc)) return {};
    if (want != 0) DC_CTX_set_timeout(dc.get(), want);
    t_conns.push_back(ThreadConn{target_, want, false, std::move(dc)});
    return Lease{t_conns.back().dc.get(), &t_conns.back().failing, {}};
  }

  void set_timeout(unsigned ms) override { timeout_ms_.store(ms, std::memory_order_relaxed); }

 private:
  // Replaces `dc` with a new context for the target. LATE: nothing is
  // connected here; PIDCHECK: a forked child opens its own connection;
  // RETRY: a connection the agent closed (say, a restart) is replaced within
  // the same operation.
  bool renew(DcCtxPtr& dc) {
    DcCtxPtr fresh(DC_CTX_new(target_.c_str(),
                              DC_CTX_FLAG_PERSISTENT | DC_CTX_FLAG_PERSISTENT_PIDCHECK |
                                  DC_CTX_FLAG_PERSISTENT_RETRY | DC_CTX_FLAG_PERSISTENT_LATE));
    if (!fresh) {
      log(LogLevel::error, "cannot use cache %s: %s", target_.c_str(), DC_last_new_error());
      return false;
    }
    dc = std::move(fresh);
    return true;
  }

  const std::string target_;
  std::atomic<unsigned> timeout_ms_;
};

// A DC_CTX the application gave us: one thread at a time, the others miss.
class SharedBackend final : public Backend {
 public:
  explicit SharedBackend(DC_CTX* dc) : dc_(dc) {}

  Lease acquire() override {
    std::unique_lock<std::mutex> lk(mu_, std::try_to_lock);
    if (!lk.owns_lock()) {
      log(LogLevel::debug, "shared DC_CTX busy on another thread: counted as a miss");
      return {};
    }
    return Lease{dc_, &failing_, std::move(lk)};
  }

  void set_timeout(unsigned ms) override {
    std::lock_guard<std::mutex> lk(mu_);
    DC_CTX_set_timeout(dc_, ms);
  }

 private:
  DC_CTX* const dc_;
  std::mutex mu_;
  bool failing_ = false;  // guarded by mu_
};

// Logs a change between "reachable" and "unreachable" once per connection,
// so a dead cache does not flood the log with one line per handshake.
void note_result(Lease& l, const char* op) {
  int err = DC_CTX_last_error(l.dc);
  bool outage = is_outage(err);
  if (outage && !*l.failing) {
    log(LogLevel::error, "cache unreachable (%s: %s); handshakes continue without it", op,
        DC_CTX_last_error_string(l.dc));
  } else if (!outage && *l.failing) {
    log(LogLevel::error, "cache reachable again");
  }
  *l.failing = outage;
}

// ---- per-context state ----

struct Attachment {
  // The backend in use, read lock-free by the callbacks (no mutex a fork
  // could leave locked). Every backend ever installed lives as long as the
  // attachment, so a callback still using a replaced one is safe.
  std::atomic<Backend*> backend{nullptr};
  std::mutex owned_mu;  // guards owned; taken only by attach
  std::vector<std::unique_ptr<Backend>> owned;
  std::atomic<NewCb> app_new{nullptr};
  std::atomic<GetCb> app_get{nullptr};
  std::atomic<RemoveCb> app_remove{nullptr};
  std::atomic<bool> keep_tickets{false};
  std::atomic<bool> app_no_ticket{false};  // the application set SSL_OP_NO_TICKET itself
  std::atomic<unsigned long> stored{0}, store_failed{0}, hits{0}, misses{0}, removed{0};

  Backend* get_backend() const { return backend.load(std::memory_order_acquire); }
  void set_backend(std::unique_ptr<Backend> b) {
    std::lock_guard<std::mutex> lk(owned_mu);
    backend.store(b.get(), std::memory_order_release);
    owned.push_back(std::move(b));
  }
};

void free_attachment(void*, void* ptr, CRYPTO_EX_DATA*, int, long, void*) {
  delete static_cast<Attachment*>(ptr);
}

// ex_data indexes: the SSL_CTX's attachment, and a mark on the sessions this
// library stored or fetched (the server-side ones it may remove).
struct Indexes {
  int ctx = -1;
  int sess = -1;
};
const Indexes& indexes() {
  static const Indexes idx = [] {
    Indexes i;
    i.ctx = CRYPTO_get_ex_new_index(CRYPTO_EX_INDEX_SSL_CTX, 0, nullptr, nullptr, nullptr,
                                    free_attachment);
    i.sess =
        CRYPTO_get_ex_new_index(CRYPTO_EX_INDEX_SSL_SESSION, 0, nullptr, nullptr, nullptr, nullptr);
    return i;
  }();
  return idx;
}

Attachment* attachment(const SSL_CTX* ctx) {
  int idx = indexes().ctx;
  if (ctx == nullptr || idx < 0) return nullptr;
  return static_cast<Attachment*>(SSL_CTX_get_ex_data(ctx, idx));
}

void mark_server_session(SSL_SESSION* sess) {
  int idx = indexes().sess;
  if (idx >= 0) SSL_SESSION_set_ex_data(sess, idx, reinterpret_cast<void*>(uintptr_t{1}));
}

bool is_server_session(const SSL_SESSION* sess) {
  int idx = indexes().sess;
  return idx >= 0 && SSL_SESSION_get_ex_data(sess, idx) != nullptr;
}

// The context caches server-side sessions (an explicit SSL_SESS_CACHE_OFF,
// or a mode without SERVER, keeps the cache out of the way).
bool server_mode(SSL_CTX* ctx) {
  return (SSL_CTX_get_session_cache_mode(ctx) & SSL_SESS_CACHE_SERVER) != 0;
}

// Per-thread buffer for encoded sessions (no allocation per handshake).
std::vector<unsigned char>& session_buffer() {
  thread_local std::vector<unsigned char> buf(proto::kMaxSessionData);
  return buf;
}

// Lifetime to store a session for: what is left of its own timeout, clamped
// to the protocol's range. 0 when it has already expired.
unsigned long lifetime_ms(const SSL_SESSION* sess) {
  long timeout = SSL_SESSION_get_timeout(sess);
  long made = SSL_SESSION_get_time(sess);
  long now = long(time(nullptr));
  long left = timeout - std::max(0L, now - made);
  if (left <= 0) return 0;
  unsigned long ms =
      left > long(proto::kMaxTimeoutMs / 1000) ? proto::kMaxTimeoutMs : (unsigned long)left * 1000;
  return std::max<unsigned long>(ms, proto::kMinTimeoutMs);
}

void store(Attachment& a, SSL_SESSION* sess) {
  unsigned id_len = 0;
  const unsigned char* id = SSL_SESSION_get_id(sess, &id_len);
  if (id_len == 0 || id_len > proto::kMaxIdLen) return;
  unsigned long ms = lifetime_ms(sess);
  if (ms == 0) return;

  ERR_set_mark();
  int len = i2d_SSL_SESSION(sess, nullptr);
  if (len <= 0) {
    openssl_failed("i2d_SSL_SESSION");
    a.store_failed++;
    return;
  }
  ERR_pop_to_mark();
  if (size_t(len) > proto::kMaxSessionData) {
    log(LogLevel::info, "session %s is %d bytes, over the cache's limit: not stored",
        hex_id(id, id_len).c_str(), len);
    a.store_failed++;
    return;
  }
  auto& buf = session_buffer();
  unsigned char* p = buf.data();
  i2d_SSL_SESSION(sess, &p);

  Backend* b = a.get_backend();
  Lease l = b ? b->acquire() : Lease{};
  if (l.dc == nullptr) {
    a.store_failed++;
    return;
  }
  int ok = DC_CTX_add_session(l.dc, id, id_len, buf.data(), unsigned(len), ms);
  note_result(l, "add");
  mark_server_session(sess);
  if (ok) {
    a.stored++;
    log(LogLevel::debug, "stored session %s (%d bytes, %lu ms)", hex_id(id, id_len).c_str(), len,
        ms);
  } else {
    a.store_failed++;
    log(LogLevel::debug, "session %s not stored: %s", hex_id(id, id_len).c_str(),
        DC_CTX_last_error_string(l.dc));
  }
}

SSL_SESSION* fetch(Attachment& a, const unsigned char* id, unsigned id_len) {
  if (id_len == 0 || id_len > proto::kMaxIdLen) return nullptr;
  Backend* b = a.get_backend();
  Lease l = b ? b->acquire() : Lease{};
  if (l.dc == nullptr) {
    a.misses++;
    return nullptr;
  }
  auto& buf = session_buffer();
  unsigned used = 0;
  int hit = DC_CTX_get_session(l.dc, id, id_len, buf.data(), unsigned(buf.size()), &used);
  note_result(l, "get");
  l = Lease{};  // the shared DC_CTX is free for others from here on
  if (!hit || used == 0 || used > buf.size()) {
    a.misses++;
    log(LogLevel::debug, "session %s: miss", hex_id(id, id_len).c_str());
    return nullptr;
  }
  ERR_set_mark();
  const unsigned char* p = buf.data();
  SSL_SESSION* sess = d2i_SSL_SESSION(nullptr, &p, long(used));
  if (sess == nullptr) {
    openssl_failed("d2i_SSL_SESSION of a cached session");
    a.misses++;
    return nullptr;
  }
  ERR_pop_to_mark();
  unsigned got_len = 0;
  const unsigned char* got = SSL_SESSION_get_id(sess, &got_len);
  if (got_len != id_len || std::memcmp(got, id, id_len) != 0) {
    log(LogLevel::info, "cache returned a session with another id for %s: ignored",
        hex_id(id, id_len).c_str());
    SSL_SESSION_free(sess);
    a.misses++;
    return nullptr;
  }
  mark_server_session(sess);
  a.hits++;
  log(LogLevel::debug, "session %s: hit (%u bytes)", hex_id(id, id_len).c_str(), used);
  return sess;
}

// ---- the callbacks installed on attached contexts ----
//
// A callback finds its state through SSL_get_SSL_CTX(); with SNI the
// application may have switched the connection to another context, which is
// why the shim attaches every context it sees.

int new_session_cb(SSL* s, SSL_SESSION* sess) {
  SSL_CTX* ctx = SSL_get_SSL_CTX(s);
  Attachment* a = attachment(ctx);
  if (a == nullptr) return 0;
  if (SSL_is_server(s) && server_mode(ctx)) store(*a, sess);
  // The application's callback decides who owns the extra reference.
  NewCb app = a->app_new.load();
  return app != nullptr ? app(s, sess) : 0;
}

SSL_SESSION* get_session_cb(SSL* s, const unsigned char* id, int len, int* copy) {
  SSL_CTX* ctx = SSL_get_SSL_CTX(s);
  Attachment* a = attachment(ctx);
  if (a == nullptr) return nullptr;
  if (SSL_is_server(s) && server_mode(ctx) && len > 0) {
    if (SSL_SESSION* sess = fetch(*a, id, unsigned(len))) {
      *copy = 0;  // a fresh session: OpenSSL takes our only reference
      return sess;
    }
  }
  GetCb app = a->app_get.load();
  return app != nullptr ? app(s, id, len, copy) : nullptr;
}

// OpenSSL also calls this when its *internal* cache drops a session (size
// limit, expiry, SSL_CTX_free), which must not delete what other servers
// still resume; so the cache is told only when the internal store is off
// (SSL_SESS_CACHE_NO_INTERNAL_STORE, as nginx and Apache use), where a call
// here can only be a real invalidation.
void remove_session_cb(SSL_CTX* ctx, SSL_SESSION* sess) {
  Attachment* a = attachment(ctx);
  if (a == nullptr) return;
  long mode = SSL_CTX_get_session_cache_mode(ctx);
  if (is_server_session(sess) && (mode & SSL_SESS_CACHE_SERVER) &&
      (mode & SSL_SESS_CACHE_NO_INTERNAL_STORE) == SSL_SESS_CACHE_NO_INTERNAL_STORE) {
    unsigned id_len = 0;
    const unsigned char* id = SSL_SESSION_get_id(sess, &id_len);
    Backend* b = a->get_backend();
    Lease l = b && id_len > 0 ? b->acquire() : Lease{};
    if (l.dc != nullptr) {
      DC_CTX_remove_session(l.dc, id, id_len);
      note_result(l, "remove");
      a->removed++;
      log(LogLevel::debug, "removed session %s", hex_id(id, id_len).c_str());
    }
  }
  RemoveCb app = a->app_remove.load();
  if (app != nullptr) app(ctx, sess);
}

// Sets or clears SSL_OP_NO_TICKET as ssl_attach.h describes.
void apply_policy(Attachment& a, SSL_CTX* ctx) {
  bool want = a.app_no_ticket || (!a.keep_tickets && server_mode(ctx));
  bool have = (SSL_CTX_get_options(ctx) & SSL_OP_NO_TICKET) != 0;
  if (want && !have) g_real.set_options(ctx, SSL_OP_NO_TICKET);
  if (!want && have) g_real.clear_options(ctx, SSL_OP_NO_TICKET);
}

// Installs the state and the callbacks; `backend` replaces any earlier one.
bool install(SSL_CTX* ctx, std::unique_ptr<Backend> backend, bool keep_tickets, bool only_if_new) {
  const Indexes& idx = indexes();
  if (idx.ctx < 0 || idx.sess < 0) return fail("OpenSSL could not allocate ex_data indexes");
  Attachment* a = attachment(ctx);
  if (a != nullptr && only_if_new) return true;
  if (a == nullptr) {
    auto fresh = std::make_unique<Attachment>();
    // Keep what the application installed, for client-side sessions.
    fresh->app_new = SSL_CTX_sess_get_new_cb(ctx);
    fresh->app_get = SSL_CTX_sess_get_get_cb(ctx);
    fresh->app_remove = SSL_CTX_sess_get_remove_cb(ctx);
    fresh->app_no_ticket = (SSL_CTX_get_options(ctx) & SSL_OP_NO_TICKET) != 0;
    if (!SSL_CTX_set_ex_data(ctx, idx.ctx, fresh.get())) {
      ERR_clear_error();
      return fail("SSL_CTX_set_ex_data failed");
    }
    a = fresh.release();
  }
  a->set_backend(std::move(backend));
  a->keep_tickets = keep_tickets;
  g_real.sess_set_new_cb(ctx, new_session_cb);
  g_real.sess_set_get_cb(ctx, get_session_cb);
  g_real.sess_set_remove_cb(ctx, remove_session_cb);
  apply_policy(*a, ctx);
  return true;
}

}  // namespace

// ---- ssl_attach.h ----

void set_real_fns(const RealFns& fns) {
  if (fns.sess_set_new_cb) g_real.sess_set_new_cb = fns.sess_set_new_cb;
  if (fns.sess_set_get_cb) g_real.sess_set_get_cb = fns.sess_set_get_cb;
  if (fns.sess_set_remove_cb) g_real.sess_set_remove_cb = fns.sess_set_remove_cb;
  if (fns.set_options) g_real.set_options = fns.set_options;
  if (fns.clear_options) g_real.clear_options = fns.clear_options;
}

const char* to_string(LogLevel l) {
  switch (l) {
    case LogLevel::off:
      return "off";
    case LogLevel::error:
      return "error";
    case LogLevel::info:
      return "info";
    case LogLevel::debug:
      return "debug";
  }
  return "?";
}

void set_log(LogFn fn, LogLevel max) {
  g_log_fn = fn;
  g_log_max = max;
}

bool attach_target(SSL_CTX* ctx, const TargetOptions& opt, bool only_if_new, std::string& err) {
  if (only_if_new && attachment(ctx) != nullptr) return true;
  if (!opt.validated) {
    // Check the address now, without connecting, so that a typo is reported
    // at start-up and not as a miss on every handshake.
    DcCtxPtr probe(
        DC_CTX_new(opt.target.c_str(), DC_CTX_FLAG_PERSISTENT | DC_CTX_FLAG_PERSISTENT_LATE));
    if (!probe) {
      err = DC_last_new_error();
      return false;
    }
  }
  if (!install(ctx, std::make_unique<TargetBackend>(opt.target, opt.timeout_ms), opt.keep_tickets,
               only_if_new)) {
    err = t_last_error;
    return false;
  }
  return true;
}

bool set_app_new_cb(SSL_CTX* ctx, NewCb cb) {
  Attachment* a = attachment(ctx);
  if (a == nullptr) return false;
  a->app_new = cb;
  return true;
}

bool set_app_get_cb(SSL_CTX* ctx, GetCb cb) {
  Attachment* a = attachment(ctx);
  if (a == nullptr) return false;
  a->app_get = cb;
  return true;
}

bool set_app_remove_cb(SSL_CTX* ctx, RemoveCb cb) {
  Attachment* a = attachment(ctx);
  if (a == nullptr) return false;
  a->app_remove = cb;
  return true;
}

bool is_attached(const SSL_CTX* ctx) {
  return attachment(ctx) != nullptr;
}

bool forces_no_ticket(const SSL_CTX* ctx) {
  Attachment* a = attachment(ctx);
  return a != nullptr && !a->keep_tickets;
}

void note_app_ticket_option(SSL_CTX* ctx, bool no_ticket) {
  if (Attachment* a = attachment(ctx)) a->app_no_ticket = no_ticket;
}

void apply_ticket_policy(SSL_CTX* ctx) {
  if (Attachment* a = attachment(ctx)) apply_policy(*a, ctx);
}

}  // namespace dc::ssl

// ---- dc_ssl.h ----

using namespace dc::ssl;

extern "C" {

int DC_SSL_CTX_attach(SSL_CTX* ctx, const char* target, unsigned int flags) {
  if (ctx == nullptr || target == nullptr) return fail("DC_SSL_CTX_attach: NULL argument");
  TargetOptions opt;
  opt.target = target;
  opt.keep_tickets = (flags & DC_SSL_FLAG_KEEP_TICKETS) != 0;
  std::string err;
  if (!attach_target(ctx, opt, false, err)) return fail(err.c_str());
  return 1;
}

int DC_SSL_CTX_attach_ctx(SSL_CTX* ctx, DC_CTX* dc, unsigned int flags) {
  if (ctx == nullptr || dc == nullptr) return fail("DC_SSL_CTX_attach_ctx: NULL argument");
  return install(ctx, std::make_unique<SharedBackend>(dc), (flags & DC_SSL_FLAG_KEEP_TICKETS) != 0,
                 false)
             ? 1
             : 0;
}

int DC_SSL_CTX_set_timeout(SSL_CTX* ctx, unsigned int msecs) {
  Attachment* a = attachment(ctx);
  if (a == nullptr) return fail("DC_SSL_CTX_set_timeout: context not attached");
  if (msecs < 1 || msecs > 60000) return fail("DC_SSL_CTX_set_timeout: out of range 1..60000");
  if (auto b = a->get_backend()) b->set_timeout(msecs);
  return 1;
}

int DC_SSL_CTX_detach(SSL_CTX* ctx) {
  Attachment* a = attachment(ctx);
  if (a == nullptr) return fail("DC_SSL_CTX_detach: context not attached");
  g_real.sess_set_new_cb(ctx, a->app_new.load());
  g_real.sess_set_get_cb(ctx, a->app_get.load());
  g_real.sess_set_remove_cb(ctx, a->app_remove.load());
  if (!a->app_no_ticket) g_real.clear_options(ctx, SSL_OP_NO_TICKET);
  SSL_CTX_set_ex_data(ctx, indexes().ctx, nullptr);
  delete a;
  return 1;
}

int DC_SSL_CTX_is_attached(const SSL_CTX* ctx) {
  return attachment(ctx) != nullptr ? 1 : 0;
}

int DC_SSL_CTX_get_stats(const SSL_CTX* ctx, DC_SSL_STATS* out) {
  Attachment* a = attachment(ctx);
  if (a == nullptr || out == nullptr) return fail("DC_SSL_CTX_get_stats: not attached or NULL");
  out->stored = a->stored;
  out->store_failed = a->store_failed;
  out->hits = a->hits;
  out->misses = a->misses;
  out->removed = a->removed;
  return 1;
}

const char* DC_SSL_last_error(void) {
  return t_last_error.c_str();
}

}  // extern "C"
