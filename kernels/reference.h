// Plain C++ references of every kernel in kernels/kernels.h (fp32 inputs, fp64 arithmetic), always
// built, used by the kernel tests; plus the rules a host implementation must share with the
// kernels bit for bit, written once here: bf16 rounding, RoPE inverse frequencies and the sampling
// rule (sample_row), which a CPU model runs as its sampler and the GPU sampler is tested against.
// Inputs are taken as float values (already rounded to bf16 by the caller where the kernel reads
// bf16), outputs are unrounded, so a test compares kernel output to these by relative error.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "kernels/kernels.h"

namespace longtail::kernels::ref {

// bf16 <-> float, round to nearest even (NaN stays NaN).
bf16 to_bf16(float x);
float from_bf16(bf16 x);
inline float round_bf16(float x) { return from_bf16(to_bf16(x)); }

// RoPE inverse frequencies (head_dim / 2 floats), computed like HF's rope init functions:
// default: 1 / theta^(2i/d) in fp32; llama3: the low/high frequency smoothing of Llama 3.1 in fp64.
// The input of rope_inplace_bf16 and of a host model's RoPE alike. Throws std::invalid_argument
// for an odd or non-positive head_dim, theta <= 0, or inconsistent llama3 factors.
struct RopeConfig {
  double theta = 10000.0;
  bool llama3 = false;
  double factor = 1.0;
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  int64_t original_max_position = 8192;
};
std::vector<float> rope_inv_freq(const RopeConfig& cfg, int32_t head_dim);

// out rows (num_tokens x hidden); bad ids give zero rows and set *bad.
void embedding_gather(std::span<const float> table, int64_t vocab, int64_t hidden,
                      std::span<const int32_t> ids, std::span<float> out, bool* bad);

// residual (rows x dim) += x (if not empty); out = rmsnorm(residual) * weight. Dense rows.
void fused_add_rmsnorm(std::span<float> residual, std::span<const float> x,
                       std::span<const float> weight, std::span<float> out, int64_t rows,
                       int64_t dim, float eps);

// out (num_rows x dim) = rmsnorm(x[src]) * weight, src = rows.empty() ? r : rows[r]; x dense rows.
void rmsnorm_rows(std::span<const float> x, std::span<const int32_t> rows, int64_t num_rows,
                  int64_t dim, std::span<const float> weight, float eps, std::span<float> out);

// In place on q (num_tokens x num_heads x head_dim) and k (num_tokens x num_kv_heads x head_dim).
void rope_inplace(std::span<float> q, int32_t num_heads, std::span<float> k, int32_t num_kv_heads,
                  int32_t head_dim, std::span<const int32_t> positions,
                  std::span<const float> inv_freq);

// kernels.h's qkv_post: qkv is (num_tokens x (H + 2 KV) x D); bias, q_norm and k_norm may be
// empty (none); q_out is (num_tokens x H x D); k_cache / v_cache are (num_slots x KV x D) and
// receive the tokens whose slot is in [0, num_slots).
struct QkvShape {
  int32_t num_heads = 0, num_kv_heads = 0, head_dim = 0;
  float norm_eps = 1e-6f;
};
void qkv_post(const QkvShape& shape, std::span<const float> qkv, std::span<const float> bias,
              std::span<const float> q_norm, std::span<const float> k_norm,
              std::span<const int32_t> positions, std::span<const float> inv_freq,
              std::span<const int32_t> slots, std::span<float> q_out, std::span<float> k_cache,
              std::span<float> v_cache);

// Paged attention with the semantics of kernels.h's paged_attention. Caches are
// [num_blocks][block_size][num_kv_heads][head_dim]; q and out are dense
// [num_tokens][num_heads][head_dim]; block_table is [num_seqs][block_table_stride].
struct AttentionShape {
  int32_t num_heads = 0, num_kv_heads = 0, head_dim = 0, block_size = 16;
  int64_t block_table_stride = 0;
  float scale = 0;
};
void paged_attention(const AttentionShape& shape, std::span<const float> q,
                     std::span<const float> k_cache, std::span<const float> v_cache,
                     std::span<const int32_t> block_table, std::span<const int32_t> query_start,
                     std::span<const int32_t> seq_lens, std::span<const int32_t> tree_parents,
                     std::span<float> out);

// kernels.h's kv_cache_move_rows on a host image of the planes, one move after another.
void kv_cache_move_rows(std::span<uint8_t> base, int64_t plane_bytes, int32_t num_planes,
                        int32_t row_bytes, std::span<const int32_t> src_slots,
                        std::span<const int32_t> dst_slots, std::span<const int32_t> group_start);

// kernels/matvec.h's product: y (m x n) = x (m x k) times w (n x k) transposed, in fp64.
void matmul_xwt(std::span<const float> x, std::span<const float> w, int64_t m, int64_t n, int64_t k,
                std::span<float> y);

// out (rows x inter) = silu(gate) * up from rows of [gate | up] (rows x 2*inter).
void swiglu(std::span<const float> gate_up, std::span<float> out, int64_t rows, int64_t inter);

// The sampling rule: the specification of kernels.h's sample_rows and the sampler of any host
// model, so that a CPU model and the GPU draw the same tokens from the same logits.
//   0. Mask (RuleExtras::masked, the min_tokens rule of a caller): the masked token ids count as
//      -inf logits in steps 1 and 2, so they are never drawn; an empty list masks nothing.
//   1. T = 0 (greedy): the argmax of the (masked) logits, lowest index on ties.
//   2. T > 0: z_i = logits[i] / T in float. Candidates: the tokens with z_i - max z >= log(min_p)
//      in fp64, i.e. at least min_p times as likely as the most likely token (min_p <= 0: all; as
//      vLLM, on the tempered distribution, before top-k and top-p); of these the top_k largest z
//      (k <= 0: all), lowest index first on ties; then top-p: the shortest prefix of the
//      candidates, in that order, whose
//      probability under softmax over the candidates reaches top_p (top_p >= 1: all). In fp64:
//      total = sum of exp(double(z_i) - zmax) over the candidates in ascending index order, then
//      the cumulative sum of exp(double(z_i) - zmax) / total in candidate order until >= top_p.
//      Draw: Gumbel-max over the candidates, x = argmax_i key_i with key_i = z_i + (-logf(-logf(u_i)))
//      in float, u_i = sampling_uniform(seed, uid, position, i) (philox.h: word i % 4 of the
//      Philox call of group i / 4); the lowest index wins equal keys. Gumbel-max needs no sort
//      and no prefix sum, so a parallel reduction gives the same answer as a serial loop, and
//      each vocabulary entry has its own independent uniform.
//   3. The reported logprob of a token x (the drawn one, or a given one when scoring), by
//      RuleExtras::logprob:
//      raw (default): log softmax(z)[x] over the whole vocabulary of the unmasked logits, T = 1
//        when greedy: m = max of the float z, lse = m + log(sum of exp(double(z_i) - m)) in fp64,
//        z_x - lse. The model's own tempered distribution, what a trainer recomputes from its
//        logits: not the truncated (min-p/top-k/top-p) or masked distribution x was drawn from.
//      processed: the log-probability of x under the distribution step 1 or 2 actually draws
//        from. T > 0: z_x - lse_C with lse_C = m + log(sum over the candidates C, ascending index
//        order, of exp(double(z_i) - m)) in fp64, m = max of the masked float z; -inf when x is
//        not a candidate (masked or cut). T = 0: the greedy draw is certain, so 0 for the argmax
//        and -inf for every other token.
// position is the absolute index, in the sequence (prompt included), of the token being drawn.
// The one floating-point detail an implementation chooses is how logf rounds (LogRounding): the GPU
// evaluates float(log(double)), correctly rounded; a host may use its C library's logf, which is
// not always correctly rounded (glibc's misses by one ulp on about 1% of the 2^24 possible Gumbel
// noise values), so a token can differ between the two only where two candidates' keys lie within
// an ulp of each other.
enum class LogRounding {
  kCorrect,   // float(log(double(x))): what sample_rows computes
  kHostLibm,  // std::log(float): the host C library's logf
};
enum class LogprobKind {
  kRaw,        // rule 3 raw: full vocabulary, unmasked, at temperature T (T = 1 when greedy)
  kProcessed,  // rule 3 processed: the masked, truncated, renormalised distribution drawn from
};
// The parts of the rule beyond SamplingRow's cuts, in host form (sample_row ignores SamplingRow's
// mask_start / mask_count / processed, which are these same two in sample_rows' device form).
struct RuleExtras {
  std::span<const int32_t> masked;  // token ids this row cannot draw (rule 0); ids outside the
                                    // vocabulary are ignored
  LogprobKind logprob = LogprobKind::kRaw;
};
struct SampleResult {
  int32_t token = -1;
  float logprob = 0;
};
// Throws std::invalid_argument on an empty row. Logits must be finite or -inf (masked). A mask
// that leaves no finite logit draws token 0 (greedy: the lowest index) with logprob -inf
// (processed); callers never mask a whole vocabulary.
SampleResult sample_row(std::span<const float> logits, const SamplingRow& params,
                        LogRounding log_rounding = LogRounding::kCorrect, const RuleExtras& extras = {});
// Rule 3 for a given token: the logprob sample_row would report had it drawn `token` with these
// parameters (used to score given tokens, e.g. re-prefill after a weight update). NaN when token
// is out of range.
float rule_logprob(std::span<const float> logits, const SamplingRow& params, const RuleExtras& extras,
                   int32_t token);
// log softmax(logits / T)[token] as in rule 3 raw, T = 1 when temperature is 0; NaN when token is
// out of range.
float token_logprob(std::span<const float> logits, float temperature, int32_t token);
// Lowest index of the maximum.
int32_t argmax(std::span<const float> x);

// Checks a tree-attention parent array for one sequence's n queries (each parent in [-1, j)).
// Returns "" when valid, else a message naming the first bad entry.
std::string validate_tree_parents(std::span<const int32_t> parents);

}  // namespace longtail::kernels::ref
