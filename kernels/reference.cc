// Plain C++ references of the CUDA kernels (see reference.h): straightforward loops in fp64, written
// for clarity rather than speed, so a kernel test failing points at the kernel.
#include "kernels/reference.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <stdexcept>

#include "kernels/philox.h"

namespace longtail::kernels::ref {

bf16 to_bf16(float x) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  if ((u & 0x7F800000u) == 0x7F800000u && (u & 0x007FFFFFu) != 0) {
    return bf16{static_cast<uint16_t>((u >> 16) | 0x40u)};  // quiet NaN
  }
  const uint32_t rounding = 0x7FFFu + ((u >> 16) & 1u);
  return bf16{static_cast<uint16_t>((u + rounding) >> 16)};
}

float from_bf16(bf16 x) {
  const uint32_t u = static_cast<uint32_t>(x.bits) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

std::vector<float> rope_inv_freq(const RopeConfig& cfg, int32_t head_dim) {
  if (head_dim <= 0 || head_dim % 2 != 0) {
    throw std::invalid_argument("rope_inv_freq: head_dim must be even and positive, got " +
                                std::to_string(head_dim));
  }
  if (!(cfg.theta > 0)) throw std::invalid_argument("rope_inv_freq: rope_theta must be > 0");
  const int32_t half = head_dim / 2;
  std::vector<float> inv(half);
  for (int32_t i = 0; i < half; ++i) {
    // HF: 1.0 / base ** (arange(0, dim, 2, dtype=int64).float() / dim), in fp32.
    const float expo = static_cast<float>(2 * i) / static_cast<float>(head_dim);
    inv[i] = 1.0f / std::pow(static_cast<float>(cfg.theta), expo);
  }
  if (!cfg.llama3) return inv;
  if (!(cfg.factor > 0) || !(cfg.low_freq_factor > 0) ||
      !(cfg.high_freq_factor > cfg.low_freq_factor) || cfg.original_max_position <= 0) {
    throw std::invalid_argument(
        "rope_inv_freq: llama3 scaling needs factor > 0, high_freq_factor > low_freq_factor > 0 "
        "and original_max_position_embeddings > 0");
  }
  // transformers' _compute_llama3_parameters.
  const double old_len = static_cast<double>(cfg.original_max_position);
  const double low_wavelen = old_len / cfg.low_freq_factor;
  const double high_wavelen = old_len / cfg.high_freq_factor;
  for (int32_t i = 0; i < half; ++i) {
    const double f = inv[i];
    const double wavelen = 2.0 * M_PI / f;
    double out;
    if (wavelen > low_wavelen) {
      out = f / cfg.factor;
    } else if (wavelen < high_wavelen) {
      out = f;
    } else {
      const double smooth =
          (old_len / wavelen - cfg.low_freq_factor) / (cfg.high_freq_factor - cfg.low_freq_factor);
      out = (1.0 - smooth) * f / cfg.factor + smooth * f;
    }
    inv[i] = static_cast<float>(out);
  }
  return inv;
}

void embedding_gather(std::span<const float> table, int64_t vocab, int64_t hidden,
                      std::span<const int32_t> ids, std::span<float> out, bool* bad) {
  for (size_t t = 0; t < ids.size(); ++t) {
    const int32_t id = ids[t];
    const bool ok = id >= 0 && id < vocab;
    if (!ok && bad != nullptr) *bad = true;
    for (int64_t c = 0; c < hidden; ++c) {
      out[t * hidden + c] = ok ? table[id * hidden + c] : 0.0f;
    }
  }
}

void fused_add_rmsnorm(std::span<float> residual, std::span<const float> x,
                       std::span<const float> weight, std::span<float> out, int64_t rows,
                       int64_t dim, float eps) {
  for (int64_t r = 0; r < rows; ++r) {
    double ss = 0;
    for (int64_t c = 0; c < dim; ++c) {
      float& v = residual[r * dim + c];
      if (!x.empty()) v = static_cast<float>(static_cast<double>(v) + x[r * dim + c]);
      ss += static_cast<double>(v) * v;
    }
    const double inv = 1.0 / std::sqrt(ss / static_cast<double>(dim) + eps);
    for (int64_t c = 0; c < dim; ++c) {
      out[r * dim + c] = static_cast<float>(residual[r * dim + c] * inv * weight[c]);
    }
  }
}

void rmsnorm_rows(std::span<const float> x, std::span<const int32_t> rows, int64_t num_rows,
                  int64_t dim, std::span<const float> weight, float eps, std::span<float> out) {
  for (int64_t r = 0; r < num_rows; ++r) {
    const float* in = x.data() + (rows.empty() ? r : rows[r]) * dim;
    double ss = 0;
    for (int64_t c = 0; c < dim; ++c) ss += static_cast<double>(in[c]) * in[c];
    const double inv = 1.0 / std::sqrt(ss / static_cast<double>(dim) + eps);
    for (int64_t c = 0; c < dim; ++c) out[r * dim + c] = static_cast<float>(in[c] * inv * weight[c]);
  }
}

namespace {
void rope_rows(std::span<float> x, int64_t t, int32_t heads, int32_t head_dim, int32_t pos,
               std::span<const float> inv_freq) {
  const int32_t half = head_dim / 2;
  for (int32_t h = 0; h < heads; ++h) {
    float* row = x.data() + (t * heads + h) * head_dim;
    for (int32_t i = 0; i < half; ++i) {
      const double angle = static_cast<double>(static_cast<float>(pos) * inv_freq[i]);
      const double c = std::cos(angle), s = std::sin(angle);
      const double a = row[i], b = row[i + half];
      row[i] = static_cast<float>(a * c - b * s);
      row[i + half] = static_cast<float>(b * c + a * s);
    }
  }
}
}  // namespace

void rope_inplace(std::span<float> q, int32_t num_heads, std::span<float> k, int32_t num_kv_heads,
                  int32_t head_dim, std::span<const int32_t> positions,
                  std::span<const float> inv_freq) {
  for (size_t t = 0; t < positions.size(); ++t) {
    rope_rows(q, static_cast<int64_t>(t), num_heads, head_dim, positions[t], inv_freq);
    if (!k.empty()) {
      rope_rows(k, static_cast<int64_t>(t), num_kv_heads, head_dim, positions[t], inv_freq);
    }
  }
}

void qkv_post(const QkvShape& sh, std::span<const float> qkv, std::span<const float> bias,
              std::span<const float> q_norm, std::span<const float> k_norm,
              std::span<const int32_t> positions, std::span<const float> inv_freq,
              std::span<const int32_t> slots, std::span<float> q_out, std::span<float> k_cache,
              std::span<float> v_cache) {
  const int32_t H = sh.num_heads, KV = sh.num_kv_heads, D = sh.head_dim, half = D / 2;
  const int64_t width = static_cast<int64_t>(H + 2 * KV) * D;
  const int64_t num_slots = static_cast<int64_t>(k_cache.size()) / (static_cast<int64_t>(KV) * D);
  std::vector<double> x(static_cast<size_t>(D));
  for (size_t t = 0; t < positions.size(); ++t) {
    for (int32_t head = 0; head < H + 2 * KV; ++head) {
      const int64_t base = static_cast<int64_t>(t) * width + static_cast<int64_t>(head) * D;
      for (int32_t d = 0; d < D; ++d) {
        x[d] = static_cast<double>(qkv[base + d]) + (bias.empty() ? 0.0 : bias[head * D + d]);
      }
      const bool is_q = head < H, is_k = !is_q && head < H + KV;
      const std::span<const float> norm = is_q ? q_norm : (is_k ? k_norm : std::span<const float>{});
      if (!norm.empty()) {
        double ss = 0;
        for (double v : x) ss += v * v;
        const double inv = 1.0 / std::sqrt(ss / D + sh.norm_eps);
        for (int32_t d = 0; d < D; ++d) x[d] *= inv * norm[d];
      }
      if (is_q || is_k) {
        for (int32_t i = 0; i < half; ++i) {
          const double angle = static_cast<double>(static_cast<float>(positions[t]) * inv_freq[i]);
          const double c = std::cos(angle), s = std::sin(angle);
          const double a = x[i], b = x[i + half];
          x[i] = a * c - b * s;
          x[i + half] = b * c + a * s;
        }
      }
      float* dst = nullptr;
      if (is_q) {
        dst = q_out.data() + (static_cast<int64_t>(t) * H + head) * D;
      } else if (slots[t] >= 0 && slots[t] < num_slots) {
        const int32_t kvh = is_k ? head - H : head - H - KV;
        dst = (is_k ? k_cache : v_cache).data() + (static_cast<int64_t>(slots[t]) * KV + kvh) * D;
      }
      if (dst == nullptr) continue;
      for (int32_t d = 0; d < D; ++d) dst[d] = static_cast<float>(x[d]);
    }
  }
}

void paged_attention(const AttentionShape& sh, std::span<const float> q,
                     std::span<const float> k_cache, std::span<const float> v_cache,
                     std::span<const int32_t> block_table, std::span<const int32_t> query_start,
                     std::span<const int32_t> seq_lens, std::span<const int32_t> tree_parents,
                     std::span<float> out) {
  const int32_t D = sh.head_dim;
  const int32_t group = sh.num_heads / sh.num_kv_heads;
  const int64_t num_seqs = static_cast<int64_t>(seq_lens.size());
  std::vector<double> scores;
  for (int64_t s = 0; s < num_seqs; ++s) {
    const int32_t q0 = query_start[s], n = query_start[s + 1] - q0;
    const int32_t prefix = seq_lens[s] - n;
    auto slot_of = [&](int32_t pos) {
      return static_cast<int64_t>(block_table[s * sh.block_table_stride + pos / sh.block_size]) *
                 sh.block_size +
             pos % sh.block_size;
    };
    for (int32_t j = 0; j < n; ++j) {
      // Which of the sequence's new tokens query j sees.
      std::vector<bool> sees(n, false);
      if (tree_parents.empty()) {
        for (int32_t a = 0; a <= j; ++a) sees[a] = true;
      } else {
        for (int32_t a = j; a >= 0;) {
          sees[a] = true;
          const int32_t p = tree_parents[q0 + a];
          a = (p >= 0 && p < a) ? p : -1;
        }
      }
      for (int32_t h = 0; h < sh.num_heads; ++h) {
        const int32_t kvh = h / group;
        const float* qrow = q.data() + ((q0 + j) * static_cast<int64_t>(sh.num_heads) + h) * D;
        scores.assign(static_cast<size_t>(prefix + n), -std::numeric_limits<double>::infinity());
        double mx = -std::numeric_limits<double>::infinity();
        for (int32_t pos = 0; pos < prefix + n; ++pos) {
          if (pos >= prefix && !sees[pos - prefix]) continue;
          const float* krow = k_cache.data() + (slot_of(pos) * sh.num_kv_heads + kvh) * D;
          double dot = 0;
          for (int32_t d = 0; d < D; ++d) dot += static_cast<double>(qrow[d]) * krow[d];
          scores[pos] = dot * sh.scale;
          mx = std::max(mx, scores[pos]);
        }
        double denom = 0;
        std::vector<double> acc(D, 0.0);
        for (int32_t pos = 0; pos < prefix + n; ++pos) {
          if (scores[pos] == -std::numeric_limits<double>::infinity()) continue;
          const double p = std::exp(scores[pos] - mx);
          denom += p;
          const float* vrow = v_cache.data() + (slot_of(pos) * sh.num_kv_heads + kvh) * D;
          for (int32_t d = 0; d < D; ++d) acc[d] += p * vrow[d];
        }
        float* orow = out.data() + ((q0 + j) * static_cast<int64_t>(sh.num_heads) + h) * D;
        for (int32_t d = 0; d < D; ++d) orow[d] = static_cast<float>(acc[d] / denom);
      }
    }
  }
}

void matmul_xwt(std::span<const float> x, std::span<const float> w, int64_t m, int64_t n, int64_t k,
                std::span<float> y) {
  for (int64_t r = 0; r < m; ++r) {
    for (int64_t c = 0; c < n; ++c) {
      double s = 0;
      for (int64_t i = 0; i < k; ++i) s += static_cast<double>(x[r * k + i]) * w[c * k + i];
      y[r * n + c] = static_cast<float>(s);
    }
  }
}

void swiglu(std::span<const float> gate_up, std::span<float> out, int64_t rows, int64_t inter) {
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t i = 0; i < inter; ++i) {
      const double g = gate_up[r * 2 * inter + i], u = gate_up[r * 2 * inter + inter + i];
      out[r * inter + i] = static_cast<float>(g / (1.0 + std::exp(-g)) * u);
    }
  }
}

void kv_cache_move_rows(std::span<uint8_t> base, int64_t plane_bytes, int32_t num_planes,
                        int32_t row_bytes, std::span<const int32_t> src_slots,
                        std::span<const int32_t> dst_slots, std::span<const int32_t> group_start) {
  for (int32_t p = 0; p < num_planes; ++p) {
    uint8_t* plane = base.data() + p * plane_bytes;
    for (size_t g = 0; g + 1 < group_start.size(); ++g) {
      for (int32_t j = group_start[g]; j < group_start[g + 1]; ++j) {
        std::memmove(plane + static_cast<int64_t>(dst_slots[j]) * row_bytes,
                     plane + static_cast<int64_t>(src_slots[j]) * row_bytes, static_cast<size_t>(row_bytes));
      }
    }
  }
}

int32_t argmax(std::span<const float> x) {
  int32_t best = 0;
  for (size_t i = 1; i < x.size(); ++i) {
    if (x[i] > x[best]) best = static_cast<int32_t>(i);  // strict: the lowest index wins ties
  }
  return best;
}

namespace {

// log softmax(logits / T)[token]: max over the float z = logits / T, the sum of exp(z - max) in
// fp64, log-sum-exp = max + log(sum), then z[token] - log-sum-exp in fp64.
float log_softmax_at(std::span<const float> logits, float temperature, int32_t token) {
  float m = -std::numeric_limits<float>::infinity();
  for (float x : logits) m = std::max(m, x / temperature);
  double lse = m;
  if (!std::isinf(m)) {
    double s = 0;
    for (float x : logits) s += std::exp(static_cast<double>(x / temperature) - m);
    lse = m + std::log(s);
  }
  return static_cast<float>(static_cast<double>(logits[token] / temperature) - lse);
}

float log_of(float x, LogRounding rounding) {
  return rounding == LogRounding::kHostLibm ? std::log(x)
                                            : static_cast<float>(std::log(static_cast<double>(x)));
}

// The min-p / top-k / top-p candidates in candidate order (z descending, index ascending), or
// empty for the whole vocabulary.
std::vector<int32_t> candidates(std::span<const float> logits, const SamplingRow& p) {
  const int32_t vocab = static_cast<int32_t>(logits.size());
  const bool cut_min_p = p.min_p > 0.0f;
  bool cut_k = p.top_k > 0 && p.top_k < vocab;
  const bool cut_p = p.top_p < 1.0f;
  std::vector<int32_t> cand;
  if (!cut_min_p && !cut_k && !cut_p) return cand;
  const float t = p.temperature;
  std::vector<float> z(static_cast<size_t>(vocab));
  for (int32_t i = 0; i < vocab; ++i) z[i] = logits[i] / t;
  cand.resize(vocab);
  std::iota(cand.begin(), cand.end(), 0);
  auto before = [&](int32_t a, int32_t b) { return z[a] > z[b] || (z[a] == z[b] && a < b); };
  if (cut_min_p) {
    // p_i >= min_p * p_max  <=>  z_i - z_max >= log(min_p); keeps a prefix of the candidate order.
    const double z_max = *std::max_element(z.begin(), z.end());
    const double floor = std::log(static_cast<double>(p.min_p));
    std::erase_if(cand, [&](int32_t i) { return static_cast<double>(z[i]) - z_max < floor; });
    cut_k = cut_k && static_cast<size_t>(p.top_k) < cand.size();
    if (!cut_k && !cut_p) return cand;
  }
  if (cut_k) {
    std::nth_element(cand.begin(), cand.begin() + p.top_k, cand.end(), before);
    cand.resize(p.top_k);
  }
  if (!cut_p) return cand;  // the draw is an argmax: the candidates' order does not matter
  // Softmax normaliser over the candidates, summed in ascending index order.
  std::sort(cand.begin(), cand.end());
  float zmax = -std::numeric_limits<float>::infinity();
  for (int32_t i : cand) zmax = std::max(zmax, z[i]);
  double total = 0;
  for (int32_t i : cand) total += std::exp(static_cast<double>(z[i]) - zmax);
  // Walk the candidates in order, sorting only as far as needed: a peaked distribution reaches
  // top_p after a handful of tokens, so this rarely sorts the whole vocabulary.
  double cum = 0;
  size_t n = 0, sorted = 0;
  const size_t size = cand.size();
  bool reached = false;
  while (!reached && n < size) {
    if (n == sorted) {
      const size_t next = std::min(size, std::max<size_t>(64, sorted * 4));
      if (next < size) std::nth_element(cand.begin() + sorted, cand.begin() + next, cand.end(), before);
      std::sort(cand.begin() + sorted, cand.begin() + next, before);
      sorted = next;
    }
    cum += std::exp(static_cast<double>(z[cand[n]]) - zmax) / total;
    ++n;
    reached = cum >= static_cast<double>(p.top_p);
  }
  cand.resize(n);
  return cand;
}

}  // namespace

float token_logprob(std::span<const float> logits, float temperature, int32_t token) {
  if (token < 0 || static_cast<size_t>(token) >= logits.size()) {
    return std::numeric_limits<float>::quiet_NaN();
  }
  return log_softmax_at(logits, temperature > 0 ? temperature : 1.0f, token);
}

namespace {

// Rule 0: the logits with the masked ids at -inf (a copy, made only when something is masked).
std::span<const float> apply_mask(std::span<const float> logits, std::span<const int32_t> masked,
                                  std::vector<float>& storage) {
  if (masked.empty()) return logits;
  storage.assign(logits.begin(), logits.end());
  for (int32_t t : masked) {
    if (t >= 0 && static_cast<size_t>(t) < storage.size()) storage[t] = -std::numeric_limits<float>::infinity();
  }
  return storage;
}

// Rule 3 processed at T > 0 for token x of the masked logits, given the candidates (empty = all).
float processed_logprob(std::span<const float> logits, float t, std::vector<int32_t> cand, int32_t x) {
  if (!cand.empty() && std::find(cand.begin(), cand.end(), x) == cand.end()) {
    return -std::numeric_limits<float>::infinity();
  }
  float m = -std::numeric_limits<float>::infinity();
  for (float v : logits) m = std::max(m, v / t);
  if (std::isinf(m)) return -std::numeric_limits<float>::infinity();
  double s = 0;
  if (cand.empty()) {
    for (float v : logits) s += std::exp(static_cast<double>(v / t) - m);
  } else {
    std::sort(cand.begin(), cand.end());
    for (int32_t i : cand) s += std::exp(static_cast<double>(logits[i] / t) - m);
  }
  return static_cast<float>(static_cast<double>(logits[x] / t) - (m + std::log(s)));
}

// Rule 3 for token x: `logits` unmasked, `masked_logits` the same after rule 0.
float reported_logprob(std::span<const float> logits, std::span<const float> masked_logits,
                       const SamplingRow& p, const RuleExtras& extras, int32_t x) {
  const bool greedy = !(p.temperature > 0);
  if (extras.logprob == LogprobKind::kRaw) return log_softmax_at(logits, greedy ? 1.0f : p.temperature, x);
  if (greedy) return x == argmax(masked_logits) ? 0.0f : -std::numeric_limits<float>::infinity();
  return processed_logprob(masked_logits, p.temperature, candidates(masked_logits, p), x);
}

}  // namespace

float rule_logprob(std::span<const float> logits, const SamplingRow& p, const RuleExtras& extras,
                   int32_t token) {
  if (token < 0 || static_cast<size_t>(token) >= logits.size()) {
    return std::numeric_limits<float>::quiet_NaN();
  }
  std::vector<float> storage;
  return reported_logprob(logits, apply_mask(logits, extras.masked, storage), p, extras, token);
}

SampleResult sample_row(std::span<const float> logits, const SamplingRow& p, LogRounding log_rounding,
                        const RuleExtras& extras) {
  if (logits.empty()) throw std::invalid_argument("sample_row: empty logits row");
  std::vector<float> storage;
  const std::span<const float> z_logits = apply_mask(logits, extras.masked, storage);
  if (!(p.temperature > 0)) {
    const int32_t x = argmax(z_logits);
    return {x, reported_logprob(logits, z_logits, p, extras, x)};
  }
  const float t = p.temperature;
  int32_t best = -1;
  float best_key = -std::numeric_limits<float>::infinity();
  auto consider = [&](int32_t i, float u) {
    const float key = z_logits[i] / t + (-log_of(-log_of(u, log_rounding), log_rounding));
    if (best < 0 || key > best_key || (key == best_key && i < best)) {
      best = i;
      best_key = key;
    }
  };
  std::vector<int32_t> cand = candidates(z_logits, p);
  if (cand.empty()) {
    // The whole vocabulary: one Philox call per group of four entries (philox.h).
    const auto n = static_cast<int64_t>(z_logits.size());
    for (int64_t g = 0; 4 * g < n; ++g) {
      const Philox4x32 w = sampling_words(p.seed, p.uid, p.position, static_cast<uint32_t>(g));
      for (int64_t j = 0; j < 4 && 4 * g + j < n; ++j) {
        consider(static_cast<int32_t>(4 * g + j), sampling_uniform_of_word(w.v[j]));
      }
    }
  } else {
    for (int32_t i : cand) consider(i, sampling_uniform(p.seed, p.uid, p.position, static_cast<uint32_t>(i)));
  }
  if (extras.logprob == LogprobKind::kRaw) return {best, log_softmax_at(logits, t, best)};
  return {best, processed_logprob(z_logits, t, std::move(cand), best)};
}

std::string validate_tree_parents(std::span<const int32_t> parents) {
  if (parents.size() > 64) {
    return "tree attention supports at most 64 draft tokens per sequence, got " +
           std::to_string(parents.size());
  }
  for (size_t j = 0; j < parents.size(); ++j) {
    if (parents[j] < -1 || parents[j] >= static_cast<int32_t>(j)) {
      return "tree parent of draft token " + std::to_string(j) + " is " +
             std::to_string(parents[j]) + "; it must be in [-1, " + std::to_string(j) + ")";
    }
  }
  return "";
}

}  // namespace longtail::kernels::ref
