// The event loop of the daemons: a thin owner of one libev loop plus the
// two services the connection layer needs from it, both run once per loop
// wake-up just before the loop blocks again (an ev_prepare watcher):
//   - flushing the output of every connection that queued some, so answers
//     produced by one wake-up leave in one send() per connection;
//   - telling handlers that a connection closed, never from inside a call
//     on that connection, so a handler may destroy it right there.
// It also keeps the bounds on what connections from untrusted peers
// (ConnectionOptions::limited) may cost the process together (see
// ConnectionLimits): how many there are, how long one may take to send a
// request it has started, and how much all their buffers hold.
// Also RAII wrappers for the timers and signal watchers the daemons use.
// One Loop per thread, always passed explicitly: nothing here is global.
#pragma once

#include <ev.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

namespace dc::ev {

class Connection;

// What connections from untrusted peers (ConnectionOptions::limited: a
// server's clients, an agent's local clients) may cost, all of them
// together. 0 turns a bound off; all are off until set_limits().
struct ConnectionLimits {
  // At most this many open; see Loop::admit().
  size_t max_conns = 0;
  // A request whose first byte has arrived must be whole within this many
  // ms, else the connection is closed (CloseReason::timeout). Not counted
  // while the connection is not being read (backpressure, hold_input): the
  // wait is then ours, not the peer's.
  int64_t frame_timeout_ms = 0;
  // Heap bytes of all their buffers (queued output, input held back,
  // messages being reassembled: Connection::heap_bytes). Past it, the
  // connections holding the most are closed (CloseReason::overload) until
  // the total is 3/4 of it.
  size_t memory = 0;
  // For the log lines (e.g. "dc_server") and the flags they name.
  std::string name = "daemon";
  std::string conns_flag = "-maxconns", frame_flag = "-frametimeout", memory_flag = "-connmemory";
};

// What the limits did, for the statistics.
struct LimitCounters {
  uint64_t refused = 0;         // connections closed at accept: max_conns open
  uint64_t displaced = 0;       // closed to make room for a new one (Loop::admit)
  uint64_t frame_timeouts = 0;  // closed: a request not whole within frame_timeout_ms
  uint64_t memory_closes = 0;   // closed: their buffers were the largest over memory
};

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
  int64_t now_ms() { return now_us() / 1000; }
  // The same clock in microseconds, for timing round trips shorter than a
  // millisecond (libev's ev_now() is a double of the wall clock's seconds).
  int64_t now_us();

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

  // ---- limits on untrusted connections (ConnectionLimits) ----

  void set_limits(const ConnectionLimits& l) { limits_ = l; }
  const ConnectionLimits& limits() const { return limits_; }
  const LimitCounters& limit_counters() const { return counters_; }
  // Limited connections open, and the heap bytes their buffers hold.
  size_t limited_open() const { return limited_.size(); }
  size_t buffered() const { return buffered_; }
  // Whether a newly accepted limited connection may be served: true below
  // max_conns, or when room was made by closing the connection that has
  // held an unfinished request longest (slowloris-style slots: a
  // legitimate request is whole within microseconds, so such a connection
  // is almost surely hostile or stuck, and a flood of them cannot lock new
  // clients out). Else false: the caller closes the new socket at once, so
  // the peer hears at once (a miss for a cache client) rather than waiting
  // in a listen backlog until its deadline; counted, and logged at most
  // once per 10 s. Needs frame_timeout_ms (which keeps that list).
  bool admit();

  // Used by Connection.
  void enter_limits(Connection* c);
  void leave_limits(Connection* c);
  // `c`'s buffers now hold `bytes` (was c->counted_); enforces the budget.
  void account(Connection* c, size_t bytes);
  // Whether `c` has part of a request (on: appended at the tail, so the
  // list is in order of when each started).
  void set_partial(Connection* c, bool on);

 private:
  static void on_prepare(struct ev_loop* l, ev_prepare* w, int revents);
  static void on_frame_timer(struct ev_loop* l, ev_timer* w, int revents);
  static void on_report_timer(struct ev_loop* l, ev_timer* w, int revents);
  void run_pending();
  void arm_frame_timer();
  // Closes the largest limited connections until buffered_ <= 3/4 memory.
  void enforce_memory();
  // Counts an event of kind `k` for the rate-limited log (one line per
  // kind per kReportEveryMs).
  enum Report { kRefused, kFrameTimeout, kMemory, kReports };
  void note(Report k);
  void report();

  struct ev_loop* loop_ = nullptr;
  ev_prepare prepare_{};
  std::vector<Connection*> flush_;
  std::vector<Connection*> flush_last_;  // ConnectionOptions::flush_last
  std::vector<Connection*> closed_;
  std::vector<uint8_t> scratch_;
  int64_t now_us_ = 0;
  bool now_valid_ = false;

  ConnectionLimits limits_;
  LimitCounters counters_;
  // Every limited connection not closed yet (each knows its index).
  std::vector<Connection*> limited_;
  size_t buffered_ = 0;
  bool enforcing_ = false;
  // Connections with part of a request, oldest first (intrusive list).
  Connection* partial_head_ = nullptr;
  Connection* partial_tail_ = nullptr;
  ev_timer frame_timer_{};
  // The rate-limited log: events since the last line, and when the next
  // line may be written.
  static constexpr int64_t kReportEveryMs = 10000;
  uint64_t unreported_[kReports] = {};
  int64_t next_report_ms_ = 0;
  ev_timer report_timer_{};
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
