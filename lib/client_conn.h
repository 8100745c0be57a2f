// The blocking side of libdistcache: one connection to a cache, driven with
// non-blocking sockets and poll() so that every step (connect, send,
// receive) ends at an absolute deadline. One request is in flight at a time,
// which is all the DC_CTX API needs. No C ABI here (see client.cc); no
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
  // Returns Err::none; Err::timeout when the deadline passed; Err::io when
  // the connection broke (then `answered_nothing` says whether any byte of a
  // response had arrived, i.e. whether a retry is safe); Err::protocol when
  // the peer sent a corrupt stream or a response that does not match the
  // request. On every error the connection is closed; on success it stays
  // open unless the peer sent more than the one response.
  Err transact(const std::vector<uint8_t>& req, uint32_t uid, proto::Op op, int64_t deadline,
               std::vector<uint8_t>& resp, std::string& detail, bool& answered_nothing);

  // The fd (for tests and diagnostics); -1 when closed.
  int fd() const { return fd_.get(); }

 private:
  // Waits until fd_ is ready for `events` or the deadline passes.
  // Returns Err::none, Err::timeout, or Err::io (poll error / hang-up only
  // when no POLLIN is pending).
  Err wait(short events, int64_t deadline, std::string& detail);

  UniqueFd fd_;
  proto::Decoder dec_;
};

}  // namespace dc::client
