// Suffix automata over int32 token strings: the index behind every drafting scope (see drafter.h for
// why a SAM rather than a suffix trie).
//  - SamBuilder: mutable, online. Generalized over many strings (add_string) for history shards, or
//    one growing string (append) for a request's own context. Edges live in one open-addressing hash
//    table keyed by (state, token) so every lookup, the root's included, is O(1).
//  - FrozenSam: compact read-only form built from a SamBuilder, with endpos counts. Per state the
//    kTopEdges most frequent edges are stored first, most frequent first (O(1) greedy drafting and
//    tree branching); the rest are sorted by token (binary search for matching). Fields are as
//    small as what reads them needs: suffix links and edge tokens 24-bit; lengths one byte,
//    saturating at 255 (a length is only compared with draft budgets and min_match); counts one
//    byte, with the rare larger ones (short, frequent contexts) in a side table found by rank; an
//    edge's target as a one-byte distance ahead of its source state (most transitions lead to a
//    state created a few steps later), else escaped to the side table; edge ranges as 16-bit
//    offsets from a 32-bit base per 64 states. About 7.5 B per state + 4-5 B per edge, 20-22 B per
//    indexed token and scope (was 12 + 6, ~29 B).
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

// Unsigned values stored in one Small (uint8_t / uint16_t) each; values that do not fit (and
// escaped ones) live in a side table found by rank: a bitmap of escaped positions with a running
// count per 64, so every read is O(1). Costs sizeof(Small) + 0.19 B per value + 4 B per escape.
template <class Small>
class EscapedArray {
 public:
  static constexpr uint32_t kEscape = static_cast<Small>(~Small{0});
  EscapedArray() = default;
  // escape[i] forces value i into the side table (values >= kEscape always go there).
  explicit EscapedArray(const std::vector<uint32_t>& values, const std::vector<bool>* escape = nullptr);
  // The value and whether it came from the side table.
  uint32_t get(size_t i, bool& escaped) const {
    const uint32_t v = small_[i];
    escaped = v == kEscape;
    if (!escaped) return v;
    const size_t w = i >> 6;
    const uint64_t below = bits_[w] & ((uint64_t{1} << (i & 63)) - 1);
    return big_[rank_[w] + static_cast<uint32_t>(__builtin_popcountll(below))];
  }
  uint32_t operator[](size_t i) const {
    bool escaped;
    return get(i, escaped);
  }
  size_t size() const { return small_.size(); }
  int64_t bytes() const;

 private:
  std::vector<Small> small_;
  std::vector<uint64_t> bits_;
  std::vector<uint32_t> rank_;  // escapes before each 64-block
  std::vector<uint32_t> big_;
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
  // Out-edges of a state: edge i < min(degree, kTopEdges) is the i-th most frequent continuation
  // (ties: smaller token first); the rest are in token order.
  static constexpr uint32_t kTopEdges = 4;
  uint32_t degree(int32_t state) const { return edge_begin(state + 1) - edge_begin(state); }
  int32_t edge_token(int32_t state, uint32_t i) const {
    return static_cast<int32_t>(edge_token_[edge_begin(state) + i]);
  }
  int32_t edge_target(int32_t state, uint32_t i) const { return target(state, edge_begin(state) + i); }
  uint32_t count(int32_t state) const { return cnt_[static_cast<size_t>(state)]; }
  // Saturates at kMaxLength.
  int32_t length(int32_t state) const { return len_[static_cast<size_t>(state)]; }
  static constexpr int32_t kMaxLength = 255;
  int32_t suffix_link(int32_t state) const { return static_cast<int32_t>(link_[static_cast<size_t>(state)]); }
  int64_t states() const { return static_cast<int64_t>(len_.size()); }
  int64_t edges() const { return static_cast<int64_t>(edge_token_.size()); }
  int64_t bytes() const;

 private:
  uint32_t edge_begin(int32_t state) const {
    const auto v = static_cast<size_t>(state);
    return edge_base_[v >> 6] + edge_offset_[v];
  }
  int32_t target(int32_t state, uint32_t edge) const {
    bool absolute;
    const uint32_t t = edge_target_.get(edge, absolute);
    return static_cast<int32_t>(absolute ? t : static_cast<uint32_t>(state) + t);
  }

  std::vector<uint8_t> len_;
  U24Array link_;                      // link of the root stored as 0 (never followed)
  EscapedArray<uint8_t> cnt_;
  std::vector<uint32_t> edge_base_;    // first edge of each 64-state block
  EscapedArray<uint16_t> edge_offset_; // size states + 1, relative to the block's base
  U24Array edge_token_;
  EscapedArray<uint8_t> edge_target_;  // distance ahead of the source state, or escaped absolute
};

// Largest token id the history automata can store.
inline constexpr int32_t kMaxHistoryToken = static_cast<int32_t>(U24Array::kMax);

}  // namespace longtail::drafter
