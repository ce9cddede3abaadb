// The replay tool's input: recorded rollouts grouped into rounds, from a rollout-JSONL file
// (rollout/rollout_jsonl.h) or a trajectory log (rollout/trajectory_log.h, told apart by its magic).
// Shared by longtail-replay, longtail-stream and the drafter benchmarks.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "rollout/rollout_jsonl.h"

namespace longtail::rollout {

struct ReplayRound {
  int64_t round = 0;  // the lines' "step", the log's round number, or the round_size group index
  std::vector<RecordedRollout> rollouts;
  std::vector<RecordedRollout> history;  // another worker's rollouts (shared history, JSONL
                                         // "history_only"): indexed at the round's end like this
                                         // round's own, not replayed or counted
};

// A bad input line or record; what() is "<file>:<line>: <problem>" (or the log's byte offset).
using ReplayInputError = RolloutFormatError;

struct ReplayInput {
  std::vector<ReplayRound> rounds;  // in replay order
  std::vector<std::string> errors;  // skipped lines (OnError::kSkip), one message each
};

// Reads a JSONL file or a trajectory log. JSONL lines with a "step" go to that round; lines without
// one are grouped into rounds of round_size prompts in order of first appearance (all samples of a
// prompt in the same round; round_size 0 = one round). Rounds come out in increasing order. With
// kStop the first bad line throws ReplayInputError; with kSkip it is logged (spdlog warn, stderr in
// the tools) and collected in errors. A log record with a negative token id counts as a bad line;
// a corrupt log record ends the readable part of the log.
ReplayInput read_replay_input(const std::filesystem::path& file, int32_t round_size, OnError on_error);

}  // namespace longtail::rollout
