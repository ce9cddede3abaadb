// ZeroMQ authentication (ZAP, RFC 27) for CURVE: a thread answering inproc://zeromq.zap.01 in the
// worker's context, admitting only trainer public keys on the allow-list. Refusals are logged with
// the peer address and the key, so an operator sees who tried.
#pragma once

#include <atomic>
#include <set>
#include <string>
#include <thread>

namespace longtail::bridge {

class ZapHandler {
 public:
  // ctx is a zmq::context_t* (void* keeps ZeroMQ out of this header). The handler is bound before
  // the constructor returns, so sockets created afterwards are authenticated.
  ZapHandler(void* ctx, std::set<std::string> allowed_z85_keys);
  ~ZapHandler();
  ZapHandler(const ZapHandler&) = delete;
  ZapHandler& operator=(const ZapHandler&) = delete;
  uint64_t refused() const { return refused_.load(); }

 private:
  void run(void* socket);
  std::set<std::string> allowed_;
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> refused_{0};
  void* socket_ = nullptr;
  std::thread thread_;
};

}  // namespace longtail::bridge
