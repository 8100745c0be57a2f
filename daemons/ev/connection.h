// One protocol connection on a libev loop: the state machine shared by the
// daemons (dc_server's clients, dc_client's local clients and its upstream).
//
// States (Connection::State) and what moves between them:
//
//                handshake ok            peer's end of stream
//   handshaking -------------> open ------------------------> half_closed
//        |                      |                                   |
//        |                      | close_after_flush                 | close_after_flush
//        |                      v                                   | (or on_eof false)
//        |                   draining <-----------------------------+
//        |                      | output all written
//        v                      v
//      closed <------------------  and from any state: close(), an I/O or
//                                  transport error, corrupt input, limits
//
//   handshaking  the transport's handshake (TLS) is under way; no message
//                yet. A plain socket starts in open.
//   open         messages are read, decoded and handed to the Handler.
//   half_closed  the peer will send no more (Handler::on_eof returned true):
//                nothing is read; answers still go out.
//   draining     close_after_flush: nothing is read; closes once the queued
//                output is written.
//   closed       the socket is gone; the Handler hears on_close from the loop.
//
// Apart from the state, input is gated (Connection::Input) by backpressure
// and by the owner: reading (the socket is read in state open), paused (the
// output passed out_high: resumes below out_low) or held (hold_input). The
// gate is kept across open and half_closed, since a half-closed peer's
// input already read is still decoded once released.
//
// The watchers follow from the state in one place (Connection::watch): the
// read watcher while handshaking, while reading, or while the transport's
// last write said want_read; the write watcher while the last write or read
// said want_write.
//
// One loop wake-up: readable -> on_readable (handshake step, then reads
// while reading); the loop then calls flush() for every connection that
// queued output or was released, which runs three named steps: write_out
// (write what the transport takes), then finish a drained close, then
// resume_if_drained (decode held input and read again).
//
// Input is read into the loop's scratch buffer and decoded with
// proto::Decoder as far as complete messages go; each message is handed to
// the Handler, which answers by queuing output with send(). Output is
// flushed once per loop wake-up (Loop::run_pending) with one send() when the
// socket takes it all, else the rest waits for writability.
//
// Backpressure (on by default, see ConnectionOptions): when the queued
// output passes `out_high`, the connection stops decoding (the undecoded
// rest of the last read is held, at most one read's worth) and stops
// reading the socket; once the peer has drained the output below `out_low`
// it decodes the held input and reads again. So a peer that sends but never
// reads holds at most about out_high + one answer + one read of memory,
// whatever it sends.
//
// Closing: close() stops everything at once; the Handler hears about it
// later from the loop (on_close), never from inside a call on this
// connection, so it may destroy the Connection in on_close.
//
// Transport (ev/transport.h): the bytes go through a plain socket or TLS
// (ev/tls.h), the same state machine for both. Until the handshake is done
// the connection counts as holding a started request (the loop's frame
// deadline and -maxconns displacement apply, so a silent peer cannot hold a
// slot), and the handler hears on_established once it is. A transport that
// reads ahead of what it hands out (TLS records) is read until it has
// nothing left (Transport::pending), since the socket will not wake the
// loop for bytes already taken off it. An orderly close (CloseReason local
// or peer_closed, or the destructor) ends the transport in order: TLS sends
// its close_notify.
#pragma once

#include <ev.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "ev/loop.h"
#include "ev/transport.h"
#include "net.h"
#include "proto.h"

namespace dc::ev {

// Why a connection closed.
enum class CloseReason : uint8_t {
  local,        // close() by the owner
  peer_closed,  // end of stream from the peer (after our output was sent)
  io_error,     // a read or write failed (reset, broken pipe, ...)
  corrupt,      // the peer's bytes broke the protocol (PROTOCOL.md)
  timeout,      // a request started and not finished within the frame deadline
  overload,     // closed by the limits: over the buffer budget, or to make room
  tls,          // the TLS handshake failed (Connection::transport_error() says why)
};
const char* to_string(CloseReason r);

class Connection;

// What a connection's owner implements.
class Handler {
 public:
  virtual ~Handler() = default;
  // A complete message arrived on `c`. m.payload is valid only during this
  // call. The handler may send() on any connection and close() any.
  virtual void on_message(Connection& c, const proto::Message& m) = 0;
  // `c` is closed (fd gone). Called once, from the loop. The handler may
  // destroy `c` here.
  virtual void on_close(Connection& c, CloseReason why) = 0;
  // The peer shut down its sending side (end of stream) but may still
  // read; reading has stopped. Return false (the default) to close once the
  // queued output is sent; true when answers are still to come: the
  // handler then calls close_after_flush(CloseReason::peer_closed) once it
  // has queued the last of them. Not called when the peer hung up entirely
  // (seen at once on a UNIX socket; over TCP a close looks like a
  // half-close until the first write fails).
  virtual bool on_eof(Connection& c) {
    (void)c;
    return false;
  }
  // The transport's handshake (TLS) completed: messages flow from now on.
  // Not called for a transport without one (a plain socket), which is
  // established from the start. The handler may send or close here.
  virtual void on_established(Connection& c) { (void)c; }
  // A hint, only with ConnectionOptions::lookahead: `ms` are the next
  // messages of `c` in order, each to be handed to on_message soon (unless
  // the connection closes or pauses first). A handler may start fetching
  // what they will need (a server: its index slots and sessions, so the
  // cache misses of a batch overlap instead of coming one after another).
  // Payloads are valid only during this call. It must not send or close.
  virtual void prefetch(Connection& c, std::span<const proto::Message> ms) {
    (void)c;
    (void)ms;
  }
};

struct ConnectionOptions {
  // Backpressure: stop reading while more than out_high bytes of output are
  // queued, resume below out_low. Right for a connection whose output
  // answers its input (a server's client). Turn it off for a connection
  // whose output is requests of its own (an agent's upstream): there it
  // would stop reading the very answers that drain the peer, and two such
  // peers would wait on each other forever.
  bool backpressure = true;
  size_t out_high = 256 * 1024;
  size_t out_low = 64 * 1024;
  // When non-zero, input is looked ahead by up to this many whole messages
  // at a time and announced to Handler::prefetch before they are handled.
  size_t lookahead = 0;
  // Flushed after every other connection of the same wake-up. For an
  // agent's upstream: the peer it wakes then finds a whole batch, and the
  // wake-up does not preempt the answers still to be written to clients.
  bool flush_last = false;
  // A connection from an untrusted peer: counted against the loop's
  // ConnectionLimits (number, frame deadline, buffer budget), and keeping
  // small buffers when idle (at most kIdleKeep each for output and
  // reassembly) so that many idle connections stay cheap.
  bool limited = false;
};

class Connection {
 public:
  // Takes a connected non-blocking socket and starts reading from it
  // through `transport` (made over that socket; nullptr: the plain socket).
  // A transport with a handshake starts it before the loop next blocks.
  Connection(Loop& loop, UniqueFd fd, Handler& handler, ConnectionOptions opt = {},
             std::unique_ptr<Transport> transport = nullptr);
  // Closes the socket without calling the handler (in order, when open).
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // Queues message `m` whose payload is the concatenation of `parts` (m.payload
  // is ignored). Returns false, queuing nothing, when the payload exceeds
  // 32768 bytes or the connection is closed.
  bool send(const proto::Message& m, std::span<const proto::Bytes> parts);
  // Same with m.payload as the payload.
  bool send(const proto::Message& m);
  // Queues bytes already encoded. False when closed.
  bool send_raw(proto::Bytes bytes);

  // Closes now: pending output is dropped, the handler's on_close(why) comes
  // from the loop. Idempotent (the first reason wins).
  void close(CloseReason why = CloseReason::local);
  // Stops reading now and closes once the queued output is sent (or at
  // once when nothing is queued, or while still handshaking: nothing can be
  // written before the handshake is done).
  void close_after_flush(CloseReason why = CloseReason::local);

  bool closed() const { return state_ == State::closed; }
  // The transport's handshake is done (always, for a plain socket).
  bool established() const { return established_; }
  // Why the transport failed (CloseReason::tls, io_error), one line; "" if
  // it did not.
  const std::string& transport_error() const { return t_->error(); }
  int fd() const { return fd_.get(); }
  Handler& handler() const { return *handler_; }
  void set_handler(Handler& h) { handler_ = &h; }
  // Output bytes queued and not yet written.
  size_t pending_output() const { return out_.size() - out_off_; }
  // True while backpressure (or hold_input) holds reading.
  bool paused() const { return input_ != Input::reading; }
  // The owner's own backpressure: while held, no further message is
  // decoded (the rest of the last read is kept, as under backpressure) and
  // the socket is not read. Released, the held input is decoded before the
  // loop next blocks (never from inside this call) and reading resumes.
  void hold_input(bool on);
  bool input_held() const { return input_ == Input::held; }
  // Heap bytes of this connection's buffers (output, held input, decoder).
  size_t heap_bytes() const;
  // What an idle limited connection keeps of each buffer at most.
  static constexpr size_t kIdleKeep = 4096;

  // Called by the loop once per wake-up for a connection that queued output
  // or was released: a handshake step while handshaking, then write_out,
  // the end of a drained close, resume_if_drained. Returns the write's
  // result (ok: all written), or closed / error.
  IoResult flush();

 private:
  friend class Loop;
  // The lifecycle; see the diagram at the top of this file.
  enum class State : uint8_t { handshaking, open, half_closed, draining, closed };
  // The input gate: whether the socket is read and input decoded (state
  // open) or not (backpressure, or the owner's hold_input).
  enum class Input : uint8_t { reading, paused, held };

  static void on_read_cb(struct ev_loop* l, ev_io* w, int revents);
  static void on_write_cb(struct ev_loop* l, ev_io* w, int revents);
  // True while the socket is read and messages decoded.
  bool reading() const { return state_ == State::open && input_ == Input::reading; }
  // Arms the read and write watchers as the state and the transport's last
  // want_read / want_write say. The only place that starts or stops them
  // (but close(), which stops both for good).
  void watch();
  void on_readable();
  // Reads what the transport has into the scratch buffer and consumes it;
  // returns the last step's result.
  IoResult read_some();
  // The peer's end of stream (read_some saw `closed`).
  void on_end_of_stream();
  // One step of the transport's handshake; ok once established.
  IoResult drive_handshake();
  // Writes queued output until the transport takes no more; ok when all is
  // written, want_write / want_read when the rest waits, error (closed).
  IoResult write_out();
  // Backpressure released (output below out_low, not held): decodes the
  // held input and reads again.
  void resume_if_drained();
  // Decodes `in` and dispatches messages until done, closed or paused;
  // returns how many bytes of `in` were not consumed (held back).
  size_t consume(proto::Bytes in);
  // Announces the whole single-frame messages at the front of `in` (at
  // most opt_.lookahead) to Handler::prefetch; returns how many, at least 1.
  size_t look_ahead(proto::Bytes in);
  void resume_input();
  void queued();
  // Limited connections: tells the loop how much the buffers hold now, and
  // whether part of a request is waiting for the rest (see set_partial).
  void account();
  void track_partial();

  Loop& loop_;
  UniqueFd fd_;
  std::unique_ptr<Transport> t_;
  Handler* handler_;
  ConnectionOptions opt_;
  ev_io rw_{};
  ev_io ww_{};
  proto::Decoder dec_;
  std::vector<uint8_t> out_;
  size_t out_off_ = 0;
  std::vector<uint8_t> in_;  // input held back by backpressure
  size_t in_off_ = 0;
  CloseReason reason_ = CloseReason::local;
  State state_ = State::open;
  Input input_ = Input::reading;
  // What the transport's last read and write (or handshake step) waits
  // for: want_read, want_write, or ok when nothing. Drives watch().
  IoResult read_io_ = IoResult::ok;
  IoResult write_io_ = IoResult::ok;
  // A fact, not a state: the handshake completed once (established() stays
  // true after a close that came later).
  bool established_ = true;
  // Loop bookkeeping.
  bool in_flush_list_ = false;
  bool in_close_list_ = false;
  // Limits bookkeeping (limited connections only).
  size_t limited_pos_ = SIZE_MAX;  // index in the loop's list; SIZE_MAX: not in it
  size_t counted_ = 0;             // heap bytes the loop counts for this one
  bool in_partial_ = false;
  int64_t partial_since_ = 0;
  Connection* partial_prev_ = nullptr;
  Connection* partial_next_ = nullptr;
};

}  // namespace dc::ev
