// Drafter: per-request matching over the history shards and the request's own context, and the
// choice of the best-scored draft among the scopes; see drafter.h.
#include "drafter/drafter.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>
#include <thread>
#include <unordered_map>
#include <utility>

#include "drafter/calibration.h"
#include "drafter/history_index.h"
#include "drafter/suffix_automaton.h"

namespace longtail::drafter {

const char* to_string(DraftSource s) {
  switch (s) {
    case DraftSource::kNone: return "none";
    case DraftSource::kPrompt: return "prompt";
    case DraftSource::kGlobal: return "global";
    case DraftSource::kOwn: return "own";
  }
  return "?";
}

double Draft::score() const {
  double s = 0;
  for (const float p : probs) s += p;
  return s;
}

void Draft::depths(std::vector<int32_t>& out) const {
  out.resize(tokens.size());
  for (size_t i = 0; i < tokens.size(); ++i) {
    const int32_t p = parent(i);
    // A parent that does not precede its node hangs off the root, as the tree-attention kernel reads it.
    out[i] = p < 0 || static_cast<size_t>(p) >= i ? 1 : out[static_cast<size_t>(p)] + 1;
  }
}

void Draft::clear() {
  tokens.clear();
  probs.clear();
  parents.clear();
  source = DraftSource::kNone;
  match_length = 0;
}

int32_t longest_accepted_path(const Draft& d, std::span<const int32_t> truth, std::vector<int32_t>* path) {
  if (path) path->clear();
  int32_t at = -1, len = 0;
  // Nodes are topological, so a node's children come after it: one forward scan per depth.
  size_t from = 0;
  while (static_cast<size_t>(len) < truth.size()) {
    int32_t next = -1;
    for (size_t i = from; i < d.tokens.size(); ++i) {
      if (d.parent(i) == at && d.tokens[i] == truth[static_cast<size_t>(len)]) {
        next = static_cast<int32_t>(i);
        break;
      }
    }
    if (next < 0) break;
    at = next;
    from = static_cast<size_t>(next) + 1;
    ++len;
    if (path) path->push_back(next);
  }
  return len;
}

namespace {
void check_tokens(std::span<const int32_t> tokens, const char* what) {
  for (size_t i = 0; i < tokens.size(); ++i) {
    if (tokens[i] < 0) {
      throw std::invalid_argument(std::string("drafter: negative token id ") +
                                  std::to_string(tokens[i]) + " at index " + std::to_string(i) +
                                  " of " + what);
    }
  }
}

// Field by field (std::swap would move each vector three times): drafts change hands per scope.
void swap_drafts(Draft& a, Draft& b) {
  a.tokens.swap(b.tokens);
  a.probs.swap(b.probs);
  a.parents.swap(b.parents);
  std::swap(a.source, b.source);
  std::swap(a.match_length, b.match_length);
}

// A draft under construction: the public fields plus, per token, its calibration cell and raw
// conditional probability (what observe() needs to learn from the outcome).
struct Candidate {
  Draft d;
  std::vector<int16_t> cells;
  std::vector<float> raw;
  double score = 0;
  void swap(Candidate& o) {
    swap_drafts(d, o.d);
    cells.swap(o.cells);
    raw.swap(o.raw);
    std::swap(score, o.score);
  }
  void clear() {
    d.clear();
    cells.clear();
    raw.clear();
    score = 0;
  }
  void push(int32_t token, double p, int16_t cell, double q) {
    d.tokens.push_back(token);
    d.probs.push_back(static_cast<float>(p));
    cells.push_back(cell);
    raw.push_back(static_cast<float>(q));
    score += p;
  }
  void push_node(int32_t token, double p, int16_t cell, double q, int32_t parent) {
    push(token, p, cell, q);
    d.parents.push_back(parent);
  }
};
}  // namespace

struct Drafter::Impl {
  // The last proposal of a request, kept until the next observe() scores it.
  struct Proposed {
    std::vector<int32_t> tokens, parents;
    std::vector<int16_t> cells;
    std::vector<float> raw;
    bool pending = false;
  };
  // Where a history scope's match goes along the last proposal's nodes (its greedy chain, or the
  // tree's nodes), so observe() moves the match along accepted tokens without searching the index
  // again: states[i] is what advance() reaches from the proposal-time match over the path to node
  // i (-1 where the scope left the path). Most emitted tokens are accepted drafts, so this removes
  // most of observe()'s cache misses into the frozen automata.
  struct ScopeWalk {
    std::vector<int32_t> tokens, parents, states;
    void clear() {
      tokens.clear();
      parents.clear();
      states.clear();
    }
    void push(int32_t token, int32_t parent, int32_t state) {
      tokens.push_back(token);
      parents.push_back(parent);
      states.push_back(state);
    }
    // Follows tokens from the root while a node has them; returns how many were followed.
    size_t follow(std::span<const int32_t> emitted, SamMatch& m) const {
      int32_t at = -1;
      size_t j = 0;
      for (; j < emitted.size(); ++j) {
        int32_t next = -1;
        for (auto i = static_cast<size_t>(at + 1); i < tokens.size(); ++i) {
          if (parents[i] == at && tokens[i] == emitted[j] && states[i] >= 0) {
            next = static_cast<int32_t>(i);
            break;
          }
        }
        if (next < 0) break;
        m.state = states[static_cast<size_t>(next)];
        ++m.length;
        at = next;
      }
      return j;
    }
  };
  struct Request {
    std::string prompt_id;
    SamBuilder own;                  // prompt + output, online
    uint64_t synced_generation = ~0ull;
    const FrozenSam* prompt_sam = nullptr;
    const FrozenSam* global_sam = nullptr;
    SamMatch prompt_match, global_match;
    Proposed last;
    ScopeWalk walks[2];              // prompt, global: valid while walks_valid
    bool walks_valid = false;        // set by propose() for the next observe() (same generation)
    // Emitted tokens the matches have not advanced over yet: scope s still has to consume
    // pending[pending_from[s]..]. observe() leaves them to the next proposal, which advances a
    // whole batch's matches interleaved (advance_pending), so their cache misses overlap.
    std::vector<int32_t> pending;
    size_t pending_from[2] = {0, 0};
    // A new sequence in this (ended) request's storage.
    void restart(std::string_view id) {
      prompt_id.assign(id);
      own.reset();
      synced_generation = ~0ull;
      prompt_sam = global_sam = nullptr;
      prompt_match = global_match = {};
      last.pending = false;
      walks_valid = false;
      pending.clear();
    }
  };
  // Ended requests kept for reuse (at most kSpareRequests, each under kSpareBytes of automaton):
  // a round's worth (a GRPO round ends up to 256 requests and begins as many), so that a new round's
  // requests neither allocate nor grow their tables; at most 256 MiB held.
  static constexpr size_t kSpareRequests = 256;
  static constexpr int64_t kSpareBytes = 1 << 20;

  explicit Impl(DrafterOptions o)
      : options(o),
        history(HistoryOptions{o.window_rounds, o.global_token_budget, o.prompt_token_budget,
                               o.use_global_scope, o.use_prompt_scope}),
        calibration(o.calibration_prior) {}

  Request& get(uint64_t uid) {
    const auto it = requests.find(uid);
    if (it == requests.end()) {
      throw std::invalid_argument("drafter: unknown request uid " + std::to_string(uid));
    }
    return *it->second;
  }

  // The lines a proposal for r reads first: its matches' state records (when still current).
  void prefetch(const Request& r) const {
    if (r.synced_generation != history.generation()) return;
    if (r.prompt_sam) r.prompt_sam->prefetch(r.prompt_match.state);
    if (r.global_sam) r.global_sam->prefetch(r.global_match.state);
  }

  // After end_round() replaced the automata, the matches are re-derived from the whole context once.
  void sync(Request& r) const {
    if (r.synced_generation == history.generation()) return;
    r.prompt_sam = options.use_prompt_scope ? history.prompt_sam(r.prompt_id) : nullptr;
    r.global_sam = options.use_global_scope ? history.global_sam() : nullptr;
    r.prompt_match = {};
    r.global_match = {};
    r.pending.clear();  // the own text holds them: re-fed below
    for (const int32_t t : r.own.text()) {
      if (r.prompt_sam) r.prompt_sam->advance(r.prompt_match, t);
      if (r.global_sam) r.global_sam->advance(r.global_match, t);
    }
    r.synced_generation = history.generation();
  }

  // Emitted tokens join the matches' pending ones; what the last proposal's walks cover is
  // followed at once (no index reads).
  void defer_advance(Request& r, std::span<const int32_t> emitted) const {
    const bool fresh = r.pending.empty();
    r.pending.insert(r.pending.end(), emitted.begin(), emitted.end());
    if (!fresh) return;
    SamMatch* matches[2] = {&r.prompt_match, &r.global_match};
    const FrozenSam* sams[2] = {r.prompt_sam, r.global_sam};
    for (int s = 0; s < 2; ++s) {
      r.pending_from[s] = sams[s] && r.walks_valid ? r.walks[s].follow(emitted, *matches[s]) : 0;
    }
  }

  // Advances the pending tokens of requests rs[0..n) (synced ones): one advance_step per match
  // per round, each match's next lines asked for a round ahead, so the index misses of a batch
  // overlap instead of queueing one after another. Same steps per match as advance().
  void advance_pending(Request* const* rs, size_t n) const {
    struct Walker {
      const FrozenSam* sam;
      SamMatch* m;
      const int32_t* tokens;
      size_t at, end;
    };
    thread_local std::vector<Walker> walkers;
    walkers.clear();
    const uint64_t generation = history.generation();
    for (size_t i = 0; i < n; ++i) {
      Request& r = *rs[i];
      if (r.pending.empty()) continue;
      if (r.synced_generation != generation) continue;  // sync() re-feeds the whole context
      const FrozenSam* sams[2] = {r.prompt_sam, r.global_sam};
      SamMatch* matches[2] = {&r.prompt_match, &r.global_match};
      for (int s = 0; s < 2; ++s) {
        if (!sams[s] || r.pending_from[s] >= r.pending.size()) continue;
        walkers.push_back({sams[s], matches[s], r.pending.data(), r.pending_from[s], r.pending.size()});
        sams[s]->prefetch(matches[s]->state);
      }
    }
    while (!walkers.empty()) {
      for (const Walker& w : walkers) w.sam->prefetch_step(*w.m, w.tokens[w.at]);
      size_t kept = 0;
      for (Walker& w : walkers) {
        if (w.sam->advance_step(*w.m, w.tokens[w.at]) && ++w.at == w.end) continue;
        w.sam->prefetch(w.m->state);
        walkers[kept++] = w;
      }
      walkers.resize(kept);
    }
    for (size_t i = 0; i < n; ++i) {
      if (rs[i]->synced_generation == generation) rs[i]->pending.clear();
    }
  }

  int32_t limit(int32_t budget, int32_t match_length) const {
    if (options.match_length_factor <= 0) return budget;
    return std::min<int32_t>(budget, static_cast<int32_t>(std::ceil(options.match_length_factor * match_length)));
  }

  double calibrated(int16_t cell, double q) const {
    return options.calibrate ? calibration.apply(cell, q) : q;
  }

  // Raw conditional probability of the edge into `child` from `parent` (count ratio; the prior
  // shrinks the first step from a rarely seen context).
  double edge_prob(const FrozenSam& sam, int32_t parent, int32_t child, bool first) const {
    return sam.count(child) / (sam.count(parent) + (first ? options.count_prior : 0.0));
  }

  // Greedy most-frequent path from m (FrozenSam::draft with calibrated per-token probabilities).
  void history_chain(const FrozenSam& sam, SamMatch m, int32_t budget, int32_t soft_budget,
                     DraftSource source, Candidate& c, ScopeWalk* walk = nullptr) const {
    // Raw path probability cnt(path) / (cnt(context) + prior): the count ratios telescope.
    const double base = sam.count(m.state) + options.count_prior;
    double p = 1;
    int32_t v = m.state;
    for (int32_t k = 0; k < budget && sam.has_edges(v); ++k) {
      const int32_t u = sam.edge_target(v, 0);
      const double q = edge_prob(sam, v, u, k == 0);
      const double p_raw = sam.count(u) / base;
      if (p_raw < options.min_prob) break;
      if (k >= soft_budget && (options.extend_prob >= 1.0 || p_raw < options.extend_prob)) break;
      const int16_t cell = DraftCalibration::history_cell(source == DraftSource::kGlobal, sam.count(v), q, m.length + k);
      p *= calibrated(cell, q);
      const int32_t token = sam.edge_token(v, 0);
      c.push(token, p, cell, q);
      if (walk) walk->push(token, k - 1, u);
      v = u;
    }
  }

  // Every context length is a candidate (ArcticInference speculates from each match length and keeps
  // the best score): the longest match is rare evidence (small counts, possibly no continuation),
  // shorter contexts along the suffix links have more occurrences and may continue more surely. One
  // SAM state covers all lengths in (len(link), len], which share the continuation counts, so the
  // longest of them (largest draft limit) stands for the state. Walked longest first; ties keep the
  // longer context; a state whose limit cannot beat the best score ends the walk.
  // `walk` gets the longest match's chain (what observe() can follow).
  void history_draft(const FrozenSam& sam, SamMatch m, int32_t budget, DraftSource source, Candidate& best,
                     ScopeWalk& walk) const {
    thread_local Candidate cand;
    for (int level = 0; level < options.match_states && m.state > 0 && m.length >= options.min_match; ++level) {
      const int32_t lim = limit(budget, m.length);
      const double bound = options.extend_prob < 1.0 ? budget : lim;
      if (!best.d.tokens.empty() && bound <= best.score) break;
      cand.clear();
      history_chain(sam, m, budget, lim, source, cand, level == 0 ? &walk : nullptr);
      if (!cand.d.tokens.empty() && (best.d.tokens.empty() || cand.score > best.score)) {
        best.swap(cand);
        best.d.source = source;
        best.d.match_length = m.length;
      }
      m.state = sam.suffix_link(m.state);
      m.length = sam.length(m.state);
    }
  }

  // Own-context repeat: its length and where the copy starts (index into the text), or length 0.
  int32_t own_repeat(const Request& r, int64_t& copy_from) const {
    int64_t end = 0;
    const int32_t l = options.own_recent ? r.own.recent_repeat(end) : r.own.longest_repeat(end);
    if (l < options.own_min_match) return 0;
    copy_from = end + 1;
    return l;
  }

  double own_confidence(int32_t l) const { return l / (l + options.own_match_scale); }

  void own_draft(const Request& r, int32_t budget, Candidate& out) const {
    int64_t from = 0;
    const int32_t l = own_repeat(r, from);
    if (l == 0) return;
    budget = limit(budget, l);
    const double conf = own_confidence(l);
    const auto& text = r.own.text();
    const auto n = static_cast<int64_t>(text.size());
    double p = 1, p_raw = 1;
    // Past the end of the text the copy reads its own draft (an LZ77-style overlapping copy): a
    // repeat that ends just before the current position is a loop with a short period.
    for (int64_t i = from; static_cast<int32_t>(out.d.tokens.size()) < budget; ++i) {
      p_raw *= conf;
      if (p_raw < options.min_prob) break;
      const auto depth = static_cast<int32_t>(out.d.tokens.size());
      const int16_t cell = DraftCalibration::own_cell(l, depth);
      p *= calibrated(cell, conf);
      out.push(i < n ? text[static_cast<size_t>(i)] : out.d.tokens[static_cast<size_t>(i - n)], p, cell, conf);
    }
    if (!out.d.tokens.empty()) {
      out.d.source = DraftSource::kOwn;
      out.d.match_length = l;
    }
  }

  void chain(Request& r, int32_t budget, Candidate& out) const {
    thread_local Candidate candidate;
    auto consider = [&](auto&& fill) {
      candidate.clear();
      fill(candidate);
      if (candidate.d.tokens.empty()) return;
      if (out.d.tokens.empty() || candidate.score > out.score) out.swap(candidate);
    };
    if (r.prompt_sam) {
      consider([&](Candidate& c) {
        history_draft(*r.prompt_sam, r.prompt_match, budget, DraftSource::kPrompt, c, r.walks[0]);
      });
    }
    if (r.global_sam) {
      consider([&](Candidate& c) {
        history_draft(*r.global_sam, r.global_match, budget, DraftSource::kGlobal, c, r.walks[1]);
      });
    }
    if (options.use_own_context) {
      consider([&](Candidate& c) { own_draft(r, budget, c); });
    }
  }

  // ---- token trees ----
  // Where each scope stands at a tree node: a history state (-1 = the path left the scope) and its
  // depth limit, the own-context copy position, and each scope's calibrated path probability.
  struct Cursor {
    int32_t state[2] = {-1, -1};     // prompt, global
    int32_t context[2] = {0, 0};     // matched context length at the node
    int64_t own_from = -1;           // next own-context token to copy (index into text ++ path)
    float p[3] = {0, 0, 0};          // prompt, global, own: calibrated path probabilities
    float raw[3] = {0, 0, 0};        // the same, uncalibrated (min_prob applies to these)
  };
  struct Open {
    float prob;
    int32_t parent;                  // tree node index, -1 = root
    int32_t token;
    int16_t cell;
    float raw;
    DraftSource source;
    Cursor at;
  };

  void tree(Request& r, int32_t budget, double min_node_prob, Candidate& out) const {
    const FrozenSam* sams[2] = {r.prompt_sam, r.global_sam};
    const SamMatch roots[2] = {r.prompt_match, r.global_match};
    int32_t lim[3] = {0, 0, 0};
    double base[2] = {1, 1};  // raw path probability of a history scope = cnt(state) / base
    Cursor root;
    for (int s = 0; s < 2; ++s) {
      if (!sams[s] || roots[s].state <= 0 || roots[s].length < options.min_match) continue;
      root.state[s] = roots[s].state;
      root.context[s] = roots[s].length;
      root.p[s] = root.raw[s] = 1;
      lim[s] = limit(budget, roots[s].length);
      base[s] = sams[s]->count(roots[s].state) + options.count_prior;
    }
    int32_t own_len = 0;
    if (options.use_own_context) {
      int64_t from = 0;
      own_len = own_repeat(r, from);
      if (own_len > 0) {
        root.own_from = from;
        root.p[2] = root.raw[2] = 1;
        lim[2] = limit(budget, own_len);
      }
    }
    const auto& text = r.own.text();
    const auto n = static_cast<int64_t>(text.size());
    const auto width = static_cast<size_t>(std::max(1, options.tree_max_width));
    thread_local std::vector<Open> heap, kids;
    thread_local std::vector<int32_t> depth;
    heap.clear();
    depth.clear();
    auto by_prob = [](const Open& a, const Open& b) { return a.prob < b.prob; };

    // Children of a node (merged by token over the scopes), pushed onto the heap.
    auto expand = [&](int32_t node, int32_t d, const Cursor& at) {
      kids.clear();
      auto child = [&](int32_t token) -> Open& {
        for (Open& k : kids) {
          if (k.token == token) return k;
        }
        kids.push_back(Open{0, node, token, 0, 0, DraftSource::kNone, Cursor{}});
        return kids.back();
      };
      auto offer = [&](Open& k, int scope, double p, double raw, int16_t cell, double q, DraftSource src) {
        k.at.p[scope] = static_cast<float>(p);
        k.at.raw[scope] = static_cast<float>(raw);
        if (p > k.prob) {
          k.prob = static_cast<float>(p);
          k.cell = cell;
          k.raw = static_cast<float>(q);
          k.source = src;
        }
      };
      for (int s = 0; s < 2; ++s) {
        const int32_t v = at.state[s];
        if (v < 0 || d >= lim[s]) continue;
        const FrozenSam& sam = *sams[s];
        const DraftSource src = s == 0 ? DraftSource::kPrompt : DraftSource::kGlobal;
        const uint32_t top = std::min<uint32_t>(sam.degree(v), static_cast<uint32_t>(width));
        for (uint32_t e = 0; e < top; ++e) {
          const int32_t u = sam.edge_target(v, e);
          const double q = edge_prob(sam, v, u, d == 0);
          const double raw = sam.count(u) / base[s];
          if (raw < options.min_prob) break;  // edges are most frequent first
          const int16_t cell = DraftCalibration::history_cell(s == 1, sam.count(v), q, at.context[s]);
          Open& k = child(sam.edge_token(v, e));
          k.at.state[s] = u;
          k.at.context[s] = at.context[s] + 1;
          offer(k, s, at.p[s] * calibrated(cell, q), raw, cell, q, src);
        }
      }
      if (at.own_from >= 0 && d < lim[2]) {
        const int64_t i = at.own_from;
        int32_t token;
        if (i < n) {
          token = text[static_cast<size_t>(i)];
        } else {  // overlapping copy: read the path itself (node's ancestor at depth i - n + 1)
          int32_t a = node;
          for (int32_t up = d - static_cast<int32_t>(i - n) - 1; up > 0; --up) a = out.d.parents[static_cast<size_t>(a)];
          token = out.d.tokens[static_cast<size_t>(a)];
        }
        const double q = own_confidence(own_len);
        const double raw = at.raw[2] * q;
        if (raw >= options.min_prob) {
          const int16_t cell = DraftCalibration::own_cell(own_len, d);
          Open& k = child(token);
          k.at.own_from = i + 1;
          offer(k, 2, at.p[2] * calibrated(cell, q), raw, cell, q, DraftSource::kOwn);
        }
      }
      // A history scope follows a token another scope proposed if it has that edge too.
      for (Open& k : kids) {
        for (int s = 0; s < 2; ++s) {
          if (k.at.state[s] >= 0 || at.state[s] < 0 || d >= lim[s]) continue;
          const FrozenSam& sam = *sams[s];
          const int32_t u = sam.find(at.state[s], k.token);
          if (u < 0) continue;
          const double q = edge_prob(sam, at.state[s], u, d == 0);
          const DraftSource src = s == 0 ? DraftSource::kPrompt : DraftSource::kGlobal;
          const int16_t cell = DraftCalibration::history_cell(s == 1, sam.count(at.state[s]), q, at.context[s]);
          k.at.state[s] = u;
          k.at.context[s] = at.context[s] + 1;
          offer(k, s, at.p[s] * calibrated(cell, q), sam.count(u) / base[s], cell, q, src);
        }
      }
      std::sort(kids.begin(), kids.end(), [](const Open& a, const Open& b) { return a.prob > b.prob; });
      if (kids.size() > width) kids.resize(width);
      for (const Open& k : kids) {
        if (std::max({k.at.raw[0], k.at.raw[1], k.at.raw[2]}) < options.min_prob) continue;
        heap.push_back(k);
        std::push_heap(heap.begin(), heap.end(), by_prob);
      }
    };

    expand(-1, 0, root);
    while (!heap.empty() && static_cast<int32_t>(out.d.tokens.size()) < budget) {
      std::pop_heap(heap.begin(), heap.end(), by_prob);
      const Open k = heap.back();
      heap.pop_back();
      if (!(k.prob > min_node_prob)) break;  // best first: no later node is worth more
      const auto node = static_cast<int32_t>(out.d.tokens.size());
      const int32_t d = k.parent < 0 ? 1 : depth[static_cast<size_t>(k.parent)] + 1;
      out.push_node(k.token, k.prob, k.cell, k.raw, k.parent);
      for (int s = 0; s < 2; ++s) r.walks[s].push(k.token, k.parent, k.at.state[s]);
      depth.push_back(d);
      if (node == 0) {
        out.d.source = k.source;
        out.d.match_length = k.source == DraftSource::kOwn ? own_len
                             : k.source == DraftSource::kPrompt ? root.context[0] : root.context[1];
      }
      expand(node, d, k.at);
    }
  }

  void propose(uint64_t uid, const DraftRequest& q, Draft& out) { propose(get(uid), q, out); }
  void propose(Request& r, const DraftRequest& q, Draft& out) {
    out.clear();
    r.last.pending = false;
    r.walks_valid = false;
    if (q.budget <= 0) return;
    sync(r);
    Request* one = &r;
    advance_pending(&one, 1);
    r.walks[0].clear();
    r.walks[1].clear();
    r.walks_valid = true;
    thread_local Candidate best;
    best.clear();
    if (q.tree) {
      tree(r, q.budget, q.min_node_prob, best);
    } else {
      chain(r, q.budget, best);
    }
    swap_drafts(out, best.d);
    Proposed& last = r.last;
    last.tokens = out.tokens;
    last.parents = out.parents;
    last.cells.swap(best.cells);
    last.raw.swap(best.raw);
    last.pending = options.calibrate && !out.tokens.empty();
  }

  // Scores the last proposal against the tokens the step emitted: every node whose parent was
  // accepted (or is the root) was tried; it succeeded if it lies on the accepted path.
  void learn(Request& r, std::span<const int32_t> emitted) {
    Proposed& last = r.last;
    if (!last.pending) return;
    last.pending = false;
    thread_local Draft view;
    thread_local std::vector<int32_t> path;
    view.tokens.swap(last.tokens);
    view.parents.swap(last.parents);
    thread_local std::vector<uint8_t> on_path;
    longest_accepted_path(view, emitted, &path);
    on_path.assign(view.tokens.size(), 0);
    for (const int32_t node : path) on_path[static_cast<size_t>(node)] = 1;
    for (size_t i = 0; i < view.tokens.size(); ++i) {
      const int32_t p = view.parent(i);
      if (p < 0 || on_path[static_cast<size_t>(p)]) calibration.add(last.cells[i], last.raw[i], on_path[i] != 0);
    }
    view.tokens.swap(last.tokens);
    view.parents.swap(last.parents);
  }

  DrafterOptions options;
  HistoryIndex history;
  DraftCalibration calibration;
  std::unordered_map<uint64_t, std::unique_ptr<Request>> requests;
  std::vector<std::unique_ptr<Request>> spare;
};

Drafter::Drafter(DrafterOptions options) {
  if (options.window_rounds < 1) throw std::invalid_argument("drafter: window_rounds must be >= 1");
  if (!(options.min_prob >= 0 && options.min_prob <= 1)) {
    throw std::invalid_argument("drafter: min_prob must be in [0, 1]");
  }
  if (options.threads < 1) options.threads = 1;
  if (options.match_states < 1) throw std::invalid_argument("drafter: match_states must be >= 1");
  // Automata use 24-bit fields (< 2^24 states, about 2 per token).
  constexpr int64_t kMaxShardTokens = 8'000'000;
  if (options.global_token_budget > kMaxShardTokens || options.prompt_token_budget > kMaxShardTokens) {
    throw std::invalid_argument("drafter: token budgets must be <= 8,000,000 per scope");
  }
  impl_ = std::make_unique<Impl>(options);
}
Drafter::~Drafter() = default;

// A new request's own-context table is sized for its prompt and this many generated tokens: the
// prompt is indexed at once without rehashing, and the response grows the table as it goes. (512
// measured fewer instructions but more cache misses at batch 256: a large table is cold.)
constexpr int64_t kOwnReserveTokens = 64;

void Drafter::begin_request(uint64_t uid, std::string_view prompt_id,
                            std::span<const int32_t> prompt) {
  if (impl_->requests.count(uid)) {
    throw std::invalid_argument("drafter: request uid " + std::to_string(uid) + " is already live");
  }
  check_tokens(prompt, "the prompt");
  std::unique_ptr<Impl::Request> r;
  if (impl_->spare.empty()) {
    r = std::make_unique<Impl::Request>();
    r->prompt_id = std::string(prompt_id);
    r->own.reserve(static_cast<int64_t>(prompt.size()) + kOwnReserveTokens);
  } else {
    r = std::move(impl_->spare.back());
    impl_->spare.pop_back();
    r->restart(prompt_id);
  }
  for (const int32_t t : prompt) r->own.append(t);
  impl_->requests.emplace(uid, std::move(r));
}

void Drafter::observe(uint64_t uid, std::span<const int32_t> accepted) {
  Impl::Request& r = impl_->get(uid);
  check_tokens(accepted, "the accepted tokens");
  impl_->learn(r, accepted);
  for (const int32_t t : accepted) r.own.append(t);
  // Not synced: the next propose re-syncs from the whole context.
  if (r.synced_generation == impl_->history.generation()) impl_->defer_advance(r, accepted);
  r.walks_valid = false;
}

void Drafter::end_request(uint64_t uid) {
  const auto it = impl_->requests.find(uid);
  if (it == impl_->requests.end()) return;
  if (impl_->spare.size() < Impl::kSpareRequests && it->second->own.bytes() <= Impl::kSpareBytes) {
    impl_->spare.push_back(std::move(it->second));
  }
  impl_->requests.erase(it);
}

bool Drafter::has_request(uint64_t uid) const { return impl_->requests.count(uid) != 0; }

void Drafter::add_rollout(std::string_view prompt_id, std::span<const int32_t> prompt,
                          std::span<const int32_t> response, int64_t round) {
  check_tokens(prompt, "the rollout prompt");
  check_tokens(response, "the rollout response");
  for (const auto* part : {&prompt, &response}) {
    for (const int32_t t : *part) {
      if (t > kMaxHistoryToken) {
        throw std::invalid_argument("drafter: token id " + std::to_string(t) +
                                    " exceeds the history index limit " + std::to_string(kMaxHistoryToken));
      }
    }
  }
  const size_t tail = std::min(prompt.size(),
                               static_cast<size_t>(std::max(0, impl_->options.prompt_tail_tokens)));
  std::vector<int32_t> text;
  text.reserve(tail + response.size());
  text.insert(text.end(), prompt.end() - static_cast<std::ptrdiff_t>(tail), prompt.end());
  text.insert(text.end(), response.begin(), response.end());
  impl_->history.insert(prompt_id, std::move(text), round);
}

void Drafter::end_round(int64_t round) { impl_->history.end_round(round); }

void Drafter::propose(uint64_t uid, int32_t budget, Draft& out) { impl_->propose(uid, {uid, budget}, out); }

Draft Drafter::propose(uint64_t uid, int32_t budget) {
  Draft d;
  impl_->propose(uid, {uid, budget}, d);
  return d;
}

void Drafter::propose_batch(std::span<const DraftRequest> requests, std::span<Draft> out) {
  if (out.size() != requests.size()) {
    throw std::invalid_argument("drafter: propose_batch needs one output per request");
  }
  thread_local std::vector<Impl::Request*> live;
  live.clear();
  for (const auto& q : requests) live.push_back(&impl_->get(q.uid));  // unknown uids fail here, not in a worker
  const size_t n = requests.size();
  const auto threads = static_cast<size_t>(impl_->options.threads);
  Impl::Request* const* rs = live.data();
  auto run = [&, rs](size_t begin, size_t end) {
    // Each proposal starts with a cache miss per scope (its match state); asking for the next
    // requests' lines ahead overlaps those misses with this request's work.
    impl_->advance_pending(rs + begin, end - begin);
    constexpr size_t kAhead = 2;
    for (size_t i = begin; i < std::min(end, begin + kAhead); ++i) impl_->prefetch(*rs[i]);
    for (size_t i = begin; i < end; ++i) {
      if (i + kAhead < end) impl_->prefetch(*rs[i + kAhead]);
      impl_->propose(*rs[i], requests[i], out[i]);
    }
  };
  // Threads only pay for large batches: one propose is a few microseconds.
  if (threads <= 1 || n < 64) {
    run(0, n);
    return;
  }
  std::vector<std::thread> workers;
  const size_t chunk = (n + threads - 1) / threads;
  for (size_t b = chunk; b < n; b += chunk) workers.emplace_back(run, b, std::min(n, b + chunk));
  run(0, std::min(n, chunk));
  for (auto& w : workers) w.join();
}

DrafterMemory Drafter::memory() const {
  DrafterMemory m;
  m.indexed_tokens = impl_->history.indexed_tokens();
  m.index_bytes = impl_->history.bytes();
  m.prompt_scopes = impl_->history.prompt_scopes();
  m.live_requests = static_cast<int64_t>(impl_->requests.size());
  for (const auto& [uid, r] : impl_->requests) m.live_bytes += r->own.bytes();
  return m;
}

const DrafterOptions& Drafter::options() const { return impl_->options; }

}  // namespace longtail::drafter
