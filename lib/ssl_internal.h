// Internals of the OpenSSL glue (lib/ssl.cc) that its unit tests drive
// (tests/unit/test_ssl_glue.cc). Neither the shim nor applications use them.
#pragma once

#include <openssl/ssl.h>

namespace dc::ssl {

// The lifetime a session is stored for, in milliseconds: what is left of
// its own timeout at `now` (seconds since the epoch), clamped to the
// protocol's 500 ms .. 7 days; 0 when it has expired.
unsigned long lifetime_ms(const SSL_SESSION* sess, long now);

}  // namespace dc::ssl
