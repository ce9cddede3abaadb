// The model hyper-parameters longtail understands, read from an HF config.json (classic
// rope_theta/rope_scaling and transformers-5 rope_parameters forms). Parsing lives in
// model_config.cc; anything not representable here is refused there, never silently defaulted.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace longtail::policy {

enum class Architecture { kLlama, kQwen2, kQwen3, kMistral };

struct RopeScaling {
  std::string type = "default";   // "default" | "llama3"
  double factor = 1.0;            // llama3
  double low_freq_factor = 1.0;   // llama3
  double high_freq_factor = 4.0;  // llama3
  int64_t original_max_position_embeddings = 8192;  // llama3
};

struct ModelConfig {
  Architecture architecture = Architecture::kLlama;
  std::string architecture_name;  // as written in config.json, for messages
  int32_t vocab_size = 0;
  int32_t hidden_size = 0;
  int32_t intermediate_size = 0;
  int32_t num_layers = 0;
  int32_t num_heads = 0;
  int32_t num_kv_heads = 0;       // GQA: num_heads % num_kv_heads == 0
  int32_t head_dim = 0;           // explicit in Qwen3; hidden_size / num_heads otherwise
  int32_t max_position_embeddings = 0;
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  RopeScaling rope_scaling;
  bool tie_word_embeddings = false;
  bool attention_bias = false;    // q/k/v projections carry a bias (Qwen2)
  bool qk_norm = false;           // per-head RMSNorm on q and k before RoPE (Qwen3)
  std::vector<int32_t> eos_token_ids;  // config.json, then generation_config.json if present
  std::string torch_dtype;        // informational
};

// Reads dir/config.json (and dir/generation_config.json for eos ids when present). Throws
// LoadError (checkpoint.h) naming the file and the key for anything missing, mistyped or unknown.
ModelConfig load_model_config(const std::filesystem::path& dir);

// True when b can replace a without changing any buffer shape (what replace_weights requires).
bool same_shapes(const ModelConfig& a, const ModelConfig& b);

// Rotary inverse frequencies (head_dim / 2, scaling applied) for both backends: the config's rope
// fields mapped onto kernels::ref::rope_inv_freq, which computes them as HF does.
std::vector<float> rope_inv_freq(const ModelConfig& config);

}  // namespace longtail::policy
