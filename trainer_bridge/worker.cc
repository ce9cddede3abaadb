// The rollout worker service loop and its request handlers; see worker.h.
#include "trainer_bridge/worker.h"

#include <cmath>

#include <spdlog/spdlog.h>

#include "policy/checkpoint.h"
#include "rollout/request_validator.h"
#include "trainer_bridge/worker_metrics.h"

namespace longtail::bridge {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

const char* architecture_name(const policy::ModelConfig& c) {
  if (!c.architecture_name.empty()) return c.architecture_name.c_str();
  switch (c.architecture) {
    case policy::Architecture::kLlama: return "LlamaForCausalLM";
    case policy::Architecture::kQwen2: return "Qwen2ForCausalLM";
    case policy::Architecture::kQwen3: return "Qwen3ForCausalLM";
    case policy::Architecture::kMistral: return "MistralForCausalLM";
  }
  return "?";
}

}  // namespace

void check_submit(const Submit& s, const rollout::RequestLimits& limits) {
  const auto refuse = [&](const char* code, const rollout::InvalidRequest& e, size_t i) {
    const std::string where = e.field().empty() ? "group " + std::to_string(i) + " ('" + e.group_id() + "')"
                                                : "field 'groups[" + std::to_string(i) + "]." + e.field() +
                                                      "' of group '" + e.group_id() + "'";
    throw ProtocolError(code, where + ": " + e.reason(), s.req, "SUBMIT");
  };
  // The model-independent rules first (RequestLimits{} checks no vocabulary, context or backend).
  for (size_t i = 0; i < s.groups.size(); ++i) {
    try {
      rollout::validate_group_request(s.groups[i], rollout::RequestLimits{});
    } catch (const rollout::InvalidRequest& e) {
      refuse(errc::kBadField, e, i);
    }
  }
  try {
    rollout::validate_group_requests(s.groups, limits);
  } catch (const rollout::InvalidRequest& e) {
    refuse(errc::kInvalidRequest, e, static_cast<size_t>(std::max(0, e.index())));
  }
}

bool path_inside(const std::filesystem::path& p, const std::vector<std::filesystem::path>& dirs) {
  std::error_code ec;
  const auto target = std::filesystem::weakly_canonical(std::filesystem::absolute(p, ec), ec);
  if (ec) return false;
  for (const auto& d : dirs) {
    const auto root = std::filesystem::weakly_canonical(std::filesystem::absolute(d, ec), ec);
    if (ec) continue;
    auto r = root.begin();
    auto t = target.begin();
    for (; r != root.end() && t != target.end() && *r == *t; ++r, ++t) {
    }
    // A trailing empty component ("dir/") does not count as a difference.
    if (r == root.end() || (std::next(r) == root.end() && r->empty())) return true;
  }
  return false;
}

Worker::Worker(WorkerOptions opts, std::unique_ptr<rollout::Engine> engine)
    : opts_(std::move(opts)), engine_(std::move(engine)), started_(Clock::now()),
      shared_history_(opts_.engine.drafter.global_token_budget), weights_(opts_.model_dir) {
  if (!engine_) throw std::invalid_argument("Worker: null engine");
  metrics_ = std::make_unique<WorkerMetrics>(opts_.bridge.worker_id, opts_.software_version, opts_.backend.kind);
  if (opts_.metrics_port != 0) metrics_->serve(opts_.metrics_bind, opts_.metrics_port);  // before the socket: fail early
  session_ = std::make_unique<TrainerSession>(opts_.bridge, this);
  refresh_metrics();
}

Worker::~Worker() = default;

Welcome Worker::describe() {
  const auto& c = engine_->model_config();
  Welcome w;
  w.model.architecture = architecture_name(c);
  w.model.vocab_size = c.vocab_size;
  w.model.max_position_embeddings = c.max_position_embeddings;
  w.model.hidden_size = c.hidden_size;
  w.model.num_layers = c.num_layers;
  w.model.eos_token_ids = c.eos_token_ids;
  w.policy_version = engine_->policy_version();
  w.software_version = opts_.software_version;
  w.deterministic = opts_.backend.deterministic;
  w.sleep_level = engine_->sleep_level();
  w.capabilities = {"rewards", "drain", "update_weights", "update_weights_shm", "stop_token_ids", "ignore_eos"};
  if (engine_->takes_cuda_ipc_weights()) w.capabilities.push_back("update_weights_cuda_ipc");
  if (engine_->max_sleep_level() >= 1) w.capabilities.push_back("sleep");
  if (engine_->max_sleep_level() >= 2) w.capabilities.push_back("sleep:2");
  if (engine_->samples_min_p()) w.capabilities.push_back("min_p");
  if (engine_->samples_min_tokens()) w.capabilities.push_back("min_tokens");
  if (engine_->samples_processed_logprobs()) w.capabilities.push_back("logprobs_mode:processed");
  w.capabilities.push_back("sample_key");
  if (opts_.engine.budgets.mode != drafter::BudgetMode::kOff) w.capabilities.push_back("speculation");
  if (rollout::speculation_enabled(opts_.engine)) w.capabilities.push_back("history");
  if (opts_.engine.overprovision > 1.0) w.capabilities.push_back("partial_rollouts");
  if (!opts_.bridge.journal_dir.empty()) w.capabilities.push_back("journal");
  if (opts_.bridge.curve.enabled) w.capabilities.push_back("curve");
  w.capabilities.push_back(std::string("backend:") + opts_.backend.kind);
  w.weights = weights_.string();
  w.limits.max_pending_groups = opts_.max_pending_groups;
  w.limits.max_pending_samples = opts_.max_pending_samples;
  w.limits.max_pending_tokens = opts_.max_pending_tokens;
  w.limits.importance_cap = opts_.engine.importance_cap;
  w.limits.token_ratio_cap = opts_.engine.token_ratio_cap;
  return w;
}

void Worker::on_request(const std::string& peer, Message&& m) {
  if (auto* s = std::get_if<Submit>(&m)) return on_submit(peer, *s);
  if (auto* u = std::get_if<UpdateWeights>(&m)) return on_update_weights(peer, *u);
  if (auto* r = std::get_if<Rewards>(&m)) return on_rewards(peer, *r);
  if (auto* s = std::get_if<StatsRequest>(&m)) return session_->reply(peer, StatsReply{s->req, stats_json()});
  if (auto* d = std::get_if<Drain>(&m)) return on_drain(peer, *d);
  if (auto* h = std::get_if<History>(&m)) return on_history(peer, std::move(*h));
  if (auto* s = std::get_if<Sleep>(&m)) return on_sleep(peer, *s);
  if (auto* w = std::get_if<WakeUp>(&m)) return on_wake_up(peer, *w);
  if (auto* s = std::get_if<Shutdown>(&m)) {
    session_->reply(peer, ShutdownOk{s->req});
    begin_shutdown("SHUTDOWN from the trainer");
    return;
  }
  throw ProtocolError(errc::kUnknownType, std::string(type_name(message_type(m))) + " is not a request");
}

namespace {

uint64_t saturating_add(uint64_t a, uint64_t b) { return b > UINT64_MAX - a ? UINT64_MAX : a + b; }

// Refused for a configured cap: which one, and whether the same request can ever succeed.
ProtocolError over_cap(uint64_t req, const char* limit, bool retryable, const std::string& msg) {
  ProtocolError e(retryable ? errc::kQueueFull : errc::kTooLarge, msg, req, "SUBMIT");
  e.limit = limit;
  e.retryable = retryable;
  return e;
}

}  // namespace

void Worker::on_submit(const std::string& peer, const Submit& s) {
  const auto fail = [&](const char* code, const std::string& msg) {
    ++groups_refused_;
    throw ProtocolError(code, msg, s.req, "SUBMIT");
  };
  if (shutting_down_) fail(errc::kShuttingDown, "SUBMIT refused: the worker is shutting down");
  // Check every group before admitting any, so that a refused SUBMIT admits nothing (and n and
  // max_new_tokens are known to be >= 1 when the cost is computed).
  try {
    check_submit(s, engine_->request_limits());
  } catch (const ProtocolError&) {
    ++groups_refused_;
    throw;
  }
  for (size_t i = 0; i < s.groups.size(); ++i)
    if (pending_.count(s.groups[i].group_id))
      fail(errc::kInvalidRequest, "group " + std::to_string(i) + " ('" + s.groups[i].group_id +
                                      "'): a group with this id is still in flight");
  // What the request costs; the caps are checked before anything is allocated for it.
  uint64_t samples = 0, tokens = 0;
  for (const auto& g : s.groups) {
    const uint64_t n = static_cast<uint64_t>(g.n);
    samples = saturating_add(samples, n);
    tokens = saturating_add(tokens, n * (g.prompt_tokens.size() + static_cast<uint64_t>(g.max_new_tokens)));
  }
  const auto cap = [&](const char* limit, uint64_t asked, uint64_t pending, uint64_t max, const char* unit) {
    if (asked > max) {
      ++groups_refused_;
      throw over_cap(s.req, limit, false,
                     "SUBMIT of " + std::to_string(asked) + " " + unit + " refused: more than " + limit + " = " +
                         std::to_string(max) + " on its own, so retrying cannot succeed; split the request");
    }
    if (pending + asked > max) {
      ++groups_refused_;
      throw over_cap(s.req, limit, true,
                     "SUBMIT of " + std::to_string(asked) + " " + unit + " refused: " + std::to_string(pending) + " " +
                         unit + " already pending (" + limit + " " + std::to_string(max) +
                         "); retry once batches have been delivered (grant credit)");
    }
  };
  const auto st = engine_->stats();
  cap("max_pending_groups", s.groups.size(), static_cast<uint64_t>(st.waiting_groups), opts_.max_pending_groups, "groups");
  cap("max_pending_samples", samples, pending_samples_, opts_.max_pending_samples, "samples");
  cap("max_pending_tokens", tokens, pending_tokens_, opts_.max_pending_tokens, "tokens (prompt + max_new_tokens per sample)");
  for (size_t i = 0; i < s.groups.size(); ++i) {
    const auto& g = s.groups[i];
    const std::string admitted = i ? "; groups 0.." + std::to_string(i - 1) + " of this SUBMIT were admitted" : "";
    try {
      engine_->submit(g);
      metrics_->observe_admitted(int64_t{g.n} * static_cast<int64_t>(g.prompt_tokens.size()));
    } catch (const rollout::InvalidRequest& e) {
      // The engine's own checks (e.g. a group id already in flight). Earlier groups of this SUBMIT
      // were admitted and will be delivered; the message says so.
      groups_accepted_ += i;
      fail(errc::kInvalidRequest, "group " + std::to_string(i) + " ('" + g.group_id + "') refused: " + e.what() + admitted);
    } catch (const std::bad_alloc&) {
      groups_accepted_ += i;
      fail(errc::kInternal, "group " + std::to_string(i) + " ('" + g.group_id + "') refused: out of memory" + admitted);
    }
    const uint64_t per_sample = g.prompt_tokens.size() + static_cast<uint64_t>(g.max_new_tokens);
    pending_[g.group_id] = {static_cast<uint64_t>(g.n), per_sample};
    pending_samples_ += static_cast<uint64_t>(g.n);
    pending_tokens_ += static_cast<uint64_t>(g.n) * per_sample;
  }
  groups_accepted_ += s.groups.size();
  session_->reply(peer, SubmitOk{s.req, static_cast<int32_t>(s.groups.size())});
}

void Worker::on_update_weights(const std::string& peer, const UpdateWeights& u) {
  const auto fail = [&](const char* code, const std::string& msg) {
    ++weight_update_failures_;
    update_ready();
    throw ProtocolError(code, msg + "; still serving policy version " + std::to_string(engine_->policy_version()), u.req,
                        "UPDATE_WEIGHTS");
  };
  if (u.version <= engine_->policy_version())
    fail(errc::kInvalidRequest, "version " + std::to_string(u.version) + " is not newer than the live version " +
                                    std::to_string(engine_->policy_version()) + " (versions must strictly increase)");
  const auto t0 = Clock::now();
  metrics_->set_ready(false, "loading weights version " + std::to_string(u.version));
  if (!u.shm.empty()) {
    // A trainer on this host hands its tensors over in shared memory: mapped read-only, validated
    // like a checkpoint, copied into the backend, unmapped when `ck` goes (the trainer unlinks).
    spdlog::info("worker: loading weights version {} from shared-memory segment {}", u.version, u.shm.segment);
    try {
      const policy::Checkpoint ck = policy::open_shared_tensors(u.shm, engine_->model_config());
      if (u.check_finite) policy::check_finite(ck);
      engine_->update_weights(ck, u.version);
    } catch (const std::exception& e) {
      fail(errc::kBadCheckpoint, std::string("weights in shared memory cannot be loaded: ") + e.what());
    }
    return weights_live(peer, u, std::filesystem::path("/dev/shm") / u.shm.segment, t0);
  }
  if (!u.cuda_ipc.empty()) {
    // A trainer on this host shares its CUDA tensors: the backend opens the handles, validates,
    // copies device to device and closes them before this returns (the trainer may then reuse them).
    if (!engine_->takes_cuda_ipc_weights())
      fail(errc::kInvalidRequest, "UPDATE_WEIGHTS 'cuda_ipc' needs the cuda backend; this worker runs the " +
                                      opts_.backend.kind + " backend (send 'shm' or 'path' instead)");
    spdlog::info("worker: loading weights version {} from {} CUDA IPC buffers ({} tensors)", u.version,
                 u.cuda_ipc.buffers.size(), u.cuda_ipc.tensors.size());
    try {
      engine_->update_weights(u.cuda_ipc, u.check_finite, u.version);
    } catch (const std::exception& e) {
      fail(errc::kBadCheckpoint, std::string("weights from CUDA IPC handles cannot be loaded: ") + e.what());
    }
    return weights_live(peer, u, "cuda-ipc", t0);
  }
  const std::filesystem::path p(u.path);
  if (!path_inside(p, opts_.allowed_weight_dirs))
    fail(errc::kPathNotAllowed, "checkpoint path '" + u.path + "' is not inside an allowed weights directory" +
                                    (opts_.allowed_weight_dirs.empty() ? " (none configured: weights.allowed_dirs)" : ""));
  std::error_code ec;
  const auto status = std::filesystem::status(p, ec);
  if (!std::filesystem::exists(status)) fail(errc::kBadCheckpoint, "checkpoint directory '" + u.path + "' does not exist");
  if (!std::filesystem::is_directory(status))
    fail(errc::kBadCheckpoint, "checkpoint path '" + u.path +
                                   "' is not a directory (a checkpoint is a directory holding config.json and *.safetensors)");
  spdlog::info("worker: loading weights version {} from {}", u.version, u.path);
  try {
    if (u.check_finite) {
      const policy::Checkpoint ck = policy::Checkpoint::open(p);
      policy::check_finite(ck);
      engine_->update_weights(ck, u.version);
    } else {
      engine_->update_weights(p, u.version);
    }
  } catch (const std::exception& e) {
    fail(errc::kBadCheckpoint, "checkpoint '" + u.path + "' cannot be loaded: " + e.what());
  }
  weights_live(peer, u, p, t0);
}

void Worker::weights_live(const std::string& peer, const UpdateWeights& u, const std::filesystem::path& source,
                          Clock::time_point t0) {
  update_ready();
  metrics_->observe_weight_update(seconds_since(t0));
  ++weight_updates_;
  weights_ = source;
  spdlog::info("worker: policy version {} live after {:.2f} s", u.version, seconds_since(t0));
  session_->reply(peer, WeightsOk{u.req, engine_->policy_version()});
}

void Worker::on_rewards(const std::string& peer, const Rewards& r) {
  RewardsOk ok{r.req, {}, {}};
  for (size_t i = 0; i < r.uids.size(); ++i) {
    if (!std::isfinite(r.rewards[i]))
      throw ProtocolError(errc::kBadField, "reward for uid " + std::to_string(r.uids[i]) + " is not finite", r.req, "REWARDS");
  }
  std::map<std::pair<int64_t, std::string>, bool> touched;
  for (size_t i = 0; i < r.uids.size(); ++i) {
    const uint64_t uid = r.uids[i];
    auto it = delivered_.find(uid);  // only this run's delivered trajectories: earlier runs are unknown
    if (it == delivered_.end() || !engine_->set_reward(uid & kEngineUidMask, r.rewards[i])) {
      ok.unknown_uids.push_back(uid);
      continue;
    }
    it->second.reward = r.rewards[i];
    touched[{it->second.round, it->second.group_id}] = true;
  }
  ok.groups = group_rewards(touched);
  session_->reply(peer, ok);
}

std::vector<GroupRewards> Worker::group_rewards(const std::map<std::pair<int64_t, std::string>, bool>& touched) const {
  std::vector<GroupRewards> out;
  std::optional<rollout::BatchImportance> im;
  int64_t im_round = -1;
  for (const auto& [key, unused] : touched) {
    const auto& [round, group_id] = key;
    if (round != im_round) {
      im = engine_->round_importance(round);  // the engine's VCPO rule over the rewards known now
      im_round = round;
    }
    GroupRewards g;
    g.group_id = group_id;
    g.round = round;
    if (im)
      for (const auto& b : im->baselines)
        if (b.group_id == group_id) {
          g.baseline = b.baseline;
          g.valid = b.valid;
        }
    for (uint64_t uid : group_uids_.at(key)) {
      const auto& d = delivered_.at(uid);
      g.uids.push_back(uid);
      g.weights.push_back(d.truncated_weight);
      g.rewards.push_back(d.reward.value_or(std::nan("")));
      if (g.valid) g.advantages.push_back(d.reward.value_or(0) - g.baseline);
    }
    out.push_back(std::move(g));
  }
  return out;
}

void Worker::remember_published(const Batch& b) {
  for (const auto& t : b.trajectories) {
    delivered_[t.uid] = {b.round, t.group_id, t.truncated_weight, std::nullopt};
    group_uids_[{b.round, t.group_id}].push_back(t.uid);
  }
  if (delivered_rounds_.empty() || delivered_rounds_.back() != b.round) delivered_rounds_.push_back(b.round);
  // Forget what the engine forgets: rewards for older rounds can no longer reach a baseline.
  while (delivered_rounds_.size() > static_cast<size_t>(std::max(1, opts_.engine.recent_rounds_kept))) {
    const int64_t old = delivered_rounds_.front();
    delivered_rounds_.pop_front();
    for (auto it = group_uids_.lower_bound({old, std::string()}); it != group_uids_.end() && it->first.first == old;) {
      for (uint64_t uid : it->second) delivered_.erase(uid);
      it = group_uids_.erase(it);
    }
  }
}

void Worker::on_drain(const std::string& peer, const Drain& d) {
  std::optional<uint64_t> seq;
  if (auto rb = engine_->flush_round()) seq = publish(std::move(*rb));
  session_->reply(peer, DrainOk{d.req, seq});
}

void Worker::on_history(const std::string& peer, History&& h) {
  const uint64_t req = h.req;
  uint64_t added = 0;
  // Without speculation there is no drafter to feed: accepted and ignored (PROTOCOL.md, HISTORY).
  if (rollout::speculation_enabled(opts_.engine))
    added = shared_history_.take(std::move(h), engine_->model_config().vocab_size);
  // An idle engine is at a round boundary already: the history is ready for the next groups.
  if (engine_->idle() && !shared_history_.empty()) shared_history_.apply(*engine_, last_round_);
  session_->reply(peer, HistoryOk{req, added});
}

// Between engine steps, so no forward is in flight. Running and carried sequences keep their tokens
// and re-prefill after the wake; SUBMIT while asleep is admitted and waits (PROTOCOL.md, SLEEP).
void Worker::on_sleep(const std::string& peer, const Sleep& s) {
  if (shutting_down_) throw ProtocolError(errc::kShuttingDown, "SLEEP refused: the worker is shutting down", s.req, "SLEEP");
  const int max_level = engine_->max_sleep_level();
  if (s.level > max_level)
    throw ProtocolError(errc::kInvalidRequest,
                        "sleep level " + std::to_string(s.level) + " is not served by the " + opts_.backend.kind +
                            " backend" + (max_level ? " (levels 1.." + std::to_string(max_level) + ")" : " (it cannot sleep)"),
                        s.req, "SLEEP");
  const int previous = engine_->sleep_level();
  const auto t0 = Clock::now();
  rollout::Engine::SleepReport r;
  try {
    r = engine_->sleep(s.level);
  } catch (const std::exception& e) {
    throw ProtocolError(errc::kInternal, std::string("cannot sleep: ") + e.what() + "; still at sleep level " +
                                             std::to_string(engine_->sleep_level()), s.req, "SLEEP");
  }
  const double seconds = seconds_since(t0);
  if (r.level != previous) {
    ++sleeps_;
    last_sleep_released_bytes_ = r.bytes_released;
    last_sleep_s_ = seconds;
    spdlog::info("worker: asleep at level {} after {:.3f} s ({:.1f} MiB released, {} sequences paused)", r.level,
                 seconds, r.bytes_released / 1048576.0, r.sequences_paused);
  }
  update_ready();
  session_->reply(peer, SleepOk{s.req, r.level, previous, r.bytes_released, r.sequences_paused, seconds});
}

void Worker::on_wake_up(const std::string& peer, const WakeUp& w) {
  const int previous = engine_->sleep_level();
  const auto t0 = Clock::now();
  size_t allocated = 0;
  try {
    allocated = engine_->wake_up();
  } catch (const std::logic_error& e) {  // level 2 and no weights loaded since
    throw ProtocolError(errc::kInvalidRequest, std::string(e.what()) + "; send UPDATE_WEIGHTS first (still asleep)",
                        w.req, "WAKE_UP");
  } catch (const std::exception& e) {  // the memory is not there (yet)
    throw ProtocolError(errc::kInternal, std::string(e.what()) + "; retry once the device has memory again", w.req,
                        "WAKE_UP");
  }
  const double seconds = seconds_since(t0);
  if (previous != 0) {
    ++wake_ups_;
    last_wake_up_s_ = seconds;
    spdlog::info("worker: awake after {:.3f} s ({:.1f} MiB re-allocated)", seconds, allocated / 1048576.0);
  }
  update_ready();
  session_->reply(peer, WakeUpOk{w.req, previous, allocated, seconds});
}

void Worker::update_ready() {
  if (shutting_down_) return metrics_->set_ready(false, "shutting down");
  if (const int level = engine_->sleep_level())
    return metrics_->set_ready(false, "asleep (level " + std::to_string(level) + "): WAKE_UP first");
  metrics_->set_ready(true, "");
}

std::optional<uint64_t> Worker::publish(rollout::RoundBatch&& rb) {
  metrics_->observe_batch(rb);
  Batch b;
  b.round = rb.round;
  b.policy_version = rb.policy_version;
  b.trajectories = std::move(rb.trajectories);
  b.importance = std::move(rb.importance);
  b.stats = rb.stats;
  const uint64_t run = session_->run() << kEngineUidBits;
  for (auto& t : b.trajectories) {
    if (t.uid > kEngineUidMask) throw std::runtime_error("engine uid " + std::to_string(t.uid) + " does not fit 40 bits");
    t.uid |= run;
    if (auto it = pending_.find(t.group_id); it != pending_.end()) {
      pending_samples_ -= 1;
      pending_tokens_ -= it->second.tokens_per_sample;
      if (--it->second.samples == 0) pending_.erase(it);
    }
  }
  remember_published(b);
  const size_t n = b.trajectories.size();
  const uint64_t seq = session_->publish(std::move(b));
  spdlog::debug("worker: batch {} (round {}, {} trajectories) queued", seq, rb.round, n);
  last_round_ = rb.round;
  if (!shared_history_.empty()) shared_history_.apply(*engine_, rb.round);  // a round boundary
  return seq;
}

bool Worker::step_engine() {
  const auto t0 = Clock::now();
  auto rb = engine_->step();
  metrics_->observe_step(seconds_since(t0));
  if (rb) publish(std::move(*rb));
  return rb.has_value();
}

void Worker::begin_shutdown(const std::string& why) {
  if (shutting_down_) return;
  shutting_down_ = true;
  shutdown_started_ = Clock::now();
  metrics_->set_ready(false, "shutting down");
  const auto st = engine_->stats();
  spdlog::info("worker: shutting down ({}): no new groups; {} running, {} waiting, {} carried sequences", why,
               st.running_sequences, st.waiting_groups, st.carried_sequences);
}

int Worker::run(const std::atomic<bool>* stop) {
  enum class Phase { kServing, kFinishing, kAwaitingAcks } phase = Phase::kServing;
  Clock::time_point ack_wait_start{};
  while (true) {
    if (stop && stop->load() && !shutting_down_) begin_shutdown("signal");
    if (shutting_down_ && phase == Phase::kServing) phase = Phase::kFinishing;

    if (phase == Phase::kFinishing) {
      const bool timed_out = seconds_since(shutdown_started_) >= opts_.shutdown_timeout_s;
      // Asleep, the device memory belongs to the trainer: no wake-up, in-flight samples end now.
      const bool asleep = engine_->sleep_level() > 0;
      if (!opts_.finish_in_flight_on_shutdown || engine_->idle() || timed_out || asleep) {
        // Nothing submitted is lost: what has not finished ends as aborted with its tokens so far
        // and goes out (and into the journal) with the finished groups, in one last batch.
        if (engine_->idle()) {
          if (auto rb = engine_->flush_round()) publish(std::move(*rb));
        } else {
          const auto st = engine_->stats();
          spdlog::warn("worker: {}; {} running, {} waiting groups and {} carried sequences end as aborted",
                       timed_out ? "shutdown timeout"
                       : asleep  ? "shutdown while asleep"
                                 : "shutdown without finishing in-flight sequences",
                       st.running_sequences, st.waiting_groups, st.carried_sequences);
          if (auto rb = engine_->abort_all()) publish(std::move(*rb));
        }
        phase = Phase::kAwaitingAcks;
        ack_wait_start = Clock::now();
      }
    }
    if (phase == Phase::kAwaitingAcks) {
      if (session_->all_acked() || seconds_since(ack_wait_start) >= opts_.shutdown_ack_wait_s) break;
    }

    // Step only when there is work and (while serving) the trainer has credit for its output;
    // while finishing for shutdown, whenever the outbox has room.
    const auto can_step = [&] {
      if (engine_->idle() || engine_->sleep_level() > 0) return false;
      if (phase == Phase::kServing) return session_->wants_batches();
      return phase == Phase::kFinishing && session_->has_room();
    };
    // Idle (the trainer has the batch, or no credit): the round's drafter history is indexed now,
    // not when the next round starts.
    if (!can_step()) engine_->index_history();
    session_->poll(can_step() ? std::chrono::milliseconds(0) : std::chrono::milliseconds(50));
    if (can_step()) {
      try {
        step_engine();
      } catch (const std::exception& e) {
        spdlog::critical("worker: engine step failed: {}", e.what());
        return 1;
      }
    }
    if (Clock::now() - last_metrics_ > std::chrono::milliseconds(500)) refresh_metrics();
  }
  const auto ps = session_->stats();
  spdlog::info("worker: exiting; {} batches published, {} recovered from the journal, {} acked, {} left un-acked{}",
               ps.batches_published, ps.batches_recovered, ps.batches_acked, ps.outbox_batches,
               opts_.bridge.journal_dir.empty() ? " (no journal: they are lost)" : " (kept in the journal)");
  return 0;
}

nlohmann::json Worker::stats_json() const {
  WorkerStatus w;
  w.worker_id = opts_.bridge.worker_id;
  w.uptime_s = seconds_since(started_);
  w.shutting_down = shutting_down_;
  w.groups_accepted = groups_accepted_;
  w.groups_refused = groups_refused_;
  w.weight_updates = weight_updates_;
  w.weight_update_failures = weight_update_failures_;
  w.max_pending_groups = opts_.max_pending_groups;
  w.backend = opts_.backend.kind;
  w.software_version = opts_.software_version;
  w.deterministic = opts_.backend.deterministic;
  w.history_received = shared_history_.received;
  w.history_applied = shared_history_.applied;
  w.history_dropped = shared_history_.dropped;
  w.sleep_level = engine_->sleep_level();
  w.sleeps = sleeps_;
  w.wake_ups = wake_ups_;
  w.last_sleep_released_bytes = last_sleep_released_bytes_;
  w.last_sleep_s = last_sleep_s_;
  w.last_wake_up_s = last_wake_up_s_;
  return bridge::stats_json(engine_->stats(), session_->stats(), w);
}

void Worker::refresh_metrics() {
  last_metrics_ = Clock::now();
  metrics_->refresh(stats_json());
}

std::string Worker::metrics_text() const { return metrics_->text(); }

}  // namespace longtail::bridge
