// The trainer <-> worker wire protocol as plain C++ values: message kinds, their fields, the error
// codes, and limits. PROTOCOL.md is the normative description; codec.h turns these values into
// frames and back. Nothing here includes ZeroMQ or msgpack, so any layer above the bridge (tests,
// tools) can use the types without those dependencies.
#pragma once

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

#include "policy/shared_tensors.h"
#include "rollout/importance.h"
#include "rollout/trajectory.h"
#include "rollout/types.h"

namespace longtail::bridge {

// Bumped on any incompatible change of PROTOCOL.md. HELLO carries the trainer's version; the worker
// serves every version from kOldestProtocolVersion on and answers with the one it was asked for.
inline constexpr int32_t kProtocolVersion = 2;
inline constexpr int32_t kOldestProtocolVersion = 1;

enum class MessageType : uint8_t {
  // trainer -> worker
  kHello,
  kSubmit,
  kCredit,
  kAck,
  kUpdateWeights,
  kRewards,
  kStats,
  kDrain,
  kShutdown,
  kHeartbeat,  // both directions
  // worker -> trainer
  kWelcome,
  kBatch,
  kSubmitOk,
  kWeightsOk,
  kRewardsOk,
  kStatsReply,
  kDrainOk,
  kShutdownOk,
  kError,
};
// Who sends a message. Two wire names are used in both directions (HELLO: the trainer's greeting and
// the worker's answer, decoded as Hello / Welcome; STATS: request and reply), so decoding needs it.
enum class Direction : uint8_t { kToWorker, kToTrainer };
const char* type_name(MessageType t);  // the wire name
std::optional<MessageType> parse_type(std::string_view name, Direction dir);

// Error codes carried by ERROR messages (PROTOCOL.md lists when each is used).
namespace errc {
inline constexpr const char* kMalformed = "MALFORMED";        // not msgpack / not a map / bad frames
inline constexpr const char* kUnknownType = "UNKNOWN_TYPE";
inline constexpr const char* kBadVersion = "BAD_VERSION";
inline constexpr const char* kBadField = "BAD_FIELD";         // missing or mistyped field
inline constexpr const char* kTooLarge = "TOO_LARGE";
inline constexpr const char* kInvalidRequest = "INVALID_REQUEST";  // refused by the engine
inline constexpr const char* kQueueFull = "QUEUE_FULL";
inline constexpr const char* kBadCheckpoint = "BAD_CHECKPOINT";
inline constexpr const char* kPathNotAllowed = "PATH_NOT_ALLOWED";
inline constexpr const char* kNoSession = "NO_SESSION";
inline constexpr const char* kSessionTaken = "SESSION_TAKEN";  // another trainer said HELLO since
inline constexpr const char* kShuttingDown = "SHUTTING_DOWN";
inline constexpr const char* kInternal = "INTERNAL";
}  // namespace errc

// A decode failure or a refused request: becomes an ERROR message naming the request.
class ProtocolError : public std::runtime_error {
 public:
  ProtocolError(std::string code, const std::string& message, std::optional<uint64_t> req = {},
                std::string request_type = {})
      : std::runtime_error(message), code(std::move(code)), req(req),
        request_type(std::move(request_type)) {}
  std::string code;
  std::optional<uint64_t> req;
  std::string request_type;
  std::string limit;               // TOO_LARGE / QUEUE_FULL: the configured cap that refused it
  std::optional<bool> retryable;   // whether the same request can succeed later
};

// ---- trainer -> worker ----
struct Hello {
  int32_t version = kProtocolVersion;
  std::string client_id;  // informational (logs)
  int64_t credits = 0;    // initial credit grant of the new session
};
struct Submit {
  uint64_t req = 0;
  std::vector<rollout::GroupRequest> groups;
};
struct Credit {
  int64_t batches = 0;
};
struct Ack {
  std::vector<uint64_t> seqs;
};
struct UpdateWeights {
  uint64_t req = 0;
  int64_t version = 0;
  std::string path;                 // checkpoint directory; empty when shm is set
  policy::SharedTensorSource shm;   // or the tensors in a shared-memory segment (empty(): none)
  bool check_finite = false;        // refuse weights holding NaN or infinity
};
struct Rewards {
  uint64_t req = 0;
  std::vector<uint64_t> uids;
  std::vector<double> rewards;
};
struct StatsRequest {
  uint64_t req = 0;
};
struct Drain {
  uint64_t req = 0;
};
struct Shutdown {
  uint64_t req = 0;
};
struct Heartbeat {};

// ---- worker -> trainer ----
struct ModelInfo {
  std::string architecture;
  int32_t vocab_size = 0;
  int32_t max_position_embeddings = 0;
  int32_t hidden_size = 0;
  int32_t num_layers = 0;
  std::vector<int32_t> eos_token_ids;
};
// What the worker admits and how it times a session (HELLO reply), so a trainer never has to guess.
struct SessionLimits {
  uint64_t max_pending_groups = 0;   // groups queued and not yet running
  uint64_t max_pending_samples = 0;  // samples admitted and not yet delivered in a BATCH
  uint64_t max_pending_tokens = 0;   // sum over those samples of prompt_len + max_new_tokens
  uint64_t max_outbox_batches = 0;   // un-acked batches held before generation pauses
  double heartbeat_interval_s = 0;
  double peer_timeout_s = 0;
  double ack_timeout_s = 0;          // 0 = re-send only on a new HELLO
  double importance_cap = 0;         // C in min(w, C), sequence weights
  double token_ratio_cap = 0;        // C_tok in min(pi/mu, C_tok), token ratios
};
struct Welcome {
  int32_t version = kProtocolVersion;
  std::string worker_id;
  std::string instance;  // random per worker process: a change means the worker restarted
  ModelInfo model;
  int64_t policy_version = 0;
  std::vector<std::string> capabilities;
  uint64_t max_message_bytes = 0;
  uint64_t unacked = 0;   // batches that will be (re)sent to this session as credit allows
  uint64_t next_seq = 0;
  std::string weights;    // checkpoint directory the live weights came from
  uint64_t run = 0;       // run number of this worker process: the top 24 bits of every uid
  SessionLimits limits;
  std::string software_version;  // the worker's build: project version and git commit
  bool deterministic = false;    // the backend runs in deterministic mode (BackendOptions::deterministic)
};
struct Batch {
  uint64_t seq = 0;
  std::string worker_id;
  int64_t round = 0;
  int64_t policy_version = 0;
  int64_t created_ns = 0;  // system_clock ns when the batch was ready (latency measurement)
  std::vector<rollout::Trajectory> trajectories;
  rollout::BatchImportance importance;
  rollout::RoundStats stats;
};
struct SubmitOk {
  uint64_t req = 0;
  int32_t groups = 0;
};
struct WeightsOk {
  uint64_t req = 0;
  int64_t version = 0;
};
// The VCPO baseline of one group that a REWARDS message touched, with the per-trajectory numbers
// it came from: b = sum w_i^2 R_i / sum w_i^2 over the group's truncated weights w_i.
struct GroupRewards {
  std::string group_id;
  int64_t round = 0;
  double baseline = 0;
  bool valid = false;             // every trajectory of the group has a reward
  std::vector<uint64_t> uids;     // the group's trajectories in that round
  std::vector<double> weights;    // their truncated sequence weights min(w, C)
  std::vector<double> rewards;    // their rewards (NaN where none is known yet)
  std::vector<double> advantages; // R_i - b when valid, else empty
};
struct RewardsOk {
  uint64_t req = 0;
  std::vector<uint64_t> unknown_uids;
  std::vector<GroupRewards> groups;
};
struct StatsReply {
  uint64_t req = 0;
  nlohmann::json stats;  // maps/arrays/numbers/strings only
};
struct DrainOk {
  uint64_t req = 0;
  std::optional<uint64_t> batch_seq;  // the flushed batch, if anything had finished
};
struct ShutdownOk {
  uint64_t req = 0;
};
struct Error {
  std::string code;
  std::string message;
  std::optional<uint64_t> req;
  std::string request_type;  // the type of the message this answers, when known
  std::string limit;              // TOO_LARGE / QUEUE_FULL: which cap
  std::optional<bool> retryable;  // TOO_LARGE / QUEUE_FULL: can the same request succeed later
};

using Message = std::variant<Hello, Submit, Credit, Ack, UpdateWeights, Rewards, StatsRequest, Drain,
                             Shutdown, Heartbeat, Welcome, Batch, SubmitOk, WeightsOk, RewardsOk,
                             StatsReply, DrainOk, ShutdownOk, Error>;
MessageType message_type(const Message& m);

using rollout::finish_reason_name;   // rollout/finish_reason.h: the one table of names
using rollout::parse_finish_reason;

}  // namespace longtail::bridge
