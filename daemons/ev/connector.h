// Outbound connections on a Loop: a non-blocking connect to an Address with
// an optional deadline, reported once through a callback. It hands back a
// connected socket (wrap it in a Connection); it does not retry, the caller
// decides when to try again (e.g. dc_client's -retry).
#pragma once

#include <ev.h>

#include <functional>
#include <string>

#include "addr.h"
#include "ev/loop.h"
#include "net.h"

namespace dc::ev {

class Connector {
 public:
  // On success `fd` is a connected non-blocking socket and `err` is empty;
  // on failure `fd` is empty and `err` one line naming the address.
  using DoneFn = std::function<void(UniqueFd fd, const std::string& err)>;

  explicit Connector(Loop& loop);
  // Cancels an attempt in progress (its callback is not called).
  ~Connector();
  Connector(const Connector&) = delete;
  Connector& operator=(const Connector&) = delete;

  // Starts connecting to `a`, cancelling any attempt in progress. A host
  // name is resolved here, blocking (use literal addresses where that
  // matters). `done` is called exactly once from the loop, never from
  // inside start(), unless cancel() or the destructor comes first; it may
  // destroy the Connector. timeout_ms <= 0 means no deadline of our own.
  void start(const Address& a, int timeout_ms, DoneFn done);
  // Abandons the attempt in progress, if any.
  void cancel();
  bool busy() const { return bool(done_); }

 private:
  static void on_writable_cb(struct ev_loop* l, ev_io* w, int revents);
  void finish(UniqueFd fd, const std::string& err);

  Loop& loop_;
  UniqueFd fd_;
  ev_io w_{};
  Timer timer_;  // the deadline, or an immediate report of an early failure
  std::string pending_err_;
  std::string what_;  // the address, for messages
  DoneFn done_;
};

}  // namespace dc::ev
