// The replay's step simulation; see replay_simulation.h.
#include "rollout/replay_simulation.h"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <span>

namespace longtail::rollout {

namespace {
const std::vector<std::pair<int64_t, int64_t>> kBuckets = {
    {0, 256}, {256, 1024}, {1024, 4096}, {4096, 16384}, {16384, 0}};

double plain_makespan(std::vector<int64_t> lengths, const drafter::StepCostModel& cost) {
  // Without speculation every live sequence verifies one token per step; the batch shrinks as
  // sequences finish, and the round lasts as long as its longest sequence.
  std::sort(lengths.begin(), lengths.end());
  double t = 0;
  int64_t done_steps = 0;
  size_t i = 0;
  while (i < lengths.size()) {
    const int64_t live = static_cast<int64_t>(lengths.size() - i);
    const int64_t until = lengths[i];
    t += static_cast<double>(until - done_steps) * cost.step_us(static_cast<double>(live));
    done_steps = until;
    while (i < lengths.size() && lengths[i] == until) ++i;
  }
  return t;
}
}  // namespace

std::vector<ReplayBucket> length_buckets() {
  std::vector<ReplayBucket> out;
  for (const auto& [lo, hi] : kBuckets) out.push_back({lo, hi});
  return out;
}

size_t length_bucket_of(int64_t len) {
  for (size_t i = 0; i < kBuckets.size(); ++i) {
    if (len >= kBuckets[i].first && (kBuckets[i].second == 0 || len < kBuckets[i].second)) return i;
  }
  return kBuckets.size() - 1;
}

void ReplayReport::count_rollout(int64_t len, int64_t steps, int64_t drafted, int64_t accepted, bool later) {
  rollouts += 1;
  response_tokens += len;
  verify_steps += steps;
  if (later) {
    later_response_tokens += len;
    later_verify_steps += steps;
  }
  auto& b = buckets.at(length_bucket_of(len));
  b.rollouts += 1;
  b.response_tokens += len;
  b.verify_steps += steps;
  b.drafted_tokens += drafted;
  b.accepted_tokens += accepted;
}

ReplayReport run_replay(const ReplayInput& input, const ReplayOptions& options,
                        const std::function<void(size_t, size_t)>& progress) {
  using clock = std::chrono::steady_clock;
  drafter::Drafter drafter(options.drafter);
  drafter::SpeculationPolicyOptions popts = options.policy;
  if (!options.speculation) popts.mode = drafter::BudgetMode::kOff;
  drafter::SpeculationPolicy policy(popts);
  const drafter::StepCostModel cost = popts.cost;

  ReplayReport rep;
  rep.budget_policy = drafter::to_string(popts.mode);
  rep.cost = cost;
  rep.skipped_lines = static_cast<int64_t>(input.errors.size());
  rep.buckets = length_buckets();

  struct Live {
    const RecordedRollout* r;
    uint64_t uid;
    int64_t pos = 0, steps = 0, drafted = 0, accepted = 0;
  };
  uint64_t next_uid = 1;
  std::vector<drafter::SequenceView> views;
  std::vector<drafter::DraftRequest> requests;
  std::vector<drafter::Draft> drafts;
  std::vector<int32_t> budgets;
  std::vector<double> node_floor;

  for (size_t ri = 0; ri < input.rounds.size(); ++ri) {
    const ReplayRound& round = input.rounds[ri];
    std::vector<Live> all;
    all.reserve(round.rollouts.size());
    for (const auto& r : round.rollouts) {
      all.push_back({&r, next_uid++});
      drafter.begin_request(all.back().uid, r.prompt_id, r.prompt_tokens);
    }
    std::vector<size_t> live;
    for (size_t i = 0; i < all.size(); ++i) {
      if (all[i].r->response_tokens.empty()) {
        drafter.end_request(all[i].uid);
      } else {
        live.push_back(i);
      }
    }
    ReplayRoundStats rs;
    rs.round = round.round;
    rs.rollouts = static_cast<int64_t>(all.size());
    while (!live.empty()) {
      views.clear();
      requests.clear();
      for (const size_t i : live) {
        views.push_back({all[i].uid, all[i].r->prompt_id, static_cast<int32_t>(all[i].pos), 0,
                         static_cast<int32_t>(all[i].r->prompt_tokens.size() + all[i].pos)});
      }
      // Trees as the engine drafts them (speculative_step.cc): node budgets and floors.
      if (popts.token_trees) {
        policy.tree_budgets(views, budgets, node_floor);
      } else {
        policy.budgets(views, budgets);
      }
      for (size_t k = 0; k < live.size(); ++k) {
        requests.push_back({all[live[k]].uid, budgets[k], popts.token_trees,
                            popts.token_trees ? node_floor[k] : 0.0});
      }
      drafts.resize(live.size());
      const auto t0 = clock::now();
      drafter.propose_batch(requests, drafts);
      int64_t verified = 0;
      std::vector<size_t> still;
      still.reserve(live.size());
      for (size_t k = 0; k < live.size(); ++k) {
        Live& s = all[live[k]];
        const auto& resp = s.r->response_tokens;
        const auto& d = drafts[k].tokens;
        const int64_t left = static_cast<int64_t>(resp.size()) - s.pos;
        // The longest root-to-node path matching the recording (a chain's longest matching prefix).
        const int64_t acc = drafter::longest_accepted_path(
            drafts[k], std::span<const int32_t>(resp.data() + s.pos, static_cast<size_t>(left)));
        // Accepted drafts plus the verified token at the first mismatch; a sequence whose accepted
        // drafts reach its recorded end (the stop token) emits nothing more.
        const int64_t emit = std::min(acc + 1, left);
        drafter.observe(s.uid, std::span<const int32_t>(resp.data() + s.pos, static_cast<size_t>(emit)));
        s.pos += emit;
        ++s.steps;
        s.drafted += static_cast<int64_t>(d.size());
        s.accepted += acc;
        policy.observe_acceptance(s.uid, s.r->prompt_id, static_cast<int32_t>(d.size()),
                                  static_cast<int32_t>(acc));
        verified += 1 + static_cast<int64_t>(d.size());
        if (s.pos < static_cast<int64_t>(resp.size())) {
          still.push_back(live[k]);
        } else {
          drafter.end_request(s.uid);
          policy.end_sequence(s.uid);
        }
      }
      rep.drafter_us += std::chrono::duration<double, std::micro>(clock::now() - t0).count();
      // No context term: the static model.
      const auto tokens = static_cast<double>(verified), seqs = static_cast<double>(live.size());
      rs.makespan_us += cost.step_us(tokens, 0, drafter::StepCostModel::multi_token(tokens, seqs));
      rep.verified_tokens += verified;
      ++rs.engine_steps;
      live.swap(still);
    }
    std::vector<int64_t> lengths;
    for (const Live& s : all) {
      const auto len = static_cast<int64_t>(s.r->response_tokens.size());
      lengths.push_back(len);
      rs.plain_steps = std::max(rs.plain_steps, len);
      rep.count_rollout(len, s.steps, s.drafted, s.accepted, ri > 0);
      rep.drafted_tokens += s.drafted;
      rep.accepted_tokens += s.accepted;
      drafter.add_rollout(s.r->prompt_id, s.r->prompt_tokens, s.r->response_tokens, round.round);
      policy.record_finished(s.r->prompt_id, static_cast<int32_t>(std::min<int64_t>(len, INT32_MAX)));
    }
    for (const RecordedRollout& h : round.history) {  // shared history: indexed, not replayed
      drafter.add_rollout(h.prompt_id, h.prompt_tokens, h.response_tokens, round.round);
      policy.record_finished(h.prompt_id, static_cast<int32_t>(std::min<size_t>(h.response_tokens.size(), INT32_MAX)));
    }
    rs.plain_makespan_us = plain_makespan(lengths, cost);
    rep.makespan_us += rs.makespan_us;
    rep.plain_makespan_us += rs.plain_makespan_us;
    rep.engine_steps += rs.engine_steps;
    rep.rounds.push_back(rs);
    drafter.end_round(round.round);
    const auto mem = drafter.memory();
    rep.bytes_per_indexed_token = mem.bytes_per_indexed_token();
    rep.indexed_tokens = mem.indexed_tokens;
    if (progress) progress(ri + 1, input.rounds.size());
  }
  return rep;
}

}  // namespace longtail::rollout
