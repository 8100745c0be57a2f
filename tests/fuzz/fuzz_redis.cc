// libFuzzer target for what a Redis server sends the agent
// (daemons/agent/redis_backend.h): the input is fed, split where its first
// byte says, into hiredis's reply reader, and each reply is mapped with
// map_reply for an operation taken from the input, as the backend does.
// Checks: nothing crashes or leaks; a reader error stops the stream (the
// backend closes the connection then); what map_reply accepts is what a
// dc_server could have answered: a 1-byte status of the operation, or a
// GET's session of kMinRetrievableData..kMaxSessionData bytes.
#include <hiredis/hiredis.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>

#include "agent/redis_backend.h"

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
  bool ok = op == dc::proto::Op::add
                ? status == uint8_t(dc::proto::AddStatus::ok) ||
                      status == uint8_t(dc::proto::AddStatus::matching_session)
                : status == uint8_t(dc::proto::Status::ok) ||
                      status == uint8_t(dc::proto::Status::notok);
  if (!ok) {
    std::fprintf(stderr, "map_reply gave status %u for op %d\n", status, int(op));
    std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  size_t split = data[0] % (size - 1) + 1;  // the first chunk's end, in 1..size-1
  uint8_t ops = data[1];
  const char* in = reinterpret_cast<const char*>(data + 2);
  size_t n = size - 2;
  redisReader* reader = redisReaderCreate();
  size_t chunks[2] = {std::min(split, n), n - std::min(split, n)};
  size_t at = 0, replies = 0;
  for (size_t c : chunks) {
    if (redisReaderFeed(reader, in + at, c) != REDIS_OK) break;
    at += c;
    for (;;) {
      void* reply = nullptr;
      if (redisReaderGetReply(reader, &reply) != REDIS_OK) {
        redisReaderFree(reader);
        return 0;  // the backend closes the connection here
      }
      if (reply == nullptr) break;
      auto op = dc::proto::Op((ops >> (2 * (replies++ % 4))) & 3);
      check(op, static_cast<redisReply*>(reply));
      freeReplyObject(reply);
    }
  }
  redisReaderFree(reader);
  return 0;
}
