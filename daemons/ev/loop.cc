// The daemons' event loop: see loop.h.
#include "ev/loop.h"

#include <time.h>

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <utility>

#include "ev/connection.h"
#include "net.h"

namespace dc::ev {

namespace {
// One read per wake-up per connection takes at most this much.
constexpr size_t kScratchSize = 64 * 1024;

// Replaces every `c` in `v` by nullptr (entries are skipped when processed).
void null_out(std::vector<Connection*>& v, Connection* c) {
  for (auto& e : v)
    if (e == c) e = nullptr;
}
}  // namespace

Loop::Loop() : scratch_(kScratchSize) {
  loop_ = ev_loop_new(EVFLAG_AUTO);
  if (!loop_) {
    std::fprintf(stderr, "cannot create an event loop (libev)\n");
    std::abort();
  }
  ev_set_userdata(loop_, this);
  ev_prepare_init(&prepare_, on_prepare);
  prepare_.data = this;
  ev_prepare_start(loop_, &prepare_);
  // The prepare watcher alone must not keep run() going.
  ev_unref(loop_);
  ev_init(&frame_timer_, on_frame_timer);
  frame_timer_.data = this;
  ev_init(&report_timer_, on_report_timer);
  report_timer_.data = this;
}

Loop::~Loop() {
  ev_timer_stop(loop_, &frame_timer_);
  ev_timer_stop(loop_, &report_timer_);
  ev_ref(loop_);
  ev_prepare_stop(loop_, &prepare_);
  ev_loop_destroy(loop_);
}

void Loop::run() {
  ev_run(loop_, 0);
}

void Loop::stop() {
  ev_break(loop_, EVBREAK_ALL);
}

int64_t Loop::now_us() {
  if (!now_valid_) {
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    now_us_ = int64_t(ts.tv_sec) * 1000000 + ts.tv_nsec / 1000;
    now_valid_ = true;
  }
  return now_us_;
}

void Loop::want_flush(Connection* c) {
  if (c->in_flush_list_) return;
  c->in_flush_list_ = true;
  (c->opt_.flush_last ? flush_last_ : flush_).push_back(c);
}

void Loop::want_close_notice(Connection* c) {
  if (c->in_close_list_) return;
  c->in_close_list_ = true;
  closed_.push_back(c);
}

void Loop::forget(Connection* c) {
  if (c->in_flush_list_) {
    null_out(flush_, c);
    null_out(flush_last_, c);
  }
  if (c->in_close_list_) null_out(closed_, c);
  c->in_flush_list_ = c->in_close_list_ = false;
}

void Loop::on_prepare(struct ev_loop*, ev_prepare* w, int) {
  static_cast<Loop*>(w->data)->run_pending();
}

// Flushes every connection that queued output (those with flush_last after
// the others), then tells handlers about closed connections, until no list
// has work (a flush may resume held input that queues more output; a close
// notice may send elsewhere).
// Entries are taken one at a time from the front of the lists so that
// forget() (a Connection destroyed by a handler) can null out any of them.
void Loop::run_pending() {
  auto flush_all = [](std::vector<Connection*>& list) {
    for (size_t i = 0; i < list.size(); ++i) {
      Connection* c = list[i];
      if (!c) continue;
      list[i] = nullptr;
      c->in_flush_list_ = false;
      c->flush();
    }
    list.clear();
  };
  while (!flush_.empty() || !flush_last_.empty() || !closed_.empty()) {
    flush_all(flush_);
    flush_all(flush_last_);  // ConnectionOptions::flush_last: after the others
    for (size_t i = 0; i < closed_.size(); ++i) {
      Connection* c = closed_[i];
      if (!c) continue;
      closed_[i] = nullptr;
      c->in_close_list_ = false;
      c->handler().on_close(*c, c->reason_);
    }
    closed_.clear();
  }
  now_valid_ = false;  // the next wake-up reads the clock again
}

// ---- limits on untrusted connections ----

void Loop::enter_limits(Connection* c) {
  c->limited_pos_ = limited_.size();
  limited_.push_back(c);
}

void Loop::leave_limits(Connection* c) {
  if (c->limited_pos_ == SIZE_MAX) return;  // already left (closed)
  set_partial(c, false);
  account(c, 0);
  Connection* last = limited_.back();
  limited_[c->limited_pos_] = last;
  last->limited_pos_ = c->limited_pos_;
  limited_.pop_back();
  c->limited_pos_ = SIZE_MAX;
}

bool Loop::admit() {
  if (limits_.max_conns == 0 || limited_.size() < limits_.max_conns) return true;
  if (Connection* oldest = partial_head_) {
    ++counters_.displaced;
    oldest->close(CloseReason::overload);  // leaves limited_ at once
    return true;
  }
  ++counters_.refused;
  note(kRefused);
  return false;
}

void Loop::account(Connection* c, size_t bytes) {
  if (bytes == c->counted_) return;
  bool grew = bytes > c->counted_;
  buffered_ = buffered_ - c->counted_ + bytes;
  c->counted_ = bytes;
  if (grew && limits_.memory && buffered_ > limits_.memory) enforce_memory();
}

// Only when over the budget, so the scan is no cost in normal operation;
// it closes down to 3/4 of the budget, so at least a quarter of the
// budget must be queued again before the next scan. A scan of the largest
// count (10,000 connections) and its sort take well under a millisecond.
void Loop::enforce_memory() {
  if (enforcing_) return;  // a close below accounts its buffers as freed
  enforcing_ = true;
  std::vector<std::pair<size_t, Connection*>> by_size;
  by_size.reserve(limited_.size());
  for (Connection* c : limited_)
    if (c->counted_ > 0) by_size.emplace_back(c->counted_, c);
  std::sort(by_size.begin(), by_size.end(),
            [](const auto& a, const auto& b) { return a.first > b.first; });
  size_t target = limits_.memory - limits_.memory / 4;
  for (auto& [bytes, c] : by_size) {
    if (buffered_ <= target) break;
    ++counters_.memory_closes;
    note(kMemory);
    c->close(CloseReason::overload);  // accounts 0 for it
  }
  enforcing_ = false;
}

void Loop::set_partial(Connection* c, bool on) {
  if (on == c->in_partial_ || (on && limits_.frame_timeout_ms == 0)) return;
  c->in_partial_ = on;
  if (on) {
    c->partial_since_ = now_ms();
    c->partial_prev_ = partial_tail_;
    c->partial_next_ = nullptr;
    (partial_tail_ ? partial_tail_->partial_next_ : partial_head_) = c;
    partial_tail_ = c;
    if (!ev_is_active(&frame_timer_)) arm_frame_timer();
  } else {
    // A timer left for a connection no longer first fires early, finds
    // nothing due and is set again: cheaper than resetting it here.
    (c->partial_prev_ ? c->partial_prev_->partial_next_ : partial_head_) = c->partial_next_;
    (c->partial_next_ ? c->partial_next_->partial_prev_ : partial_tail_) = c->partial_prev_;
    c->partial_prev_ = c->partial_next_ = nullptr;
  }
}

void Loop::arm_frame_timer() {
  if (!partial_head_) return;
  int64_t due = partial_head_->partial_since_ + limits_.frame_timeout_ms;
  ev_timer_set(&frame_timer_, double(std::max<int64_t>(due - now_ms(), 1)) / 1000.0, 0.0);
  ev_timer_start(loop_, &frame_timer_);
}

void Loop::on_frame_timer(struct ev_loop*, ev_timer* w, int) {
  auto* self = static_cast<Loop*>(w->data);
  int64_t now = self->now_ms();
  while (Connection* c = self->partial_head_) {
    if (now - c->partial_since_ < self->limits_.frame_timeout_ms) break;
    ++self->counters_.frame_timeouts;
    self->note(kFrameTimeout);
    c->close(CloseReason::timeout);  // leaves the list
  }
  self->arm_frame_timer();
}

void Loop::note(Report k) {
  ++unreported_[k];
  if (ev_is_active(&report_timer_)) return;
  // The first event of a quiet spell is told at once, the rest of a burst
  // together in one line kReportEveryMs later.
  int64_t wait = std::max<int64_t>(next_report_ms_ - now_ms(), 0);
  ev_timer_set(&report_timer_, double(wait) / 1000.0, 0.0);
  ev_timer_start(loop_, &report_timer_);
}

void Loop::on_report_timer(struct ev_loop*, ev_timer* w, int) {
  static_cast<Loop*>(w->data)->report();
}

void Loop::report() {
  const ConnectionLimits& l = limits_;
  const char* name = l.name.c_str();
  if (uint64_t n = std::exchange(unreported_[kRefused], 0))
    std::fprintf(stderr,
                 "%s: refused %" PRIu64
                 " connection%s: %zu open, the most %s allows; raise %s, "
                 "or find the client holding them\n",
                 name, n, n == 1 ? "" : "s", limited_.size(), l.conns_flag.c_str(),
                 l.conns_flag.c_str());
  if (uint64_t n = std::exchange(unreported_[kFrameTimeout], 0))
    std::fprintf(stderr,
                 "%s: closed %" PRIu64 " connection%s that did not finish a request within %" PRId64
                 " ms (%s)\n",
                 name, n, n == 1 ? "" : "s", l.frame_timeout_ms, l.frame_flag.c_str());
  if (uint64_t n = std::exchange(unreported_[kMemory], 0))
    std::fprintf(stderr,
                 "%s: closed %" PRIu64
                 " connection%s holding the most unread answers and "
                 "input: their buffers passed %s %zu bytes; raise it if they were real clients\n",
                 name, n, n == 1 ? "" : "s", l.memory_flag.c_str(), l.memory);
  std::fflush(stderr);
  next_report_ms_ = now_ms() + kReportEveryMs;
}

Timer::Timer(Loop& loop, std::function<void()> cb) : loop_(loop), cb_(std::move(cb)) {
  ev_init(&w_, on_timer);
  w_.data = this;
}

Timer::~Timer() {
  stop();
}

void Timer::start(int64_t after_ms, int64_t repeat_ms) {
  ev_timer_stop(loop_.raw(), &w_);
  ev_timer_set(&w_, double(after_ms) / 1000.0, double(repeat_ms) / 1000.0);
  ev_timer_start(loop_.raw(), &w_);
}

void Timer::stop() {
  ev_timer_stop(loop_.raw(), &w_);
}

void Timer::on_timer(struct ev_loop*, ev_timer* w, int) {
  auto* t = static_cast<Timer*>(w->data);
  t->cb_();  // may destroy t: nothing after this
}

Signal::Signal(Loop& loop, int signum, std::function<void()> cb) : loop_(loop), cb_(std::move(cb)) {
  ev_signal_init(&w_, on_signal, signum);
  w_.data = this;
  ev_signal_start(loop_.raw(), &w_);
  // A signal watcher alone must not keep run() going.
  ev_unref(loop_.raw());
}

Signal::~Signal() {
  ev_ref(loop_.raw());
  ev_signal_stop(loop_.raw(), &w_);
}

void Signal::on_signal(struct ev_loop*, ev_signal* w, int) {
  static_cast<Signal*>(w->data)->cb_();
}

}  // namespace dc::ev
