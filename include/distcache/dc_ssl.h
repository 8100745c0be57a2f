/*
 * distcache OpenSSL integration: attach a distributed session cache to an
 * OpenSSL 3 SSL_CTX.
 *
 * Attaching installs the SSL_CTX's session callbacks. From then on every
 * server-side session the context negotiates is stored in the cache (key: the
 * session id, value: i2d_SSL_SESSION, lifetime: the session's own timeout
 * clamped to 500 ms .. 7 days) and looked up there when a client offers it.
 * When OpenSSL invalidates a session (a connection freed without a clean
 * shutdown, a fatal alert) it is removed from the cache too, provided the
 * context's internal cache is off (SSL_SESS_CACHE_NO_INTERNAL_STORE, as
 * nginx and Apache use): otherwise OpenSSL reports its internal cache's
 * evictions the same way, and those must not delete what other servers
 * still resume. Client-side sessions are left to the callbacks the
 * application had set before attaching, which keep being called. Whether a
 * session may resume stays OpenSSL's decision: a session made under a
 * different session id context (for example by a server with another
 * certificate) does not resume.
 *
 * A cache problem never fails a handshake: every cache operation has a
 * deadline, and a cache that is down, slow or full costs a full handshake.
 *
 * Link with -ldistcache_ssl -ldistcache -lssl -lcrypto.
 */
#ifndef DISTCACHE_DC_SSL_H
#define DISTCACHE_DC_SSL_H

#include <distcache/dc_client.h>
#include <openssl/ssl.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Version of this API. */
#define DISTCACHE_SSL_API 0x0001

/* Ticket policies (the `flags` of the attach functions).
 *
 * Default: set SSL_OP_NO_TICKET on the context when attaching, unless its
 * cache mode lacks SSL_SESS_CACHE_SERVER (caching off; set the mode first).
 * (The shim also follows later changes of the mode and of the options.)
 * OpenSSL's stateless tickets are sealed with a per-process key, so no other
 * server could open them, and a TLS 1.2 client that sends one bypasses the
 * session cache. With the option set, TLS 1.2 resumes by session id and
 * TLS 1.3 issues stateful tickets; both go through the distributed cache.
 *
 * DC_SSL_FLAG_KEEP_TICKETS: leave the context's ticket options as the
 * application set them (sessions resumed by a ticket then never reach the
 * cache). */
#define DC_SSL_FLAG_KEEP_TICKETS 0x0001

/* DC_SSL_FLAG_SHARED_TICKETS: stateless tickets (TLS 1.2 and 1.3) under
 * keys the cluster agrees on through the cache, so a ticket issued by any
 * server opens on every other with no cache round trip. Keys change every
 * epoch (DC_SSL_CTX_set_ticket_epoch, default 3600 s); tickets of the
 * previous and next epochs still open and are renewed. Needs a keyring
 * (DC_SSL_CTX_set_seal_keys: keys are stored sealed); without one the
 * stateful policy applies. Connections that accept TLS 1.3 early data stay
 * stateful, so that such a ticket is used once in the whole cluster. */
#define DC_SSL_FLAG_SHARED_TICKETS 0x0002

/* Attaches the cache at `target` ("UNIX:/path", "IP:host:port", ...; see
 * dc_client.h) to `ctx`. Each thread that runs handshakes on the context
 * opens its own persistent connection at its first cache operation, and a
 * process that forks opens a new one in the child, so callbacks may run on
 * many threads and in forked workers at once; nothing is connected here.
 * Callbacks the application set before this call (SSL_CTX_sess_set_new_cb,
 * _get_cb, _remove_cb) are kept for client-side sessions; set yours before
 * attaching. The callbacks find the cache through SSL_get_SSL_CTX(): a
 * server that switches connections to other contexts (SNI,
 * SSL_set_SSL_CTX) attaches those as well. Attaching a context that is
 * already attached replaces the cache and the ticket policy.
 * Returns 1 on success, 0 when ctx or target is NULL or the address is
 * malformed; DC_SSL_last_error() then says why. */
DC_EXPORT int DC_SSL_CTX_attach(SSL_CTX* ctx, const char* target, unsigned int flags);

/* Like DC_SSL_CTX_attach with an existing DC_CTX. The caller keeps ownership
 * of `dc` and must keep it alive until the context is detached or freed. A
 * DC_CTX is one connection and is used by one thread at a time: a callback
 * that finds it busy on another thread counts a miss instead of waiting, so
 * multi-threaded servers should attach by address. Returns 1 on success,
 * 0 when ctx or dc is NULL. */
DC_EXPORT int DC_SSL_CTX_attach_ctx(SSL_CTX* ctx, DC_CTX* dc, unsigned int flags);

/* Seals this context's cache entries with the keyring file at
 * `keyring_path` (one key per line, 64 hex digits, e.g. from
 * `openssl rand -hex 32`; '#' comments; the first key seals, every key
 * opens; the file must be readable by its owner only). From then on the
 * cache holds only ciphertext (AES-256-GCM, a key per entry derived from a
 * cluster key; docs/security.md has the format), and an entry that does not
 * open (another keyring, tampered, moved to another session id, expired, in
 * the clear) is a miss. Call it after attaching and before handshakes; the
 * file is read now. Returns 1 on success; 0 when ctx is not attached or the
 * file is missing, malformed or readable by others: DC_SSL_last_error() says
 * why, and caching stays off for this context (never a fall-back to
 * sessions in the clear) until a call succeeds. */
DC_EXPORT int DC_SSL_CTX_set_seal_keys(SSL_CTX* ctx, const char* keyring_path);

/* Sets the epoch of shared ticket keys (2..172800 seconds; the default is
 * 3600) of a context attached with DC_SSL_FLAG_SHARED_TICKETS; keys made so
 * far are dropped, so call it before handshakes. Every server of a cluster
 * must use the same epoch. Returns 1, or 0 when ctx is not attached with
 * that flag or the value is out of range. */
DC_EXPORT int DC_SSL_CTX_set_ticket_epoch(SSL_CTX* ctx, unsigned int seconds);

/* Sets *out to the number of cache entries of ctx that did not open since
 * it was attached (each was a miss). Returns 1, or 0 when ctx is not
 * attached or out is NULL. */
DC_EXPORT int DC_SSL_CTX_get_unopened(const SSL_CTX* ctx, unsigned long* out);

/* Sets the deadline of each cache operation of an attached context, in
 * milliseconds (1..60000; default DC_DEFAULT_OP_TIMEOUT_MS). Applies, for
 * DC_SSL_CTX_attach_ctx, to the given DC_CTX at once; by address, from each thread's next cache
 * operation. Returns 1 on success, 0 when ctx is not attached or msecs is out of range. */
DC_EXPORT int DC_SSL_CTX_set_timeout(SSL_CTX* ctx, unsigned int msecs);

/* Detaches the cache: restores the callbacks the application had set before
 * attaching, and clears SSL_OP_NO_TICKET unless it was set before attaching.
 * Call it only while no handshake runs on the context. Returns 1
 * when ctx was attached, 0 otherwise. Freeing an attached SSL_CTX detaches
 * it; there is no need to call this first. */
DC_EXPORT int DC_SSL_CTX_detach(SSL_CTX* ctx);

/* Returns 1 when ctx has a cache attached, 0 otherwise. */
DC_EXPORT int DC_SSL_CTX_is_attached(const SSL_CTX* ctx);

/* Counters of an attached context, for logs and tests. */
typedef struct {
  unsigned long stored;       /* sessions the cache accepted */
  unsigned long store_failed; /* sessions not stored (cache refused, down, too big) */
  unsigned long hits;         /* lookups answered with a session */
  unsigned long misses;       /* lookups that found nothing or failed */
  unsigned long removed;      /* remove requests sent */
} DC_SSL_STATS;

/* Copies the counters of ctx into *out. Returns 1 on success, 0 when ctx is
 * not attached or out is NULL. Safe to call while other threads handshake
 * (the counters are read one by one, not as a snapshot). */
DC_EXPORT int DC_SSL_CTX_get_stats(const SSL_CTX* ctx, DC_SSL_STATS* out);

/* Why the last failed call of this thread failed: one line, never NULL. */
DC_EXPORT const char* DC_SSL_last_error(void);

#ifdef __cplusplus
}
#endif

#endif /* DISTCACHE_DC_SSL_H */
