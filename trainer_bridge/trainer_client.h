// A minimal trainer-side client in C++ (DEALER): HELLO, typed send, decoded receive. The Python
// package (trainer_bridge/python) is the client trainers use; this one serves the C++ tests, the
// benchmarks and tools that want to consume a stream without Python.
#pragma once

#include <chrono>
#include <deque>
#include <memory>
#include <optional>
#include <string>

#include "trainer_bridge/protocol.h"
#include "trainer_bridge/transport.h"

namespace longtail::bridge {

class TrainerClient {
 public:
  TrainerClient(const std::string& endpoint, std::string client_id, const CurveClientOptions& curve = {});
  // Sends HELLO and waits for the worker's HELLO; messages that arrive first are kept for recv().
  // Throws std::runtime_error on timeout or an ERROR reply.
  Welcome hello(int64_t credits, std::chrono::milliseconds timeout = std::chrono::seconds(10));
  void send(const Message& m);
  // The next message (decoded as worker -> trainer), or nothing within timeout. Throws
  // ProtocolError when the worker sent something undecodable.
  std::optional<Message> recv(std::chrono::milliseconds timeout);
  // Receives until a message of type t arrives (others are kept for recv()); nothing on timeout.
  std::optional<Message> wait_for(MessageType t, std::chrono::milliseconds timeout);
  const std::string& client_id() const { return client_id_; }

 private:
  std::string client_id_;
  std::unique_ptr<DealerSocket> socket_;
  std::deque<Message> pending_;
};

}  // namespace longtail::bridge
