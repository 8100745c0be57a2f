// The distcache 1.x wire codec: see proto.h and shared/PROTOCOL.md.
#include "proto.h"

#include <algorithm>
#include <cstring>

namespace dc::proto {

const char* to_string(Op op) {
  switch (op) {
    case Op::add: return "ADD";
    case Op::get: return "GET";
    case Op::remove: return "REMOVE";
    case Op::have: return "HAVE";
  }
  return "UNKNOWN";
}

const char* to_string(AddStatus s) {
  switch (s) {
    case AddStatus::ok: return "OK";
    case AddStatus::notok: return "NOTOK";
    case AddStatus::disconnected: return "DISCONNECTED";
    case AddStatus::corrupt: return "CORRUPT";
    case AddStatus::matching_session: return "MATCHING_SESSION";
    case AddStatus::timeout_range: return "TIMEOUT_RANGE";
    case AddStatus::id_range: return "ID_RANGE";
    case AddStatus::data_range: return "DATA_RANGE";
  }
  return "UNKNOWN";
}

const char* to_string(Corrupt c) {
  switch (c) {
    case Corrupt::none: return "no error";
    case Corrupt::bad_version: return "protocol version is not 0x0011";
    case Corrupt::bad_is_response: return "is_response byte is not 0 or 1";
    case Corrupt::bad_complete: return "complete byte is not 0 or 1";
    case Corrupt::bad_class: return "unknown operation class";
    case Corrupt::bad_operation: return "unknown operation";
    case Corrupt::data_len_too_big: return "frame data_len over 2048";
    case Corrupt::short_nonfinal_frame: return "non-final frame shorter than 2048 bytes";
    case Corrupt::too_many_frames: return "message longer than 16 frames (32768 bytes)";
    case Corrupt::continuation_mismatch: return "continuation frame does not match its message";
  }
  return "unknown corruption";
}

size_t encoded_size(size_t payload_len) {
  if (payload_len > kMaxPayload) return 0;
  size_t frames = payload_len == 0 ? 1 : (payload_len + kMaxFrameData - 1) / kMaxFrameData;
  return frames * kHeaderSize + payload_len;
}

size_t encode(const Message& m, std::span<const Bytes> parts, std::span<uint8_t> out) {
  size_t total = 0;
  for (Bytes p : parts) total += p.size();
  size_t need = encoded_size(total);
  if (need == 0 || out.size() < need) return 0;

  uint8_t* w = out.data();
  size_t part = 0, part_off = 0, left = total;
  do {
    size_t n = std::min(left, kMaxFrameData);
    left -= n;
    put_u32(w, m.proto_level);
    w[4] = m.is_response ? 1 : 0;
    put_u32(w + 5, m.uid);
    w[9] = uint8_t(m.op_class);
    w[10] = uint8_t(m.op);
    w[11] = left == 0 ? 1 : 0;
    put_u16(w + 12, uint16_t(n));
    w += kHeaderSize;
    // Copy n bytes gathered from the parts.
    while (n > 0) {
      Bytes p = parts[part];
      size_t take = std::min(n, p.size() - part_off);
      if (take > 0) std::memcpy(w, p.data() + part_off, take);
      w += take;
      n -= take;
      part_off += take;
      if (part_off == p.size()) {
        ++part;
        part_off = 0;
      }
    }
  } while (left > 0);
  return need;
}

bool append(std::vector<uint8_t>& out, const Message& m, std::span<const Bytes> parts) {
  size_t total = 0;
  for (Bytes p : parts) total += p.size();
  size_t need = encoded_size(total);
  if (need == 0) return false;
  size_t old = out.size();
  out.resize(old + need);
  encode(m, parts, std::span<uint8_t>(out).subspan(old));
  return true;
}

bool append(std::vector<uint8_t>& out, const Message& m) {
  Bytes one[1] = {m.payload};
  return append(out, m, one);
}

Corrupt Decoder::check_header(const uint8_t* h) const {
  if ((get_u32(h) >> 16) != kVersion) return Corrupt::bad_version;
  if (h[4] > 1) return Corrupt::bad_is_response;
  if (h[11] > 1) return Corrupt::bad_complete;
  if (h[9] != uint8_t(OpClass::user)) return Corrupt::bad_class;
  if (h[10] > uint8_t(Op::have)) return Corrupt::bad_operation;
  size_t len = get_u16(h + 12);
  if (len > kMaxFrameData) return Corrupt::data_len_too_big;
  bool final = h[11] == 1;
  if (!final && len != kMaxFrameData) return Corrupt::short_nonfinal_frame;
  if (frames_ > 0) {
    if (get_u32(h + 5) != first_.uid || h[9] != uint8_t(first_.op_class) ||
        h[10] != uint8_t(first_.op) || (h[4] == 1) != first_.is_response)
      return Corrupt::continuation_mismatch;
  }
  // This frame is number frames_+1; if it is the 16th and not final, the
  // message needs a 17th.
  if (!final && frames_ + 1 >= kMaxFrames) return Corrupt::too_many_frames;
  return Corrupt::none;
}

DecodeResult Decoder::die(Corrupt c, size_t consumed) {
  dead_ = c;
  return {DecodeStatus::corrupt, consumed, c};
}

static void fill_header(const uint8_t* h, Message& m) {
  m.proto_level = get_u32(h);
  m.is_response = h[4] == 1;
  m.uid = get_u32(h + 5);
  m.op_class = OpClass(h[9]);
  m.op = Op(h[10]);
}

DecodeResult Decoder::decode(Bytes in, Message& out) {
  if (dead_ != Corrupt::none) return {DecodeStatus::corrupt, 0, dead_};

  // Fast path: a whole single-frame message at the start of the input is
  // returned in place, with no copy.
  if (hdr_got_ == 0 && frames_ == 0 && in.size() >= kHeaderSize) {
    const uint8_t* h = in.data();
    if (Corrupt c = check_header(h); c != Corrupt::none) return die(c, 0);
    size_t len = get_u16(h + 12);
    if (h[11] == 1 && in.size() >= kHeaderSize + len) {
      fill_header(h, out);
      out.payload = in.subspan(kHeaderSize, len);
      return {DecodeStatus::message, kHeaderSize + len, Corrupt::none};
    }
  }

  size_t pos = 0;
  while (pos < in.size() || hdr_got_ == kHeaderSize) {
    if (hdr_got_ < kHeaderSize) {
      size_t take = std::min(kHeaderSize - hdr_got_, in.size() - pos);
      std::memcpy(hdr_ + hdr_got_, in.data() + pos, take);
      hdr_got_ += take;
      pos += take;
      if (hdr_got_ < kHeaderSize) break;
      if (Corrupt c = check_header(hdr_); c != Corrupt::none) return die(c, pos);
      data_left_ = get_u16(hdr_ + 12);
      frame_final_ = hdr_[11] == 1;
      if (frames_ == 0) {
        fill_header(hdr_, first_);
        asm_.clear();
      }
      ++frames_;
    }
    size_t take = std::min(data_left_, in.size() - pos);
    asm_.insert(asm_.end(), in.begin() + pos, in.begin() + pos + take);
    data_left_ -= take;
    pos += take;
    if (data_left_ > 0) break;
    hdr_got_ = 0;  // frame complete
    if (frame_final_) {
      out = first_;
      out.payload = Bytes(asm_);
      frames_ = 0;
      return {DecodeStatus::message, pos, Corrupt::none};
    }
  }
  return {DecodeStatus::need_more, pos, Corrupt::none};
}

void add_prefix(uint32_t timeout_ms, uint32_t id_len, uint8_t prefix[kAddPrefix]) {
  put_u32(prefix, timeout_ms);
  put_u32(prefix + 4, id_len);
}

AddParse parse_add(Bytes payload, AddRequest& out) {
  if (payload.size() < kAddPrefix) return {AddCheck::close, AddStatus::corrupt};
  uint32_t timeout = get_u32(payload.data());
  uint32_t id_len = get_u32(payload.data() + 4);
  size_t left = payload.size() - kAddPrefix;
  if (timeout > kMaxTimeoutMs) return {AddCheck::answer, AddStatus::timeout_range};
  if (id_len >= left) return {AddCheck::answer, AddStatus::corrupt};
  if (id_len == 0 || id_len > kMaxIdLen) return {AddCheck::answer, AddStatus::id_range};
  size_t data_len = left - id_len;
  if (data_len < kMinRetrievableData || data_len > kMaxSessionData)
    return {AddCheck::answer, AddStatus::data_range};
  out.timeout_ms = timeout;
  out.id = payload.subspan(kAddPrefix, id_len);
  out.data = payload.subspan(kAddPrefix + id_len);
  return {AddCheck::answer, AddStatus::ok};
}

GetAnswer classify_get(Bytes payload) {
  if (payload.size() >= kMinRetrievableData) return GetAnswer::data;
  if (payload.size() == 1 && payload[0] == uint8_t(Status::disconnected))
    return GetAnswer::disconnected;
  return GetAnswer::miss;
}

}  // namespace dc::proto
