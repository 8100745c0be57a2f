// The shim must change nothing observable for client-side use of OpenSSL:
// run with libdistcache_shim.so preloaded and DC_CACHE_ADDR set (e2e.sh,
// scenario shim_contexts). For contexts made with a client-only method
// (curl), the generic TLS_method (Python's PROTOCOL_TLS, nginx) and a
// server method, it checks that:
//   - client-only contexts are not attached at all: OpenSSL's own getter
//     (from libssl, past the shim) returns the application's callback;
//     generic and server contexts are (it returns the shim's);
//   - the application's callbacks come back from the getters it calls;
//   - the context's options are those of a context made past the shim;
//   - SSL_OP_NO_TICKET (the stateful ticket policy) is set on server
//     connections only: never on a client connection, whatever made it a
//     client (SSL_set_connect_state, SSL_connect), and the application's
//     own SSL_OP_NO_TICKET is never taken away;
//   - SSL_clear_options keeps SSL_OP_NO_TICKET on attached server
//     connections and clears everything else as asked.
// Exit 0 when every check passed, 1 otherwise.
#include <dlfcn.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include <cstdio>

#include "check.h"

namespace {

int app_new(SSL*, SSL_SESSION*) {
  return 0;
}
SSL_SESSION* app_get(SSL*, const unsigned char*, int, int*) {
  return nullptr;
}
void app_remove(SSL_CTX*, SSL_SESSION*) {}

using NewCb = int (*)(SSL*, SSL_SESSION*);
using GetCb = SSL_SESSION* (*)(SSL*, const unsigned char*, int, int*);
using RemoveCb = void (*)(SSL_CTX*, SSL_SESSION*);

// OpenSSL's own functions, past the shim.
struct Real {
  SSL_CTX* (*ctx_new)(const SSL_METHOD*);
  NewCb (*get_new_cb)(SSL_CTX*);
  GetCb (*get_get_cb)(SSL_CTX*);
  RemoveCb (*get_remove_cb)(SSL_CTX*);
} real;

bool no_ticket(SSL* s) {
  return (SSL_get_options(s) & SSL_OP_NO_TICKET) != 0;
}

void check_method(const char* name, const SSL_METHOD* m, bool attached, bool server) {
  std::fprintf(stderr, "%s\n", name);
  SSL_CTX* ref = real.ctx_new(m);  // made past the shim: never attached
  SSL_CTX* ctx = SSL_CTX_new(m);
  CHECK(ref != nullptr && ctx != nullptr);
  if (ref == nullptr || ctx == nullptr) return;
  SSL_CTX_sess_set_new_cb(ctx, app_new);
  SSL_CTX_sess_set_get_cb(ctx, app_get);
  SSL_CTX_sess_set_remove_cb(ctx, app_remove);
  CHECK(SSL_CTX_sess_get_new_cb(ctx) == app_new);
  CHECK(SSL_CTX_sess_get_get_cb(ctx) == app_get);
  CHECK(SSL_CTX_sess_get_remove_cb(ctx) == app_remove);
  CHECK((real.get_new_cb(ctx) == app_new) == !attached);
  CHECK((real.get_get_cb(ctx) == app_get) == !attached);
  CHECK((real.get_remove_cb(ctx) == app_remove) == !attached);
  CHECK(SSL_CTX_get_options(ctx) == SSL_CTX_get_options(ref));
  CHECK(SSL_CTX_get_session_cache_mode(ctx) == SSL_CTX_get_session_cache_mode(ref));

  // A connection in its first role, then made a client both ways.
  SSL* s = SSL_new(ctx);
  CHECK(no_ticket(s) == (attached && server));
  SSL_set_connect_state(s);
  CHECK(!no_ticket(s));
  SSL_free(s);
  s = SSL_new(ctx);
  BIO *a = nullptr, *b = nullptr;
  BIO_new_bio_pair(&a, 0, &b, 0);
  SSL_set_bio(s, a, a);
  CHECK(SSL_connect(s) != 1);  // nobody answers: it waits for the server
  CHECK(!no_ticket(s));
  SSL_free(s);
  BIO_free(b);
  ERR_clear_error();
  if (server) {
    s = SSL_new(ctx);
    SSL_set_accept_state(s);
    CHECK(no_ticket(s) == attached);
    // The application clearing options: SSL_OP_NO_TICKET stays on an
    // attached server connection (stateful), other options clear as asked.
    SSL_set_options(s, SSL_OP_CIPHER_SERVER_PREFERENCE);
    uint64_t left = SSL_clear_options(s, SSL_OP_NO_TICKET | SSL_OP_CIPHER_SERVER_PREFERENCE);
    CHECK(left == SSL_get_options(s));
    CHECK(no_ticket(s) == attached);
    CHECK((SSL_get_options(s) & SSL_OP_CIPHER_SERVER_PREFERENCE) == 0);
    SSL_free(s);
  }
  // ... and a client connection's SSL_OP_NO_TICKET clears.
  s = SSL_new(ctx);
  SSL_set_connect_state(s);
  SSL_set_options(s, SSL_OP_NO_TICKET);
  SSL_clear_options(s, SSL_OP_NO_TICKET);
  CHECK(!no_ticket(s));
  SSL_free(s);
  // The application's own SSL_OP_NO_TICKET stays on its client connections.
  SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
  s = SSL_new(ctx);
  SSL_set_connect_state(s);
  CHECK(no_ticket(s));
  SSL_free(s);
  SSL_CTX_free(ctx);
  SSL_CTX_free(ref);
}

}  // namespace

int main() {
  void* libssl = dlopen("libssl.so.3", RTLD_NOW | RTLD_NOLOAD);
  if (libssl == nullptr) {
    std::fprintf(stderr, "libssl.so.3 is not loaded: %s\n", dlerror());
    return 1;
  }
  real.ctx_new = reinterpret_cast<SSL_CTX* (*)(const SSL_METHOD*)>(dlsym(libssl, "SSL_CTX_new"));
  real.get_new_cb = reinterpret_cast<NewCb (*)(SSL_CTX*)>(dlsym(libssl, "SSL_CTX_sess_get_new_cb"));
  real.get_get_cb = reinterpret_cast<GetCb (*)(SSL_CTX*)>(dlsym(libssl, "SSL_CTX_sess_get_get_cb"));
  real.get_remove_cb =
      reinterpret_cast<RemoveCb (*)(SSL_CTX*)>(dlsym(libssl, "SSL_CTX_sess_get_remove_cb"));
  if (!real.ctx_new || !real.get_new_cb || !real.get_get_cb || !real.get_remove_cb) {
    std::fprintf(stderr, "OpenSSL functions not found in libssl.so.3\n");
    return 1;
  }
  // The shim must be there, or the test would prove nothing.
  CHECK(dlsym(RTLD_DEFAULT, "SSL_CTX_sess_get_new_cb") != dlsym(libssl, "SSL_CTX_sess_get_new_cb"));
  check_method("TLS_client_method", TLS_client_method(), false, false);
  check_method("TLS_method", TLS_method(), true, true);
  check_method("TLS_server_method", TLS_server_method(), true, true);
  return dc::test::check_exit_status();
}
