// Internal interface of libdistcache_ssl for the LD_PRELOAD shim: the parts
// of the OpenSSL glue that the public C API (dc_ssl.h) does not expose.
//
// The shim interposes OpenSSL's callback setters and getters, so the glue
// must not call them through the dynamic linker (it would call the shim's
// own interposers): it calls them through a table of function pointers that
// the shim fills with the real functions (dlsym(RTLD_NEXT, ...)) before the
// first attach. Applications that use dc_ssl.h never touch this file.
#pragma once

#include <distcache/dc_client.h>
#include <openssl/ssl.h>

#include <cstdint>
#include <memory>
#include <string>

#include "seal.h"

namespace dc::ssl {

using NewCb = int (*)(SSL*, SSL_SESSION*);
using GetCb = SSL_SESSION* (*)(SSL*, const unsigned char*, int, int*);
using RemoveCb = void (*)(SSL_CTX*, SSL_SESSION*);
using TicketKeyCb = int (*)(SSL*, unsigned char*, unsigned char*, EVP_CIPHER_CTX*, EVP_MAC_CTX*,
                            int);

// Every OpenSSL function the shim interposes, in one table: the shim fills
// it with the real functions (dlsym(RTLD_NEXT, ...)) and forwards through
// it; the glue calls the ones it needs through it too, so that it never
// reaches an interposer. Without an interposer it holds OpenSSL's own.
struct RealFns {
  SSL_CTX* (*ctx_new)(const SSL_METHOD*);
  SSL_CTX* (*ctx_new_ex)(OSSL_LIB_CTX*, const char*, const SSL_METHOD*);
  long (*ctx_ctrl)(SSL_CTX*, int, long, void*);
  long (*ctx_callback_ctrl)(SSL_CTX*, int, void (*)(void));
  SSL* (*ssl_new)(SSL_CTX*);
  void (*set_connect_state)(SSL*);
  void (*set_accept_state)(SSL*);
  int (*connect)(SSL*);
  uint64_t (*clear_options)(SSL*, uint64_t);
  void (*sess_set_new_cb)(SSL_CTX*, NewCb);
  void (*sess_set_get_cb)(SSL_CTX*, GetCb);
  void (*sess_set_remove_cb)(SSL_CTX*, RemoveCb);
  NewCb (*sess_get_new_cb)(SSL_CTX*);
  GetCb (*sess_get_get_cb)(SSL_CTX*);
  RemoveCb (*sess_get_remove_cb)(SSL_CTX*);
  int (*set_ticket_key_cb)(SSL_CTX*, TicketKeyCb);
};

// The table in use.
const RealFns& real();

// Replaces the whole table. Call once, before the first attach.
void set_real_fns(const RealFns& fns);

enum class LogLevel : uint8_t { off = 0, error = 1, info = 2, debug = 3 };
const char* to_string(LogLevel l);
using LogFn = void (*)(LogLevel level, const char* line);

// Sends the glue's log lines up to `max` to `fn` (none by default). Call once,
// before the first attach.
void set_log(LogFn fn, LogLevel max);

// A cache address, parsed and resolved once (never again on a handshake),
// with the deadline of its operations. Every thread that runs callbacks for
// attachments sharing one Target gets one connection to it.
class Target;

// Makes a Target for `addr` (as for DC_CTX_new; the environment is not
// read). timeout_ms 0 keeps the library default. Returns null with `err`
// set when the address is malformed or cannot be resolved.
std::shared_ptr<Target> make_target(const std::string& addr, unsigned timeout_ms, std::string& err);

// Attaches `target` to ctx, which the caller found unattached (is_attached:
// an interposer sees one context twice, as SSL_CTX_new calls
// SSL_CTX_new_ex), sealing entries with `keyring` when it is not null. The
// ticket policy is applied per connection by the caller
// (apply_ticket_policy).
// Returns false with `err` set on failure.
// DC_CACHE_TICKETS. stateful: SSL_OP_NO_TICKET on server connections, every
// session through the cache; keep: the application's own settings; shared:
// stateless tickets under keys agreed through the cache (needs a keyring),
// except for connections that accept early data, which stay stateful so
// that their single use can be enforced.
enum class TicketPolicy : uint8_t { stateful, keep, shared };
const char* to_string(TicketPolicy p);

// The epoch length of shared ticket keys, in seconds: default and range.
inline constexpr unsigned kDefaultTicketEpochS = 3600;
inline constexpr unsigned kMinTicketEpochS = 2;
inline constexpr unsigned kMaxTicketEpochS = 2 * 86400;  // 3 epochs within the 7-day limit

bool attach_shared(SSL_CTX* ctx, std::shared_ptr<Target> target, TicketPolicy policy,
                   unsigned epoch_s, std::unique_ptr<const seal::Keyring> keyring,
                   std::string& err);

// The application's session callbacks of an attached context: the setters
// record the callback, to be chained for the sessions the cache does not
// handle, and return false (recording nothing) when ctx is not attached;
// the getters return the application's callback, or false when ctx is not
// attached. The caller uses the real function when they return false.
bool set_app_new_cb(SSL_CTX* ctx, NewCb cb);
bool set_app_get_cb(SSL_CTX* ctx, GetCb cb);
bool set_app_remove_cb(SSL_CTX* ctx, RemoveCb cb);
bool get_app_new_cb(SSL_CTX* ctx, NewCb& cb);
bool get_app_get_cb(SSL_CTX* ctx, GetCb& cb);
bool get_app_remove_cb(SSL_CTX* ctx, RemoveCb& cb);

// True when ctx has a cache attached.
bool is_attached(const SSL_CTX* ctx);

// True when ctx is attached with the shared ticket policy in force (its
// ticket key callback is the glue's, and must stay so).
bool shares_tickets(const SSL_CTX* ctx);

// The ticket policy, decided in one place: whether connection `s` in the
// given role must have SSL_OP_NO_TICKET: it is a server, its context caches
// server sessions (a context with caching off keeps the application's
// tickets), and the policy is stateful, or shared where the connection
// accepts early data or no keyring is there. The application's own
// SSL_OP_NO_TICKET is never removed by the glue.
bool policy_wants_no_ticket(SSL* s, bool server);

// Applies the policy to connection `s` in the given role: when the
// connection is created (role: SSL_is_server) and when its role becomes
// known (SSL_set_connect_state, SSL_connect, SSL_set_accept_state). Sets
// SSL_OP_NO_TICKET where policy_wants_no_ticket, and takes it away from a
// client connection whose context does not have it (only the glue had put
// it there), so client handshakes are exactly the application's. Does
// nothing on connections of unattached contexts.
void apply_ticket_policy(SSL* s, bool server);

// The lifetime a session is stored for, in milliseconds: what is left of
// its own timeout at `now` (seconds since the epoch), clamped to the
// protocol's 500 ms .. 7 days; 0 when it has expired.
unsigned long lifetime_ms(const SSL_SESSION* sess, long now);

}  // namespace dc::ssl
