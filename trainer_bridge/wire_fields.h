// The one field list of every wire type: which keys a message (or a map nested in it) carries, in
// which C++ member each lands, whether it may be absent, and which array frames hold its bulk data.
// The encoder (encode.cc), the decoder (decode.cc) and the field catalogue that tests hold against
// PROTOCOL.md (wire_names.cc) all walk these same lists, so a field added here reaches every one of
// them at once. Internal to trainer_bridge: include codec.h for the public API.
//
// A list is a function template `fields(v, m)` calling, for each key, one of the visitor's
//   v(key, member, presence)            scalar, string, list, nested map (a type with its own list),
//                                       std::optional (nil when empty), FinishReason, JSON
//   v.bytes(key, std::string&, presence) opaque bytes (msgpack bin; str accepted)
//   v.nullable(key, double&, bool& set)  a float or nil
//   v.derived(key, fn)                  written by the encoder from fn(), ignored by the decoder
//   v.frames(names)                     the top-level "frames" map naming the message's array frames
//   v.frame(name, vector, len_key)      this map's slice of array frame `name`; its length is
//                                       carried as `len_key` (shared by arrays of equal length)
//   v.frame_if(name, vector, flag_key, len_key)  the same, present only when `flag_key` is true
// `m` is const when encoding and mutable when decoding, hence the templates on M.
#pragma once

#include <algorithm>
#include <array>
#include <concepts>
#include <optional>
#include <string_view>
#include <type_traits>

#include "trainer_bridge/protocol.h"

namespace longtail::bridge::wire {

// kOptional: absent or nil leaves the member at its default. kNilWhenEmpty: the same, and the
// encoder writes nil for an empty value.
enum class Presence : uint8_t { kRequired, kOptional, kNilWhenEmpty };
inline constexpr Presence kRequired = Presence::kRequired;
inline constexpr Presence kOptional = Presence::kOptional;
inline constexpr Presence kNilWhenEmpty = Presence::kNilWhenEmpty;

template <class M, class T>
concept Is = std::same_as<std::remove_const_t<M>, T>;

inline constexpr std::array<std::string_view, 1> kSubmitFrames = {"prompt_tokens"};
inline constexpr std::array<std::string_view, 2> kHistoryFrames = {"prompt_tokens", "response_tokens"};
inline constexpr std::array<std::string_view, 6> kBatchFrames = {
    "prompt_tokens", "response_tokens", "behaviour_logprobs", "policy_versions", "current_logprobs", "token_tis"};

// ---- maps nested in messages ----
template <class V, Is<rollout::SamplingParams> M>
void fields(V& v, M& m) {
  v("temperature", m.temperature, kOptional);
  v("top_k", m.top_k, kOptional);
  v("top_p", m.top_p, kOptional);
  v("min_p", m.min_p, kOptional);
  v("seed", m.seed, kOptional);
  v("min_tokens", m.min_tokens, kOptional);
  v("logprobs_mode", m.logprobs_mode, kOptional);
}

template <class V, Is<rollout::GroupRequest> M>
void fields(V& v, M& m) {
  v("group_id", m.group_id);
  v("prompt_id", m.prompt_id, kOptional);
  v.frame("prompt_tokens", m.prompt_tokens, "prompt_len");
  v("n", m.n);
  v("sampling", m.sampling, kOptional);
  v("max_new_tokens", m.max_new_tokens, kOptional);
  v("stop_tokens", m.stop_tokens, kOptional);
  v("stop_token_ids", m.stop_token_ids, kOptional);
  v("ignore_eos", m.ignore_eos, kOptional);
  v("sample_key", m.sample_key, kOptional);
  v.bytes("metadata", m.metadata, kOptional);
}

template <class V, Is<rollout::Trajectory> M>
void fields(V& v, M& m) {
  v("uid", m.uid);
  v("group_id", m.group_id);
  v("prompt_id", m.prompt_id);
  v("sample_index", m.sample_index);
  v.frame("prompt_tokens", m.prompt_tokens, "prompt_len");
  v.frame("response_tokens", m.response_tokens, "response_len");
  v.frame("behaviour_logprobs", m.behaviour_logprobs, "response_len");
  v.frame("policy_versions", m.policy_versions, "response_len");
  v.frame_if("current_logprobs", m.current_logprobs, "has_current_logprobs", "response_len");
  v.frame_if("token_tis", m.token_tis, "has_token_tis", "response_len");
  v("finish_reason", m.finish_reason);
  v.bytes("metadata", m.metadata, kOptional);
  v.nullable("reward", m.reward, m.has_reward);
  v("log_ratio", m.log_ratio);
  v("weight", m.weight);
  v("truncated_weight", m.truncated_weight);
  v.derived("policy_version_min", [&m]() -> std::optional<int64_t> {
    if (m.policy_versions.empty()) return std::nullopt;
    return *std::min_element(m.policy_versions.begin(), m.policy_versions.end());
  });
}

template <class V, Is<rollout::GroupBaseline> M>
void fields(V& v, M& m) {
  v("group_id", m.group_id);
  v("baseline", m.baseline);
  v("valid", m.valid);
}

template <class V, Is<rollout::BatchImportance> M>
void fields(V& v, M& m) {
  v("trajectories", m.trajectories);
  v("off_policy_trajectories", m.off_policy_trajectories);
  v("ess", m.ess);
  v("ess_ratio", m.ess_ratio);
  v("lr_scale", m.lr_scale);
  v("max_weight", m.max_weight);
  v("min_weight", m.min_weight);
  v("mean_log_ratio", m.mean_log_ratio);
  v("baselines", m.baselines);
}

// Every field the engine measures per round, from the engine's own list (rollout/types.h). Each
// is optional for receivers: a statistic added to the engine is an additive change, so a batch
// from an older worker (fewer keys) still decodes.
template <class V, Is<rollout::RoundStats> M>
void fields(V& v, M& m) {
  rollout::for_each_field(m, [&v](const char* key, auto& member) { v(key, member, kOptional); });
}

template <class V, Is<ModelInfo> M>
void fields(V& v, M& m) {
  v("architecture", m.architecture);
  v("vocab_size", m.vocab_size);
  v("max_position_embeddings", m.max_position_embeddings);
  v("hidden_size", m.hidden_size);
  v("num_layers", m.num_layers);
  v("eos_token_ids", m.eos_token_ids);
}

// ---- trainer -> worker ----
template <class V, Is<Hello> M>
void fields(V& v, M& m) {
  v("version", m.version);
  v("client_id", m.client_id, kOptional);
  v("credits", m.credits, kOptional);
}

template <class V, Is<Submit> M>
void fields(V& v, M& m) {
  v("req", m.req);
  v.frames(kSubmitFrames);
  v("groups", m.groups);
}

template <class V, Is<Credit> M>
void fields(V& v, M& m) {
  v("batches", m.batches);
}

template <class V, Is<Ack> M>
void fields(V& v, M& m) {
  v("seqs", m.seqs);
}

template <class V, Is<policy::TensorEntry> M>
void fields(V& v, M& m) {
  v("name", m.name);
  v("dtype", m.dtype);
  v("shape", m.shape);
  v("begin", m.begin);
  v("end", m.end);
}

template <class V, Is<policy::SharedTensorSource> M>
void fields(V& v, M& m) {
  v("name", m.segment);
  v("size", m.size);
  v("tensors", m.tensors);
}

template <class V, Is<policy::CudaIpcBuffer> M>
void fields(V& v, M& m) {
  v.bytes("handle", m.handle, kRequired);
  v("size", m.size);
}

template <class V, Is<policy::CudaIpcTensor> M>
void fields(V& v, M& m) {
  v("name", m.name);
  v("dtype", m.dtype);
  v("shape", m.shape);
  v("buffer", m.buffer);
  v("begin", m.begin);
  v("end", m.end);
}

template <class V, Is<policy::CudaIpcTensorSource> M>
void fields(V& v, M& m) {
  v("buffers", m.buffers);
  v("tensors", m.tensors);
}

template <class V, Is<UpdateWeights> M>
void fields(V& v, M& m) {
  v("req", m.req);
  v("version", m.version);
  v("path", m.path, kNilWhenEmpty);
  v("shm", m.shm, kOptional);
  v("cuda_ipc", m.cuda_ipc, kOptional);
  v("check_finite", m.check_finite, kOptional);
}

template <class V, Is<Rewards> M>
void fields(V& v, M& m) {
  v("req", m.req);
  v("uids", m.uids);
  v("rewards", m.rewards);
}

template <class V, class M>
  requires(Is<M, StatsRequest> || Is<M, Drain> || Is<M, Shutdown> || Is<M, ShutdownOk> || Is<M, WakeUp>)
void fields(V& v, M& m) {
  v("req", m.req);
}

template <class V, Is<Heartbeat> M>
void fields(V&, M&) {}

template <class V, Is<HistoryEntry> M>
void fields(V& v, M& m) {
  v("prompt_id", m.prompt_id);
  v.frame("prompt_tokens", m.prompt_tokens, "prompt_len");
  v.frame("response_tokens", m.response_tokens, "response_len");
}

template <class V, Is<History> M>
void fields(V& v, M& m) {
  v("req", m.req);
  v.frames(kHistoryFrames);
  v("trajectories", m.trajectories);
}

template <class V, Is<Sleep> M>
void fields(V& v, M& m) {
  v("req", m.req);
  v("level", m.level, kOptional);
}

// ---- worker -> trainer ----
template <class V, Is<Welcome> M>
void fields(V& v, M& m) {
  v("version", m.version);
  v("worker_id", m.worker_id);
  v("instance", m.instance);
  v("model", m.model);
  v("policy_version", m.policy_version);
  v("capabilities", m.capabilities);
  v("max_message_bytes", m.max_message_bytes);
  v("unacked", m.unacked);
  v("next_seq", m.next_seq);
  v("weights", m.weights, kOptional);
  v("run", m.run, kOptional);
  v("limits", m.limits, kOptional);
  v("software_version", m.software_version, kOptional);
  v("deterministic", m.deterministic, kOptional);
  v("sleep_level", m.sleep_level, kOptional);
}

template <class V, Is<SessionLimits> M>
void fields(V& v, M& m) {
  v("max_pending_groups", m.max_pending_groups);
  v("max_pending_samples", m.max_pending_samples);
  v("max_pending_tokens", m.max_pending_tokens);
  v("max_outbox_batches", m.max_outbox_batches);
  v("heartbeat_interval_s", m.heartbeat_interval_s);
  v("peer_timeout_s", m.peer_timeout_s);
  v("ack_timeout_s", m.ack_timeout_s);
  v("importance_cap", m.importance_cap);
  v("token_ratio_cap", m.token_ratio_cap);
}

template <class V, Is<Batch> M>
void fields(V& v, M& m) {
  v("seq", m.seq);
  v("worker_id", m.worker_id);
  v("round", m.round);
  v("policy_version", m.policy_version);
  v("created_ns", m.created_ns);
  v.frames(kBatchFrames);
  v("trajectories", m.trajectories);
  v("importance", m.importance);
  v("stats", m.stats);
}

template <class V, Is<SubmitOk> M>
void fields(V& v, M& m) {
  v("req", m.req);
  v("groups", m.groups);
}

template <class V, Is<WeightsOk> M>
void fields(V& v, M& m) {
  v("req", m.req);
  v("version", m.version);
}

template <class V, Is<RewardsOk> M>
void fields(V& v, M& m) {
  v("req", m.req);
  v("unknown_uids", m.unknown_uids);
  v("groups", m.groups, kOptional);
}

template <class V, Is<GroupRewards> M>
void fields(V& v, M& m) {
  v("group_id", m.group_id);
  v("round", m.round);
  v("baseline", m.baseline);
  v("valid", m.valid);
  v("uids", m.uids);
  v("weights", m.weights);
  v("rewards", m.rewards);
  v("advantages", m.advantages);
}

template <class V, Is<HistoryOk> M>
void fields(V& v, M& m) {
  v("req", m.req);
  v("added", m.added);
}

template <class V, Is<SleepOk> M>
void fields(V& v, M& m) {
  v("req", m.req);
  v("level", m.level);
  v("previous_level", m.previous_level);
  v("released_bytes", m.released_bytes);
  v("paused_sequences", m.paused_sequences);
  v("seconds", m.seconds);
}

template <class V, Is<WakeUpOk> M>
void fields(V& v, M& m) {
  v("req", m.req);
  v("previous_level", m.previous_level);
  v("allocated_bytes", m.allocated_bytes);
  v("seconds", m.seconds);
}

template <class V, Is<StatsReply> M>
void fields(V& v, M& m) {
  v("req", m.req);
  v("stats", m.stats);
}

template <class V, Is<DrainOk> M>
void fields(V& v, M& m) {
  v("req", m.req);
  v("batch_seq", m.batch_seq);
}

template <class V, Is<Error> M>
void fields(V& v, M& m) {
  v("code", m.code);
  v("message", m.message);
  v("req", m.req);
  v("request_type", m.request_type, kNilWhenEmpty);
  v("limit", m.limit, kNilWhenEmpty);
  v("retryable", m.retryable);
}

// A visitor that ignores every kind of field; visitors interested in some kinds derive from it
// and define those (a derived method hides the base's of the same name).
struct IgnoreFields {
  template <class... A>
  void operator()(A&&...) {}
  template <class... A>
  void bytes(A&&...) {}
  template <class... A>
  void nullable(A&&...) {}
  template <class... A>
  void derived(A&&...) {}
  template <class... A>
  void frames(A&&...) {}
  template <class... A>
  void frame(A&&...) {}
  template <class... A>
  void frame_if(A&&...) {}
};

// A type with its own field list is carried as a nested map.
template <class T>
concept HasFields = requires(IgnoreFields& v, T& t) { fields(v, t); };

}  // namespace longtail::bridge::wire
