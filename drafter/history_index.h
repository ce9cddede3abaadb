// Windowed rollout history, sharded for eviction: one frozen suffix automaton per prompt id over its
// rollouts in the window, and one over all rollouts in the window (global scope, trimmed oldest
// first to a token budget). Inserts are staged and published by end_round(), which evicts and
// rebuilds only the shards that changed; generation() tells readers that automata were replaced.
// Each rollout's text (prompt tail + response) is stored once and shared by both scopes.
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "drafter/suffix_automaton.h"

namespace longtail::drafter {

struct HistoryOptions {
  int32_t window_rounds = 8;
  int64_t global_token_budget = 4'000'000;
  int64_t prompt_token_budget = 1'000'000;
  bool build_global = true;
  bool build_prompt = true;
};

class HistoryIndex {
 public:
  explicit HistoryIndex(HistoryOptions options);

  // Stages a rollout's indexed text (already prompt-tail + response) for `round`.
  void insert(std::string_view prompt_id, std::vector<int32_t> text, int64_t round);
  // Publishes staged rollouts, evicts rounds <= round - window and over-budget rollouts, rebuilds.
  void end_round(int64_t round);

  // nullptr when the prompt has no visible history. Valid until the next end_round().
  const FrozenSam* prompt_sam(std::string_view prompt_id) const;
  const FrozenSam* global_sam() const { return global_.empty() ? nullptr : &global_; }
  uint64_t generation() const { return generation_; }

  int64_t indexed_tokens() const { return indexed_tokens_; }
  int64_t bytes() const;  // automata + stored text
  int64_t prompt_scopes() const { return static_cast<int64_t>(prompts_.size()); }
  // Visible rollouts of a prompt, oldest first (tests and tools).
  std::vector<std::span<const int32_t>> prompt_rollouts(std::string_view prompt_id) const;
  std::vector<std::span<const int32_t>> global_rollouts() const;

 private:
  struct Rollout {
    int64_t round;
    std::shared_ptr<const std::vector<int32_t>> text;
  };
  struct PromptShard {
    std::deque<Rollout> visible;
    int64_t tokens = 0;
    FrozenSam sam;
    bool dirty = false;
  };
  struct Staged {
    std::string prompt_id;
    Rollout rollout;
  };

  HistoryOptions options_;
  std::unordered_map<std::string, PromptShard> prompts_;
  std::deque<Rollout> global_list_;
  int64_t global_tokens_ = 0;
  FrozenSam global_;
  std::vector<Staged> staged_;
  uint64_t generation_ = 0;
  int64_t indexed_tokens_ = 0;  // unique stored tokens visible in any scope
};

}  // namespace longtail::drafter
