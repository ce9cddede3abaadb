// Entry points of the CUDA backend (policy::Backend on one GPU: bf16 weights, paged KV cache,
// cuBLAS products, kernels/ attention and sampling, CUDA graphs for repeated decode/verify shapes),
// plus the hooks its benchmark needs. Declared without any CUDA header so policy/backend.cc and
// the tests can include it in any build that has the backend.
//
// Environment variables: A/B switches for benchmarks and bisection, read once when a backend (its
// forward runner, its products) is made; the defaults are what bench/results/ measured best, and
// the option tables (BackendOptions, rollout/engine_options_io.h) are what a deployment sets.
//   LONGTAIL_CUDA_GRAPHS    1 (default) | 0: no graphs, no padding | eager: padded shapes, no capture
//   LONGTAIL_RAGGED_GRAPHS  1 (default) | 0: verify steps of uneven draft lengths run eagerly
//   LONGTAIL_GRAPH_BUCKETS  which padded shapes get graphs (cuda_forward.h): model-priced (default),
//                           legacy, tokens, or a fixed cost in tokens
//   LONGTAIL_ATTN_WAVES     attention blocks per step in waves of one block per SM (default 2)
//   LONGTAIL_GEMM_TUNE      1 (default) | 0: fast mode lets cuBLAS choose per call (cuda_gemm.h)
//   LONGTAIL_SKINNY_ROWS    fast mode: products of up to N rows (0..64, default 0: the tuner
//                           decides) run kernels::skinny_gemm_bf16
//   LONGTAIL_MATVEC_ROWS    fast mode: products of up to N rows (0..8, default 0) run matvec_bf16
//   LONGTAIL_MATVEC_SWIGLU  1 (default) | 0: those two kernels do not fuse the SwiGLU
//   LONGTAIL_NORM_FUSION    0 (default) | 1: fast mode folds the RMSNorm before the qkv and gate/up
//                           products into skinny_gemm where it runs (cuda_gemm.h)
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <vector>

#include "policy/backend.h"
#include "policy/model_config.h"

namespace longtail::policy {

// Loads the checkpoint in dir onto GPU opts.device. Throws LoadError for a bad checkpoint and
// std::runtime_error when no GPU is usable.
std::unique_ptr<Backend> make_cuda_backend(const std::filesystem::path& dir,
                                           const BackendOptions& opts);

// True when a CUDA device is visible to this process.
bool cuda_device_present();

// A backend of this shape with random weights drawn on the device (benchmarks of model sizes that
// have no checkpoint at hand). replace_weights() still works with a checkpoint of the same shape.
std::unique_ptr<Backend> make_cuda_backend_random(const ModelConfig& config,
                                                  const BackendOptions& opts, uint64_t seed);

// ---- benchmark support; each throws std::invalid_argument for a backend not made above ----
struct CudaBackendStats {
  size_t weight_bytes_per_step = 0;  // weight bytes one forward reads whatever the batch
  size_t kv_bytes_per_token = 0;     // K + V bytes of one position over all layers
  size_t graph_replays = 0;          // passes launched from a captured graph
  size_t graphs_captured = 0;
  double graph_capture_s = 0;        // host seconds capturing and instantiating those graphs
  size_t graphable_eager_passes = 0; // graphable passes run eagerly (first sight of a shape, ...)
  size_t ungraphable_passes = 0;     // prefill and other passes graphs never cover
  int64_t kv_blocks = 0;
};
CudaBackendStats cuda_backend_stats(const Backend& backend);
// Sets a sequence's length without running the model (its new positions hold whatever the cache
// holds: random values after cuda_fill_kv_random). Throws KvCapacityError like forward().
void cuda_set_length_for_benchmark(Backend& backend, int64_t seq, int32_t length);
void cuda_fill_kv_random(Backend& backend, uint64_t seed);
// The fp32 logits (rows x vocab) of the first `rows` output rows of the last device pass, i.e. of
// the last forward when it was one pass (the invariance tests compare them bit for bit).
std::vector<float> cuda_last_logits(Backend& backend, int32_t rows);

}  // namespace longtail::policy
