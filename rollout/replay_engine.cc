// The replay's engine model; see replay_engine.h.
#include "rollout/replay_engine.h"

#include <algorithm>
#include <climits>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "drafter/drafter.h"
#include "policy/accounting_backend.h"
#include "policy/forwarding_backend.h"
#include "policy/model_config.h"
#include "rollout/engine.h"

namespace longtail::rollout {

namespace {

// The accounting backend, with every forward priced by the cost model and the forwards each
// sequence (by its RNG stream, which the replay chooses) took part in counted.
class PricedBackend final : public policy::ForwardingBackend {
 public:
  struct PerSequence {
    int64_t steps = 0;    // forwards that produced its next token (prefill, decode, re-prefill)
    int64_t drafted = 0;  // draft tokens (or tree nodes) it verified
  };

  PricedBackend(std::unique_ptr<policy::Backend> inner, const drafter::StepCostModel& cost)
      : policy::ForwardingBackend(std::move(inner)), cost_(cost) {}

  std::vector<policy::TokenOutput> forward(std::span<const policy::SequenceChunk> chunks) override {
    lengths_.clear();
    for (const auto& c : chunks) lengths_.push_back(inner().sequence_length(c.seq));
    std::vector<policy::TokenOutput> out = inner().forward(chunks);  // throws before any count
    double tokens = 0, cached = 0;
    for (size_t i = 0; i < chunks.size(); ++i) {
      const auto& c = chunks[i];
      const auto size = static_cast<int64_t>(c.tokens.size());
      tokens += static_cast<double>(size);
      cached += lengths_[i];
      if (c.first_output >= size) continue;  // a prefill chunk that samples nothing
      PerSequence& s = per_stream_[c.uid];
      ++s.steps;
      // A decode feeds its one pending token and its draft and reads every output; a prefill's
      // last chunk reads only its last output.
      if (c.first_output == 0 && lengths_[i] > 0) s.drafted += size - 1;
    }
    elapsed_us_ += cost_.step_us(
        tokens, cached, drafter::StepCostModel::multi_token(tokens, static_cast<double>(chunks.size())));
    return out;
  }

  double elapsed_us() const { return elapsed_us_; }
  const PerSequence* sequence(uint64_t stream) const {
    const auto it = per_stream_.find(stream);
    return it == per_stream_.end() ? nullptr : &it->second;
  }

 private:
  drafter::StepCostModel cost_;
  double elapsed_us_ = 0;
  std::vector<int32_t> lengths_;
  std::unordered_map<uint64_t, PerSequence> per_stream_;
};

// One replayed rollout: where it comes from and the RNG stream its sequence runs under.
struct Planned {
  const RecordedRollout* r = nullptr;
  size_t round = 0;  // index into input.rounds
  uint64_t stream = 0;
};

struct Plan {
  std::vector<GroupRequest> groups;
  std::map<std::string, std::vector<size_t>> rollouts_of_group;  // group_id -> indices into planned
  std::vector<Planned> planned;                                  // every submitted rollout
  std::vector<const RecordedRollout*> empty;                     // recorded with no response token
  ForcedTrajectories forced;
  std::vector<size_t> rounds_with_groups;                        // input round indices, in order
  int32_t round_groups = 1;                                      // N: the option, or the first round's groups
  int32_t max_new_tokens = 0;
  int32_t vocab = 1, longest_prompt = 0;
};

Plan make_plan(const ReplayInput& input, const EngineReplayOptions& engine) {
  Plan p;
  int64_t longest_response = 1;
  auto see = [&](const RecordedRollout& r) {
    for (const int32_t t : r.prompt_tokens) p.vocab = std::max(p.vocab, t + 1);
    for (const int32_t t : r.response_tokens) p.vocab = std::max(p.vocab, t + 1);
    p.longest_prompt = std::max(p.longest_prompt, static_cast<int32_t>(r.prompt_tokens.size()));
  };
  for (const ReplayRound& round : input.rounds) {
    for (const auto& r : round.rollouts) {
      see(r);
      longest_response = std::max<int64_t>(longest_response, static_cast<int64_t>(r.response_tokens.size()));
    }
    for (const auto& r : round.history) see(r);
  }
  p.max_new_tokens = engine.max_new_tokens > 0 ? engine.max_new_tokens
                                               : static_cast<int32_t>(std::min<int64_t>(longest_response, INT32_MAX / 2));
  std::map<std::string, int32_t> next_sample;  // per prompt id: the forced-trajectory index
  uint64_t next_stream = 1;
  for (size_t ri = 0; ri < input.rounds.size(); ++ri) {
    const ReplayRound& round = input.rounds[ri];
    // One group per prompt (and prompt text) of the round, in order of first appearance.
    std::vector<std::pair<std::string, std::vector<const RecordedRollout*>>> by_prompt;
    for (const auto& r : round.rollouts) {
      if (r.response_tokens.empty()) {
        p.empty.push_back(&r);
        continue;
      }
      auto it = std::find_if(by_prompt.begin(), by_prompt.end(), [&](const auto& g) {
        return g.second.front()->prompt_id == r.prompt_id && g.second.front()->prompt_tokens == r.prompt_tokens;
      });
      if (it == by_prompt.end()) {
        by_prompt.push_back({r.prompt_id, {}});
        it = by_prompt.end() - 1;
      }
      it->second.push_back(&r);
    }
    if (by_prompt.empty()) continue;
    p.rounds_with_groups.push_back(ri);
    if (p.rounds_with_groups.size() == 1) {
      p.round_groups = engine.round_groups > 0 ? engine.round_groups : static_cast<int32_t>(by_prompt.size());
    }
    for (size_t gi = 0; gi < by_prompt.size(); ++gi) {
      const auto& [pid, rs] = by_prompt[gi];
      GroupRequest g;
      g.group_id = pid + "@round-" + std::to_string(round.round) + "#" + std::to_string(gi);
      g.prompt_id = pid;
      g.prompt_tokens = rs.front()->prompt_tokens;
      g.n = static_cast<int32_t>(rs.size());
      g.max_new_tokens = p.max_new_tokens;
      g.sample_key = next_stream;  // sample i runs under stream next_stream + i
      int32_t& offset = next_sample[pid];
      g.trace_sample_offset = offset;
      for (size_t i = 0; i < rs.size(); ++i) {
        p.forced[{pid, offset + static_cast<int32_t>(i)}] = rs[i]->response_tokens;
        p.rollouts_of_group[g.group_id].push_back(p.planned.size());
        p.planned.push_back({rs[i], ri, next_stream + i});
      }
      offset += g.n;
      next_stream += rs.size();
      p.groups.push_back(std::move(g));
    }
  }
  return p;
}

struct RunResult {
  struct Batch {
    RoundStats stats;
    double projected_us = 0;  // the forwards since the previous batch
    int64_t longest = 0;      // its longest response
  };
  std::vector<Batch> batches;
  std::map<size_t, int64_t> response_len;  // planned index -> emitted response tokens
  std::map<size_t, PricedBackend::PerSequence> per_sequence;
  double bytes_per_indexed_token = 0;
  int64_t indexed_tokens = 0;
  double draft_us = 0;
};

RunResult run_engine(const ReplayInput& input, const Plan& plan, const ReplayOptions& options,
                     const EngineReplayOptions& engine, bool speculate,
                     const std::function<void(size_t, size_t)>& progress) {
  policy::BackendOptions bo;
  bo.kind = "accounting";
  bo.max_kv_tokens = engine.max_kv_tokens;
  bo.kv_block_size = engine.kv_block_size;
  policy::ModelConfig config;
  if (!engine.model.empty()) {
    config = policy::load_model_config(engine.model);
  } else {
    config.architecture_name = "replay";
    config.vocab_size = plan.vocab;
    config.max_position_embeddings = plan.longest_prompt + plan.max_new_tokens + 1;
  }
  auto priced = std::make_unique<PricedBackend>(std::make_unique<policy::AccountingBackend>(config, bo),
                                                engine.price.value_or(options.policy.cost));
  const PricedBackend* meter = priced.get();  // owned by the engine from here on

  EngineOptions eo;
  eo.round_groups = plan.round_groups;
  eo.overprovision = engine.overprovision;
  eo.max_running_sequences = engine.max_running_sequences;
  eo.drafter = options.drafter;
  eo.budgets = options.policy;
  if (!speculate) eo.budgets.mode = drafter::BudgetMode::kOff;
  eo.forced_trajectories = plan.forced;
  validate_engine_options(eo);
  Engine e(std::move(priced), eo);

  // A drafter indexing what the engine's indexes (its index is not exposed): the memory figure.
  drafter::Drafter index(options.drafter);
  int64_t index_round = 0;
  auto add_history = [&](size_t ri) {
    for (const RecordedRollout& h : input.rounds[ri].history) {
      e.add_history(h.prompt_id, h.prompt_tokens, h.response_tokens, input.rounds[ri].round);
      index.add_rollout(h.prompt_id, h.prompt_tokens, h.response_tokens, input.rounds[ri].round);
      index_round = std::max(index_round, input.rounds[ri].round);
    }
  };
  // History of the rounds before the first replayed one is there from the start; the history of
  // replayed round k (and of history-only rounds after it) when the k-th batch is emitted.
  const std::vector<size_t>& replayed = plan.rounds_with_groups;
  const size_t first = replayed.empty() ? input.rounds.size() : replayed.front();
  for (size_t ri = 0; ri < first; ++ri) add_history(ri);
  for (const GroupRequest& g : plan.groups) e.submit(g);

  std::map<std::string, const std::vector<size_t>*> group_rollouts;
  for (const auto& [id, v] : plan.rollouts_of_group) group_rollouts[id] = &v;
  RunResult res;
  double emitted_at_us = 0;
  const size_t expected = replayed.size();
  while (true) {
    std::optional<RoundBatch> b = e.step();
    if (!b && e.idle()) b = e.flush_round();
    if (!b) {
      if (e.idle()) break;
      continue;
    }
    RunResult::Batch out;
    out.stats = b->stats;
    out.projected_us = meter->elapsed_us() - emitted_at_us;
    emitted_at_us = meter->elapsed_us();
    res.draft_us += b->stats.draft_s * 1e6;
    for (const Trajectory& t : b->trajectories) {
      const auto it = group_rollouts.find(t.group_id);
      if (it == group_rollouts.end() || t.sample_index < 0 ||
          static_cast<size_t>(t.sample_index) >= it->second->size()) {
        throw std::logic_error("replay: the engine emitted an unknown trajectory " + t.group_id);
      }
      const size_t k = (*it->second)[static_cast<size_t>(t.sample_index)];
      res.response_len[k] = static_cast<int64_t>(t.response_tokens.size());
      out.longest = std::max(out.longest, res.response_len[k]);
      if (const auto* s = meter->sequence(plan.planned[k].stream)) res.per_sequence[k] = *s;
      index.add_rollout(t.prompt_id, t.prompt_tokens, t.response_tokens, index_round + 1);
    }
    index.end_round(++index_round);
    const size_t k = res.batches.size();
    if (k < replayed.size()) {
      const size_t until = k + 1 < replayed.size() ? replayed[k + 1] : input.rounds.size();
      for (size_t ri = replayed[k]; ri < until; ++ri) add_history(ri);
    }
    res.batches.push_back(out);
    if (progress) progress(std::min(res.batches.size(), expected), expected);
  }
  if (res.response_len.size() != plan.planned.size()) {
    throw std::logic_error("replay: the engine emitted " + std::to_string(res.response_len.size()) + " of " +
                           std::to_string(plan.planned.size()) + " rollouts");
  }
  const auto mem = index.memory();
  res.bytes_per_indexed_token = mem.bytes_per_indexed_token();
  res.indexed_tokens = mem.indexed_tokens;
  return res;
}

}  // namespace

ReplayReport run_engine_replay(const ReplayInput& input, const ReplayOptions& options,
                               const EngineReplayOptions& engine,
                               const std::function<void(size_t, size_t)>& progress) {
  const Plan plan = make_plan(input, engine);
  const bool speculate = options.speculation && options.policy.mode != drafter::BudgetMode::kOff;
  const RunResult run = run_engine(input, plan, options, engine, speculate, progress);
  const RunResult plain = speculate ? run_engine(input, plan, options, engine, false, {}) : run;

  ReplayReport rep;
  rep.simulation = "engine";
  rep.round_groups = plan.round_groups;
  rep.max_running_sequences = engine.max_running_sequences;
  rep.overprovision = engine.overprovision;
  rep.max_new_tokens = plan.max_new_tokens;
  rep.budget_policy = drafter::to_string(speculate ? options.policy.mode : drafter::BudgetMode::kOff);
  rep.cost = options.policy.cost;
  rep.skipped_lines = static_cast<int64_t>(input.errors.size());
  rep.bytes_per_indexed_token = run.bytes_per_indexed_token;
  rep.indexed_tokens = run.indexed_tokens;
  rep.drafter_us = run.draft_us;
  rep.buckets = length_buckets();
  const size_t first_round = plan.rounds_with_groups.empty() ? 0 : plan.rounds_with_groups.front();
  for (size_t k = 0; k < plan.planned.size(); ++k) {
    const int64_t len = run.response_len.at(k);
    const auto it = run.per_sequence.find(k);
    const PricedBackend::PerSequence s = it == run.per_sequence.end() ? PricedBackend::PerSequence{} : it->second;
    rep.count_rollout(len, s.steps, s.drafted, std::max<int64_t>(0, len - s.steps), plan.planned[k].round > first_round);
  }
  rep.rollouts += static_cast<int64_t>(plan.empty.size());
  rep.buckets[0].rollouts += static_cast<int64_t>(plan.empty.size());
  for (size_t k = 0; k < run.batches.size(); ++k) {
    const RoundStats& s = run.batches[k].stats;
    ReplayRoundStats rs;
    rs.round = k < plan.rounds_with_groups.size() ? input.rounds[plan.rounds_with_groups[k]].round
                                                  : static_cast<int64_t>(k);
    rs.rollouts = s.trajectories;
    rs.engine_steps = s.forward_passes;
    rs.plain_steps = run.batches[k].longest;
    rs.makespan_us = run.batches[k].projected_us;
    rs.plain_makespan_us = k < plain.batches.size() ? plain.batches[k].projected_us : 0;
    rep.drafted_tokens += s.tokens_drafted;
    rep.accepted_tokens += s.tokens_accepted;
    rep.verified_tokens += s.tokens_verified;
    rep.engine_steps += s.forward_passes;
    rep.makespan_us += rs.makespan_us;
    rep.rounds.push_back(rs);
  }
  for (const auto& b : plain.batches) rep.plain_makespan_us += b.projected_us;
  return rep;
}

}  // namespace longtail::rollout
