// The worker's ZeroMQ ROUTER socket (it binds; trainers connect DEALERs): ROUTER_MANDATORY so a
// send to a trainer that has gone away fails instead of vanishing, zero-copy sends of frames the
// outbox keeps for re-sending, a per-message size limit checked before anything is decoded, and
// optional CURVE encryption with a ZAP allow-list of trainer keys. Also the trainer-side DEALER used
// by the C++ client. ZeroMQ types stay inside transport.cc.
#pragma once

#include <chrono>
#include <cstddef>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "trainer_bridge/codec.h"

namespace longtail::bridge {

struct CurveServerOptions {
  bool enabled = false;
  std::string public_key;                 // Z85, 40 characters
  std::string secret_key;                 // Z85
  std::vector<std::string> allowed_clients;  // Z85 public keys of trainers allowed to connect
};

struct CurveClientOptions {
  bool enabled = false;
  std::string server_public_key, public_key, secret_key;  // Z85
};

// Reads a Z85 key (first 40 non-space characters) from a file; throws naming the file.
std::string read_key_file(const std::filesystem::path& path);
// Reads an allow-list: one Z85 public key per line (the first word; the rest of the line is free
// text); blank lines and lines starting with '#' are ignored.
std::vector<std::string> read_allow_list(const std::filesystem::path& path);
struct KeyPair {
  std::string public_key, secret_key;
};
KeyPair generate_curve_keypair();

struct RouterOptions {
  std::string endpoint;
  size_t max_message_bytes = 64u << 20;
  int send_hwm = 1000;
  int recv_hwm = 1000;
  CurveServerOptions curve;
};

struct Incoming {
  std::string peer;       // ROUTER identity of the trainer
  Frames frames;          // without the identity frame; only the header when too_large
  size_t bytes = 0;       // total size of the message as received
  bool too_large = false;
  // The connection it came in on (its file descriptor, ZMQ_SRCFD; -1 where there is none, e.g.
  // inproc): two connections with one routing id differ here.
  int connection = -1;
};

enum class SendResult { kOk, kNoPeer, kWouldBlock };

class RouterSocket {
 public:
  explicit RouterSocket(const RouterOptions& opts);  // binds; throws std::runtime_error naming the endpoint
  ~RouterSocket();
  RouterSocket(const RouterSocket&) = delete;
  RouterSocket& operator=(const RouterSocket&) = delete;

  // Waits up to timeout for an incoming message; true when one can be received.
  bool wait_readable(std::chrono::milliseconds timeout);
  std::optional<Incoming> try_recv();
  SendResult send(const std::string& peer, std::shared_ptr<const Frames> frames);
  std::string last_endpoint() const;  // the bound address (resolves tcp port 0)

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

class DealerSocket {
 public:
  DealerSocket(const std::string& endpoint, const std::string& identity, const CurveClientOptions& curve = {});
  ~DealerSocket();
  DealerSocket(const DealerSocket&) = delete;
  DealerSocket& operator=(const DealerSocket&) = delete;
  void send(const Frames& frames);
  // Receives one message (all frames) or nothing within timeout.
  std::optional<Frames> recv(std::chrono::milliseconds timeout);
  // Receives and decodes one message straight from ZeroMQ's buffers (no intermediate copy).
  // Throws ProtocolError when it does not decode.
  std::optional<Message> recv_message(std::chrono::milliseconds timeout, Direction dir);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace longtail::bridge
