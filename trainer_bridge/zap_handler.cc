// ZAP handler thread for CURVE allow-lists; see zap_handler.h.
#include "trainer_bridge/zap_handler.h"

#include <array>
#include <vector>

#include <spdlog/spdlog.h>
#include <zmq.hpp>

namespace longtail::bridge {

ZapHandler::ZapHandler(void* ctx, std::set<std::string> allowed) : allowed_(std::move(allowed)) {
  auto* sock = new zmq::socket_t(*static_cast<zmq::context_t*>(ctx), zmq::socket_type::rep);
  sock->set(zmq::sockopt::linger, 0);
  sock->bind("inproc://zeromq.zap.01");
  socket_ = sock;
  thread_ = std::thread([this] { run(socket_); });
}

ZapHandler::~ZapHandler() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
  delete static_cast<zmq::socket_t*>(socket_);
}

void ZapHandler::run(void* s) {
  auto& sock = *static_cast<zmq::socket_t*>(s);
  while (!stop_) {
    zmq::pollitem_t item{sock.handle(), 0, ZMQ_POLLIN, 0};
    try {
      if (zmq::poll(&item, 1, std::chrono::milliseconds(100)) == 0) continue;
      std::vector<zmq::message_t> req;
      do {
        req.emplace_back();
        if (!sock.recv(req.back(), zmq::recv_flags::none)) break;
      } while (req.back().more());
      // version, request id, domain, address, identity, mechanism, credentials...
      std::string status = "400", text = "malformed ZAP request", user;
      std::string address = req.size() > 3 ? req[3].to_string() : "?";
      if (req.size() >= 6 && req[0].to_string() == "1.0") {
        const std::string mechanism = req[5].to_string();
        if (mechanism == "CURVE" && req.size() >= 7 && req[6].size() == 32) {
          std::array<char, 41> z85{};
          zmq_z85_encode(z85.data(), static_cast<const uint8_t*>(req[6].data()), 32);
          const std::string key(z85.data());
          if (allowed_.count(key)) {
            status = "200";
            text = "OK";
            user = key;
          } else {
            text = "client key not on the allow-list";
            ++refused_;
            spdlog::warn("CURVE: refused trainer at {} with unknown public key {}", address, key);
          }
        } else {
          text = "mechanism " + mechanism + " not allowed";
          ++refused_;
          spdlog::warn("CURVE: refused connection from {} using mechanism {}", address, mechanism);
        }
      }
      const std::string version = "1.0";
      const std::string request_id = req.size() > 1 ? req[1].to_string() : "";
      sock.send(zmq::buffer(version), zmq::send_flags::sndmore);
      sock.send(zmq::buffer(request_id), zmq::send_flags::sndmore);
      sock.send(zmq::buffer(status), zmq::send_flags::sndmore);
      sock.send(zmq::buffer(text), zmq::send_flags::sndmore);
      sock.send(zmq::buffer(user), zmq::send_flags::sndmore);
      sock.send(zmq::message_t(), zmq::send_flags::none);
    } catch (const zmq::error_t& e) {
      if (e.num() == ETERM) return;
      if (e.num() != EINTR) spdlog::error("ZAP handler: {}", e.what());
    }
  }
}

}  // namespace longtail::bridge
