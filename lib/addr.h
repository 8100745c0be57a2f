// Address syntax shared by every component (flags, DC_CTX_new,
// DC_CACHE_ADDR): `UNIX:/path`, `IP:port` (all interfaces), `IP:host:port`
// where host is a name, an IPv4 literal or a bracketed IPv6 literal.
// Pure parsing: nothing here resolves names or touches sockets (see net.h).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace dc {

// Longest UNIX socket path (sizeof sockaddr_un::sun_path less the NUL).
inline constexpr size_t kMaxUnixPath = 107;

struct Address {
  enum class Kind : uint8_t { unix_path, ip };
  Kind kind = Kind::unix_path;
  std::string path;  // UNIX: the socket path
  std::string host;  // IP: empty means every interface; brackets stripped
  uint16_t port = 0;
  bool ipv6_literal = false;  // host was written as [v6]

  // The canonical spelling, e.g. "UNIX:/tmp/x", "IP:[::1]:9001".
  std::string to_string() const;
};

// Parses `text`. On success fills `out` and returns true; otherwise returns
// false and sets `err` to one line naming the address and what is wrong.
bool parse_address(std::string_view text, Address& out, std::string& err);

// True when `host` is an IPv4 or IPv6 literal (no brackets), not a name.
bool is_ip_literal(const std::string& host);

}  // namespace dc
