// Suffix automata over int32 token strings: the index behind every drafting scope (see drafter.h for
// why a SAM rather than a suffix trie).
//  - SamBuilder: mutable, online. Generalized over many strings (add_string) for history shards, or
//    one growing string (append) for a request's own context. Edges live in one open-addressing hash
//    table keyed by (state, token) so every lookup, the root's included, is O(1).
//  - FrozenSam: compact read-only form built from a SamBuilder, with endpos counts. Per state the
//    most frequent edge is stored first (O(1) greedy drafting); the rest are sorted by token (binary
//    search for matching). Every field is a 24-bit integer (states, edges, lengths < 2^24; counts
//    saturate at 2^24 - 1; token ids < 2^24): 12 B per state + 6 B per edge, about 27 B per
//    indexed token, so both scopes plus the stored text stay under 64 B per history token.
#pragma once

#include <cstdint>
#include <cstring>
#include <span>
#include <vector>

namespace longtail::drafter {

class SamBuilder {
 public:
  SamBuilder();
  // Adds one whole string to a generalized automaton (occurrence counts included).
  void add_string(std::span<const int32_t> tokens);
  // Appends one token to the single growing string (own-context mode; do not mix with add_string).
  void append(int32_t token);

  // Own-context query: the longest suffix of the appended string that also ends earlier. Returns its
  // length and the earliest position where it ends (index into text()), or length 0.
  int32_t longest_repeat(int64_t& earlier_end) const;
  // Same length, but a recent earlier end: the latest one when that occurrence was within
  // kRecentChain suffix links of its end state (the update is capped to keep append O(1)), else an
  // older one. Recent text predicts a drifting sequence better than its first occurrence.
  int32_t recent_repeat(int64_t& earlier_end) const;
  static constexpr int kRecentChain = 4;
  const std::vector<int32_t>& text() const { return text_; }
  int64_t states() const { return static_cast<int64_t>(len_.size()); }
  int64_t bytes() const;

  friend class FrozenSam;

 private:
  int32_t extend(int32_t last, int32_t token);
  int32_t new_state(int32_t len, int32_t link, int32_t firstpos);
  int32_t find_edge(int32_t state, int32_t token) const;  // edge index or -1
  void add_edge(int32_t state, int32_t token, int32_t target);
  void grow_table();

  // states
  std::vector<int32_t> len_, link_, firstpos_, edge_head_;
  std::vector<int32_t> lastpos_, prevpos_;  // own-context mode: a recent end and the one before it
  std::vector<uint32_t> cnt_;  // own end positions (accumulated along links on freeze)
  // edges: singly linked per state (for cloning), indexed by the hash table
  std::vector<int32_t> edge_token_, edge_target_, edge_next_;
  std::vector<uint64_t> table_keys_;
  std::vector<int32_t> table_vals_;
  uint64_t table_mask_ = 0;
  int64_t table_used_ = 0;
  int32_t last_ = 0;          // own-context mode
  int64_t pos_ = 0;           // positions consumed (firstpos)
  std::vector<int32_t> text_; // own-context mode only
};

// Unsigned 24-bit integers packed 3 bytes each (one padding byte so reads can load 4 bytes).
class U24Array {
 public:
  static constexpr uint32_t kMax = 0xFFFFFF;
  U24Array() = default;
  explicit U24Array(const std::vector<uint32_t>& values);
  uint32_t operator[](size_t i) const {
    uint32_t v;
    std::memcpy(&v, bytes_.data() + 3 * i, 4);
    return v & kMax;
  }
  size_t size() const { return size_; }
  int64_t bytes() const { return static_cast<int64_t>(bytes_.capacity()); }

 private:
  std::vector<uint8_t> bytes_;
  size_t size_ = 0;
};

// Position of a live match in a FrozenSam: the state and how many tokens of context match.
struct SamMatch {
  int32_t state = 0;
  int32_t length = 0;
};

class FrozenSam {
 public:
  FrozenSam() = default;
  // Throws std::length_error when the automaton does not fit 24-bit fields (more than ~8M tokens).
  explicit FrozenSam(const SamBuilder& built);

  bool empty() const { return len_.size() <= 1; }
  int32_t find(int32_t state, int32_t token) const;  // target state or -1
  // One token of context: follow the edge, or fall back along suffix links (amortised O(1)).
  void advance(SamMatch& m, int32_t token) const;
  // Greedy most-frequent path from m: appends up to budget tokens while cnt(path)/cnt(start) stays
  // >= min_prob. probs[i] = path probability up to token i.
  // prior > 0 shrinks the estimate of rarely seen contexts: cnt(path) / (cnt(start) + prior).
  // Tokens past the first `soft_budget` also need path probability >= extend_prob (>= 1: none).
  void draft(const SamMatch& m, int32_t budget, double min_prob, std::vector<int32_t>& tokens,
             std::vector<float>& probs, double prior = 0.0, int32_t soft_budget = -1,
             double extend_prob = 1.0) const;
  uint32_t count(int32_t state) const { return cnt_[static_cast<size_t>(state)]; }
  int32_t length(int32_t state) const { return static_cast<int32_t>(len_[static_cast<size_t>(state)]); }
  int32_t suffix_link(int32_t state) const { return static_cast<int32_t>(link_[static_cast<size_t>(state)]); }
  int64_t states() const { return static_cast<int64_t>(len_.size()); }
  int64_t edges() const { return static_cast<int64_t>(edge_token_.size()); }
  int64_t bytes() const;

 private:
  U24Array len_, link_, cnt_;  // link of the root stored as 0 (never followed)
  U24Array edge_begin_;        // size states + 1
  U24Array edge_token_, edge_target_;
};

// Largest token id the history automata can store.
inline constexpr int32_t kMaxHistoryToken = static_cast<int32_t>(U24Array::kMax);

}  // namespace longtail::drafter
