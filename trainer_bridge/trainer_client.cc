// Minimal C++ trainer client; see trainer_client.h.
#include "trainer_bridge/trainer_client.h"

#include <stdexcept>

namespace longtail::bridge {

TrainerClient::TrainerClient(const std::string& endpoint, std::string client_id, const CurveClientOptions& curve)
    : client_id_(std::move(client_id)), socket_(std::make_unique<DealerSocket>(endpoint, client_id_, curve)) {}

void TrainerClient::send(const Message& m) { socket_->send(encode(m)); }

std::optional<Message> TrainerClient::recv(std::chrono::milliseconds timeout) {
  if (!pending_.empty()) {
    Message m = std::move(pending_.front());
    pending_.pop_front();
    return m;
  }
  return socket_->recv_message(timeout, Direction::kToTrainer);
}

std::optional<Message> TrainerClient::wait_for(MessageType t, std::chrono::milliseconds timeout) {
  for (auto it = pending_.begin(); it != pending_.end(); ++it) {
    if (message_type(*it) == t) {
      Message m = std::move(*it);
      pending_.erase(it);
      return m;
    }
  }
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return std::nullopt;
    auto m = socket_->recv_message(left, Direction::kToTrainer);
    if (!m) return std::nullopt;
    if (message_type(*m) == t) return m;
    pending_.push_back(std::move(*m));
  }
}

Welcome TrainerClient::hello(int64_t credits, std::chrono::milliseconds timeout) {
  send(Hello{kProtocolVersion, client_id_, credits});
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) throw std::runtime_error("no HELLO reply from the worker within the timeout");
    auto received = socket_->recv_message(left, Direction::kToTrainer);
    if (!received) continue;
    Message m = std::move(*received);
    if (auto* w = std::get_if<Welcome>(&m)) return *w;
    if (auto* e = std::get_if<Error>(&m); e && e->request_type == "HELLO")
      throw std::runtime_error("HELLO refused: " + e->code + ": " + e->message);
    pending_.push_back(std::move(m));
  }
}

}  // namespace longtail::bridge
