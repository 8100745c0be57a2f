// A measurement, not a test: starts the real dc_server, stores N sessions
// (32-byte ids like TLS session ids, D bytes of data each) through pipelined
// ADDs, checks a sample with GET, and prints the server's resident memory.
//
//   bench_fill DC_SERVER [N=1000000] [D=256]
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "harness.h"

using namespace dc;
using namespace dc::test;

namespace {

std::string id_of(size_t i) {
  char buf[33];
  std::snprintf(buf, sizeof buf, "%032llx", (unsigned long long)(i * 0x9e3779b97f4a7c15ULL));
  return buf;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: bench_fill DC_SERVER [sessions=1000000] [data_bytes=256]\n");
    return 2;
  }
  size_t n = argc > 2 ? std::strtoul(argv[2], nullptr, 10) : 1000000;
  size_t d = argc > 3 ? std::strtoul(argv[3], nullptr, 10) : 256;
  TempDir dir;
  std::string sock = dir.file("s");
  Process p = Process::spawn(
      {argv[1], "-listen", "UNIX:" + sock, "-sessions", std::to_string(n), "-memory", "4G"});
  if (!wait_for_unix_socket(sock, 10000)) return 1;
  long rss0 = rss_kb(p.pid());
  RawConn c;
  if (!c.connect(addr("UNIX:" + sock))) return 1;
  std::string data(d, 'x');
  int64_t t0 = now_ms();
  const size_t kBatch = 2000;
  std::vector<uint8_t> wire;
  for (size_t i = 0; i < n; i += kBatch) {
    wire.clear();
    size_t m = std::min(kBatch, n - i);
    for (size_t j = 0; j < m; ++j) {
      proto::Message msg;
      msg.op = proto::Op::add;
      msg.uid = uint32_t(i + j);
      auto payload = add_payload(id_of(i + j), data, 3600000);
      msg.payload = payload;
      proto::append(wire, msg);
    }
    if (!c.send_raw(wire, 30000)) return 1;
    for (size_t j = 0; j < m; ++j) {
      std::vector<uint8_t> ans;
      auto r = c.recv(ans, 30000);
      if (!r || ans.size() != 1 || ans[0] != 0) {
        std::fprintf(stderr, "ADD %zu failed: %s\n", i + j, c.error().c_str());
        return 1;
      }
    }
  }
  int64_t t1 = now_ms();
  for (size_t i = 0; i < n; i += n / 100 + 1) {
    auto got = c.get(id_of(i));
    if (!got || got->size() != d) {
      std::fprintf(stderr, "GET %zu failed\n", i);
      return 1;
    }
  }
  long rss1 = rss_kb(p.pid());
  std::printf(
      "sessions=%zu data_bytes=%zu id_bytes=32 fill_ms=%lld rss_before_kb=%ld rss_after_kb=%ld "
      "rss_after_mb=%.1f per_session_bytes=%.1f\n",
      n, d, (long long)(t1 - t0), rss0, rss1, rss1 / 1024.0,
      double(rss1 - rss0) * 1024.0 / double(n));
  p.stop();
  return 0;
}
