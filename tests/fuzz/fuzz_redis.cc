// libFuzzer target for what a Redis server sends the agent
// (daemons/agent/redis_backend.h): the input is fed, split where its first
// byte says, into hiredis's reply reader, and each reply is mapped with
// map_reply for an operation taken from the input, as the backend does.
// Checks: nothing crashes or leaks; a reader error stops the stream (the
// backend closes the connection then); what map_reply accepts is what a
// dc_server could have answered: a 1-byte status of the operation, or a
// GET's session of kMinRetrievableData..kMaxSessionData bytes.
// The Cluster backend's parsers (redis_cluster.h) get every reply too: as a
// CLUSTER SHARDS reply (with and without TLS) and a CLUSTER SLOTS reply,
// whose accepted ranges must be within 0..16383 with a host and a port; an
// error reply as a MOVED or ASK; a string as a key, whose slot must be below
// 16384 and, for "{tag}", the tag's own.
#include <hiredis/hiredis.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "agent/redis_backend.h"
#include "agent/redis_cluster.h"

namespace {

void check(dc::proto::Op op, const redisReply* r) {
  dc::proto::Bytes data;
  uint8_t status = 0xee;
  if (!dc::agent::map_reply(op, r, data, status)) return;
  if (!data.empty()) {
    if (op != dc::proto::Op::get || data.size() < dc::proto::kMinRetrievableData ||
        data.size() > dc::proto::kMaxSessionData) {
      std::fprintf(stderr, "map_reply gave %zu bytes of data for op %d\n", data.size(), int(op));
      std::abort();
    }
    return;
  }
  bool ok = op == dc::proto::Op::add ? status == uint8_t(dc::proto::AddStatus::ok) ||
                                           status == uint8_t(dc::proto::AddStatus::matching_session)
                                     : status == uint8_t(dc::proto::Status::ok) ||
                                           status == uint8_t(dc::proto::Status::notok);
  if (!ok) {
    std::fprintf(stderr, "map_reply gave status %u for op %d\n", status, int(op));
    std::abort();
  }
}

[[noreturn]] void die(const char* what) {
  std::fprintf(stderr, "%s\n", what);
  std::abort();
}

void check_ranges(const std::vector<dc::agent::SlotRange>& ranges) {
  for (const dc::agent::SlotRange& r : ranges)
    if (r.first > r.last || r.last >= dc::agent::kClusterSlots || r.host.empty() || r.port == 0)
      die("a slot range out of bounds was accepted");
}

void check_cluster(const redisReply* r) {
  std::vector<dc::agent::SlotRange> ranges;
  std::string err;
  for (bool tls : {false, true})
    if (dc::agent::parse_cluster_shards(r, tls, "127.0.0.1", ranges, err)) check_ranges(ranges);
  if (dc::agent::parse_cluster_slots(r, "127.0.0.1", ranges, err)) check_ranges(ranges);
  if (r->type == REDIS_REPLY_ERROR) {
    dc::agent::Redirect d;
    if (dc::agent::parse_redirect(std::string_view(r->str, r->len), d) &&
        (d.slot >= dc::agent::kClusterSlots || d.port == 0))
      die("a redirect out of bounds was accepted");
  }
  if (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS) {
    std::string_view key(r->str, r->len);
    uint16_t slot = dc::agent::key_slot(key);
    if (slot >= dc::agent::kClusterSlots) die("a slot out of range");
    std::string tagged = "x{" + std::string(key) + "}y";
    if (!key.empty() && key.find('}') == std::string_view::npos &&
        dc::agent::key_slot(tagged) != dc::agent::key_slot(key))
      die("a hash tag's slot is not the tag's");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  size_t split = data[0] % (size - 1) + 1;  // the first chunk's end, in 1..size-1
  uint8_t ops = data[1];
  const char* in = reinterpret_cast<const char*>(data + 2);
  size_t n = size - 2;
  // The agent's own reader (redis_link.h), with its bounds.
  dc::agent::ReplyReader reader;
  size_t chunks[2] = {std::min(split, n), n - std::min(split, n)};
  size_t at = 0, replies = 0;
  std::string err;
  for (size_t c : chunks) {
    if (!reader.feed(reinterpret_cast<const uint8_t*>(in + at), c, err)) break;
    at += c;
    for (;;) {
      redisReply* reply = nullptr;
      if (!reader.next(reply, err)) return 0;  // the link closes the connection here
      if (reply == nullptr) break;
      auto op = dc::proto::Op((ops >> (2 * (replies++ % 4))) & 3);
      check(op, reply);
      check_cluster(reply);
      freeReplyObject(reply);
    }
  }
  return 0;
}
