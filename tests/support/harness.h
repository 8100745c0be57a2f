// Shared harness for the integration, end-to-end and fault tests: temporary
// directories, real child processes, free loopback ports, waiting for a
// socket to accept, a blocking protocol client with a deadline, and the
// resident memory of a process. Nothing here mocks a component: tests use it
// to drive the real binaries.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "addr.h"
#include "net.h"
#include "proto.h"

namespace dc::test {

// A fresh directory under $TMPDIR (or /tmp), removed with its contents on
// destruction. Paths are kept short so UNIX socket paths fit.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// A child process. The destructor kills (SIGKILL) and reaps it if it still runs.
class Process {
 public:
  Process() = default;
  // Starts argv[0] (a path) with argv; `env` entries ("K=V") are added to
  // the environment. stdout/stderr go to `log_path` when given (appended),
  // else are inherited. Aborts the test program if fork fails.
  static Process spawn(const std::vector<std::string>& argv,
                       const std::vector<std::string>& env = {}, const std::string& log_path = "");
  Process(Process&& o) noexcept;
  Process& operator=(Process&& o) noexcept;
  ~Process();
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  pid_t pid() const { return pid_; }
  bool running();  // false once it exited (reaps it)
  // Sends `sig`; returns false if the process is gone.
  bool signal(int sig);
  // Waits up to timeout_ms for exit; returns the wait status, or nullopt on timeout.
  std::optional<int> wait(int timeout_ms);
  // SIGTERM, then SIGKILL after grace_ms; returns the wait status.
  int stop(int grace_ms = 3000);

 private:
  pid_t pid_ = -1;
  std::optional<int> status_;
};

// Exit code of a wait status, or 128+signal when killed by a signal.
int exit_code(int wait_status);

// Runs argv to completion (at most timeout_ms), capturing stdout+stderr into
// `output`. Returns the exit code (exit_code()), or -1 on timeout (killed).
int run(const std::vector<std::string>& argv, std::string& output, int timeout_ms = 30000,
        const std::vector<std::string>& env = {});

// A TCP port on 127.0.0.1 that was free a moment ago (bound to port 0, then closed).
uint16_t free_tcp_port();

// Polls until a connection to `a` succeeds or timeout_ms passes.
bool wait_until_accepting(const Address& a, int timeout_ms = 5000);
bool wait_for_unix_socket(const std::string& path, int timeout_ms = 5000);
bool wait_for_tcp(uint16_t port, int timeout_ms = 5000);

// Parses an address the test wrote itself; aborts on error.
Address addr(const std::string& text);

// Resident set size of `pid` in KiB (VmRSS), or -1.
long rss_kb(pid_t pid);

// Environment variable `name`, aborting with a clear message when unset
// (binary paths are handed to tests by meson).
std::string env_or_die(const char* name);

// ---- What the daemons' process tests check ----

// True when something (file, socket, symlink: not followed) is at `path`.
bool path_exists(const std::string& path);
// Waits up to 10 s for `path` to vanish; true once it has.
bool wait_gone(const std::string& path);
// `s` up to its first newline.
std::string first_line(const std::string& s);
// The value of `key` in a statistics line "k=v k=v ...", or -1 when absent.
long long stat_value(const std::string& line, const std::string& key);
// Runs `argv` (a daemon named `name`, e.g. "dc_server", and its flags) and
// fails the test unless it exits 2 with a first line "NAME: ..." containing
// `names`, followed by its usage ("Usage: NAME").
void expect_usage_error(const std::string& name, const std::vector<std::string>& argv,
                        const std::string& names);

// A blocking protocol client with a deadline on every call.
class RawConn {
 public:
  // Connects to `a`; returns false (and sets error()) on failure or timeout.
  bool connect(const Address& a, int timeout_ms = 2000);
  bool connected() const { return bool(fd_); }
  int fd() const { return fd_.get(); }
  void close() { fd_.reset(); }

  // Sends all of `bytes`; false on error or timeout.
  bool send_raw(proto::Bytes bytes, int timeout_ms = 2000);
  // Encodes and sends one request.
  bool send(proto::Op op, uint32_t uid, proto::Bytes payload, int timeout_ms = 2000);
  // Receives one whole message; nullopt on timeout, close, or corrupt input
  // (error() says which). The payload is copied into `payload`.
  std::optional<proto::Message> recv(std::vector<uint8_t>& payload, int timeout_ms = 2000);
  // True when the peer closed the connection (EOF) within timeout_ms,
  // discarding anything it sent first.
  bool wait_closed(int timeout_ms = 2000);

  // One request and its answer's payload; nullopt on any failure or when
  // the answer's uid or operation does not match.
  std::optional<std::vector<uint8_t>> call(proto::Op op, proto::Bytes payload,
                                           int timeout_ms = 2000);

  // Helpers for the four operations. add() returns the status byte (or -1).
  int add(const std::string& id, const std::string& data, uint32_t timeout_ms);
  // GET: the data on a hit, "" on a miss (1-byte NOTOK), nullopt on failure.
  std::optional<std::string> get(const std::string& id);
  // REMOVE / HAVE: the status byte, or -1 on failure.
  int remove(const std::string& id);
  int have(const std::string& id);

  const std::string& error() const { return error_; }

 private:
  UniqueFd fd_;
  proto::Decoder dec_;
  std::vector<uint8_t> pending_;  // received bytes not yet decoded
  uint32_t next_uid_ = 1;
  std::string error_;
};

// ---- The -metrics endpoint (HTTP) ----

// What one HTTP exchange on 127.0.0.1:`port` brought: everything the peer
// sent until it closed, and whether it closed within the time.
struct HttpResult {
  bool connected = false;
  bool closed = false;  // the peer closed (EOF or reset) before timeout_ms
  std::string response;
  int64_t took_ms = 0;  // from connect to close (or timeout)
};
// Connects, sends `request` (in pieces of `chunk` bytes `gap_ms` apart
// when chunk > 0: a slow client), then reads until the peer closes or
// timeout_ms passes since the connect.
HttpResult http_exchange(uint16_t port, const std::string& request, int timeout_ms = 5000,
                         size_t chunk = 0, int gap_ms = 0);
// GET /metrics; the body of a 200 answer, or "" (printing what came) on
// anything else.
std::string scrape(uint16_t port);
// The value of the series `series` (e.g. `x_total{op="get"}`) in Prometheus
// text, or -1 when it is not there.
double metric_value(const std::string& text, const std::string& series);
// Runs `promtool check metrics` on `text` when $PROMTOOL names it (meson sets
// it when promtool is installed): true when it passes; prints why not. True,
// with a note, when there is no promtool.
bool promtool_ok(const std::string& text);

// Builds an ADD request payload.
std::vector<uint8_t> add_payload(const std::string& id, const std::string& data,
                                 uint32_t timeout_ms);

inline proto::Bytes bytes(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

}  // namespace dc::test
