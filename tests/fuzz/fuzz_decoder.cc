// libFuzzer target for the protocol decoder and the ADD payload parser.
// The first input byte picks how the rest is split into reads, so the
// fuzzer explores partial frames as well as whole ones. Every decoded
// message is re-encoded and must decode to the same thing.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "proto.h"

using namespace dc::proto;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  size_t chunk = size_t(data[0] % 64) + 1;
  Bytes in(data + 1, size - 1);
  Decoder d;
  while (!in.empty()) {
    Bytes piece = in.first(std::min(chunk, in.size()));
    in = in.subspan(piece.size());
    while (!piece.empty()) {
      Message m;
      DecodeResult r = d.decode(piece, m);
      if (r.consumed > piece.size()) abort();
      if (r.status == DecodeStatus::corrupt) return 0;
      if (r.status == DecodeStatus::need_more) {
        if (r.consumed != piece.size()) abort();
        break;
      }
      if (m.payload.size() > kMaxPayload) abort();
      if (m.op == Op::add && !m.is_response) {
        AddRequest req;
        AddParse p = parse_add(m.payload, req);
        if (p.action == AddCheck::answer && p.status == AddStatus::ok &&
            (!valid_id(req.id) || req.data.size() > kMaxSessionData))
          abort();
      }
      classify_get(m.payload);
      // Round trip: re-encode and decode again.
      std::vector<uint8_t> again;
      if (!append(again, m)) abort();
      std::vector<uint8_t> copy(m.payload.begin(), m.payload.end());
      Decoder d2;
      Message m2;
      DecodeResult r2 = d2.decode(again, m2);
      if (r2.status != DecodeStatus::message || r2.consumed != again.size()) abort();
      if (m2.uid != m.uid || m2.op != m.op || m2.is_response != m.is_response) abort();
      if (m2.payload.size() != copy.size() ||
          (!copy.empty() && std::memcmp(m2.payload.data(), copy.data(), copy.size()) != 0))
        abort();
      piece = piece.subspan(r.consumed);
    }
  }
  return 0;
}
