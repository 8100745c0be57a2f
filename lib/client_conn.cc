// One deadline-bound connection of the blocking client: see client_conn.h.
#include "client_conn.h"

#include <errno.h>
#include <poll.h>
#include <sys/socket.h>

#include <cstring>

namespace dc::client {

const char* to_string(Err e) {
  switch (e) {
    case Err::none:
      return "ok";
    case Err::argument:
      return "bad argument";
    case Err::connect:
      return "cannot connect";
    case Err::backoff:
      return "skipped during back-off";
    case Err::timeout:
      return "deadline passed";
    case Err::io:
      return "connection broke";
    case Err::protocol:
      return "protocol error";
    case Err::refused:
      return "refused by the cache";
    case Err::address:
      return "bad address";
    case Err::disconnected:
      return "the agent has no server";
  }
  return "unknown error";
}

void Conn::close() {
  fd_.reset();
  dec_ = proto::Decoder{};
  n_abandoned_ = 0;
}

bool Conn::drop_if_abandoned(const proto::Message& m) {
  for (size_t i = 0; i < n_abandoned_; ++i) {
    if (abandoned_[i].uid != m.uid || abandoned_[i].op != m.op) continue;
    // Answers come in order: anything abandoned before this one will never
    // be answered now, so it is forgotten too.
    size_t left = n_abandoned_ - (i + 1);
    for (size_t j = 0; j < left; ++j) abandoned_[j] = abandoned_[i + 1 + j];
    n_abandoned_ = left;
    ++late_;
    return true;
  }
  return false;
}

Err Conn::wait(short events, int64_t deadline, std::string& detail) {
  for (;;) {
    int64_t left = deadline - now_ms();
    if (left <= 0) {
      detail = "deadline passed";
      return Err::timeout;
    }
    pollfd p{fd_.get(), events, 0};
    int rc = ::poll(&p, 1, int(left));
    if (rc < 0) {
      if (errno == EINTR) continue;
      detail = std::string("poll: ") + strerror(errno);
      return Err::io;
    }
    if (rc == 0) continue;  // re-checks the deadline
    // Errors and hang-ups are reported by the following send/recv/connect
    // result with their real cause, so any wake-up is "ready" here.
    return Err::none;
  }
}

Err Conn::open(const SockAddr& sa, int64_t deadline, std::string& detail) {
  close();
  std::string err;
  UniqueFd fd = connect_start(sa, err);
  if (!fd) {
    detail = err;
    return Err::connect;
  }
  fd_ = std::move(fd);
  if (Err e = wait(POLLOUT, deadline, detail); e != Err::none) {
    close();
    if (e == Err::timeout) detail = "connect did not complete before the deadline";
    return e == Err::timeout ? Err::timeout : Err::connect;
  }
  if (int e = connect_result(fd_.get()); e != 0) {
    detail = strerror(e);
    close();
    return Err::connect;
  }
  return Err::none;
}

Err Conn::transact(const std::vector<uint8_t>& req, uint32_t uid, proto::Op op, int64_t deadline,
                   std::vector<uint8_t>& resp, std::string& detail, bool& answered_nothing) {
  answered_nothing = true;
  auto fail = [&](Err e, std::string why) {
    detail = std::move(why);
    close();
    return e;
  };
  // The request was sent whole and its deadline passed: keep the connection
  // and drop its answer when it comes, unless too many are owed already.
  auto abandon = [&](std::string why) {
    if (n_abandoned_ == kMaxAbandoned) return fail(Err::timeout, std::move(why));
    abandoned_[n_abandoned_++] = {uid, op};
    detail = std::move(why);
    return Err::timeout;
  };

  // Send the whole request. MSG_NOSIGNAL: a peer that closed must cost an
  // EPIPE, never a SIGPIPE that kills the host application.
  size_t sent = 0;
  while (sent < req.size()) {
    ssize_t n =
        ::send(fd_.get(), req.data() + sent, req.size() - sent, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      sent += size_t(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      if (Err e = wait(POLLOUT, deadline, detail); e != Err::none) return fail(e, detail);
      continue;
    }
    return fail(Err::io, std::string("send: ") + strerror(errno));
  }

  // Receive until one whole message is decoded.
  uint8_t buf[16384];
  for (;;) {
    ssize_t n = ::recv(fd_.get(), buf, sizeof buf, MSG_DONTWAIT);
    if (n == 0) return fail(Err::io, "the cache closed the connection");
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        Err e = wait(POLLIN, deadline, detail);
        if (e == Err::timeout) return abandon(detail);
        if (e != Err::none) return fail(e, detail);
        continue;
      }
      return fail(Err::io, std::string("recv: ") + strerror(errno));
    }
    // Bytes while earlier answers are owed are theirs until shown otherwise.
    if (n_abandoned_ == 0) answered_nothing = false;
    proto::Bytes in(buf, size_t(n));
    while (!in.empty()) {
      proto::Message m;
      proto::DecodeResult r = dec_.decode(in, m);
      in = in.subspan(r.consumed);
      if (r.status == proto::DecodeStatus::corrupt)
        return fail(Err::protocol,
                    std::string("corrupt stream from the cache: ") + proto::to_string(r.reason));
      if (r.status == proto::DecodeStatus::need_more) break;
      if (m.is_response && drop_if_abandoned(m)) continue;
      if (!m.is_response || m.uid != uid || m.op != op)
        return fail(Err::protocol, "the cache answered a request that was not asked (uid " +
                                       std::to_string(m.uid) + ", expected " + std::to_string(uid) +
                                       ")");
      resp.assign(m.payload.begin(), m.payload.end());
      // Answers come in order: requests abandoned before this one that are
      // still unanswered never will be.
      n_abandoned_ = 0;
      // One request in flight: anything after its answer is unexplained, so
      // the stream cannot be trusted for the next operation.
      if (!in.empty() || !dec_.idle()) close();
      return Err::none;
    }
  }
}

}  // namespace dc::client
