// Suffix automaton construction (generalized, online) and its compact frozen form; see the header.
#include "drafter/suffix_automaton.h"

#include <algorithm>
#include <numeric>
#include <stdexcept>
#include <string>

namespace longtail::drafter {
namespace {
constexpr uint64_t kEmptyKey = ~0ull;
inline uint64_t edge_key(int32_t state, int32_t token) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(state)) << 32) | static_cast<uint32_t>(token);
}
inline uint64_t mix(uint64_t k) {
  k ^= k >> 33;
  k *= 0xff51afd7ed558ccdull;
  k ^= k >> 33;
  return k;
}
template <class T>
int64_t capacity_bytes(const std::vector<T>& v) {
  return static_cast<int64_t>(v.capacity() * sizeof(T));
}
}  // namespace

SamBuilder::SamBuilder() {
  table_keys_.assign(16, kEmptyKey);
  table_vals_.assign(16, -1);
  table_mask_ = 15;
  new_state(0, -1, -1);
}

int32_t SamBuilder::new_state(int32_t len, int32_t link, int32_t firstpos) {
  len_.push_back(len);
  link_.push_back(link);
  firstpos_.push_back(firstpos);
  lastpos_.push_back(firstpos);
  prevpos_.push_back(-1);
  edge_head_.push_back(-1);
  cnt_.push_back(0);
  return static_cast<int32_t>(len_.size() - 1);
}

int32_t SamBuilder::find_edge(int32_t state, int32_t token) const {
  const uint64_t key = edge_key(state, token);
  for (uint64_t i = mix(key) & table_mask_;; i = (i + 1) & table_mask_) {
    if (table_keys_[i] == key) return table_vals_[i];
    if (table_keys_[i] == kEmptyKey) return -1;
  }
}

void SamBuilder::grow_table() {
  std::vector<uint64_t> keys(table_keys_.size() * 2, kEmptyKey);
  std::vector<int32_t> vals(keys.size(), -1);
  const uint64_t mask = keys.size() - 1;
  for (size_t j = 0; j < table_keys_.size(); ++j) {
    if (table_keys_[j] == kEmptyKey) continue;
    uint64_t i = mix(table_keys_[j]) & mask;
    while (keys[i] != kEmptyKey) i = (i + 1) & mask;
    keys[i] = table_keys_[j];
    vals[i] = table_vals_[j];
  }
  table_keys_.swap(keys);
  table_vals_.swap(vals);
  table_mask_ = mask;
}

void SamBuilder::add_edge(int32_t state, int32_t token, int32_t target) {
  if (static_cast<uint64_t>(table_used_ + 1) * 2 > table_keys_.size()) grow_table();
  const int32_t e = static_cast<int32_t>(edge_token_.size());
  edge_token_.push_back(token);
  edge_target_.push_back(target);
  edge_next_.push_back(edge_head_[state]);
  edge_head_[state] = e;
  const uint64_t key = edge_key(state, token);
  uint64_t i = mix(key) & table_mask_;
  while (table_keys_[i] != kEmptyKey) i = (i + 1) & table_mask_;
  table_keys_[i] = key;
  table_vals_[i] = e;
  ++table_used_;
}

int32_t SamBuilder::extend(int32_t last, int32_t c) {
  auto clone_of = [&](int32_t q, int32_t len) {
    const int32_t clone = new_state(len, link_[q], firstpos_[q]);
    lastpos_[clone] = lastpos_[q];  // endpos(clone) includes endpos(q): q's ends are clone's too
    prevpos_[clone] = prevpos_[q];
    for (int32_t e = edge_head_[q]; e >= 0; e = edge_next_[e]) {
      add_edge(clone, edge_token_[e], edge_target_[e]);
    }
    return clone;
  };
  auto redirect = [&](int32_t p, int32_t q, int32_t clone) {
    while (p != -1) {
      const int32_t e = find_edge(p, c);
      if (e < 0 || edge_target_[e] != q) break;
      edge_target_[e] = clone;
      p = link_[p];
    }
  };
  // Generalized case: the string being added already continues this way from `last`.
  if (const int32_t e = find_edge(last, c); e >= 0) {
    const int32_t q = edge_target_[e];
    if (len_[q] == len_[last] + 1) return q;
    const int32_t clone = clone_of(q, len_[last] + 1);
    redirect(last, q, clone);
    link_[q] = clone;
    return clone;
  }
  const int32_t cur = new_state(len_[last] + 1, 0, static_cast<int32_t>(pos_));
  int32_t p = last;
  while (p != -1 && find_edge(p, c) < 0) {
    add_edge(p, c, cur);
    p = link_[p];
  }
  if (p == -1) return cur;
  const int32_t q = edge_target_[find_edge(p, c)];
  if (len_[p] + 1 == len_[q]) {
    link_[cur] = q;
    return cur;
  }
  const int32_t clone = clone_of(q, len_[p] + 1);
  redirect(p, q, clone);
  link_[q] = clone;
  link_[cur] = clone;
  return cur;
}

void SamBuilder::add_string(std::span<const int32_t> tokens) {
  int32_t last = 0;
  for (const int32_t t : tokens) {
    last = extend(last, t);
    ++cnt_[last];
    ++pos_;
  }
}

void SamBuilder::append(int32_t token) {
  last_ = extend(last_, token);
  ++cnt_[last_];
  const auto here = static_cast<int32_t>(pos_);
  int32_t v = link_[last_];
  for (int k = 0; k < kRecentChain && v > 0; ++k, v = link_[v]) {
    if (lastpos_[v] == here) break;  // a fresh clone of this step is already current
    prevpos_[v] = lastpos_[v];
    lastpos_[v] = here;
  }
  text_.push_back(token);
  ++pos_;
}

int32_t SamBuilder::longest_repeat(int64_t& earlier_end) const {
  const int32_t v = link_[last_];
  if (v <= 0) return 0;
  earlier_end = firstpos_[v];
  return len_[v];
}

int32_t SamBuilder::recent_repeat(int64_t& earlier_end) const {
  const int32_t v = link_[last_];
  if (v <= 0) return 0;
  const int32_t here = static_cast<int32_t>(pos_) - 1;
  earlier_end = lastpos_[v] != here ? lastpos_[v] : prevpos_[v] >= 0 ? prevpos_[v] : firstpos_[v];
  return len_[v];
}

int64_t SamBuilder::bytes() const {
  return capacity_bytes(len_) + capacity_bytes(link_) + capacity_bytes(firstpos_) +
         capacity_bytes(lastpos_) + capacity_bytes(prevpos_) +
         capacity_bytes(edge_head_) + capacity_bytes(cnt_) + capacity_bytes(edge_token_) +
         capacity_bytes(edge_target_) + capacity_bytes(edge_next_) + capacity_bytes(table_keys_) +
         capacity_bytes(table_vals_) + capacity_bytes(text_);
}

U24Array::U24Array(const std::vector<uint32_t>& values) : size_(values.size()) {
  bytes_.assign(3 * values.size() + 1, 0);
  for (size_t i = 0; i < values.size(); ++i) {
    const uint32_t v = std::min(values[i], kMax);
    bytes_[3 * i] = static_cast<uint8_t>(v);
    bytes_[3 * i + 1] = static_cast<uint8_t>(v >> 8);
    bytes_[3 * i + 2] = static_cast<uint8_t>(v >> 16);
  }
}

FrozenSam::FrozenSam(const SamBuilder& b) {
  const size_t n = b.len_.size();
  std::vector<uint32_t> cnt = b.cnt_;
  // endpos sizes: children (by suffix link) before parents, i.e. by decreasing len (counting sort).
  int32_t max_len = 0;
  for (const int32_t l : b.len_) max_len = std::max(max_len, l);
  std::vector<int32_t> bucket(static_cast<size_t>(max_len) + 2, 0);
  for (const int32_t l : b.len_) ++bucket[static_cast<size_t>(l) + 1];
  for (size_t i = 1; i < bucket.size(); ++i) bucket[i] += bucket[i - 1];
  std::vector<int32_t> order(n);
  for (size_t v = 0; v < n; ++v) {
    order[static_cast<size_t>(bucket[static_cast<size_t>(b.len_[v])]++)] = static_cast<int32_t>(v);
  }
  for (size_t i = n; i-- > 1;) {
    const int32_t v = order[i];
    const int32_t l = b.link_[static_cast<size_t>(v)];
    if (l >= 0) cnt[static_cast<size_t>(l)] += cnt[static_cast<size_t>(v)];
  }
  if (n >= U24Array::kMax || b.edge_token_.size() >= U24Array::kMax) {
    throw std::length_error("suffix automaton too large for 24-bit fields (" + std::to_string(n) +
                            " states); lower the drafter's token budgets");
  }
  // Edges: most frequent first (greedy drafting), the rest sorted by token (matching).
  std::vector<uint32_t> begin(n + 1, 0), etok, etgt;
  etok.reserve(b.edge_token_.size());
  etgt.reserve(b.edge_token_.size());
  std::vector<std::pair<int32_t, int32_t>> out;
  for (size_t v = 0; v < n; ++v) {
    begin[v] = static_cast<uint32_t>(etok.size());
    out.clear();
    for (int32_t e = b.edge_head_[v]; e >= 0; e = b.edge_next_[static_cast<size_t>(e)]) {
      out.emplace_back(b.edge_token_[static_cast<size_t>(e)], b.edge_target_[static_cast<size_t>(e)]);
    }
    if (out.empty()) continue;
    const size_t top = std::min(out.size(), static_cast<size_t>(kTopEdges));
    std::partial_sort(out.begin(), out.begin() + static_cast<std::ptrdiff_t>(top), out.end(),
                      [&](const auto& a, const auto& c) {
                        const uint32_t ca = cnt[static_cast<size_t>(a.second)], cc = cnt[static_cast<size_t>(c.second)];
                        return ca != cc ? ca > cc : a.first < c.first;  // ties: the smaller token first
                      });
    std::sort(out.begin() + static_cast<std::ptrdiff_t>(top), out.end());
    for (const auto& [tok, to] : out) {
      if (tok < 0 || static_cast<uint32_t>(tok) > U24Array::kMax) {
        throw std::length_error("token id " + std::to_string(tok) + " does not fit the history automaton");
      }
      etok.push_back(static_cast<uint32_t>(tok));
      etgt.push_back(static_cast<uint32_t>(to));
    }
  }
  begin[n] = static_cast<uint32_t>(etok.size());
  std::vector<uint32_t> link(n);
  for (size_t v = 1; v < n; ++v) link[v] = static_cast<uint32_t>(b.link_[v]);
  len_.resize(n);
  for (size_t v = 0; v < n; ++v) len_[v] = static_cast<uint8_t>(std::min(b.len_[v], kMaxLength));
  link_ = U24Array(link);
  cnt_ = EscapedArray<uint8_t>(cnt);
  // Edge ranges: 16-bit offsets from each 64-state block's first edge (larger ones escaped).
  edge_base_.resize(n / 64 + 1);
  std::vector<uint32_t> offset(n + 1);
  for (size_t v = 0; v <= n; ++v) {
    if (v % 64 == 0) edge_base_[v / 64] = begin[v];
    offset[v] = begin[v] - edge_base_[v / 64];
  }
  edge_offset_ = EscapedArray<uint16_t>(offset);
  // Targets as distances ahead of the source (1..254), anything else escaped as absolute.
  std::vector<bool> absolute(etgt.size(), false);
  for (size_t v = 0; v < n; ++v) {
    for (uint32_t e = begin[v]; e < begin[v + 1]; ++e) {
      if (etgt[e] > v && etgt[e] - v < EscapedArray<uint8_t>::kEscape) {
        etgt[e] -= static_cast<uint32_t>(v);
      } else {
        absolute[e] = true;
      }
    }
  }
  edge_token_ = U24Array(etok);
  edge_target_ = EscapedArray<uint8_t>(etgt, &absolute);
}

template <class Small>
EscapedArray<Small>::EscapedArray(const std::vector<uint32_t>& values, const std::vector<bool>* escape) {
  const size_t n = values.size();
  small_.resize(n);
  bits_.assign(n / 64 + 1, 0);
  rank_.assign(n / 64 + 1, 0);
  for (size_t i = 0; i < n; ++i) {
    if (i % 64 == 0) rank_[i / 64] = static_cast<uint32_t>(big_.size());
    if (values[i] >= kEscape || (escape && (*escape)[i])) {
      small_[i] = static_cast<Small>(kEscape);
      bits_[i / 64] |= uint64_t{1} << (i % 64);
      big_.push_back(values[i]);
    } else {
      small_[i] = static_cast<Small>(values[i]);
    }
  }
  if (n % 64 == 0) rank_[n / 64] = static_cast<uint32_t>(big_.size());
  big_.shrink_to_fit();
}

template <class Small>
int64_t EscapedArray<Small>::bytes() const {
  return capacity_bytes(small_) + capacity_bytes(bits_) + capacity_bytes(rank_) + capacity_bytes(big_);
}

template class EscapedArray<uint8_t>;
template class EscapedArray<uint16_t>;

int32_t FrozenSam::find(int32_t state, int32_t token) const {
  const uint32_t b = edge_begin(state), e = edge_begin(state + 1);
  if (b == e || token < 0) return -1;
  const auto t = static_cast<uint32_t>(token);
  if (e - b <= kTopEdges + 8) {
    for (uint32_t i = b; i < e; ++i) {
      if (edge_token_[i] == t) return target(state, i);
    }
    return -1;
  }
  for (uint32_t i = b; i < b + kTopEdges; ++i) {
    if (edge_token_[i] == t) return target(state, i);
  }
  uint32_t lo = b + kTopEdges, hi = e;  // binary search over the token-sorted rest
  while (lo < hi) {
    const uint32_t mid = lo + (hi - lo) / 2;
    if (edge_token_[mid] < t) {
      lo = mid + 1;
    } else {
      hi = mid;
    }
  }
  return lo < e && edge_token_[lo] == t ? target(state, lo) : -1;
}

void FrozenSam::advance(SamMatch& m, int32_t token) const {
  if (len_.empty()) return;
  for (;;) {
    const int32_t t = find(m.state, token);
    if (t >= 0) {
      m.state = t;
      ++m.length;
      return;
    }
    if (m.state == 0) {
      m.length = 0;
      return;
    }
    m.state = suffix_link(m.state);
    m.length = length(m.state);
  }
}

void FrozenSam::draft(const SamMatch& m, int32_t budget, double min_prob,
                      std::vector<int32_t>& tokens, std::vector<float>& probs, double prior,
                      int32_t soft_budget, double extend_prob) const {
  if (soft_budget < 0) soft_budget = budget;
  if (len_.empty() || m.state <= 0) return;
  const double base = count(m.state) + prior;
  int32_t v = m.state;
  for (int32_t k = 0; k < budget; ++k) {
    if (degree(v) == 0) break;
    const int32_t u = edge_target(v, 0);
    const double p = count(u) / base;  // telescoped product of the count ratios along the path
    if (p < min_prob) break;
    if (k >= soft_budget && (extend_prob >= 1.0 || p < extend_prob)) break;
    tokens.push_back(edge_token(v, 0));
    probs.push_back(static_cast<float>(p));
    v = u;
  }
}

int64_t FrozenSam::bytes() const {
  return capacity_bytes(len_) + link_.bytes() + cnt_.bytes() + capacity_bytes(edge_base_) +
         edge_offset_.bytes() + edge_token_.bytes() + edge_target_.bytes();
}

}  // namespace longtail::drafter
