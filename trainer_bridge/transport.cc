// ZeroMQ ROUTER/DEALER plumbing; see transport.h.
#include "trainer_bridge/transport.h"

#include <array>
#include <fstream>
#include <set>
#include <sstream>
#include <stdexcept>

#include <spdlog/spdlog.h>
#include <zmq.hpp>

#include "trainer_bridge/zap_handler.h"

namespace longtail::bridge {
namespace {

bool valid_z85_key(const std::string& k) {
  if (k.size() != 40) return false;
  std::array<uint8_t, 32> raw{};
  return zmq_z85_decode(raw.data(), k.c_str()) != nullptr;
}

// Frames stay owned by the outbox's shared_ptr until ZeroMQ has sent them: no copy per send.
void release_frames(void*, void* hint) { delete static_cast<std::shared_ptr<const Frames>*>(hint); }

}  // namespace

std::string read_key_file(const std::filesystem::path& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot read CURVE key file " + path.string());
  std::string key;
  in >> key;
  if (!valid_z85_key(key)) throw std::runtime_error("CURVE key file " + path.string() + " does not hold a 40-character Z85 key");
  return key;
}

std::vector<std::string> read_allow_list(const std::filesystem::path& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot read CURVE allow-list " + path.string());
  std::vector<std::string> keys;
  std::string line;
  int lineno = 0;
  while (std::getline(in, line)) {
    ++lineno;
    // Z85 keys may contain '#', so only a line that starts with '#' is a comment; anything after
    // the key on its line is ignored.
    std::istringstream ss(line);
    std::string key;
    if (!(ss >> key) || key[0] == '#') continue;
    if (!valid_z85_key(key))
      throw std::runtime_error("CURVE allow-list " + path.string() + " line " + std::to_string(lineno) + ": not a Z85 public key");
    keys.push_back(key);
  }
  return keys;
}

KeyPair generate_curve_keypair() {
  std::array<char, 41> pub{}, sec{};
  if (zmq_curve_keypair(pub.data(), sec.data()) != 0)
    throw std::runtime_error("zmq_curve_keypair failed (libzmq built without CURVE?)");
  return {pub.data(), sec.data()};
}

struct RouterSocket::Impl {
  zmq::context_t ctx{1};
  std::unique_ptr<ZapHandler> zap;
  zmq::socket_t sock;
  size_t max_bytes = 0;
};

RouterSocket::RouterSocket(const RouterOptions& o) : impl_(std::make_unique<Impl>()) {
  auto& s = impl_->sock;
  impl_->max_bytes = o.max_message_bytes;
  if (o.curve.enabled) {
    if (!zmq_has("curve")) throw std::runtime_error("CURVE requested but libzmq has no CURVE support");
    if (!valid_z85_key(o.curve.public_key) || !valid_z85_key(o.curve.secret_key))
      throw std::runtime_error("CURVE server key pair is not two 40-character Z85 keys");
    impl_->zap = std::make_unique<ZapHandler>(&impl_->ctx, std::set<std::string>(o.curve.allowed_clients.begin(), o.curve.allowed_clients.end()));
  }
  s = zmq::socket_t(impl_->ctx, zmq::socket_type::router);
  s.set(zmq::sockopt::router_mandatory, 1);
  // A second connection with a routing id in use takes it over and is answered, instead of being
  // ignored in silence (PROTOCOL.md, "Routing ids").
  s.set(zmq::sockopt::router_handover, 1);
  s.set(zmq::sockopt::linger, 0);
  s.set(zmq::sockopt::sndhwm, o.send_hwm);
  s.set(zmq::sockopt::rcvhwm, o.recv_hwm);
  // A hard cap well above the protocol limit: messages between the two get a TOO_LARGE error reply;
  // beyond it ZeroMQ drops the connection before buffering absurd amounts of memory.
  const uint64_t hard = std::max<uint64_t>(o.max_message_bytes * 4, 1u << 20);
  s.set(zmq::sockopt::maxmsgsize, static_cast<int64_t>(hard));
  if (o.curve.enabled) {
    s.set(zmq::sockopt::curve_server, 1);
    s.set(zmq::sockopt::curve_secretkey, o.curve.secret_key);
    s.set(zmq::sockopt::zap_domain, "longtail");
  }
  try {
    s.bind(o.endpoint);
  } catch (const zmq::error_t& e) {
    throw std::runtime_error("cannot bind " + o.endpoint + ": " + e.what());
  }
}

RouterSocket::~RouterSocket() {
  impl_->sock.close();
  impl_->zap.reset();
}

bool RouterSocket::wait_readable(std::chrono::milliseconds timeout) {
  zmq::pollitem_t item{impl_->sock.handle(), 0, ZMQ_POLLIN, 0};
  try {
    return zmq::poll(&item, 1, timeout) > 0;
  } catch (const zmq::error_t& e) {
    if (e.num() == EINTR) return false;  // a signal: let the caller look at its flags
    throw;
  }
}

std::optional<Incoming> RouterSocket::try_recv() {
  auto& s = impl_->sock;
  zmq::message_t id;
  if (!s.recv(id, zmq::recv_flags::dontwait)) return std::nullopt;
  Incoming in;
  in.peer = id.to_string();
  bool more = id.more();
  while (more) {
    zmq::message_t part;
    (void)s.recv(part, zmq::recv_flags::none);  // the rest of a multipart message is already here
    // The ROUTER's own identity frame carries no connection; the trainer's frames do (-1 if not).
    if (in.connection < 0) in.connection = zmq_msg_get(part.handle(), ZMQ_SRCFD);
    in.bytes += part.size();
    const bool keep = !in.too_large && in.bytes <= impl_->max_bytes;
    if (!keep) {
      if (!in.too_large) {
        in.too_large = true;
        // Keep only a small header so the error reply can name the request.
        if (!in.frames.parts.empty() && in.frames.parts[0].size() > 65536) in.frames.parts.resize(0);
        if (in.frames.parts.size() > 1) in.frames.parts.resize(1);
      }
    } else {
      in.frames.parts.emplace_back(static_cast<const uint8_t*>(part.data()),
                                   static_cast<const uint8_t*>(part.data()) + part.size());
    }
    more = part.more();
  }
  return in;
}

SendResult RouterSocket::send(const std::string& peer, std::shared_ptr<const Frames> frames) {
  auto& s = impl_->sock;
  try {
    if (!s.send(zmq::buffer(peer), zmq::send_flags::sndmore | zmq::send_flags::dontwait)) return SendResult::kWouldBlock;
  } catch (const zmq::error_t& e) {
    if (e.num() == EHOSTUNREACH) return SendResult::kNoPeer;
    throw;
  }
  const size_t n = frames->parts.size();
  for (size_t i = 0; i < n; ++i) {
    const Bytes& part = frames->parts[i];
    auto* hint = new std::shared_ptr<const Frames>(frames);
    zmq::message_t msg(const_cast<uint8_t*>(part.data()), part.size(), release_frames, hint);
    // Later parts of a multipart message cannot block once the first part was accepted.
    (void)s.send(msg, i + 1 < n ? zmq::send_flags::sndmore : zmq::send_flags::none);
  }
  return SendResult::kOk;
}

std::string RouterSocket::last_endpoint() const { return impl_->sock.get(zmq::sockopt::last_endpoint); }

struct DealerSocket::Impl {
  zmq::context_t ctx{1};
  zmq::socket_t sock;
};

DealerSocket::DealerSocket(const std::string& endpoint, const std::string& identity, const CurveClientOptions& curve)
    : impl_(std::make_unique<Impl>()) {
  auto& s = impl_->sock;
  s = zmq::socket_t(impl_->ctx, zmq::socket_type::dealer);
  s.set(zmq::sockopt::linger, 0);
  s.set(zmq::sockopt::routing_id, identity);
  s.set(zmq::sockopt::rcvhwm, 0);
  if (curve.enabled) {
    s.set(zmq::sockopt::curve_serverkey, curve.server_public_key);
    s.set(zmq::sockopt::curve_publickey, curve.public_key);
    s.set(zmq::sockopt::curve_secretkey, curve.secret_key);
  }
  s.connect(endpoint);
}

DealerSocket::~DealerSocket() = default;

void DealerSocket::send(const Frames& frames) {
  const size_t n = frames.parts.size();
  for (size_t i = 0; i < n; ++i)
    (void)impl_->sock.send(zmq::buffer(frames.parts[i]), i + 1 < n ? zmq::send_flags::sndmore : zmq::send_flags::none);
}

std::optional<Frames> DealerSocket::recv(std::chrono::milliseconds timeout) {
  zmq::pollitem_t item{impl_->sock.handle(), 0, ZMQ_POLLIN, 0};
  if (zmq::poll(&item, 1, timeout) == 0) return std::nullopt;
  Frames f;
  zmq::message_t part;
  do {
    (void)impl_->sock.recv(part, zmq::recv_flags::none);
    f.parts.emplace_back(static_cast<const uint8_t*>(part.data()), static_cast<const uint8_t*>(part.data()) + part.size());
  } while (part.more());
  return f;
}

std::optional<Message> DealerSocket::recv_message(std::chrono::milliseconds timeout, Direction dir) {
  zmq::pollitem_t item{impl_->sock.handle(), 0, ZMQ_POLLIN, 0};
  if (zmq::poll(&item, 1, timeout) == 0) return std::nullopt;
  std::vector<zmq::message_t> parts;
  do {
    parts.emplace_back();
    (void)impl_->sock.recv(parts.back(), zmq::recv_flags::none);
  } while (parts.back().more());
  std::vector<FrameView> views;
  views.reserve(parts.size());
  for (const auto& p : parts) views.emplace_back(static_cast<const uint8_t*>(p.data()), p.size());
  return decode(views, dir);
}

}  // namespace longtail::bridge
