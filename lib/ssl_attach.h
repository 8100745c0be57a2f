// The seam between the OpenSSL glue (lib/ssl.cc) and the LD_PRELOAD shim
// (shim/shim.cc): what the shim needs that dc_ssl.h does not offer
// (DC_SSL_CTX_is_attached answers "is this context attached?" for both).
// Applications that use dc_ssl.h never touch this file.
#pragma once

#include <openssl/ssl.h>

#include <atomic>
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

// Every OpenSSL function the shim interposes. The shim fills the table with
// the real functions (dlsym(RTLD_NEXT, ...)) before the first attach and
// forwards through it; the glue calls the ones it needs through it too, so
// it never reaches an interposer. Without a shim it holds OpenSSL's own.
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
const RealFns& real();
void set_real_fns(const RealFns& fns);  // once, before the first attach

enum class LogLevel : uint8_t { off = 0, error = 1, info = 2, debug = 3 };
const char* to_string(LogLevel l);
// Sends the glue's log lines up to `max` to `fn` (none by default). Call
// once, before the first attach.
void set_log(void (*fn)(LogLevel level, const char* line), LogLevel max);

// DC_CACHE_TICKETS. stateful: no tickets on server connections, every
// session through the cache; keep: the application's own settings; shared:
// stateless tickets under keys agreed through the cache (needs a keyring),
// except on connections that accept early data (their single use is
// enforced through the cache). Shared ticket keys change every epoch.
enum class TicketPolicy : uint8_t { stateful, keep, shared };
const char* to_string(TicketPolicy p);
inline constexpr unsigned kDefaultTicketEpochS = 3600;
inline constexpr unsigned kMinTicketEpochS = 2;
inline constexpr unsigned kMaxTicketEpochS = 2 * 86400;  // 3 epochs within the 7-day limit

// A cache address, parsed and resolved once (as for DC_CTX_new, without
// reading the environment); every thread that runs callbacks for contexts
// sharing it gets its own connection. timeout_ms 0: the library default.
// Null with `err` set when the address is malformed or cannot be resolved.
class Target;
std::shared_ptr<Target> make_target(const std::string& addr, unsigned timeout_ms, std::string& err);

// Attaches `target` to ctx, which the caller found unattached, sealing
// entries with `keyring` unless it is null. The ticket policy is applied
// per connection, by apply_ticket_policy. False with `err` set on failure.
bool attach_shared(SSL_CTX* ctx, std::shared_ptr<Target> target, TicketPolicy policy,
                   unsigned epoch_s, std::unique_ptr<const seal::Keyring> keyring,
                   std::string& err);

// The application's own session callbacks of an attached context: the shim's
// setters record them here (ours stay installed and chain to them for the
// sessions the cache does not handle), its getters read them. Null when ctx
// is not attached: then the caller uses the real function.
struct AppCallbacks {
  std::atomic<NewCb> new_cb{nullptr};
  std::atomic<GetCb> get_cb{nullptr};
  std::atomic<RemoveCb> remove_cb{nullptr};
};
AppCallbacks* app_callbacks(const SSL_CTX* ctx);

// True when ctx is attached under the shared ticket policy (its ticket key
// callback is the glue's, and must stay so).
bool shares_tickets(const SSL_CTX* ctx);

// The ticket policy, decided in one place, applied to connection `s` in the
// given role: when it is made (role: SSL_is_server), when its role becomes
// known, and after the application clears options. SSL_OP_NO_TICKET is set
// on a server whose context caches server sessions, under stateful, or under
// shared when it accepts early data or has no keyring; it is taken away
// from a client whose context does not have it (only the glue put it
// there). The application's own SSL_OP_NO_TICKET stays. Does nothing on
// connections of unattached contexts.
void apply_ticket_policy(SSL* s, bool server);

}  // namespace dc::ssl
