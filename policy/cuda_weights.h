// The model's weights on the GPU in the layout the forward runner wants: matrices in bf16 (q/k/v
// fused into one [q|k|v] matrix and gate/up into one [gate|up] matrix so each takes one GEMM),
// norm weights and biases in fp32, all in one device allocation. Built from a checkpoint (F32,
// BF16 or F16 tensors, converted on the host) or from random values drawn on the device (for
// benchmarks of model shapes that have no checkpoint at hand).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "kernels/convert.h"
#include "policy/checkpoint.h"
#include "policy/cuda_buffer.h"
#include "policy/model_config.h"

namespace longtail::policy::cuda {

struct LayerWeights {
  const void* qkv = nullptr;       // bf16 [(H + 2 KV) D, hidden]
  const float* qkv_bias = nullptr; // [(H + 2 KV) D] or null
  const void* o = nullptr;         // bf16 [hidden, H D]
  const void* gate_up = nullptr;   // bf16 [2 I, hidden]
  const void* down = nullptr;      // bf16 [hidden, I]
  const float* attn_norm = nullptr;  // [hidden]
  const float* mlp_norm = nullptr;   // [hidden]
  const float* q_norm = nullptr;     // [D] or null (Qwen3)
  const float* k_norm = nullptr;     // [D] or null (Qwen3)
};

struct ModelWeights {
  const void* embed = nullptr;      // bf16 [vocab, hidden]
  const void* lm_head = nullptr;    // bf16 [vocab, hidden]; == embed when tied
  const float* final_norm = nullptr;
  std::vector<LayerWeights> layers;
};

// Byte offsets of every tensor inside the single allocation.
struct WeightLayout {
  struct Layer {
    size_t qkv, qkv_bias, o, gate_up, down, attn_norm, mlp_norm, q_norm, k_norm;
  };
  size_t embed = 0, lm_head = 0, final_norm = 0;
  std::vector<Layer> layers;
  size_t total_bytes = 0;
  // Bytes one forward reads from the weights whatever the batch: every layer matrix, the norms
  // and the output projection (the embedding table only contributes the gathered rows).
  size_t bytes_read_per_step = 0;
};

WeightLayout weight_layout(const ModelConfig& config);

// The kernels' name of a checkpoint dtype, for conversions on the device (kernels/convert.h).
kernels::ElementType element_type(DType dtype);

class DeviceWeights {
 public:
  // Converts and uploads every tensor of an already validated checkpoint.
  explicit DeviceWeights(const Checkpoint& checkpoint);
  // Random weights with the scale of HF's initialiser (normal std 0.02 ~ uniform +-0.0346), norm
  // weights 1: finite activations and near-uniform logits, which is all a timing run needs.
  DeviceWeights(const ModelConfig& config, uint64_t seed);

  // Overwrites the weights with another checkpoint of the same shapes. The whole checkpoint is
  // read and converted on the host before the first byte is copied to the device.
  void replace(const Checkpoint& checkpoint);
  // The same from a validated tensor set whose views point to device memory (a trainer's tensors
  // opened by CUDA IPC): copied and cast on `stream` (a memcpy where the dtype already matches),
  // which is synchronised before this returns, so the source may be released afterwards.
  void replace_from_device(const Checkpoint& device_tensors, kernels::Stream stream);

  const ModelWeights& view() const { return view_; }
  const WeightLayout& layout() const { return layout_; }

 private:
  void build_view();
  std::vector<std::byte> host_image(const Checkpoint& checkpoint) const;

  ModelConfig config_;
  WeightLayout layout_;
  DeviceBuffer arena_;
  ModelWeights view_;
};

}  // namespace longtail::policy::cuda
