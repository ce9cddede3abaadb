// Plain C++ references of every kernel in kernels/kernels.h (fp32 inputs, fp64 arithmetic), always
// built, used by the kernel tests; plus host helpers the backend needs whatever the device
// (bf16 rounding, RoPE inverse frequencies) and sample_row(), the sampling rule of
// policy/sampling.h written once so the CPU backend and the GPU kernel can share it.
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
// default: 1 / theta^(2i/d); llama3: the low/high frequency smoothing of Llama 3.1.
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

// In place on q (num_tokens x num_heads x head_dim) and k (num_tokens x num_kv_heads x head_dim).
void rope_inplace(std::span<float> q, int32_t num_heads, std::span<float> k, int32_t num_kv_heads,
                  int32_t head_dim, std::span<const int32_t> positions,
                  std::span<const float> inv_freq);

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

// out (rows x inter) = silu(gate) * up from rows of [gate | up] (rows x 2*inter).
void swiglu(std::span<const float> gate_up, std::span<float> out, int64_t rows, int64_t inter);

// The sampling rule (policy/sampling.h) with the floating-point details of the CPU backend's
// policy/sampling.cc, so CPU and CUDA backends draw the same tokens:
//   z_i = logits[i] / T in float; candidates ordered by z descending, index ascending;
//   top-p: total = sum over candidates of exp(double(z_i) - zmax) (fp64), then the shortest
//   prefix in candidate order whose cumulative sum of exp(z - zmax) / total reaches top_p;
//   Gumbel key = z_i + (-logf(-logf(u_i))) in float, u_i = sampling_uniform(...); the largest key
//   wins, the lowest index on equal keys. logf is evaluated as float(log(double(x))), the
//   correctly rounded value (barring a 2^-29 chance), which is what the GPU kernel computes too.
// The logprob is log softmax(z)[x] over the full vocabulary in fp64.
struct SampleResult {
  int32_t token = -1;
  float logprob = 0;
};
SampleResult sample_row(std::span<const float> logits, const SamplingRow& params);
// log softmax(logits / T)[token], T = 1 when temperature is 0; NaN when token is out of range.
float token_logprob(std::span<const float> logits, float temperature, int32_t token);
// Lowest index of the maximum.
int32_t argmax(std::span<const float> x);

// Checks a tree-attention parent array for one sequence's n queries (each parent in [-1, j)).
// Returns "" when valid, else a message naming the first bad entry.
std::string validate_tree_parents(std::span<const int32_t> parents);

}  // namespace longtail::kernels::ref
