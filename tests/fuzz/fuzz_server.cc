// libFuzzer target: one dc_server client connection, in process. The real
// Server, Store and libev connection layer (compiled into this target with
// the fuzzer's instrumentation) run on a real ev::Loop; the input's bytes
// are written into a UNIX socket connected to the server's listener, the
// loop runs without blocking between writes, and everything the server
// sends back is decoded and checked:
//   - every byte it sends is protocol, every message an answer;
//   - answers come in request order, one per complete request, with the
//     request's uid and operation, and a payload allowed for that
//     operation; with a store too large to evict and sessions too long-lived
//     to expire during a run, the payload is exactly what a model of the
//     store predicts (ADD status, GET data, REMOVE/HAVE status);
//   - the connection is closed after a corrupt stream, an answer sent by the
//     client, or an ADD too short to parse (PROTOCOL.md), and only then;
//   - the heap in use stays within a bound (backpressure holds output when
//     the client does not read), and the store's invariants hold.
//
// Input: byte 0 picks the mode, the rest is the client's byte stream.
//   bit 0  the client does not read until it has written everything
//   bit 1  small backpressure thresholds (4 KiB / 1 KiB)
//   bit 2  a small store (8 sessions, 16 KiB): eviction, payloads unchecked
//   bit 3  the client shuts down its write side at the end (half-open)
//   bits 4-6  write size: 1, 7, 14, 100, 2062, 4096, 65536 or all at once
#include <map>
#include <string>
#include <vector>

#include "fuzz_daemon.h"
#include "server/server.h"
#include "server/store.h"

using namespace dc;
using namespace dc::fuzz;
using proto::Op;

namespace {

// What the server must answer to one request.
struct Expect {
  uint32_t uid;
  Op op;
  std::vector<uint8_t> allowed;  // ADD/REMOVE/HAVE: allowed status bytes
  bool known = false;            // GET: the answer is predicted exactly
  std::string data;              // GET when known: "" = miss
};

struct Answer {
  uint32_t uid;
  Op op;
  std::vector<uint8_t> payload;
};

struct Model {
  struct Entry {
    std::string data;
    bool certain;  // will not expire or be evicted during the run
  };
  std::map<std::string, Entry> m;
  bool small_store;
};

std::string str(proto::Bytes b) {
  return std::string(reinterpret_cast<const char*>(b.data()), b.size());
}

// Decodes the client's stream as the server will and predicts the answers.
// Returns true when the stream contains something that makes the server
// close the connection (no request after it is answered).
bool predict(proto::Bytes in, Model& model, std::vector<Expect>& out) {
  proto::Decoder d;
  while (!in.empty()) {
    proto::Message m;
    proto::DecodeResult r = d.decode(in, m);
    in = in.subspan(r.consumed);
    if (r.status == proto::DecodeStatus::corrupt) return true;
    if (r.status == proto::DecodeStatus::need_more) return false;
    if (m.is_response) return true;
    Expect e{m.uid, m.op, {}, false, {}};
    std::string id = str(m.payload);
    auto it = model.m.find(id);
    bool uncertain = model.small_store || (it != model.m.end() && !it->second.certain);
    switch (m.op) {
      case Op::add: {
        proto::AddRequest req;
        proto::AddParse p = proto::parse_add(m.payload, req);
        if (p.action == proto::AddCheck::close) return true;
        if (p.status != proto::AddStatus::ok) {
          e.allowed = {uint8_t(p.status)};
          break;
        }
        id = str(req.id);
        it = model.m.find(id);
        uint8_t ok = uint8_t(proto::AddStatus::ok),
                match = uint8_t(proto::AddStatus::matching_session);
        if (model.small_store) {
          e.allowed = {ok, match, uint8_t(proto::AddStatus::notok)};
        } else if (it == model.m.end()) {
          e.allowed = {ok};
          if (req.timeout_ms > 0) model.m[id] = {str(req.data), req.timeout_ms >= 60000};
        } else if (it->second.certain) {
          e.allowed = {match};
        } else {
          e.allowed = {ok, match};  // it may have expired: the entry stays uncertain
        }
        break;
      }
      case Op::get:
        if (!uncertain) {
          e.known = true;
          if (it != model.m.end()) e.data = it->second.data;
        }
        break;
      case Op::remove:
      case Op::have: {
        uint8_t present = it != model.m.end() ? 0 : 1;
        e.allowed = uncertain ? std::vector<uint8_t>{0, 1} : std::vector<uint8_t>{present};
        if (m.op == Op::remove) model.m.erase(id);  // gone for certain either way
        break;
      }
    }
    out.push_back(std::move(e));
  }
  return false;
}

void check_answer(const Expect& e, const Answer& a) {
  FUZZ_CHECK(a.uid == e.uid);
  FUZZ_CHECK(a.op == e.op);
  if (e.op == Op::get) {
    if (e.known) {
      if (e.data.empty())
        FUZZ_CHECK(a.payload.size() == 1 && a.payload[0] == uint8_t(proto::Status::notok));
      else
        FUZZ_CHECK(std::string(a.payload.begin(), a.payload.end()) == e.data);
    } else {
      FUZZ_CHECK((a.payload.size() == 1 && a.payload[0] == uint8_t(proto::Status::notok)) ||
                 (a.payload.size() >= proto::kMinRetrievableData &&
                  a.payload.size() <= proto::kMaxSessionData));
    }
    return;
  }
  FUZZ_CHECK(a.payload.size() == 1);
  bool allowed = false;
  for (uint8_t s : e.allowed) allowed |= a.payload[0] == s;
  FUZZ_CHECK(allowed);
}

const size_t kChunks[8] = {1, 7, 14, 100, 2062, 4096, 65536, SIZE_MAX};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const uint8_t mode = data[0];
  const bool never_read = mode & 1, small_bp = mode & 2, small_store = mode & 4,
             half_close = mode & 8;
  const size_t chunk = kChunks[(mode >> 4) & 7];
  proto::Bytes in(data + 1, size - 1);

  ev::Loop loop;
  server::StoreLimits limits;
  if (small_store) limits = {8, 16 * 1024};
  server::Store store(limits, 1);
  server::ServerConfig cfg;
  if (small_bp) {
    cfg.conn.out_high = 4096;
    cfg.conn.out_low = 1024;
  }
  server::Server srv(loop, store, cfg);
  Address a;
  srv.add_listener(listen_unix("s", a), a);
  UniqueFd c = connect_unix(a);
  spin(loop, 2);
  FUZZ_CHECK(srv.connections() == 1);

  // What this connection may hold at most: output up to the threshold plus
  // one answer (twice that: a growing vector doubles its capacity), one
  // read held back (64 KiB), the decoder's reassembly buffer, and the
  // sessions stored (at most the input's size, plus per-session and index
  // overhead); 256 KiB of slack for the allocator and the loop.
  const size_t base = heap_in_use();
  const size_t bound = 2 * (cfg.conn.out_high + proto::encoded_size(proto::kMaxPayload)) +
                       64 * 1024 + proto::kMaxPayload + 8 * in.size() + 256 * 1024;
  // The answers kept for checking are this program's memory, not the
  // server's: they are counted apart.
  std::vector<Answer> answers;
  size_t mine = 0;
  auto on_msg = [&](const proto::Message& m) {
    FUZZ_CHECK(m.is_response);
    answers.push_back({m.uid, m.op, {m.payload.begin(), m.payload.end()}});
    mine += answers.back().payload.capacity();
  };
  Reader rd;
  auto check_mem = [&] {
    size_t now = heap_in_use(), own = mine + answers.capacity() * sizeof(Answer);
    FUZZ_CHECK(now <= base + own || now - base - own <= bound);
  };

  size_t off = 0;
  bool peer_gone = false;
  int stalls = 0;
  while (off < in.size() && !peer_gone) {
    size_t want = std::min(chunk, in.size() - off);
    ssize_t w = write_some(c.get(), in.subspan(off, want));
    if (w < 0) {
      peer_gone = true;
      break;
    }
    off += size_t(w);
    spin(loop, 2);
    check_mem();
    if (!never_read) rd.pump(c.get(), on_msg);
    // A client that does not read gets stuck once backpressure holds the
    // server and the socket buffers are full: that is the point.
    stalls = w == 0 ? stalls + 1 : 0;
    if (stalls > 20) break;
  }
  if (half_close && !peer_gone) shutdown(c.get(), SHUT_WR);

  // Read until nothing moves any more.
  for (int quiet = 0, i = 0; quiet < 4 && i < 100000; ++i) {
    spin(loop, 1);
    check_mem();
    quiet = rd.pump(c.get(), on_msg) > 0 ? 0 : quiet + 1;
  }
  FUZZ_CHECK(store.check());

  Model model{{}, small_store};
  std::vector<Expect> expects;
  bool closes = predict(in.first(off), model, expects);
  FUZZ_CHECK(answers.size() <= expects.size());
  for (size_t i = 0; i < answers.size(); ++i) check_answer(expects[i], answers[i]);
  if (closes) {
    // Answers before the bad bytes are sent on a best-effort basis only.
    FUZZ_CHECK(rd.eof());
    FUZZ_CHECK(srv.connections() == 0);
  } else {
    FUZZ_CHECK(answers.size() == expects.size());
    FUZZ_CHECK(rd.idle());
    FUZZ_CHECK(rd.eof() == half_close);
    FUZZ_CHECK(srv.connections() == (half_close ? 0u : 1u));
  }
  return 0;
}
