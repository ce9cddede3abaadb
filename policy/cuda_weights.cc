// Weight upload and random initialisation for the CUDA backend (see cuda_weights.h).
#include "policy/cuda_weights.h"

#include <spdlog/spdlog.h>

#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>

#include "kernels/kernels.h"
#include "policy/cuda_check.h"

namespace longtail::policy::cuda {
namespace {

constexpr size_t kAlign = 256;

size_t align_up(size_t x) { return (x + kAlign - 1) / kAlign * kAlign; }

uint16_t float_to_bf16_rne(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof(u));
  if ((u & 0x7f800000u) == 0x7f800000u && (u & 0x007fffffu) != 0) return 0x7fc0;  // NaN stays NaN
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

// Writes `view` into the image at `offset` as bf16 (matrices) or fp32 (norms, biases).
void put_bf16(const TensorView& view, std::byte* dst) {
  const int64_t n = view.numel();
  auto* out = reinterpret_cast<uint16_t*>(dst);
  if (view.dtype == DType::kBF16) {
    std::memcpy(out, view.bytes.data(), static_cast<size_t>(n) * 2);
    return;
  }
  if (view.dtype == DType::kF32) {
    const auto* in = reinterpret_cast<const std::byte*>(view.bytes.data());
    for (int64_t i = 0; i < n; ++i) {
      float f;
      std::memcpy(&f, in + i * 4, 4);
      out[i] = float_to_bf16_rne(f);
    }
    return;
  }
  const auto* in = reinterpret_cast<const std::byte*>(view.bytes.data());
  for (int64_t i = 0; i < n; ++i) {
    uint16_t h;
    std::memcpy(&h, in + i * 2, 2);
    out[i] = float_to_bf16_rne(f16_to_float(h));
  }
}

void put_f32(const TensorView& view, std::byte* dst) {
  to_float(view, std::span<float>(reinterpret_cast<float*>(dst), static_cast<size_t>(view.numel())));
}

}  // namespace

WeightLayout weight_layout(const ModelConfig& c) {
  WeightLayout l;
  const size_t hidden = static_cast<size_t>(c.hidden_size);
  const size_t qkv_rows = static_cast<size_t>(c.num_heads + 2 * c.num_kv_heads) * c.head_dim;
  const size_t attn_dim = static_cast<size_t>(c.num_heads) * c.head_dim;
  const size_t inter = static_cast<size_t>(c.intermediate_size);
  const size_t vocab = static_cast<size_t>(c.vocab_size);
  size_t at = 0;
  size_t per_step = 0;
  auto take = [&](size_t bytes, bool read_each_step) {
    const size_t off = at;
    at = align_up(at + bytes);
    if (read_each_step) per_step += bytes;
    return off;
  };
  l.embed = take(vocab * hidden * 2, false);
  for (int i = 0; i < c.num_layers; ++i) {
    WeightLayout::Layer y{};
    y.qkv = take(qkv_rows * hidden * 2, true);
    y.qkv_bias = c.attention_bias ? take(qkv_rows * 4, true) : SIZE_MAX;
    y.o = take(hidden * attn_dim * 2, true);
    y.gate_up = take(2 * inter * hidden * 2, true);
    y.down = take(hidden * inter * 2, true);
    y.attn_norm = take(hidden * 4, true);
    y.mlp_norm = take(hidden * 4, true);
    y.q_norm = c.qk_norm ? take(static_cast<size_t>(c.head_dim) * 4, true) : SIZE_MAX;
    y.k_norm = c.qk_norm ? take(static_cast<size_t>(c.head_dim) * 4, true) : SIZE_MAX;
    l.layers.push_back(y);
  }
  l.final_norm = take(hidden * 4, true);
  if (c.tie_word_embeddings) {
    l.lm_head = l.embed;
    per_step += vocab * hidden * 2;
  } else {
    l.lm_head = take(vocab * hidden * 2, true);
  }
  l.total_bytes = at;
  l.bytes_read_per_step = per_step;
  return l;
}

void DeviceWeights::build_view() {
  auto* base = arena_.get<std::byte>();
  auto f32 = [&](size_t off) -> const float* {
    return off == SIZE_MAX ? nullptr : reinterpret_cast<const float*>(base + off);
  };
  view_.embed = base + layout_.embed;
  view_.lm_head = base + layout_.lm_head;
  view_.final_norm = f32(layout_.final_norm);
  view_.layers.clear();
  for (const auto& y : layout_.layers) {
    LayerWeights w;
    w.qkv = base + y.qkv;
    w.qkv_bias = f32(y.qkv_bias);
    w.o = base + y.o;
    w.gate_up = base + y.gate_up;
    w.down = base + y.down;
    w.attn_norm = f32(y.attn_norm);
    w.mlp_norm = f32(y.mlp_norm);
    w.q_norm = f32(y.q_norm);
    w.k_norm = f32(y.k_norm);
    view_.layers.push_back(w);
  }
}

// Where every checkpoint tensor goes in the arena and in which format, the one map both upload
// paths (host image, device-to-device) follow: put(view, byte offset, kBF16 | kF32).
enum class Slot { kBF16, kF32 };

template <class Put>
void place_tensors(const ModelConfig& c, const WeightLayout& layout, const Checkpoint& ck, Put put) {
  const size_t hidden = static_cast<size_t>(c.hidden_size);
  const size_t q_rows = static_cast<size_t>(c.num_heads) * c.head_dim;
  const size_t kv_rows = static_cast<size_t>(c.num_kv_heads) * c.head_dim;
  const size_t inter = static_cast<size_t>(c.intermediate_size);
  put(ck.tensor("model.embed_tokens.weight"), layout.embed, Slot::kBF16);
  for (int i = 0; i < c.num_layers; ++i) {
    const auto& y = layout.layers[static_cast<size_t>(i)];
    auto t = [&](const char* suffix) -> const TensorView& {
      return ck.tensor(layer_tensor_name(i, suffix));
    };
    put(t("self_attn.q_proj.weight"), y.qkv, Slot::kBF16);
    put(t("self_attn.k_proj.weight"), y.qkv + q_rows * hidden * 2, Slot::kBF16);
    put(t("self_attn.v_proj.weight"), y.qkv + (q_rows + kv_rows) * hidden * 2, Slot::kBF16);
    if (c.attention_bias) {
      put(t("self_attn.q_proj.bias"), y.qkv_bias, Slot::kF32);
      put(t("self_attn.k_proj.bias"), y.qkv_bias + q_rows * 4, Slot::kF32);
      put(t("self_attn.v_proj.bias"), y.qkv_bias + (q_rows + kv_rows) * 4, Slot::kF32);
    }
    put(t("self_attn.o_proj.weight"), y.o, Slot::kBF16);
    put(t("mlp.gate_proj.weight"), y.gate_up, Slot::kBF16);
    put(t("mlp.up_proj.weight"), y.gate_up + inter * hidden * 2, Slot::kBF16);
    put(t("mlp.down_proj.weight"), y.down, Slot::kBF16);
    put(t("input_layernorm.weight"), y.attn_norm, Slot::kF32);
    put(t("post_attention_layernorm.weight"), y.mlp_norm, Slot::kF32);
    if (c.qk_norm) {
      put(t("self_attn.q_norm.weight"), y.q_norm, Slot::kF32);
      put(t("self_attn.k_norm.weight"), y.k_norm, Slot::kF32);
    }
  }
  put(ck.tensor("model.norm.weight"), layout.final_norm, Slot::kF32);
  if (!c.tie_word_embeddings) put(ck.tensor("lm_head.weight"), layout.lm_head, Slot::kBF16);
}

std::vector<std::byte> DeviceWeights::host_image(const Checkpoint& ck) const {
  std::vector<std::byte> img(layout_.total_bytes);
  place_tensors(config_, layout_, ck, [&](const TensorView& v, size_t offset, Slot slot) {
    if (slot == Slot::kBF16) put_bf16(v, img.data() + offset);
    else put_f32(v, img.data() + offset);
  });
  return img;
}

DeviceWeights::DeviceWeights(const Checkpoint& ck)
    : config_(ck.config()), layout_(weight_layout(ck.config())), arena_(layout_.total_bytes) {
  const std::vector<std::byte> img = host_image(ck);
  LT_CUDA_CHECK(cudaMemcpy(arena_.get(), img.data(), img.size(), cudaMemcpyHostToDevice));
  build_view();
  spdlog::info("cuda backend: uploaded {:.1f} MiB of weights from {}",
               static_cast<double>(layout_.total_bytes) / (1 << 20), ck.dir().string());
}

DeviceWeights::DeviceWeights(const ModelConfig& config, uint64_t seed)
    : config_(config), layout_(weight_layout(config)), arena_(layout_.total_bytes) {
  build_view();
  const float a = 0.02f * std::sqrt(3.0f);
  const size_t hidden = static_cast<size_t>(config.hidden_size);
  const size_t vocab = static_cast<size_t>(config.vocab_size);
  auto* base = arena_.get<std::byte>();
  uint64_t stream_id = seed * 1000003u;
  auto bf16 = [&](size_t off, size_t n) {
    LT_KERNEL_CHECK(kernels::fill_uniform_bf16(reinterpret_cast<kernels::bf16*>(base + off),
                                               static_cast<int64_t>(n), a, stream_id++, nullptr));
  };
  auto ones = [&](size_t off, size_t n) {
    if (off != SIZE_MAX) {
      LT_KERNEL_CHECK(kernels::fill_f32(reinterpret_cast<float*>(base + off),
                                        static_cast<int64_t>(n), 1.0f, nullptr));
    }
  };
  const size_t qkv_rows =
      static_cast<size_t>(config.num_heads + 2 * config.num_kv_heads) * config.head_dim;
  const size_t attn_dim = static_cast<size_t>(config.num_heads) * config.head_dim;
  const size_t inter = static_cast<size_t>(config.intermediate_size);
  bf16(layout_.embed, vocab * hidden);
  for (const auto& y : layout_.layers) {
    bf16(y.qkv, qkv_rows * hidden);
    if (y.qkv_bias != SIZE_MAX)
      LT_KERNEL_CHECK(kernels::fill_uniform_f32(reinterpret_cast<float*>(base + y.qkv_bias),
                                                static_cast<int64_t>(qkv_rows), a, stream_id++,
                                                nullptr));
    bf16(y.o, hidden * attn_dim);
    bf16(y.gate_up, 2 * inter * hidden);
    bf16(y.down, hidden * inter);
    ones(y.attn_norm, hidden);
    ones(y.mlp_norm, hidden);
    ones(y.q_norm, static_cast<size_t>(config.head_dim));
    ones(y.k_norm, static_cast<size_t>(config.head_dim));
  }
  ones(layout_.final_norm, hidden);
  if (!config.tie_word_embeddings) bf16(layout_.lm_head, vocab * hidden);
  LT_CUDA_CHECK(cudaDeviceSynchronize());
  spdlog::info("cuda backend: {:.1f} MiB of random weights (seed {})",
               static_cast<double>(layout_.total_bytes) / (1 << 20), seed);
}

kernels::ElementType element_type(DType dtype) {
  switch (dtype) {
    case DType::kF32: return kernels::ElementType::kF32;
    case DType::kBF16: return kernels::ElementType::kBF16;
    case DType::kF16: return kernels::ElementType::kF16;
  }
  throw std::logic_error("element_type: unknown dtype");
}

void DeviceWeights::replace_from_device(const Checkpoint& ck, kernels::Stream stream) {
  if (!same_shapes(config_, ck.config()))
    throw LoadError(ck.dir().string() +
                    ": replace_weights needs the same architecture and shapes as the loaded model");
  auto* base = arena_.get<std::byte>();
  place_tensors(config_, layout_, ck, [&](const TensorView& v, size_t offset, Slot slot) {
    const bool same = slot == Slot::kBF16 ? v.dtype == DType::kBF16 : v.dtype == DType::kF32;
    if (same) {
      LT_CUDA_CHECK(cudaMemcpyAsync(base + offset, v.bytes.data(), v.bytes.size(), cudaMemcpyDeviceToDevice, stream));
      return;
    }
    const kernels::ElementType from = element_type(v.dtype);
    if (slot == Slot::kBF16) {
      LT_KERNEL_CHECK(kernels::convert_to_bf16(v.bytes.data(), from, reinterpret_cast<kernels::bf16*>(base + offset),
                                               v.numel(), stream));
    } else {
      LT_KERNEL_CHECK(kernels::convert_to_f32(v.bytes.data(), from, reinterpret_cast<float*>(base + offset), v.numel(),
                                              stream));
    }
  });
  LT_CUDA_CHECK(cudaStreamSynchronize(stream));
  spdlog::info("cuda backend: weights replaced from {} (device to device)", ck.dir().string());
}

void DeviceWeights::replace(const Checkpoint& ck) {
  if (!same_shapes(config_, ck.config()))
    throw LoadError(ck.dir().string() +
                    ": replace_weights needs the same architecture and shapes as the loaded model");
  const std::vector<std::byte> img = host_image(ck);
  LT_CUDA_CHECK(cudaDeviceSynchronize());
  LT_CUDA_CHECK(cudaMemcpy(arena_.get(), img.data(), img.size(), cudaMemcpyHostToDevice));
  spdlog::info("cuda backend: weights replaced from {}", ck.dir().string());
}

}  // namespace longtail::policy::cuda
