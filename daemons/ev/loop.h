// The event loop of the daemons: a thin owner of one libev loop plus the
// two services the connection layer needs from it, both run once per loop
// wake-up just before the loop blocks again (an ev_prepare watcher):
//   - flushing the output of every connection that queued some, so answers
//     produced by one wake-up leave in one send() per connection;
//   - telling handlers that a connection closed, never from inside a call
//     on that connection, so a handler may destroy it right there.
// Also RAII wrappers for the timers and signal watchers the daemons use.
// One Loop per thread, always passed explicitly: nothing here is global.
#pragma once

#include <ev.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <vector>

namespace dc::ev {

class Connection;

class Loop {
 public:
  // Creates a new libev loop (never the default loop). Aborts when libev
  // cannot create one: there is nothing a daemon could do without it.
  Loop();
  ~Loop();
  Loop(const Loop&) = delete;
  Loop& operator=(const Loop&) = delete;

  struct ev_loop* raw() const {
    return loop_;
  }

  // Runs until stop() is called or no watcher is left.
  void run();
  // Makes run() return after the current callback; safe from any callback.
  void stop();

  // Milliseconds of CLOCK_MONOTONIC, read once per loop wake-up (cheap to
  // call per request; precise to one wake-up).
  int64_t now_ms();

  // ---- used by the connection layer ----

  // A per-loop read buffer: input is decoded before the next read, so one
  // buffer serves every connection of the loop.
  std::span<uint8_t> scratch() { return scratch_; }
  // Queues `c` for a flush before the loop next blocks (idempotent).
  void want_flush(Connection* c);
  // Queues the close notification of `c` (idempotent).
  void want_close_notice(Connection* c);
  // Forgets `c` (its destructor calls this).
  void forget(Connection* c);

 private:
  static void on_prepare(struct ev_loop* l, ev_prepare* w, int revents);
  void run_pending();

  struct ev_loop* loop_ = nullptr;
  ev_prepare prepare_{};
  std::vector<Connection*> flush_;
  std::vector<Connection*> flush_last_;  // ConnectionOptions::flush_last
  std::vector<Connection*> closed_;
  std::vector<uint8_t> scratch_;
  int64_t now_ = 0;
  bool now_valid_ = false;
};

// A one-shot or repeating timer. The callback runs on the loop; it may stop,
// restart or destroy the timer.
class Timer {
 public:
  Timer(Loop& loop, std::function<void()> cb);
  ~Timer();
  Timer(const Timer&) = delete;
  Timer& operator=(const Timer&) = delete;

  // (Re)starts the timer: first after `after_ms`, then every `repeat_ms`
  // (0: once).
  void start(int64_t after_ms, int64_t repeat_ms = 0);
  void stop();
  bool active() const { return ev_is_active(&w_); }

 private:
  static void on_timer(struct ev_loop* l, ev_timer* w, int revents);
  Loop& loop_;
  ev_timer w_{};
  std::function<void()> cb_;
};

// Runs `cb` on the loop each time signal `signum` arrives (libev turns the
// signal into a loop event, so the callback may do anything). Only one Loop
// of a process may watch a given signal.
class Signal {
 public:
  Signal(Loop& loop, int signum, std::function<void()> cb);
  ~Signal();
  Signal(const Signal&) = delete;
  Signal& operator=(const Signal&) = delete;

 private:
  static void on_signal(struct ev_loop* l, ev_signal* w, int revents);
  Loop& loop_;
  ev_signal w_{};
  std::function<void()> cb_;
};

}  // namespace dc::ev
