// Outbound connections on a Loop: see connector.h.
#include "ev/connector.h"

#include <arpa/inet.h>

#include <cstring>
#include <mutex>
#include <system_error>
#include <thread>

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
  SockAddr sa;
  std::string err;
  if (resolve(a, false, sa, err)) {
    start(sa, a.to_string(), timeout_ms, std::move(done));
    return;
  }
  cancel();
  done_ = std::move(done);
  what_ = a.to_string();
  pending_err_ = "cannot connect to " + what_ + ": " + err;
  timer_.start(0);
}

void Connector::start(const SockAddr& sa, const std::string& what, int timeout_ms, DoneFn done) {
  cancel();
  done_ = std::move(done);
  what_ = what;
  std::string err;
  fd_ = connect_start(sa, err);
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

bool is_numeric(const Address& a) {
  if (a.kind == Address::Kind::unix_path || a.host.empty() || a.ipv6_literal) return true;
  in_addr v4;
  return inet_pton(AF_INET, a.host.c_str(), &v4) == 1;
}

struct Resolver::Job {
  std::mutex mu;
  // Set by the loop's thread when the Resolver no longer wants the result:
  // from then on the lookup's thread touches nothing of the loop's.
  bool cancelled = false;
  bool ready = false;
  struct ev_loop* loop = nullptr;
  ev_async* async = nullptr;
  bool ok = false;
  SockAddr sa;
  std::string err;
};

Resolver::Resolver(Loop& loop) : loop_(loop) {
  ev_async_init(&w_, on_async_cb);
  w_.data = this;
}

Resolver::~Resolver() {
  cancel();
}

void Resolver::cancel() {
  if (job_) {
    std::lock_guard<std::mutex> g(job_->mu);
    job_->cancelled = true;  // the thread runs on and drops its result
  }
  job_.reset();
  done_ = nullptr;
  ev_async_stop(loop_.raw(), &w_);
}

bool Resolver::start(const Address& a, DoneFn done) {
  if (job_) return false;
  auto job = std::make_shared<Job>();
  job->loop = loop_.raw();
  job->async = &w_;
  ev_async_start(loop_.raw(), &w_);
  try {
    std::thread([job, a] {
      SockAddr sa;
      std::string err;
      bool ok = resolve(a, false, sa, err);
      std::lock_guard<std::mutex> g(job->mu);
      if (job->cancelled) return;
      job->ok = ok;
      job->sa = sa;
      job->err = err;
      job->ready = true;
      // Under the lock: cancel() cannot stop the watcher in between.
      ev_async_send(job->loop, job->async);
    }).detach();
  } catch (const std::system_error& e) {
    // No thread to be had (resource limits): report it as a failed lookup.
    job->ok = false;
    job->err = "cannot resolve " + a.to_string() + ": no thread for the lookup: " + e.what();
    job->ready = true;
    ev_async_send(job->loop, job->async);
  }
  job_ = std::move(job);
  done_ = std::move(done);
  return true;
}

void Resolver::on_async_cb(struct ev_loop*, ev_async* w, int) {
  static_cast<Resolver*>(w->data)->on_done();
}

void Resolver::on_done() {
  if (!job_) return;
  bool ok;
  SockAddr sa;
  std::string err;
  {
    std::lock_guard<std::mutex> g(job_->mu);
    if (!job_->ready) return;
    ok = job_->ok;
    sa = job_->sa;
    err = job_->err;
  }
  DoneFn done = std::move(done_);
  job_.reset();
  done_ = nullptr;
  ev_async_stop(loop_.raw(), &w_);
  if (done) done(ok, sa, err);  // may destroy this: nothing after
}

}  // namespace dc::ev
