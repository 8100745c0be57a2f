// libFuzzer target: dc_client's Agent, in process, with two local clients
// and an upstream that is either the real dc_server (Server + Store on the
// same loop) or a scripted fake server driven by the input. Everything runs
// on one real ev::Loop, through UNIX sockets, without blocking.
//
// Checks:
//   - everything the agent sends a client is protocol, every message an
//     answer, in the client's request order, with the client's own uid and
//     operation, one per request, until the agent closes that client; it
//     closes a client only for a corrupt stream, an answer sent by the
//     client, an ADD too short to parse, or after the client shut down its
//     write side and every request it sent was answered (-clientpending
//     holds a client, it never closes one);
//   - everything it sends upstream is a request, uids counting up by one
//     (a new connection may skip those queued on the one that died);
//   - with the real server: the upstream connection is never lost and no
//     request is answered DISCONNECTED (unless -maxpending is tiny), every
//     payload is one the server can send;
//   - with the fake server: whatever it answers (wrong uid, wrong
//     operation, requests, garbage, closing), once it goes away every
//     pending request is answered DISCONNECTED;
//   - the heap in use stays within a bound.
//
// Input: byte 0 the mode, then records. Mode bits:
//   0 fake server   1 -clientpending 4   2 -maxout 4K   3 -maxpending 3
// Records, by the low 3 bits of their first byte t:
//   0,1  client (t&1) writes n bytes: n = next byte + 1, times 64 if t&0x80
//   2    fake server answers its oldest unanswered request with the next
//        byte + 1 (n) bytes as payload; t&8 other operation, t&16 uid + 1,
//        t&32 sent as a request
//   3    fake server writes n raw bytes
//   4    fake server closes the connection (the agent reconnects at once)
//   5    client (t>>3 & 1) shuts down its write side
//   6    client (t>>3 & 1) toggles reading (clients start reading)
//   7    (t>>3) + 1 more loop iterations
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "agent/agent.h"
#include "fuzz_daemon.h"
#include "server/server.h"
#include "server/store.h"

using namespace dc;
using namespace dc::fuzz;
using proto::Op;

namespace {

struct Answer {
  uint32_t uid;
  Op op;
  std::vector<uint8_t> payload;
};

struct Client {
  UniqueFd fd;
  std::vector<uint8_t> sent;  // bytes the agent accepted from us
  std::vector<Answer> answers;
  Reader rd;
  bool reading = true;
  bool shut = false;
  bool broken = false;  // a write failed: the agent closed us
};

// The fake server: accepts the agent's connections (the newest replaces
// the last), decodes its requests, answers as the input says.
struct Fake {
  UniqueFd lfd;
  UniqueFd c;
  proto::Decoder dec;
  std::deque<proto::Message> asked;  // requests not yet answered (payload unused)
  uint32_t last_uid = 0;
  bool any_uid = false;
  bool fresh = false;  // no request read yet on this connection

  void poll() {
    for (;;) {
      int fd = accept4(lfd.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) break;
      c.reset(fd);
      dec = proto::Decoder();
      asked.clear();
      fresh = true;
    }
    if (!c) return;
    uint8_t buf[16384];
    for (;;) {
      ssize_t n = ::recv(c.get(), buf, sizeof buf, MSG_DONTWAIT);
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return;
      if (n <= 0) {  // the agent closed the connection
        c.reset();
        return;
      }
      proto::Bytes in(buf, size_t(n));
      while (!in.empty()) {
        proto::Message m;
        proto::DecodeResult r = dec.decode(in, m);
        FUZZ_CHECK(r.status != proto::DecodeStatus::corrupt);
        in = in.subspan(r.consumed);
        if (r.status == proto::DecodeStatus::need_more) break;
        FUZZ_CHECK(!m.is_response && m.proto_level == proto::kProtoLevel);
        // Consecutive on one connection; a new connection may skip the
        // uids of requests that were queued on the one that died (those
        // were answered DISCONNECTED).
        FUZZ_CHECK(!any_uid || m.uid == last_uid + 1 || (fresh && m.uid > last_uid));
        any_uid = true;
        fresh = false;
        last_uid = m.uid;
        m.payload = {};
        asked.push_back(m);
      }
    }
  }
  void send(proto::Bytes b) {
    if (c) (void)write_some(c.get(), b);
  }
};

struct Expected {
  std::vector<proto::Message> reqs;  // payload unused
  bool closes = false;               // the stream makes the agent close the client
};

Expected predict(proto::Bytes in) {
  Expected e;
  proto::Decoder d;
  while (!in.empty()) {
    proto::Message m;
    proto::DecodeResult r = d.decode(in, m);
    in = in.subspan(r.consumed);
    if (r.status == proto::DecodeStatus::need_more) break;
    if (r.status == proto::DecodeStatus::corrupt || m.is_response) {
      e.closes = true;
      break;
    }
    proto::AddRequest req;
    if (m.op == Op::add && proto::parse_add(m.payload, req).action == proto::AddCheck::close) {
      e.closes = true;
      break;
    }
    m.payload = {};
    e.reqs.push_back(m);
  }
  return e;
}

// A payload dc_server can answer with.
bool server_payload(Op op, const std::vector<uint8_t>& p) {
  if (op == Op::get)
    return (p.size() == 1 && p[0] == 1) ||
           (p.size() >= proto::kMinRetrievableData && p.size() <= proto::kMaxSessionData);
  if (p.size() != 1) return false;
  if (op == Op::add) return p[0] == 0 || p[0] == 1 || (p[0] >= 100 && p[0] <= 104);
  return p[0] <= 1;
}

const char* g_extra_arg = "-close_fd_mask=2";

}  // namespace

// The agent logs every loss of its server to stderr, which the fake server
// causes thousands of times a second: -close_fd_mask=2 silences the
// target's stderr (libFuzzer and sanitizer reports keep theirs).
extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv) {
  static std::vector<char*> args;
  args.assign(*argv, *argv + *argc);
  args.insert(args.begin() + 1, const_cast<char*>(g_extra_arg));
  args.push_back(nullptr);
  *argc += 1;
  *argv = args.data();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const uint8_t mode = data[0];
  const bool fake_mode = mode & 1;
  proto::Bytes in(data + 1, size - 1);

  ev::Loop loop;
  Address up_addr;
  std::unique_ptr<server::Store> store;
  std::unique_ptr<server::Server> srv;
  Fake fake;
  if (fake_mode) {
    fake.lfd = listen_unix("up", up_addr);
  } else {
    store = std::make_unique<server::Store>(server::StoreLimits{}, 1);
    srv = std::make_unique<server::Server>(loop, *store, server::ServerConfig{});
    srv->add_listener(listen_unix("up", up_addr), up_addr);
  }
  agent::AgentConfig cfg;
  cfg.server = up_addr;
  cfg.retry_ms = 0;        // reconnect at once: no waiting in a fuzz run
  cfg.timeout_ms = 60000;  // no deadline fires during a run
  if (mode & 2) cfg.client_pending = 4;
  if (mode & 4) cfg.max_out = 4096;
  if (mode & 8) cfg.max_pending = 3;
  agent::Agent ag(loop, cfg);
  Address a;
  ag.add_listener(listen_unix("a", a), a);

  auto step = [&](int n) {
    spin(loop, n);
    if (fake_mode) fake.poll();
  };
  for (int i = 0; i < 100 && !(ag.upstream_up() && (!fake_mode || fake.c)); ++i) step(1);
  FUZZ_CHECK(ag.upstream_up());

  Client cl[2];
  for (Client& c : cl) c.fd = connect_unix(a);
  step(2);
  FUZZ_CHECK(ag.stats().accepted == 2);

  const size_t base = heap_in_use();
  // Two clients (output up to -maxout plus an answer, doubled by vector
  // growth; a held read; a decoder), the upstream connection and the real
  // server's connection (the same again with 256 KiB), sessions and
  // pending entries (at most the input's size, times overhead), slack.
  const size_t per_conn = 2 * (cfg.max_out + 33 * 1024) + 64 * 1024 + 32 * 1024;
  const size_t bound =
      2 * per_conn + 2 * (2 * (256 + 33) * 1024 + 96 * 1024) + 16 * in.size() + 512 * 1024;
  // The answers kept for checking are this program's memory: counted apart.
  size_t mine = 0;
  auto pump = [&](bool all) {
    for (Client& c : cl) {
      if (!c.reading && !all) continue;
      c.rd.pump(c.fd.get(), [&](const proto::Message& m) {
        FUZZ_CHECK(m.is_response);
        c.answers.push_back({m.uid, m.op, {m.payload.begin(), m.payload.end()}});
        mine += c.answers.back().payload.capacity();
      });
    }
    size_t now = heap_in_use(), own = mine;
    for (Client& c : cl) own += c.answers.capacity() * sizeof(Answer);
    FUZZ_CHECK(now <= base + own || now - base - own <= bound);
  };

  size_t i = 0;
  auto next = [&]() -> int { return i < in.size() ? in[i++] : -1; };
  while (i < in.size()) {
    uint8_t t = uint8_t(next());
    switch (t & 7) {
      case 0:
      case 1:
      case 3: {
        int b = next();
        if (b < 0) break;
        size_t n = size_t(b + 1) * ((t & 0x80) ? 64 : 1);
        n = std::min(n, in.size() - i);
        proto::Bytes bytes = in.subspan(i, n);
        i += n;
        if ((t & 7) == 3) {
          fake.send(bytes);
          break;
        }
        Client& c = cl[t & 1];
        if (c.shut || c.broken) break;
        ssize_t w = write_some(c.fd.get(), bytes);
        if (w < 0) c.broken = true;
        if (w > 0) c.sent.insert(c.sent.end(), bytes.begin(), bytes.begin() + w);
        break;
      }
      case 2: {
        int b = next();
        if (b < 0) break;
        size_t n = std::min(size_t(b + 1), in.size() - i);
        proto::Bytes payload = in.subspan(i, n);
        i += n;
        if (!fake_mode || fake.asked.empty()) break;
        proto::Message q = fake.asked.front();
        fake.asked.pop_front();
        proto::Message r = q;
        r.is_response = !(t & 32);
        if (t & 8) r.op = Op((uint8_t(q.op) + 1) & 3);
        if (t & 16) r.uid += 1;
        r.payload = payload;
        std::vector<uint8_t> bytes;
        proto::append(bytes, r);
        fake.send(bytes);
        break;
      }
      case 4:
        if (fake_mode) fake.c.reset();
        break;
      case 5: {
        Client& c = cl[(t >> 3) & 1];
        if (!c.shut) shutdown(c.fd.get(), SHUT_WR);
        c.shut = true;
        break;
      }
      case 6:
        cl[(t >> 3) & 1].reading = !cl[(t >> 3) & 1].reading;
        break;
      case 7:
        step((t >> 3) + 1);
        break;
    }
    step(1);
    pump(false);
  }

  // The fake server goes away: whatever is pending is answered DISCONNECTED.
  if (fake_mode) fake.c.reset();
  for (int quiet = 0, k = 0; quiet < 4 && k < 100000; ++k) {
    step(1);
    size_t before = cl[0].answers.size() + cl[1].answers.size();
    pump(true);
    quiet = cl[0].answers.size() + cl[1].answers.size() != before ? 0 : quiet + 1;
  }
  if (fake_mode) fake.c.reset();  // a reconnect made meanwhile

  for (Client& c : cl) {
    Expected e = predict(c.sent);
    FUZZ_CHECK(c.answers.size() <= e.reqs.size());
    for (size_t k = 0; k < c.answers.size(); ++k) {
      const Answer& ans = c.answers[k];
      FUZZ_CHECK(ans.uid == e.reqs[k].uid && ans.op == e.reqs[k].op);
      FUZZ_CHECK(ans.payload.size() <= proto::kMaxPayload);
      bool disconnected = ans.payload.size() == 1 && ans.payload[0] == 2;
      if (!fake_mode) {
        FUZZ_CHECK(server_payload(ans.op, ans.payload) || (disconnected && (mode & 8)));
      }
    }
    if (e.closes) {
      FUZZ_CHECK(c.rd.eof());
    } else if (c.rd.eof()) {
      // Closed without a protocol reason: only a client that shut down its
      // own write side, and only once every request it sent was answered.
      FUZZ_CHECK(c.shut && c.answers.size() == e.reqs.size());
    } else {
      FUZZ_CHECK(c.answers.size() == e.reqs.size());
      FUZZ_CHECK(c.rd.idle());
    }
  }
  if (!fake_mode) {
    FUZZ_CHECK(ag.stats().losses == 0);
    FUZZ_CHECK(store->check());
  }
  return 0;
}
