// Recorded rollouts replayed as a K-worker fleet; see replay_fleet.h. The router mirrors
// trainer_bridge/python/longtail/fleet_routing.py step for step (tests/replay/replay_fleet_test.cc
// pins the hash values both sides share).
#include "rollout/replay_fleet.h"

#include <algorithm>
#include <numeric>
#include <stdexcept>

#include <nlohmann/json.hpp>

namespace longtail::rollout {

uint64_t ring_hash(std::string_view text) {
  uint64_t h = 0xCBF29CE484222325ull;
  for (const unsigned char c : text) h = (h ^ c) * 0x100000001B3ull;
  h = (h ^ (h >> 30)) * 0xBF58476D1CE4E5B9ull;
  h = (h ^ (h >> 27)) * 0x94D049BB133111EBull;
  return h ^ (h >> 31);
}

namespace {
std::string worker_name(int32_t w) { return "w" + std::to_string(w); }
}  // namespace

FleetRouter::FleetRouter(int32_t workers, const FleetReplayOptions& o)
    : load_(static_cast<size_t>(workers), 0), routing_(o.routing), eps_(o.eps), rng_(o.seed) {
  if (workers < 1) throw std::invalid_argument("fleet replay: --workers must be >= 1");
  if (!(o.eps >= 0)) throw std::invalid_argument("fleet replay: eps must be >= 0");
  if (o.virtual_nodes < 1) throw std::invalid_argument("fleet replay: virtual nodes must be >= 1");
  for (int32_t w = 0; w < workers; ++w) {
    for (int32_t i = 0; i < o.virtual_nodes; ++i) {
      ring_.emplace_back(ring_hash(worker_name(w) + "#" + std::to_string(i)), worker_name(w), w);
    }
  }
  std::sort(ring_.begin(), ring_.end());
}

std::vector<int32_t> FleetRouter::ring_order(const std::string& prompt_id) const {
  const uint64_t h = ring_hash(prompt_id);
  const auto it = std::lower_bound(ring_.begin(), ring_.end(), h,
                                   [](const auto& point, uint64_t v) { return std::get<0>(point) < v; });
  const size_t start = static_cast<size_t>(it - ring_.begin()) % ring_.size();
  std::vector<int32_t> order;
  for (size_t k = 0; k < ring_.size() && order.size() < load_.size(); ++k) {
    const int32_t w = std::get<2>(ring_[(start + k) % ring_.size()]);
    if (std::find(order.begin(), order.end(), w) == order.end()) order.push_back(w);
  }
  return order;
}

int32_t FleetRouter::route(const std::string& prompt_id, int64_t tokens, int64_t pending) {
  const auto k = static_cast<int32_t>(load_.size());
  int32_t chosen = 0;
  if (routing_ == FleetRouting::kRandom) {
    chosen = static_cast<int32_t>(std::uniform_int_distribution<int32_t>(0, k - 1)(rng_));
  } else {
    const int64_t total = std::accumulate(load_.begin(), load_.end(), int64_t{0}) + tokens + pending;
    const double bound = (1.0 + eps_) * static_cast<double>(total) / k;
    auto fits = [&](int32_t w) { return static_cast<double>(load_[w] + tokens) <= bound; };
    const auto order = ring_order(prompt_id);
    const auto sticky = sticky_.find(prompt_id);
    if (sticky != sticky_.end() && fits(sticky->second)) {
      chosen = sticky->second;
    } else {
      chosen = -1;
      for (size_t i = 0; i < order.size() && chosen < 0; ++i) {
        if (!fits(order[i])) continue;
        chosen = order[i];
        if (i == 0) {
          sticky_.erase(prompt_id);
        } else {
          sticky_[prompt_id] = chosen;
        }
      }
      if (chosen < 0) {  // no worker has room: the least loaded, earliest on the ring on ties
        chosen = order[0];
        for (const int32_t w : order) {
          if (load_[w] < load_[chosen]) chosen = w;
        }
        sticky_[prompt_id] = chosen;
      }
    }
  }
  load_[chosen] += tokens;
  return chosen;
}

void FleetRouter::release(int32_t worker, int64_t tokens) {
  load_[worker] = std::max<int64_t>(0, load_[worker] - tokens);
}

std::vector<ReplayInput> split_for_fleet(const ReplayInput& input, const FleetReplayOptions& o) {
  const auto k = static_cast<size_t>(o.workers);
  FleetRouter router(o.workers, o);
  std::vector<ReplayInput> out(k);
  for (auto& w : out) w.errors = input.errors;
  for (const ReplayRound& round : input.rounds) {
    // A group = the rollouts of one prompt in this round, in order of first appearance.
    std::vector<std::string> prompts;
    std::map<std::string, std::vector<const RecordedRollout*>> groups;
    for (const auto& r : round.rollouts) {
      auto& g = groups[r.prompt_id];
      if (g.empty()) prompts.push_back(r.prompt_id);
      g.push_back(&r);
    }
    std::vector<int64_t> tokens(prompts.size());
    for (size_t i = 0; i < prompts.size(); ++i) {
      const auto& g = groups[prompts[i]];
      tokens[i] = static_cast<int64_t>(g.size()) *
                  (static_cast<int64_t>(g.front()->prompt_tokens.size()) + o.max_new_tokens);
    }
    // Placement in ring order, as fleet_routing.placement_order.
    std::vector<size_t> order(prompts.size());
    std::iota(order.begin(), order.end(), size_t{0});
    std::stable_sort(order.begin(), order.end(),
                     [&](size_t a, size_t b) { return ring_hash(prompts[a]) < ring_hash(prompts[b]); });
    int64_t left = std::accumulate(tokens.begin(), tokens.end(), int64_t{0});
    std::vector<ReplayRound> parts(k);
    std::vector<std::pair<int32_t, int64_t>> placed;
    for (const size_t i : order) {
      left -= tokens[i];
      const int32_t w = router.route(prompts[i], tokens[i], left);
      placed.emplace_back(w, tokens[i]);
      for (const RecordedRollout* r : groups[prompts[i]]) {
        parts[static_cast<size_t>(w)].rollouts.push_back(*r);
        if (!o.shared_history) continue;
        for (size_t other = 0; other < k; ++other) {
          if (other != static_cast<size_t>(w)) parts[other].history.push_back(*r);
        }
      }
    }
    for (const auto& [w, t] : placed) router.release(w, t);  // the round is delivered
    for (size_t w = 0; w < k; ++w) {
      parts[w].round = round.round;
      if (!parts[w].rollouts.empty() || !parts[w].history.empty()) out[w].rounds.push_back(std::move(parts[w]));
    }
  }
  return out;
}

FleetReplayReport run_fleet_replay(const ReplayInput& input, const ReplayOptions& options,
                                   const FleetReplayOptions& fleet) {
  return run_fleet_replay(input, fleet, [&](const ReplayInput& part) { return run_replay(part, options); });
}

FleetReplayReport run_fleet_replay(const ReplayInput& input, const FleetReplayOptions& fleet,
                                   const std::function<ReplayReport(const ReplayInput&)>& replay) {
  FleetReplayReport rep;
  std::map<int64_t, std::pair<double, double>> slowest;  // round -> (makespan, plain makespan)
  for (const ReplayInput& part : split_for_fleet(input, fleet)) {
    rep.workers.push_back(replay(part));
    const ReplayReport& r = rep.workers.back();
    rep.rollouts += r.rollouts;
    rep.response_tokens += r.response_tokens;
    rep.verify_steps += r.verify_steps;
    for (const auto& rs : r.rounds) {
      auto& s = slowest[rs.round];
      s.first = std::max(s.first, rs.makespan_us);
      s.second = std::max(s.second, rs.plain_makespan_us);
    }
  }
  for (const auto& [round, s] : slowest) {
    rep.makespan_us += s.first;
    rep.plain_makespan_us += s.second;
  }
  return rep;
}

std::string fleet_report_json(const FleetReplayReport& r, const FleetReplayOptions& fleet) {
  nlohmann::json j;
  j["workers"] = fleet.workers;
  j["routing"] = fleet.routing == FleetRouting::kAffine ? "affine" : "random";
  j["shared_history"] = fleet.shared_history;
  j["rollouts"] = r.rollouts;
  j["response_tokens"] = r.response_tokens;
  j["verify_steps"] = r.verify_steps;
  j["tokens_per_step"] = r.tokens_per_step();
  j["projected_speedup"] = r.projected_speedup();
  j["makespan_us"] = r.makespan_us;
  j["plain_makespan_us"] = r.plain_makespan_us;
  nlohmann::json per = nlohmann::json::array();
  for (const auto& w : r.workers) {
    per.push_back({{"rollouts", w.rollouts}, {"tokens_per_step", w.tokens_per_step()},
                   {"indexed_tokens", w.indexed_tokens}});
  }
  j["per_worker"] = per;
  return j.dump();
}

}  // namespace longtail::rollout
