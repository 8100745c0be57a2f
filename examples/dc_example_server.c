/*
 * dc_example_server: a small TLS server that shares its sessions with other
 * servers through distcache, using the explicit API of <distcache/dc_ssl.h>.
 *
 *   dc_example_server -listen 127.0.0.1:8443 -cert cert.pem -key key.pem \
 *                     -cache UNIX:/run/distcache/dc_client.sock [-name A] [-keep-tickets]
 *
 * Every connection is served on a thread of its own (so the cache callbacks
 * run on many threads at once): the server completes the handshake, reads
 * one line, answers "hello from NAME (new|resumed session)" and closes.
 * Two instances with the same certificate resume each other's sessions:
 *
 *   openssl s_client -connect 127.0.0.1:8443 -sess_out s.pem -ign_eof </dev/null
 *   openssl s_client -connect 127.0.0.1:8444 -sess_in s.pem ...   ("Reused")
 *
 * It is written in C against the installed headers only, to show the C ABI.
 */
#include <arpa/inet.h>
#include <distcache/dc_ssl.h>
#include <errno.h>
#include <netdb.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static const char* name = "example";

static void usage(void) {
  fprintf(stderr,
          "usage: dc_example_server -listen [HOST:]PORT -cert FILE -key FILE -cache ADDRESS\n"
          "                         [-name NAME] [-keep-tickets] [-timeout MS]\n");
  exit(2);
}

/* Prints OpenSSL's queued errors after `what` and clears the queue. */
static void ssl_errors(const char* what) {
  unsigned long e;
  char buf[256];
  while ((e = ERR_get_error()) != 0) {
    ERR_error_string_n(e, buf, sizeof buf);
    fprintf(stderr, "%s: %s: %s\n", name, what, buf);
  }
}

/* Opens a listening TCP socket on "[host:]port"; returns the fd or -1. */
static int listen_on(const char* spec) {
  char host[256] = "";
  const char* port = spec;
  const char* colon = strrchr(spec, ':');
  if (colon != NULL) {
    size_t n = (size_t)(colon - spec);
    if (n >= sizeof host) return -1;
    memcpy(host, spec, n);
    host[n] = '\0';
    port = colon + 1;
  }
  struct addrinfo hints = {0}, *res = NULL;
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  if (getaddrinfo(host[0] ? host : NULL, port, &hints, &res) != 0) return -1;
  int fd = socket(res->ai_family, res->ai_socktype | SOCK_CLOEXEC, 0);
  int one = 1;
  if (fd >= 0) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (fd >= 0 && (bind(fd, res->ai_addr, res->ai_addrlen) != 0 || listen(fd, 128) != 0)) {
    close(fd);
    fd = -1;
  }
  freeaddrinfo(res);
  return fd;
}

/* The session id context: a hash of the certificate, as nginx does, so that
 * servers with the same certificate share sessions and others never do. */
static int set_sid_ctx(SSL_CTX* ctx) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  X509* cert = SSL_CTX_get0_certificate(ctx);
  if (cert == NULL || !X509_digest(cert, EVP_sha256(), md, &len)) return 0;
  if (len > SSL_MAX_SID_CTX_LENGTH) len = SSL_MAX_SID_CTX_LENGTH;
  return SSL_CTX_set_session_id_context(ctx, md, len);
}

struct conn {
  SSL_CTX* ctx;
  int fd;
};

static void* serve(void* arg) {
  struct conn* c = arg;
  SSL* ssl = SSL_new(c->ctx);
  if (ssl == NULL || !SSL_set_fd(ssl, c->fd)) {
    ssl_errors("SSL_new");
  } else if (SSL_accept(ssl) <= 0) {
    ssl_errors("handshake");
  } else {
    char line[512];
    int n = SSL_read(ssl, line, sizeof line); /* one line, or EOF */
    (void)n;
    char reply[128];
    int len = snprintf(reply, sizeof reply, "hello from %s (%s session)\n", name,
                       SSL_session_reused(ssl) ? "resumed" : "new");
    SSL_write(ssl, reply, len);
    SSL_shutdown(ssl);
  }
  ERR_clear_error();
  SSL_free(ssl);
  close(c->fd);
  free(c);
  return NULL;
}

static volatile sig_atomic_t stop;
static void on_signal(int sig) {
  (void)sig;
  stop = 1;
}

int main(int argc, char** argv) {
  const char *listen_spec = NULL, *cert = NULL, *key = NULL, *cache = NULL;
  unsigned int flags = 0, timeout = 0;
  for (int i = 1; i < argc; i++) {
    const char* a = argv[i];
    if (strcmp(a, "-keep-tickets") == 0) {
      flags |= DC_SSL_FLAG_KEEP_TICKETS;
      continue;
    }
    if (i + 1 >= argc) usage();
    const char* v = argv[++i];
    if (strcmp(a, "-listen") == 0)
      listen_spec = v;
    else if (strcmp(a, "-cert") == 0)
      cert = v;
    else if (strcmp(a, "-key") == 0)
      key = v;
    else if (strcmp(a, "-cache") == 0)
      cache = v;
    else if (strcmp(a, "-name") == 0)
      name = v;
    else if (strcmp(a, "-timeout") == 0)
      timeout = (unsigned int)strtoul(v, NULL, 10);
    else
      usage();
  }
  if (listen_spec == NULL || cert == NULL || key == NULL || cache == NULL) usage();

  SSL_CTX* ctx = SSL_CTX_new(TLS_server_method());
  if (ctx == NULL || SSL_CTX_use_certificate_chain_file(ctx, cert) != 1 ||
      SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1 || !set_sid_ctx(ctx)) {
    ssl_errors("configuration");
    return 1;
  }
  /* Only the distributed cache: no per-process copy of the sessions. */
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER | SSL_SESS_CACHE_NO_INTERNAL);
  if (!DC_SSL_CTX_attach(ctx, cache, flags)) {
    fprintf(stderr, "%s: -cache %s: %s\n", name, cache, DC_SSL_last_error());
    return 1;
  }
  if (timeout != 0 && !DC_SSL_CTX_set_timeout(ctx, timeout)) {
    fprintf(stderr, "%s: -timeout %u: %s\n", name, timeout, DC_SSL_last_error());
    return 1;
  }

  int lfd = listen_on(listen_spec);
  if (lfd < 0) {
    fprintf(stderr, "%s: cannot listen on %s: %s\n", name, listen_spec, strerror(errno));
    return 1;
  }
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal; /* no SA_RESTART: accept() returns EINTR */
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  signal(SIGPIPE, SIG_IGN);
  printf("%s: listening on %s, cache %s\n", name, listen_spec, cache);
  fflush(stdout);

  while (!stop) {
    int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
    if (fd < 0) continue; /* EINTR (stop) or a transient error */
    struct conn* c = malloc(sizeof *c);
    pthread_t t;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    if (c == NULL) {
      close(fd);
    } else {
      c->ctx = ctx;
      c->fd = fd;
      if (pthread_create(&t, &attr, serve, c) != 0) {
        close(fd);
        free(c);
      }
    }
    pthread_attr_destroy(&attr);
  }

  DC_SSL_STATS st;
  if (DC_SSL_CTX_get_stats(ctx, &st)) {
    printf("%s: cache stored %lu, hits %lu, misses %lu, store failures %lu, removed %lu\n", name,
           st.stored, st.hits, st.misses, st.store_failed, st.removed);
  }
  close(lfd);
  /* Threads still serving keep their SSL_CTX reference; the process ends. */
  return 0;
}
