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
      state_(t_ ? State::handshaking : State::open),
      established_(t_ == nullptr) {
  if (!t_) t_ = plain_transport(fd_.get());
  if (opt_.out_low > opt_.out_high) opt_.out_low = opt_.out_high;
  ev_io_init(&rw_, on_read_cb, fd_.get(), EV_READ);
  rw_.data = this;
  ev_io_init(&ww_, on_write_cb, fd_.get(), EV_WRITE);
  ww_.data = this;
  watch();
  if (opt_.limited) loop_.enter_limits(this);
  if (state_ == State::handshaking) {
    // The handshake starts from the loop (a client speaks first), and until
    // it is done the connection holds a started request: the frame
    // deadline covers a peer that never finishes it.
    loop_.want_flush(this);
    track_partial();
  }
}

Connection::~Connection() {
  if (state_ != State::closed) t_->shutdown();
  ev_io_stop(loop_.raw(), &rw_);
  ev_io_stop(loop_.raw(), &ww_);
  if (opt_.limited) loop_.leave_limits(this);
  loop_.forget(this);
}

void Connection::watch() {
  if (state_ == State::closed) return;
  bool r = state_ == State::handshaking || reading() || write_io_ == IoResult::want_read;
  bool w = write_io_ == IoResult::want_write || read_io_ == IoResult::want_write;
  if (r)
    ev_io_start(loop_.raw(), &rw_);
  else
    ev_io_stop(loop_.raw(), &rw_);
  if (w)
    ev_io_start(loop_.raw(), &ww_);
  else
    ev_io_stop(loop_.raw(), &ww_);
}

void Connection::account() {
  if (opt_.limited && state_ != State::closed) loop_.account(this, heap_bytes());
}

void Connection::track_partial() {
  if (!opt_.limited || state_ == State::closed) return;
  loop_.set_partial(this, state_ == State::handshaking || (reading() && !dec_.idle()));
}

size_t Connection::heap_bytes() const {
  return out_.capacity() + in_.capacity() + dec_.heap_bytes() + t_->heap_bytes();
}

void Connection::queued() {
  if (state_ == State::closed) return;
  loop_.want_flush(this);
  account();  // may close this connection (the budget)
}

bool Connection::send(const proto::Message& m, std::span<const proto::Bytes> parts) {
  if (state_ == State::closed || !proto::append(out_, m, parts)) return false;
  queued();
  return true;
}

bool Connection::send(const proto::Message& m) {
  proto::Bytes one[1] = {m.payload};
  return send(m, one);
}

bool Connection::send_raw(proto::Bytes bytes) {
  if (state_ == State::closed) return false;
  out_.insert(out_.end(), bytes.begin(), bytes.end());
  queued();
  return true;
}

void Connection::close(CloseReason why) {
  if (state_ == State::closed) return;
  state_ = State::closed;
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
  if (state_ == State::closed) return;
  if (state_ == State::handshaking || pending_output() == 0) {
    close(why);
    return;
  }
  state_ = State::draining;
  reason_ = why;
  watch();  // stops reading
  queued();
}

void Connection::hold_input(bool on) {
  if (on) {
    Input was = input_;
    input_ = Input::held;
    if (was == Input::reading) {
      // Stop reading now, not at the next read's first message.
      watch();
      track_partial();
    }
    return;
  }
  if (input_ == Input::reading) return;
  if (input_ == Input::held) input_ = Input::paused;
  // A flush (even of nothing) runs the resume step, from the loop.
  queued();
}

void Connection::on_read_cb(struct ev_loop*, ev_io* w, int) {
  static_cast<Connection*>(w->data)->on_readable();
}

void Connection::on_write_cb(struct ev_loop*, ev_io* w, int) {
  auto* c = static_cast<Connection*>(w->data);
  if (c->read_io_ == IoResult::want_write) {
    // A read (TLS) waits to write first: it goes on now.
    c->read_io_ = IoResult::ok;
    c->on_readable();
    if (c->state_ == State::closed) return;
  }
  c->flush();
}

IoResult Connection::drive_handshake() {
  IoResult r = t_->handshake();
  switch (r) {
    case IoResult::ok:
      state_ = State::open;
      established_ = true;
      write_io_ = IoResult::ok;
      watch();
      track_partial();
      handler_->on_established(*this);  // may send or close
      return state_ == State::closed ? IoResult::closed : IoResult::ok;
    case IoResult::want_read:
    case IoResult::want_write:
      write_io_ = r;  // the handshake waits like a write: see watch()
      watch();
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
  if (state_ == State::closed) return;
  if (state_ == State::handshaking) {
    if (drive_handshake() != IoResult::ok) return;
    // Records that came with the end of the handshake are read below; the
    // output queued meanwhile goes with the next flush.
    if (pending_output() > 0) loop_.want_flush(this);
  }
  // A write that waited to read first (TLS) goes on with the next flush.
  if (write_io_ == IoResult::want_read) loop_.want_flush(this);
  // When not reading (backpressure, hold, end of stream, closing) a write
  // woke us, nothing more. A transport that reads ahead (TLS) is read until
  // it holds nothing more, else what it took off the socket would wait for
  // more bytes to arrive. A plain socket: one read per wake-up.
  while (reading() && read_some() == IoResult::ok && t_->pending()) {
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
    if (state_ == State::closed) return IoResult::closed;
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
      read_io_ = IoResult::want_write;
      watch();
      break;
    case IoResult::closed:
      on_end_of_stream();
      break;
    case IoResult::error:
      close(CloseReason::io_error);
      return IoResult::error;
  }
  if (state_ == State::closed) return IoResult::closed;
  track_partial();  // after an end of stream the rest will never come: not the deadline's business
  account();
  return got > 0 && st.result == IoResult::ok ? IoResult::ok : st.result;
}

void Connection::on_end_of_stream() {
  // The peer will send no more; answers already queued still go out, and
  // those the handler still owes when it says so, unless the peer is gone
  // altogether (a hang-up: a UNIX socket's peer that closed, not just shut
  // down its sending side), when nobody would read them. A TCP peer's close
  // looks like a half-close here; the first write after it fails and closes
  // the connection.
  if (state_ == State::open) state_ = State::half_closed;
  watch();  // stops reading
  pollfd p{fd_.get(), 0, 0};
  bool gone = ::poll(&p, 1, 0) == 1 && (p.revents & (POLLHUP | POLLERR)) != 0;
  if (gone || !handler_->on_eof(*this)) close_after_flush(CloseReason::peer_closed);
}

namespace {
// Whether `in` starts with one whole frame that is a whole message (its
// header's complete byte set, all its data present). Peeks at the header
// fields of PROTOCOL.md (offset 11: complete, 12..13: data length) without
// decoding, so that look_ahead never makes the decoder reassemble.
bool whole_message_at(proto::Bytes in) {
  if (in.size() < proto::kHeaderSize) return false;
  size_t len = proto::get_u16(in.data() + 12);
  return in[11] == 1 && in.size() >= proto::kHeaderSize + len;
}
}  // namespace

size_t Connection::look_ahead(proto::Bytes in) {
  constexpr size_t kMaxAhead = 64;
  proto::Message batch[kMaxAhead];
  size_t n = 0, max = std::min(opt_.lookahead, kMaxAhead);
  // A decoder of its own, so dec_ is untouched; only messages returned in
  // place (one whole frame) are announced, so nothing is copied and the
  // decoder never allocates (a partial or multi-frame message ends the run
  // before a frame of it is taken).
  proto::Decoder la;
  while (n < max && whole_message_at(in)) {
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
    if (state_ == State::draining) return 0;  // nothing more is read once closing
    if (input_ == Input::held || (opt_.backpressure && pending_output() >= opt_.out_high)) {
      if (input_ == Input::reading) input_ = Input::paused;
      watch();  // stops reading
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
    if (state_ == State::closed) return 0;
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
    if (state_ == State::closed) return;
    in_off_ = in_.size() - left;
  }
  if (in_off_ >= in_.size()) {
    std::vector<uint8_t>().swap(in_);
    in_off_ = 0;
  }
}

IoResult Connection::write_out() {
  IoResult res = IoResult::ok;
  while (out_off_ < out_.size()) {
    IoStep st = t_->write(std::span<const uint8_t>(out_.data() + out_off_, out_.size() - out_off_));
    if (st.result == IoResult::ok) {
      out_off_ += st.n;
      continue;
    }
    if (st.result != IoResult::want_write && st.result != IoResult::want_read) {
      close(CloseReason::io_error);
      return IoResult::error;
    }
    // want_write: the writable event flushes again; want_read: the
    // transport must read first (TLS), the next readable event does.
    res = st.result;
    break;
  }
  write_io_ = res;
  if (res == IoResult::ok) {
    out_.clear();
    out_off_ = 0;
    if (out_.capacity() > (opt_.limited ? kIdleKeep : kKeepCapacity))
      std::vector<uint8_t>().swap(out_);
  } else if (out_off_ > 0) {
    // Keep the unsent tail at the front so the buffer never creeps.
    std::memmove(out_.data(), out_.data() + out_off_, out_.size() - out_off_);
    out_.resize(out_.size() - out_off_);
    out_off_ = 0;
  }
  watch();
  return res;
}

void Connection::resume_if_drained() {
  if (input_ != Input::paused) return;  // reading, or held by the owner
  if (opt_.backpressure && pending_output() >= opt_.out_low) return;
  input_ = Input::reading;
  resume_input();  // may pause again, queue output or close
  if (state_ == State::closed) return;
  if (reading()) {
    watch();
    // Input the transport already holds wakes no watcher: read it now.
    if (t_->pending()) on_readable();
    if (state_ == State::closed) return;
  }
  track_partial();
}

IoResult Connection::flush() {
  if (state_ == State::closed) return IoResult::closed;
  if (state_ == State::handshaking) {
    IoResult r = drive_handshake();
    if (r != IoResult::ok) return r;
  }
  IoResult res = write_out();
  if (res == IoResult::error) return res;
  if (res == IoResult::ok && state_ == State::draining) {
    close(reason_);
    return IoResult::closed;
  }
  resume_if_drained();
  if (state_ == State::closed) return IoResult::closed;
  account();
  return state_ == State::closed ? IoResult::closed : res;
}

}  // namespace dc::ev
