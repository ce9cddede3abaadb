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
template <class Vector>
int64_t capacity_bytes(const Vector& v) {
  return static_cast<int64_t>(v.capacity() * sizeof(typename Vector::value_type));
}
}  // namespace

SamBuilder::SamBuilder() {
  table_.assign(16, Slot{kEmptyKey, -1, -1});
  table_mask_ = 15;
  new_state(0, -1, -1);
}

void SamBuilder::reset() {
  states_.clear();
  for (auto* v : {&edge_token_, &edge_target_, &edge_next_, &text_}) v->clear();
  cnt_.clear();
  std::fill(table_.begin(), table_.end(), Slot{kEmptyKey, -1, -1});
  table_used_ = 0;
  edges_ = 0;
  last_ = 0;
  pos_ = 0;
  new_state(0, -1, -1);
}

void SamBuilder::reserve(int64_t tokens) {
  // Further edges (beyond each state's first) come to about half an edge per token of text; the
  // table stays at most half full.
  states_.reserve(static_cast<size_t>(2 * tokens + 2));
  while (static_cast<int64_t>(table_.size()) < tokens) grow_table();
}

int32_t SamBuilder::new_state(int32_t len, int32_t link, int32_t firstpos) {
  states_.push_back(State{len, link, firstpos, firstpos, -1, -1, -1, -1});
  cnt_.push_back(0);
  return static_cast<int32_t>(states_.size() - 1);
}

SamBuilder::Slot* SamBuilder::find_slot(int32_t state, int32_t token) {
  const uint64_t key = edge_key(state, token);
  for (uint64_t i = mix(key) & table_mask_;; i = (i + 1) & table_mask_) {
    Slot& s = table_[i];
    if (s.key == key) return &s;
    if (s.key == kEmptyKey) return nullptr;
  }
}

int32_t SamBuilder::find_target(int32_t state, int32_t token) {
  const State& s = states_[static_cast<size_t>(state)];
  if (s.first_token == token) return s.first_target;
  if (s.more < 0) return -1;
  const Slot* slot = find_slot(state, token);
  return slot ? slot->target : -1;
}

bool SamBuilder::retarget(int32_t state, int32_t token, int32_t from, int32_t to) {
  State& s = states_[static_cast<size_t>(state)];
  if (s.first_token == token) {
    if (s.first_target != from) return false;
    s.first_target = to;
    return true;
  }
  if (s.more < 0) return false;
  Slot* slot = find_slot(state, token);
  if (!slot || slot->target != from) return false;
  slot->target = to;
  edge_target_[static_cast<size_t>(slot->edge)] = to;
  return true;
}

void SamBuilder::grow_table() {
  std::vector<Slot> table(table_.size() * 2, Slot{kEmptyKey, -1, -1});
  const uint64_t mask = table.size() - 1;
  for (const Slot& s : table_) {
    if (s.key == kEmptyKey) continue;
    uint64_t i = mix(s.key) & mask;
    while (table[i].key != kEmptyKey) i = (i + 1) & mask;
    table[i] = s;
  }
  table_.swap(table);
  table_mask_ = mask;
}

int32_t SamBuilder::add_edge_if_absent(int32_t state, int32_t token, int32_t target) {
  State& st = states_[static_cast<size_t>(state)];
  if (st.first_token < 0) {
    st.first_token = token;
    st.first_target = target;
    ++edges_;
    return -1;
  }
  if (st.first_token == token) return st.first_target;
  if (static_cast<uint64_t>(table_used_ + 1) * 2 > table_.size()) grow_table();
  const uint64_t key = edge_key(state, token);
  uint64_t i = mix(key) & table_mask_;
  if (st.more >= 0) {  // a state whose only edge is the first has nothing in the table
    for (; table_[i].key != kEmptyKey; i = (i + 1) & table_mask_) {
      if (table_[i].key == key) return table_[i].target;
    }
  } else {
    while (table_[i].key != kEmptyKey) i = (i + 1) & table_mask_;
  }
  const int32_t e = static_cast<int32_t>(edge_token_.size());
  edge_token_.push_back(token);
  edge_target_.push_back(target);
  edge_next_.push_back(st.more);
  st.more = e;
  table_[i] = Slot{key, e, target};
  ++table_used_;
  ++edges_;
  return -1;
}

int32_t SamBuilder::extend(int32_t last, int32_t c, bool generalized) {
  auto clone_of = [&](int32_t q, int32_t len) {
    const State& from = states_[static_cast<size_t>(q)];
    const int32_t clone = new_state(len, from.link, from.firstpos);
    State& to = states_[static_cast<size_t>(clone)];
    const State& src = states_[static_cast<size_t>(q)];  // new_state may have moved the states
    to.lastpos = src.lastpos;  // endpos(clone) includes endpos(q): q's ends are clone's too
    to.prevpos = src.prevpos;
    to.first_token = src.first_token;
    to.first_target = src.first_target;
    if (src.first_token >= 0) ++edges_;
    for (int32_t e = src.more; e >= 0; e = edge_next_[static_cast<size_t>(e)]) {
      add_edge_if_absent(clone, edge_token_[static_cast<size_t>(e)], edge_target_[static_cast<size_t>(e)]);
    }
    return clone;
  };
  auto redirect = [&](int32_t p, int32_t q, int32_t clone) {
    while (p != -1 && retarget(p, c, q, clone)) p = states_[static_cast<size_t>(p)].link;
  };
  auto len = [&](int32_t v) { return states_[static_cast<size_t>(v)].len; };
  // Generalized case: the string being added already continues this way from `last`.
  if (generalized) {
    if (const int32_t q = find_target(last, c); q >= 0) {
      if (len(q) == len(last) + 1) return q;
      const int32_t clone = clone_of(q, len(last) + 1);
      redirect(last, q, clone);
      states_[static_cast<size_t>(q)].link = clone;
      return clone;
    }
  }
  const int32_t cur = new_state(len(last) + 1, 0, static_cast<int32_t>(pos_));
  int32_t p = last, q = -1;
  while (p != -1 && (q = add_edge_if_absent(p, c, cur)) < 0) p = states_[static_cast<size_t>(p)].link;
  if (p == -1) return cur;
  if (len(p) + 1 == len(q)) {
    states_[static_cast<size_t>(cur)].link = q;
    return cur;
  }
  const int32_t clone = clone_of(q, len(p) + 1);
  redirect(p, q, clone);
  states_[static_cast<size_t>(q)].link = clone;
  states_[static_cast<size_t>(cur)].link = clone;
  return cur;
}

void SamBuilder::add_string(std::span<const int32_t> tokens) {
  int32_t last = 0;
  for (const int32_t t : tokens) {
    last = extend(last, t, /*generalized=*/true);
    ++cnt_[static_cast<size_t>(last)];
    ++pos_;
  }
}

void SamBuilder::append(int32_t token) {
  last_ = extend(last_, token, /*generalized=*/false);
  ++cnt_[static_cast<size_t>(last_)];
  const auto here = static_cast<int32_t>(pos_);
  int32_t v = states_[static_cast<size_t>(last_)].link;
  for (int k = 0; k < kRecentChain && v > 0; ++k) {
    State& s = states_[static_cast<size_t>(v)];
    if (s.lastpos == here) break;  // a fresh clone of this step is already current
    s.prevpos = s.lastpos;
    s.lastpos = here;
    v = s.link;
  }
  text_.push_back(token);
  ++pos_;
}

int32_t SamBuilder::longest_repeat(int64_t& earlier_end) const {
  const int32_t v = states_[static_cast<size_t>(last_)].link;
  if (v <= 0) return 0;
  earlier_end = states_[static_cast<size_t>(v)].firstpos;
  return states_[static_cast<size_t>(v)].len;
}

int32_t SamBuilder::recent_repeat(int64_t& earlier_end) const {
  const int32_t v = states_[static_cast<size_t>(last_)].link;
  if (v <= 0) return 0;
  const State& s = states_[static_cast<size_t>(v)];
  const int32_t here = static_cast<int32_t>(pos_) - 1;
  earlier_end = s.lastpos != here ? s.lastpos : s.prevpos >= 0 ? s.prevpos : s.firstpos;
  return s.len;
}

int64_t SamBuilder::bytes() const {
  return capacity_bytes(states_) + capacity_bytes(cnt_) + capacity_bytes(edge_token_) +
         capacity_bytes(edge_target_) + capacity_bytes(edge_next_) + capacity_bytes(table_) + capacity_bytes(text_);
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
  const size_t n = b.states_.size();
  std::vector<uint32_t> cnt = b.cnt_;
  // endpos sizes: children (by suffix link) before parents, i.e. by decreasing len (counting sort).
  int32_t max_len = 0;
  for (const auto& st : b.states_) max_len = std::max(max_len, st.len);
  std::vector<int32_t> bucket(static_cast<size_t>(max_len) + 2, 0);
  for (const auto& st : b.states_) ++bucket[static_cast<size_t>(st.len) + 1];
  for (size_t i = 1; i < bucket.size(); ++i) bucket[i] += bucket[i - 1];
  std::vector<int32_t> order(n);
  for (size_t v = 0; v < n; ++v) {
    order[static_cast<size_t>(bucket[static_cast<size_t>(b.states_[v].len)]++)] = static_cast<int32_t>(v);
  }
  for (size_t i = n; i-- > 1;) {
    const int32_t v = order[i];
    const int32_t l = b.states_[static_cast<size_t>(v)].link;
    if (l >= 0) cnt[static_cast<size_t>(l)] += cnt[static_cast<size_t>(v)];
  }
  if (n >= U24Array::kMax || b.edges_ >= static_cast<int64_t>(U24Array::kMax)) {
    throw std::length_error("suffix automaton too large for 24-bit fields (" + std::to_string(n) +
                            " states); lower the drafter's token budgets");
  }
  // Edges: most frequent first (greedy drafting), the rest sorted by token (matching).
  std::vector<uint32_t> begin(n + 1, 0), etok, etgt;
  etok.reserve(static_cast<size_t>(b.edges_));
  etgt.reserve(static_cast<size_t>(b.edges_));
  std::vector<std::pair<int32_t, int32_t>> out;
  for (size_t v = 0; v < n; ++v) {
    begin[v] = static_cast<uint32_t>(etok.size());
    out.clear();
    const SamBuilder::State& st = b.states_[v];
    if (st.first_token >= 0) out.emplace_back(st.first_token, st.first_target);
    for (int32_t e = st.more; e >= 0; e = b.edge_next_[static_cast<size_t>(e)]) {
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
  // Records: link, length, count, the other edges' offset, the most frequent edge; the other edges
  // in rest_token_ / rest_target_ (targets as distances ahead, or escaped absolute).
  states_ = static_cast<int64_t>(n);
  edges_ = static_cast<int64_t>(etok.size());
  records_.assign(kRecordBytes * (n + 1) + 8, 0);
  std::vector<std::pair<size_t, uint32_t>> off_esc, top_esc;
  std::vector<uint32_t> rtok, rtgt;
  std::vector<bool> absolute;
  rtok.reserve(etok.size());
  rtgt.reserve(etok.size());
  rest_base_.resize(n / 64 + 1);
  auto close_ahead = [](uint32_t to, size_t from) { return to > from && to - from < kEscape8; };
  for (size_t v = 0; v <= n; ++v) {
    const auto first_rest = static_cast<uint32_t>(rtok.size());
    if (v % 64 == 0) rest_base_[v / 64] = first_rest;
    const uint32_t off = first_rest - rest_base_[v / 64];
    uint8_t* r = records_.data() + kRecordBytes * v;
    if (off >= kEscape16) off_esc.emplace_back(v, off);
    const uint32_t off16 = std::min(off, kEscape16);
    r[4] = static_cast<uint8_t>(off16);
    r[5] = static_cast<uint8_t>(off16 >> 8);
    if (v == n) break;
    const uint32_t link = v == 0 ? 0 : static_cast<uint32_t>(b.states_[v].link);
    r[0] = static_cast<uint8_t>(link);
    r[1] = static_cast<uint8_t>(link >> 8);
    r[2] = static_cast<uint8_t>(link >> 16);
    r[3] = static_cast<uint8_t>(std::min(b.states_[v].len, kMaxLength));
    if (begin[v] == begin[v + 1]) continue;  // no edges: top delta stays kNoEdge
    const uint32_t top = begin[v];
    if (close_ahead(etgt[top], v)) {
      r[6] = static_cast<uint8_t>(etgt[top] - v);
    } else {
      r[6] = static_cast<uint8_t>(kEscape8);
      top_esc.emplace_back(v, etgt[top]);
    }
    r[7] = static_cast<uint8_t>(etok[top]);
    r[8] = static_cast<uint8_t>(etok[top] >> 8);
    r[9] = static_cast<uint8_t>(etok[top] >> 16);
    for (uint32_t e = top + 1; e < begin[v + 1]; ++e) {
      rtok.push_back(etok[e]);
      const bool near = close_ahead(etgt[e], v);
      rtgt.push_back(near ? etgt[e] - static_cast<uint32_t>(v) : etgt[e]);
      absolute.push_back(!near);
    }
  }
  cnt_ = EscapedArray<uint8_t>(cnt);
  offset_escapes_ = SparseValues(n + 1, off_esc);
  top_escapes_ = SparseValues(n, top_esc);
  rest_token_ = U24Array(rtok);
  rest_target_ = EscapedArray<uint8_t>(rtgt, &absolute);
}

SparseValues::SparseValues(size_t n, const std::vector<std::pair<size_t, uint32_t>>& escaped)
    : bits_(n / 64 + 1, 0), rank_(n / 64 + 1, 0) {
  values_.reserve(escaped.size());
  size_t next = 0;  // escaped is in increasing position order
  for (size_t w = 0; w < bits_.size(); ++w) {
    rank_[w] = static_cast<uint32_t>(values_.size());
    for (; next < escaped.size() && escaped[next].first / 64 == w; ++next) {
      bits_[w] |= uint64_t{1} << (escaped[next].first % 64);
      values_.push_back(escaped[next].second);
    }
  }
}

int64_t SparseValues::bytes() const {
  return capacity_bytes(bits_) + capacity_bytes(rank_) + capacity_bytes(values_);
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
  const uint64_t r = record(state);
  if (top_delta(r) == kNoEdge || token < 0) return -1;
  const auto t = static_cast<uint32_t>(token);
  if (top_token(state) == t) return top_target(state, r);
  const uint32_t b = rest_begin(state), e = rest_begin(state + 1);
  if (e - b <= kTopEdges + 8) {
    for (uint32_t i = b; i < e; ++i) {
      if (rest_token_[i] == t) return rest_target(state, i);
    }
    return -1;
  }
  const uint32_t sorted = b + kTopEdges - 1;  // edges 1 .. kTopEdges - 1 by frequency, then by token
  for (uint32_t i = b; i < sorted; ++i) {
    if (rest_token_[i] == t) return rest_target(state, i);
  }
  uint32_t lo = sorted, hi = e;
  while (lo < hi) {
    const uint32_t mid = lo + (hi - lo) / 2;
    if (rest_token_[mid] < t) {
      lo = mid + 1;
    } else {
      hi = mid;
    }
  }
  return lo < e && rest_token_[lo] == t ? rest_target(state, lo) : -1;
}

bool FrozenSam::advance_step(SamMatch& m, int32_t token) const {
  if (states_ == 0) return true;
  if (m.length < 0) m.length = length(m.state);
  const int32_t t = find(m.state, token);
  if (t >= 0) {
    m.state = t;
    ++m.length;
    return true;
  }
  if (m.state == 0) {
    m.length = 0;
    return true;
  }
  m.state = suffix_link(m.state);
  m.length = -1;
  return false;
}

void FrozenSam::prefetch_step(const SamMatch& m, int32_t token) const {
  if (states_ == 0 || token < 0) return;
  const uint64_t r = record(m.state);
  if (top_delta(r) == kNoEdge || top_token(m.state) == static_cast<uint32_t>(token)) return;
  const uint32_t b = rest_begin(m.state), e = rest_begin(m.state + 1);
  if (b == e) return;
  // find() scans short lists from the start and bisects the by-token part of long ones.
  const uint32_t sorted = b + kTopEdges - 1;
  if (e - b <= kTopEdges + 8) {
    __builtin_prefetch(rest_token_.address(b));
    rest_target_.prefetch(b);
    return;
  }
  // The first probes of the bisection: the middle and both quarters.
  const uint32_t n = e - sorted;
  __builtin_prefetch(rest_token_.address(b));
  __builtin_prefetch(rest_token_.address(sorted + n / 2));
  __builtin_prefetch(rest_token_.address(sorted + n / 4));
  __builtin_prefetch(rest_token_.address(sorted + n / 2 + n / 4));
}

void FrozenSam::draft(const SamMatch& m, int32_t budget, double min_prob,
                      std::vector<int32_t>& tokens, std::vector<float>& probs, double prior,
                      int32_t soft_budget, double extend_prob) const {
  if (soft_budget < 0) soft_budget = budget;
  if (states_ == 0 || m.state <= 0) return;
  const double base = count(m.state) + prior;
  int32_t v = m.state;
  for (int32_t k = 0; k < budget; ++k) {
    if (!has_edges(v)) break;
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
  return capacity_bytes(records_) + cnt_.bytes() + offset_escapes_.bytes() + top_escapes_.bytes() +
         capacity_bytes(rest_base_) + rest_token_.bytes() + rest_target_.bytes();
}

std::string FrozenSam::check() const {
  auto fail = [](int64_t v, const std::string& what) { return "state " + std::to_string(v) + ": " + what; };
  for (int32_t v = 0; v < states_; ++v) {
    if (v > 0) {
      const int32_t l = suffix_link(v);
      if (l < 0 || l >= states_) return fail(v, "suffix link out of range");
      if (length(l) >= length(v) && length(v) < kMaxLength) return fail(v, "suffix link not shorter");
    }
    if (rest_begin(v + 1) < rest_begin(v)) return fail(v, "edge range reversed");
    const uint32_t d = degree(v);
    uint32_t prev_count = ~0u;
    for (uint32_t i = 0; i < d; ++i) {
      const int32_t u = edge_target(v, i);
      if (u <= 0 || u >= states_) return fail(v, "edge " + std::to_string(i) + " target out of range");
      if (length(u) <= length(v) && length(v) < kMaxLength) return fail(v, "edge target not longer");
      if (count(u) > count(v)) return fail(v, "edge target counts more occurrences than its source");
      // The first kTopEdges by decreasing count (the rest count no more), the rest by token.
      if (count(u) > prev_count) return fail(v, "edge " + std::to_string(i) + " counts more than a top edge");
      if (i < kTopEdges) prev_count = count(u);
      if (i > kTopEdges && edge_token(v, i) <= edge_token(v, i - 1)) return fail(v, "other edges not sorted by token");
      if (find(v, edge_token(v, i)) != u) return fail(v, "find() misses edge " + std::to_string(i));
    }
  }
  return {};
}

}  // namespace longtail::drafter
