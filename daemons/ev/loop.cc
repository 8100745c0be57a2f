// The daemons' event loop: see loop.h.
#include "ev/loop.h"

#include <cstdio>
#include <cstdlib>

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
}

Loop::~Loop() {
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

int64_t Loop::now_ms() {
  if (!now_valid_) {
    now_ = dc::now_ms();
    now_valid_ = true;
  }
  return now_;
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
