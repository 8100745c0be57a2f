// Internal interface of libdistcache_ssl for the LD_PRELOAD shim: the parts
// of the OpenSSL glue that the public C API (dc_ssl.h) does not expose.
//
// The shim interposes OpenSSL's callback setters, so the glue must not call
// them through the dynamic linker (it would call the shim's own
// interposers): it calls them through a table of function pointers that the
// shim fills with the real functions (dlsym(RTLD_NEXT, ...)) before the first
// attach. Applications that use dc_ssl.h never touch this file.
#pragma once

#include <distcache/dc_client.h>
#include <openssl/ssl.h>

#include <cstdint>
#include <string>

namespace dc::ssl {

using NewCb = int (*)(SSL*, SSL_SESSION*);
using GetCb = SSL_SESSION* (*)(SSL*, const unsigned char*, int, int*);
using RemoveCb = void (*)(SSL_CTX*, SSL_SESSION*);

// The OpenSSL functions the glue calls that an interposer may replace.
struct RealFns {
  void (*sess_set_new_cb)(SSL_CTX*, NewCb) = nullptr;
  void (*sess_set_get_cb)(SSL_CTX*, GetCb) = nullptr;
  void (*sess_set_remove_cb)(SSL_CTX*, RemoveCb) = nullptr;
  uint64_t (*set_options)(SSL_CTX*, uint64_t) = nullptr;
  uint64_t (*clear_options)(SSL_CTX*, uint64_t) = nullptr;
};

// Replaces the functions the glue calls (a null member keeps OpenSSL's own).
// Call once, before the first attach.
void set_real_fns(const RealFns& fns);

enum class LogLevel : uint8_t { off = 0, error = 1, info = 2, debug = 3 };
const char* to_string(LogLevel l);
using LogFn = void (*)(LogLevel level, const char* line);

// Sends the glue's log lines up to `max` to `fn` (none by default). Call once,
// before the first attach.
void set_log(LogFn fn, LogLevel max);

// How an attachment by address reaches the cache.
struct TargetOptions {
  std::string target;         // an address, as for DC_CTX_new
  unsigned timeout_ms = 0;    // per-operation deadline; 0 keeps the library default
  bool keep_tickets = false;  // DC_SSL_FLAG_KEEP_TICKETS
  bool validated = false;     // the caller already checked `target` (skip the check)
};

// Attaches the cache at opt.target to ctx (see DC_SSL_CTX_attach). When
// `only_if_new` is set and ctx is already attached, leaves it alone and
// returns true (an interposer may see the same context twice: SSL_CTX_new
// calls SSL_CTX_new_ex). Unless opt.validated, the address is checked first
// (parsed and resolved, not connected). Returns false with `err` set when it
// is malformed.
bool attach_target(SSL_CTX* ctx, const TargetOptions& opt, bool only_if_new, std::string& err);

// Records the application's callback for an attached context, to be chained
// for the sessions the cache does not handle. Returns false (recording
// nothing) when ctx is not attached; the caller then calls the real setter.
bool set_app_new_cb(SSL_CTX* ctx, NewCb cb);
bool set_app_get_cb(SSL_CTX* ctx, GetCb cb);
bool set_app_remove_cb(SSL_CTX* ctx, RemoveCb cb);

// True when ctx has a cache attached.
bool is_attached(const SSL_CTX* ctx);

// True when ctx is attached with the default (stateful) ticket policy.
bool forces_no_ticket(const SSL_CTX* ctx);

// Ticket policy for interposers. SSL_OP_NO_TICKET ends up set when the
// application asked for it itself, or when the stateful policy applies and
// the context caches server sessions (its cache mode has
// SSL_SESS_CACHE_SERVER); an application that turns session caching off
// gets its own ticket settings back. note_app_ticket_option records the
// application's own wish (from its set/clear_options calls); apply_ticket_policy
// sets or clears the option accordingly (call it after the application
// changed the options or the cache mode). Both do nothing on a context that
// is not attached.
void note_app_ticket_option(SSL_CTX* ctx, bool no_ticket);
void apply_ticket_policy(SSL_CTX* ctx);

}  // namespace dc::ssl
