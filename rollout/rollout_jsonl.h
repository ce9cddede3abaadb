// The rollout-JSONL format: recorded rollouts, one JSON object per line, as in /work/shared/traces,
// written by testing/workload.h and `longtail-replay --export jsonl`, read by longtail-replay,
// longtail-stream, longtail-generate --history, longtail-bench-rounds --trace and the engine's
// trace-forced mode. This is the only parser of that format.
//
// The rule, field by field (other fields are ignored, so richer exports stay readable):
//   prompt_id        required; a string, or an integer (kept as its decimal text)
//   sample           required; an integer in [0, 2^31)
//   step             optional (absent or null = none); an integer in [0, 2^63): the training step
//                    (round) the rollout belongs to
//   prompt_tokens    required; an array of integers in [0, 2^31)
//   response_tokens  required; the same
//   history_only     optional (absent or null = false); a boolean: the rollout is another worker's,
//                    indexed by replay's drafter at its round's end but never replayed or counted
// Blank lines are skipped. A bad line is reported as "<file>:<line>: <problem>".
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace longtail::rollout {

// One recorded rollout.
struct RecordedRollout {
  std::string prompt_id;
  int32_t sample = 0;
  std::optional<int64_t> step;
  std::vector<int32_t> prompt_tokens;
  std::vector<int32_t> response_tokens;
  bool history_only = false;
  int64_t source_line = 0;  // 1-based line in its file (record number when read from a log)
};

// A line (or a whole file) that breaks the rule. what() names the file when known and the line:
// "<file>:<line>: <problem>", or "line <line>: <problem>" from parse_rollout_line.
class RolloutFormatError : public std::runtime_error {
 public:
  RolloutFormatError(const std::string& what, int64_t line) : std::runtime_error(what), line_(line) {}
  int64_t line() const { return line_; }

 private:
  int64_t line_;
};

// Parses one line; throws RolloutFormatError("line <line_no>: <problem>").
RecordedRollout parse_rollout_line(std::string_view line, int64_t line_no);

// Bad-line policy of read_rollout_jsonl.
enum class OnError { kStop, kSkip };

// Reads every rollout of `file` in order and hands it to `sink`. With kStop the first bad line
// throws RolloutFormatError; with kSkip the line's message goes to `skipped` (when set) and reading
// goes on. A file that cannot be opened always throws (line 0).
void read_rollout_jsonl(const std::filesystem::path& file, OnError on_bad,
                        const std::function<void(RecordedRollout&&)>& sink,
                        const std::function<void(const RolloutFormatError&)>& skipped = {});

// The whole file, kStop.
std::vector<RecordedRollout> read_rollout_jsonl(const std::filesystem::path& file);

// One line of the format (no newline); `step` is written when set.
std::string rollout_jsonl_line(const RecordedRollout& r);

}  // namespace longtail::rollout
