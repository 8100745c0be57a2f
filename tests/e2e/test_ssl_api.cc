// End-to-end test of the explicit API (dc_ssl.h) against a real dc_server:
// TLS handshakes run in memory (BIO pairs) between OpenSSL contexts of this
// process, so every check is about what the library does, not about timing.
//
// Covers: a session made by one server context resumes on another (TLS 1.2
// and 1.3); another session id context does not resume; the application's
// client-side callbacks keep being called and client sessions stay out of
// the cache; SSL_SESS_CACHE_OFF is respected; a shared DC_CTX works; many
// threads at once; a forked child; a cache that is down costs a full
// handshake, never a failure; detach restores the application's callbacks.
// Issue 12: an application's ex_data on sessions is never disturbed (its
// dup callback never sees a slot it did not set); a verifying server with
// an empty session id context never aborts on a cache hit; a TLS 1.3
// session that allows early data resumes once in the whole cluster, in
// every cache mode; two attachments to one address cost one connection
// each, not one per handshake; the address is resolved once, at attach.
//
// Usage: test_ssl_api PATH_TO_DC_SERVER
#include <distcache/dc_ssl.h>
#include <dlfcn.h>
#include <netdb.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "check.h"

extern char** environ;

namespace {

template <auto Fn>
struct Deleter {
  template <typename T>
  void operator()(T* p) const {
    Fn(p);
  }
};
using CtxPtr = std::unique_ptr<SSL_CTX, Deleter<SSL_CTX_free>>;
using SslPtr = std::unique_ptr<SSL, Deleter<SSL_free>>;
using SessPtr = std::unique_ptr<SSL_SESSION, Deleter<SSL_SESSION_free>>;
using KeyPtr = std::unique_ptr<EVP_PKEY, Deleter<EVP_PKEY_free>>;
using X509Ptr = std::unique_ptr<X509, Deleter<X509_free>>;

// A self-signed P-256 certificate, made in memory.
struct Identity {
  KeyPtr key;
  X509Ptr cert;
};
Identity make_identity() {
  Identity id;
  id.key.reset(EVP_EC_gen("P-256"));
  id.cert.reset(X509_new());
  X509* c = id.cert.get();
  ASN1_INTEGER_set(X509_get_serialNumber(c), 1);
  X509_gmtime_adj(X509_getm_notBefore(c), 0);
  X509_gmtime_adj(X509_getm_notAfter(c), 86400);
  X509_set_pubkey(c, id.key.get());
  X509_NAME* n = X509_get_subject_name(c);
  X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char*)"localhost", -1, -1, 0);
  X509_set_issuer_name(c, n);
  X509_sign(c, id.key.get(), EVP_sha256());
  return id;
}

CtxPtr server_ctx(const Identity& id, const char* sid_ctx) {
  CtxPtr ctx(SSL_CTX_new(TLS_server_method()));
  SSL_CTX_use_certificate(ctx.get(), id.cert.get());
  SSL_CTX_use_PrivateKey(ctx.get(), id.key.get());
  SSL_CTX_set_session_id_context(ctx.get(), (const unsigned char*)sid_ctx,
                                 unsigned(strlen(sid_ctx)));
  SSL_CTX_set_session_cache_mode(ctx.get(), SSL_SESS_CACHE_SERVER | SSL_SESS_CACHE_NO_INTERNAL);
  return ctx;
}

// One in-memory connection: handshake, then one byte from the server so the
// client reads TLS 1.3 tickets. Returns the client's session (null when the
// handshake failed) and whether it was resumed.
struct Result {
  bool ok = false;
  bool reused = false;
  SessPtr session;
};
Result connect(SSL_CTX* client, SSL_CTX* server, int version, SSL_SESSION* offer) {
  Result r;
  SslPtr c(SSL_new(client)), s(SSL_new(server));
  BIO *cb = nullptr, *sb = nullptr;
  BIO_new_bio_pair(&cb, 0, &sb, 0);
  SSL_set_bio(c.get(), cb, cb);
  SSL_set_bio(s.get(), sb, sb);
  SSL_set_min_proto_version(c.get(), version);
  SSL_set_max_proto_version(c.get(), version);
  if (offer) SSL_set_session(c.get(), offer);
  SSL_set_connect_state(c.get());
  SSL_set_accept_state(s.get());
  bool cdone = false, sdone = false;
  for (int i = 0; i < 100 && !(cdone && sdone); ++i) {
    if (!cdone) {
      int rc = SSL_do_handshake(c.get());
      if (rc == 1)
        cdone = true;
      else if (SSL_get_error(c.get(), rc) != SSL_ERROR_WANT_READ)
        break;
    }
    if (!sdone) {
      int rc = SSL_do_handshake(s.get());
      if (rc == 1)
        sdone = true;
      else if (SSL_get_error(s.get(), rc) != SSL_ERROR_WANT_READ)
        break;
    }
  }
  if (!(cdone && sdone)) {
    ERR_print_errors_fp(stderr);
    return r;
  }
  char byte = 'x';
  if (SSL_write(s.get(), &byte, 1) != 1 || SSL_read(c.get(), &byte, 1) != 1) return r;
  // A clean close: OpenSSL removes the session of a connection freed
  // without one (and the cache follows it).
  SSL_shutdown(s.get());
  SSL_shutdown(c.get());
  r.ok = true;
  r.reused = SSL_session_reused(c.get()) == 1;
  r.session.reset(SSL_get1_session(c.get()));
  ERR_clear_error();
  return r;
}

// Makes a session on `a` and offers it to `b`; true when b resumed it.
bool crosses(SSL_CTX* client, SSL_CTX* a, SSL_CTX* b, int version) {
  Result first = connect(client, a, version, nullptr);
  CHECK(first.ok && !first.reused);
  if (!first.ok) return false;
  Result second = connect(client, b, version, first.session.get());
  CHECK(second.ok);
  return second.ok && second.reused;
}

DC_SSL_STATS stats(SSL_CTX* ctx) {
  DC_SSL_STATS st{};
  CHECK(DC_SSL_CTX_get_stats(ctx, &st) == 1);
  return st;
}

std::atomic<int> g_client_new_calls{0};
int app_client_new(SSL*, SSL_SESSION*) {
  g_client_new_calls++;
  return 0;
}

// An application's own ex_data slot on SSL_SESSION, as stunnel has: its dup
// callback dereferences what it stored, so a call for a session it never
// decorated would crash it. Counted here instead.
std::atomic<int> g_dup_without_data{0};
int app_session_dup(CRYPTO_EX_DATA*, const CRYPTO_EX_DATA*, void** from_d, int, long, void*) {
  if (*from_d == nullptr) g_dup_without_data++;
  return 1;
}
// The same slot's new and free callbacks run for every SSL_SESSION made
// and freed: at the end, none may be left (a reference the glue keeps, or
// hands to OpenSSL twice, shows here without a leak checker).
std::atomic<long> g_sessions_alive{0};
void app_session_new(void*, void*, CRYPTO_EX_DATA*, int, long, void*) {
  g_sessions_alive++;
}
void app_session_free(void*, void*, CRYPTO_EX_DATA*, int, long, void*) {
  g_sessions_alive--;
}

// Counts name resolutions: libdistcache calls getaddrinfo through the
// dynamic linker, which finds this definition first.
std::atomic<int> g_getaddrinfo_calls{0};

// dc_server's statistic `key` from its -stats file (-1 if absent).
long server_stat(const std::string& file, const char* key) {
  FILE* f = std::fopen(file.c_str(), "r");
  if (f == nullptr) return -1;
  char line[2048] = "";
  char* got = std::fgets(line, sizeof line, f);
  std::fclose(f);
  std::string k = std::string(" ") + key + "=";
  const char* at = got ? std::strstr(line, k.c_str()) : nullptr;
  return at ? std::atol(at + k.size()) : -1;
}

// Waits until the -stats file (rewritten every 50 ms) has caught up with
// what is done, then returns the value.
long settled_stat(const std::string& file, const char* key) {
  long v = server_stat(file, key), prev = -2;
  for (int i = 0; i < 40 && v != prev; ++i) {
    usleep(150000);
    prev = v;
    v = server_stat(file, key);
  }
  return v;
}

CtxPtr early_data_ctx(const Identity& id, long mode, bool anti_replay) {
  CtxPtr ctx = server_ctx(id, "cluster");
  SSL_CTX_set_session_cache_mode(ctx.get(), mode);
  SSL_CTX_set_max_early_data(ctx.get(), 16384);
  if (!anti_replay) SSL_CTX_set_options(ctx.get(), SSL_OP_NO_ANTI_REPLAY);
  return ctx;
}

}  // namespace

extern "C" int getaddrinfo(const char* node, const char* service, const struct addrinfo* hints,
                           struct addrinfo** res) {
  using Fn = int (*)(const char*, const char*, const struct addrinfo*, struct addrinfo**);
  static Fn real = reinterpret_cast<Fn>(dlsym(RTLD_NEXT, "getaddrinfo"));
  g_getaddrinfo_calls++;
  return real(node, service, hints, res);
}

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: test_ssl_api DC_SERVER\n");
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);
  // Before anything of ours, as an application registers it at start-up.
  CRYPTO_get_ex_new_index(CRYPTO_EX_INDEX_SSL_SESSION, 0, nullptr, app_session_new, app_session_dup,
                          app_session_free);

  // A real dc_server on a temporary UNIX socket.
  char dir_tmpl[] = "/tmp/dc-ssl-api.XXXXXX";
  const char* dir = mkdtemp(dir_tmpl);
  if (dir == nullptr) return 1;
  std::string sock = std::string(dir) + "/server.sock", pidfile = std::string(dir) + "/server.pid";
  std::string listen = "UNIX:" + sock, stats_file = std::string(dir) + "/server.stats";
  const char* sargv[] = {
      argv[1],  "-listen",          listen.c_str(),    "-pidfile", pidfile.c_str(),
      "-stats", stats_file.c_str(), "-stats-interval", "50",       nullptr};
  pid_t server = -1;
  if (posix_spawn(&server, argv[1], nullptr, nullptr, const_cast<char**>(sargv), environ) != 0) {
    std::perror("posix_spawn dc_server");
    return 1;
  }
  struct stat st;
  for (int i = 0; i < 200 && stat(pidfile.c_str(), &st) != 0; ++i) usleep(50000);
  if (stat(pidfile.c_str(), &st) != 0) {
    std::fprintf(stderr, "dc_server did not start\n");
    kill(server, SIGKILL);
    return 1;
  }

  Identity id = make_identity();
  CtxPtr s1 = server_ctx(id, "cluster"), s2 = server_ctx(id, "cluster"),
         other = server_ctx(id, "another-service");
  for (SSL_CTX* s : {s1.get(), s2.get(), other.get()}) {
    CHECK(DC_SSL_CTX_attach(s, listen.c_str(), 0) == 1);
    // Generous deadline: a slow machine must not turn hits into misses here.
    CHECK(DC_SSL_CTX_set_timeout(s, 5000) == 1);
    CHECK((SSL_CTX_get_options(s) & SSL_OP_NO_TICKET) != 0);  // default ticket policy
  }
  CHECK(DC_SSL_CTX_attach(s1.get(), "TCP:nowhere", 0) == 0);  // malformed: refused, kept
  CHECK(std::strlen(DC_SSL_last_error()) > 0);
  CHECK(DC_SSL_CTX_is_attached(s1.get()) == 1);

  // A client context whose application caches its own client sessions; the
  // cache is attached to it as well (as the shim would) and must leave
  // client sessions to the application.
  CtxPtr client(SSL_CTX_new(TLS_client_method()));
  SSL_CTX_set_session_cache_mode(client.get(), SSL_SESS_CACHE_CLIENT);
  SSL_CTX_sess_set_new_cb(client.get(), app_client_new);
  CHECK(DC_SSL_CTX_attach(client.get(), listen.c_str(), 0) == 1);

  // 1. Across contexts, both TLS versions, both directions.
  for (int v : {TLS1_2_VERSION, TLS1_3_VERSION}) {
    CHECK(crosses(client.get(), s1.get(), s2.get(), v));
    CHECK(crosses(client.get(), s2.get(), s1.get(), v));
    // 2. Another session id context finds the session but does not resume:
    // its lookup was a hit (so the cache worked), OpenSSL said no.
    unsigned long hits = stats(other.get()).hits;
    CHECK(!crosses(client.get(), s1.get(), other.get(), v));
    CHECK(stats(other.get()).hits == hits + 1);
  }
  CHECK(stats(s1.get()).stored > 0);
  CHECK(stats(s2.get()).hits > 0);
  CHECK(g_client_new_calls > 0);           // the application's callback ran
  CHECK(stats(client.get()).stored == 0);  // client sessions not cached
  CHECK(stats(client.get()).hits == 0);

  // 3. SSL_SESS_CACHE_OFF after attaching: nothing goes to the cache.
  {
    CtxPtr off = server_ctx(id, "cluster");
    CHECK(DC_SSL_CTX_attach(off.get(), listen.c_str(), 0) == 1);
    SSL_CTX_set_session_cache_mode(off.get(), SSL_SESS_CACHE_OFF);
    CHECK(!crosses(client.get(), off.get(), s2.get(), TLS1_2_VERSION));
    CHECK(crosses(client.get(), s1.get(), s2.get(), TLS1_2_VERSION));  // the cache works
    CHECK(!crosses(client.get(), s1.get(), off.get(), TLS1_2_VERSION));
    DC_SSL_STATS o = stats(off.get());
    CHECK(o.stored == 0 && o.hits == 0 && o.misses == 0);
  }

  // 4. An application's DC_CTX, shared (one thread at a time).
  {
    DC_CTX* dc = DC_CTX_new(listen.c_str(), DC_CTX_FLAG_PERSISTENT | DC_CTX_FLAG_PERSISTENT_LATE);
    CHECK(dc != nullptr);
    DC_CTX_set_timeout(dc, 5000);
    CtxPtr shared = server_ctx(id, "cluster");
    CHECK(DC_SSL_CTX_attach_ctx(shared.get(), dc, 0) == 1);
    CHECK(crosses(client.get(), shared.get(), s1.get(), TLS1_3_VERSION));
    CHECK(crosses(client.get(), s1.get(), shared.get(), TLS1_2_VERSION));
    CHECK(DC_SSL_CTX_detach(shared.get()) == 1);
    DC_CTX_free(dc);
  }

  // 5. Many threads at once, each with its own connection.
  {
    std::atomic<int> resumed{0};
    std::vector<std::thread> threads;
    const int kThreads = 8, kEach = 10;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        for (int i = 0; i < kEach; ++i) {
          int v = (i + t) % 2 ? TLS1_3_VERSION : TLS1_2_VERSION;
          if (crosses(client.get(), s1.get(), s2.get(), v)) resumed++;
        }
      });
    }
    for (auto& th : threads) th.join();
    CHECK(resumed == kThreads * kEach);
  }

  // 6. A forked child opens its own connections (one per attachment it
  // uses: s1 and s2) and resumes sessions; the parent keeps its own.
  {
    long before = settled_stat(stats_file, "accepted");
    pid_t child = fork();
    if (child == 0) {
      bool ok = crosses(client.get(), s1.get(), s2.get(), TLS1_3_VERSION) &&
                crosses(client.get(), s2.get(), s1.get(), TLS1_2_VERSION);
      _exit(ok && dc::test::check_failures() == 0 ? 0 : 1);
    }
    int status = 0;
    CHECK(child > 0 && waitpid(child, &status, 0) == child);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CHECK(crosses(client.get(), s1.get(), s2.get(), TLS1_2_VERSION));  // parent unaffected
    long after = settled_stat(stats_file, "accepted");
    if (after - before != 2) std::fprintf(stderr, "fork: accepted %ld -> %ld\n", before, after);
    CHECK(after - before == 2);
  }

  // 7. A cache that is not there: full handshakes, never a failure.
  {
    std::string nowhere = "UNIX:" + std::string(dir) + "/nobody-listens.sock";
    CtxPtr d1 = server_ctx(id, "cluster"), d2 = server_ctx(id, "cluster");
    CHECK(DC_SSL_CTX_attach(d1.get(), nowhere.c_str(), 0) == 1);
    CHECK(DC_SSL_CTX_attach(d2.get(), nowhere.c_str(), 0) == 1);
    for (int v : {TLS1_2_VERSION, TLS1_3_VERSION}) {
      Result r = connect(client.get(), d1.get(), v, nullptr);
      CHECK(r.ok && !r.reused);
      Result r2 = connect(client.get(), d2.get(), v, r.session.get());
      CHECK(r2.ok && !r2.reused);
    }
    CHECK(stats(d1.get()).stored == 0);
    CHECK(ERR_peek_error() == 0);  // no error left in the application's queue
  }

  // 8. Detach gives the application its callbacks and tickets back.
  {
    CtxPtr d = server_ctx(id, "cluster");
    SSL_CTX_sess_set_new_cb(d.get(), app_client_new);
    CHECK(DC_SSL_CTX_attach(d.get(), listen.c_str(), DC_SSL_FLAG_KEEP_TICKETS) == 1);
    CHECK((SSL_CTX_get_options(d.get()) & SSL_OP_NO_TICKET) == 0);  // keep policy
    CHECK(SSL_CTX_sess_get_new_cb(d.get()) != app_client_new);
    CHECK(DC_SSL_CTX_attach(d.get(), listen.c_str(), 0) == 1);  // re-attach: stateful
    CHECK((SSL_CTX_get_options(d.get()) & SSL_OP_NO_TICKET) != 0);
    CHECK(DC_SSL_CTX_detach(d.get()) == 1);
    CHECK(SSL_CTX_sess_get_new_cb(d.get()) == app_client_new);
    CHECK((SSL_CTX_get_options(d.get()) & SSL_OP_NO_TICKET) == 0);
    CHECK(DC_SSL_CTX_is_attached(d.get()) == 0);
    CHECK(DC_SSL_CTX_detach(d.get()) == 0);
  }

  // 9. The application's session ex_data: TLS 1.3 handshakes duplicate
  // sessions for their second ticket; no dup callback for a slot never set.
  for (int i = 0; i < 3; ++i) CHECK(crosses(client.get(), s1.get(), s2.get(), TLS1_3_VERSION));
  CHECK(g_dup_without_data == 0);

  // 10. A server that verifies peers with an empty session id context: a
  // session made under that same empty context (by another server) is a
  // full handshake there, never an aborted one.
  {
    CtxPtr a = server_ctx(id, ""), b = server_ctx(id, "");
    SSL_CTX_set_verify(b.get(), SSL_VERIFY_PEER, [](int, X509_STORE_CTX*) { return 1; });
    for (SSL_CTX* c : {a.get(), b.get()}) {
      CHECK(DC_SSL_CTX_attach(c, listen.c_str(), 0) == 1);
      CHECK(DC_SSL_CTX_set_timeout(c, 5000) == 1);
    }
    for (int v : {TLS1_2_VERSION, TLS1_3_VERSION}) {
      Result first = connect(client.get(), a.get(), v, nullptr);
      CHECK(first.ok);
      Result second = connect(client.get(), b.get(), v, first.session.get());
      CHECK(second.ok && !second.reused);
    }
  }

  // 11. TLS 1.3 sessions that allow early data: resumed once in the whole
  // cluster, and always resumable once, whatever the cache mode and
  // OpenSSL's own anti-replay setting.
  {
    const long kModes[] = {SSL_SESS_CACHE_SERVER | SSL_SESS_CACHE_NO_INTERNAL,
                           SSL_SESS_CACHE_SERVER | SSL_SESS_CACHE_NO_INTERNAL_STORE,
                           SSL_SESS_CACHE_SERVER};
    for (long mode : kModes) {
      for (bool anti_replay : {true, false}) {
        CtxPtr a = early_data_ctx(id, mode, anti_replay), b = early_data_ctx(id, mode, anti_replay);
        for (SSL_CTX* c : {a.get(), b.get()}) {
          CHECK(DC_SSL_CTX_attach(c, listen.c_str(), 0) == 1);
          CHECK(DC_SSL_CTX_set_timeout(c, 5000) == 1);
        }
        Result first = connect(client.get(), a.get(), TLS1_3_VERSION, nullptr);
        CHECK(first.ok && first.session);
        if (!first.ok || !first.session) continue;
        CHECK(SSL_SESSION_get_max_early_data(first.session.get()) > 0);
        Result on_b = connect(client.get(), b.get(), TLS1_3_VERSION, first.session.get());
        Result replay_a = connect(client.get(), a.get(), TLS1_3_VERSION, first.session.get());
        Result replay_b = connect(client.get(), b.get(), TLS1_3_VERSION, first.session.get());
        if (!(on_b.ok && on_b.reused && replay_a.ok && !replay_a.reused && replay_b.ok &&
              !replay_b.reused))
          std::fprintf(stderr, "early data, mode 0x%lx, anti-replay %d: %d %d %d\n", mode,
                       anti_replay, on_b.reused, replay_a.reused, replay_b.reused);
        CHECK(on_b.ok && on_b.reused);
        CHECK(replay_a.ok && !replay_a.reused);
        CHECK(replay_b.ok && !replay_b.reused);
        // The ticket of the resumed handshake is a new session, usable once.
        if (on_b.session) {
          Result next = connect(client.get(), a.get(), TLS1_3_VERSION, on_b.session.get());
          CHECK(next.ok && next.reused);
        }
      }
    }
  }

  // 12. Two attachments to one address, only one with its own deadline
  // (the other keeps the default): one connection each for the whole run,
  // not a new one whenever the handshakes alternate between them.
  {
    CtxPtr a = server_ctx(id, "cluster"), b = server_ctx(id, "cluster");
    CHECK(DC_SSL_CTX_attach(a.get(), listen.c_str(), 0) == 1);
    CHECK(DC_SSL_CTX_attach(b.get(), listen.c_str(), 0) == 1);
    CHECK(DC_SSL_CTX_set_timeout(a.get(), 5000) == 1);
    long before = settled_stat(stats_file, "accepted");
    for (int i = 0; i < 20; ++i)
      CHECK(connect(client.get(), i % 2 ? a.get() : b.get(), TLS1_2_VERSION, nullptr).ok);
    long after = settled_stat(stats_file, "accepted");
    if (before < 0 || after - before != 2)
      std::fprintf(stderr, "accepted before %ld, after %ld\n", before, after);
    CHECK(before >= 0 && after - before == 2);
  }

  // 13. The address is resolved when attaching, never on a handshake, in
  // no thread.
  {
    std::string port = "9";  // discard: nothing listens; resolution is what counts
    CtxPtr a = server_ctx(id, "cluster");
    int before = g_getaddrinfo_calls;
    CHECK(DC_SSL_CTX_attach(a.get(), ("IP:localhost:" + port).c_str(), 0) == 1);
    CHECK(g_getaddrinfo_calls == before + 1);
    std::vector<std::thread> threads;
    for (int t = 0; t < 3; ++t) {
      threads.emplace_back([&] {
        for (int i = 0; i < 3; ++i)
          CHECK(connect(client.get(), a.get(), TLS1_2_VERSION, nullptr).ok);
      });
    }
    for (auto& th : threads) th.join();
    CHECK(g_getaddrinfo_calls == before + 1);
  }

  // 14. The lifetime the cache gets is the session's own (300 s here, as
  // nginx's default, in milliseconds): a session still resumes after a
  // pause longer than the protocol's smallest lifetime (500 ms) and than a
  // second.
  {
    SSL_CTX_set_timeout(s1.get(), 300);
    Result a12 = connect(client.get(), s1.get(), TLS1_2_VERSION, nullptr);
    Result a13 = connect(client.get(), s1.get(), TLS1_3_VERSION, nullptr);
    CHECK(a12.ok && a13.ok);
    usleep(1600 * 1000);
    Result b12 = connect(client.get(), s2.get(), TLS1_2_VERSION, a12.session.get());
    Result b13 = connect(client.get(), s2.get(), TLS1_3_VERSION, a13.session.get());
    CHECK(b12.ok && b12.reused);
    CHECK(b13.ok && b13.reused);
  }

  // 15. OpenSSL's internal store on: its evictions, SSL_CTX_free included,
  // and explicit removals reach the remove callback, and must not delete
  // what other servers resume; with the store off, an explicit removal is a
  // real invalidation and does reach the cache.
  {
    CtxPtr internal = server_ctx(id, "cluster");
    SSL_CTX_set_session_cache_mode(internal.get(), SSL_SESS_CACHE_SERVER);
    CHECK(DC_SSL_CTX_attach(internal.get(), listen.c_str(), 0) == 1);
    CHECK(DC_SSL_CTX_set_timeout(internal.get(), 5000) == 1);
    Result x = connect(client.get(), internal.get(), TLS1_2_VERSION, nullptr);
    Result y = connect(client.get(), internal.get(), TLS1_2_VERSION, nullptr);
    CHECK(x.ok && y.ok);
    if (x.session) {
      SessPtr same_id(SSL_SESSION_dup(x.session.get()));
      CHECK(SSL_CTX_remove_session(internal.get(), same_id.get()) == 1);  // it was there
    }
    internal.reset();  // flushes y from the internal store
    Result x2 = connect(client.get(), s2.get(), TLS1_2_VERSION, x.session.get());
    Result y2 = connect(client.get(), s2.get(), TLS1_2_VERSION, y.session.get());
    CHECK(x2.ok && x2.reused);
    CHECK(y2.ok && y2.reused);
    // The control: s1 keeps no internal store, so its removal is forwarded.
    Result z = connect(client.get(), s1.get(), TLS1_2_VERSION, nullptr);
    CHECK(z.ok);
    if (z.session) {
      SessPtr same_id(SSL_SESSION_dup(z.session.get()));
      SSL_CTX_remove_session(s1.get(), same_id.get());
      Result z2 = connect(client.get(), s2.get(), TLS1_2_VERSION, z.session.get());
      CHECK(z2.ok && !z2.reused);
    }
  }

  // 16. Hostile cache contents under the id a client offers: garbage, a
  // truncated session, a session with another id, with another session id
  // context, an expired one. Each is a miss and a full handshake, never a
  // failure, and leaves nothing in the application's error queue. The
  // control: the real entry put back resumes.
  {
    DC_CTX* raw = DC_CTX_new(listen.c_str(), DC_CTX_FLAG_PERSISTENT | DC_CTX_FLAG_NO_ENV);
    CHECK(raw != nullptr);
    DC_CTX_set_timeout(raw, 5000);
    Result made = connect(client.get(), s1.get(), TLS1_2_VERSION, nullptr);
    Result other_made = connect(client.get(), s1.get(), TLS1_2_VERSION, nullptr);
    CHECK(made.ok && other_made.ok && made.session && other_made.session && raw);
    if (raw && made.session && other_made.session) {
      unsigned id_len = 0, other_len = 0;
      const unsigned char* sid = SSL_SESSION_get_id(made.session.get(), &id_len);
      const unsigned char* oid = SSL_SESSION_get_id(other_made.session.get(), &other_len);
      std::vector<unsigned char> real(32768), other_bytes(32768);
      unsigned real_len = 0, other_bytes_len = 0;
      CHECK(DC_CTX_get_session(raw, sid, id_len, real.data(), 32768, &real_len) == 1);
      CHECK(DC_CTX_get_session(raw, oid, other_len, other_bytes.data(), 32768, &other_bytes_len) ==
            1);
      real.resize(real_len);
      other_bytes.resize(other_bytes_len);
      // The server's session, re-encoded after `edit`.
      auto edited = [&](auto edit) {
        const unsigned char* p = real.data();
        SessPtr sess(d2i_SSL_SESSION(nullptr, &p, long(real.size())));
        CHECK(sess != nullptr);
        if (!sess) return std::vector<unsigned char>();
        edit(sess.get());
        std::vector<unsigned char> out(size_t(i2d_SSL_SESSION(sess.get(), nullptr)));
        unsigned char* q = out.data();
        i2d_SSL_SESSION(sess.get(), &q);
        return out;
      };
      std::vector<unsigned char> garbage(200);
      for (size_t i = 0; i < garbage.size(); ++i) garbage[i] = (unsigned char)(i * 37 + 11);
      struct Case {
        const char* what;
        std::vector<unsigned char> bytes;
      };
      const Case cases[] = {
          {"garbage", garbage},
          {"truncated", std::vector<unsigned char>(real.begin(), real.begin() + real.size() / 2)},
          {"another session's bytes", other_bytes},
          {"another id", edited([](SSL_SESSION* x) {
             const unsigned char nid[32] = {1, 2, 3};
             SSL_SESSION_set1_id(x, nid, sizeof nid);
           })},
          {"another session id context", edited([](SSL_SESSION* x) {
             SSL_SESSION_set1_id_context(x, (const unsigned char*)"another-service", 15);
           })},
          {"expired", edited([](SSL_SESSION* x) {
             SSL_SESSION_set_time(x, long(time(nullptr)) - 1000);
             SSL_SESSION_set_timeout(x, 300);
           })},
          {"the real one (control)", real},
      };
      for (const Case& c : cases) {
        DC_CTX_remove_session(raw, sid, id_len);
        bool stored = DC_CTX_add_session(raw, sid, id_len, c.bytes.data(), unsigned(c.bytes.size()),
                                         60000) == 1;
        CHECK(stored);
        Result r = connect(client.get(), s2.get(), TLS1_2_VERSION, made.session.get());
        bool control = &c == &cases[std::size(cases) - 1];
        if (!r.ok || r.reused != control)
          std::fprintf(stderr, "hostile entry (%s): ok %d, reused %d\n", c.what, r.ok, r.reused);
        CHECK(r.ok);
        CHECK(r.reused == control);
        CHECK(ERR_peek_error() == 0);
      }
    }
    DC_CTX_free(raw);
  }

  // 18. Sealed entries: two contexts with one keyring resume each other's
  // sessions; the cache holds neither the master key nor the peer's
  // certificate; an entry in the clear, sealed by another keyring, or
  // moved to another id is a miss; a keyring readable by others turns
  // caching off for its context instead of falling back to the clear.
  {
    std::string keys = std::string(dir) + "/keys", other_keys = std::string(dir) + "/other-keys",
                open_keys = std::string(dir) + "/open-keys";
    auto write_keys = [](const std::string& path, const char* key, mode_t mode) {
      FILE* f = std::fopen(path.c_str(), "w");
      std::fprintf(f, "# test keyring\n%s\n", key);
      std::fclose(f);
      chmod(path.c_str(), mode);
    };
    write_keys(keys, "8f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0", 0600);
    write_keys(other_keys, "00000000000000000000000000000000000000000000000000000000000000aa",
               0600);
    write_keys(open_keys, "8f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0", 0644);
    CtxPtr a = server_ctx(id, "cluster"), b = server_ctx(id, "cluster"),
           stranger = server_ctx(id, "cluster"), loose = server_ctx(id, "cluster");
    for (SSL_CTX* c : {a.get(), b.get(), stranger.get(), loose.get()}) {
      CHECK(DC_SSL_CTX_attach(c, listen.c_str(), 0) == 1);
      CHECK(DC_SSL_CTX_set_timeout(c, 5000) == 1);
    }
    CHECK(DC_SSL_CTX_set_seal_keys(a.get(), keys.c_str()) == 1);
    CHECK(DC_SSL_CTX_set_seal_keys(b.get(), keys.c_str()) == 1);
    CHECK(DC_SSL_CTX_set_seal_keys(stranger.get(), other_keys.c_str()) == 1);
    CHECK(DC_SSL_CTX_set_seal_keys(loose.get(), open_keys.c_str()) == 0);
    CHECK(std::strstr(DC_SSL_last_error(), "chmod 600") != nullptr);
    for (int v : {TLS1_2_VERSION, TLS1_3_VERSION}) {
      CHECK(crosses(client.get(), a.get(), b.get(), v));
      CHECK(crosses(client.get(), b.get(), a.get(), v));
      CHECK(!crosses(client.get(), a.get(), stranger.get(), v));  // another cluster's key
      CHECK(!crosses(client.get(), s1.get(), a.get(), v));        // an entry in the clear
    }
    unsigned long unopened = 0;
    CHECK(DC_SSL_CTX_get_unopened(stranger.get(), &unopened) == 1 && unopened >= 2);
    CHECK(DC_SSL_CTX_get_unopened(a.get(), &unopened) == 1 && unopened >= 2);
    // What the cache holds for a TLS 1.2 session whose client presented a
    // certificate: sealed, neither the master key nor the certificate; in
    // the clear (the control), both.
    DC_CTX* raw = DC_CTX_new(listen.c_str(), DC_CTX_FLAG_PERSISTENT | DC_CTX_FLAG_NO_ENV);
    CHECK(raw != nullptr);
    DC_CTX_set_timeout(raw, 5000);
    CtxPtr cert_client(SSL_CTX_new(TLS_client_method()));
    SSL_CTX_use_certificate(cert_client.get(), id.cert.get());
    SSL_CTX_use_PrivateKey(cert_client.get(), id.key.get());
    CtxPtr plain = server_ctx(id, "cluster");
    CHECK(DC_SSL_CTX_attach(plain.get(), listen.c_str(), 0) == 1);
    CHECK(DC_SSL_CTX_set_timeout(plain.get(), 5000) == 1);
    unsigned char* cert_der = nullptr;
    int cert_len = i2d_X509(id.cert.get(), &cert_der);
    CHECK(cert_len > 64);
    // The entry stored for a fresh session made on `server`, and whether it
    // holds the session's master key and the client's certificate.
    auto holds_secrets = [&](SSL_CTX* server, bool& mk_found, bool& cert_found) {
      SSL_CTX_set_verify(server, SSL_VERIFY_PEER, [](int, X509_STORE_CTX*) { return 1; });
      Result r = connect(cert_client.get(), server, TLS1_2_VERSION, nullptr);
      CHECK(r.ok && r.session);
      if (!r.ok || !r.session || raw == nullptr || cert_len <= 64)
        return std::vector<unsigned char>();
      unsigned id_len = 0;
      const unsigned char* sid = SSL_SESSION_get_id(r.session.get(), &id_len);
      std::vector<unsigned char> entry(32768);
      unsigned used = 0;
      CHECK(DC_CTX_get_session(raw, sid, id_len, entry.data(), 32768, &used) == 1);
      entry.resize(used);
      unsigned char mk[64];
      size_t mk_len = SSL_SESSION_get_master_key(r.session.get(), mk, sizeof mk);
      CHECK(mk_len == 48);
      mk_found = std::search(entry.begin(), entry.end(), mk, mk + 16) != entry.end();
      cert_found =
          std::search(entry.begin(), entry.end(), cert_der + 32, cert_der + 64) != entry.end();
      return entry;
    };
    bool mk_found = false, cert_found = false;
    holds_secrets(plain.get(), mk_found, cert_found);
    CHECK(mk_found && cert_found);  // the control: in the clear, both are there
    std::vector<unsigned char> entry = holds_secrets(a.get(), mk_found, cert_found);
    CHECK(!mk_found && !cert_found);
    CHECK(!entry.empty() && entry[0] == 0xD1);
    OPENSSL_free(cert_der);
    // The same sealed entry under another id: a miss.
    Result moved = connect(client.get(), b.get(), TLS1_2_VERSION, nullptr);
    CHECK(moved.ok && moved.session);
    if (moved.session && raw && !entry.empty()) {
      unsigned mlen = 0;
      const unsigned char* mid = SSL_SESSION_get_id(moved.session.get(), &mlen);
      DC_CTX_remove_session(raw, mid, mlen);
      CHECK(DC_CTX_add_session(raw, mid, mlen, entry.data(), unsigned(entry.size()), 60000) == 1);
      Result again = connect(client.get(), a.get(), TLS1_2_VERSION, moved.session.get());
      CHECK(again.ok && !again.reused);
    }
    DC_CTX_free(raw);
    // The context whose keyring was refused caches nothing at all.
    DC_SSL_STATS st = stats(loose.get());
    CHECK(!crosses(client.get(), loose.get(), a.get(), TLS1_2_VERSION));
    CHECK(!crosses(client.get(), a.get(), loose.get(), TLS1_2_VERSION));
    DC_SSL_STATS st2 = stats(loose.get());
    CHECK(st2.stored == st.stored && st2.hits == st.hits && st2.misses == st.misses);
    unlink(keys.c_str());
    unlink(other_keys.c_str());
    unlink(open_keys.c_str());
  }

  // 19. Shared ticket keys (DC_SSL_FLAG_SHARED_TICKETS): two contexts
  // that race to make the first key of an epoch end up with the same one,
  // so stateless tickets of either open on the other (TLS 1.2 and 1.3); a
  // context of another keyring does not open them; the flag excludes
  // DC_SSL_FLAG_KEEP_TICKETS.
  {
    std::string keys = std::string(dir) + "/ticket-keys";
    FILE* f = std::fopen(keys.c_str(), "w");
    std::fprintf(f, "5a5b5c5d5e5f606162636465666768696a6b6c6d6e6f70717273747576777879\n");
    std::fclose(f);
    chmod(keys.c_str(), 0600);
    CHECK(DC_SSL_CTX_attach(s1.get(), listen.c_str(),
                            DC_SSL_FLAG_KEEP_TICKETS | DC_SSL_FLAG_SHARED_TICKETS) == 0);
    // A fresh epoch length: keys no earlier run of this test could have left.
    unsigned epoch = 7000 + unsigned(getpid() % 1000);
    CtxPtr a = server_ctx(id, "cluster"), b = server_ctx(id, "cluster");
    SSL_CTX_set_session_cache_mode(a.get(), SSL_SESS_CACHE_SERVER);
    SSL_CTX_set_session_cache_mode(b.get(), SSL_SESS_CACHE_SERVER);
    for (SSL_CTX* c : {a.get(), b.get()}) {
      CHECK(DC_SSL_CTX_attach(c, listen.c_str(), DC_SSL_FLAG_SHARED_TICKETS) == 1);
      CHECK(DC_SSL_CTX_set_timeout(c, 5000) == 1);
      CHECK(DC_SSL_CTX_set_seal_keys(c, keys.c_str()) == 1);
      CHECK(DC_SSL_CTX_set_ticket_epoch(c, epoch) == 1);
      CHECK((SSL_CTX_get_options(c) & SSL_OP_NO_TICKET) == 0);  // tickets issued
    }
    CHECK(DC_SSL_CTX_set_ticket_epoch(a.get(), 1) == 0);
    // The race: both contexts need their first key at the same moment.
    std::atomic<int> ready{0};
    Result first[2];
    std::thread racers[2];
    for (int i = 0; i < 2; ++i) {
      racers[i] = std::thread([&, i] {
        ready++;
        while (ready < 2) {
        }
        first[i] = connect(client.get(), i ? b.get() : a.get(), TLS1_3_VERSION, nullptr);
      });
    }
    for (auto& t : racers) t.join();
    CHECK(first[0].ok && first[1].ok);
    // Tickets, not the cache: internal stores on, nothing stored for TLS 1.3.
    unsigned long stored = stats(a.get()).stored + stats(b.get()).stored;
    for (int i = 0; i < 2; ++i) {
      if (!first[i].session) continue;
      CHECK(SSL_SESSION_has_ticket(first[i].session.get()) == 1);
      Result r =
          connect(client.get(), i ? a.get() : b.get(), TLS1_3_VERSION, first[i].session.get());
      CHECK(r.ok && r.reused);
    }
    CHECK(stats(a.get()).stored + stats(b.get()).stored == stored);
    Result t12 = connect(client.get(), a.get(), TLS1_2_VERSION, nullptr);
    CHECK(t12.ok && t12.session && SSL_SESSION_has_ticket(t12.session.get()) == 1);
    if (t12.session) {
      Result r = connect(client.get(), b.get(), TLS1_2_VERSION, t12.session.get());
      CHECK(r.ok && r.reused);
    }
    // Another keyring: its own key for the epoch, so the ticket is a full
    // handshake there.
    std::string other_keys = std::string(dir) + "/other-ticket-keys";
    f = std::fopen(other_keys.c_str(), "w");
    std::fprintf(f, "0101010101010101010101010101010101010101010101010101010101010101\n");
    std::fclose(f);
    chmod(other_keys.c_str(), 0600);
    CtxPtr c = server_ctx(id, "cluster");
    CHECK(DC_SSL_CTX_attach(c.get(), listen.c_str(), DC_SSL_FLAG_SHARED_TICKETS) == 1);
    CHECK(DC_SSL_CTX_set_timeout(c.get(), 5000) == 1);
    CHECK(DC_SSL_CTX_set_seal_keys(c.get(), other_keys.c_str()) == 1);
    CHECK(DC_SSL_CTX_set_ticket_epoch(c.get(), epoch) == 1);
    if (first[0].session) {
      Result r = connect(client.get(), c.get(), TLS1_3_VERSION, first[0].session.get());
      CHECK(r.ok && !r.reused);
    }
    unlink(keys.c_str());
    unlink(other_keys.c_str());
  }

  client.reset();
  s1.reset();
  s2.reset();
  other.reset();
  // 17. Every session made in this run was freed: the glue neither keeps
  // a reference nor gives OpenSSL one too many.
  if (g_sessions_alive != 0) std::fprintf(stderr, "%ld sessions alive\n", g_sessions_alive.load());
  CHECK(g_sessions_alive == 0);
  kill(server, SIGTERM);
  waitpid(server, nullptr, 0);
  unlink(sock.c_str());
  rmdir(dir);
  return dc::test::check_exit_status();
}
