// The rollout engine facade (rollout/engine.h): wires the partial-rollout pool, the scheduler, the
// speculative step, the drafter's history, importance statistics and the trajectory log together,
// and keeps the statistics. One thread drives it.
#include "rollout/engine.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <deque>
#include <limits>
#include <stdexcept>
#include <string>
#include <unordered_map>

#include "drafter/drafter.h"
#include "drafter/speculation_policy.h"
#include "policy/checkpoint.h"
#include "rollout/measured_cost_model.h"
#include "rollout/partial_pool.h"
#include "rollout/request_validator.h"
#include "rollout/round_assembler.h"
#include "rollout/scheduler.h"
#include "rollout/sequence.h"
#include "rollout/speculative_step.h"
#include "rollout/trajectory_log.h"

namespace longtail::rollout {

namespace {

using Clock = std::chrono::steady_clock;
constexpr size_t kRecentRoundStats = 64;

}  // namespace

struct Engine::Impl {
  std::unique_ptr<policy::Backend> backend;
  EngineOptions options;
  Scheduler scheduler;
  SpeculativeStep speculative_step;  // its buffers are reused step after step
  PartialPool pool;
  std::unique_ptr<drafter::Drafter> drafter;
  std::unique_ptr<drafter::SpeculationPolicy> spec_policy;
  std::unique_ptr<TrajectoryLogWriter> log;
  int32_t max_position = 0;
  int64_t version = 0;
  uint64_t next_uid = 1;

  // Drafter history rounds: monotonic even when add_history loads rounds from elsewhere.
  int64_t drafter_round = -1;
  int64_t history_max_round = -1;
  bool history_dirty = false;
  // The last emitted round's rollouts, not yet in the drafter's history: indexed after the batch
  // is out (index_history), so the trainer never waits for it.
  struct Rollout {
    std::string prompt_id;
    std::vector<int32_t> prompt_tokens, response_tokens;
  };
  std::vector<Rollout> unindexed;
  int64_t unindexed_round = -1;  // the round they came from; -1: none waiting

  // Current round.
  int64_t round = 0;
  bool round_open = false;
  Clock::time_point round_start;
  Clock::time_point asleep_since;  // the current sleep's start (wake_up moves round_start by it)
  RoundStats round_acc;

  EngineStats stats;
  std::unordered_map<uint64_t, double> rewards;  // rewards of sequences not emitted yet
  struct Emitted {
    int64_t round;
    int64_t policy_version;
    std::vector<Trajectory> trajectories;
  };
  std::deque<Emitted> recent;
  std::vector<Group*> retired_groups;  // groups of sequences retired since the pool last heard

  Impl(std::unique_ptr<policy::Backend> b, EngineOptions o)
      : backend(std::move(b)),
        options(std::move(o)),
        scheduler(*backend, SchedulerOptions{options.max_running_sequences,
                                             options.max_tokens_per_forward}),
        pool(options.round_groups, options.overprovision) {
    max_position = backend->config().max_position_embeddings;
    if (max_position <= 0) max_position = std::numeric_limits<int32_t>::max();
    if (options.measured_cost_model) {
      const std::string device = backend->device_name();
      if (auto m = measured_cost_model(device, backend->config())) {
        options.budgets.cost = m->cost;
        spdlog::info("speculation cost model: {} (measured on {})", m->source, device);
      } else {
        spdlog::debug("speculation cost model: none measured for {} and this model shape; the cost_* "
                      "options' constants (set speculation.cost_model for a measured one)", device);
      }
    }
    if (speculation_enabled(options)) {
      drafter = std::make_unique<drafter::Drafter>(options.drafter);
      spec_policy = std::make_unique<drafter::SpeculationPolicy>(effective_budgets(options));
    }
    if (!options.trajectory_log.empty()) {
      // An existing log is appended to (a restarted worker must not erase what it recorded).
      std::error_code ec;
      const bool exists = std::filesystem::exists(options.trajectory_log, ec);
      log = std::make_unique<TrajectoryLogWriter>(options.trajectory_log, exists);
    }
  }

  RequestLimits request_limits() const {
    RequestLimits limits;
    limits.vocab_size = backend->config().vocab_size;
    limits.context_length = backend->config().max_position_embeddings;
    limits.forced = &options.forced_trajectories;
    limits.min_p_supported = backend->samples_min_p();
    limits.min_tokens_supported = backend->samples_min_tokens();
    limits.processed_logprobs_supported = backend->samples_processed_logprobs();
    return limits;
  }

  void validate(const GroupRequest& g) const {
    validate_group_request(g, request_limits());
    if (pool.has_group(g.group_id)) {
      throw InvalidRequest(g.group_id, "group_id", "a group with this id is already in flight");
    }
  }

  void open_round_if_needed() {
    if (round_open) return;
    round_open = true;
    round_start = Clock::now();
    round_acc = RoundStats{};
  }

  // This round's rollouts become draft sources from the next round on.
  bool index_history() {
    if (unindexed_round < 0) return false;
    drafter_round = std::max({drafter_round + 1, unindexed_round, history_max_round});
    for (const Rollout& t : unindexed) drafter->add_rollout(t.prompt_id, t.prompt_tokens, t.response_tokens, drafter_round);
    drafter->end_round(drafter_round);
    history_dirty = false;
    unindexed.clear();
    unindexed_round = -1;
    return true;
  }

  void sync_history() {
    index_history();
    if (!history_dirty || !drafter) return;
    // History for rounds already closed (a fleet's HISTORY, applied at this worker's round
    // boundary) joins the current round: advancing here would shrink the window of own rounds.
    drafter_round = std::max(drafter_round, history_max_round);
    drafter->end_round(drafter_round);
    history_dirty = false;
  }

  void activate_groups(bool all = false) {
    for (Group* g : pool.activate(round, all)) {
      for (auto& s : g->sequences) {
        if (drafter) {
          drafter->begin_request(s->uid, g->request.prompt_id, s->tokens);
          s->drafter_live = true;
        }
        scheduler.enqueue(s.get());
      }
    }
  }

  // The one teardown of a sequence leaving the running set for good: finished now (`finish`:
  // stop, length, context, end of its recording, or aborted) or done earlier and re-scored (or
  // aborted while owing its re-score: it keeps its finish reason). Ends its drafter and policy
  // state, records a new finish in the length history, releases its KV and queues its group for
  // the pool's completion check.
  void retire_sequence(Sequence& s, std::optional<FinishReason> finish) {
    s.score_upto = 0;
    if (finish && !s.done) {
      s.done = true;
      s.finish_reason = *finish;
      if (spec_policy) spec_policy->record_finished(s.group->request.prompt_id, s.response_len());
    }
    if (drafter && s.drafter_live) drafter->end_request(s.uid);
    s.drafter_live = false;
    if (spec_policy) spec_policy->end_sequence(s.uid);
    scheduler.retire(&s);
    retired_groups.push_back(s.group);
  }

  void abort_sequence(Sequence& s) {
    spdlog::error("engine: sequence {} of group '{}' ({} tokens) does not fit in the KV cache even "
                  "alone; finishing it as aborted",
                  s.uid, s.group->request.group_id, s.total_len());
    retire_sequence(s, FinishReason::kAborted);
  }

  // Applies what the step's forward produced (speculative_step.h), in plan order: re-scored
  // logprobs, emitted tokens, KV rollback, acceptance reports, the drafter's view, teardown.
  void apply_step(const StepResult& r) {
    for (const SequenceResult& q : r.sequences) {
      Sequence& s = *q.seq;
      std::copy(q.rescored.begin(), q.rescored.end(), s.current_logprobs.begin() + q.rescored_from);
      if (q.rescore_done) s.score_upto = 0;
      s.tokens.insert(s.tokens.end(), q.emitted.begin(), q.emitted.end());
      s.behaviour_logprobs.insert(s.behaviour_logprobs.end(), q.logprobs.begin(), q.logprobs.end());
      s.policy_versions.insert(s.policy_versions.end(), q.emitted.size(), version);
      if (!s.current_logprobs.empty())
        s.current_logprobs.insert(s.current_logprobs.end(), q.logprobs.begin(), q.logprobs.end());
      s.kv_len = q.kv_keep;
      if (q.decoded && spec_policy) {  // acceptance-aware budgets: every decoding step counts
        spec_policy->observe_acceptance(s.uid, s.group->request.prompt_id, q.drafted, q.accepted);
      }
      if (q.retire) {
        retire_sequence(s, q.finish);
        continue;
      }
      if (q.kv_keep < q.kv_fed) backend->truncate(s.kv_handle, q.kv_keep);
      if (!q.emitted.empty() && drafter && s.drafter_live) drafter->observe(s.uid, q.emitted);
    }
  }

  // Tells the pool which groups lost a sequence since the last call.
  void note_retired() {
    if (retired_groups.empty()) return;
    pool.note_retired(retired_groups);
    retired_groups.clear();
  }

  RoundBatch emit_round(bool flush) {
    std::vector<std::unique_ptr<Group>> groups = pool.take_round(flush);
    RoundInputs in;
    in.round = round;
    in.policy_version = version;
    in.importance_cap = options.importance_cap;
    in.token_ratio_cap = options.token_ratio_cap;
    in.stats = round_open ? round_acc : RoundStats{};  // a round never opened did no work
    in.stats.makespan_s =
        round_open ? std::chrono::duration<double>(Clock::now() - round_start).count() : 0;
    in.rewards = &rewards;
    RoundBatch batch = assemble_round(groups, in);
    int32_t carried = 0;
    for (const auto& g : pool.in_flight()) {
      for (const auto& s : g->sequences) carried += s->done ? 0 : 1;
    }
    batch.stats.carried_over = carried;

    // History: indexed by index_history(), after the batch has left (the next step() at the latest).
    if (drafter) {
      index_history();  // a round emitted before the previous one was indexed (DRAIN right after a batch)
      for (const Trajectory& t : batch.trajectories)
        unindexed.push_back({t.prompt_id, t.prompt_tokens, t.response_tokens});
      unindexed_round = round;
    }
    if (log) {
      for (const Trajectory& t : batch.trajectories) log->write(t);
      log->write_round(round, version);
    }
    for (const Trajectory& t : batch.trajectories) rewards.erase(t.uid);
    recent.push_back(Emitted{round, version, batch.trajectories});
    while (recent.size() > static_cast<size_t>(options.recent_rounds_kept)) recent.pop_front();
    stats.recent_rounds.push_back(batch.stats);
    if (stats.recent_rounds.size() > kRecentRoundStats) {
      stats.recent_rounds.erase(stats.recent_rounds.begin());
    }
    spdlog::info("engine: round {} done: {} groups, {} trajectories, {} tokens, {:.3f} s, "
                 "{} carried over, ESS ratio {:.3f}",
                 round, batch.stats.groups, batch.stats.trajectories, batch.stats.response_tokens,
                 batch.stats.makespan_s, carried, batch.importance.ess_ratio);
    ++round;
    round_open = false;
    return batch;
  }

  bool has_work() const { return !scheduler.empty() || pool.queued() > 0; }

  std::optional<RoundBatch> step() {
    if (backend->sleep_level() > 0)
      throw std::logic_error("engine: step() while asleep (level " + std::to_string(backend->sleep_level()) +
                             "): wake_up() first");
    sync_history();
    activate_groups();
    if (scheduler.empty()) {
      note_retired();
      if (pool.round_ready()) return emit_round(false);
      return std::nullopt;
    }
    open_round_if_needed();
    const Clock::time_point t0 = Clock::now();
    const StepPlan& plan = scheduler.schedule();
    for (Sequence* s : plan.aborted) abort_sequence(*s);
    stats.preemptions = scheduler.preemptions();

    StepEnvironment env{*backend, drafter.get(), spec_policy.get(), version, max_position,
                        options.refit_cost_model};
    const StepResult& r = speculative_step.run(plan, env);
    const Clock::time_point ta = Clock::now();
    apply_step(r);
    note_retired();
    StepStats st = r.stats;
    st.sample_us += std::chrono::duration<double, std::micro>(Clock::now() - ta).count();
    st.step = stats.steps++;
    st.preempted = plan.preempted;
    st.total_us = std::chrono::duration<double, std::micro>(Clock::now() - t0).count();
    const bool forwarded = st.sequences > 0;
    stats.forward_passes += forwarded ? 1 : 0;
    stats.tokens_generated += st.tokens_emitted;
    stats.tokens_drafted += st.tokens_drafted;
    stats.tokens_accepted += st.tokens_accepted;
    stats.last_step = st;
    round_acc.steps += 1;
    round_acc.forward_passes += forwarded ? 1 : 0;
    round_acc.tokens_drafted += st.tokens_drafted;
    round_acc.tokens_accepted += st.tokens_accepted;
    round_acc.tokens_verified += st.tokens_verified;
    round_acc.preemptions += plan.preempted;
    round_acc.draft_s += st.draft_us * 1e-6;
    round_acc.forward_s += st.forward_us * 1e-6;
    round_acc.sample_s += st.sample_us * 1e-6;

    if (pool.round_ready()) return emit_round(false);
    return std::nullopt;
  }

  // After the backend swapped weights from `source`: new version, and every sequence's KV is stale.
  void weights_replaced(const std::filesystem::path& source, int64_t new_version) {
    const int64_t old = version;
    version = new_version;
    scheduler.drop_all_kv();
    int32_t rescored = 0;
    for (const auto& g : pool.in_flight()) {
      for (const auto& s : g->sequences) {
        const int32_t n = s->response_len();
        if (n == 0) continue;
        s->current_logprobs.assign(n, std::numeric_limits<float>::quiet_NaN());
        s->score_upto = n;
        ++rescored;
        if (s->state == SeqState::kIdle) scheduler.enqueue_front(s.get());
      }
    }
    pool.note_reopened();
    spdlog::info("engine: weights from {} (version {} -> {}); {} sequences re-prefill", source.string(),
                 old, new_version, rescored);
  }
};

Engine::Engine(std::unique_ptr<policy::Backend> backend, EngineOptions options) {
  if (!backend) throw std::invalid_argument("Engine: null backend");
  validate_engine_options(options);
  impl_ = std::make_unique<Impl>(std::move(backend), std::move(options));
}

Engine::~Engine() = default;

void Engine::submit(GroupRequest group) {
  Impl& m = *impl_;
  m.validate(group);
  if (group.prompt_id.empty()) group.prompt_id = group.group_id;
  auto g = std::make_unique<Group>();
  // vLLM's rule: stop_token_ids add to the EOS set, which ignore_eos takes away.
  if (!group.ignore_eos)
    g->stop_tokens = group.stop_tokens.empty() ? m.backend->config().eos_token_ids : group.stop_tokens;
  g->stop_tokens.insert(g->stop_tokens.end(), group.stop_token_ids.begin(), group.stop_token_ids.end());
  g->rule = sampling_rule(group.sampling);
  if (group.sampling.min_tokens > 0) {
    g->rule.masked_tokens = g->stop_tokens;
    g->rule.mask_begin = static_cast<int64_t>(group.prompt_tokens.size());
    g->rule.mask_end = g->rule.mask_begin + group.sampling.min_tokens;
  }
  // RNG streams (policy/sampling.h): sample i draws from key + i.
  const uint64_t key = group.sample_key     ? *group.sample_key
                       : group.sampling.seed ? policy::sample_key_of(group.group_id)
                                             : m.next_uid;
  g->request = std::move(group);
  for (int32_t i = 0; i < g->request.n; ++i) {
    auto s = std::make_unique<Sequence>();
    s->uid = m.next_uid++;
    s->rng_stream = key + static_cast<uint64_t>(i);
    s->group = g.get();
    s->sample_index = i;
    s->tokens = g->request.prompt_tokens;
    s->prompt_len = static_cast<int32_t>(s->tokens.size());
    if (!m.options.forced_trajectories.empty()) {
      s->forced = &m.options.forced_trajectories.at(
          {g->request.prompt_id, g->request.trace_sample_offset + i});
    }
    g->sequences.push_back(std::move(s));
  }
  m.pool.submit(std::move(g));
}

void Engine::add_history(const std::string& prompt_id, const std::vector<int32_t>& prompt_tokens,
                         const std::vector<int32_t>& response_tokens, int64_t round) {
  Impl& m = *impl_;
  if (m.spec_policy) m.spec_policy->record_finished(prompt_id, static_cast<int32_t>(response_tokens.size()));
  if (!m.drafter) return;
  m.drafter->add_rollout(prompt_id, prompt_tokens, response_tokens, round);
  m.history_max_round = std::max(m.history_max_round, round);
  m.history_dirty = true;
}

std::optional<RoundBatch> Engine::step() { return impl_->step(); }

std::optional<RoundBatch> Engine::flush_round() {
  Impl& m = *impl_;
  m.note_retired();
  bool any = false;
  for (const auto& g : m.pool.in_flight()) any = any || g->complete();
  if (!any) return std::nullopt;
  return m.emit_round(true);
}

std::optional<RoundBatch> Engine::abort_all() {
  Impl& m = *impl_;
  m.activate_groups(/*all=*/true);
  if (m.pool.in_flight().empty()) return std::nullopt;
  int32_t aborted = 0;
  for (const auto& g : m.pool.in_flight()) {
    for (const auto& s : g->sequences) {
      if (!s->wants_compute()) continue;
      aborted += s->done ? 0 : 1;
      m.retire_sequence(*s, FinishReason::kAborted);
    }
  }
  m.note_retired();
  spdlog::warn("engine: aborted {} unfinished sequences; emitting every group in flight", aborted);
  return m.emit_round(true);
}

bool Engine::index_history() { return impl_->index_history(); }

bool Engine::idle() const {
  // A round whose groups are all complete is work too: step() emits it.
  return !impl_->has_work() && !impl_->pool.round_ready();
}

void Engine::update_weights(const std::filesystem::path& checkpoint_dir, int64_t version) {
  impl_->backend->replace_weights(checkpoint_dir);  // throws with the old weights still live
  impl_->weights_replaced(checkpoint_dir, version);
}

void Engine::update_weights(const policy::Checkpoint& weights, int64_t version) {
  impl_->backend->replace_weights(weights);
  impl_->weights_replaced(weights.dir(), version);
}

void Engine::update_weights(const policy::CudaIpcTensorSource& source, bool check_finite, int64_t version) {
  impl_->backend->replace_weights_from_cuda_ipc(source, check_finite);
  impl_->weights_replaced("cuda-ipc", version);
}

Engine::SleepReport Engine::sleep(int level) {
  Impl& m = *impl_;
  const int max_level = m.backend->max_sleep_level();
  if (level < 1 || level > max_level)
    throw std::invalid_argument("sleep level " + std::to_string(level) + " is not served by the " +
                                m.backend->name() + " backend (levels 1.." + std::to_string(max_level) +
                                (max_level == 0 ? ": it cannot sleep)" : ")"));
  SleepReport r;
  if (m.backend->sleep_level() == 0) m.asleep_since = Clock::now();
  if (level <= m.backend->sleep_level()) {
    r.level = m.backend->sleep_level();
    return r;
  }
  r.sequences_paused = static_cast<int32_t>(m.scheduler.running().size());
  r.kv_tokens_dropped = m.scheduler.release_all_kv();
  r.bytes_released = m.backend->sleep(level);
  r.level = level;
  spdlog::info("engine: asleep at level {}; {} running sequences ({} KV positions) re-prefill on wake",
               level, r.sequences_paused, r.kv_tokens_dropped);
  return r;
}

size_t Engine::wake_up() {
  Impl& m = *impl_;
  if (m.backend->sleep_level() == 0) return 0;
  const size_t bytes = m.backend->wake_up();
  // A round's makespan counts the time it could run, not the trainer's time with the device.
  if (m.round_open) m.round_start += Clock::now() - m.asleep_since;
  return bytes;
}

int Engine::sleep_level() const { return impl_->backend->sleep_level(); }

int Engine::max_sleep_level() const { return impl_->backend->max_sleep_level(); }

bool Engine::takes_cuda_ipc_weights() const { return impl_->backend->takes_cuda_ipc_weights(); }

bool Engine::set_reward(uint64_t uid, double reward) {
  Impl& m = *impl_;
  for (auto& e : m.recent) {
    for (Trajectory& t : e.trajectories) {
      if (t.uid == uid) {
        t.reward = reward;
        t.has_reward = true;
        return true;
      }
    }
  }
  for (const auto& g : m.pool.in_flight()) {
    for (const auto& s : g->sequences) {
      if (s->uid == uid) {
        m.rewards[uid] = reward;
        return true;
      }
    }
  }
  return false;
}

std::optional<BatchImportance> Engine::round_importance(int64_t round) const {
  for (const auto& e : impl_->recent) {
    if (e.round == round) return compute_batch_importance(e.trajectories, e.policy_version);
  }
  return std::nullopt;
}

int64_t Engine::policy_version() const { return impl_->version; }

drafter::StepCostModel Engine::step_cost_model() const {
  const Impl& m = *impl_;
  return m.spec_policy ? m.spec_policy->cost_model() : m.options.budgets.cost;
}

const StepStats& Engine::last_step() const { return impl_->stats.last_step; }

EngineStats Engine::stats() const {
  const Impl& m = *impl_;
  EngineStats s = m.stats;
  s.policy_version = m.version;
  s.running_sequences = static_cast<int32_t>(m.scheduler.running().size());
  s.waiting_groups = static_cast<int32_t>(m.pool.queued());
  int32_t carried = 0;
  for (const auto& g : m.pool.in_flight()) {
    if (g->first_round >= m.round) continue;
    for (const auto& sq : g->sequences) carried += sq->done ? 0 : 1;
  }
  s.carried_sequences = carried;
  s.preemptions = m.scheduler.preemptions();
  const auto kv = m.backend->kv_capacity();
  s.kv_total_tokens = kv.total_tokens;
  s.kv_free_tokens = kv.free_tokens;
  return s;
}

const policy::ModelConfig& Engine::model_config() const { return impl_->backend->config(); }

bool Engine::samples_min_p() const { return impl_->backend->samples_min_p(); }
bool Engine::samples_min_tokens() const { return impl_->backend->samples_min_tokens(); }

bool Engine::samples_processed_logprobs() const { return impl_->backend->samples_processed_logprobs(); }

RequestLimits Engine::request_limits() const { return impl_->request_limits(); }

}  // namespace longtail::rollout
