// The scripted cache peer: see fake_peer.h.
#include "fake_peer.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <vector>

#include "addr.h"
#include "proto.h"

namespace dc::test {

namespace {

struct PeerConn {
  UniqueFd fd;
  proto::Decoder dec;
  int answered = 0;
};

// Writes all of `b` (the peer's sockets are blocking for writes via poll).
bool write_all(int fd, const std::vector<uint8_t>& b) {
  size_t off = 0;
  while (off < b.size()) {
    ssize_t n = ::send(fd, b.data() + off, b.size() - off, MSG_NOSIGNAL);
    if (n < 0 && errno == EAGAIN) {
      pollfd p{fd, POLLOUT, 0};
      ::poll(&p, 1, 1000);
      continue;
    }
    if (n <= 0) return false;
    off += size_t(n);
  }
  return true;
}

}  // namespace

std::string FakePeer::data() {
  std::string d(300, '\0');
  for (size_t i = 0; i < d.size(); ++i) d[i] = char(i % 251);
  return d;
}

FakePeer::FakePeer(const std::string& path, Mode mode) : path_(path), mode_(mode) {
  Address a;
  std::string err;
  if (!parse_address("UNIX:" + path, a, err) || !(listen_fd_ = listen_on(a, {}, err))) {
    std::fprintf(stderr, "FakePeer: %s\n", err.c_str());
    std::abort();
  }
  int p[2];
  if (::pipe2(p, O_CLOEXEC | O_NONBLOCK) != 0) std::abort();
  stop_r_.reset(p[0]);
  stop_w_.reset(p[1]);
  thread_ = std::thread([this] { loop(); });
}

FakePeer::~FakePeer() {
  char c = 1;
  (void)!::write(stop_w_.get(), &c, 1);
  thread_.join();
  ::unlink(path_.c_str());
}

void FakePeer::loop() {
  std::vector<std::unique_ptr<PeerConn>> conns;
  for (;;) {
    std::vector<pollfd> pfds;
    pfds.push_back({stop_r_.get(), POLLIN, 0});
    pfds.push_back({listen_fd_.get(), POLLIN, 0});
    for (auto& c : conns) pfds.push_back({c->fd.get(), POLLIN, 0});
    if (::poll(pfds.data(), pfds.size(), -1) < 0) {
      if (errno == EINTR) continue;
      std::abort();
    }
    if (pfds[0].revents) return;
    if (pfds[1].revents & POLLIN) {
      int fd = ::accept4(listen_fd_.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
      if (fd >= 0) {
        auto c = std::make_unique<PeerConn>();
        c->fd.reset(fd);
        conns.push_back(std::move(c));
        accepts_.fetch_add(1);
      }
    }
    std::vector<PeerConn*> dead;
    for (size_t i = 2; i < pfds.size(); ++i) {
      if (!pfds[i].revents) continue;
      PeerConn* c = conns[i - 2].get();
      uint8_t buf[65536];
      ssize_t n = ::recv(c->fd.get(), buf, sizeof buf, 0);
      if (n < 0 && errno == EAGAIN) continue;
      if (n <= 0) {
        dead.push_back(c);
        continue;
      }
      proto::Bytes in(buf, size_t(n));
      bool close_it = false;
      while (!in.empty() && !close_it) {
        proto::Message m;
        proto::DecodeResult r = c->dec.decode(in, m);
        in = in.subspan(r.consumed);
        if (r.status == proto::DecodeStatus::corrupt) {
          close_it = true;
          break;
        }
        if (r.status == proto::DecodeStatus::need_more) break;
        requests_.fetch_add(1);
        Mode mode = mode_.load();
        if (mode == Mode::silent) continue;
        std::vector<uint8_t> out;
        if (mode == Mode::slow || mode == Mode::slow_disconnected)
          ::usleep(useconds_t(delay_ms_.load()) * 1000);
        if (mode == Mode::garbage) {
          out.assign(proto::kHeaderSize, 0xff);
        } else if (mode == Mode::disconnected || mode == Mode::slow_disconnected) {
          proto::Message resp;
          resp.is_response = true;
          resp.uid = m.uid;
          resp.op = m.op;
          uint8_t st = uint8_t(proto::Status::disconnected);
          resp.payload = proto::Bytes(&st, 1);
          proto::append(out, resp);
        } else {
          proto::Message resp;
          resp.is_response = true;
          resp.uid = mode == Mode::wrong_uid ? m.uid + 1 : m.uid;
          resp.op = m.op;
          std::string d = data();
          uint8_t ok = 0;
          resp.payload = m.op == proto::Op::get
                             ? proto::Bytes(reinterpret_cast<const uint8_t*>(d.data()), d.size())
                             : proto::Bytes(&ok, 1);
          proto::append(out, resp);
        }
        if (!write_all(c->fd.get(), out)) close_it = true;
        if (++c->answered >= 1 && mode == Mode::close_after_answer) close_it = true;
      }
      if (close_it) dead.push_back(c);
    }
    for (PeerConn* d : dead)
      std::erase_if(conns, [d](const std::unique_ptr<PeerConn>& c) { return c.get() == d; });
  }
}

}  // namespace dc::test
