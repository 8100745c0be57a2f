/* A slow name server for the dc_client tests, preloaded (LD_PRELOAD) into
 * the agent: getaddrinfo() of the host name "slow.distcache.test" takes
 * DC_SLOW_RESOLVE_MS milliseconds (default 2000) and then answers as for
 * 127.0.0.1; every other call goes straight to the real getaddrinfo. A test
 * can so see whether a slow lookup holds up anything but itself. */
#include <dlfcn.h>
#include <netdb.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef int (*getaddrinfo_fn)(const char*, const char*, const struct addrinfo*, struct addrinfo**);

int getaddrinfo(const char* node, const char* service, const struct addrinfo* hints,
                struct addrinfo** res) {
  static getaddrinfo_fn real;
  getaddrinfo_fn fn = __atomic_load_n(&real, __ATOMIC_ACQUIRE);
  if (!fn) {
    fn = (getaddrinfo_fn)dlsym(RTLD_NEXT, "getaddrinfo");
    if (!fn) return EAI_SYSTEM;
    __atomic_store_n(&real, fn, __ATOMIC_RELEASE);
  }
  if (node && strcmp(node, "slow.distcache.test") == 0) {
    const char* ms_text = getenv("DC_SLOW_RESOLVE_MS");
    long ms = ms_text && *ms_text ? strtol(ms_text, NULL, 10) : 2000;
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0) {
    }
    node = "127.0.0.1";
  }
  return fn(node, service, hints, res);
}
