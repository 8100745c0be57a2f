// A scripted cache peer for the client library's failure tests: a UNIX
// socket listener served by its own thread that counts the connections it
// accepts and the requests it reads, and answers them according to a mode
// (answer, stay silent, close after answering, answer with a wrong uid, send
// garbage). It is not a cache: it answers every request the same way, which
// is all the failure paths need; the real dc_server covers the rest.
#pragma once

#include <atomic>
#include <string>
#include <thread>

#include "net.h"

namespace dc::test {

class FakePeer {
 public:
  enum class Mode {
    answer,              // ADD/REMOVE/HAVE: status 0; GET: kData
    silent,              // accept and read, never answer
    close_after_answer,  // answer the first request of a connection, then close it
    wrong_uid,           // answer with another uid
    garbage,             // answer with bytes that are not the protocol
    slow,                // answer as `answer`, each after delay_ms (see set_delay)
    disconnected,        // answer every request with the status DISCONNECTED, at once
    slow_disconnected,   // answer DISCONNECTED, each after delay_ms
  };
  // The GET answer of mode `answer`: 300 bytes, byte i = i % 251.
  static std::string data();

  // Listens on `path` (aborts the test program on failure) and starts serving.
  FakePeer(const std::string& path, Mode mode);
  // Stops the thread and closes every connection.
  ~FakePeer();
  FakePeer(const FakePeer&) = delete;
  FakePeer& operator=(const FakePeer&) = delete;

  std::string address() const { return "UNIX:" + path_; }
  void set_mode(Mode m) { mode_.store(m); }
  // The wait of modes `slow` and `slow_disconnected` before each answer (default 300 ms).
  void set_delay(int ms) { delay_ms_.store(ms); }
  // Connections accepted / requests read so far. A connection or request is
  // counted before it is answered, so after a client's operation returned
  // with an answer its connection and request are already counted.
  int accepts() const { return accepts_.load(); }
  int requests() const { return requests_.load(); }

 private:
  void loop();

  std::string path_;
  UniqueFd listen_fd_;
  UniqueFd stop_r_, stop_w_;
  std::atomic<Mode> mode_;
  std::atomic<int> accepts_{0};
  std::atomic<int> requests_{0};
  std::atomic<int> delay_ms_{300};
  std::thread thread_;
};

}  // namespace dc::test
