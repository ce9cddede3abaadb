// Random BF16 checkpoint writer for the CUDA backend tests (see random_checkpoint.h). The tensor
// list comes from policy::expected_tensors(), so the file is exactly what the loader demands.
#include "random_checkpoint.h"

#include <nlohmann/json.hpp>

#include <cstring>
#include <fstream>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "policy/checkpoint.h"
#include "policy/model_config.h"

namespace longtail::policy::testing {
namespace {

uint16_t to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace

void write_random_checkpoint(const std::filesystem::path& dir, const RandomCheckpointShape& s,
                             uint64_t seed) {
  std::filesystem::create_directories(dir);
  nlohmann::json cfg = {
      {"architectures", {"Qwen2ForCausalLM"}},
      {"model_type", "qwen2"},
      {"hidden_size", s.hidden},
      {"intermediate_size", s.inter},
      {"num_hidden_layers", s.layers},
      {"num_attention_heads", s.heads},
      {"num_key_value_heads", s.kv_heads},
      {"vocab_size", s.vocab},
      {"max_position_embeddings", s.max_positions},
      {"rms_norm_eps", 1e-6},
      {"rope_theta", 1000000.0},
      {"tie_word_embeddings", s.tied},
      {"hidden_act", "silu"},
      {"bos_token_id", 1},
      {"eos_token_id", 2},
      {"torch_dtype", "bfloat16"},
      {"use_sliding_window", false},
      {"sliding_window", nullptr},
  };
  if (s.architecture == "qwen3") {
    cfg["architectures"] = {"Qwen3ForCausalLM"};
    cfg["model_type"] = "qwen3";
    cfg["head_dim"] = s.hidden / s.heads;
    cfg["attention_bias"] = false;
  } else if (s.architecture == "llama") {
    cfg["architectures"] = {"LlamaForCausalLM"};
    cfg["model_type"] = "llama";
    cfg["attention_bias"] = false;
    cfg["rope_theta"] = 500000.0;
    cfg["rope_scaling"] = {{"rope_type", "llama3"},
                           {"factor", 8.0},
                           {"low_freq_factor", 1.0},
                           {"high_freq_factor", 4.0},
                           {"original_max_position_embeddings", 256}};
    cfg.erase("use_sliding_window");
    cfg.erase("sliding_window");
  } else if (s.architecture != "qwen2") {
    throw std::invalid_argument("write_random_checkpoint: unknown architecture " + s.architecture);
  }
  std::ofstream(dir / "config.json") << cfg.dump(2);
  const ModelConfig config = load_model_config(dir);

  std::mt19937_64 rng(seed);
  nlohmann::json header = nlohmann::json::object();
  std::vector<uint16_t> data;
  for (const ExpectedTensor& t : expected_tensors(config)) {
    int64_t n = 1;
    for (int64_t d : t.shape) n *= d;
    const bool norm = ends_with(t.name, "norm.weight");
    const bool bias = ends_with(t.name, ".bias");
    const bool head = t.name == "lm_head.weight" || (s.tied && t.name == "model.embed_tokens.weight");
    // Wide output logits so greedy choices are rarely near-ties; unit-ish norms.
    std::uniform_real_distribution<float> u(-1.0f, 1.0f);
    const float scale = norm ? 0.1f : bias ? 0.2f : head ? 0.25f : 0.08f;
    const size_t begin = data.size() * 2;
    for (int64_t i = 0; i < n; ++i) data.push_back(to_bf16((norm ? 1.0f : 0.0f) + scale * u(rng)));
    header[t.name] = {{"dtype", "BF16"},
                      {"shape", t.shape},
                      {"data_offsets", {begin, data.size() * 2}}};
  }
  std::string h = header.dump();
  while (h.size() % 8) h.push_back(' ');
  std::ofstream f(dir / "model.safetensors", std::ios::binary);
  const uint64_t len = h.size();
  f.write(reinterpret_cast<const char*>(&len), 8);
  f.write(h.data(), static_cast<std::streamsize>(h.size()));
  f.write(reinterpret_cast<const char*>(data.data()), static_cast<std::streamsize>(data.size() * 2));
  if (!f) throw std::runtime_error("could not write " + (dir / "model.safetensors").string());
}

}  // namespace longtail::policy::testing
