// CPU weights loading and the fp32 math of the reference backend. The matmul keeps one weight row
// in cache while it meets up to four activation rows, with eight independent partial sums per dot
// product so the compiler can vectorise it without -ffast-math; the per-element order of
// operations is the same for every tile shape, so results never depend on the batch.
#include "policy/cpu_model.h"

#include <cmath>

#include <spdlog/spdlog.h>

namespace longtail::policy {
namespace {

void append(std::vector<float>& dst, const TensorView& v) {
  const size_t off = dst.size();
  dst.resize(off + static_cast<size_t>(v.numel()));
  to_float(v, std::span<float>(dst.data() + off, static_cast<size_t>(v.numel())));
}

// R activation rows against one weight row; each dot is reduced exactly as for R = 1.
template <int R>
inline void dot_rows(const float* const* x, const float* w, int64_t in, float* out) {
  float acc[R][8] = {};
  int64_t i = 0;
  for (; i + 8 <= in; i += 8) {
    for (int r = 0; r < R; ++r) {
      for (int l = 0; l < 8; ++l) acc[r][l] += x[r][i + l] * w[i + l];
    }
  }
  for (int r = 0; r < R; ++r) {
    float tail = 0;
    for (int64_t j = i; j < in; ++j) tail += x[r][j] * w[j];
    out[r] = ((acc[r][0] + acc[r][4]) + (acc[r][1] + acc[r][5])) +
             ((acc[r][2] + acc[r][6]) + (acc[r][3] + acc[r][7])) + tail;
  }
}

}  // namespace

CpuWeights load_cpu_weights(const std::filesystem::path& dir) { return load_cpu_weights(Checkpoint::open(dir)); }

CpuWeights load_cpu_weights(const Checkpoint& ck) {
  const ModelConfig& c = ck.config();
  CpuWeights w;
  w.config = c;
  append(w.embed, ck.tensor("model.embed_tokens.weight"));
  append(w.final_norm, ck.tensor("model.norm.weight"));
  if (!c.tie_word_embeddings) append(w.lm_head, ck.tensor("lm_head.weight"));
  w.layers.resize(c.num_layers);
  for (int l = 0; l < c.num_layers; ++l) {
    CpuLayerWeights& L = w.layers[l];
    auto t = [&](const char* s) -> const TensorView& { return ck.tensor(layer_tensor_name(l, s)); };
    append(L.attn_norm, t("input_layernorm.weight"));
    append(L.wqkv, t("self_attn.q_proj.weight"));
    append(L.wqkv, t("self_attn.k_proj.weight"));
    append(L.wqkv, t("self_attn.v_proj.weight"));
    if (c.attention_bias) {
      append(L.bqkv, t("self_attn.q_proj.bias"));
      append(L.bqkv, t("self_attn.k_proj.bias"));
      append(L.bqkv, t("self_attn.v_proj.bias"));
    }
    if (c.qk_norm) {
      append(L.q_norm, t("self_attn.q_norm.weight"));
      append(L.k_norm, t("self_attn.k_norm.weight"));
    }
    append(L.wo, t("self_attn.o_proj.weight"));
    append(L.mlp_norm, t("post_attention_layernorm.weight"));
    append(L.w_gate_up, t("mlp.gate_proj.weight"));
    append(L.w_gate_up, t("mlp.up_proj.weight"));
    append(L.w_down, t("mlp.down_proj.weight"));
  }
  w.inv_freq = rope_inv_freq(c);
  return w;
}

namespace {

// Output rows [o0, o1) of matmul.
void matmul_rows(const float* x, int64_t rows, int64_t in, const float* w, int64_t out, const float* bias,
                 float* y, int64_t o0, int64_t o1) {
  for (int64_t o = o0; o < o1; ++o) {
    const float* wr = w + o * in;
    int64_t t = 0;
    float res[4];
    for (; t + 4 <= rows; t += 4) {
      const float* xs[4] = {x + t * in, x + (t + 1) * in, x + (t + 2) * in, x + (t + 3) * in};
      dot_rows<4>(xs, wr, in, res);
      for (int r = 0; r < 4; ++r) y[(t + r) * out + o] = res[r];
    }
    for (; t < rows; ++t) {
      const float* xs[1] = {x + t * in};
      dot_rows<1>(xs, wr, in, res);
      y[t * out + o] = res[0];
    }
    if (bias != nullptr) {
      for (int64_t r = 0; r < rows; ++r) y[r * out + o] += bias[o];
    }
  }
}

}  // namespace

void matmul(ThreadPool& pool, const float* x, int64_t rows, int64_t in, const float* w, int64_t out,
            const float* bias, float* y) {
  // Enough output rows per task that the pool's wake-up cost stays small against the work.
  const int64_t min_chunk = std::max<int64_t>(1, 16384 / std::max<int64_t>(1, in * rows));
  pool.parallel_for(
      out, [&](int64_t o0, int64_t o1) { matmul_rows(x, rows, in, w, out, bias, y, o0, o1); }, min_chunk);
}

float dot(const float* a, const float* b, int64_t n) {
  const float* xs[1] = {a};
  float r;
  dot_rows<1>(xs, b, n, &r);
  return r;
}

void rms_norm(float* x, int64_t n, const float* weight, float eps) {
  double ss = 0;
  for (int64_t i = 0; i < n; ++i) ss += static_cast<double>(x[i]) * x[i];
  const float inv = static_cast<float>(1.0 / std::sqrt(ss / static_cast<double>(n) + eps));
  for (int64_t i = 0; i < n; ++i) x[i] = weight[i] * (x[i] * inv);
}

void apply_rope(float* v, int64_t d, const float* inv_freq, int64_t pos) {
  const int64_t half = d / 2;
  for (int64_t i = 0; i < half; ++i) {
    const float angle = static_cast<float>(pos) * inv_freq[i];  // fp32 as HF computes it
    const float c = std::cos(angle), s = std::sin(angle);
    const float a = v[i], b = v[i + half];
    v[i] = a * c - b * s;
    v[i + half] = b * c + a * s;
  }
}

}  // namespace longtail::policy
