// Baseline for the drafter benchmarks: an ArcticInference/SuffixDecoding-style depth-limited suffix
// trie with frequency counts (per-request trie of the own prompt + output, per-prompt trie over the
// window, global trie), speculated as ArcticInference's SuffixTree::speculate does: the pattern is
// the last `depth` tokens; every match length 1 .. |pattern|-1 is walked from the root (stopping at
// the first that does not occur), each drafts the greedy most-frequent path (path probability =
// product of child/parent counts, stop below min_prob) of at most min(budget, match_len * factor)
// tokens, and the best score (sum of path probabilities; ties: the longer match) wins. Across the
// trees the first-scoring one wins unless another scores strictly more (own, prompt, global order,
// as ArcticInference's local-then-global). Same interface as drafter::Drafter so the benchmarks drive
// both through one simulation.
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "drafter/drafter.h"

namespace longtail::bench {

class SuffixTrie {
 public:
  explicit SuffixTrie(int32_t depth);
  void insert(std::span<const int32_t> tokens);               // every suffix, up to depth tokens
  void append(int32_t token);                                 // own-context: extend active suffixes
  // ArcticInference's speculate over every match length of the last `depth` tokens of ctx; `out`
  // (cleared first) gets the best-scored path draft and its match length.
  void speculate(std::span<const int32_t> ctx, int32_t budget, double factor, double min_prob,
                 drafter::Draft& out) const;
  void draft(int32_t node, int32_t budget, double min_prob, drafter::Draft& out) const;
  int64_t bytes() const;

 private:
  // Nodes: count, token, most frequent child (counts only grow, so the max is kept in O(1)).
  // Children: one open-addressing table keyed by (node, token), so the baseline is not penalised by
  // per-node containers; its cost is the O(depth) nodes per indexed token and the re-walks.
  int32_t find(int32_t node, int32_t token) const;
  int32_t child(int32_t node, int32_t token);  // creates
  void bump(int32_t parent, int32_t node);
  void grow();
  int32_t depth_;
  std::vector<int32_t> count_, token_, best_;
  std::vector<uint64_t> keys_;
  std::vector<int32_t> vals_;
  uint64_t mask_ = 0;
  int64_t used_ = 0;
  std::deque<int32_t> active_;  // own-context: nodes of the current suffixes
};

struct TrieDrafterOptions {
  int32_t depth = 64;
  int32_t window_rounds = 8;
  double min_prob = 0.1;
  double max_spec_factor = 1.0;  // draft <= match_len * factor tokens (ArcticInference default 1)
  bool use_own = true;           // per-request trie of prompt + output (ArcticInference's local tree)
  bool use_prompt = true;        // per-prompt trie (DAS; not in ArcticInference, in the traces README)
  bool use_global = true;
  int32_t prompt_tail_tokens = 32;
};

class TrieDrafter {
 public:
  explicit TrieDrafter(TrieDrafterOptions o = {}) : o_(o) {}
  void begin_request(uint64_t uid, std::string_view prompt_id, std::span<const int32_t> prompt);
  void observe(uint64_t uid, std::span<const int32_t> accepted);
  void end_request(uint64_t uid) { requests_.erase(uid); }
  void add_rollout(std::string_view prompt_id, std::span<const int32_t> prompt,
                   std::span<const int32_t> response, int64_t round);
  void end_round(int64_t round);
  void propose(uint64_t uid, int32_t budget, drafter::Draft& out);
  void propose_batch(std::span<const drafter::DraftRequest> reqs, std::span<drafter::Draft> out) {
    for (size_t i = 0; i < reqs.size(); ++i) propose(reqs[i].uid, reqs[i].budget, out[i]);
  }
  int64_t index_bytes() const;
  int64_t indexed_tokens() const;

 private:
  struct Request {
    std::string prompt_id;
    std::vector<int32_t> text;
    std::unique_ptr<SuffixTrie> own;
  };
  struct Stored {
    std::string prompt_id;
    int64_t round;
    std::vector<int32_t> text;
  };
  TrieDrafterOptions o_;
  std::unordered_map<uint64_t, Request> requests_;
  std::vector<Stored> staged_, visible_;
  std::unordered_map<std::string, std::unique_ptr<SuffixTrie>> prompt_tries_;
  std::unique_ptr<SuffixTrie> global_;
};

}  // namespace longtail::bench
