// Unit tests of the address syntax (lib/addr.*): every good form, and each
// malformed form with its own message.
#include "cmocka_cpp.h"

#include <string>

#include "addr.h"

using dc::Address;
using dc::parse_address;

namespace {

Address good(const char* text) {
  Address a;
  std::string err;
  if (!parse_address(text, a, err)) fail_msg("%s rejected: %s", text, err.c_str());
  return a;
}

// The address must be rejected with a message that names it and contains `why`.
void bad(const std::string& text, const char* why) {
  Address a;
  std::string err;
  if (parse_address(text, a, err)) fail_msg("\"%s\" was accepted", text.c_str());
  if (err.find(why) == std::string::npos)
    fail_msg("error for \"%s\" is \"%s\", expected it to mention \"%s\"", text.c_str(),
             err.c_str(), why);
  if (err.find(text.substr(0, 40)) == std::string::npos)
    fail_msg("error \"%s\" does not name the address", err.c_str());
}

void test_unix(void**) {
  Address a = good("UNIX:/tmp/dc_client");
  assert_int_equal(int(a.kind), int(Address::Kind::unix_path));
  assert_string_equal(a.path.c_str(), "/tmp/dc_client");
  assert_string_equal(a.to_string().c_str(), "UNIX:/tmp/dc_client");
  good("unix:relative/path");
  std::string longest = "UNIX:/" + std::string(106, 'a');  // 107 bytes of path
  assert_int_equal(good(longest.c_str()).path.size(), 107);
}

void test_ip_port_only(void**) {
  Address a = good("IP:9001");
  assert_int_equal(int(a.kind), int(Address::Kind::ip));
  assert_true(a.host.empty());
  assert_int_equal(a.port, 9001);
  assert_int_equal(good("IP:1").port, 1);
  assert_int_equal(good("IP:65535").port, 65535);
  assert_string_equal(a.to_string().c_str(), "IP:9001");
}

void test_ip_host_port(void**) {
  Address a = good("IP:localhost:9001");
  assert_string_equal(a.host.c_str(), "localhost");
  assert_int_equal(a.port, 9001);
  a = good("IP:127.0.0.1:443");
  assert_string_equal(a.host.c_str(), "127.0.0.1");
  a = good("IP:cache-1.example.net:80");
  assert_string_equal(a.host.c_str(), "cache-1.example.net");
  a = good("IP:[::1]:9001");
  assert_string_equal(a.host.c_str(), "::1");
  assert_true(a.ipv6_literal);
  assert_string_equal(a.to_string().c_str(), "IP:[::1]:9001");
  a = good("ip:[fe80::1%lo]:1");
  assert_string_equal(a.host.c_str(), "fe80::1%lo");
}

void test_bad_prefix(void**) {
  bad("TCP:127.0.0.1:9001", "unknown prefix");
  bad("", "unknown prefix");
  bad("/tmp/socket", "unknown prefix");
  bad("UNIX", "unknown prefix");
}

void test_bad_unix(void**) {
  bad("UNIX:", "path is empty");
  bad("UNIX:/" + std::string(107, 'a'), "longer than 107 bytes");
}

void test_bad_port(void**) {
  bad("IP:0", "port 0");
  bad("IP:65536", "above 65535");
  bad("IP:99999999999999999999", "above 65535");
  bad("IP:localhost:0", "port 0");
  bad("IP:", "port is missing");
  bad("IP:localhost:", "port is missing");
  bad("IP:-1", "not a decimal number");
}

void test_bad_brackets(void**) {
  bad("IP:[::1:9001", "missing ']'");
  bad("IP:[::1]9001", "expected ':port' after ']'");
  bad("IP:[]:9001", "empty");
  bad("IP:[zz::1]:9001", "not hex");
  bad("IP:::1:9001", "must be written in brackets");
  bad("IP:host]:9001", "without a matching '['");
}

void test_trailing_junk(void**) {
  bad("IP:9001x", "trailing junk");
  bad("IP:localhost:90 ", "trailing junk");
  bad("IP:[::1]:9001junk", "trailing junk");
  bad("IP:host name:1", "not allowed");
  bad("IP::9001", "host before ':port' is empty");
}

}  // namespace

int main() {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_unix),        cmocka_unit_test(test_ip_port_only),
      cmocka_unit_test(test_ip_host_port), cmocka_unit_test(test_bad_prefix),
      cmocka_unit_test(test_bad_unix),    cmocka_unit_test(test_bad_port),
      cmocka_unit_test(test_bad_brackets), cmocka_unit_test(test_trailing_junk),
  };
  return cmocka_run_group_tests_name("addr", tests, nullptr, nullptr);
}
