// msgpack encoding and strict decoding of protocol messages. The decoder is the worker's first line
// of defence against bad input (and the libFuzzer target's subject): it never trusts a length, an
// index or a type from the wire, bounds every msgpack container by the bytes actually received, and
// reports what was wrong as a ProtocolError instead of crashing.
#include "trainer_bridge/codec.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>

#include <msgpack.hpp>

namespace longtail::bridge {

static_assert(std::endian::native == std::endian::little,
              "array frames are little-endian; a big-endian host needs byte swapping here");

namespace {

using Packer = msgpack::packer<msgpack::sbuffer>;

struct TypeName {
  MessageType type;
  const char* name;
  Direction dir;
};
constexpr TypeName kTypes[] = {
    {MessageType::kHello, "HELLO", Direction::kToWorker},
    {MessageType::kSubmit, "SUBMIT", Direction::kToWorker},
    {MessageType::kCredit, "CREDIT", Direction::kToWorker},
    {MessageType::kAck, "ACK", Direction::kToWorker},
    {MessageType::kUpdateWeights, "UPDATE_WEIGHTS", Direction::kToWorker},
    {MessageType::kRewards, "REWARDS", Direction::kToWorker},
    {MessageType::kStats, "STATS", Direction::kToWorker},
    {MessageType::kDrain, "DRAIN", Direction::kToWorker},
    {MessageType::kShutdown, "SHUTDOWN", Direction::kToWorker},
    {MessageType::kHeartbeat, "HEARTBEAT", Direction::kToWorker},
    {MessageType::kWelcome, "HELLO", Direction::kToTrainer},
    {MessageType::kBatch, "BATCH", Direction::kToTrainer},
    {MessageType::kSubmitOk, "SUBMIT_OK", Direction::kToTrainer},
    {MessageType::kWeightsOk, "UPDATE_WEIGHTS_OK", Direction::kToTrainer},
    {MessageType::kRewardsOk, "REWARDS_OK", Direction::kToTrainer},
    {MessageType::kStatsReply, "STATS", Direction::kToTrainer},
    {MessageType::kDrainOk, "DRAIN_OK", Direction::kToTrainer},
    {MessageType::kShutdownOk, "SHUTDOWN_OK", Direction::kToTrainer},
    {MessageType::kHeartbeat, "HEARTBEAT", Direction::kToTrainer},
    {MessageType::kError, "ERROR", Direction::kToTrainer},
};

// ---------------------------------------------------------------- encoding helpers
void pack_str(Packer& p, std::string_view s) {
  p.pack_str(static_cast<uint32_t>(s.size()));
  p.pack_str_body(s.data(), static_cast<uint32_t>(s.size()));
}
void pack_bin(Packer& p, std::string_view s) {
  p.pack_bin(static_cast<uint32_t>(s.size()));
  p.pack_bin_body(s.data(), static_cast<uint32_t>(s.size()));
}
void key(Packer& p, std::string_view k) { pack_str(p, k); }

template <typename T>
uint32_t add_frame(Frames& f, const T* data, size_t count) {
  Bytes b(count * sizeof(T));
  if (!b.empty()) std::memcpy(b.data(), data, b.size());
  f.parts.push_back(std::move(b));
  return static_cast<uint32_t>(f.parts.size() - 1);
}

void pack_json(Packer& p, const nlohmann::json& j) {
  switch (j.type()) {
    case nlohmann::json::value_t::null: p.pack_nil(); break;
    case nlohmann::json::value_t::boolean: p.pack(j.get<bool>()); break;
    case nlohmann::json::value_t::number_integer: p.pack(j.get<int64_t>()); break;
    case nlohmann::json::value_t::number_unsigned: p.pack(j.get<uint64_t>()); break;
    case nlohmann::json::value_t::number_float: p.pack(j.get<double>()); break;
    case nlohmann::json::value_t::string: pack_str(p, j.get_ref<const std::string&>()); break;
    case nlohmann::json::value_t::array:
      p.pack_array(static_cast<uint32_t>(j.size()));
      for (const auto& e : j) pack_json(p, e);
      break;
    case nlohmann::json::value_t::object:
      p.pack_map(static_cast<uint32_t>(j.size()));
      for (auto it = j.begin(); it != j.end(); ++it) {
        pack_str(p, it.key());
        pack_json(p, it.value());
      }
      break;
    default: p.pack_nil(); break;  // binary/discarded never appear in stats
  }
}

void pack_importance(Packer& p, const rollout::BatchImportance& im) {
  p.pack_map(9);
  key(p, "trajectories"); p.pack(im.trajectories);
  key(p, "off_policy_trajectories"); p.pack(im.off_policy_trajectories);
  key(p, "ess"); p.pack(im.ess);
  key(p, "ess_ratio"); p.pack(im.ess_ratio);
  key(p, "lr_scale"); p.pack(im.lr_scale);
  key(p, "max_weight"); p.pack(im.max_weight);
  key(p, "min_weight"); p.pack(im.min_weight);
  key(p, "mean_log_ratio"); p.pack(im.mean_log_ratio);
  key(p, "baselines");
  p.pack_array(static_cast<uint32_t>(im.baselines.size()));
  for (const auto& b : im.baselines) {
    p.pack_map(3);
    key(p, "group_id"); pack_str(p, b.group_id);
    key(p, "baseline"); p.pack(b.baseline);
    key(p, "valid"); p.pack(b.valid);
  }
}

void pack_round_stats(Packer& p, const rollout::RoundStats& s) {
  p.pack_map(11);
  key(p, "round"); p.pack(s.round);
  key(p, "groups"); p.pack(s.groups);
  key(p, "trajectories"); p.pack(s.trajectories);
  key(p, "response_tokens"); p.pack(s.response_tokens);
  key(p, "steps"); p.pack(s.steps);
  key(p, "forward_passes"); p.pack(s.forward_passes);
  key(p, "tokens_drafted"); p.pack(s.tokens_drafted);
  key(p, "tokens_accepted"); p.pack(s.tokens_accepted);
  key(p, "makespan_s"); p.pack(s.makespan_s);
  key(p, "off_policy_token_share"); p.pack(s.off_policy_token_share);
  key(p, "carried_over"); p.pack(s.carried_over);
}

void pack_sampling(Packer& p, const policy::SamplingParams& s) {
  p.pack_map(4);
  key(p, "temperature"); p.pack(static_cast<double>(s.temperature));
  key(p, "top_k"); p.pack(s.top_k);
  key(p, "top_p"); p.pack(static_cast<double>(s.top_p));
  key(p, "seed"); p.pack(s.seed);
}

void pack_frames_map(Packer& p, std::initializer_list<std::pair<const char*, uint32_t>> refs) {
  key(p, "frames");
  p.pack_map(static_cast<uint32_t>(refs.size()));
  for (const auto& [name, idx] : refs) {
    key(p, name);
    p.pack(idx);
  }
}

// Appends a trajectory array to a frame buffer (one copy, straight into the frame).
template <typename T>
void append(Bytes& frame, const std::vector<T>& v) {
  if (v.empty()) return;
  const size_t off = frame.size();
  frame.resize(off + v.size() * sizeof(T));
  std::memcpy(frame.data() + off, v.data(), v.size() * sizeof(T));
}

void encode_batch(const Batch& b, Packer& p, Frames& f) {
  size_t np = 0, nr = 0, nc = 0, nt = 0;
  for (const auto& t : b.trajectories) {
    const size_t r = t.response_tokens.size();
    if (t.behaviour_logprobs.size() != r || t.policy_versions.size() != r ||
        (!t.current_logprobs.empty() && t.current_logprobs.size() != r) ||
        (!t.token_tis.empty() && t.token_tis.size() != r))
      throw std::invalid_argument("trajectory uid " + std::to_string(t.uid) +
                                  ": per-token arrays differ in length from response_tokens");
    np += t.prompt_tokens.size();
    nr += r;
    nc += t.current_logprobs.size();
    nt += t.token_tis.size();
  }
  const uint32_t fp = static_cast<uint32_t>(f.parts.size());
  f.parts.resize(fp + 6);
  Bytes* frames = &f.parts[fp];
  frames[0].reserve(np * 4);
  frames[1].reserve(nr * 4);
  frames[2].reserve(nr * 4);
  frames[3].reserve(nr * 8);
  frames[4].reserve(nc * 4);
  frames[5].reserve(nt * 4);
  for (const auto& t : b.trajectories) {
    append(frames[0], t.prompt_tokens);
    append(frames[1], t.response_tokens);
    append(frames[2], t.behaviour_logprobs);
    append(frames[3], t.policy_versions);
    append(frames[4], t.current_logprobs);
    append(frames[5], t.token_tis);
  }
  p.pack_map(10);
  key(p, "type"); pack_str(p, "BATCH");
  key(p, "seq"); p.pack(b.seq);
  key(p, "worker_id"); pack_str(p, b.worker_id);
  key(p, "round"); p.pack(b.round);
  key(p, "policy_version"); p.pack(b.policy_version);
  key(p, "created_ns"); p.pack(b.created_ns);
  key(p, "trajectories");
  p.pack_array(static_cast<uint32_t>(b.trajectories.size()));
  for (const auto& t : b.trajectories) {
    p.pack_map(15);
    key(p, "uid"); p.pack(t.uid);
    key(p, "group_id"); pack_str(p, t.group_id);
    key(p, "prompt_id"); pack_str(p, t.prompt_id);
    key(p, "sample_index"); p.pack(t.sample_index);
    key(p, "prompt_len"); p.pack(static_cast<uint64_t>(t.prompt_tokens.size()));
    key(p, "response_len"); p.pack(static_cast<uint64_t>(t.response_tokens.size()));
    key(p, "has_current_logprobs"); p.pack(!t.current_logprobs.empty());
    key(p, "has_token_tis"); p.pack(!t.token_tis.empty());
    key(p, "finish_reason"); pack_str(p, finish_reason_name(t.finish_reason));
    key(p, "metadata"); pack_bin(p, t.metadata);
    key(p, "reward");
    if (t.has_reward) p.pack(t.reward); else p.pack_nil();
    key(p, "log_ratio"); p.pack(t.log_ratio);
    key(p, "weight"); p.pack(t.weight);
    key(p, "truncated_weight"); p.pack(t.truncated_weight);
    key(p, "policy_version_min");
    if (t.policy_versions.empty()) p.pack_nil();
    else p.pack(*std::min_element(t.policy_versions.begin(), t.policy_versions.end()));
  }
  key(p, "importance"); pack_importance(p, b.importance);
  key(p, "stats"); pack_round_stats(p, b.stats);
  pack_frames_map(p, {{"prompt_tokens", fp}, {"response_tokens", fp + 1}, {"behaviour_logprobs", fp + 2},
                      {"policy_versions", fp + 3}, {"current_logprobs", fp + 4}, {"token_tis", fp + 5}});
}

void encode_submit(const Submit& s, Packer& p, Frames& f) {
  std::vector<int32_t> prompts;
  for (const auto& g : s.groups) prompts.insert(prompts.end(), g.prompt_tokens.begin(), g.prompt_tokens.end());
  p.pack_map(4);
  key(p, "type"); pack_str(p, "SUBMIT");
  key(p, "req"); p.pack(s.req);
  key(p, "groups");
  p.pack_array(static_cast<uint32_t>(s.groups.size()));
  for (const auto& g : s.groups) {
    p.pack_map(8);
    key(p, "group_id"); pack_str(p, g.group_id);
    key(p, "prompt_id"); pack_str(p, g.prompt_id);
    key(p, "prompt_len"); p.pack(static_cast<uint64_t>(g.prompt_tokens.size()));
    key(p, "n"); p.pack(g.n);
    key(p, "sampling"); pack_sampling(p, g.sampling);
    key(p, "max_new_tokens"); p.pack(g.max_new_tokens);
    key(p, "stop_tokens"); p.pack(g.stop_tokens);
    key(p, "metadata"); pack_bin(p, g.metadata);
  }
  pack_frames_map(p, {{"prompt_tokens", add_frame(f, prompts.data(), prompts.size())}});
}

void pack_opt_req(Packer& p, const std::optional<uint64_t>& r) {
  if (r) p.pack(*r); else p.pack_nil();
}

struct Encoder {
  Packer& p;
  Frames& f;
  void operator()(const Hello& m) {
    p.pack_map(4);
    key(p, "type"); pack_str(p, "HELLO");
    key(p, "version"); p.pack(m.version);
    key(p, "client_id"); pack_str(p, m.client_id);
    key(p, "credits"); p.pack(m.credits);
  }
  void operator()(const Submit& m) { encode_submit(m, p, f); }
  void operator()(const Credit& m) {
    p.pack_map(2);
    key(p, "type"); pack_str(p, "CREDIT");
    key(p, "batches"); p.pack(m.batches);
  }
  void operator()(const Ack& m) {
    p.pack_map(2);
    key(p, "type"); pack_str(p, "ACK");
    key(p, "seqs"); p.pack(m.seqs);
  }
  void operator()(const UpdateWeights& m) {
    p.pack_map(4);
    key(p, "type"); pack_str(p, "UPDATE_WEIGHTS");
    key(p, "req"); p.pack(m.req);
    key(p, "version"); p.pack(m.version);
    key(p, "path"); pack_str(p, m.path);
  }
  void operator()(const Rewards& m) {
    p.pack_map(4);
    key(p, "type"); pack_str(p, "REWARDS");
    key(p, "req"); p.pack(m.req);
    key(p, "uids"); p.pack(m.uids);
    key(p, "rewards"); p.pack(m.rewards);
  }
  void simple(const char* type, uint64_t req) {
    p.pack_map(2);
    key(p, "type"); pack_str(p, type);
    key(p, "req"); p.pack(req);
  }
  void operator()(const StatsRequest& m) { simple("STATS", m.req); }
  void operator()(const Drain& m) { simple("DRAIN", m.req); }
  void operator()(const Shutdown& m) { simple("SHUTDOWN", m.req); }
  void operator()(const Heartbeat&) {
    p.pack_map(1);
    key(p, "type"); pack_str(p, "HEARTBEAT");
  }
  void operator()(const Welcome& m) {
    p.pack_map(10);
    key(p, "type"); pack_str(p, "HELLO");
    key(p, "version"); p.pack(m.version);
    key(p, "worker_id"); pack_str(p, m.worker_id);
    key(p, "instance"); pack_str(p, m.instance);
    key(p, "model");
    p.pack_map(6);
    key(p, "architecture"); pack_str(p, m.model.architecture);
    key(p, "vocab_size"); p.pack(m.model.vocab_size);
    key(p, "max_position_embeddings"); p.pack(m.model.max_position_embeddings);
    key(p, "hidden_size"); p.pack(m.model.hidden_size);
    key(p, "num_layers"); p.pack(m.model.num_layers);
    key(p, "eos_token_ids"); p.pack(m.model.eos_token_ids);
    key(p, "policy_version"); p.pack(m.policy_version);
    key(p, "capabilities"); p.pack(m.capabilities);
    key(p, "max_message_bytes"); p.pack(m.max_message_bytes);
    key(p, "unacked"); p.pack(m.unacked);
    key(p, "next_seq"); p.pack(m.next_seq);
  }
  void operator()(const Batch& m) { encode_batch(m, p, f); }
  void operator()(const SubmitOk& m) {
    p.pack_map(3);
    key(p, "type"); pack_str(p, "SUBMIT_OK");
    key(p, "req"); p.pack(m.req);
    key(p, "groups"); p.pack(m.groups);
  }
  void operator()(const WeightsOk& m) {
    p.pack_map(3);
    key(p, "type"); pack_str(p, "UPDATE_WEIGHTS_OK");
    key(p, "req"); p.pack(m.req);
    key(p, "version"); p.pack(m.version);
  }
  void operator()(const RewardsOk& m) {
    p.pack_map(3);
    key(p, "type"); pack_str(p, "REWARDS_OK");
    key(p, "req"); p.pack(m.req);
    key(p, "unknown_uids"); p.pack(m.unknown_uids);
  }
  void operator()(const StatsReply& m) {
    p.pack_map(3);
    key(p, "type"); pack_str(p, "STATS");
    key(p, "req"); p.pack(m.req);
    key(p, "stats"); pack_json(p, m.stats);
  }
  void operator()(const DrainOk& m) {
    p.pack_map(3);
    key(p, "type"); pack_str(p, "DRAIN_OK");
    key(p, "req"); p.pack(m.req);
    key(p, "batch_seq"); pack_opt_req(p, m.batch_seq);
  }
  void operator()(const ShutdownOk& m) { simple("SHUTDOWN_OK", m.req); }
  void operator()(const Error& m) {
    p.pack_map(5);
    key(p, "type"); pack_str(p, "ERROR");
    key(p, "code"); pack_str(p, m.code);
    key(p, "message"); pack_str(p, m.message);
    key(p, "req"); pack_opt_req(p, m.req);
    key(p, "request_type");
    if (m.request_type.empty()) p.pack_nil(); else pack_str(p, m.request_type);
  }
};

// ---------------------------------------------------------------- decoding helpers
struct Ctx {
  std::string type;
  std::optional<uint64_t> req;
  [[noreturn]] void fail(const char* code, const std::string& what) const {
    std::string msg = type.empty() ? what : type + ": " + what;
    throw ProtocolError(code, msg, req, type);
  }
};

const char* kind_name(msgpack::type::object_type t) {
  switch (t) {
    case msgpack::type::NIL: return "nil";
    case msgpack::type::BOOLEAN: return "boolean";
    case msgpack::type::POSITIVE_INTEGER:
    case msgpack::type::NEGATIVE_INTEGER: return "integer";
    case msgpack::type::FLOAT32:
    case msgpack::type::FLOAT64: return "float";
    case msgpack::type::STR: return "string";
    case msgpack::type::BIN: return "binary";
    case msgpack::type::ARRAY: return "array";
    case msgpack::type::MAP: return "map";
    default: return "extension";
  }
}

// A msgpack map with string keys, read field by field with errors that name the field path.
class Fields {
 public:
  Fields(const msgpack::object& o, std::string path, const Ctx& ctx) : path_(std::move(path)), ctx_(ctx) {
    if (o.type != msgpack::type::MAP) ctx_.fail(errc::kBadField, where("") + " must be a map, got " + kind_name(o.type));
    map_ = &o.via.map;
  }
  const msgpack::object* find(std::string_view k) const {
    for (uint32_t i = 0; i < map_->size; ++i) {
      const auto& kv = map_->ptr[i];
      if (kv.key.type == msgpack::type::STR && std::string_view(kv.key.via.str.ptr, kv.key.via.str.size) == k)
        return &kv.val;
    }
    return nullptr;
  }
  const msgpack::object& need(std::string_view k) const {
    const auto* o = find(k);
    if (!o) ctx_.fail(errc::kBadField, "missing field '" + where(k) + "'");
    return *o;
  }
  [[noreturn]] void mistyped(std::string_view k, const char* want, const msgpack::object& o) const {
    ctx_.fail(errc::kBadField, "field '" + where(k) + "' must be " + want + ", got " + kind_name(o.type));
  }
  uint64_t u64(std::string_view k) const { return as_u64(k, need(k)); }
  uint64_t as_u64(std::string_view k, const msgpack::object& o) const {
    if (o.type != msgpack::type::POSITIVE_INTEGER) mistyped(k, "a non-negative integer", o);
    return o.via.u64;
  }
  int64_t i64(std::string_view k) const { return as_i64(k, need(k)); }
  int64_t as_i64(std::string_view k, const msgpack::object& o) const {
    if (o.type == msgpack::type::NEGATIVE_INTEGER) return o.via.i64;
    if (o.type == msgpack::type::POSITIVE_INTEGER) {
      if (o.via.u64 > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
        ctx_.fail(errc::kBadField, "field '" + where(k) + "' is out of range");
      return static_cast<int64_t>(o.via.u64);
    }
    mistyped(k, "an integer", o);
  }
  int32_t i32(std::string_view k) const {
    const int64_t v = i64(k);
    if (v < std::numeric_limits<int32_t>::min() || v > std::numeric_limits<int32_t>::max())
      ctx_.fail(errc::kBadField, "field '" + where(k) + "' is out of the 32-bit range");
    return static_cast<int32_t>(v);
  }
  double f64(std::string_view k) const { return as_f64(k, need(k)); }
  double as_f64(std::string_view k, const msgpack::object& o) const {
    switch (o.type) {
      case msgpack::type::FLOAT32:
      case msgpack::type::FLOAT64: return o.via.f64;
      case msgpack::type::POSITIVE_INTEGER: return static_cast<double>(o.via.u64);
      case msgpack::type::NEGATIVE_INTEGER: return static_cast<double>(o.via.i64);
      default: mistyped(k, "a number", o);
    }
  }
  bool boolean(std::string_view k) const {
    const auto& o = need(k);
    if (o.type != msgpack::type::BOOLEAN) mistyped(k, "a boolean", o);
    return o.via.boolean;
  }
  std::string str(std::string_view k) const {
    const auto& o = need(k);
    if (o.type != msgpack::type::STR) mistyped(k, "a string", o);
    return std::string(o.via.str.ptr, o.via.str.size);
  }
  std::string str_or(std::string_view k, std::string dflt) const { return find(k) ? str(k) : dflt; }
  // Opaque bytes: msgpack bin (preferred) or str.
  std::string bytes_or_empty(std::string_view k) const {
    const auto* o = find(k);
    if (!o || o->type == msgpack::type::NIL) return {};
    if (o->type == msgpack::type::BIN) return std::string(o->via.bin.ptr, o->via.bin.size);
    if (o->type == msgpack::type::STR) return std::string(o->via.str.ptr, o->via.str.size);
    mistyped(k, "binary or a string", *o);
  }
  const msgpack::object_array& array(std::string_view k) const {
    const auto& o = need(k);
    if (o.type != msgpack::type::ARRAY) mistyped(k, "an array", o);
    return o.via.array;
  }
  template <typename T, typename F>
  std::vector<T> list(std::string_view k, F&& conv) const {
    const auto& a = array(k);
    std::vector<T> out;
    out.reserve(a.size);
    for (uint32_t i = 0; i < a.size; ++i) out.push_back(conv(std::string(k) + "[" + std::to_string(i) + "]", a.ptr[i]));
    return out;
  }
  std::string where(std::string_view k) const {
    if (path_.empty()) return std::string(k);
    if (k.empty()) return path_;
    return path_ + "." + std::string(k);
  }
  const Ctx& ctx() const { return ctx_; }

 private:
  const msgpack::object_map* map_ = nullptr;
  std::string path_;
  const Ctx& ctx_;
};

// Typed views of the array frames referenced by the header's "frames" map.
class FrameTable {
 public:
  FrameTable(std::span<const FrameView> frames, const Fields& header, const Ctx& ctx)
      : frames_(frames), header_(header), ctx_(ctx) {}
  template <typename T>
  std::span<const T> get(std::string_view name, size_t expected_count) {
    Fields refs(header_.need("frames"), "frames", ctx_);
    const uint64_t idx = refs.u64(name);
    if (idx == 0 || idx >= frames_.size())
      ctx_.fail(errc::kMalformed, "frames." + std::string(name) + " = " + std::to_string(idx) +
                                      " does not name an array frame (message has " +
                                      std::to_string(frames_.size()) + " frames)");
    const FrameView f = frames_[idx];
    if (f.size() != expected_count * sizeof(T))
      ctx_.fail(errc::kMalformed, "frame " + std::to_string(idx) + " (" + std::string(name) + ") has " +
                                      std::to_string(f.size()) + " bytes, expected " +
                                      std::to_string(expected_count) + " x " + std::to_string(sizeof(T)));
    return {reinterpret_cast<const T*>(f.data()), expected_count};
  }
  // Copies (frames are not guaranteed to be aligned for T).
  template <typename T>
  std::vector<T> copy(std::span<const T> all, size_t offset, size_t count) {
    std::vector<T> out(count);
    if (count) std::memcpy(out.data(), reinterpret_cast<const uint8_t*>(all.data()) + offset * sizeof(T), count * sizeof(T));
    return out;
  }

 private:
  std::span<const FrameView> frames_;
  const Fields& header_;
  const Ctx& ctx_;
};

policy::SamplingParams decode_sampling(const Fields& g) {
  policy::SamplingParams s;
  const auto* o = g.find("sampling");
  if (!o || o->type == msgpack::type::NIL) return s;
  Fields f(*o, g.where("sampling"), g.ctx());
  if (f.find("temperature")) s.temperature = static_cast<float>(f.f64("temperature"));
  if (f.find("top_k")) s.top_k = f.i32("top_k");
  if (f.find("top_p")) s.top_p = static_cast<float>(f.f64("top_p"));
  if (f.find("seed")) s.seed = f.u64("seed");
  if (!std::isfinite(s.temperature) || s.temperature < 0)
    g.ctx().fail(errc::kBadField, "field '" + f.where("temperature") + "' must be a finite number >= 0");
  if (!std::isfinite(s.top_p) || s.top_p <= 0)
    g.ctx().fail(errc::kBadField, "field '" + f.where("top_p") + "' must be a finite number > 0");
  return s;
}

Submit decode_submit(const Fields& h, std::span<const FrameView> frames, const Ctx& ctx) {
  Submit s;
  s.req = *ctx.req;
  const auto& groups = h.array("groups");
  if (groups.size == 0) ctx.fail(errc::kBadField, "field 'groups' is empty");
  std::vector<uint64_t> lens;
  uint64_t total = 0;
  for (uint32_t i = 0; i < groups.size; ++i) {
    Fields g(groups.ptr[i], "groups[" + std::to_string(i) + "]", ctx);
    rollout::GroupRequest r;
    r.group_id = g.str("group_id");
    if (r.group_id.empty()) ctx.fail(errc::kBadField, "field '" + g.where("group_id") + "' is empty");
    r.prompt_id = g.str_or("prompt_id", "");
    const uint64_t len = g.u64("prompt_len");
    if (len > (uint64_t{1} << 31)) ctx.fail(errc::kBadField, "field '" + g.where("prompt_len") + "' is too large");
    lens.push_back(len);
    total += len;
    r.n = g.i32("n");
    if (r.n < 1) ctx.fail(errc::kBadField, "field '" + g.where("n") + "' must be >= 1");
    r.sampling = decode_sampling(g);
    if (g.find("max_new_tokens")) r.max_new_tokens = g.i32("max_new_tokens");
    if (r.max_new_tokens < 1) ctx.fail(errc::kBadField, "field '" + g.where("max_new_tokens") + "' must be >= 1");
    if (const auto* st = g.find("stop_tokens"); st && st->type != msgpack::type::NIL) {
      r.stop_tokens = g.list<int32_t>("stop_tokens", [&](const std::string& k, const msgpack::object& o) {
        const int64_t v = g.as_i64(k, o);
        if (v < 0 || v > std::numeric_limits<int32_t>::max()) ctx.fail(errc::kBadField, "field '" + g.where(k) + "' is not a token id");
        return static_cast<int32_t>(v);
      });
    }
    r.metadata = g.bytes_or_empty("metadata");
    s.groups.push_back(std::move(r));
  }
  FrameTable ft(frames, h, ctx);
  auto prompts = ft.get<int32_t>("prompt_tokens", total);
  size_t off = 0;
  for (size_t i = 0; i < s.groups.size(); ++i) {
    s.groups[i].prompt_tokens = ft.copy(prompts, off, lens[i]);
    off += lens[i];
  }
  return s;
}

rollout::BatchImportance decode_importance(const Fields& f) {
  rollout::BatchImportance im;
  im.trajectories = f.i32("trajectories");
  im.off_policy_trajectories = f.i32("off_policy_trajectories");
  im.ess = f.f64("ess");
  im.ess_ratio = f.f64("ess_ratio");
  im.lr_scale = f.f64("lr_scale");
  im.max_weight = f.f64("max_weight");
  im.min_weight = f.f64("min_weight");
  im.mean_log_ratio = f.f64("mean_log_ratio");
  const auto& bl = f.array("baselines");
  for (uint32_t i = 0; i < bl.size; ++i) {
    Fields b(bl.ptr[i], f.where("baselines[" + std::to_string(i) + "]"), f.ctx());
    im.baselines.push_back({b.str("group_id"), b.f64("baseline"), b.boolean("valid")});
  }
  return im;
}

rollout::RoundStats decode_round_stats(const Fields& f) {
  rollout::RoundStats s;
  s.round = f.i64("round");
  s.groups = f.i32("groups");
  s.trajectories = f.i32("trajectories");
  s.response_tokens = f.i64("response_tokens");
  s.steps = f.i64("steps");
  s.forward_passes = f.i64("forward_passes");
  s.tokens_drafted = f.i64("tokens_drafted");
  s.tokens_accepted = f.i64("tokens_accepted");
  s.makespan_s = f.f64("makespan_s");
  s.off_policy_token_share = f.f64("off_policy_token_share");
  s.carried_over = f.i32("carried_over");
  return s;
}

Batch decode_batch(const Fields& h, std::span<const FrameView> frames, const Ctx& ctx) {
  Batch b;
  b.seq = h.u64("seq");
  b.worker_id = h.str("worker_id");
  b.round = h.i64("round");
  b.policy_version = h.i64("policy_version");
  b.created_ns = h.i64("created_ns");
  const auto& trs = h.array("trajectories");
  struct Lens { uint64_t p, r; bool cur, tis; };
  std::vector<Lens> lens;
  uint64_t np = 0, nr = 0, nc = 0, nt = 0;
  for (uint32_t i = 0; i < trs.size; ++i) {
    Fields t(trs.ptr[i], "trajectories[" + std::to_string(i) + "]", ctx);
    rollout::Trajectory tr;
    tr.uid = t.u64("uid");
    tr.group_id = t.str("group_id");
    tr.prompt_id = t.str("prompt_id");
    tr.sample_index = t.i32("sample_index");
    Lens l{t.u64("prompt_len"), t.u64("response_len"), t.boolean("has_current_logprobs"), t.boolean("has_token_tis")};
    if (l.p > (uint64_t{1} << 31) || l.r > (uint64_t{1} << 31)) ctx.fail(errc::kBadField, "trajectory " + std::to_string(i) + " length out of range");
    const auto fr = parse_finish_reason(t.str("finish_reason"));
    if (!fr) ctx.fail(errc::kBadField, "field '" + t.where("finish_reason") + "' is not one of stop|length|context|aborted");
    tr.finish_reason = *fr;
    tr.metadata = t.bytes_or_empty("metadata");
    const auto& rw = t.need("reward");
    if (rw.type != msgpack::type::NIL) {
      tr.reward = t.as_f64("reward", rw);
      tr.has_reward = true;
    }
    tr.log_ratio = t.f64("log_ratio");
    tr.weight = t.f64("weight");
    tr.truncated_weight = t.f64("truncated_weight");
    np += l.p;
    nr += l.r;
    nc += l.cur ? l.r : 0;
    nt += l.tis ? l.r : 0;
    lens.push_back(l);
    b.trajectories.push_back(std::move(tr));
  }
  b.importance = decode_importance(Fields(h.need("importance"), "importance", ctx));
  b.stats = decode_round_stats(Fields(h.need("stats"), "stats", ctx));
  FrameTable ft(frames, h, ctx);
  auto prompt = ft.get<int32_t>("prompt_tokens", np);
  auto response = ft.get<int32_t>("response_tokens", nr);
  auto behaviour = ft.get<float>("behaviour_logprobs", nr);
  auto versions = ft.get<int64_t>("policy_versions", nr);
  auto current = ft.get<float>("current_logprobs", nc);
  auto tis = ft.get<float>("token_tis", nt);
  size_t op = 0, orr = 0, oc = 0, ot = 0;
  for (size_t i = 0; i < lens.size(); ++i) {
    auto& tr = b.trajectories[i];
    const auto& l = lens[i];
    tr.prompt_tokens = ft.copy(prompt, op, l.p);
    tr.response_tokens = ft.copy(response, orr, l.r);
    tr.behaviour_logprobs = ft.copy(behaviour, orr, l.r);
    tr.policy_versions = ft.copy(versions, orr, l.r);
    op += l.p;
    orr += l.r;
    if (l.cur) { tr.current_logprobs = ft.copy(current, oc, l.r); oc += l.r; }
    if (l.tis) { tr.token_tis = ft.copy(tis, ot, l.r); ot += l.r; }
  }
  return b;
}

nlohmann::json to_json(const msgpack::object& o, int depth, const Ctx& ctx) {
  if (depth > 16) ctx.fail(errc::kMalformed, "stats nested too deeply");
  switch (o.type) {
    case msgpack::type::NIL: return nullptr;
    case msgpack::type::BOOLEAN: return o.via.boolean;
    case msgpack::type::POSITIVE_INTEGER: return o.via.u64;
    case msgpack::type::NEGATIVE_INTEGER: return o.via.i64;
    case msgpack::type::FLOAT32:
    case msgpack::type::FLOAT64: return o.via.f64;
    case msgpack::type::STR: return std::string(o.via.str.ptr, o.via.str.size);
    case msgpack::type::ARRAY: {
      auto a = nlohmann::json::array();
      for (uint32_t i = 0; i < o.via.array.size; ++i) a.push_back(to_json(o.via.array.ptr[i], depth + 1, ctx));
      return a;
    }
    case msgpack::type::MAP: {
      auto m = nlohmann::json::object();
      for (uint32_t i = 0; i < o.via.map.size; ++i) {
        const auto& kv = o.via.map.ptr[i];
        if (kv.key.type != msgpack::type::STR) ctx.fail(errc::kMalformed, "stats map key is not a string");
        m[std::string(kv.key.via.str.ptr, kv.key.via.str.size)] = to_json(kv.val, depth + 1, ctx);
      }
      return m;
    }
    default: ctx.fail(errc::kMalformed, std::string("stats contain a ") + kind_name(o.type));
  }
}

std::optional<uint64_t> opt_u64(const Fields& f, std::string_view k) {
  const auto* o = f.find(k);
  if (!o || o->type == msgpack::type::NIL) return std::nullopt;
  return f.as_u64(k, *o);
}

Message decode_body(MessageType t, const Fields& h, std::span<const FrameView> frames, const Ctx& ctx) {
  switch (t) {
    case MessageType::kHello: {
      Hello m;
      m.version = h.i32("version");
      if (m.version != kProtocolVersion)
        ctx.fail(errc::kBadVersion, "protocol version " + std::to_string(m.version) + " is not supported (this side speaks " +
                                        std::to_string(kProtocolVersion) + ")");
      m.client_id = h.str_or("client_id", "");
      if (h.find("credits")) m.credits = h.i64("credits");
      if (m.credits < 0) ctx.fail(errc::kBadField, "field 'credits' must be >= 0");
      return m;
    }
    case MessageType::kSubmit: return decode_submit(h, frames, ctx);
    case MessageType::kCredit: {
      Credit m{h.i64("batches")};
      if (m.batches < 0) ctx.fail(errc::kBadField, "field 'batches' must be >= 0");
      return m;
    }
    case MessageType::kAck: {
      Ack m;
      m.seqs = h.list<uint64_t>("seqs", [&](const std::string& k, const msgpack::object& o) { return h.as_u64(k, o); });
      return m;
    }
    case MessageType::kUpdateWeights: {
      UpdateWeights m{*ctx.req, h.i64("version"), h.str("path")};
      if (m.path.empty()) ctx.fail(errc::kBadField, "field 'path' is empty");
      return m;
    }
    case MessageType::kRewards: {
      Rewards m;
      m.req = *ctx.req;
      m.uids = h.list<uint64_t>("uids", [&](const std::string& k, const msgpack::object& o) { return h.as_u64(k, o); });
      m.rewards = h.list<double>("rewards", [&](const std::string& k, const msgpack::object& o) { return h.as_f64(k, o); });
      if (m.uids.size() != m.rewards.size())
        ctx.fail(errc::kBadField, "'uids' has " + std::to_string(m.uids.size()) + " entries but 'rewards' has " +
                                      std::to_string(m.rewards.size()));
      return m;
    }
    case MessageType::kStats: return StatsRequest{*ctx.req};
    case MessageType::kDrain: return Drain{*ctx.req};
    case MessageType::kShutdown: return Shutdown{*ctx.req};
    case MessageType::kHeartbeat: return Heartbeat{};
    case MessageType::kWelcome: {
      Welcome m;
      m.version = h.i32("version");
      if (m.version != kProtocolVersion)
        ctx.fail(errc::kBadVersion, "worker speaks protocol version " + std::to_string(m.version) + ", expected " +
                                        std::to_string(kProtocolVersion));
      m.worker_id = h.str("worker_id");
      m.instance = h.str("instance");
      Fields mi(h.need("model"), "model", ctx);
      m.model.architecture = mi.str("architecture");
      m.model.vocab_size = mi.i32("vocab_size");
      m.model.max_position_embeddings = mi.i32("max_position_embeddings");
      m.model.hidden_size = mi.i32("hidden_size");
      m.model.num_layers = mi.i32("num_layers");
      m.model.eos_token_ids = mi.list<int32_t>("eos_token_ids", [&](const std::string& k, const msgpack::object& o) {
        return static_cast<int32_t>(mi.as_i64(k, o));
      });
      m.policy_version = h.i64("policy_version");
      m.capabilities = h.list<std::string>("capabilities", [&](const std::string& k, const msgpack::object& o) {
        if (o.type != msgpack::type::STR) h.mistyped(k, "a string", o);
        return std::string(o.via.str.ptr, o.via.str.size);
      });
      m.max_message_bytes = h.u64("max_message_bytes");
      m.unacked = h.u64("unacked");
      m.next_seq = h.u64("next_seq");
      return m;
    }
    case MessageType::kBatch: return decode_batch(h, frames, ctx);
    case MessageType::kSubmitOk: return SubmitOk{*ctx.req, h.i32("groups")};
    case MessageType::kWeightsOk: return WeightsOk{*ctx.req, h.i64("version")};
    case MessageType::kRewardsOk: {
      RewardsOk m{*ctx.req, {}};
      m.unknown_uids = h.list<uint64_t>("unknown_uids", [&](const std::string& k, const msgpack::object& o) { return h.as_u64(k, o); });
      return m;
    }
    case MessageType::kStatsReply: return StatsReply{*ctx.req, to_json(h.need("stats"), 0, ctx)};
    case MessageType::kDrainOk: return DrainOk{*ctx.req, opt_u64(h, "batch_seq")};
    case MessageType::kShutdownOk: return ShutdownOk{*ctx.req};
    case MessageType::kError: {
      Error m;
      m.code = h.str("code");
      m.message = h.str("message");
      m.req = opt_u64(h, "req");
      if (const auto* rt = h.find("request_type"); rt && rt->type != msgpack::type::NIL) m.request_type = h.str("request_type");
      return m;
    }
  }
  ctx.fail(errc::kUnknownType, "unhandled message type");
}

bool needs_req(MessageType t) {
  switch (t) {
    case MessageType::kSubmit:
    case MessageType::kUpdateWeights:
    case MessageType::kRewards:
    case MessageType::kStats:
    case MessageType::kDrain:
    case MessageType::kShutdown:
    case MessageType::kSubmitOk:
    case MessageType::kWeightsOk:
    case MessageType::kRewardsOk:
    case MessageType::kStatsReply:
    case MessageType::kDrainOk:
    case MessageType::kShutdownOk: return true;
    default: return false;
  }
}

}  // namespace

const char* type_name(MessageType t) {
  for (const auto& e : kTypes)
    if (e.type == t) return e.name;
  return "?";
}

std::optional<MessageType> parse_type(std::string_view name, Direction dir) {
  for (const auto& e : kTypes)
    if (e.dir == dir && name == e.name) return e.type;
  return std::nullopt;
}

MessageType message_type(const Message& m) {
  static constexpr MessageType kByIndex[] = {
      MessageType::kHello,     MessageType::kSubmit,     MessageType::kCredit,     MessageType::kAck,
      MessageType::kUpdateWeights, MessageType::kRewards, MessageType::kStats,     MessageType::kDrain,
      MessageType::kShutdown,  MessageType::kHeartbeat,  MessageType::kWelcome,    MessageType::kBatch,
      MessageType::kSubmitOk,  MessageType::kWeightsOk,  MessageType::kRewardsOk,  MessageType::kStatsReply,
      MessageType::kDrainOk,   MessageType::kShutdownOk, MessageType::kError};
  static_assert(std::size(kByIndex) == std::variant_size_v<Message>);
  return kByIndex[m.index()];
}

size_t Frames::total_bytes() const {
  size_t n = 0;
  for (const auto& p : parts) n += p.size();
  return n;
}

Frames encode(const Message& m) {
  Frames f;
  f.parts.emplace_back();  // header slot
  msgpack::sbuffer buf;
  Packer p(buf);
  std::visit(Encoder{p, f}, m);
  f.parts[0].assign(reinterpret_cast<const uint8_t*>(buf.data()),
                    reinterpret_cast<const uint8_t*>(buf.data()) + buf.size());
  return f;
}

Message decode(std::span<const FrameView> frames, Direction dir) {
  Ctx ctx;
  if (frames.empty()) ctx.fail(errc::kMalformed, "empty message (no header frame)");
  const FrameView head = frames[0];
  msgpack::object_handle oh;
  try {
    // Every msgpack container element takes at least one byte, so the received size bounds every
    // count the header may claim: no allocation larger than the input is ever attempted.
    const size_t n = head.size();
    msgpack::unpack_limit limit(n, n, n, n, n, 32);
    std::size_t off = 0;
    oh = msgpack::unpack(reinterpret_cast<const char*>(head.data()), n, off, nullptr, nullptr, limit);
    if (off != n) ctx.fail(errc::kMalformed, "header frame has " + std::to_string(n - off) + " trailing bytes after the msgpack map");
  } catch (const ProtocolError&) {
    throw;
  } catch (const std::exception& e) {
    ctx.fail(errc::kMalformed, std::string("header frame is not valid msgpack: ") + e.what());
  }
  const msgpack::object& root = oh.get();
  if (root.type != msgpack::type::MAP) ctx.fail(errc::kMalformed, std::string("header must be a msgpack map, got ") + kind_name(root.type));
  Fields h(root, "", ctx);
  // Read req and type first so that every later error can name the request it answers.
  if (const auto* r = h.find("req"); r && r->type == msgpack::type::POSITIVE_INTEGER) ctx.req = r->via.u64;
  const auto* to = h.find("type");
  if (!to) ctx.fail(errc::kBadField, "missing field 'type'");
  if (to->type != msgpack::type::STR) ctx.fail(errc::kBadField, std::string("field 'type' must be a string, got ") + kind_name(to->type));
  const std::string tname(to->via.str.ptr, to->via.str.size);
  const auto t = parse_type(tname, dir);
  if (!t) {
    std::string shown = tname.substr(0, 64);
    for (char& c : shown)
      if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) >= 0x7f) c = '?';
    ctx.fail(errc::kUnknownType, "unknown message type '" + shown + "'");
  }
  ctx.type = tname;
  if (needs_req(*t)) {
    const auto& r = h.need("req");
    ctx.req = h.as_u64("req", r);
  }
  try {
    return decode_body(*t, h, frames, ctx);
  } catch (const ProtocolError&) {
    throw;
  } catch (const std::exception& e) {  // msgpack type_error, bad_alloc on absurd sizes, ...
    ctx.fail(errc::kMalformed, std::string("cannot decode: ") + e.what());
  }
}

Message decode(const Frames& frames, Direction dir) {
  std::vector<FrameView> views;
  views.reserve(frames.parts.size());
  for (const auto& p : frames.parts) views.emplace_back(p.data(), p.size());
  return decode(views, dir);
}

}  // namespace longtail::bridge
