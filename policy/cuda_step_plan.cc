// Pass planning and metadata packing for the CUDA forward (see cuda_step_plan.h).
#include "policy/cuda_step_plan.h"

#include <algorithm>
#include <cstring>
#include <iterator>
#include <stdexcept>
#include <string>

namespace longtail::policy::cuda {
namespace {

constexpr int32_t kBuckets[] = {1,  2,  4,  8,  16,  24,  32,  40,  48,  56,
                                64, 80, 96, 112, 128, 160, 192, 224, 256};
constexpr int32_t kQueryLenBuckets[] = {1, 2, 4, 8, 16, 32};
constexpr int32_t kMinUniformVerifySeqs = 8;

size_t align16(size_t x) { return (x + 15) / 16 * 16; }

bool padding_is_free(const PlanLimits& l) {
  return l.token_buckets == TokenBuckets::kBoundedCost &&
         static_cast<int64_t>(l.fixed_cost_tokens) >= 4 * static_cast<int64_t>(l.max_tokens);
}

int32_t pow2_at_least(int32_t x) {
  int32_t p = 1;
  while (p < x) p <<= 1;
  return p;
}

// mask_start: where the piece's mask ids sit in the pass's masked_ids, -1 when it has none there.
kernels::SamplingRow sampling_row(const PlanChunk& c, int64_t position, int32_t mask_start) {
  kernels::SamplingRow r;
  r.temperature = c.sampling.temperature;
  r.top_k = c.sampling.top_k;
  r.top_p = c.sampling.top_p;
  r.min_p = c.sampling.min_p;
  r.seed = c.sampling.seed;
  r.uid = c.uid;
  r.position = position;
  if (mask_start >= 0 && position >= c.sampling.mask_begin && position < c.sampling.mask_end) {
    r.mask_start = mask_start;
    r.mask_count = static_cast<int32_t>(c.mask_ids.size());
  }
  r.processed = c.sampling.logprobs_mode == LogprobsMode::kProcessed ? 1 : 0;
  return r;
}

// Accumulates pieces of chunks into one pass.
class PassBuilder {
 public:
  explicit PassBuilder(const PlanLimits& limits) : limits_(&limits) {}

  int32_t tokens() const { return static_cast<int32_t>(pass_.tokens.size()); }
  int32_t seqs() const { return static_cast<int32_t>(pieces_.size()); }
  int32_t outputs() const { return static_cast<int32_t>(pass_.out_rows.size()); }
  bool empty() const { return pieces_.empty(); }

  bool has_tree() const { return pass_.tree; }
  int32_t max_query_len() const { return pass_.max_query_len; }

  // Input indices [a, b) of chunk c (the whole chunk when it is a tree).
  void add(const PlanChunk& c, int32_t a, int32_t b) {
    const int32_t B = limits_->block_size;
    const int32_t s = seqs();
    const int32_t t0 = tokens();
    const bool tree = !c.parents.empty();
    if (tree && (a != 0 || b != static_cast<int32_t>(c.tokens.size())))
      throw std::logic_error("plan_passes: a token tree was cut between passes");
    if (pass_.query_start.empty()) pass_.query_start.push_back(0);
    for (int32_t i = a; i < b; ++i) {
      const int32_t row = c.old_length + i;  // cache row; a tree input's position is its depth's
      pass_.tokens.push_back(c.tokens[static_cast<size_t>(i)]);
      pass_.positions.push_back(tree ? c.old_length + c.offsets[static_cast<size_t>(i)] : row);
      pass_.slots.push_back((*c.blocks)[static_cast<size_t>(row / B)] * B + row % B);
      pass_.token_seq.push_back(s);
      pass_.tree_parents.push_back(tree ? c.parents[static_cast<size_t>(i)] : i - a - 1);
    }
    pass_.tree = pass_.tree || tree;
    pass_.query_start.push_back(tokens());
    const int32_t len = c.old_length + b;
    pass_.seq_lens.push_back(len);
    const int32_t n = static_cast<int32_t>(c.tokens.size());
    // The next given input: a chain's next token, a tree input's first (lowest-index) child.
    std::vector<int32_t> next;
    if (tree) {
      next.assign(static_cast<size_t>(n), -1);
      for (int32_t i = n - 1; i >= 1; --i) {
        const int32_t p = c.parents[static_cast<size_t>(i)];
        if (p >= 0) next[static_cast<size_t>(p)] = i;
      }
    }
    // The piece's mask ids go in once, when one of its output rows lies in the mask range.
    int32_t mask_start = -1;
    auto draw_position = [&](int32_t i) {
      return static_cast<int64_t>(c.old_length) + (tree ? c.offsets[static_cast<size_t>(i)] : i) + 1;
    };
    if (!c.mask_ids.empty() && c.sampling.mask_begin < c.sampling.mask_end) {
      for (int32_t i = std::max(a, c.first_output); i < b && mask_start < 0; ++i) {
        const int64_t pos = draw_position(i);
        if (pos >= c.sampling.mask_begin && pos < c.sampling.mask_end) {
          mask_start = static_cast<int32_t>(pass_.masked_ids.size());
          pass_.masked_ids.insert(pass_.masked_ids.end(), c.mask_ids.begin(), c.mask_ids.end());
        }
      }
    }
    for (int32_t i = std::max(a, c.first_output); i < b; ++i) {
      const int32_t nx = tree ? next[static_cast<size_t>(i)] : (i + 1 < n ? i + 1 : -1);
      pass_.out_rows.push_back(t0 + (i - a));
      pass_.targets.push_back(nx >= 0 ? c.tokens[static_cast<size_t>(nx)] : -1);
      pass_.rows.push_back(sampling_row(c, draw_position(i), mask_start));
    }
    pieces_.push_back({c.blocks, (len + B - 1) / B});
    pass_.max_query_len = std::max(pass_.max_query_len, b - a);
    pass_.max_kv_len = std::max<int64_t>(pass_.max_kv_len, len);
  }

  // Appends one padding sequence per entry of `pad_lens` (graph replay), of that many (>= 0) tokens
  // each. Their tokens write no KV (slot -1) and attend to block 0 (valid memory, never written
  // by them); their output rows follow the real ones and are dropped by the runner.
  PassPlan finish(int32_t table_width, const std::vector<int32_t>& pad_lens = {}) {
    pass_.real_outputs = outputs();
    for (const int32_t per_seq : pad_lens) {
      const int32_t s = seqs();
      const int32_t t0 = tokens();
      for (int32_t j = 0; j < per_seq; ++j) {
        pass_.tokens.push_back(0);
        pass_.positions.push_back(j);
        pass_.slots.push_back(-1);  // never written: the cache stays untouched
        pass_.token_seq.push_back(s);
        pass_.tree_parents.push_back(j - 1);
        pass_.out_rows.push_back(t0 + j);
        pass_.targets.push_back(-1);
        kernels::SamplingRow r;
        r.temperature = 0.0f;
        pass_.rows.push_back(r);
      }
      pass_.query_start.push_back(tokens());
      pass_.seq_lens.push_back(per_seq);
      pieces_.push_back({nullptr, 0});
    }
    pass_.num_tokens = tokens();
    pass_.num_seqs = seqs();
    pass_.num_outputs = outputs();
    pass_.table_width = table_width;
    pass_.block_table.assign(static_cast<size_t>(pass_.num_seqs) * table_width, 0);
    for (size_t s = 0; s < pieces_.size(); ++s) {
      if (!pieces_[s].blocks) continue;
      std::copy_n(pieces_[s].blocks->begin(), pieces_[s].used,
                  pass_.block_table.begin() + static_cast<ptrdiff_t>(s * table_width));
    }
    return std::move(pass_);
  }

  int32_t needed_width() const {
    int32_t w = 1;
    for (const auto& p : pieces_) w = std::max(w, p.used);
    return w;
  }

 private:
  struct Piece {
    const std::vector<int32_t>* blocks;
    int32_t used;  // blocks covering the sequence up to this piece's end
  };
  const PlanLimits* limits_;
  PassPlan pass_;
  std::vector<Piece> pieces_;
};

// The padded shape of a graphable pass: the key and the token count of each padding sequence.
struct GraphShape {
  GraphKey key;
  std::vector<int32_t> pad_lens;
};

// Uniform steps (all sequences add n tokens) pad with whole sequences of n tokens, as plain decode
// always did. Ragged steps pad T to a token bucket and the longest query to a query-length bucket,
// spreading the T padding over padding sequences (up to a sequence bucket) of 0..max_query_len
// tokens each.
bool graph_shape(std::span<const PlanChunk> chunks, const PlanLimits& limits, GraphShape* out) {
  if (!limits.graphs || chunks.empty()) return false;
  int64_t total = 0;
  int32_t longest = 0;
  bool uniform = true;
  const size_t n0 = chunks[0].tokens.size();
  for (const auto& c : chunks) {
    const int32_t n = static_cast<int32_t>(c.tokens.size());
    if (n == 0 || n > limits.max_graph_tokens_per_seq || c.first_output != 0) return false;
    uniform = uniform && c.tokens.size() == n0;
    total += n;
    longest = std::max(longest, n);
  }
  const int32_t S = static_cast<int32_t>(chunks.size());
  int32_t s_b = graph_batch_bucket(S);
  if (s_b == 0) return false;
  GraphShape& g = *out;
  g.pad_lens.clear();
  // A verify step of a few sequences that happen to add the same count is the tail of a ragged
  // run: as a uniform step it would be a key of its own for every draft length.
  if (uniform && longest > 1 && S < kMinUniformVerifySeqs &&
      limits.token_buckets == TokenBuckets::kBoundedCost)
    uniform = false;
  if (uniform) {
    g.key = GraphKey{s_b, s_b * longest, longest, 0};
    g.pad_lens.assign(static_cast<size_t>(s_b - S), longest);
  } else {
    if (!limits.ragged_graphs) return false;
    int32_t q_b = graph_query_len_bucket(longest);
    if (q_b == 0) return false;
    if (padding_is_free(limits)) q_b = kQueryLenBuckets[std::size(kQueryLenBuckets) - 1];
    // Padding sequences take 0..q_b tokens each (an empty one launches attention blocks that
    // return at once), so the smallest sequence bucket with room for t_b - T tokens serves.
    const int32_t T = static_cast<int32_t>(total);
    const int32_t t_b = limits.token_buckets == TokenBuckets::kFixedSteps
                            ? graph_token_bucket(T)
                            : graph_token_bucket(T, limits.fixed_cost_tokens);
    const int32_t pad = t_b - T;
    // Powers of two: a padding sequence costs only attention blocks that exit at once, while
    // every distinct key costs a capture, so coarse sequence buckets pay.
    s_b = 1;
    while (s_b < S || static_cast<int64_t>(pad) > static_cast<int64_t>(s_b - S) * q_b) s_b *= 2;
    if (s_b > kBuckets[std::size(kBuckets) - 1]) return false;
    const int32_t pad_seqs = s_b - S;
    g.key = GraphKey{s_b, t_b, q_b, 0};
    for (int32_t i = 0; i < pad_seqs; ++i)
      g.pad_lens.push_back(pad / pad_seqs + (i < pad % pad_seqs ? 1 : 0));
  }
  return g.key.tokens <= limits.max_tokens && g.key.tokens <= limits.max_outputs &&
         g.key.seqs <= limits.max_seqs;
}

}  // namespace

int32_t graph_batch_bucket(int32_t seqs) {
  for (int32_t b : kBuckets)
    if (seqs <= b) return b;
  return 0;
}

int32_t graph_token_bucket(int32_t tokens) {
  const int32_t step = tokens <= 64 ? 8 : tokens <= 256 ? 16 : tokens <= 512 ? 32
                       : tokens <= 1024 ? 64 : 128;
  return std::max(step, (tokens + step - 1) / step * step);
}

int32_t graph_token_bucket(int32_t tokens, int32_t fixed_cost_tokens) {
  const int64_t fixed = std::max(0, fixed_cost_tokens);
  int64_t b = 8;
  while (b < tokens) b += std::clamp<int64_t>((b + fixed) / 8 / 8 * 8, 8, b);
  return static_cast<int32_t>(b);
}

// The price behind it: a step's fixed part is ~3.5 us per launch (11 per layer + 5) plus one read
// of the bf16 weights at ~4.2 TB/s; a token costs 2 FLOP per weight at ~450 TFLOP/s (the bf16
// products' rate at a few hundred rows on an H200: bench/results/gpu_2026-12-02c.md's verify grid
// has ~6.6 us per token and ~1.9 ms of fixed cost at 1.5B). So ~270 tokens for a 1.5B model,
// ~140 for 7B, and ~1e5 for the bundled 0.45M-parameter policy, whose steps are all launches.
int32_t fixed_cost_tokens_of(const ModelConfig& c) {
  const double h = c.hidden_size, layers = c.num_layers;
  const double qkv = static_cast<double>(c.num_heads + 2 * c.num_kv_heads) * c.head_dim;
  const double attn = static_cast<double>(c.num_heads) * c.head_dim;
  const double params =
      layers * (h * qkv + attn * h + 3.0 * h * c.intermediate_size) + h * c.vocab_size;
  if (!(params > 0)) return 0;
  const double fixed_us = 3.5 * (11.0 * layers + 5.0) + 2.0 * params / 4.2e6;
  const double per_token_us = 2.0 * params / 4.5e8;
  return static_cast<int32_t>(std::min(fixed_us / per_token_us, double{1 << 20}));
}

PlanLimits priced_graph_limits(PlanLimits limits, const ModelConfig& c, int32_t max_table_width,
                               const std::string& mode) {
  if (mode == "legacy") {
    limits.token_buckets = TokenBuckets::kFixedSteps;
    return limits;
  }
  limits.token_buckets = TokenBuckets::kBoundedCost;
  if (mode.empty()) {
    limits.fixed_cost_tokens = fixed_cost_tokens_of(c);
  } else if (mode == "tokens") {
    limits.fixed_cost_tokens = 0;
  } else {
    size_t used = 0;
    long n = -1;
    try {
      n = std::stol(mode, &used);
    } catch (const std::exception&) {
    }
    if (used != mode.size() || n < 0 || n > (1 << 20))
      throw std::invalid_argument("graph buckets '" + mode +
                                  "' not understood (legacy, tokens, or a token count in [0, 2^20])");
    limits.fixed_cost_tokens = static_cast<int32_t>(n);
  }
  // Padding costs nothing at any size: a wider block table costs nothing either, and saves the
  // captures of the narrower widths a growing sequence passes through.
  if (mode.empty() && padding_is_free(limits))
    limits.min_graph_table_width =
        std::max(limits.min_graph_table_width, std::min(64, max_table_width));
  return limits;
}

bool capture_at_first_sight(const PlanLimits& l) {
  return l.graphs && l.ragged_graphs && l.token_buckets == TokenBuckets::kBoundedCost;
}

int32_t graph_query_len_bucket(int32_t max_query_len) {
  for (int32_t b : kQueryLenBuckets)
    if (max_query_len <= b) return b;
  return 0;
}

std::vector<PassPlan> plan_passes(std::span<const PlanChunk> chunks, const PlanLimits& limits) {
  if (limits.max_tokens <= 0 || limits.max_seqs <= 0 || limits.max_outputs <= 0)
    throw std::invalid_argument("plan_passes: limits must be positive");
  std::vector<PassPlan> passes;
  GraphShape g;
  if (graph_shape(chunks, limits, &g)) {
    PassBuilder b(limits);
    for (const auto& c : chunks) b.add(c, 0, static_cast<int32_t>(c.tokens.size()));
    const int32_t width = pow2_at_least(std::max(b.needed_width(), limits.min_graph_table_width));
    PassPlan p = b.finish(width, g.pad_lens);
    p.graphable = true;
    g.key.table_width = width;
    g.key.tree = p.tree;
    p.key = g.key;
    p.max_query_len = g.key.max_query_len;
    // Sizes, not contents, choose the attention split: replays of one key share it.
    p.max_kv_len = static_cast<int64_t>(width) * limits.block_size;
    if (p.num_tokens != g.key.tokens || p.num_outputs != g.key.tokens || p.num_seqs != g.key.seqs)
      throw std::logic_error("plan_passes: padded pass does not match its graph key");
    passes.push_back(std::move(p));
    return passes;
  }
  PassBuilder cur(limits);
  auto flush = [&] {
    if (cur.empty()) return;
    passes.push_back(cur.finish(cur.needed_width()));
    cur = PassBuilder(limits);
  };
  constexpr int32_t kTreeQueryLimit = 64;  // kernels::paged_attention's tree limit
  for (const auto& c : chunks) {
    const int32_t n = static_cast<int32_t>(c.tokens.size());
    if (!c.parents.empty()) {  // a tree goes whole into a pass whose pieces are all short
      const int32_t outs = n - std::min(n, c.first_output);
      if (n > kTreeQueryLimit || n > limits.max_tokens || outs > limits.max_outputs)
        throw std::invalid_argument("plan_passes: a token tree of " + std::to_string(n) +
                                    " inputs exceeds one pass (at most 64)");
      if (cur.seqs() >= limits.max_seqs || cur.tokens() + n > limits.max_tokens ||
          cur.outputs() + outs > limits.max_outputs || cur.max_query_len() > kTreeQueryLimit)
        flush();
      cur.add(c, 0, n);
      continue;
    }
    int32_t a = 0;
    while (a < n) {
      if (cur.has_tree() && std::min(n - a, limits.max_tokens - cur.tokens()) > kTreeQueryLimit) {
        flush();  // a long piece (prefill) does not share a pass with a tree
        continue;
      }
      if (cur.seqs() >= limits.max_seqs || cur.tokens() >= limits.max_tokens) {
        flush();
        continue;
      }
      int32_t b = std::min(n, a + (limits.max_tokens - cur.tokens()));
      const int32_t out_from = std::max(a, c.first_output);
      const int32_t room_out = limits.max_outputs - cur.outputs();
      if (b > out_from && b - out_from > room_out) b = out_from + room_out;
      if (b <= a) {
        flush();
        continue;
      }
      cur.add(c, a, b);
      a = b;
    }
  }
  flush();
  return passes;
}

MetaLayout meta_layout(int32_t T, int32_t S, int32_t R, int32_t W, int32_t M) {
  MetaLayout m{};
  size_t at = 0;
  auto take = [&](size_t bytes) {
    const size_t off = at;
    at = align16(at + bytes);
    return off;
  };
  const size_t t = static_cast<size_t>(T) * 4, r = static_cast<size_t>(R) * 4;
  m.tokens = take(t);
  m.positions = take(t);
  m.slots = take(t);
  m.token_seq = take(t);
  m.query_start = take((static_cast<size_t>(S) + 1) * 4);
  m.seq_lens = take(static_cast<size_t>(S) * 4);
  m.out_rows = take(r);
  m.targets = take(r);
  m.rows = take(static_cast<size_t>(R) * sizeof(kernels::SamplingRow));
  m.block_table = take(static_cast<size_t>(S) * static_cast<size_t>(W) * 4);
  m.tree_parents = take(t);
  m.masked_ids = take(static_cast<size_t>(M) * 4);
  m.total = at;
  return m;
}

size_t meta_capacity(const PlanLimits& limits, int32_t max_table_width) {
  return meta_layout(limits.max_tokens, limits.max_seqs, limits.max_outputs, max_table_width,
                     limits.max_seqs * limits.max_mask_ids_per_seq)
      .total;
}

void pack_meta(const PassPlan& p, const MetaLayout& m, std::byte* dst) {
  auto put = [&](size_t off, const auto& v) {
    if (!v.empty()) std::memcpy(dst + off, v.data(), v.size() * sizeof(v[0]));
  };
  put(m.tokens, p.tokens);
  put(m.positions, p.positions);
  put(m.slots, p.slots);
  put(m.token_seq, p.token_seq);
  put(m.query_start, p.query_start);
  put(m.seq_lens, p.seq_lens);
  put(m.out_rows, p.out_rows);
  put(m.targets, p.targets);
  put(m.rows, p.rows);
  put(m.block_table, p.block_table);
  put(m.tree_parents, p.tree_parents);
  put(m.masked_ids, p.masked_ids);
}

}  // namespace longtail::policy::cuda
