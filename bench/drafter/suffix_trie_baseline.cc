// Depth-limited suffix trie baseline (ArcticInference-style); see the header.
#include "suffix_trie_baseline.h"

#include <algorithm>

namespace longtail::bench {

namespace {
constexpr uint64_t kEmpty = ~0ull;
inline uint64_t key_of(int32_t node, int32_t token) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(node)) << 32) | static_cast<uint32_t>(token);
}
inline uint64_t mix(uint64_t k) {
  k ^= k >> 33;
  k *= 0xff51afd7ed558ccdull;
  k ^= k >> 33;
  return k;
}
}  // namespace

SuffixTrie::SuffixTrie(int32_t depth) : depth_(depth) {
  count_.push_back(0);
  token_.push_back(-1);
  best_.push_back(-1);
  keys_.assign(16, kEmpty);
  vals_.assign(16, -1);
  mask_ = 15;
}

int32_t SuffixTrie::find(int32_t node, int32_t token) const {
  const uint64_t k = key_of(node, token);
  for (uint64_t i = mix(k) & mask_;; i = (i + 1) & mask_) {
    if (keys_[i] == k) return vals_[i];
    if (keys_[i] == kEmpty) return -1;
  }
}

void SuffixTrie::grow() {
  std::vector<uint64_t> keys(keys_.size() * 2, kEmpty);
  std::vector<int32_t> vals(keys.size(), -1);
  const uint64_t mask = keys.size() - 1;
  for (size_t j = 0; j < keys_.size(); ++j) {
    if (keys_[j] == kEmpty) continue;
    uint64_t i = mix(keys_[j]) & mask;
    while (keys[i] != kEmpty) i = (i + 1) & mask;
    keys[i] = keys_[j];
    vals[i] = vals_[j];
  }
  keys_.swap(keys);
  vals_.swap(vals);
  mask_ = mask;
}

int32_t SuffixTrie::child(int32_t node, int32_t token) {
  const int32_t found = find(node, token);
  if (found >= 0) return found;
  if (static_cast<uint64_t>(used_ + 1) * 2 > keys_.size()) grow();
  const auto id = static_cast<int32_t>(count_.size());
  count_.push_back(0);
  token_.push_back(token);
  best_.push_back(-1);
  const uint64_t k = key_of(node, token);
  uint64_t i = mix(k) & mask_;
  while (keys_[i] != kEmpty) i = (i + 1) & mask_;
  keys_[i] = k;
  vals_[i] = id;
  ++used_;
  return id;
}

void SuffixTrie::bump(int32_t parent, int32_t node) {
  ++count_[static_cast<size_t>(node)];
  int32_t& b = best_[static_cast<size_t>(parent)];
  if (b < 0 || count_[static_cast<size_t>(node)] > count_[static_cast<size_t>(b)] ||
      (count_[static_cast<size_t>(node)] == count_[static_cast<size_t>(b)] &&
       token_[static_cast<size_t>(node)] < token_[static_cast<size_t>(b)])) {
    b = node;
  }
}

void SuffixTrie::insert(std::span<const int32_t> t) {
  for (size_t i = 0; i < t.size(); ++i) {
    int32_t v = 0;
    ++count_[0];
    for (size_t j = i; j < t.size() && j - i < static_cast<size_t>(depth_); ++j) {
      const int32_t c = child(v, t[j]);
      bump(v, c);
      v = c;
    }
  }
}

void SuffixTrie::append(int32_t token) {
  active_.push_back(0);
  if (static_cast<int32_t>(active_.size()) > depth_) active_.pop_front();
  ++count_[0];
  for (auto& v : active_) {
    const int32_t c = child(v, token);
    bump(v, c);
    v = c;
  }
}

void SuffixTrie::speculate(std::span<const int32_t> ctx, int32_t budget, double factor, double min_prob,
                           drafter::Draft& out) const {
  out.clear();
  const auto pattern = ctx.subspan(ctx.size() - std::min(ctx.size(), static_cast<size_t>(depth_)));
  const auto n = static_cast<int32_t>(pattern.size());
  drafter::Draft cand;
  double best = 0;
  for (int32_t len = 1; len < n; ++len) {
    // Re-walk from the root for each length, as ArcticInference does (its O(depth^2) per speculate).
    int32_t v = 0;
    for (int32_t i = n - len; i < n && v >= 0; ++i) v = find(v, pattern[static_cast<size_t>(i)]);
    if (v < 0) break;  // a longer suffix cannot occur either
    const int32_t max_tokens = std::max(0, std::min(budget, static_cast<int32_t>(len * factor + 1e-6)));
    cand.clear();
    draft(v, max_tokens, min_prob, cand);
    const double score = cand.score();
    if (score >= best) {  // ties: the longer match, as ArcticInference
      best = score;
      std::swap(out, cand);
      out.match_length = len;
    }
  }
  if (out.tokens.empty()) out.clear();
}

void SuffixTrie::draft(int32_t node, int32_t budget, double min_prob, drafter::Draft& out) const {
  double p = 1;
  int32_t v = node;
  for (int32_t k = 0; k < budget; ++k) {
    const int32_t b = best_[static_cast<size_t>(v)];
    if (b < 0) break;
    p *= static_cast<double>(count_[static_cast<size_t>(b)]) / static_cast<double>(count_[static_cast<size_t>(v)]);
    if (p < min_prob) break;
    out.tokens.push_back(token_[static_cast<size_t>(b)]);
    out.probs.push_back(static_cast<float>(p));
    v = b;
  }
}

int64_t SuffixTrie::bytes() const {
  return static_cast<int64_t>(count_.capacity() * 4 + token_.capacity() * 4 + best_.capacity() * 4 +
                              keys_.capacity() * 8 + vals_.capacity() * 4);
}

void TrieDrafter::begin_request(uint64_t uid, std::string_view prompt_id, std::span<const int32_t> prompt) {
  Request r;
  r.prompt_id = std::string(prompt_id);
  r.own = std::make_unique<SuffixTrie>(o_.depth);
  for (const int32_t t : prompt) {
    r.text.push_back(t);
    r.own->append(t);
  }
  requests_[uid] = std::move(r);
}

void TrieDrafter::observe(uint64_t uid, std::span<const int32_t> accepted) {
  auto& r = requests_.at(uid);
  for (const int32_t t : accepted) {
    r.text.push_back(t);
    r.own->append(t);
  }
}

void TrieDrafter::add_rollout(std::string_view prompt_id, std::span<const int32_t> prompt,
                              std::span<const int32_t> response, int64_t round) {
  Stored s{std::string(prompt_id), round, {}};
  const size_t tail = std::min(prompt.size(), static_cast<size_t>(o_.prompt_tail_tokens));
  s.text.assign(prompt.end() - static_cast<std::ptrdiff_t>(tail), prompt.end());
  s.text.insert(s.text.end(), response.begin(), response.end());
  staged_.push_back(std::move(s));
}

void TrieDrafter::end_round(int64_t round) {
  for (auto& s : staged_) visible_.push_back(std::move(s));
  staged_.clear();
  std::erase_if(visible_, [&](const Stored& s) { return s.round <= round - o_.window_rounds; });
  // Tries cannot delete either: rebuilt over the window, as the automata are.
  prompt_tries_.clear();
  global_ = o_.use_global ? std::make_unique<SuffixTrie>(o_.depth) : nullptr;
  for (const auto& s : visible_) {
    if (o_.use_prompt) {
      auto& t = prompt_tries_[s.prompt_id];
      if (!t) t = std::make_unique<SuffixTrie>(o_.depth);
      t->insert(s.text);
    }
    if (global_) global_->insert(s.text);
  }
}

void TrieDrafter::propose(uint64_t uid, int32_t budget, drafter::Draft& out) {
  out.clear();
  auto& r = requests_.at(uid);
  if (budget <= 0) return;
  drafter::Draft cand;
  auto consider = [&](const SuffixTrie* t, drafter::DraftSource src) {
    if (!t) return;
    t->speculate(r.text, budget, o_.max_spec_factor, o_.min_prob, cand);
    cand.source = src;
    if (!cand.tokens.empty() && (out.tokens.empty() || cand.score() > out.score())) std::swap(out, cand);
  };
  // Own context first (ArcticInference's local tree; it holds the current suffixes too, which have
  // no continuation yet and count in the denominators, as there).
  if (o_.use_own) consider(r.own.get(), drafter::DraftSource::kOwn);
  if (o_.use_prompt) {
    const auto it = prompt_tries_.find(r.prompt_id);
    consider(it == prompt_tries_.end() ? nullptr : it->second.get(), drafter::DraftSource::kPrompt);
  }
  consider(global_.get(), drafter::DraftSource::kGlobal);
}

int64_t TrieDrafter::index_bytes() const {
  int64_t b = global_ ? global_->bytes() : 0;
  for (const auto& [id, t] : prompt_tries_) b += t->bytes();
  for (const auto& s : visible_) b += static_cast<int64_t>(s.text.capacity() * sizeof(int32_t));
  return b;
}

int64_t TrieDrafter::indexed_tokens() const {
  int64_t n = 0;
  for (const auto& s : visible_) n += static_cast<int64_t>(s.text.size());
  return n;
}

}  // namespace longtail::bench
