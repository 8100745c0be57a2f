// One protocol connection on a libev loop: see connection.h.
#include "ev/connection.h"

#include <errno.h>
#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstring>

namespace dc::ev {

namespace {
// Idle connections give back output buffers larger than this.
constexpr size_t kKeepCapacity = 16 * 1024;
}  // namespace

const char* to_string(CloseReason r) {
  switch (r) {
    case CloseReason::local:
      return "closed locally";
    case CloseReason::peer_closed:
      return "closed by peer";
    case CloseReason::io_error:
      return "I/O error";
    case CloseReason::corrupt:
      return "corrupt input";
    case CloseReason::timeout:
      return "request not finished in time";
    case CloseReason::overload:
      return "closed by the connection limits";
    case CloseReason::tls:
      return "TLS handshake failed";
  }
  return "unknown";
}

Connection::Connection(Loop& loop, UniqueFd fd, Handler& handler, ConnectionOptions opt,
                       std::unique_ptr<Transport> transport)
    : loop_(loop),
      fd_(std::move(fd)),
      t_(std::move(transport)),
      handler_(&handler),
      opt_(opt),
      established_(t_ == nullptr) {
  if (!t_) t_ = plain_transport(fd_.get());
  if (opt_.out_low > opt_.out_high) opt_.out_low = opt_.out_high;
  ev_io_init(&rw_, on_read_cb, fd_.get(), EV_READ);
  rw_.data = this;
  ev_io_init(&ww_, on_write_cb, fd_.get(), EV_WRITE);
  ww_.data = this;
  ev_io_start(loop_.raw(), &rw_);
  if (opt_.limited) loop_.enter_limits(this);
  if (!established_) {
    // The handshake starts from the loop (a client speaks first), and until
    // it is done the connection holds a started request: the frame
    // deadline covers a peer that never finishes it.
    loop_.want_flush(this);
    track_partial();
  }
}

Connection::~Connection() {
  if (!closed_) t_->shutdown();
  ev_io_stop(loop_.raw(), &rw_);
  ev_io_stop(loop_.raw(), &ww_);
  if (opt_.limited) loop_.leave_limits(this);
  loop_.forget(this);
}

void Connection::account() {
  if (opt_.limited && !closed_) loop_.account(this, heap_bytes());
}

void Connection::track_partial() {
  if (!opt_.limited || closed_) return;
  loop_.set_partial(this,
                    (!established_ && !eof_) || (!paused_ && !draining_ && !eof_ && !dec_.idle()));
}

size_t Connection::heap_bytes() const {
  return out_.capacity() + in_.capacity() + dec_.heap_bytes() + t_->heap_bytes();
}

void Connection::queued() {
  if (closed_) return;
  loop_.want_flush(this);
  account();  // may close this connection (the budget)
}

bool Connection::send(const proto::Message& m, std::span<const proto::Bytes> parts) {
  if (closed_ || !proto::append(out_, m, parts)) return false;
  queued();
  return true;
}

bool Connection::send(const proto::Message& m) {
  proto::Bytes one[1] = {m.payload};
  return send(m, one);
}

bool Connection::send_raw(proto::Bytes bytes) {
  if (closed_) return false;
  out_.insert(out_.end(), bytes.begin(), bytes.end());
  queued();
  return true;
}

void Connection::close(CloseReason why) {
  if (closed_) return;
  closed_ = true;
  reason_ = why;
  ev_io_stop(loop_.raw(), &rw_);
  ev_io_stop(loop_.raw(), &ww_);
  if (why == CloseReason::local || why == CloseReason::peer_closed) t_->shutdown();
  t_->close();  // keeps error() for the handler
  fd_.reset();
  // Give the memory back now: a closed connection may live until its owner
  // hears of it.
  std::vector<uint8_t>().swap(out_);
  std::vector<uint8_t>().swap(in_);
  out_off_ = in_off_ = 0;
  dec_ = proto::Decoder();
  if (opt_.limited) loop_.leave_limits(this);
  loop_.want_close_notice(this);
}

void Connection::close_after_flush(CloseReason why) {
  if (closed_) return;
  draining_ = true;
  reason_ = why;
  set_reading(false);
  if (pending_output() == 0)
    close(why);
  else
    queued();
}

void Connection::hold_input(bool on) {
  held_ = on;
  if (on && !paused_) {
    // Stop reading now, not at the next read's first message.
    paused_ = true;
    set_reading(false);
    track_partial();
  }
  // A flush (even of nothing) runs the resume check, from the loop.
  if (!on && paused_) queued();
}

void Connection::set_reading(bool on) {
  if (on)
    ev_io_start(loop_.raw(), &rw_);
  else
    ev_io_stop(loop_.raw(), &rw_);
}

void Connection::on_read_cb(struct ev_loop*, ev_io* w, int) {
  static_cast<Connection*>(w->data)->on_readable();
}

void Connection::on_write_cb(struct ev_loop*, ev_io* w, int) {
  auto* c = static_cast<Connection*>(w->data);
  if (c->read_wants_write_) {
    // A read (TLS) waits to write first: it goes on now.
    c->read_wants_write_ = false;
    c->on_readable();
    if (c->closed_) return;
  }
  c->flush();
}

IoResult Connection::drive_handshake() {
  IoResult r = t_->handshake();
  switch (r) {
    case IoResult::ok:
      established_ = true;
      track_partial();
      handler_->on_established(*this);  // may send or close
      return closed_ ? IoResult::closed : IoResult::ok;
    case IoResult::want_read:
      ev_io_stop(loop_.raw(), &ww_);
      return r;
    case IoResult::want_write:
      ev_io_start(loop_.raw(), &ww_);
      return r;
    case IoResult::closed:
      close(CloseReason::peer_closed);
      return r;
    case IoResult::error:
      close(CloseReason::tls);
      return r;
  }
  return r;
}

void Connection::on_readable() {
  if (closed_) return;
  if (!established_) {
    if (drive_handshake() != IoResult::ok) return;
    // Records that came with the end of the handshake are read below; the
    // output queued meanwhile goes with the next flush.
    if (pending_output() > 0) loop_.want_flush(this);
  }
  if (write_wants_read_) {
    write_wants_read_ = false;
    loop_.want_flush(this);
  }
  // Reading stopped (backpressure, closing) but a write woke us (TLS).
  if (paused_ || draining_ || eof_) return;
  // A transport that reads ahead (TLS) is read until it holds nothing more,
  // else what it took off the socket would wait for more bytes to arrive.
  // A plain socket: one read per wake-up.
  while (read_some() == IoResult::ok && !closed_ && !paused_ && !eof_ && t_->pending()) {
  }
}

IoResult Connection::read_some() {
  std::span<uint8_t> buf = loop_.scratch();
  size_t got = 0;
  IoStep st{IoResult::ok};
  // Fill the scratch buffer: one recv() for a plain socket, TLS records
  // until the transport has none or the buffer is full.
  while (got < buf.size()) {
    st = t_->read(buf.subspan(got));
    if (st.result != IoResult::ok) break;
    got += st.n;
    if (!t_->pending()) break;
  }
  if (got > 0) {
    proto::Bytes in(buf.data(), got);
    size_t left = consume(in);
    if (closed_) return IoResult::closed;
    if (left > 0) {
      // Backpressure stopped decoding: hold the rest (the scratch buffer is
      // reused by the next read of any connection).
      in_.assign(in.end() - ptrdiff_t(left), in.end());
      in_off_ = 0;
    }
  }
  switch (st.result) {
    case IoResult::ok:
    case IoResult::want_read:
      break;
    case IoResult::want_write:
      read_wants_write_ = true;
      ev_io_start(loop_.raw(), &ww_);
      break;
    case IoResult::closed: {
      // The peer will send no more; answers already queued still go out,
      // and those the handler still owes when it says so, unless the peer
      // is gone altogether (a hang-up: a UNIX socket's peer that closed,
      // not just shut down its sending side), when nobody would read them.
      // A TCP peer's close looks like a half-close here; the first write
      // after it fails and closes the connection.
      eof_ = true;
      set_reading(false);
      pollfd p{fd_.get(), 0, 0};
      bool gone = ::poll(&p, 1, 0) == 1 && (p.revents & (POLLHUP | POLLERR)) != 0;
      if (gone || !handler_->on_eof(*this)) close_after_flush(CloseReason::peer_closed);
      break;
    }
    case IoResult::error:
      close(CloseReason::io_error);
      return IoResult::error;
  }
  if (closed_) return IoResult::closed;
  track_partial();  // after an end of stream the rest will never come: not the deadline's business
  account();
  return got > 0 && st.result == IoResult::ok ? IoResult::ok : st.result;
}

size_t Connection::look_ahead(proto::Bytes in) {
  constexpr size_t kMaxAhead = 64;
  proto::Message batch[kMaxAhead];
  size_t n = 0, max = std::min(opt_.lookahead, kMaxAhead);
  // A decoder of its own, so dec_ is untouched; only messages returned in
  // place (one whole frame) are announced, so nothing is copied and the
  // decoder never allocates (a partial or multi-frame message ends the run
  // before a frame of it is taken).
  proto::Decoder la;
  while (n < max && in.size() >= proto::kHeaderSize) {
    size_t len = proto::get_u16(in.data() + 12);
    if (in[11] != 1 || in.size() < proto::kHeaderSize + len) break;
    proto::DecodeResult r = la.decode(in, batch[n]);
    if (r.status != proto::DecodeStatus::message) break;
    in = in.subspan(r.consumed);
    ++n;
  }
  if (n > 1) handler_->prefetch(*this, std::span<const proto::Message>(batch, n));
  return std::max<size_t>(n, 1);
}

size_t Connection::consume(proto::Bytes in) {
  size_t ahead = 0;  // messages at the front of `in` already announced
  while (!in.empty()) {
    if (draining_) return 0;  // nothing more is read once closing
    if (held_ || (opt_.backpressure && pending_output() >= opt_.out_high)) {
      paused_ = true;
      set_reading(false);
      return in.size();
    }
    if (opt_.lookahead && ahead == 0 && dec_.idle()) ahead = look_ahead(in);
    proto::Message m;
    proto::DecodeResult r = dec_.decode(in, m);
    if (ahead) --ahead;
    in = in.subspan(r.consumed);
    if (r.status == proto::DecodeStatus::corrupt) {
      // Best effort: answers to the requests before the bad bytes go out.
      if (pending_output() > 0)
        (void)t_->write(std::span<const uint8_t>(out_.data() + out_off_, pending_output()));
      close(CloseReason::corrupt);
      return 0;
    }
    if (r.status == proto::DecodeStatus::need_more) return 0;  // all consumed
    handler_->on_message(*this, m);
    if (closed_) return 0;
    // The reassembly buffer of a long message is not kept by an idle
    // untrusted connection (m.payload pointed into it: no longer used).
    if (opt_.limited && dec_.idle() && dec_.heap_bytes() > kIdleKeep) dec_ = proto::Decoder();
  }
  return 0;
}

void Connection::resume_input() {
  if (in_off_ < in_.size()) {
    proto::Bytes rest(in_.data() + in_off_, in_.size() - in_off_);
    size_t left = consume(rest);
    if (closed_) return;
    in_off_ = in_.size() - left;
  }
  if (in_off_ >= in_.size()) {
    std::vector<uint8_t>().swap(in_);
    in_off_ = 0;
  }
}

IoResult Connection::flush() {
  if (closed_) return IoResult::closed;
  if (!established_) {
    IoResult r = drive_handshake();
    if (r != IoResult::ok) return r;
  }
  IoResult res = IoResult::ok;
  while (out_off_ < out_.size()) {
    IoStep st = t_->write(std::span<const uint8_t>(out_.data() + out_off_, out_.size() - out_off_));
    if (st.result == IoResult::ok) {
      out_off_ += st.n;
      continue;
    }
    if (st.result == IoResult::want_write) {
      res = IoResult::want_write;
      break;
    }
    if (st.result == IoResult::want_read) {
      // The transport must read first (TLS): the next readable event
      // flushes again.
      write_wants_read_ = true;
      res = IoResult::want_read;
      break;
    }
    close(CloseReason::io_error);
    return IoResult::error;
  }
  if (res == IoResult::ok) {
    out_.clear();
    out_off_ = 0;
    if (out_.capacity() > (opt_.limited ? kIdleKeep : kKeepCapacity))
      std::vector<uint8_t>().swap(out_);
    ev_io_stop(loop_.raw(), &ww_);
    if (draining_) {
      close(reason_);
      return IoResult::closed;
    }
  } else {
    // Keep the unsent tail at the front so the buffer never creeps.
    if (out_off_ > 0) {
      std::memmove(out_.data(), out_.data() + out_off_, out_.size() - out_off_);
      out_.resize(out_.size() - out_off_);
      out_off_ = 0;
    }
    if (res == IoResult::want_write) ev_io_start(loop_.raw(), &ww_);
  }
  if (paused_ && !held_ && (!opt_.backpressure || pending_output() < opt_.out_low)) {
    paused_ = false;
    resume_input();  // may pause again, queue output or close
    if (closed_) return IoResult::closed;
    if (!paused_ && !draining_ && !eof_) {
      set_reading(true);
      // Input the transport already holds wakes no watcher: read it now.
      if (t_->pending()) on_readable();
      if (closed_) return IoResult::closed;
    }
    track_partial();
  }
  account();
  return closed_ ? IoResult::closed : res;
}

}  // namespace dc::ev
