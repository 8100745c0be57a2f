// Throw-away certificates for the TLS tests, made with the openssl command
// once per test program in one directory: a CA, another CA, a server
// certificate for localhost and 127.0.0.1, an agent certificate, an expired
// one and one from the other CA.
#pragma once

#include <string>
#include <vector>

#include "agent_fixture.h"
#include "harness.h"

namespace dc::test {

// The certificates, made once per test program in one directory.
struct Pki {
  TempDir dir;
  std::string f(const std::string& name) const { return dir.file(name); }

  void sh(const std::string& cmd) {
    std::string out;
    int rc = run({"/bin/sh", "-c", "cd " + dir.path() + " && " + cmd}, out);
    if (rc != 0) fail_msg("%s: exit %d: %s", cmd.c_str(), rc, out.c_str());
  }
  // A key and a certificate NAME.pem for CN, signed by CA for DAYS days
  // (negative: already expired), with the extension file EXT if given.
  void cert(const std::string& name, const std::string& cn, const std::string& ca, int days,
            const std::string& ext = "") {
    sh("openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=" + cn +
       " -keyout " + name + ".key -out " + name + ".csr 2>/dev/null");
    sh("openssl x509 -req -in " + name + ".csr -CA " + ca + ".pem -CAkey " + ca +
       ".key -CAcreateserial -days " + std::to_string(days) +
       (ext.empty() ? "" : " -extfile " + ext) + " -out " + name + ".pem 2>/dev/null");
  }
  Pki() {
    for (const char* ca : {"ca", "otherca"})
      sh(std::string("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes ") +
         "-days 2 -subj /CN=" + ca + " -keyout " + ca + ".key -out " + ca + ".pem 2>/dev/null");
    sh("printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\\n' > san.ext");
    cert("server", "localhost", "ca", 2, "san.ext");
    cert("agent", "agent", "ca", 2);
    cert("expired", "agent", "ca", -1);
    cert("foreign", "agent", "otherca", 2);
    sh("touch empty.pem");
  }
  std::vector<std::string> server_flags() const {
    return {"-tls-cert", f("server.pem"), "-tls-key", f("server.key"), "-tls-ca", f("ca.pem")};
  }
  std::vector<std::string> agent_flags(const std::string& cert) const {
    return {"-tls-cert", f(cert + ".pem"), "-tls-key", f(cert + ".key"), "-tls-ca", f("ca.pem")};
  }
};

inline Pki& pki() {
  static Pki* p = new Pki();  // kept to the end: its directory goes with the process
  return *p;
}

}  // namespace dc::test
