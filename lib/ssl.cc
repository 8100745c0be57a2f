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
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/rand.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "proto.h"
#include "seal.h"
#include "ssl_attach.h"
#include "ssl_internal.h"
#include "tickets.h"

namespace dc::ssl {
namespace {

// ---- configuration set by an interposer ----

RealFns g_real = {
    .ctx_new = &::SSL_CTX_new,
    .ctx_new_ex = &::SSL_CTX_new_ex,
    .ctx_ctrl = &::SSL_CTX_ctrl,
    .ctx_callback_ctrl = &::SSL_CTX_callback_ctrl,
    .ssl_new = &::SSL_new,
    .set_connect_state = &::SSL_set_connect_state,
    .set_accept_state = &::SSL_set_accept_state,
    .connect = &::SSL_connect,
    .clear_options = &::SSL_clear_options,
    .sess_set_new_cb = &::SSL_CTX_sess_set_new_cb,
    .sess_set_get_cb = &::SSL_CTX_sess_set_get_cb,
    .sess_set_remove_cb = &::SSL_CTX_sess_set_remove_cb,
    .sess_get_new_cb = &::SSL_CTX_sess_get_new_cb,
    .sess_get_get_cb = &::SSL_CTX_sess_get_get_cb,
    .sess_get_remove_cb = &::SSL_CTX_sess_get_remove_cb,
    .set_ticket_key_cb = &::SSL_CTX_set_tlsext_ticket_key_evp_cb,
};
void (*g_log_fn)(LogLevel, const char*) = nullptr;
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

// Milliseconds on the monotonic clock.
int64_t mono_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// True for DC_CTX errors that mean "the cache is not reachable" (as opposed
// to a miss or a refused ADD).
bool is_outage(int err) {
  return err == DC_ERR_CONNECT || err == DC_ERR_BACKOFF || err == DC_ERR_TIMEOUT ||
         err == DC_ERR_IO || err == DC_ERR_PROTOCOL || err == DC_ERR_DISCONNECTED;
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

}  // namespace

// See ssl_attach.h. The template DC_CTX holds the resolved address; threads
// get DC_CTX_dup copies of it, which never resolve again.
class Target {
 public:
  Target(DcCtxPtr tmpl, unsigned timeout_ms)
      : tmpl_(std::move(tmpl)), timeout_ms_(timeout_ms), id_(next_id_.fetch_add(1)) {}

  // This thread's connection to the target, made on first use.
  Lease acquire();
  void set_timeout(unsigned ms) { timeout_ms_.store(ms, std::memory_order_relaxed); }

 private:
  // One connection per thread per target, named by the target's id (never
  // reused, unlike its address), with the deadline last given to it.
  struct ThreadConn {
    uint64_t target;
    unsigned timeout_ms;
    bool failing;
    DcCtxPtr dc;
  };
  // A thread that outlives many targets (contexts freed and made again)
  // keeps this many connections at most; the oldest goes first.
  static constexpr size_t kMaxThreadConns = 64;
  static thread_local std::vector<ThreadConn> t_conns_;
  static inline std::atomic<uint64_t> next_id_{1};

  const DcCtxPtr tmpl_;
  std::atomic<unsigned> timeout_ms_;  // 0: the library default
  const uint64_t id_;
};

thread_local std::vector<Target::ThreadConn> Target::t_conns_;

Lease Target::acquire() {
  unsigned want = timeout_ms_.load(std::memory_order_relaxed);
  for (auto& c : t_conns_) {
    if (c.target != id_) continue;
    // A new deadline is set on the connection, never a new connection.
    if (want != 0 && c.timeout_ms != want && DC_CTX_set_timeout(c.dc.get(), want) != 0)
      c.timeout_ms = want;
    return Lease{c.dc.get(), &c.failing, {}};
  }
  DcCtxPtr dc(DC_CTX_dup(tmpl_.get()));
  if (!dc) return {};
  if (want != 0) DC_CTX_set_timeout(dc.get(), want);
  if (t_conns_.size() >= kMaxThreadConns) t_conns_.erase(t_conns_.begin());
  t_conns_.push_back(ThreadConn{id_, want, false, std::move(dc)});
  return Lease{t_conns_.back().dc.get(), &t_conns_.back().failing, {}};
}

namespace {

// Attachments by address: their Target, shared with other attachments
// (the shim's contexts all use one) or their own (DC_SSL_CTX_attach).
class TargetBackend final : public Backend {
 public:
  explicit TargetBackend(std::shared_ptr<Target> t) : target_(std::move(t)) {}
  Lease acquire() override { return target_->acquire(); }
  void set_timeout(unsigned ms) override { target_->set_timeout(ms); }

 private:
  const std::shared_ptr<Target> target_;
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
// so a dead cache does not flood the log with one line per handshake. A
// skipped operation (the breaker is open) says nothing new.
void note_result(Lease& l, const char* op) {
  int err = DC_CTX_last_error(l.dc);
  if (err == DC_ERR_BACKOFF) return;
  if (err == DC_ERR_DISCONNECTED) {
    // The agent answered: its store is away, all of it or only the part
    // this session lives in (a pool's server, a cluster's master), so the
    // next operation may well succeed. Said at most once a minute per
    // process, not as a change of state, so a partial outage cannot flood
    // the log with "unreachable" and "reachable again" lines.
    static std::atomic<int64_t> said_at{INT64_MIN / 2};
    int64_t now = mono_ms(), last = said_at.load(std::memory_order_relaxed);
    if (now - last >= 60000 && said_at.compare_exchange_strong(last, now))
      log(LogLevel::error,
          "cache agent answers but its store does not (%s: %s); those sessions are not cached; "
          "see the agent's log",
          op, DC_CTX_last_error_string(l.dc));
    return;
  }
  bool outage = is_outage(err);
  if (outage && !*l.failing) {
    log(LogLevel::error,
        "cache unreachable (%s: %s); handshakes continue without it, retried after a back-off", op,
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
  AppCallbacks app;  // the application's own, chained
  std::atomic<TicketPolicy> policy{TicketPolicy::stateful};
  std::unique_ptr<class TicketKeys> tickets;  // shared policy: set by install, then read only
  // The policy is applied per connection by the caller (the shim), never
  // to the context's options.
  std::atomic<bool> per_connection{false};
  bool app_no_ticket = false;  // SSL_OP_NO_TICKET was set before attaching
  // Sealing: the keyring in use (null: sessions in the clear, as 1.x), and
  // whether the last attempt to set one failed, which turns caching off
  // rather than fall back to the clear. Keyrings live as long as the
  // attachment, like backends, so a callback never sees one freed.
  std::atomic<const seal::Keyring*> keyring{nullptr};
  std::atomic<bool> seal_failed{false};
  std::vector<std::unique_ptr<const seal::Keyring>> keyrings;  // guarded by owned_mu
  std::atomic<bool> told_unopened{false};
  std::atomic<unsigned long> stored{0}, store_failed{0}, hits{0}, misses{0}, removed{0},
      unopened{0};

  void set_keyring(std::unique_ptr<const seal::Keyring> kr) {
    std::lock_guard<std::mutex> lk(owned_mu);
    keyring.store(kr.get(), std::memory_order_release);
    keyrings.push_back(std::move(kr));
    seal_failed = false;
  }
  // Caching is off while a keyring was asked for and could not be used.
  bool usable() const { return !seal_failed.load(std::memory_order_relaxed); }

  Backend* get_backend() const { return backend.load(std::memory_order_acquire); }
  void set_backend(std::unique_ptr<Backend> b) {
    std::lock_guard<std::mutex> lk(owned_mu);
    backend.store(b.get(), std::memory_order_release);
    owned.push_back(std::move(b));
  }
};

// ---- shared ticket keys (DC_CACHE_TICKETS=shared) ----
//
// The keys of the previous, current and next epochs, agreed through the
// cache (tickets.h): the secret of an epoch is made by whichever process
// first needs it and stored sealed under the epoch's reserved id with ADD,
// which never overwrites; everyone reads the winner back. Fetches happen in
// the handshake that finds a key missing or the epoch's end near, one at a
// time per attachment and at most one attempt a second, each operation
// under the cache's deadline; every other handshake uses what is there.
// While the cache does not answer, the process makes the current epoch's
// key itself (its tickets resume only here) and joins the cluster's once
// the cache answers.
class TicketKeys {
 public:
  explicit TicketKeys(int64_t epoch_s) : epoch_s_(epoch_s) {}
  // Another epoch length: the keys made so far are dropped.
  void set_epoch(int64_t epoch_s) {
    std::lock_guard<std::mutex> lk(mu_);
    keys_.clear();
    epoch_s_ = epoch_s;
  }

  // The key new tickets are sealed with; false only when OpenSSL fails.
  bool current(Attachment& a, tickets::Key& out);
  // The key named `name` among those still accepted; `renew` when a
  // ticket under it should be replaced by one under the current key.
  bool find(Attachment& a, const uint8_t* name, tickets::Key& out, bool& renew);
  int64_t epoch_s() const { return epoch_s_.load(); }

 private:
  // Fetches what is missing or due, unless another fetch runs or the last
  // attempt was less than a second ago.
  void refresh(Attachment& a, int64_t now);
  // Agrees on the secret of `epoch` with the cluster: offers `candidate`
  // (with ADD) when `create`, then reads the winner. False when the cache
  // did not answer or the entry does not open.
  bool agree(Attachment& a, int64_t epoch, bool create, tickets::Key& out);
  const tickets::Key* lookup(int64_t epoch) const;  // with mu_ held

  std::atomic<int64_t> epoch_s_;
  std::mutex mu_;                   // guards keys_; never held across I/O
  std::vector<tickets::Key> keys_;  // at most a handful
  std::atomic<bool> fetching_{false};
  std::atomic<int64_t> last_attempt_ms_{INT64_MIN / 2};
  std::atomic<bool> told_own_{false};
  std::atomic<int64_t> prev_sought_{INT64_MIN};  // the epoch whose previous key was looked for
};

void free_attachment(void*, void* ptr, CRYPTO_EX_DATA*, int, long, void*) {
  delete static_cast<Attachment*>(ptr);
}

// The ex_data index of the attachment on SSL_CTX. Only SSL_CTX carries our
// data: OpenSSL never duplicates a context, so no application's dup
// callback can run because of it. SSL_SESSION objects are left untouched
// (setting any ex_data on one makes OpenSSL call every application's dup
// callback when it copies the session for a TLS 1.3 ticket, and stunnel's
// crashes on a slot it never set).
int ctx_index() {
  static const int idx = CRYPTO_get_ex_new_index(CRYPTO_EX_INDEX_SSL_CTX, 0, nullptr, nullptr,
                                                 nullptr, free_attachment);
  return idx;
}

Attachment* attachment(const SSL_CTX* ctx) {
  int idx = ctx_index();
  if (ctx == nullptr || idx < 0) return nullptr;
  return static_cast<Attachment*>(SSL_CTX_get_ex_data(ctx, idx));
}

// The context caches server-side sessions (an explicit SSL_SESS_CACHE_OFF,
// or a mode without SERVER, keeps the cache out of the way).
bool server_mode(SSL_CTX* ctx) {
  return (SSL_CTX_get_session_cache_mode(ctx) & SSL_SESS_CACHE_SERVER) != 0;
}

bool internal_store(SSL_CTX* ctx) {
  return (SSL_CTX_get_session_cache_mode(ctx) & SSL_SESS_CACHE_NO_INTERNAL_STORE) == 0;
}

// Per-thread buffer for encoded sessions (no allocation per handshake).
std::vector<unsigned char>& session_buffer() {
  thread_local std::vector<unsigned char> buf(proto::kMaxSessionData);
  return buf;
}

// A session this thread took from the cache (single use) and handed to
// OpenSSL's own single-use check, which removes it from the internal store
// and so calls the remove callback: that call must not ask the cache again.
thread_local const SSL_SESSION* t_taken = nullptr;

}  // namespace

// ssl_internal.h.
unsigned long lifetime_ms(const SSL_SESSION* sess, long now) {
  long timeout = SSL_SESSION_get_timeout(sess);
  long made = SSL_SESSION_get_time(sess);
  long left = timeout - std::max(0L, now - made);
  if (left <= 0) return 0;
  unsigned long ms =
      left > long(proto::kMaxTimeoutMs / 1000) ? proto::kMaxTimeoutMs : (unsigned long)left * 1000;
  return std::max<unsigned long>(ms, proto::kMinTimeoutMs);
}

namespace {

// TLS 1.3 early data can be replayed: a session that lets this connection
// accept it must be used once in the whole cluster (RFC 8446, section 8).
bool early_data_possible(SSL* s, const SSL_SESSION* sess) {
  return SSL_version(s) == TLS1_3_VERSION && SSL_get_max_early_data(s) > 0 &&
         SSL_SESSION_get_max_early_data(sess) > 0;
}

// Takes the entry for `sess` out of the cache: true only when this REMOVE
// removed it (dc_server runs operations one at a time, so of two hosts
// offered the same ticket exactly one sees that).
bool take(Attachment& a, const SSL_SESSION* sess) {
  unsigned id_len = 0;
  const unsigned char* id = SSL_SESSION_get_id(sess, &id_len);
  Backend* b = a.get_backend();
  Lease l = b && id_len > 0 ? b->acquire() : Lease{};
  if (l.dc == nullptr) return false;
  int removed = DC_CTX_remove_session(l.dc, id, id_len);
  note_result(l, "remove");
  log(LogLevel::debug, "session %s allows early data: %s", hex_id(id, id_len).c_str(),
      removed == 1 ? "taken for single use" : "already used or gone: not resumed");
  return removed == 1;
}

// After a successful take: OpenSSL's own single-use check (unless the
// application turned it off with SSL_OP_NO_ANTI_REPLAY) removes the session
// from the context's internal store and refuses it when it is not there;
// with the internal store on, OpenSSL puts it there itself, and without the
// check it would stay there for a replay on this host. So the check always
// runs, and finds the session. The context is the connection's current one
// (OpenSSL has no getter for the initial one a callback switched away
// from): for such a server without SSL_OP_NO_ANTI_REPLAY, the session is
// not resumed, which costs a full handshake and never allows a replay.
void hand_to_single_use_check(SSL* s, SSL_SESSION* sess) {
  SSL_CTX* ctx = SSL_get_SSL_CTX(s);
  if (SSL_get_options(s) & SSL_OP_NO_ANTI_REPLAY) g_real.clear_options(s, SSL_OP_NO_ANTI_REPLAY);
  if (!internal_store(ctx)) SSL_CTX_add_session(ctx, sess);
  t_taken = sess;
}

void store(Attachment& a, SSL_SESSION* sess) {
  unsigned id_len = 0;
  const unsigned char* id = SSL_SESSION_get_id(sess, &id_len);
  if (id_len == 0 || id_len > proto::kMaxIdLen) return;
  long now = long(time(nullptr));
  unsigned long ms = lifetime_ms(sess, now);
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
  const unsigned char* entry = buf.data();
  size_t entry_len = size_t(len);
  thread_local std::vector<uint8_t> sealed;
  if (const seal::Keyring* kr = a.keyring.load(std::memory_order_acquire)) {
    unsigned ctx_len = 0;
    const unsigned char* ctx = SSL_SESSION_get0_id_context(sess, &ctx_len);
    sealed.clear();
    // The entry expires with the session: the cache keeps it no longer.
    int64_t expiry = int64_t(now) + int64_t((ms + 999) / 1000);
    if (!seal::seal(*kr, {id, id_len}, {ctx, ctx_len}, expiry, {buf.data(), size_t(len)}, sealed) ||
        sealed.size() > proto::kMaxSessionData) {
      log(LogLevel::info, "session %s could not be sealed (%zu bytes): not stored",
          hex_id(id, id_len).c_str(), sealed.size());
      a.store_failed++;
      return;
    }
    entry = sealed.data();
    entry_len = sealed.size();
  }

  Backend* b = a.get_backend();
  Lease l = b ? b->acquire() : Lease{};
  if (l.dc == nullptr) {
    a.store_failed++;
    return;
  }
  int ok = DC_CTX_add_session(l.dc, id, id_len, entry, unsigned(entry_len), ms);
  note_result(l, "add");
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

// Whether OpenSSL, offered `sess` by the get callback on `s`, would abort
// the handshake instead of resuming or ignoring it: a server that verifies
// peers with an empty session id context refuses to resume a session made
// under that same empty context ("session id context uninitialized").
// Anything else that does not fit (another context, version, cipher, an
// expired session) OpenSSL itself turns into a full handshake.
bool would_fail_handshake(SSL* s, const SSL_SESSION* sess) {
  unsigned int sid_ctx_len = 0;
  SSL_SESSION_get0_id_context(sess, &sid_ctx_len);
  return (SSL_get_verify_mode(s) & SSL_VERIFY_PEER) != 0 && sid_ctx_len == 0;
}

SSL_SESSION* fetch(Attachment& a, SSL* s, const unsigned char* id, unsigned id_len) {
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
  const unsigned char* der = buf.data();
  size_t der_len = used;
  thread_local std::vector<uint8_t> opened, opened_ctx;
  if (const seal::Keyring* kr = a.keyring.load(std::memory_order_acquire)) {
    // Only what authenticates reaches d2i_SSL_SESSION.
    seal::OpenError e = seal::open(*kr, {id, id_len}, int64_t(time(nullptr)), {buf.data(), used},
                                   opened, opened_ctx);
    if (e != seal::OpenError::none) {
      a.unopened++;
      a.misses++;
      if (!a.told_unopened.exchange(true))
        log(LogLevel::info, "a cache entry (session %s) did not open: %s; such entries are misses",
            hex_id(id, id_len).c_str(), seal::to_string(e));
      return nullptr;
    }
    der = opened.data();
    der_len = opened.size();
  }
  ERR_set_mark();
  const unsigned char* p = der;
  SSL_SESSION* sess = d2i_SSL_SESSION(nullptr, &p, long(der_len));
  if (sess == nullptr) {
    openssl_failed("d2i_SSL_SESSION of a cached session");
    a.misses++;
    return nullptr;
  }
  ERR_pop_to_mark();
  unsigned got_len = 0;
  const unsigned char* got = SSL_SESSION_get_id(sess, &got_len);
  const char* reject = nullptr;
  unsigned sess_ctx_len = 0;
  const unsigned char* sess_ctx = SSL_SESSION_get0_id_context(sess, &sess_ctx_len);
  if (got_len != id_len || std::memcmp(got, id, id_len) != 0)
    reject = "the cache returned a session with another id";
  else if (der != buf.data() &&
           (sess_ctx_len != opened_ctx.size() ||
            (sess_ctx_len > 0 && std::memcmp(sess_ctx, opened_ctx.data(), sess_ctx_len) != 0)))
    reject = "its sealed session id context is not the session's";
  else if (would_fail_handshake(s, sess))
    reject = "it has no session id context and this server verifies peers";
  else if (early_data_possible(s, sess) && !take(a, sess))
    reject = "it allows early data and was used already";
  if (reject != nullptr) {
    log(LogLevel::info, "session %s not resumed: %s", hex_id(id, id_len).c_str(), reject);
    SSL_SESSION_free(sess);
    a.misses++;
    return nullptr;
  }
  a.hits++;
  log(LogLevel::debug, "session %s: hit (%u bytes)", hex_id(id, id_len).c_str(), used);
  return sess;
}

// ---- shared ticket keys: the implementation ----

const tickets::Key* TicketKeys::lookup(int64_t epoch) const {
  const tickets::Key* own = nullptr;
  for (const auto& k : keys_) {
    if (k.epoch != epoch) continue;
    if (k.cluster) return &k;
    own = &k;
  }
  return own;
}

bool TicketKeys::agree(Attachment& a, int64_t epoch, bool create, tickets::Key& out) {
  const seal::Keyring* kr = a.keyring.load(std::memory_order_acquire);
  Backend* b = a.get_backend();
  if (kr == nullptr || b == nullptr) return false;
  Lease l = b->acquire();
  if (l.dc == nullptr) return false;
  std::string rid = tickets::reserved_id(epoch, epoch_s_);
  const auto* id = reinterpret_cast<const unsigned char*>(rid.data());
  unsigned id_len = unsigned(rid.size());
  int64_t expiry = (epoch + 3) * epoch_s_;  // usable as previous until epoch + 2 ends
  if (create) {
    // This process's own key of the epoch, if it made one, is its offer:
    // if it wins, the tickets already sealed with it stay good.
    {
      std::lock_guard<std::mutex> lk(mu_);
      const tickets::Key* own = lookup(epoch);
      if (own != nullptr) out = *own;
    }
    if (out.epoch != epoch && RAND_bytes(out.secret.data(), int(out.secret.size())) != 1)
      return false;
    std::vector<uint8_t> entry;
    int64_t left_ms = expiry * 1000 - int64_t(time(nullptr)) * 1000;
    if (left_ms <= 0 || !seal::seal(*kr, {id, id_len}, {}, expiry, out.secret, entry)) return false;
    unsigned long ms =
        std::min<unsigned long>(static_cast<unsigned long>(left_ms), proto::kMaxTimeoutMs);
    if (DC_CTX_add_session(l.dc, id, id_len, entry.data(), unsigned(entry.size()), ms)) {
      note_result(l, "add of a ticket key");
      out.epoch = epoch;
      out.cluster = true;
      return tickets::derive(out, epoch_s_);
    }
    note_result(l, "add of a ticket key");
    // Refused because another process was first (MATCHING_SESSION): read
    // its key. Any other failure: the cache is away.
    if (DC_CTX_last_error(l.dc) != DC_ERR_REFUSED) return false;
  }
  std::vector<unsigned char> buf(proto::kMaxSessionData);
  unsigned used = 0;
  int hit = DC_CTX_get_session(l.dc, id, id_len, buf.data(), unsigned(buf.size()), &used);
  note_result(l, "get of a ticket key");
  if (!hit || used > buf.size()) return false;
  std::vector<uint8_t> secret, ctx;
  seal::OpenError e =
      seal::open(*kr, {id, id_len}, int64_t(time(nullptr)), {buf.data(), used}, secret, ctx);
  if (e != seal::OpenError::none || secret.size() != tickets::kSecretSize) {
    a.unopened++;
    log(LogLevel::error,
        "the ticket key of epoch %lld in the cache did not open (%s): is the "
        "keyring the same on every host?",
        (long long)epoch, seal::to_string(e));
    return false;
  }
  std::copy(secret.begin(), secret.end(), out.secret.begin());
  OPENSSL_cleanse(secret.data(), secret.size());
  out.epoch = epoch;
  out.cluster = true;
  return tickets::derive(out, epoch_s_);
}

void TicketKeys::refresh(Attachment& a, int64_t now) {
  int64_t e = tickets::epoch_of(now, epoch_s_);
  bool need_cur, need_next, need_prev;
  {
    std::lock_guard<std::mutex> lk(mu_);
    const tickets::Key* cur = lookup(e);
    need_cur = cur == nullptr || !cur->cluster;
    // The next epoch's key is agreed on during the last tenth of this one
    // (at least the last second), so that the change costs no handshake.
    need_next = now >= (e + 1) * epoch_s_ - std::max<int64_t>(epoch_s_ / 10, 1) &&
                (lookup(e + 1) == nullptr || !lookup(e + 1)->cluster);
    // The previous epoch's key is looked for once: if the cluster had none
    // (nobody issued tickets then), there is nothing to open.
    need_prev = lookup(e - 1) == nullptr && prev_sought_ != e - 1;
  }
  if (!need_cur && !need_next && !need_prev) return;
  int64_t now_ms = mono_ms();
  if (now_ms - last_attempt_ms_.load() < 1000 || fetching_.exchange(true)) return;
  last_attempt_ms_ = now_ms;
  std::vector<tickets::Key> got;
  bool cache_answered = true;
  for (int64_t epoch : {e, e + 1, e - 1}) {
    bool wanted = epoch == e ? need_cur : epoch == e + 1 ? need_next : need_prev;
    if (!wanted || !cache_answered) continue;
    tickets::Key k;
    // The previous epoch's key is only read: nobody will seal with it.
    if (agree(a, epoch, epoch != e - 1, k))
      got.push_back(k);
    else if (epoch != e - 1)
      cache_answered = false;
    if (epoch == e - 1) prev_sought_ = e - 1;
  }
  std::lock_guard<std::mutex> lk(mu_);
  for (auto& k : got) {
    // The cluster's key replaces this process's own; the own key is kept
    // too, to open the tickets this process sealed with it.
    std::erase_if(keys_, [&](const tickets::Key& x) { return x.epoch == k.epoch && x.cluster; });
    keys_.push_back(k);
  }
  if (lookup(e) == nullptr) {
    tickets::Key own;
    own.epoch = e;
    if (RAND_bytes(own.secret.data(), int(own.secret.size())) == 1 &&
        tickets::derive(own, epoch_s_)) {
      keys_.push_back(own);
      if (!told_own_.exchange(true))
        log(LogLevel::error,
            "shared ticket keys: the cache did not answer; this process uses a "
            "key of its own (its tickets resume only here) until it does");
    }
  }
  // Anything older than the previous epoch opens nothing any more.
  std::erase_if(keys_, [&](const tickets::Key& x) { return x.epoch < e - 1; });
  fetching_ = false;
}

bool TicketKeys::current(Attachment& a, tickets::Key& out) {
  int64_t now = int64_t(time(nullptr));
  refresh(a, now);
  int64_t e = tickets::epoch_of(now, epoch_s_);
  std::lock_guard<std::mutex> lk(mu_);
  const tickets::Key* k = lookup(e);
  if (k == nullptr) return false;
  out = *k;
  return true;
}

bool TicketKeys::find(Attachment& a, const uint8_t* name, tickets::Key& out, bool& renew) {
  int64_t now = int64_t(time(nullptr));
  refresh(a, now);
  int64_t e = tickets::epoch_of(now, epoch_s_);
  std::lock_guard<std::mutex> lk(mu_);
  for (const auto& k : keys_) {
    if (std::memcmp(k.name.data(), name, tickets::kNameSize) != 0) continue;
    if (k.epoch < e - 1 || k.epoch > e + 1) return false;
    out = k;
    // Under the previous or next key, or this process's own while the
    // cluster has one: opened, and replaced by a ticket under the current.
    const tickets::Key* cur = lookup(e);
    renew = cur == nullptr || std::memcmp(cur->name.data(), name, tickets::kNameSize) != 0;
    return true;
  }
  return false;
}

// OpenSSL's ticket key callback for contexts with the shared policy. enc:
// a new ticket (1: sealed, 0: none issued); otherwise a ticket to open (1:
// use, 2: use and issue a new one, 0: unknown key, a full handshake).
int ticket_key_cb(SSL* s, unsigned char* name, unsigned char* iv, EVP_CIPHER_CTX* c, EVP_MAC_CTX* h,
                  int enc) {
  Attachment* a = attachment(SSL_get_SSL_CTX(s));
  if (a == nullptr || a->tickets == nullptr || a->keyring.load() == nullptr) return 0;
  tickets::Key k;
  bool renew = false;
  if (enc) {
    if (!a->tickets->current(*a, k)) return 0;
    std::memcpy(name, k.name.data(), tickets::kNameSize);
    if (RAND_bytes(iv, 16) != 1) return -1;
    // The lifetime hint never promises more than the keys keep: a ticket
    // of epoch e opens until epoch e + 1 ends (one to two epochs from now).
    int64_t epoch_s = a->tickets->epoch_s(), now = int64_t(time(nullptr));
    long left = long((tickets::epoch_of(now, epoch_s) + 2) * epoch_s - now);
    if (SSL_SESSION* sess = SSL_get_session(s);
        sess != nullptr && SSL_SESSION_get_timeout(sess) > left)
      SSL_SESSION_set_timeout(sess, left);
  } else if (!a->tickets->find(*a, name, k, renew)) {
    return 0;
  }
  char digest[] = "SHA256";
  OSSL_PARAM params[] = {
      OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, k.hmac.data(), k.hmac.size()),
      OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
      OSSL_PARAM_construct_end(),
  };
  int ok = enc ? EVP_EncryptInit_ex(c, EVP_aes_256_cbc(), nullptr, k.aes.data(), iv)
               : EVP_DecryptInit_ex(c, EVP_aes_256_cbc(), nullptr, k.aes.data(), iv);
  if (ok == 1) ok = EVP_MAC_CTX_set_params(h, params);
  OPENSSL_cleanse(&k, sizeof k);
  if (ok != 1) return -1;
  // TLS 1.3 tickets are renewed after every resumption (RFC 8446 advises
  // using each once; OpenSSL sends no new one unless asked); TLS 1.2 ones
  // when they are not under the current key.
  return enc ? 1 : (renew || SSL_version(s) == TLS1_3_VERSION) ? 2 : 1;
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
  // Under the shared policy a TLS 1.3 session travels in its stateless
  // ticket: storing it would cost a round trip per resumption for nothing.
  bool stateless = a->policy.load() == TicketPolicy::shared && SSL_version(s) == TLS1_3_VERSION &&
                   !(SSL_get_options(s) & SSL_OP_NO_TICKET);
  if (SSL_is_server(s) && server_mode(ctx) && a->usable() && !stateless) {
    store(*a, sess);
    // A session that allows early data lives only in the cluster cache, so
    // every use of it goes through the single-use take: OpenSSL has just
    // put it in the internal store too, where a lookup would skip the take.
    if (SSL_SESSION_get_max_early_data(sess) > 0 && internal_store(ctx)) {
      t_taken = sess;
      SSL_CTX_remove_session(ctx, sess);
      t_taken = nullptr;
    }
  }
  // The application's callback decides who owns the extra reference.
  NewCb app = a->app.new_cb.load();
  return app != nullptr ? app(s, sess) : 0;
}

SSL_SESSION* get_session_cb(SSL* s, const unsigned char* id, int len, int* copy) {
  t_taken = nullptr;
  SSL_CTX* ctx = SSL_get_SSL_CTX(s);
  Attachment* a = attachment(ctx);
  if (a == nullptr) return nullptr;
  bool ours = SSL_is_server(s) && server_mode(ctx) && len > 0 && a->usable();
  if (ours) {
    if (SSL_SESSION* sess = fetch(*a, s, id, unsigned(len))) {
      if (early_data_possible(s, sess)) hand_to_single_use_check(s, sess);
      *copy = 0;  // a fresh session: OpenSSL takes our only reference
      return sess;
    }
  }
  GetCb app = a->app.get_cb.load();
  SSL_SESSION* sess = app != nullptr ? app(s, id, len, copy) : nullptr;
  // The application's own cache (nginx's shared cache, say) is no way
  // around single use either: its session must be taken from ours.
  if (sess != nullptr && ours && early_data_possible(s, sess)) {
    if (!take(*a, sess)) {
      if (*copy == 0) SSL_SESSION_free(sess);  // its reference was ours
      return nullptr;
    }
    hand_to_single_use_check(s, sess);
  }
  return sess;
}

// OpenSSL also calls this when its *internal* cache drops a session (size
// limit, expiry, SSL_CTX_free), which must not delete what other servers
// still resume; so the cache is told only when the internal store is off
// (SSL_SESS_CACHE_NO_INTERNAL_STORE, as nginx and Apache use), where a call
// here can only be a real invalidation. Sessions with a ticket are a
// client's (a server keeps none in its own sessions) and never ours.
void remove_session_cb(SSL_CTX* ctx, SSL_SESSION* sess) {
  Attachment* a = attachment(ctx);
  if (a == nullptr) return;
  if (sess == t_taken) {
    t_taken = nullptr;  // taken from the cache already
  } else if (server_mode(ctx) && !internal_store(ctx) && !SSL_SESSION_has_ticket(sess) &&
             a->usable()) {
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
  RemoveCb app = a->app.remove_cb.load();
  if (app != nullptr) app(ctx, sess);
}

// The one ticket predicate (ssl_attach.h, apply_ticket_policy).
bool wants_no_ticket(const Attachment& a, SSL_CTX* ctx, bool server, bool early_data) {
  if (!server || !server_mode(ctx)) return false;
  switch (a.policy.load()) {
    case TicketPolicy::keep:
      return false;
    case TicketPolicy::stateful:
      return true;
    case TicketPolicy::shared:
      return early_data || a.keyring.load() == nullptr;
  }
  return true;
}

// Installs the state and the callbacks; `backend` replaces any earlier one.
// Unless per_connection, the ticket policy goes on the context's options
// (DC_SSL_CTX_attach: contexts of programs that attach are servers).
// The context-wide form of the policy (DC_SSL_CTX_attach), for the
// context's server connections.
void apply_ctx_policy(Attachment& a, SSL_CTX* ctx) {
  if (a.per_connection) return;
  if (wants_no_ticket(a, ctx, true, SSL_CTX_get_max_early_data(ctx) > 0))
    SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
  else if (!a.app_no_ticket)
    SSL_CTX_clear_options(ctx, SSL_OP_NO_TICKET);
}

bool install(SSL_CTX* ctx, std::unique_ptr<Backend> backend, TicketPolicy policy, unsigned epoch_s,
             bool per_connection) {
  int idx = ctx_index();
  if (idx < 0) return fail("OpenSSL could not allocate an ex_data index");
  Attachment* a = attachment(ctx);
  if (a == nullptr) {
    auto fresh = std::make_unique<Attachment>();
    // Keep what the application installed, for client-side sessions.
    fresh->app.new_cb = g_real.sess_get_new_cb(ctx);
    fresh->app.get_cb = g_real.sess_get_get_cb(ctx);
    fresh->app.remove_cb = g_real.sess_get_remove_cb(ctx);
    fresh->app_no_ticket = (SSL_CTX_get_options(ctx) & SSL_OP_NO_TICKET) != 0;
    if (!SSL_CTX_set_ex_data(ctx, idx, fresh.get())) {
      ERR_clear_error();
      return fail("SSL_CTX_set_ex_data failed");
    }
    a = fresh.release();
  }
  a->set_backend(std::move(backend));
  a->per_connection = per_connection;
  if (policy == TicketPolicy::shared && a->tickets == nullptr) {
    // Installed once: a callback may be using it; a later attach keeps it.
    a->tickets = std::make_unique<TicketKeys>(epoch_s);
    g_real.set_ticket_key_cb(ctx, ticket_key_cb);
  }
  a->policy =
      policy == TicketPolicy::shared && a->tickets == nullptr ? TicketPolicy::stateful : policy;
  g_real.sess_set_new_cb(ctx, new_session_cb);
  g_real.sess_set_get_cb(ctx, get_session_cb);
  g_real.sess_set_remove_cb(ctx, remove_session_cb);
  apply_ctx_policy(*a, ctx);
  return true;
}

}  // namespace

// ---- ssl_attach.h ----

const RealFns& real() {
  return g_real;
}

void set_real_fns(const RealFns& fns) {
  g_real = fns;
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

void set_log(void (*fn)(LogLevel, const char*), LogLevel max) {
  g_log_fn = fn;
  g_log_max = max;
}

std::shared_ptr<Target> make_target(const std::string& addr, unsigned timeout_ms,
                                    std::string& err) {
  // Parsed and resolved here, once; nothing is connected (LATE). PIDCHECK:
  // a forked child opens its own connection; RETRY: a connection the agent
  // closed (say, a restart) is replaced within the same operation.
  DcCtxPtr tmpl(DC_CTX_new(addr.c_str(), DC_CTX_FLAG_PERSISTENT | DC_CTX_FLAG_PERSISTENT_PIDCHECK |
                                             DC_CTX_FLAG_PERSISTENT_RETRY |
                                             DC_CTX_FLAG_PERSISTENT_LATE | DC_CTX_FLAG_NO_ENV));
  if (!tmpl) {
    err = DC_last_new_error();
    return nullptr;
  }
  return std::make_shared<Target>(std::move(tmpl), timeout_ms);
}

const char* to_string(TicketPolicy p) {
  switch (p) {
    case TicketPolicy::stateful:
      return "stateful";
    case TicketPolicy::keep:
      return "keep";
    case TicketPolicy::shared:
      return "shared";
  }
  return "?";
}

bool attach_shared(SSL_CTX* ctx, std::shared_ptr<Target> target, TicketPolicy policy,
                   unsigned epoch_s, std::unique_ptr<const seal::Keyring> keyring,
                   std::string& err) {
  if (!install(ctx, std::make_unique<TargetBackend>(std::move(target)), policy, epoch_s, true)) {
    err = t_last_error;
    return false;
  }
  if (keyring) attachment(ctx)->set_keyring(std::move(keyring));
  return true;
}

AppCallbacks* app_callbacks(const SSL_CTX* ctx) {
  Attachment* a = attachment(ctx);
  return a != nullptr ? &a->app : nullptr;
}

bool shares_tickets(const SSL_CTX* ctx) {
  const Attachment* a = attachment(ctx);
  return a != nullptr && a->policy.load() == TicketPolicy::shared;
}

void apply_ticket_policy(SSL* s, bool server) {
  SSL_CTX* ctx = SSL_get_SSL_CTX(s);
  const Attachment* a = attachment(ctx);
  if (a == nullptr) return;
  bool have = (SSL_get_options(s) & SSL_OP_NO_TICKET) != 0;
  if (wants_no_ticket(*a, ctx, server, SSL_get_max_early_data(s) > 0)) {
    if (!have) SSL_set_options(s, SSL_OP_NO_TICKET);
  } else if (have && (SSL_CTX_get_options(ctx) & SSL_OP_NO_TICKET) == 0) {
    g_real.clear_options(s, SSL_OP_NO_TICKET);
  }
}

}  // namespace dc::ssl

// ---- dc_ssl.h ----

using namespace dc::ssl;

namespace {
bool policy_from_flags(unsigned flags, TicketPolicy& out) {
  bool keep = (flags & DC_SSL_FLAG_KEEP_TICKETS) != 0,
       shared = (flags & DC_SSL_FLAG_SHARED_TICKETS) != 0;
  if (keep && shared) {
    fail("DC_SSL_FLAG_KEEP_TICKETS and DC_SSL_FLAG_SHARED_TICKETS exclude each other");
    return false;
  }
  out = keep ? TicketPolicy::keep : shared ? TicketPolicy::shared : TicketPolicy::stateful;
  return true;
}
}  // namespace

extern "C" {

int DC_SSL_CTX_attach(SSL_CTX* ctx, const char* target, unsigned int flags) {
  if (ctx == nullptr || target == nullptr) return fail("DC_SSL_CTX_attach: NULL argument");
  // Each attachment by address has its own target (deadline, per-thread
  // connections), resolved once, here.
  std::string err;
  std::shared_ptr<Target> t = make_target(target, 0, err);
  if (!t) return fail(err.c_str());
  TicketPolicy policy;
  if (!policy_from_flags(flags, policy)) return 0;
  return install(ctx, std::make_unique<TargetBackend>(std::move(t)), policy, kDefaultTicketEpochS,
                 false)
             ? 1
             : 0;
}

int DC_SSL_CTX_attach_ctx(SSL_CTX* ctx, DC_CTX* dc, unsigned int flags) {
  if (ctx == nullptr || dc == nullptr) return fail("DC_SSL_CTX_attach_ctx: NULL argument");
  TicketPolicy policy;
  if (!policy_from_flags(flags, policy)) return 0;
  return install(ctx, std::make_unique<SharedBackend>(dc), policy, kDefaultTicketEpochS, false) ? 1
                                                                                                : 0;
}

int DC_SSL_CTX_set_ticket_epoch(SSL_CTX* ctx, unsigned int seconds) {
  Attachment* a = attachment(ctx);
  if (a == nullptr || a->tickets == nullptr)
    return fail(
        "DC_SSL_CTX_set_ticket_epoch: context not attached with DC_SSL_FLAG_SHARED_TICKETS");
  if (seconds < kMinTicketEpochS || seconds > kMaxTicketEpochS)
    return fail("DC_SSL_CTX_set_ticket_epoch: out of range 2..172800");
  a->tickets->set_epoch(seconds);
  return 1;
}

int DC_SSL_CTX_set_seal_keys(SSL_CTX* ctx, const char* keyring_path) {
  Attachment* a = attachment(ctx);
  if (a == nullptr) return fail("DC_SSL_CTX_set_seal_keys: context not attached");
  if (keyring_path == nullptr) {
    a->seal_failed = true;
    return fail("DC_SSL_CTX_set_seal_keys: NULL path; caching is off for this context");
  }
  auto kr = std::make_unique<dc::seal::Keyring>();
  std::string err;
  if (!dc::seal::load_keyring(keyring_path, *kr, err)) {
    // Never a fall-back to sessions in the clear.
    a->seal_failed = true;
    return fail((err + "; caching is off for this context").c_str());
  }
  a->set_keyring(std::move(kr));
  apply_ctx_policy(*a, ctx);  // the shared policy needs the keyring
  return 1;
}

int DC_SSL_CTX_get_unopened(const SSL_CTX* ctx, unsigned long* out) {
  Attachment* a = attachment(ctx);
  if (a == nullptr || out == nullptr) return fail("DC_SSL_CTX_get_unopened: not attached or NULL");
  *out = a->unopened;
  return 1;
}

int DC_SSL_CTX_set_timeout(SSL_CTX* ctx, unsigned int msecs) {
  Attachment* a = attachment(ctx);
  if (a == nullptr) return fail("DC_SSL_CTX_set_timeout: context not attached");
  if (msecs < 1 || msecs > DC_MAX_OP_TIMEOUT_MS)
    return fail("DC_SSL_CTX_set_timeout: out of range 1..60000 (DC_MAX_OP_TIMEOUT_MS)");
  if (auto b = a->get_backend()) b->set_timeout(msecs);
  return 1;
}

int DC_SSL_CTX_detach(SSL_CTX* ctx) {
  Attachment* a = attachment(ctx);
  if (a == nullptr) return fail("DC_SSL_CTX_detach: context not attached");
  g_real.sess_set_new_cb(ctx, a->app.new_cb.load());
  g_real.sess_set_get_cb(ctx, a->app.get_cb.load());
  g_real.sess_set_remove_cb(ctx, a->app.remove_cb.load());
  if (!a->app_no_ticket && !a->per_connection) SSL_CTX_clear_options(ctx, SSL_OP_NO_TICKET);
  SSL_CTX_set_ex_data(ctx, ctx_index(), nullptr);
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
