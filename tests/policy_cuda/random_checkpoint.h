// Writes a small random Qwen2-, Qwen3- or Llama-style checkpoint (config.json + one BF16 safetensors file) to a
// directory, so the CUDA and CPU backends can be compared on identical weights with a head size
// the fast attention path serves (64), which the tiny golden fixtures (16, 32) do not reach.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>

namespace longtail::policy::testing {

struct RandomCheckpointShape {
  int hidden = 256;
  int heads = 4;
  int kv_heads = 2;
  int inter = 512;
  int layers = 2;
  int vocab = 1000;
  int max_positions = 2048;
  bool tied = false;
  // "qwen2" (q/k/v bias), "qwen3" (per-head q/k RMSNorm, explicit head_dim) or "llama" (llama3
  // RoPE scaling).
  std::string architecture = "qwen2";
};

void write_random_checkpoint(const std::filesystem::path& dir, const RandomCheckpointShape& shape,
                             uint64_t seed);

}  // namespace longtail::policy::testing
