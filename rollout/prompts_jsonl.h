// Prompt files: what longtail-demo --prompts, longtail-generate --prompts and longtail-generate
// --score read, one JSON object per line. Not the rollout-JSONL format (rollout_jsonl.h): a prompt
// has no sample and maybe no response yet. Other fields are ignored, so every rollout-JSONL line is
// also a prompt line (python -m examples.task prompts writes them so). This is the only reader of
// the format.
//
// The rule, field by field:
//   prompt_tokens    required; a non-empty array of integers in [0, 2^31)
//   prompt_id        optional (absent or null = none); a string, or an integer (kept as its decimal
//                    text)
//   response_tokens  required when the caller scores responses (Responses::kRequired), else
//                    ignored; an array of integers in [0, 2^31), may be empty
// Blank lines are skipped; a file without a prompt is an error. A bad line is reported as
// "<file>:<line>: <problem>", the problem naming the field and, for a bad token, its index.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace longtail::rollout {

struct PromptLine {
  std::vector<int32_t> prompt_tokens;
  std::optional<std::string> prompt_id;
  std::vector<int32_t> response_tokens;  // Responses::kRequired only
  int64_t source_line = 0;               // 1-based line in its file
};

// what() is "<file>:<line>: <problem>", or "<file>: <problem>" for the whole file (line 0).
class PromptFormatError : public std::runtime_error {
 public:
  PromptFormatError(const std::string& what, int64_t line) : std::runtime_error(what), line_(line) {}
  int64_t line() const { return line_; }

 private:
  int64_t line_;
};

enum class Responses { kIgnored, kRequired };

// Every prompt of `file`, in order; throws PromptFormatError at the first bad line.
std::vector<PromptLine> read_prompts_jsonl(const std::filesystem::path& file,
                                           Responses responses = Responses::kIgnored);

// The model's side of the rule, which the file cannot know: empty when every id is below `vocab`,
// else "<what> token <id> at index <i> is outside the model's vocabulary of <vocab>" for the first
// one that is not (`what`: "prompt", "response", "stop"). Callers prefix where the ids came from.
std::string vocabulary_problem(std::span<const int32_t> ids, int32_t vocab, std::string_view what);

}  // namespace longtail::rollout
