// Process chores every daemon of this project does the same way, kept apart
// from any one daemon so that none copies another: reading the command line
// (strict number parsing, the flags they share), making paths absolute before
// -daemon changes directory, writing a pidfile atomically, detaching,
// dropping privileges, and checking where a UNIX socket may be made. Nothing
// here knows the protocol or the event loop (dc_ev depends on this, not the
// other way round).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "addr.h"
#include "decimal.h"
#include "net.h"

namespace dc::common {

// Whole numbers: dc::parse_decimal (lib/decimal.h, included here for the
// daemons' flags), the project's one decimal parser.

// Parses a size with an optional K, M or G suffix (powers of 1024, case
// insensitive). Returns false on junk or overflow.
bool parse_size(const std::string& text, size_t& out);

// Parses an octal file mode 0..07777 (e.g. "0660"). False on junk.
bool parse_mode(const std::string& text, int& out);

// `path` made absolute against the current directory (unchanged when it is
// already absolute or empty, or when the directory cannot be read).
std::string absolute_path(const std::string& path);

// Replaces `path` with `text` through a temporary file made with mkstemp(3)
// in the same directory and rename(2), so a reader never sees half a file.
// False (nothing left behind) on failure; errno tells why.
bool write_file_atomic(const std::string& path, const std::string& text);

// Makes directory `dir` (mode 0755, one level) unless it exists. False with
// `err` ("DIR: reason") when it is missing and cannot be made.
bool make_socket_dir(const std::string& dir, std::string& err);

// Detaches (daemon(3): fork, setsid, chdir("/"), stdio to /dev/null). Only
// the child returns, true; false with `err` set when it could not.
bool daemonize(std::string& err);

// Switches to `user`'s uid, gid and supplementary groups. False with `err`
// one line naming the user when the user is unknown or the switch fails.
bool drop_privileges(const std::string& user, std::string& err);

// The most connections a daemon whose descriptor limit is `fd_limit` (as
// raise_fd_limit() left it; <= 0: unknown) may serve: `wanted`, but keeping
// 64 descriptors (or half of a limit below 128) for its own use: listeners,
// the event loop, the -stats file, an agent's upstream connection and name
// lookups. Running out of those is what let a flood of connections stall a
// daemon, so the connection limit must bind first.
size_t connection_cap(size_t wanted, long fd_limit);
// -maxconns as it can be served: raises the descriptor limit to its hard
// limit, caps `wanted` with connection_cap, and when the operator's own
// value (`given`) was lowered says so in one line naming `prog`.
size_t usable_max_conns(const char* prog, size_t wanted, bool given);

// ---- What both daemons do to become a running daemon ----

// The process flags of 1.x that dc_server and dc_client share.
struct ProcessOptions {
  bool daemon = false;    // -daemon
  std::string pidfile;    // -pidfile PATH
  std::string user;       // -user USER
  std::string sockowner;  // -sockowner USER
  std::string sockgroup;  // -sockgroup GROUP
  int sockperms = -1;     // -sockperms OCTAL
};

// The usage lines of those flags and of -version (each ends with a newline).
const char* process_usage();

// What a -stats file holds: the statistics line, or the Prometheus text
// (for node_exporter's textfile collector).
enum class StatsFormat : uint8_t { line, prom };

// The statistics flags that dc_server and dc_client share.
struct StatsOptions {
  std::string file;                        // -stats FILE
  int64_t interval_ms = 1000;              // -stats-interval MS
  StatsFormat format = StatsFormat::line;  // -stats-format line|prom
  std::optional<Address> metrics;          // -metrics IP:port
};

// The usage lines of those flags (each ends with a newline).
const char* stats_usage();

enum class FlagParse { not_mine, ok, error };
// When `flag` is one of the ProcessOptions flags, takes its value through
// `value` (which sets `err` itself when the value is missing) and checks it
// (unknown users and groups, bad modes, empty paths). Returns not_mine for
// any other flag, error with `err` one line naming the flag.
template <typename ValueFn>
FlagParse parse_process_flag(const std::string& flag, ValueFn&& value, ProcessOptions& o,
                             std::string& err);

// Walks a daemon's command line one flag at a time, with the parts every
// daemon reads the same way: "--flag" is taken for "-flag", a flag's value
// is the next argument, the help flags, -listen ADDR, the process flags and
// the unknown-flag message. Every method that can fail sets the `err` given
// to the constructor to one line naming the flag and returns false.
// next() answers -version (or --version) itself: it prints "NAME VERSION"
// (the program's name, the project version) on stdout and exits 0.
// A daemon's loop: while (args.next()) test is_help(), then flag() against
// "-listen" (listen()) and its own flags (value()), and give any other flag
// to process_flag().
class FlagReader {
 public:
  FlagReader(int argc, char** argv, std::string& err) : argc_(argc), argv_(argv), err_(err) {}

  // Moves to the next flag; false when the arguments are used up.
  bool next();
  // The current flag, with a leading "--" already made "-".
  const std::string& flag() const { return flag_; }
  // True when the current flag asks for the usage: -h, -help or -?.
  bool is_help() const { return flag_ == "-h" || flag_ == "-help" || flag_ == "-?"; }
  // Takes the next argument as the current flag's value; false ("FLAG:
  // missing value") when there is none.
  bool value(std::string& v);
  // The next argument (the current flag's value) without taking it; "" at
  // the end.
  std::string peek_value() const { return i_ + 1 < argc_ ? argv_[i_ + 1] : ""; }
  // The -listen flag: takes an address and appends it to `out`; false
  // ("-listen: why") when the value is missing or not an address.
  bool listen(std::vector<Address>& out);
  // For a flag the daemon does not know itself: reads it as one of the
  // ProcessOptions flags (parse_process_flag). False when its value is bad,
  // or with "unknown flag "ARG"" (as typed) when it is none of them.
  bool process_flag(ProcessOptions& o);
  // When the current flag is one of the StatsOptions flags, takes and checks
  // its value: ok, or error with `err` set; not_mine for any other flag.
  FlagParse stats_flag(StatsOptions& o);

 private:
  int argc_;
  char** argv_;
  int i_ = 0;  // index in argv_ of the current flag, or of its last value once taken
  const char* typed_ = nullptr;  // the current flag as typed
  std::string flag_;
  std::string& err_;
};

// Refuses a UNIX socket path where another local user could stand in for
// us (and receive every client's requests): a directory writable by every
// user that is not sticky (anyone could remove our socket and bind their
// own; /tmp is sticky), or a file already at the path that is not a socket
// owned by us or by opt.owner (-sockowner). A stale socket of ours is left
// for listen_on to replace. True when the path is fine (or does not concern
// UNIX sockets); else false with `err` one line naming the path and what to
// do. A missing directory is left for bind() to report.
bool check_unix_listen_path(const Address& a, const ListenOptions& opt, std::string& err);

// A listening socket opened before detaching; UNIX paths made absolute so
// they can be removed after -daemon's chdir("/").
struct OpenedListener {
  UniqueFd fd;
  Address addr;
};

// Start-up in the order both daemons use: open every listener (so that an
// address in use is reported on the terminal and in the exit status; UNIX
// paths pass check_unix_listen_path first), then -daemon, the pidfile and
// -user. On failure prints "NAME: reason" on stderr, removes the socket
// files and pidfile it made, and returns false.
// On success `out` holds the listeners, and `pidfile` the absolute path to
// remove at exit (empty when none).
bool start_daemon(const char* name, const std::vector<Address>& listen, const ProcessOptions& p,
                  std::vector<OpenedListener>& out, std::string& pidfile);

}  // namespace dc::common

#include "common/daemon_util_impl.h"
