// Outbound connections on a Loop: a non-blocking connect to an Address with
// an optional deadline, reported once through a callback. It hands back a
// connected socket (wrap it in a Connection); it does not retry, the caller
// decides when to try again (e.g. dc_client's -retry). Host names are looked
// up by a Resolver, on a thread of its own: getaddrinfo() blocks, for
// seconds when a name server is slow, and the loop must not.
#pragma once

#include <ev.h>

#include <functional>
#include <memory>
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
  // name is resolved here, blocking (where that matters, resolve with a
  // Resolver and use the other start()). `done` is called exactly once from
  // the loop, never from inside start(), unless cancel() or the destructor
  // comes first; it may destroy the Connector. timeout_ms <= 0 means no
  // deadline of our own.
  void start(const Address& a, int timeout_ms, DoneFn done);
  // The same with the address already resolved; `what` names it in errors.
  void start(const SockAddr& sa, const std::string& what, int timeout_ms, DoneFn done);
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

// True when resolving `a` needs no name lookup: a UNIX path, every
// interface or loopback, or an IPv4 or IPv6 literal.
bool is_numeric(const Address& a);

// Looks up an Address's host name on a thread of its own (getaddrinfo, the
// first result, as dc::resolve) and hands the result back on the loop
// (ev_async), so a slow name server never holds up the loop. One lookup at
// a time. A lookup cannot be interrupted: one that is cancelled (or whose
// Resolver is destroyed) runs on, detached, and its result is dropped.
class Resolver {
 public:
  // On success `ok` is true and `sa` the address; else `err` is one line
  // naming the address.
  using DoneFn = std::function<void(bool ok, const SockAddr& sa, const std::string& err)>;

  explicit Resolver(Loop& loop);
  ~Resolver();
  Resolver(const Resolver&) = delete;
  Resolver& operator=(const Resolver&) = delete;

  // Starts looking `a` up; `done` is called once from the loop (never from
  // inside start()) unless cancel() or the destructor comes first. It may
  // destroy the Resolver. False, doing nothing, while a lookup is under way.
  bool start(const Address& a, DoneFn done);
  void cancel();
  bool busy() const { return bool(job_); }

 private:
  struct Job;  // what the lookup's thread shares with the loop
  static void on_async_cb(struct ev_loop* l, ev_async* w, int revents);
  void on_done();

  Loop& loop_;
  ev_async w_{};
  std::shared_ptr<Job> job_;
  DoneFn done_;
};

}  // namespace dc::ev
