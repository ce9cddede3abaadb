// The mode comparison shared by longtail-demo and longtail-bench-rounds: the same prompt groups run
// through the engine once per mode -- speculation off (the baseline), speculation on (DAS budgets),
// speculation on with partial rollouts (APRIL overprovision f) -- each mode on a fresh backend, and
// every mode's trajectories are compared with the baseline's by uid (every mode submits the same
// groups in the same order, so a sample has the same uid, hence the same RNG stream, in every mode).
// Speculation and partial rollouts must not change a token or a logprob bit; on the bf16 CUDA
// backend a near-tie can flip, which divergence() locates.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "policy/backend.h"
#include "rollout/engine.h"
#include "rollout/engine_options_io.h"

namespace longtail::tools {

struct Mode {
  std::string name;     // as the tool reports it ("off", "das", "das+apr", ...)
  bool speculation = false;
  double overprovision = 1.0;
};

struct ModeRun {
  Mode mode;
  double wall_s = 0;
  std::vector<rollout::RoundStats> rounds;
  rollout::EngineStats stats;
  std::map<uint64_t, rollout::Trajectory> trajectories;  // by uid: the same sample in every mode
  size_t graph_replays = 0, graphs_captured = 0, graph_eager = 0, ungraphable = 0;  // CUDA passes
  double graph_capture_s = 0;  // host seconds in those captures (part of the rounds' makespans)
};

struct ModeRunOptions {
  std::filesystem::path model;  // checkpoint; also what each weight update reloads
  int32_t rounds = 1;           // batches to collect
  bool update_weights = false;  // reload the checkpoint as version r after round r (as a trainer)
  // Called before the first step, to add drafter history (engine.add_history).
  std::function<void(rollout::Engine&)> prepare;
  std::function<void(const Mode&, int32_t done, int32_t total)> progress;
  // Called after every engine step that ran a forward, with that step's statistics.
  std::function<void(const Mode&, const rollout::StepStats&)> on_step;
};

// The engine settings of a mode: `base` with speculation off when the mode has none (its budgets
// otherwise), and the mode's overprovision. A trajectory_log PATH becomes PATH.<mode name> (other
// characters than letters, digits and "+=._-" as '_'): the modes number their samples alike, so one
// file would hold every trajectory once per mode under the same uid.
rollout::EngineSettings mode_settings(const rollout::EngineSettings& base, const Mode& mode);

// Builds a backend from settings.backend (make_engine_backend, so accounting too), submits every
// group up front (so sample uids match across modes) and steps until `rounds` batches came out (a
// short last round is flushed). Throws std::runtime_error when the engine goes idle first; a
// checkpoint that does not load throws policy::LoadError.
ModeRun run_mode(const Mode& mode, const rollout::EngineSettings& base, const std::vector<rollout::GroupRequest>& groups,
                 const ModeRunOptions& options);

// Bitwise equality of two logprob lists (NaN equals NaN when its bits do).
bool same_bits(const std::vector<float>& a, const std::vector<float>& b);

// How behaviour logprobs are compared. Bit for bit, NaN included, is the rule for runs that sample.
// In a trace-forced run a forced token the engine did not score (speculation off, or the token
// after a rejected draft) carries NaN while another mode may have scored it in a verify: there the
// positions where both modes scored the token are compared, bit for bit.
enum class LogprobRule { kBitwise, kWhereBothScored };

// Trajectories of `m` missing or different from the baseline's: tokens, behaviour logprobs (by
// `rule`) or finish reason, plus any that `m` has and the baseline lacks.
int64_t mismatches(const ModeRun& base, const ModeRun& m, LogprobRule rule = LogprobRule::kBitwise);

// Where `m` first differs from the baseline, per differing sequence.
struct Divergence {
  int64_t sequences = 0, differing = 0;
  std::vector<int64_t> first_position;  // per differing sequence
  std::vector<double> logprob_gap;      // |lp_base(tok_base) - lp_m(tok_m)| at that position
  double max_logprob_diff_before = 0;   // largest |lp_base - lp_m| on the shared prefixes
  int64_t logprobs_only = 0;            // same tokens, logprobs not bitwise equal
};
Divergence divergence(const ModeRun& base, const ModeRun& m);

// A round's (or a step's) stats for the tools' --json: every RoundStats (StepStats) field under
// its wire name, from the one field list (rollout/types.h for_each_field) the protocol uses too.
// Json: nlohmann::json or nlohmann::ordered_json.
template <class Json, class Stats>
Json stats_json(const Stats& s) {
  Json j = Json::object();
  rollout::for_each_field(s, [&](const char* name, const auto& value) { j[name] = value; });
  return j;
}

}  // namespace longtail::tools
