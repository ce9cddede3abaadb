// The worker side of a trainer session, independent of any engine: answers HELLO, keeps the credit
// count, sends published batches in sequence order as credit allows, applies ACKs (outbox +
// journal), re-sends un-acked batches to a new session or when an ack is overdue, exchanges
// heartbeats, and turns bad input into ERROR replies. Requests that need an engine (SUBMIT,
// UPDATE_WEIGHTS, REWARDS, STATS, DRAIN, SHUTDOWN) go to a RequestHandler. The worker daemon, the
// trajectory streamer and the benchmarks all deliver batches through this class.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <filesystem>
#include <memory>
#include <optional>
#include <set>
#include <string>

#include "trainer_bridge/codec.h"
#include "trainer_bridge/journal.h"
#include "trainer_bridge/outbox.h"
#include "trainer_bridge/transport.h"

namespace longtail::bridge {

struct TrainerSessionOptions {
  std::string endpoint = "tcp://127.0.0.1:5555";
  std::string worker_id = "worker-0";
  size_t max_message_bytes = 64u << 20;  // larger requests get TOO_LARGE
  size_t max_outbox_batches = 64;        // un-acked batches held; production stops when full
  std::filesystem::path journal_dir;     // empty: un-acked batches are kept in memory only
  bool journal_fsync = false;            // fsync each entry (survives power loss, costs latency)
  double heartbeat_interval_s = 1.0;
  double peer_timeout_s = 10.0;          // trainer silent this long: stop sending until it speaks
  double ack_timeout_s = 60.0;           // re-send a batch un-acked this long (0 = only on HELLO)
  CurveServerOptions curve;
};

class RequestHandler {
 public:
  virtual ~RequestHandler() = default;
  // Fields of the HELLO reply that only the engine knows (model, policy version, weights,
  // capabilities, admission limits).
  virtual Welcome describe() = 0;
  // SUBMIT, UPDATE_WEIGHTS, REWARDS, STATS, DRAIN or SHUTDOWN from a trainer with a session. The
  // handler answers with TrainerSession::reply / reply_error (or throws ProtocolError).
  virtual void on_request(const std::string& peer, Message&& m) = 0;
};

struct TrainerSessionStats {
  // published: produced by this process; recovered: un-acked batches of an earlier run loaded from
  // the journal; resent: sends of a batch sent before (new session, ack timeout) or recovered.
  uint64_t batches_published = 0, batches_recovered = 0, batches_sent = 0, batches_resent = 0, batches_acked = 0;
  uint64_t bytes_sent = 0, messages_received = 0, errors_sent = 0, sessions = 0;
  int64_t credits = 0;
  size_t outbox_batches = 0, outbox_unsent = 0, outbox_bytes = 0;
  bool trainer_connected = false;
  uint64_t next_seq = 0;
};

class TrainerSession {
 public:
  using Clock = std::chrono::steady_clock;
  // Binds the endpoint, opens the journal and queues its recovered entries for sending.
  TrainerSession(TrainerSessionOptions opts, RequestHandler* handler);
  ~TrainerSession();

  // Waits up to timeout for traffic (less when a heartbeat is due), handles every message that
  // arrived, then sends what credit allows. Returns the number of messages handled.
  int poll(std::chrono::milliseconds timeout);

  // Queues a batch for delivery: assigns seq, worker id and created_ns, journals it. Returns seq.
  // Callers check has_room() first; publishing past capacity is allowed but logged.
  uint64_t publish(Batch batch);
  bool has_room() const { return !outbox_.full(); }
  // True when a newly produced batch could be sent right away: room in the outbox and more credit
  // than batches already waiting. The worker steps its engine only then (end-to-end backpressure).
  bool wants_batches() const;
  bool all_acked() const { return outbox_.empty(); }
  bool trainer_connected() const;
  // This process's run number: persisted and incremented in the journal directory at every start
  // (so it never repeats for a journal), random without a journal. Never 0; fits in 24 bits.
  uint64_t run() const { return run_; }

  void reply(const std::string& peer, const Message& m);
  void reply_error(const std::string& peer, const std::string& code, const std::string& message,
                   std::optional<uint64_t> req = {}, const std::string& request_type = {});
  void reply_error(const std::string& peer, const ProtocolError& e);

  TrainerSessionStats stats() const;
  std::string endpoint() const { return socket_.last_endpoint(); }
  const TrainerSessionOptions& options() const { return opts_; }

 private:
  void handle(Incoming&& in);
  void on_hello(const std::string& peer, const Hello& h);
  void on_ack(const Ack& a);
  void pump();
  void heartbeat();
  void drop_active_session();
  bool has_session(const std::string& peer) const { return active_peer_ && *active_peer_ == peer; }

  TrainerSessionOptions opts_;
  RequestHandler* handler_;
  RouterSocket socket_;
  std::unique_ptr<Journal> journal_;
  Outbox outbox_;
  uint64_t next_seq_ = 0;
  uint64_t run_ = 0;
  std::string instance_;

  // The one trainer session: the most recent HELLO wins. Peers it displaced get SESSION_TAKEN on
  // their next message (then NO_SESSION).
  std::optional<std::string> active_peer_;
  std::string active_client_id_;
  int active_connection_ = -1;  // the session's connection (Incoming::connection), -1 = unknown
  Clock::time_point last_heard_{}, last_sent_{};
  bool stale_logged_ = false;
  int64_t credits_ = 0;
  std::set<std::string> displaced_;  // peers whose session another HELLO took (bounded)
  std::deque<std::string> displaced_order_;
  TrainerSessionStats stats_;
};

}  // namespace longtail::bridge
