// fp32 weights of a dense Llama-family model laid out for the CPU backend, and the math it runs:
// a matmul against row-major [out, in] weights, RMSNorm, rotary embedding (default and llama3
// scaled frequencies, HF's rotate-half pairing). Every output element is computed by the same
// sequence of float operations whatever the batch size or thread count, which is what makes the
// CPU backend's outputs independent of batch composition and of how a sequence is chunked.
#pragma once

#include <cstdint>
#include <filesystem>
#include <vector>

#include "policy/checkpoint.h"
#include "policy/model_config.h"
#include "policy/thread_pool.h"

namespace longtail::policy {

struct CpuLayerWeights {
  std::vector<float> attn_norm;  // [H]
  std::vector<float> wqkv;       // [(Hq + 2 Hkv) * D, H]: q, k, v projections stacked
  std::vector<float> bqkv;       // same rows, empty without attention bias
  std::vector<float> q_norm, k_norm;  // [D] each, empty without qk norm
  std::vector<float> wo;         // [H, Hq * D]
  std::vector<float> mlp_norm;   // [H]
  std::vector<float> w_gate_up;  // [2 I, H]: gate rows then up rows
  std::vector<float> w_down;     // [H, I]
};

struct CpuWeights {
  ModelConfig config;
  std::vector<float> embed;       // [V, H]
  std::vector<float> final_norm;  // [H]
  std::vector<float> lm_head;     // [V, H]; empty when tied to embed
  std::vector<CpuLayerWeights> layers;
  std::vector<float> inv_freq;    // [D / 2] rotary frequencies after scaling

  const float* lm_head_data() const { return lm_head.empty() ? embed.data() : lm_head.data(); }
};

// Reads and validates the checkpoint, widening every tensor to fp32.
CpuWeights load_cpu_weights(const std::filesystem::path& dir);
CpuWeights load_cpu_weights(const Checkpoint& ck);

// y[t, o] = sum_i x[t, i] * w[o, i] (+ bias[o]) for t < rows, o < out.
void matmul(ThreadPool& pool, const float* x, int64_t rows, int64_t in, const float* w, int64_t out,
            const float* bias, float* y);

// sum_i a[i] * b[i], reduced in the same order as every element of matmul.
float dot(const float* a, const float* b, int64_t n);

// x[i] / sqrt(mean(x^2) + eps) * weight[i], in place over n-element rows.
void rms_norm(float* x, int64_t n, const float* weight, float eps);

// Rotates one head vector (size d, halves paired as HF's rotate_half does) to position pos.
void apply_rope(float* v, int64_t d, const float* inv_freq, int64_t pos);

}  // namespace longtail::policy
