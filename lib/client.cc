// libdistcache: the DC_CTX client API of include/distcache/dc_client.h.
//
// Each entry point checks its arguments, then runs one request/response
// exchange (client_conn.h) under the context's deadline, honouring the 1.x
// connection flags and the circuit breaker (a failed operation opens it for
// the back-off period; the next operation after it is the probe). Each
// entry point holds the context's mutex for the whole operation, so threads
// that share one DC_CTX (Apache's mod_socache_dc under the event MPM) take
// turns instead of racing on its socket. Nothing throws across the C ABI:
// every entry point catches everything (in practice only std::bad_alloc)
// and reports a failure. State lives in the DC_CTX; the only other state is
// thread-local text (DC_last_new_error(), DC_CTX_last_error_string()).
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "addr.h"
#include "client_conn.h"
#include "decimal.h"
#include "distcache/dc_client.h"
#include "net.h"
#include "proto.h"

namespace {

using dc::client::Err;
namespace proto = dc::proto;

constexpr unsigned kMaxOpTimeoutMs = DC_MAX_OP_TIMEOUT_MS;
constexpr unsigned kMaxBackoffMs = 600000;

// Why the last DC_CTX_new* of this thread failed. A plain array: trivially
// destructible thread-locals are safe even in a library that is dlclose()d.
thread_local char g_new_error[512];
// The copy DC_CTX_last_error_string() hands out, for the same reason.
thread_local char g_error_copy[512];

void set_new_error(const char* s) noexcept {
  std::snprintf(g_new_error, sizeof g_new_error, "%s", s);
}
void set_new_error(const std::string& s) noexcept {
  set_new_error(s.c_str());
}

}  // namespace

struct st_DC_CTX {
  // Held by every entry point for its whole operation (see the top).
  mutable std::mutex mu;
  dc::Address addr;
  dc::SockAddr sa;
  unsigned flags = 0;
  unsigned op_timeout_ms = DC_DEFAULT_OP_TIMEOUT_MS;
  unsigned backoff_ms = DC_DEFAULT_BACKOFF_MS;
  // The circuit breaker: open since now_ms() == failed_at, until
  // failed_at + backoff_ms (so set_backoff applies at once); `why` says
  // what opened it, for the text of the skipped operations.
  int64_t failed_at = 0;
  int64_t started_at = 0;  // now_ms() at the start of the current exchange
  bool breaker_open = false;
  std::string breaker_why;
  pid_t pid = 0;  // the process that opened `conn`
  dc::client::Conn conn;
  uint32_t next_uid = 1;
  std::vector<uint8_t> req;   // encoded request, reused
  std::vector<uint8_t> resp;  // last response payload, reused
  // reget state: the id of the last operation when it was a successful GET,
  // whose data is still in `resp`.
  bool last_get_valid = false;
  uint8_t last_get_id[proto::kMaxIdLen] = {};
  unsigned last_get_id_len = 0;
  // Outcome of the last operation.
  int err = DC_ERR_NONE;
  std::string err_text = "ok";

  bool persistent() const { return flags & DC_CTX_FLAG_PERSISTENT; }

  // Records a failed operation: its code and one line of text. Returns 0.
  int fail(Err e, std::string text) {
    err = int(e);
    err_text = std::move(text);
    return 0;
  }
  int bad_argument(const char* what) {
    return fail(Err::argument, std::string("bad argument: ") + what);
  }
  // The catch-all of every entry point: must not throw itself.
  int oom() noexcept {
    err = DC_ERR_IO;
    try {
      err_text = "out of memory";
    } catch (...) {
      err_text.clear();
    }
    conn.close();
    return 0;
  }
  void succeed() {
    err = DC_ERR_NONE;
    err_text = "ok";
  }

  // Opens the circuit breaker: operations fail at once for backoff_ms.
  // Called with err/err_text describing the failure.
  void trip() {
    failed_at = dc::now_ms();
    breaker_open = backoff_ms > 0;
    breaker_why = err_text;
  }

  // Opens the connection under `deadline` (a connect that timed out is a
  // connect failure too).
  Err connect(int64_t deadline) {
    std::string detail;
    Err e = conn.open(sa, deadline, detail);
    if (e != Err::none) {
      fail(Err::connect, "cannot connect to " + addr.to_string() + ": " +
                             (e == Err::timeout ? "no connection within the deadline of " +
                                                      std::to_string(op_timeout_ms) + " ms"
                                                : detail));
      return Err::connect;
    }
    pid = getpid();
    return Err::none;
  }

  // Runs the request in `req` (uid `uid`, operation `op`); the answer's
  // payload lands in `resp`. Returns true on an exchange that completed;
  // false with err/err_text set otherwise.
  // Failures that open the breaker: every one of them costs the next
  // operation its deadline or a reconnect if it were tried at once.
  bool transact(proto::Op op, uint32_t uid) {
    if (!exchange(op, uid)) {
      if (err != int(Err::backoff)) trip();
      return false;
    }
    return true;
  }

  bool exchange(proto::Op op, uint32_t uid) {
    int64_t now = dc::now_ms();
    int64_t deadline = now + op_timeout_ms;
    started_at = now;
    if (breaker_open) {
      if (now < failed_at + int64_t(backoff_ms)) {
        fail(Err::backoff, "skipped for " + std::to_string(failed_at + backoff_ms - now) +
                               " ms more (back-off " + std::to_string(backoff_ms) +
                               " ms) after: " + breaker_why);
        return false;
      }
      breaker_open = false;  // this operation is the probe
    }
    // PIDCHECK: a connection opened by another process (our parent) is not
    // ours to use; drop our reference (the parent keeps its socket).
    if (persistent() && conn.is_open() && (flags & DC_CTX_FLAG_PERSISTENT_PIDCHECK) &&
        getpid() != pid)
      conn.close();
    if (!persistent()) conn.close();
    bool fresh = false;
    if (!conn.is_open()) {
      if (connect(deadline) != Err::none) return false;
      fresh = true;
    }
    std::string detail;
    bool nothing;
    Err e = conn.transact(req, uid, op, deadline, resp, detail, nothing);
    // RETRY: the persistent connection was found broken before any answer
    // came (the cache restarted, an idle timeout...): once, on a fresh one.
    if (e == Err::io && nothing && !fresh && persistent() &&
        (flags & DC_CTX_FLAG_PERSISTENT_RETRY)) {
      if (connect(deadline) != Err::none) return false;
      e = conn.transact(req, uid, op, deadline, resp, detail, nothing);
    }
    if (!persistent()) conn.close();
    switch (e) {
      case Err::none:
        return true;
      case Err::timeout:
        fail(e, "no answer from " + addr.to_string() + " within the deadline of " +
                    std::to_string(op_timeout_ms) + " ms");
        break;
      case Err::protocol:
        fail(e, "protocol error from " + addr.to_string() + ": " + detail);
        break;
      default:
        fail(e, "connection to " + addr.to_string() + " broke: " + detail);
        break;
    }
    return false;
  }

  // Encodes a request whose payload is `parts` into `req`; returns its uid.
  uint32_t encode(proto::Op op, std::initializer_list<proto::Bytes> parts) {
    proto::Message m;
    m.uid = next_uid++;
    m.op = op;
    req.clear();
    proto::append(req, m, std::span<const proto::Bytes>(parts.begin(), parts.size()));
    return m.uid;
  }

  // A 1-byte status answer, or -1 (err set, connection dropped) when the
  // answer is not one byte.
  int status_byte(const char* what) {
    if (resp.size() == 1) return resp[0];
    bad_answer(std::string(what) + " answered with " + std::to_string(resp.size()) +
               " bytes instead of 1");
    return -1;
  }

  // An answer that is well framed but means nothing: the stream is no
  // longer trusted. Returns 0.
  int bad_answer(const std::string& why) {
    conn.close();
    fail(Err::protocol, "protocol error from " + addr.to_string() + ": " + why);
    trip();
    return 0;
  }

  // The agent answered DISCONNECTED: its store is away or too slow. A slow
  // answer (the agent waited out its deadline) opens the breaker as a
  // timeout does, since asking again at once would cost that wait again; a
  // prompt one does not (DC_PROMPT_DISCONNECTED_MS): it cost nothing, and
  // with a pool or a cluster the next session may live where the store is
  // up. Returns 0.
  int disconnected() {
    int64_t took = dc::now_ms() - started_at;
    fail(Err::disconnected, "the cache agent at " + addr.to_string() +
                                " has no connection to its store or no answer in time "
                                "(DISCONNECTED after " +
                                std::to_string(took) + " ms)");
    if (took >= DC_PROMPT_DISCONNECTED_MS) trip();
    return 0;
  }
};

namespace {

bool valid_id(const unsigned char* id, unsigned id_len) {
  return id != nullptr && id_len >= 1 && id_len <= proto::kMaxIdLen;
}

DC_CTX* ctx_new(const char* target, unsigned flags, unsigned op_timeout_ms) {
  if (target == nullptr) {
    set_new_error("DC_CTX_new: the address is NULL");
    return nullptr;
  }
  auto* ctx = new st_DC_CTX;
  ctx->flags = flags;
  ctx->op_timeout_ms = op_timeout_ms;
  ctx->pid = getpid();
  std::string err;
  if (!dc::parse_address(target, ctx->addr, err) || !dc::resolve(ctx->addr, false, ctx->sa, err)) {
    set_new_error(err);
    delete ctx;
    return nullptr;
  }
  // 1.x: PERSISTENT without LATE connects now, and a failure fails creation.
  if ((flags & DC_CTX_FLAG_PERSISTENT) && !(flags & DC_CTX_FLAG_PERSISTENT_LATE) &&
      ctx->connect(dc::now_ms() + op_timeout_ms) != Err::none) {
    set_new_error(ctx->err_text);
    delete ctx;
    return nullptr;
  }
  set_new_error("");
  return ctx;
}

// Reads DC_CACHE_TIMEOUT_MS into `out` when it is set. Returns false with
// `err` set when it is set but malformed.
bool timeout_from_env(unsigned& out, std::string& err) {
  const char* t = std::getenv("DC_CACHE_TIMEOUT_MS");
  if (t == nullptr) return true;
  uint64_t v = 0;
  if (!dc::parse_decimal(t, 1, kMaxOpTimeoutMs, v)) {
    err = std::string("DC_CACHE_TIMEOUT_MS=\"") + t + "\" is not a number of milliseconds in 1.." +
          std::to_string(kMaxOpTimeoutMs);
    return false;
  }
  out = unsigned(v);
  return true;
}

// Copies the cached GET answer out as 1.x does: *result_used is the full
// length; a buffer too small receives the first result_size bytes.
void copy_result(const DC_CTX* ctx, unsigned char* storage, unsigned size, unsigned* used) {
  if (used) *used = unsigned(ctx->resp.size());
  if (storage == nullptr) return;
  size_t n = std::min<size_t>(size, ctx->resp.size());
  if (n > 0) std::memcpy(storage, ctx->resp.data(), n);
}

}  // namespace

extern "C" {

DC_EXPORT DC_CTX* DC_CTX_new(const char* target, unsigned int flags) {
  try {
    // DC_CACHE_TIMEOUT_MS also lets programs written for 1.x, which cannot
    // call DC_CTX_set_timeout, have a longer deadline.
    unsigned timeout = DC_DEFAULT_OP_TIMEOUT_MS;
    std::string err;
    if (!(flags & DC_CTX_FLAG_NO_ENV) && !timeout_from_env(timeout, err)) {
      set_new_error(err);
      return nullptr;
    }
    return ctx_new(target, flags, timeout);
  } catch (...) {
    set_new_error("DC_CTX_new: out of memory");
    return nullptr;
  }
}

DC_EXPORT DC_CTX* DC_CTX_new_env(unsigned int flags) {
  try {
    const char* addr = std::getenv("DC_CACHE_ADDR");
    if (addr == nullptr || *addr == '\0') {
      set_new_error("DC_CACHE_ADDR is not set (expected e.g. UNIX:/tmp/dc_client or IP:host:port)");
      return nullptr;
    }
    unsigned timeout = DC_DEFAULT_OP_TIMEOUT_MS;
    std::string err;
    if (!timeout_from_env(timeout, err)) {
      set_new_error(err);
      return nullptr;
    }
    DC_CTX* ctx = ctx_new(addr, flags, timeout);
    if (ctx == nullptr) {
      std::string why = g_new_error;
      set_new_error("DC_CACHE_ADDR=\"" + std::string(addr) + "\": " + why);
    }
    return ctx;
  } catch (...) {
    set_new_error("DC_CTX_new_env: out of memory");
    return nullptr;
  }
}

DC_EXPORT const char* DC_last_new_error(void) {
  return g_new_error;
}

DC_EXPORT void DC_CTX_free(DC_CTX* ctx) {
  delete ctx;
}

DC_EXPORT int DC_CTX_add_session(DC_CTX* ctx, const unsigned char* id_data, unsigned int id_len,
                                 const unsigned char* sess_data, unsigned int sess_len,
                                 unsigned long timeout_msecs) {
  if (ctx == nullptr) return 0;
  std::lock_guard<std::mutex> lk(ctx->mu);
  try {
    ctx->last_get_valid = false;
    if (!valid_id(id_data, id_len)) return ctx->bad_argument("the session id must be 1..64 bytes");
    if (sess_data == nullptr || sess_len == 0 || sess_len > proto::kMaxSessionData)
      return ctx->bad_argument("the session data must be 1..32768 bytes");
    // The whole ADD payload (8-byte prefix, id, data) must fit one message.
    if (proto::kAddPrefix + id_len + sess_len > proto::kMaxPayload)
      return ctx->bad_argument("the session id and data together exceed 32760 bytes");
    if (timeout_msecs < DC_MIN_TIMEOUT || timeout_msecs > proto::kMaxTimeoutMs)
      return ctx->bad_argument("the session timeout must be 500..604800000 ms");
    uint8_t prefix[proto::kAddPrefix];
    proto::add_prefix(uint32_t(timeout_msecs), id_len, prefix);
    uint32_t uid = ctx->encode(proto::Op::add, {proto::Bytes(prefix), proto::Bytes(id_data, id_len),
                                                proto::Bytes(sess_data, sess_len)});
    if (!ctx->transact(proto::Op::add, uid)) return 0;
    int st = ctx->status_byte("ADD");
    if (st < 0) return 0;
    if (st == int(proto::AddStatus::disconnected)) return ctx->disconnected();
    if (st != int(proto::AddStatus::ok))
      return ctx->fail(Err::refused, std::string("the cache refused the ADD: ") +
                                         proto::to_string(proto::AddStatus(st)));
    ctx->succeed();
    return 1;
  } catch (...) {
    return ctx->oom();
  }
}

DC_EXPORT int DC_CTX_remove_session(DC_CTX* ctx, const unsigned char* id_data,
                                    unsigned int id_len) {
  if (ctx == nullptr) return 0;
  std::lock_guard<std::mutex> lk(ctx->mu);
  try {
    ctx->last_get_valid = false;
    if (!valid_id(id_data, id_len)) return ctx->bad_argument("the session id must be 1..64 bytes");
    uint32_t uid = ctx->encode(proto::Op::remove, {proto::Bytes(id_data, id_len)});
    if (!ctx->transact(proto::Op::remove, uid)) return 0;
    int st = ctx->status_byte("REMOVE");
    if (st < 0) return 0;
    switch (proto::Status(st)) {
      case proto::Status::ok:
        ctx->succeed();
        return 1;
      case proto::Status::notok:
        ctx->succeed();  // "not present" is a plain answer, not an error
        return 0;
      case proto::Status::disconnected:
        return ctx->disconnected();
    }
    return ctx->bad_answer("REMOVE answered with status " + std::to_string(st));
  } catch (...) {
    return ctx->oom();
  }
}

DC_EXPORT int DC_CTX_get_session(DC_CTX* ctx, const unsigned char* id_data, unsigned int id_len,
                                 unsigned char* result_storage, unsigned int result_size,
                                 unsigned int* result_used) {
  if (ctx == nullptr) return 0;
  std::lock_guard<std::mutex> lk(ctx->mu);
  try {
    ctx->last_get_valid = false;
    if (!valid_id(id_data, id_len)) return ctx->bad_argument("the session id must be 1..64 bytes");
    uint32_t uid = ctx->encode(proto::Op::get, {proto::Bytes(id_data, id_len)});
    if (!ctx->transact(proto::Op::get, uid)) return 0;
    switch (proto::classify_get(ctx->resp)) {
      case proto::GetAnswer::data:
        break;
      case proto::GetAnswer::disconnected:
        return ctx->disconnected();
      case proto::GetAnswer::miss:
        ctx->succeed();  // a miss
        return 0;
    }
    ctx->last_get_valid = true;
    std::memcpy(ctx->last_get_id, id_data, id_len);
    ctx->last_get_id_len = id_len;
    copy_result(ctx, result_storage, result_size, result_used);
    ctx->succeed();
    return 1;
  } catch (...) {
    return ctx->oom();
  }
}

DC_EXPORT int DC_CTX_reget_session(DC_CTX* ctx, const unsigned char* id_data, unsigned int id_len,
                                   unsigned char* result_storage, unsigned int result_size,
                                   unsigned int* result_used) {
  if (ctx == nullptr) return 0;
  std::lock_guard<std::mutex> lk(ctx->mu);
  try {
    if (!valid_id(id_data, id_len)) return ctx->bad_argument("the session id must be 1..64 bytes");
    if (!ctx->last_get_valid || ctx->last_get_id_len != id_len ||
        std::memcmp(ctx->last_get_id, id_data, id_len) != 0) {
      ctx->succeed();  // nothing to reget: a miss, not an error
      return 0;
    }
    copy_result(ctx, result_storage, result_size, result_used);
    ctx->succeed();
    return 1;
  } catch (...) {
    return ctx->oom();
  }
}

DC_EXPORT int DC_CTX_has_session(DC_CTX* ctx, const unsigned char* id_data, unsigned int id_len) {
  if (ctx == nullptr) return -1;
  std::lock_guard<std::mutex> lk(ctx->mu);
  try {
    ctx->last_get_valid = false;
    if (!valid_id(id_data, id_len)) {
      ctx->bad_argument("the session id must be 1..64 bytes");
      return -1;
    }
    uint32_t uid = ctx->encode(proto::Op::have, {proto::Bytes(id_data, id_len)});
    if (!ctx->transact(proto::Op::have, uid)) return -1;
    int st = ctx->status_byte("HAVE");
    if (st < 0) return -1;
    switch (proto::Status(st)) {
      case proto::Status::ok:
        ctx->succeed();
        return 1;
      case proto::Status::notok:
        ctx->succeed();
        return 0;
      case proto::Status::disconnected:
        ctx->disconnected();
        return -1;
    }
    ctx->bad_answer("HAVE answered with status " + std::to_string(st));
    return -1;
  } catch (...) {
    ctx->oom();
    return -1;
  }
}

DC_EXPORT int DC_CTX_set_timeout(DC_CTX* ctx, unsigned int msecs) {
  if (ctx == nullptr || msecs < 1 || msecs > kMaxOpTimeoutMs) return 0;
  std::lock_guard<std::mutex> lk(ctx->mu);
  ctx->op_timeout_ms = msecs;
  return 1;
}

DC_EXPORT int DC_CTX_set_backoff(DC_CTX* ctx, unsigned int msecs) {
  if (ctx == nullptr || msecs > kMaxBackoffMs) return 0;
  std::lock_guard<std::mutex> lk(ctx->mu);
  ctx->backoff_ms = msecs;
  if (msecs == 0) ctx->breaker_open = false;
  return 1;
}

DC_EXPORT DC_CTX* DC_CTX_dup(const DC_CTX* tmpl) {
  if (tmpl == nullptr) return nullptr;
  const DC_CTX* src = tmpl;
  try {
    auto* ctx = new st_DC_CTX;
    std::lock_guard<std::mutex> lk(src->mu);
    ctx->addr = src->addr;
    ctx->sa = src->sa;
    ctx->flags = src->flags;
    ctx->op_timeout_ms = src->op_timeout_ms;
    ctx->backoff_ms = src->backoff_ms;
    ctx->pid = getpid();
    return ctx;
  } catch (...) {
    return nullptr;
  }
}

DC_EXPORT int DC_CTX_last_error(const DC_CTX* ctx) {
  if (ctx == nullptr) return DC_ERR_ARGUMENT;
  std::lock_guard<std::mutex> lk(ctx->mu);
  return ctx->err;
}

DC_EXPORT const char* DC_CTX_last_error_string(const DC_CTX* ctx) {
  if (ctx == nullptr) return "bad argument: the DC_CTX is NULL";
  // A copy: another thread's next operation may replace err_text.
  std::lock_guard<std::mutex> lk(ctx->mu);
  std::snprintf(g_error_copy, sizeof g_error_copy, "%s", ctx->err_text.c_str());
  return g_error_copy;
}

}  // extern "C"
