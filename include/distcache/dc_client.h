/*
 * distcache client API (DC_CTX): blocking operations on a session cache.
 *
 * Source compatible with distcache 1.x: the names, flags and return
 * conventions below are those of 1.x, so a program written for 1.x (for
 * example Apache's mod_socache_dc) builds against this library unchanged.
 * Functions after "Extensions" are new in this project.
 *
 * Addresses: "UNIX:/path", "IP:port", "IP:host:port", "IP:[v6]:port".
 *
 * Every operation is bounded by a deadline (DC_CTX_set_timeout) covering
 * connect, send and receive. A circuit breaker keeps a sick cache cheap: an
 * operation that could not reach the cache or get its answer in time (a
 * failed connect, a timeout, a broken connection, a protocol error, or the
 * agent's DISCONNECTED answer when it came after DC_PROMPT_DISCONNECTED_MS
 * or more) opens it for a back-off period
 * (DC_CTX_set_backoff), during which every operation fails at once without
 * touching the network; the first operation after it is the probe that
 * closes it again or reopens it. A request whose deadline passed keeps its
 * persistent connection: its late answer is recognised by its uid and
 * dropped, so a slow cache costs no reconnect. Without
 * DC_CTX_FLAG_PERSISTENT each operation opens and closes its own connection.
 * A DC_CTX may be shared by threads (each operation holds the context's own
 * lock, so they take turns); one per thread avoids the waiting. Separate
 * DC_CTX never share state. No function aborts or raises a signal on bad
 * input; SIGPIPE is never raised (MSG_NOSIGNAL).
 */
#ifndef DISTCACHE_DC_CLIENT_H
#define DISTCACHE_DC_CLIENT_H

#ifdef __cplusplus
extern "C" {
#endif

#if defined(DISTCACHE_BUILDING) && defined(__GNUC__)
#define DC_EXPORT __attribute__((visibility("default")))
#else
#define DC_EXPORT
#endif

/* Version of this API; 1.x defined 0x0001. */
#define DISTCACHE_CLIENT_API 0x0001

typedef struct st_DC_CTX DC_CTX;

/* Keep one connection open across operations instead of one per operation. */
#define DC_CTX_FLAG_PERSISTENT 0x0001
/* With PERSISTENT: a process that forked opens a connection of its own. */
#define DC_CTX_FLAG_PERSISTENT_PIDCHECK 0x0002
/* With PERSISTENT: retry once, on a fresh connection, an operation whose
 * persistent connection broke before any answer arrived (the retry shares the
 * operation's deadline). Without it such an operation fails, and the next one
 * opens a new connection. */
#define DC_CTX_FLAG_PERSISTENT_RETRY 0x0004
/* With PERSISTENT: connect at the first operation, not in DC_CTX_new. */
#define DC_CTX_FLAG_PERSISTENT_LATE 0x0008

/* Smallest session timeout, in milliseconds, that the API accepts. */
#define DC_MIN_TIMEOUT 500

/* Creates a context for the cache at `target`. The address is parsed and
 * resolved here, once. The deadline of operations is DC_DEFAULT_OP_TIMEOUT_MS
 * or, when set, DC_CACHE_TIMEOUT_MS from the environment (so that programs
 * written for 1.x can lengthen it; a malformed value fails creation), unless
 * `flags` has DC_CTX_FLAG_NO_ENV.
 * Returns NULL when the address is malformed or cannot be resolved, or
 * (PERSISTENT without LATE) the first connection fails; DC_last_new_error()
 * then says why. */
DC_EXPORT DC_CTX *DC_CTX_new(const char *target, unsigned int flags);
/* Closes the context's connection and frees it. NULL is ignored. */
DC_EXPORT void DC_CTX_free(DC_CTX *ctx);

/* Stores a session. Returns non-zero when the cache stored it, zero on any
 * failure (bad argument, timeout below DC_MIN_TIMEOUT, id not 1..64 bytes,
 * data over 32768 bytes, a session with this id already stored, cache
 * unreachable or too slow). */
DC_EXPORT int DC_CTX_add_session(DC_CTX *ctx, const unsigned char *id_data, unsigned int id_len,
                                 const unsigned char *sess_data, unsigned int sess_len,
                                 unsigned long timeout_msecs);
/* Removes a session. Returns non-zero when it was stored and is now gone;
 * zero when it was not stored (DC_CTX_last_error() is then DC_ERR_NONE) or
 * on any failure. */
DC_EXPORT int DC_CTX_remove_session(DC_CTX *ctx, const unsigned char *id_data,
                                    unsigned int id_len);
/* Fetches a session. Returns non-zero on a hit and sets *result_used (when
 * not NULL) to the session's full length, even when that is more than
 * result_size. As in 1.x, the first min(result_size, length) bytes are
 * copied to result_storage (which may be NULL: then nothing is copied), so a
 * caller whose buffer was too small has a truncated prefix; it compares
 * *result_used with its size and calls DC_CTX_reget_session with a bigger
 * buffer. Returns zero on a miss (DC_CTX_last_error() is then DC_ERR_NONE)
 * or on any failure. */
DC_EXPORT int DC_CTX_get_session(DC_CTX *ctx, const unsigned char *id_data, unsigned int id_len,
                                 unsigned char *result_storage, unsigned int result_size,
                                 unsigned int *result_used);
/* Returns again, without touching the network, the session fetched by the
 * previous operation on ctx when that was a successful DC_CTX_get_session
 * for the same id. Returns zero when the id differs, nothing was fetched, or
 * another operation (add, remove, has, a failed or missed get) came in
 * between. Same copying conventions as DC_CTX_get_session. */
DC_EXPORT int DC_CTX_reget_session(DC_CTX *ctx, const unsigned char *id_data, unsigned int id_len,
                                   unsigned char *result_storage, unsigned int result_size,
                                   unsigned int *result_used);
/* Returns 1 when the session is stored, 0 when it is not, -1 on error. */
DC_EXPORT int DC_CTX_has_session(DC_CTX *ctx, const unsigned char *id_data, unsigned int id_len);

/* ---- Extensions (not in distcache 1.x) ---- */

/* Default deadline of one operation (connect + send + receive), in ms. */
#define DC_DEFAULT_OP_TIMEOUT_MS 100
/* The longest deadline of one operation DC_CTX_set_timeout and
 * DC_CACHE_TIMEOUT_MS accept, in ms. */
#define DC_MAX_OP_TIMEOUT_MS 60000
/* Default back-off (circuit breaker open) after a failed operation, in ms. */
#define DC_DEFAULT_BACKOFF_MS 1000

/* A DISCONNECTED answer that came within this many ms does not open the
 * breaker: the agent said at once that this request's store is away (all of
 * it, or only the part the session lives in: one server of a pool, one
 * master of a Redis Cluster), which costs a handshake nothing, and the next
 * session may well be stored elsewhere. A slower DISCONNECTED (the agent
 * waited out its own deadline) opens it like a timeout. */
#define DC_PROMPT_DISCONNECTED_MS 5
/* DC_CTX_new flag: do not read DC_CACHE_TIMEOUT_MS from the environment
 * (libraries that take their settings elsewhere). */
#define DC_CTX_FLAG_NO_ENV 0x0100

/* Error codes of DC_CTX_last_error(). */
#define DC_ERR_NONE 0         /* the last operation succeeded (or was a plain miss) */
#define DC_ERR_ARGUMENT 1     /* a bad argument: NULL, id or data length, timeout */
#define DC_ERR_CONNECT 2      /* the cache could not be reached */
#define DC_ERR_BACKOFF 3      /* skipped: a recent failure, back-off (breaker open) running */
#define DC_ERR_TIMEOUT 4      /* the operation's deadline passed */
#define DC_ERR_IO 5           /* the connection broke while sending or receiving */
#define DC_ERR_PROTOCOL 6     /* the peer sent something that is not the protocol */
#define DC_ERR_REFUSED 7      /* the cache answered, but refused (ADD status) */
#define DC_ERR_ADDRESS 8      /* the address is malformed or cannot be resolved */
#define DC_ERR_DISCONNECTED 9 /* the agent answered DISCONNECTED: no server, or none in time */

/* Like DC_CTX_new, with the address from DC_CACHE_ADDR and, when set, the
 * per-operation deadline from DC_CACHE_TIMEOUT_MS (1..DC_MAX_OP_TIMEOUT_MS).
 * Returns NULL when a variable is missing or malformed; DC_last_new_error()
 * says which. */
DC_EXPORT DC_CTX *DC_CTX_new_env(unsigned int flags);
/* Why the last DC_CTX_new / DC_CTX_new_env of this thread returned NULL:
 * one line naming the address or variable; "" after a success. Never NULL. */
DC_EXPORT const char *DC_last_new_error(void);

/* Sets the deadline of each operation (1..DC_MAX_OP_TIMEOUT_MS ms), covering
 * connect, send and receive. Returns non-zero on success, zero (nothing
 * changed) when out of range or ctx is NULL. */
DC_EXPORT int DC_CTX_set_timeout(DC_CTX *ctx, unsigned int msecs);
/* Sets the back-off after a failed operation (0..600000 ms; 0 disables the
 * circuit breaker). It applies at once, also to a back-off already running
 * (which then ends `msecs` after its failure). Returns non-zero on success. */
DC_EXPORT int DC_CTX_set_backoff(DC_CTX *ctx, unsigned int msecs);

/* A new context for the same cache as `ctx`, with its flags, deadline and
 * back-off, and its own connection and breaker. Nothing is resolved (the
 * address resolved by DC_CTX_new is reused) and nothing is connected, so it
 * is cheap and never blocks: a program makes one context per thread from a
 * template this way. Returns NULL when ctx is NULL or memory runs out. */
DC_EXPORT DC_CTX *DC_CTX_dup(const DC_CTX *ctx);
/* The outcome of the context's last operation: a DC_ERR_* code, and one line
 * of text for logs (never NULL; a copy owned by the calling thread, valid
 * until its next call of DC_CTX_last_error_string). With threads sharing a
 * context, "last" is the last operation of any of them. A NULL ctx gives
 * DC_ERR_ARGUMENT. */
DC_EXPORT int DC_CTX_last_error(const DC_CTX *ctx);
DC_EXPORT const char *DC_CTX_last_error_string(const DC_CTX *ctx);

#ifdef __cplusplus
}
#endif

#endif /* DISTCACHE_DC_CLIENT_H */
