// Outbound connections on a Loop: see connector.h.
#include "ev/connector.h"

#include <cstring>

namespace dc::ev {

Connector::Connector(Loop& loop)
    : loop_(loop), timer_(loop, [this] {
        // Either the deadline passed or start() failed early.
        std::string err =
            pending_err_.empty() ? "connect to " + what_ + " timed out" : pending_err_;
        finish(UniqueFd(), err);
      }) {
  ev_init(&w_, on_writable_cb);
  w_.data = this;
}

Connector::~Connector() {
  cancel();
}

void Connector::cancel() {
  ev_io_stop(loop_.raw(), &w_);
  timer_.stop();
  fd_.reset();
  done_ = nullptr;
  pending_err_.clear();
}

void Connector::start(const Address& a, int timeout_ms, DoneFn done) {
  cancel();
  done_ = std::move(done);
  what_ = a.to_string();
  SockAddr sa;
  std::string err;
  if (resolve(a, false, sa, err)) fd_ = connect_start(sa, err);
  if (!fd_) {
    pending_err_ =
        err.empty() ? "cannot connect to " + what_ : "cannot connect to " + what_ + ": " + err;
    timer_.start(0);
    return;
  }
  ev_io_set(&w_, fd_.get(), EV_WRITE);
  ev_io_start(loop_.raw(), &w_);
  if (timeout_ms > 0) timer_.start(timeout_ms);
}

void Connector::on_writable_cb(struct ev_loop*, ev_io* w, int) {
  auto* c = static_cast<Connector*>(w->data);
  int e = connect_result(c->fd_.get());
  if (e == 0) {
    c->finish(std::move(c->fd_), "");
  } else {
    c->finish(UniqueFd(), "cannot connect to " + c->what_ + ": " + strerror(e));
  }
}

void Connector::finish(UniqueFd fd, const std::string& err) {
  DoneFn done = std::move(done_);
  ev_io_stop(loop_.raw(), &w_);
  timer_.stop();
  fd_.reset();
  done_ = nullptr;
  pending_err_.clear();
  if (done) done(std::move(fd), err);  // may destroy this: nothing after
}

}  // namespace dc::ev
