// Drafter: per-request matching over the history shards and the request's own context, and the
// choice of the best-scored draft among the scopes; see drafter.h.
#include "drafter/drafter.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>
#include <thread>
#include <unordered_map>

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

void Draft::clear() {
  tokens.clear();
  probs.clear();
  parents.clear();
  source = DraftSource::kNone;
  match_length = 0;
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
}  // namespace

struct Drafter::Impl {
  struct Request {
    std::string prompt_id;
    SamBuilder own;                  // prompt + output, online
    uint64_t synced_generation = ~0ull;
    const FrozenSam* prompt_sam = nullptr;
    const FrozenSam* global_sam = nullptr;
    SamMatch prompt_match, global_match;
  };

  explicit Impl(DrafterOptions o)
      : options(o),
        history(HistoryOptions{o.window_rounds, o.global_token_budget, o.prompt_token_budget,
                               o.use_global_scope, o.use_prompt_scope}) {}

  Request& get(uint64_t uid) {
    const auto it = requests.find(uid);
    if (it == requests.end()) {
      throw std::invalid_argument("drafter: unknown request uid " + std::to_string(uid));
    }
    return *it->second;
  }

  // After end_round() replaced the automata, the matches are re-derived from the whole context once.
  void sync(Request& r) const {
    if (r.synced_generation == history.generation()) return;
    r.prompt_sam = options.use_prompt_scope ? history.prompt_sam(r.prompt_id) : nullptr;
    r.global_sam = options.use_global_scope ? history.global_sam() : nullptr;
    r.prompt_match = {};
    r.global_match = {};
    for (const int32_t t : r.own.text()) {
      if (r.prompt_sam) r.prompt_sam->advance(r.prompt_match, t);
      if (r.global_sam) r.global_sam->advance(r.global_match, t);
    }
    r.synced_generation = history.generation();
  }

  int32_t limit(int32_t budget, int32_t match_length) const {
    if (options.match_length_factor <= 0) return budget;
    return std::min<int32_t>(budget, static_cast<int32_t>(std::ceil(options.match_length_factor * match_length)));
  }

  // Every context length is a candidate (ArcticInference speculates from each match length and keeps
  // the best score): the longest match is rare evidence (small counts, possibly no continuation),
  // shorter contexts along the suffix links have more occurrences and may continue more surely. One
  // SAM state covers all lengths in (len(link), len], which share the continuation counts, so the
  // longest of them (largest draft limit) stands for the state. Walked longest first; ties keep the
  // longer context; a state whose limit cannot beat the best score ends the walk.
  void history_draft(const FrozenSam& sam, SamMatch m, int32_t budget, DraftSource source, Draft& d) const {
    thread_local Draft cand;
    double best = 0;
    for (int level = 0; level < options.match_states && m.state > 0 && m.length >= options.min_match; ++level) {
      const int32_t lim = limit(budget, m.length);
      const double bound = options.extend_prob < 1.0 ? budget : lim;
      if (!d.tokens.empty() && bound <= best) break;
      cand.clear();
      sam.draft(m, budget, options.min_prob, cand.tokens, cand.probs, options.count_prior, lim,
                options.extend_prob);
      if (!cand.tokens.empty()) {
        const double score = cand.score();
        if (d.tokens.empty() || score > best) {
          std::swap(d, cand);
          d.source = source;
          d.match_length = m.length;
          best = score;
        }
      }
      m.state = sam.suffix_link(m.state);
      m.length = sam.length(m.state);
    }
  }

  void own_draft(const Request& r, int32_t budget, Draft& out) const {
    int64_t end = 0;
    const int32_t l = options.own_recent ? r.own.recent_repeat(end) : r.own.longest_repeat(end);
    if (l < options.own_min_match) return;
    budget = limit(budget, l);
    const double conf = l / (l + options.own_match_scale);
    const auto& text = r.own.text();
    const auto n = static_cast<int64_t>(text.size());
    double p = 1;
    // Past the end of the text the copy reads its own draft (an LZ77-style overlapping copy): a
    // repeat that ends just before the current position is a loop with a short period.
    for (int64_t i = end + 1; static_cast<int32_t>(out.tokens.size()) < budget; ++i) {
      p *= conf;
      if (p < options.min_prob) break;
      out.tokens.push_back(i < n ? text[static_cast<size_t>(i)] : out.tokens[static_cast<size_t>(i - n)]);
      out.probs.push_back(static_cast<float>(p));
    }
    if (!out.tokens.empty()) {
      out.source = DraftSource::kOwn;
      out.match_length = l;
    }
  }

  void propose(uint64_t uid, int32_t budget, Draft& out) {
    out.clear();
    Request& r = get(uid);
    if (budget <= 0) return;
    sync(r);
    thread_local Draft candidate;
    auto consider = [&](auto&& fill) {
      candidate.clear();
      fill(candidate);
      if (candidate.tokens.empty()) return;
      if (out.tokens.empty() || candidate.score() > out.score()) std::swap(out, candidate);
    };
    if (r.prompt_sam) {
      consider([&](Draft& d) { history_draft(*r.prompt_sam, r.prompt_match, budget, DraftSource::kPrompt, d); });
    }
    if (r.global_sam) {
      consider([&](Draft& d) { history_draft(*r.global_sam, r.global_match, budget, DraftSource::kGlobal, d); });
    }
    if (options.use_own_context) {
      consider([&](Draft& d) { own_draft(r, budget, d); });
    }
  }

  DrafterOptions options;
  HistoryIndex history;
  std::unordered_map<uint64_t, std::unique_ptr<Request>> requests;
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

void Drafter::begin_request(uint64_t uid, std::string_view prompt_id,
                            std::span<const int32_t> prompt) {
  if (impl_->requests.count(uid)) {
    throw std::invalid_argument("drafter: request uid " + std::to_string(uid) + " is already live");
  }
  check_tokens(prompt, "the prompt");
  auto r = std::make_unique<Impl::Request>();
  r->prompt_id = std::string(prompt_id);
  for (const int32_t t : prompt) r->own.append(t);
  impl_->requests.emplace(uid, std::move(r));
}

void Drafter::observe(uint64_t uid, std::span<const int32_t> accepted) {
  Impl::Request& r = impl_->get(uid);
  check_tokens(accepted, "the accepted tokens");
  const bool synced = r.synced_generation == impl_->history.generation();
  for (const int32_t t : accepted) {
    r.own.append(t);
    if (!synced) continue;  // the next propose re-syncs from the whole context
    if (r.prompt_sam) r.prompt_sam->advance(r.prompt_match, t);
    if (r.global_sam) r.global_sam->advance(r.global_match, t);
  }
}

void Drafter::end_request(uint64_t uid) { impl_->requests.erase(uid); }

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

void Drafter::propose(uint64_t uid, int32_t budget, Draft& out) { impl_->propose(uid, budget, out); }

Draft Drafter::propose(uint64_t uid, int32_t budget) {
  Draft d;
  impl_->propose(uid, budget, d);
  return d;
}

void Drafter::propose_batch(std::span<const DraftRequest> requests, std::span<Draft> out) {
  if (out.size() != requests.size()) {
    throw std::invalid_argument("drafter: propose_batch needs one output per request");
  }
  for (const auto& q : requests) impl_->get(q.uid);  // unknown uids fail here, not in a worker
  const size_t n = requests.size();
  const auto threads = static_cast<size_t>(impl_->options.threads);
  auto run = [&](size_t begin, size_t end) {
    for (size_t i = begin; i < end; ++i) impl_->propose(requests[i].uid, requests[i].budget, out[i]);
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
