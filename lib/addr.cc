// Address parsing: see addr.h.
#include "addr.h"

#include <arpa/inet.h>

#include <cctype>

#include "decimal.h"

namespace dc {

std::string Address::to_string() const {
  if (kind == Kind::unix_path) return "UNIX:" + path;
  std::string s = "IP:";
  if (!host.empty()) s += ipv6_literal ? "[" + host + "]:" : host + ":";
  return s + std::to_string(port);
}

namespace {

bool prefix_is(std::string_view text, std::string_view prefix) {
  if (text.size() < prefix.size()) return false;
  for (size_t i = 0; i < prefix.size(); ++i)
    if (std::toupper(static_cast<unsigned char>(text[i])) != prefix[i]) return false;
  return true;
}

// Parses a decimal port; returns a reason on failure, nullptr on success.
const char* parse_port(std::string_view s, uint16_t& port) {
  uint64_t v = 0;
  switch (check_decimal(s, 1, 65535, v)) {
    case DecimalError::none:
      port = uint16_t(v);
      return nullptr;
    case DecimalError::empty:
      return "the port is missing";
    case DecimalError::junk:
      return "the port is not a decimal number (trailing junk?)";
    case DecimalError::below:
      return "port 0 is not allowed";
    case DecimalError::above:
      return "the port is above 65535";
  }
  return "the port is not a decimal number";
}

bool valid_hostname(std::string_view h) {
  for (char c : h) {
    unsigned char u = static_cast<unsigned char>(c);
    if (!(std::isalnum(u) || c == '-' || c == '.' || c == '_')) return false;
  }
  return true;
}

}  // namespace

bool parse_address(std::string_view text, Address& out, std::string& err) {
  auto reject = [&](const char* why) {
    err = "bad address \"" + std::string(text) + "\": " + why;
    return false;
  };
  Address a;
  if (prefix_is(text, "UNIX:")) {
    std::string_view path = text.substr(5);
    if (path.empty()) return reject("the UNIX socket path is empty");
    if (path.size() > kMaxUnixPath) return reject("the UNIX socket path is longer than 107 bytes");
    if (path.find('\0') != std::string_view::npos) return reject("the path contains a NUL byte");
    a.kind = Address::Kind::unix_path;
    a.path = std::string(path);
    out = std::move(a);
    return true;
  }
  if (!prefix_is(text, "IP:"))
    return reject("unknown prefix; use UNIX:/path, IP:port or IP:host:port");
  std::string_view rest = text.substr(3);
  a.kind = Address::Kind::ip;
  std::string_view port_text;
  if (!rest.empty() && rest.front() == '[') {
    size_t close = rest.find(']');
    if (close == std::string_view::npos) return reject("missing ']' after the IPv6 literal");
    std::string_view v6 = rest.substr(1, close - 1);
    if (v6.empty()) return reject("the IPv6 literal between [ ] is empty");
    std::string_view addr6 = v6.substr(0, v6.find('%'));  // a %scope may follow
    for (char c : addr6) {
      unsigned char u = static_cast<unsigned char>(c);
      if (!(std::isxdigit(u) || c == ':' || c == '.'))
        return reject("the IPv6 literal has a character that is not hex, ':' or '.'");
    }
    std::string_view after = rest.substr(close + 1);
    if (after.empty() || after.front() != ':') return reject("expected ':port' after ']'");
    a.host = std::string(v6);
    a.ipv6_literal = true;
    port_text = after.substr(1);
  } else {
    size_t colon = rest.find(':');
    if (colon == std::string_view::npos) {
      port_text = rest;  // IP:port
    } else {
      std::string_view host = rest.substr(0, colon);
      port_text = rest.substr(colon + 1);
      if (port_text.find(':') != std::string_view::npos)
        return reject("too many ':' (an IPv6 literal must be written in brackets, IP:[::1]:port)");
      if (host.empty()) return reject("the host before ':port' is empty");
      if (host.find(']') != std::string_view::npos) return reject("']' without a matching '['");
      if (!valid_hostname(host)) return reject("the host name has a character that is not allowed");
      a.host = std::string(host);
    }
  }
  if (const char* why = parse_port(port_text, a.port)) return reject(why);
  out = std::move(a);
  return true;
}

bool is_ip_literal(const std::string& host) {
  in6_addr a;
  return inet_pton(AF_INET, host.c_str(), &a) == 1 || inet_pton(AF_INET6, host.c_str(), &a) == 1;
}

}  // namespace dc
