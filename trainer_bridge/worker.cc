// The rollout worker service loop and its request handlers; see worker.h.
#include "trainer_bridge/worker.h"

#include <cmath>
#include <unordered_set>

#include <spdlog/spdlog.h>

#include "policy/checkpoint.h"
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
    : opts_(std::move(opts)), engine_(std::move(engine)), started_(Clock::now()) {
  if (!engine_) throw std::invalid_argument("Worker: null engine");
  session_ = std::make_unique<TrainerSession>(opts_.bridge, this);
  refresh_metrics();
  if (opts_.metrics_port > 0)
    metrics_server_ = std::make_unique<MetricsServer>([this] { return metrics_text(); }, opts_.metrics_bind, opts_.metrics_port);
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
  w.capabilities = {"rewards", "drain", "update_weights"};
  if (opts_.engine.budgets.mode != drafter::BudgetMode::kOff) w.capabilities.push_back("speculation");
  if (opts_.engine.overprovision > 1.0) w.capabilities.push_back("partial_rollouts");
  if (!opts_.bridge.journal_dir.empty()) w.capabilities.push_back("journal");
  if (opts_.bridge.curve.enabled) w.capabilities.push_back("curve");
  w.capabilities.push_back(std::string("backend:") + opts_.backend.kind);
  return w;
}

void Worker::on_request(const std::string& peer, Message&& m) {
  if (auto* s = std::get_if<Submit>(&m)) return on_submit(peer, *s);
  if (auto* u = std::get_if<UpdateWeights>(&m)) return on_update_weights(peer, *u);
  if (auto* r = std::get_if<Rewards>(&m)) return on_rewards(peer, *r);
  if (auto* s = std::get_if<StatsRequest>(&m)) return session_->reply(peer, StatsReply{s->req, stats_json()});
  if (auto* d = std::get_if<Drain>(&m)) return on_drain(peer, *d);
  if (auto* s = std::get_if<Shutdown>(&m)) {
    session_->reply(peer, ShutdownOk{s->req});
    begin_shutdown("SHUTDOWN from the trainer");
    return;
  }
  throw ProtocolError(errc::kUnknownType, std::string(type_name(message_type(m))) + " is not a request");
}

void Worker::on_submit(const std::string& peer, const Submit& s) {
  const auto fail = [&](const char* code, const std::string& msg) {
    ++groups_refused_;
    throw ProtocolError(code, msg, s.req, "SUBMIT");
  };
  if (shutting_down_) fail(errc::kShuttingDown, "SUBMIT refused: the worker is shutting down");
  const auto st = engine_->stats();
  if (static_cast<size_t>(st.waiting_groups) + s.groups.size() > opts_.max_pending_groups)
    fail(errc::kQueueFull, "SUBMIT of " + std::to_string(s.groups.size()) + " groups refused: " +
                               std::to_string(st.waiting_groups) + " groups already wait (max_pending_groups " +
                               std::to_string(opts_.max_pending_groups) + "); grant credit and retry later");
  // Check what we can before admitting anything, so that a refused SUBMIT admits nothing.
  const auto& c = engine_->model_config();
  std::unordered_set<std::string> ids;
  for (size_t i = 0; i < s.groups.size(); ++i) {
    const auto& g = s.groups[i];
    const std::string who = "group " + std::to_string(i) + " ('" + g.group_id + "')";
    if (!ids.insert(g.group_id).second) fail(errc::kInvalidRequest, who + ": group_id repeated within the request");
    if (g.prompt_tokens.empty()) fail(errc::kInvalidRequest, who + ": empty prompt");
    if (c.max_position_embeddings > 0 && g.prompt_tokens.size() >= static_cast<size_t>(c.max_position_embeddings))
      fail(errc::kInvalidRequest, who + ": prompt of " + std::to_string(g.prompt_tokens.size()) +
                                      " tokens does not fit the context of " + std::to_string(c.max_position_embeddings));
    for (size_t t = 0; t < g.prompt_tokens.size(); ++t)
      if (g.prompt_tokens[t] < 0 || g.prompt_tokens[t] >= c.vocab_size)
        fail(errc::kInvalidRequest, who + ": prompt token " + std::to_string(t) + " = " + std::to_string(g.prompt_tokens[t]) +
                                        " is outside the vocabulary [0, " + std::to_string(c.vocab_size) + ")");
    for (int32_t t : g.stop_tokens)
      if (t >= c.vocab_size) fail(errc::kInvalidRequest, who + ": stop token " + std::to_string(t) + " is outside the vocabulary");
  }
  for (size_t i = 0; i < s.groups.size(); ++i) {
    try {
      engine_->submit(s.groups[i]);
    } catch (const rollout::InvalidRequest& e) {
      // The engine's own checks (e.g. a group id already in flight). Earlier groups of this SUBMIT
      // were admitted and will be delivered; the message says so.
      groups_accepted_ += i;
      fail(errc::kInvalidRequest, "group " + std::to_string(i) + " ('" + s.groups[i].group_id + "') refused: " + e.what() +
                                      (i ? "; groups 0.." + std::to_string(i - 1) + " of this SUBMIT were admitted" : ""));
    }
  }
  groups_accepted_ += s.groups.size();
  session_->reply(peer, SubmitOk{s.req, static_cast<int32_t>(s.groups.size())});
}

void Worker::on_update_weights(const std::string& peer, const UpdateWeights& u) {
  const auto fail = [&](const char* code, const std::string& msg) {
    ++weight_update_failures_;
    throw ProtocolError(code, msg + "; still serving policy version " + std::to_string(engine_->policy_version()), u.req,
                        "UPDATE_WEIGHTS");
  };
  const std::filesystem::path p(u.path);
  if (!path_inside(p, opts_.allowed_weight_dirs))
    fail(errc::kPathNotAllowed, "checkpoint path '" + u.path + "' is not inside an allowed weights directory" +
                                    (opts_.allowed_weight_dirs.empty() ? " (none configured: weights.allowed_dirs)" : ""));
  std::error_code ec;
  if (!std::filesystem::is_directory(p, ec)) fail(errc::kBadCheckpoint, "checkpoint directory '" + u.path + "' does not exist");
  spdlog::info("worker: loading weights version {} from {}", u.version, u.path);
  const auto t0 = Clock::now();
  try {
    engine_->update_weights(p, u.version);
  } catch (const std::exception& e) {
    fail(errc::kBadCheckpoint, "checkpoint '" + u.path + "' cannot be loaded: " + e.what());
  }
  ++weight_updates_;
  spdlog::info("worker: policy version {} live after {:.2f} s", u.version, seconds_since(t0));
  session_->reply(peer, WeightsOk{u.req, engine_->policy_version()});
}

void Worker::on_rewards(const std::string& peer, const Rewards& r) {
  RewardsOk ok{r.req, {}};
  for (size_t i = 0; i < r.uids.size(); ++i) {
    if (!std::isfinite(r.rewards[i]))
      throw ProtocolError(errc::kBadField, "reward for uid " + std::to_string(r.uids[i]) + " is not finite", r.req, "REWARDS");
  }
  for (size_t i = 0; i < r.uids.size(); ++i)
    if (!engine_->set_reward(r.uids[i], r.rewards[i])) ok.unknown_uids.push_back(r.uids[i]);
  session_->reply(peer, ok);
}

void Worker::on_drain(const std::string& peer, const Drain& d) {
  std::optional<uint64_t> seq;
  if (auto rb = engine_->flush_round()) seq = publish(std::move(*rb));
  session_->reply(peer, DrainOk{d.req, seq});
}

std::optional<uint64_t> Worker::publish(rollout::RoundBatch&& rb) {
  Batch b;
  b.round = rb.round;
  b.policy_version = rb.policy_version;
  b.trajectories = std::move(rb.trajectories);
  b.importance = std::move(rb.importance);
  b.stats = rb.stats;
  const size_t n = b.trajectories.size();
  const uint64_t seq = session_->publish(std::move(b));
  spdlog::debug("worker: batch {} (round {}, {} trajectories) queued", seq, rb.round, n);
  return seq;
}

bool Worker::step_engine() {
  auto rb = engine_->step();
  if (rb) publish(std::move(*rb));
  return rb.has_value();
}

void Worker::begin_shutdown(const std::string& why) {
  if (shutting_down_) return;
  shutting_down_ = true;
  shutdown_started_ = Clock::now();
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
      if (!opts_.finish_in_flight_on_shutdown || engine_->idle() || timed_out) {
        if (timed_out && !engine_->idle()) spdlog::warn("worker: shutdown timeout; flushing what has finished");
        if (auto rb = engine_->flush_round()) publish(std::move(*rb));
        const auto st = engine_->stats();
        if (!engine_->idle())
          spdlog::warn("worker: {} running and {} carried sequences are dropped at exit (not finished)",
                       st.running_sequences, st.carried_sequences);
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
      if (engine_->idle()) return false;
      if (phase == Phase::kServing) return session_->wants_batches();
      return phase == Phase::kFinishing && session_->has_room();
    };
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
  spdlog::info("worker: exiting; {} batches published, {} acked, {} left un-acked{}", ps.batches_published, ps.batches_acked,
               ps.outbox_batches, opts_.bridge.journal_dir.empty() ? " (no journal: they are lost)" : " (kept in the journal)");
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
  return bridge::stats_json(engine_->stats(), session_->stats(), w);
}

void Worker::refresh_metrics() {
  last_metrics_ = Clock::now();
  if (opts_.metrics_port <= 0 && metrics_snapshot_.size()) return;
  std::string text = prometheus_text(stats_json(), opts_.bridge.worker_id);
  std::lock_guard lock(metrics_mu_);
  metrics_snapshot_ = std::move(text);
}

std::string Worker::metrics_text() const {
  std::lock_guard lock(metrics_mu_);
  return metrics_snapshot_;
}

}  // namespace longtail::bridge
