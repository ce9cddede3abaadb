// Replay of recorded rollouts as a fleet of K workers would generate them (longtail-replay
// --workers K --routing affine|random [--shared-history]). A prompt's drafter history lives on the
// worker that generated it, so how the fleet routes prompts decides what each worker can draft from.
// Each round's groups (the rollouts of one prompt in one round) are split over the workers exactly
// as longtail.fleet routes them (trainer_bridge/python/longtail/fleet_routing.py: the same hash,
// ring, load bound and placement order, so affine splits are identical), every worker's share is
// replayed on its own drafter, and the round lasts as long as its slowest worker.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <random>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

#include "rollout/replay_simulation.h"

namespace longtail::rollout {

enum class FleetRouting { kAffine, kRandom };

struct FleetReplayOptions {
  int32_t workers = 1;
  FleetRouting routing = FleetRouting::kAffine;
  double eps = 0.25;                 // load bound: a worker may hold (1 + eps) x the mean queued tokens
  int32_t virtual_nodes = 128;       // ring points per worker
  bool shared_history = false;       // every worker also indexes the others' rollouts (HISTORY)
  int64_t max_new_tokens = 4096;     // the router's per-sample load estimate, as a fleet's groups ask
  uint64_t seed = 0;                 // random routing
};

// 64-bit FNV-1a of the bytes, then the splitmix64 finalizer (fleet_routing.ring_hash).
uint64_t ring_hash(std::string_view text);

// Consistent hashing of prompt ids over workers with bounded load (fleet_routing.Router).
class FleetRouter {
 public:
  FleetRouter(int32_t workers, const FleetReplayOptions& options);
  // Chooses a worker for a group of `tokens` (pending: tokens of the burst still to be placed).
  int32_t route(const std::string& prompt_id, int64_t tokens, int64_t pending);
  void release(int32_t worker, int64_t tokens);

 private:
  std::vector<int32_t> ring_order(const std::string& prompt_id) const;
  // (point, worker name "w<i>", worker index), sorted by point then name as fleet_routing's ring
  std::vector<std::tuple<uint64_t, std::string, int32_t>> ring_;
  std::vector<int64_t> load_;
  std::map<std::string, int32_t> sticky_;  // prompts placed off their home worker
  FleetRouting routing_;
  double eps_;
  std::mt19937_64 rng_;
};

// The input split into one input per worker. With shared history each worker's round also carries
// the other workers' rollouts of that round as ReplayRound::history.
std::vector<ReplayInput> split_for_fleet(const ReplayInput& input, const FleetReplayOptions& options);

struct FleetReplayReport {
  std::vector<ReplayReport> workers;
  int64_t rollouts = 0, response_tokens = 0, verify_steps = 0;
  double makespan_us = 0, plain_makespan_us = 0;  // sum over rounds of the slowest worker
  double tokens_per_step() const { return verify_steps ? double(response_tokens) / verify_steps : 0; }
  double projected_speedup() const { return makespan_us > 0 ? plain_makespan_us / makespan_us : 1; }
};

FleetReplayReport run_fleet_replay(const ReplayInput& input, const ReplayOptions& options,
                                   const FleetReplayOptions& fleet);
// The same with each worker's share replayed by `replay` (longtail-replay passes the engine model,
// replay_engine.h; the overload above, the static simulation).
FleetReplayReport run_fleet_replay(const ReplayInput& input, const FleetReplayOptions& fleet,
                                   const std::function<ReplayReport(const ReplayInput&)>& replay);

std::string fleet_report_json(const FleetReplayReport& r, const FleetReplayOptions& fleet);

}  // namespace longtail::rollout
