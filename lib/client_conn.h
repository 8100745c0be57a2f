// The blocking side of libdistcache: one connection to a cache, driven with
// non-blocking sockets and poll() so that every step (connect, send,
// receive) ends at an absolute deadline. One request is waited for at a
// time, which is all the DC_CTX API needs; a request whose deadline passed
// after it was sent whole is *abandoned*, not fatal: the connection stays
// open and its answer, when it comes, is recognised by its uid and dropped,
// so a late cache costs no reconnect. No C ABI here (see client.cc); no
// exceptions leave this file's functions except std::bad_alloc.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "net.h"
#include "proto.h"

namespace dc::client {

// Outcome of one step; the values are the DC_ERR_* codes of dc_client.h.
enum class Err : int {
  none = 0,
  argument = 1,
  connect = 2,
  backoff = 3,
  timeout = 4,
  io = 5,
  protocol = 6,
  refused = 7,
  address = 8,
  disconnected = 9,
};
const char* to_string(Err e);

// One connection to the cache. Not thread-safe; movable, not copyable.
class Conn {
 public:
  bool is_open() const { return bool(fd_); }
  // Drops the connection (and any partial input). Harmless when closed.
  // Never calls shutdown(): after fork() it only drops this process's
  // reference, so the other process's use of the socket is undisturbed.
  void close();

  // Connects to `sa`, giving up at `deadline` (now_ms() clock). Returns
  // Err::none, or Err::connect / Err::timeout with `detail` set. Any previous
  // connection is closed first.
  Err open(const SockAddr& sa, int64_t deadline, std::string& detail);

  // Sends the encoded request `req` (whose uid and operation are `uid` and
  // `op`) and waits for its response, whose payload is copied into `resp`.
  // Answers to earlier abandoned requests that arrive first are dropped.
  // Returns Err::none; Err::timeout when the deadline passed; Err::io when
  // the connection broke (then `answered_nothing` says whether any byte of a
  // response had arrived, i.e. whether a retry is safe); Err::protocol when
  // the peer sent a corrupt stream or a response that does not match the
  // request. A timeout after the whole request was sent keeps the
  // connection (the request is abandoned; at most kMaxAbandoned at once,
  // beyond which the connection is closed); every other error closes it.
  // On success it stays open unless the peer sent more than the response.
  Err transact(const std::vector<uint8_t>& req, uint32_t uid, proto::Op op, int64_t deadline,
               std::vector<uint8_t>& resp, std::string& detail, bool& answered_nothing);

  // Abandoned requests whose answers a connection waits for, at most.
  static constexpr size_t kMaxAbandoned = 8;
  // Late answers dropped on this object's connections so far (diagnostics).
  uint64_t late_answers() const { return late_; }

  // The fd (for tests and diagnostics); -1 when closed.
  int fd() const { return fd_.get(); }

 private:
  // Waits until fd_ is ready for `events` or the deadline passes.
  // Returns Err::none, Err::timeout, or Err::io (poll error / hang-up only
  // when no POLLIN is pending).
  Err wait(short events, int64_t deadline, std::string& detail);

  // Whether `m` answers an abandoned request; forgets that request if so.
  bool drop_if_abandoned(const proto::Message& m);

  UniqueFd fd_;
  proto::Decoder dec_;
  // Abandoned requests (uid, op) of the open connection, oldest first.
  struct Abandoned {
    uint32_t uid;
    proto::Op op;
  };
  Abandoned abandoned_[kMaxAbandoned] = {};
  size_t n_abandoned_ = 0;
  uint64_t late_ = 0;
};

}  // namespace dc::client
