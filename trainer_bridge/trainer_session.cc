// Trainer-session state machine of the worker (PROTOCOL.md, "Worker state machine").
#include "trainer_bridge/trainer_session.h"

#include <limits>
#include <random>

#include <spdlog/spdlog.h>

namespace longtail::bridge {
namespace {

constexpr size_t kMaxSessions = 4096;
constexpr int kMaxMessagesPerPoll = 1024;

std::chrono::milliseconds to_ms(double s) { return std::chrono::milliseconds(static_cast<int64_t>(s * 1000)); }

uint64_t random_u64() {
  std::random_device rd;
  std::mt19937_64 g((uint64_t{rd()} << 32) ^ rd());
  return g();
}

std::string random_instance() {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(random_u64()));
  return buf;
}

// The req of a decoded request, so that an ERROR can name it.
std::optional<uint64_t> req_of(const Message& m) {
  std::optional<uint64_t> req;
  std::visit([&](const auto& v) {
    if constexpr (requires { v.req; }) req = v.req;
  }, m);
  return req;
}

// Credits add up but never wrap: a grant that would pass INT64_MAX leaves INT64_MAX.
int64_t add_credits(int64_t have, int64_t grant) {
  return grant > std::numeric_limits<int64_t>::max() - have ? std::numeric_limits<int64_t>::max() : have + grant;
}

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

RouterOptions router_options(const TrainerSessionOptions& o) {
  RouterOptions r;
  r.endpoint = o.endpoint;
  r.max_message_bytes = o.max_message_bytes;
  r.curve = o.curve;
  return r;
}

}  // namespace

TrainerSession::TrainerSession(TrainerSessionOptions opts, RequestHandler* handler)
    : opts_(std::move(opts)), handler_(handler), socket_(router_options(opts_)), outbox_(opts_.max_outbox_batches),
      instance_(random_instance()) {
  if (!opts_.journal_dir.empty()) {
    journal_ = std::make_unique<Journal>(opts_.journal_dir, opts_.journal_fsync);
    for (auto& [seq, frames] : journal_->take_recovered()) {
      outbox_.add(seq, std::make_shared<const Frames>(std::move(frames)), /*earlier_run=*/true);
      ++stats_.batches_recovered;
    }
    next_seq_ = journal_->next_seq();
    run_ = journal_->run();
  } else {
    run_ = 1 + random_u64() % ((uint64_t{1} << 24) - 1);
  }
  spdlog::info("bridge: worker '{}' listening on {} (instance {}, run {}, {} un-acked batches to re-send)", opts_.worker_id,
               socket_.last_endpoint(), instance_, run_, outbox_.size());
}

TrainerSession::~TrainerSession() = default;

bool TrainerSession::wants_batches() const {
  return !outbox_.full() && credits_ > static_cast<int64_t>(outbox_.unsent());
}

bool TrainerSession::trainer_connected() const {
  return active_peer_ && Clock::now() - last_heard_ < to_ms(opts_.peer_timeout_s);
}

uint64_t TrainerSession::publish(Batch batch) {
  if (outbox_.full())
    spdlog::warn("bridge: publishing past the outbox capacity ({} batches)", outbox_.capacity());
  const uint64_t seq = journal_ ? journal_->allocate_seq() : next_seq_;
  next_seq_ = seq + 1;
  batch.seq = seq;
  batch.worker_id = opts_.worker_id;
  batch.created_ns = now_ns();
  auto frames = std::make_shared<const Frames>(encode(batch));
  if (journal_) journal_->write(seq, *frames);
  outbox_.add(seq, std::move(frames));
  ++stats_.batches_published;
  pump();
  return seq;
}

void TrainerSession::reply(const std::string& peer, const Message& m) {
  auto frames = std::make_shared<const Frames>(encode(m));
  const auto r = socket_.send(peer, frames);
  if (r != SendResult::kOk)
    spdlog::warn("bridge: could not deliver {} to trainer {} ({})", type_name(message_type(m)), peer,
                 r == SendResult::kNoPeer ? "gone" : "queue full");
  if (active_peer_ && peer == *active_peer_) last_sent_ = Clock::now();
}

void TrainerSession::reply_error(const std::string& peer, const std::string& code, const std::string& message,
                            std::optional<uint64_t> req, const std::string& request_type) {
  ++stats_.errors_sent;
  spdlog::warn("bridge: ERROR {} to trainer: {}{}", code, message, req ? " (req " + std::to_string(*req) + ")" : "");
  reply(peer, Error{code, message, req, request_type, {}, {}});
}

void TrainerSession::reply_error(const std::string& peer, const ProtocolError& e) {
  ++stats_.errors_sent;
  spdlog::warn("bridge: ERROR {} to trainer: {}{}", e.code, e.what(), e.req ? " (req " + std::to_string(*e.req) + ")" : "");
  reply(peer, Error{e.code, e.what(), e.req, e.request_type, e.limit, e.retryable});
}

int TrainerSession::poll(std::chrono::milliseconds timeout) {
  if (active_peer_) {
    const auto hb = to_ms(opts_.heartbeat_interval_s);
    const auto until_hb = std::chrono::duration_cast<std::chrono::milliseconds>(last_sent_ + hb - Clock::now());
    timeout = std::max(std::chrono::milliseconds(0), std::min(timeout, until_hb));
  }
  int handled = 0;
  if (socket_.wait_readable(timeout)) {
    while (handled < kMaxMessagesPerPoll) {
      auto in = socket_.try_recv();
      if (!in) break;
      ++handled;
      handle(std::move(*in));
    }
  }
  pump();
  heartbeat();
  return handled;
}

void TrainerSession::handle(Incoming&& in) {
  ++stats_.messages_received;
  const std::string& peer = in.peer;
  if (active_peer_ && peer == *active_peer_) {
    last_heard_ = Clock::now();
    if (stale_logged_) spdlog::info("bridge: trainer {} is back", peer);
    stale_logged_ = false;
  }
  if (in.too_large) {
    std::optional<uint64_t> req;
    std::string type;
    if (!in.frames.parts.empty()) {
      try {
        Frames head;
        head.parts.push_back(in.frames.parts[0]);
        const Message m = decode(head, Direction::kToWorker);
        type = type_name(message_type(m));
        std::visit([&](const auto& v) {
          if constexpr (requires { v.req; }) req = v.req;
        }, m);
      } catch (const ProtocolError& e) {  // frames are missing, but req and type were read
        req = e.req;
        type = e.request_type;
      }
    }
    reply_error(peer, errc::kTooLarge,
                "message of " + std::to_string(in.bytes) + " bytes exceeds the limit of " +
                    std::to_string(opts_.max_message_bytes) + " bytes (max_message_bytes)",
                req, type);
    return;
  }
  Message m;
  try {
    m = decode(in.frames, Direction::kToWorker);
  } catch (const ProtocolError& e) {
    reply_error(peer, e);
    return;
  }
  const MessageType t = message_type(m);
  const std::optional<uint64_t> req = req_of(m);
  if (has_session(peer) && in.connection >= 0 && active_connection_ >= 0 && in.connection != active_connection_) {
    // Another connection took the session's routing id over (ROUTER_HANDOVER): the worker can no
    // longer tell the session's trainer from it, so the session ends, loudly rather than silently
    // serving whoever holds the id now; batches are kept for the next HELLO.
    spdlog::warn("bridge: a second connection uses the routing id of trainer '{}'; its session ends", active_client_id_);
    drop_active_session();
    reply_error(peer, errc::kRoutingIdInUse,
                std::string(type_name(t)) + " refused: routing id '" + peer +
                    "' was in use by another connection, whose session has ended; every connection needs its own "
                    "routing id (say HELLO to start a session on this one)",
                req, type_name(t));
    return;
  }
  if (t == MessageType::kHello) {
    active_connection_ = in.connection;
    on_hello(peer, std::get<Hello>(m));
    return;
  }
  if (!has_session(peer)) {
    if (displaced_.erase(peer)) {
      reply_error(peer, errc::kSessionTaken,
                  std::string(type_name(t)) + " refused: another trainer ('" + active_client_id_ +
                      "') said HELLO and holds the session now; this peer's session ended (say HELLO to take it back)",
                  req, type_name(t));
      return;
    }
    reply_error(peer, errc::kNoSession, std::string(type_name(t)) + " without a session: send HELLO first", req, type_name(t));
    return;
  }
  switch (t) {
    case MessageType::kCredit:
      credits_ = add_credits(credits_, std::get<Credit>(m).batches);
      pump();
      return;
    case MessageType::kAck: on_ack(std::get<Ack>(m)); return;
    case MessageType::kHeartbeat: return;
    default: break;
  }
  if (!handler_) {
    reply_error(peer, errc::kUnknownType, std::string(type_name(t)) + " is not served by this endpoint (stream only)", req, type_name(t));
    return;
  }
  try {
    handler_->on_request(peer, std::move(m));
  } catch (const ProtocolError& e) {
    reply_error(peer, e);
  } catch (const std::exception& e) {
    reply_error(peer, errc::kInternal, std::string(type_name(t)) + " failed: " + e.what(), req, type_name(t));
  }
}

void TrainerSession::on_hello(const std::string& peer, const Hello& h) {
  if (active_peer_ && *active_peer_ != peer) {
    spdlog::warn("bridge: trainer '{}' takes the session from '{}'", h.client_id, active_client_id_);
    if (displaced_.insert(*active_peer_).second) displaced_order_.push_back(*active_peer_);
    if (displaced_order_.size() > kMaxSessions) {
      displaced_.erase(displaced_order_.front());
      displaced_order_.pop_front();
    }
  }
  displaced_.erase(peer);
  active_peer_ = peer;
  active_client_id_ = h.client_id;
  last_heard_ = Clock::now();
  stale_logged_ = false;
  credits_ = h.credits;
  outbox_.requeue_all();
  ++stats_.sessions;
  Welcome w = handler_ ? handler_->describe() : Welcome{};
  w.version = h.version;  // the version the trainer asked for (decode checked that it is served)
  w.worker_id = opts_.worker_id;
  w.instance = instance_;
  w.run = run_;
  w.max_message_bytes = opts_.max_message_bytes;
  w.unacked = outbox_.size();
  w.next_seq = next_seq_;
  w.limits.max_outbox_batches = opts_.max_outbox_batches;
  w.limits.heartbeat_interval_s = opts_.heartbeat_interval_s;
  w.limits.peer_timeout_s = opts_.peer_timeout_s;
  w.limits.ack_timeout_s = opts_.ack_timeout_s;
  spdlog::info("bridge: trainer session from '{}' ({} credits, {} un-acked batches to send)", h.client_id, h.credits,
               outbox_.size());
  reply(peer, w);
  pump();
}

void TrainerSession::on_ack(const Ack& a) {
  const auto removed = outbox_.ack(a.seqs);
  stats_.batches_acked += removed.size();
  if (journal_)
    for (uint64_t s : removed) journal_->remove(s);
  pump();
}

void TrainerSession::pump() {
  if (!active_peer_) return;
  const auto now = Clock::now();
  if (now - last_heard_ >= to_ms(opts_.peer_timeout_s)) {
    if (!stale_logged_) spdlog::warn("bridge: trainer {} silent for {} s; holding batches until it speaks", *active_peer_, opts_.peer_timeout_s);
    stale_logged_ = true;
    return;
  }
  const auto ack_timeout = to_ms(opts_.ack_timeout_s);
  while (credits_ > 0) {
    const Outbox::Entry* e = outbox_.next_to_send(now, ack_timeout);
    if (!e) break;
    const auto r = socket_.send(*active_peer_, e->frames);
    if (r == SendResult::kNoPeer) {
      spdlog::warn("bridge: trainer {} disconnected; {} un-acked batches wait for the next HELLO", *active_peer_, outbox_.size());
      drop_active_session();
      return;
    }
    if (r == SendResult::kWouldBlock) return;
    if (e->sends > 0) ++stats_.batches_resent;
    ++stats_.batches_sent;
    stats_.bytes_sent += e->bytes;
    --credits_;
    last_sent_ = now;
    outbox_.mark_sent(e->seq, now);
  }
}

void TrainerSession::heartbeat() {
  if (!active_peer_) return;
  const auto now = Clock::now();
  if (now - last_sent_ < to_ms(opts_.heartbeat_interval_s)) return;
  last_sent_ = now;
  static const auto hb = std::make_shared<const Frames>(encode(Heartbeat{}));
  if (socket_.send(*active_peer_, hb) == SendResult::kNoPeer) {
    spdlog::warn("bridge: trainer {} disconnected", *active_peer_);
    drop_active_session();
  }
}

// The trainer's connection is gone (its pipe closed). Batches in flight to it may be lost, so the
// session ends: its next message gets NO_SESSION and the HELLO that follows re-sends everything.
void TrainerSession::drop_active_session() {
  active_peer_.reset();
  credits_ = 0;
}

TrainerSessionStats TrainerSession::stats() const {
  TrainerSessionStats s = stats_;
  s.credits = credits_;
  s.outbox_batches = outbox_.size();
  s.outbox_unsent = outbox_.unsent();
  s.outbox_bytes = outbox_.bytes();
  s.trainer_connected = trainer_connected();
  s.next_seq = next_seq_;
  return s;
}

}  // namespace longtail::bridge
