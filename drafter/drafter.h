// Model-free drafter for speculative decoding of RL rollouts (DAS-style): proposes draft tokens for
// each running sequence from (a) recent rollouts of the same prompt, (b) recent rollouts of all
// prompts and (c) the sequence's own prompt + output so far. The engine verifies the drafts
// losslessly, so the drafter only affects speed, never the tokens.
//
// Data structure: suffix automata (SAM), not a depth-limited suffix trie.
//  - A SAM over n tokens has <= 2n states and <= 3n edges, whatever the match depths, so memory is
//    O(n) with a small constant (frozen form with 24-bit fields: 12 B/state + 6 B/edge, ~27 B per
//    token per scope, + 4 B/token of stored text) instead of O(n * depth) trie nodes
//    (ArcticInference: 250-360 B per token).
//  - Each state's endpos size cnt(v) counts the occurrences of its strings, and the occurrences of
//    "context + t" are exactly cnt(delta(v, t)): continuation counts for frequency-scored drafts
//    come for free, for contexts of any length (no depth cap).
//  - The per-request match (state, matched length) advances by one transition per accepted token,
//    falling back along suffix links on a mismatch: amortised O(1) per token, no re-walk from the
//    root for every match length (ArcticInference's O(depth^2)).
// Eviction: a SAM cannot delete strings, so the history is sharded. Each prompt id has one frozen
// SAM over its rollouts inside the window; the global scope has one frozen SAM over all rollouts in
// the window, trimmed oldest-first to a token budget. Rollouts added during a round are staged and
// become visible at end_round(), which rebuilds only the shards whose content changed (O(tokens of
// that shard)). Live requests notice the rebuild by a generation number and re-synchronise their
// match lazily by re-feeding their context once (O(context) per request per round).
// Own context: each live request has a growing (online) SAM of its prompt + output; the longest
// suffix that occurred earlier is link(last), and a recent earlier occurrence of it (own_recent;
// else the earliest) gives the draft, copied past the end of the text from the draft itself when
// the repeat ends just before the current position (a loop with a short period).
// Proposal rule: per scope, the greedy most-frequent path from the match, path probability
// cnt(path)/cnt(context) (telescoped count ratios) >= min_prob, at most ceil(match_length_factor *
// match length) tokens, from the longest match (optionally also up to match_states - 1 shorter
// contexts along the suffix links, the best score winning, as ArcticInference's best over match
// lengths); when no context has a continuation the scope proposes nothing. Own-context tokens get
// probability (l/(l+1))^k for a repeat of length l. Each token's probability is calibrated per scope
// (calibration.h); the draft with the largest expected accepted length (sum of path probabilities)
// wins. Trees: best-first expansion over the scopes' merged continuations (up to tree_max_width
// children per node, each scope contributing its most frequent continuations and following the
// other scopes' tokens where it has them); a node's probability is the best scope's calibrated
// path probability, so the tree is the set of nodes most likely to be accepted.
//
// Threading: call the Drafter from one thread at a time; propose_batch spreads its proposals over
// options.threads workers itself (proposals only read shared state; observe() updates the shared
// calibration table). One Drafter per engine.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace longtail::drafter {

struct DrafterOptions {
  int32_t window_rounds = 8;            // history kept for this many rounds (round r keeps > r - W)
  int64_t global_token_budget = 4'000'000;  // global scope: newest rollouts up to this many tokens
  int64_t prompt_token_budget = 1'000'000;  // per-prompt scope: newest rollouts up to this many
  bool use_prompt_scope = true;         // recent rollouts of the same prompt id (DAS's main source)
  bool use_global_scope = true;         // recent rollouts of every prompt
  bool use_own_context = true;          // the request's own prompt + output
  int32_t prompt_tail_tokens = 32;      // last prompt tokens indexed before each rollout's response,
                                        // so the first response tokens can be drafted
  double min_prob = 0.1;                // stop a draft when the raw (uncalibrated) path probability
                                        // falls below this
  double match_length_factor = 1.0;     // draft at most ceil(factor * match length) tokens (0 = no
                                        // limit): a short match is weak evidence (SuffixDecoding)
  double extend_prob = 1.0;             // past the match-length limit, a history draft goes on
                                        // while its path probability stays >= this (1 = never)
  double count_prior = 0.0;             // path probability = cnt(path) / (cnt(context) + prior)
  int32_t min_match = 1;                // history matches shorter than this propose nothing
  int32_t match_states = 1;             // history contexts tried per scope: the longest match and
                                        // up to match_states - 1 shorter ones (suffix links), best
                                        // score wins (ArcticInference's rule). 8 measured -0.14% to
                                        // +0.05% projected makespan vs 1 on the traces: off by default
  int32_t own_min_match = 1;            // own-context matches shorter than this propose nothing
  double own_match_scale = 1.0;         // own-context per-token confidence = l / (l + scale): a
                                        // suffix of l tokens that repeated is likely to go on
                                        // repeating (rule of succession); path prob = conf^k
  bool own_recent = true;               // own-context drafts follow a recent earlier occurrence of
                                        // the longest repeat instead of its first one
  int32_t threads = 1;                  // propose_batch worker threads (1 = caller's thread only)
  // Calibration (calibration.h): every draft token's probability is the realised acceptance of
  // tokens with similar evidence (scope, occurrence count, raw probability, match length), learnt
  // online from what observe() reports, before scopes compete or share a tree.
  bool calibrate = true;
  double calibration_prior = 8.0;       // pseudo-tokens per cell at the raw probability
  // Token trees (DraftRequest::tree): best-first over the merged candidates of all scopes; a node
  // joins while the node budget lasts and its raw path probability in the scope offering it is
  // >= min_prob; nodes join in order of calibrated path probability.
  int32_t tree_max_width = 8;           // children per node (each scope offers up to
                                        // FrozenSam::kTopEdges); narrower trees measured lower on
                                        // tot_text (bench/results/drafter_2026-12-01.md)
};

// Where a draft came from.
enum class DraftSource : uint8_t { kNone = 0, kPrompt = 1, kGlobal = 2, kOwn = 3 };
const char* to_string(DraftSource s);

// A proposal. Chain: parents empty, tokens[i] follows tokens[i-1]. Tree (DraftRequest::tree):
// parents[i] in [-1, i) is the node token i follows, -1 = the last accepted token (the tree's root,
// which is not part of the draft); nodes are in topological order and siblings carry distinct
// tokens. A chain is the tree with parents[i] = i - 1, so code written for trees takes both.
// probs[i] = estimated (calibrated) probability that the path from the root to node i is accepted;
// it never increases from a parent to its child, and the sum over nodes is the expected number of
// accepted draft tokens (the events "path to i is a prefix of the true continuation" for siblings
// are disjoint).
struct Draft {
  std::vector<int32_t> tokens;
  std::vector<float> probs;
  std::vector<int32_t> parents;
  DraftSource source = DraftSource::kNone;  // chain: the scope it came from; tree: the root's best child's
  int32_t match_length = 0;             // length of the context match the draft continues
  double score() const;                 // expected accepted tokens = sum of probs
  bool is_tree() const { return !parents.empty(); }
  int32_t parent(size_t i) const { return parents.empty() ? static_cast<int32_t>(i) - 1 : parents[i]; }
  // depth[i] = 1 + depth of the parent (1 for children of the root): node i's position is the
  // last accepted token's position + depth[i].
  void depths(std::vector<int32_t>& out) const;
  void clear();
};

// Verification of a draft against the target's tokens: the longest root-to-node path whose tokens
// equal truth[0..], i.e. what lossless verification accepts (the step then emits that many tokens
// plus the target's next one). Returns the path length; `path` (if given) gets the node indices,
// root's child first.
int32_t longest_accepted_path(const Draft& d, std::span<const int32_t> truth,
                              std::vector<int32_t>* path = nullptr);

struct DraftRequest {
  uint64_t uid = 0;
  int32_t budget = 0;                   // max draft tokens (chain) or nodes (tree); <= 0: empty draft
  bool tree = false;                    // false: a chain (parents empty), as every caller that
                                        // cannot verify trees expects; true: a token tree
  // Trees: a node joins only while its calibrated path probability (its expected accepted
  // tokens) exceeds this, i.e. the node is worth its verify cost in tokens (SpeculationPolicy's
  // node floor); nodes join best first, so the cut ends the tree. 0 = the node budget alone.
  double min_node_prob = 0.0;
};

struct DrafterMemory {
  int64_t indexed_tokens = 0;           // tokens in the visible history (each rollout once)
  int64_t index_bytes = 0;              // frozen automata + stored history text, both scopes
  int64_t prompt_scopes = 0;            // prompt ids with history
  int64_t live_requests = 0;
  int64_t live_bytes = 0;               // own-context automata of live requests
  double bytes_per_indexed_token() const {
    return indexed_tokens ? double(index_bytes) / double(indexed_tokens) : 0.0;
  }
};

class Drafter {
 public:
  explicit Drafter(DrafterOptions options = {});
  ~Drafter();
  Drafter(const Drafter&) = delete;
  Drafter& operator=(const Drafter&) = delete;

  // A sequence starts (or resumes after a carry-over: pass the prompt followed by the tokens already
  // generated). prompt_id empty = no per-prompt history. Throws std::invalid_argument if uid is live
  // or a token is negative.
  void begin_request(uint64_t uid, std::string_view prompt_id, std::span<const int32_t> prompt);
  // Tokens appended to the sequence this step (accepted drafts + the verified token). Unknown uid or
  // negative token: std::invalid_argument.
  void observe(uint64_t uid, std::span<const int32_t> accepted);
  // The sequence is done (finished, aborted or preempted). Unknown uids are ignored.
  void end_request(uint64_t uid);
  bool has_request(uint64_t uid) const;

  // A finished rollout joins the history of `round`. It becomes visible to drafting at the next
  // end_round(). Throws std::invalid_argument on a negative token.
  void add_rollout(std::string_view prompt_id, std::span<const int32_t> prompt,
                   std::span<const int32_t> response, int64_t round);
  // Closes `round`: stages become visible, rollouts older than the window (round <= r - W) or over
  // the token budgets are evicted, changed shards rebuilt.
  void end_round(int64_t round);

  // Draft for one live request (empty when nothing scores above min_prob or budget <= 0).
  void propose(uint64_t uid, int32_t budget, Draft& out);
  Draft propose(uint64_t uid, int32_t budget);
  // Drafts for many requests; out.size() must equal requests.size(). Uses options.threads.
  void propose_batch(std::span<const DraftRequest> requests, std::span<Draft> out);

  DrafterMemory memory() const;
  const DrafterOptions& options() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace longtail::drafter
