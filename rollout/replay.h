// Offline replay of recorded rollouts through the drafter, without a model (longtail-replay's
// library; the bridge reuses the input readers). Each rollout is "generated" again: at every step the
// drafter proposes from the history of earlier rounds plus the rollout's own context, the longest
// draft prefix matching the recorded response is accepted and one more recorded token is emitted,
// exactly what lossless verification would do. Rollouts of one round run as one batch, so the batch
// drafting API and the speculation policy's budgets are exercised; round makespans are projected
// with the step cost model t = c_base + c_tok * tokens verified by the live batch.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

#include "drafter/drafter.h"
#include "drafter/speculation_policy.h"

namespace longtail::rollout {

struct ReplayRollout {
  std::string prompt_id;
  int64_t sample = 0;
  std::vector<int32_t> prompt_tokens;
  std::vector<int32_t> response_tokens;
  int64_t source_line = 0;  // 1-based JSONL line (or record number in a trajectory log)
  bool history_only = false;  // JSONL "history_only": indexed at its round's end, never replayed
};

struct ReplayRound {
  int64_t round = 0;  // the "step" field, the log's round number, or the --round-size group index
  std::vector<ReplayRollout> rollouts;
  std::vector<ReplayRollout> history;  // another worker's rollouts (shared history): indexed at the
                                       // round's end like this round's own, not replayed or counted
};

enum class OnError { kSkip, kStop };

// A bad input line; what() is "<file>:<line>: <problem>".
class ReplayInputError : public std::runtime_error {
 public:
  ReplayInputError(const std::string& what, int64_t line) : std::runtime_error(what), line_(line) {}
  int64_t line() const { return line_; }

 private:
  int64_t line_;
};

struct ReplayInput {
  std::vector<ReplayRound> rounds;     // in replay order
  std::vector<std::string> errors;     // skipped lines (OnError::kSkip), one message each
};

// Parses one JSONL line ({"prompt_id", "sample", "step"?, "prompt_tokens", "response_tokens"}).
// Throws ReplayInputError naming the line and the problem. Sets has_step/step.
ReplayRollout parse_replay_line(const std::string& line, int64_t line_no, bool& has_step, int64_t& step);

// Reads a JSONL file or a trajectory log (detected by its magic). Lines without "step" are grouped
// into rounds of round_size prompts (all samples of a prompt in the same round). With kStop the
// first bad line throws ReplayInputError; with kSkip it is logged and collected in errors.
ReplayInput read_replay_input(const std::filesystem::path& file, int32_t round_size, OnError on_error);

struct ReplayOptions {
  drafter::DrafterOptions drafter;
  drafter::SpeculationPolicyOptions policy;  // mode, budgets, cost model
  bool speculation = true;                   // false: the no-speculation baseline
};

struct ReplayBucket {
  int64_t lo = 0, hi = 0;                    // response length in [lo, hi); hi = 0: no bound
  int64_t rollouts = 0, response_tokens = 0, verify_steps = 0, drafted_tokens = 0, accepted_tokens = 0;
};

struct ReplayRoundStats {
  int64_t round = 0;
  int64_t rollouts = 0;
  int64_t engine_steps = 0;                  // batch steps until the longest rollout finished
  int64_t plain_steps = 0;                   // longest response = steps without speculation
  double makespan_us = 0;                    // projected, with speculation
  double plain_makespan_us = 0;              // projected, without speculation
};

struct ReplayReport {
  int64_t rollouts = 0;
  int64_t response_tokens = 0;
  int64_t verify_steps = 0;                  // per-sequence verification steps
  int64_t drafted_tokens = 0;
  int64_t accepted_tokens = 0;
  int64_t engine_steps = 0;                  // batch steps over all rounds
  // the same counts for rounds after the first (history available), as the traces README reports
  int64_t later_response_tokens = 0, later_verify_steps = 0;
  double makespan_us = 0, plain_makespan_us = 0;
  double drafter_us = 0;                     // wall time in propose_batch + observe
  double bytes_per_indexed_token = 0;        // at the end of the replay (full window)
  int64_t indexed_tokens = 0;
  int64_t skipped_lines = 0;
  std::string budget_policy;
  drafter::StepCostModel cost;
  std::vector<ReplayRoundStats> rounds;
  std::vector<ReplayBucket> buckets;

  double tokens_per_step() const { return verify_steps ? double(response_tokens) / verify_steps : 0; }
  double later_tokens_per_step() const {
    return later_verify_steps ? double(later_response_tokens) / later_verify_steps : 0;
  }
  double acceptance_rate() const { return drafted_tokens ? double(accepted_tokens) / drafted_tokens : 0; }
  double projected_speedup() const { return makespan_us > 0 ? plain_makespan_us / makespan_us : 1; }
  double drafter_us_per_step() const { return engine_steps ? drafter_us / engine_steps : 0; }
};

// progress(rounds_done, rounds_total) is called after each round when set.
ReplayReport run_replay(const ReplayInput& input, const ReplayOptions& options,
                        const std::function<void(size_t, size_t)>& progress = {});

std::string report_json(const ReplayReport& r);   // one JSON object
std::string report_table(const ReplayReport& r);  // human-readable
std::string report_svg(const ReplayReport& r);    // acceptance and step speedup by length bucket

}  // namespace longtail::rollout
