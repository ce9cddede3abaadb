// Suffix automata over int32 token strings: the index behind every drafting scope (see drafter.h for
// why a SAM rather than a suffix trie).
//  - SamBuilder: mutable, online. Generalized over many strings (add_string) for history shards, or
//    one growing string (append) for a request's own context. A state's first edge lives in its
//    record (most states have one), further edges in one open-addressing hash table keyed by
//    (state, token), so every lookup, the root's included, is O(1).
//  - FrozenSam: compact read-only form built from a SamBuilder, with endpos counts. Per state the
//    kTopEdges most frequent edges are stored first, most frequent first (O(1) greedy drafting and
//    tree branching); the rest are sorted by token (binary search for matching). Each state is one
//    10-byte record holding what drafting and matching read together (suffix link, length, where
//    its other edges start, and its most frequent edge), so following the most frequent path or
//    an accepted token costs one record line per state, not one line per field array. Fields are
//    as small as what reads them needs: suffix links and edge tokens 24-bit; lengths one byte,
//    saturating at 255 (a length is only compared with draft budgets and min_match); counts one
//    byte, with the rare larger ones (short, frequent contexts) in a side table found by rank; an
//    edge's target as a one-byte distance ahead of its source state (most transitions lead to a
//    state created a few steps later), else escaped to a side table; edge ranges as 16-bit offsets
//    from a 32-bit base per 64 states. About 11 B per state (record + count) + 4-5 B per other
//    edge, 20-22 B per indexed token and scope.
#pragma once

#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "drafter/huge_pages.h"

namespace longtail::drafter {

// Arrays read at random while drafting (huge_pages.h says why).
template <class T>
using HugeVector = std::vector<T, HugePageAllocator<T>>;

class SamBuilder {
 public:
  SamBuilder();
  // Back to the empty automaton, keeping the storage (a new request reuses an ended one's, so
  // its growth costs no reallocation, rehash or page faults).
  void reset();
  // Sizes the edge table for about `tokens` appended tokens (no rehash on the way there).
  void reserve(int64_t tokens);
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
  int64_t states() const { return static_cast<int64_t>(states_.size()); }
  int64_t bytes() const;

  friend class FrozenSam;

 private:
  // One state in one 32-byte record (aligned: never split over two cache lines), because what
  // extending the automaton reads of a state (its length and link, its first edge, the own-context
  // end positions) is read together. Most states have one out-edge, so the first one lives in the
  // record and only further edges go to the hash table: a lookup in a state with one edge (most of
  // a suffix-link walk) touches the state's own line and no table slot.
  struct alignas(32) State {
    int32_t len, link, firstpos;
    int32_t lastpos, prevpos;   // own-context mode: a recent end and the one before it
    int32_t first_token;        // -1: no out-edges
    int32_t first_target;
    int32_t more;               // further edges: head of a list in edge_*_, -1 = none
  };
  // One slot of the edge hash table (edges after a state's first): the key and what a lookup wants
  // (the target), so a probe touches one cache line; `edge` indexes the per-edge arrays.
  struct Slot {
    uint64_t key;
    int32_t edge;
    int32_t target;
  };
  // generalized: `last` may already continue by token (add_string); a single growing string's
  // last state never has out-edges, so append skips that lookup.
  int32_t extend(int32_t last, int32_t token, bool generalized);
  int32_t new_state(int32_t len, int32_t link, int32_t firstpos);
  Slot* find_slot(int32_t state, int32_t token);  // a further edge's slot, nullptr when absent
  int32_t find_target(int32_t state, int32_t token);  // target state or -1
  // Adds the edge unless state already has one by token; returns the existing target or -1.
  int32_t add_edge_if_absent(int32_t state, int32_t token, int32_t target);
  // Points state's edge by token at `to` if it currently leads to `from`; false otherwise.
  bool retarget(int32_t state, int32_t token, int32_t from, int32_t to);
  void grow_table();

  std::vector<State> states_;
  std::vector<uint32_t> cnt_;  // own end positions (accumulated along links on freeze)
  int64_t edges_ = 0;          // first edges + further edges
  // further edges: singly linked per state (for cloning and freezing), indexed by the hash table
  std::vector<int32_t> edge_token_, edge_target_, edge_next_;  // edge_target_ mirrors the slots'
  std::vector<Slot> table_;
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
  const void* address(size_t i) const { return bytes_.data() + 3 * i; }  // for prefetching
  int64_t bytes() const { return static_cast<int64_t>(bytes_.capacity()); }

 private:
  HugeVector<uint8_t> bytes_;
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
  const void* address(size_t i) const { return small_.data() + i; }  // for prefetching
  // Asks for the lines get(i) reads (the side table's rank and bitmap words too: far targets).
  void prefetch(size_t i) const {
    __builtin_prefetch(small_.data() + i);
    __builtin_prefetch(bits_.data() + (i >> 6));
    __builtin_prefetch(rank_.data() + (i >> 6));
  }
  size_t size() const { return small_.size(); }
  int64_t bytes() const;

 private:
  HugeVector<Small> small_;
  std::vector<uint64_t> bits_;
  std::vector<uint32_t> rank_;  // escapes before each 64-block
  std::vector<uint32_t> big_;
};

// Values at a few positions of a long array (the escapes of fields too small for them), found
// by rank in O(1): a bitmap of the positions with a running count per 64. 0.19 B per position of
// the array + 4 B per value.
class SparseValues {
 public:
  SparseValues() = default;
  // values[i] for every i with escaped[i]; n = the array's length.
  SparseValues(size_t n, const std::vector<std::pair<size_t, uint32_t>>& escaped);
  uint32_t operator[](size_t i) const {
    const size_t w = i >> 6;
    const uint64_t below = bits_[w] & ((uint64_t{1} << (i & 63)) - 1);
    return values_[rank_[w] + static_cast<uint32_t>(__builtin_popcountll(below))];
  }
  int64_t bytes() const;

 private:
  std::vector<uint64_t> bits_;
  std::vector<uint32_t> rank_;  // values before each 64-block
  std::vector<uint32_t> values_;
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

  bool empty() const { return states_ <= 1; }
  int32_t find(int32_t state, int32_t token) const;  // target state or -1
  // One token of context: follow the edge, or fall back along suffix links (amortised O(1)).
  void advance(SamMatch& m, int32_t token) const {
    while (!advance_step(m, token)) {
    }
  }
  // One try of advance(): follows the edge by token (true: the token is consumed), or moves m to
  // its suffix link (false: try again from there; m.length is then -1 until the next try reads it
  // from the link's record, so a caller that prefetches that record in between does not wait for
  // it). Lets a caller interleave many matches' advances and ask for each one's next state ahead
  // (prefetch, prefetch_step), so their cache misses overlap.
  bool advance_step(SamMatch& m, int32_t token) const;
  // Asks for the lines the next advance_step(m, token) reads beyond m's record, which must be in
  // cache already (prefetch()): the other edges' tokens and targets unless the most frequent edge
  // is the token's. A hint; no effect on results.
  void prefetch_step(const SamMatch& m, int32_t token) const;
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
  bool has_edges(int32_t state) const { return top_delta(record(state)) != kNoEdge; }
  uint32_t degree(int32_t state) const {
    return has_edges(state) ? 1 + rest_begin(state + 1) - rest_begin(state) : 0;
  }
  int32_t edge_token(int32_t state, uint32_t i) const {
    return static_cast<int32_t>(i == 0 ? top_token(state) : rest_token_[rest_begin(state) + i - 1]);
  }
  int32_t edge_target(int32_t state, uint32_t i) const {
    return i == 0 ? top_target(state, record(state)) : rest_target(state, rest_begin(state) + i - 1);
  }
  uint32_t count(int32_t state) const { return cnt_[static_cast<size_t>(state)]; }
  // Saturates at kMaxLength.
  int32_t length(int32_t state) const { return static_cast<int32_t>((record(state) >> 24) & 0xFF); }
  static constexpr int32_t kMaxLength = 255;
  int32_t suffix_link(int32_t state) const { return static_cast<int32_t>(record(state) & 0xFFFFFF); }
  // Asks for the state's record ahead of use (a hint; no effect on results).
  void prefetch(int32_t state) const {
    __builtin_prefetch(records_.data() + kRecordBytes * static_cast<size_t>(state));
    __builtin_prefetch(cnt_.address(static_cast<size_t>(state)));
    __builtin_prefetch(rest_base_.data() + (static_cast<size_t>(state) >> 6));
  }
  int64_t states() const { return states_; }
  int64_t edges() const { return edges_; }
  int64_t bytes() const;
  // Verifies the automaton's invariants (lengths and counts along edges and links, edge order,
  // targets in range); returns the first violation found, empty when none (tests, debugging).
  std::string check() const;

 private:
  // One record of kRecordBytes per state, so drafting (the greedy path follows the most frequent
  // edge) and matching (the accepted token is usually that edge) read one cache line per state
  // instead of one per field array: bytes 0-2 suffix link (24-bit; the root's stored as 0, never
  // followed), 3 length (saturating), 4-5 offset of the state's other edges from its 64-state
  // block's base (65535 = in offset_escapes_), 6 the most frequent edge's target as a distance
  // ahead of the state (0 = no edges, 255 = absolute, in top_escapes_: most transitions lead to a
  // state created a few steps later), 7-9 its token. Counts stay a dense byte array of their own
  // (cnt_): token trees read the counts of many children they never expand, and 64 counts share
  // a cache line there against ~6 records.
  static constexpr size_t kRecordBytes = 10;
  static constexpr uint32_t kEscape8 = 0xFF, kEscape16 = 0xFFFF, kNoEdge = 0;
  uint64_t record(int32_t state) const {
    uint64_t r;
    std::memcpy(&r, records_.data() + kRecordBytes * static_cast<size_t>(state), 8);
    return r;
  }
  static uint32_t top_delta(uint64_t r) { return static_cast<uint32_t>(r >> 48) & 0xFF; }
  uint32_t top_token(int32_t state) const {
    uint32_t t;
    std::memcpy(&t, records_.data() + kRecordBytes * static_cast<size_t>(state) + 7, 4);
    return t & 0xFFFFFF;
  }
  int32_t top_target(int32_t state, uint64_t r) const {
    const uint32_t d = top_delta(r);
    return d != kEscape8 ? state + static_cast<int32_t>(d)
                         : static_cast<int32_t>(top_escapes_[static_cast<size_t>(state)]);
  }
  // The state's edges after the most frequent one: [rest_begin(state), rest_begin(state + 1)).
  uint32_t rest_begin(int32_t state) const {
    const auto v = static_cast<size_t>(state);
    const uint32_t off = (record(state) >> 32) & 0xFFFF;
    return rest_base_[v >> 6] + (off != kEscape16 ? off : offset_escapes_[v]);
  }
  int32_t rest_target(int32_t state, uint32_t edge) const {
    bool absolute;
    const uint32_t t = rest_target_.get(edge, absolute);
    return static_cast<int32_t>(absolute ? t : static_cast<uint32_t>(state) + t);
  }

  int64_t states_ = 0, edges_ = 0;
  HugeVector<uint8_t> records_;        // states + 1 records (the last: the end offset) + padding
  EscapedArray<uint8_t> cnt_;          // endpos counts, larger ones escaped
  SparseValues offset_escapes_, top_escapes_;
  std::vector<uint32_t> rest_base_;    // first other edge of each 64-state block
  U24Array rest_token_;                // other edges: token (top-frequency order, then by token)
  EscapedArray<uint8_t> rest_target_;  // distance ahead of the source state, or escaped absolute
};

// Largest token id the history automata can store.
inline constexpr int32_t kMaxHistoryToken = static_cast<int32_t>(U24Array::kMax);

}  // namespace longtail::drafter
