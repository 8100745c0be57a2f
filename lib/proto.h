// The distcache 1.x wire protocol codec (shared/PROTOCOL.md): frame and
// message encoding, an incremental decoder that accepts any split of its
// input, and the ADD/GET/REMOVE/HAVE payload encodings.
//
// Pure: no sockets, no event loop, no OpenSSL. The decoder never allocates
// for a message that arrives whole in one input span (the payload then
// points into the caller's bytes); a message split across reads or frames is
// reassembled in one reusable buffer that grows at most to 32768 bytes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

namespace dc::proto {

using Bytes = std::span<const uint8_t>;

inline constexpr uint32_t kVersion = 0x0011;
inline constexpr uint32_t kPatch = 0x0000;  // no extension sets yet
inline constexpr uint32_t kProtoLevel = (kVersion << 16) | kPatch;
inline constexpr size_t kHeaderSize = 14;
inline constexpr size_t kMaxFrameData = 2048;
inline constexpr size_t kMaxFrames = 16;
inline constexpr size_t kMaxPayload = kMaxFrameData * kMaxFrames;  // 32768
inline constexpr size_t kMaxIdLen = 64;
inline constexpr size_t kMaxSessionData = 32768;
inline constexpr uint32_t kMaxTimeoutMs = 604800000;  // 7 days
inline constexpr uint32_t kMinTimeoutMs = 500;        // DC_MIN_TIMEOUT
// A GET answer shorter than this is read by 1.x clients as a status byte.
inline constexpr size_t kMinRetrievableData = 5;
// The fixed prefix of an ADD request payload: timeout_ms:u32 id_len:u32.
inline constexpr size_t kAddPrefix = 8;

enum class OpClass : uint8_t { user = 0 };
enum class Op : uint8_t { add = 0, get = 1, remove = 2, have = 3 };

// Status bytes shared by all operations.
enum class Status : uint8_t { ok = 0, notok = 1, disconnected = 2 };

// Answers to ADD (PROTOCOL.md, "ADD answers").
enum class AddStatus : uint8_t {
  ok = 0,
  notok = 1,
  disconnected = 2,
  corrupt = 100,
  matching_session = 101,
  timeout_range = 102,
  id_range = 103,
  data_range = 104,
};

const char* to_string(Op op);
const char* to_string(AddStatus s);

// Why a stream was declared corrupt; one value per row of PROTOCOL.md.
enum class Corrupt : uint8_t {
  none = 0,
  bad_version,            // high 16 bits of proto_level are not 0x0011
  bad_is_response,        // is_response > 1
  bad_complete,           // complete > 1
  bad_class,              // op_class is not a known class
  bad_operation,          // class/operation pair unknown
  data_len_too_big,       // data_len > 2048
  short_nonfinal_frame,   // complete = 0 and data_len != 2048
  too_many_frames,        // the message would need more than 16 frames
  continuation_mismatch,  // a continuation frame's uid/class/op/direction differs
};
const char* to_string(Corrupt c);

// One decoded or to-be-encoded message. For a decoded message, `payload`
// borrows either the decoder's input or its reassembly buffer and is valid
// until the next call to Decoder::decode() or the input bytes change.
struct Message {
  uint32_t proto_level = kProtoLevel;
  bool is_response = false;
  uint32_t uid = 0;
  OpClass op_class = OpClass::user;
  Op op = Op::add;
  Bytes payload;
};

// Bytes needed on the wire for a message with `payload_len` payload bytes.
// Returns 0 when payload_len exceeds kMaxPayload.
size_t encoded_size(size_t payload_len);

// Writes `m` as frames into `out`, the payload being the concatenation of
// `parts` (so callers need not assemble it first). Returns the number of
// bytes written, or 0 when the payload exceeds kMaxPayload or `out` is
// smaller than encoded_size(). m.payload is ignored.
size_t encode(const Message& m, std::span<const Bytes> parts, std::span<uint8_t> out);

// Convenience: appends the encoding of `m` (with m.payload) to `out`.
// Returns false, appending nothing, when the payload is too large.
bool append(std::vector<uint8_t>& out, const Message& m);
bool append(std::vector<uint8_t>& out, const Message& m, std::span<const Bytes> parts);

enum class DecodeStatus : uint8_t { need_more, message, corrupt };

struct DecodeResult {
  DecodeStatus status;
  size_t consumed;  // bytes of the input used, whatever the status
  Corrupt reason;   // set when status == corrupt
};

// Incremental decoder for one direction of one connection. Feed it input
// spans in order; each call consumes what it can and returns at most one
// message. After `corrupt` the stream is dead: every later call returns
// corrupt again (the caller closes the connection).
class Decoder {
 public:
  DecodeResult decode(Bytes in, Message& out);
  // True when no partial frame or message is buffered.
  bool idle() const { return hdr_got_ == 0 && frames_ == 0; }
  // Bytes of heap the decoder holds (reassembly buffer capacity).
  size_t heap_bytes() const { return asm_.capacity(); }

 private:
  Corrupt check_header(const uint8_t* h) const;
  DecodeResult die(Corrupt c, size_t consumed);

  uint8_t hdr_[kHeaderSize] = {};
  size_t hdr_got_ = 0;      // header bytes of the current frame buffered
  size_t data_left_ = 0;    // data bytes of the current frame still to read
  bool frame_final_ = false;
  size_t frames_ = 0;       // frames of the current message seen so far
  Message first_;           // header fields of the current message's first frame
  std::vector<uint8_t> asm_;  // reassembly buffer, reused
  Corrupt dead_ = Corrupt::none;
};

// ---- payloads ----

struct AddRequest {
  uint32_t timeout_ms = 0;
  Bytes id;
  Bytes data;
};

// What a server does with an ADD payload: `close` means the payload is too
// short to parse (the connection is closed); otherwise the status to answer
// (ok means the request is well formed and may be stored).
enum class AddCheck : uint8_t { close, answer };
struct AddParse {
  AddCheck action;
  AddStatus status;
};
// Parses an ADD request payload with the checks in PROTOCOL.md's order.
AddParse parse_add(Bytes payload, AddRequest& out);

// Writes the 8-byte ADD prefix for (timeout_ms, id_len) into `prefix`.
void add_prefix(uint32_t timeout_ms, uint32_t id_len, uint8_t prefix[kAddPrefix]);

// True when an id length is valid (1..64).
inline bool valid_id(Bytes id) { return !id.empty() && id.size() <= kMaxIdLen; }

// A client's reading of a GET answer: session data when it is at least
// kMinRetrievableData bytes, otherwise a status byte (a miss).
enum class GetAnswer : uint8_t { data, miss, disconnected };
GetAnswer classify_get(Bytes payload);

// Big-endian helpers.
inline uint32_t get_u32(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | p[3];
}
inline uint16_t get_u16(const uint8_t* p) { return uint16_t((p[0] << 8) | p[1]); }
inline void put_u32(uint8_t* p, uint32_t v) {
  p[0] = uint8_t(v >> 24);
  p[1] = uint8_t(v >> 16);
  p[2] = uint8_t(v >> 8);
  p[3] = uint8_t(v);
}
inline void put_u16(uint8_t* p, uint16_t v) {
  p[0] = uint8_t(v >> 8);
  p[1] = uint8_t(v);
}

}  // namespace dc::proto
