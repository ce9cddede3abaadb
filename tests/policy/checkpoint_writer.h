// Test helper: writes tiny Llama-family checkpoints (config.json + safetensors, optionally
// broken on purpose) into a temporary directory, so loader tests need no committed binaries.
#pragma once

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "policy/checkpoint.h"
#include "policy/model_config.h"

namespace longtail::test {

struct RawTensor {
  std::string dtype = "F32";
  std::vector<int64_t> shape;
  std::vector<uint8_t> bytes;
};

using TensorMap = std::map<std::string, RawTensor>;

inline nlohmann::json tiny_config(const std::string& arch = "LlamaForCausalLM") {
  return {{"architectures", {arch}},
          {"vocab_size", 32},
          {"hidden_size", 8},
          {"intermediate_size", 16},
          {"num_hidden_layers", 1},
          {"num_attention_heads", 2},
          {"num_key_value_heads", 1},
          {"max_position_embeddings", 64},
          {"rms_norm_eps", 1e-5},
          {"rope_theta", 10000.0},
          {"tie_word_embeddings", false},
          {"eos_token_id", 2}};
}

inline RawTensor random_f32(std::vector<int64_t> shape, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, 0.3f);
  RawTensor t;
  t.shape = std::move(shape);
  int64_t n = 1;
  for (int64_t d : t.shape) n *= d;
  t.bytes.resize(static_cast<size_t>(n) * 4);
  for (int64_t i = 0; i < n; ++i) {
    const float v = dist(rng);
    std::memcpy(t.bytes.data() + i * 4, &v, 4);
  }
  return t;
}

// All tensors the config needs, random fp32.
inline TensorMap tensors_for(const nlohmann::json& cfg_json, const std::filesystem::path& tmp_dir,
                             uint32_t seed = 1) {
  std::filesystem::create_directories(tmp_dir);
  std::ofstream(tmp_dir / "config.json") << cfg_json.dump();
  const policy::ModelConfig cfg = policy::load_model_config(tmp_dir);
  TensorMap m;
  for (const auto& e : policy::expected_tensors(cfg)) m[e.name] = random_f32(e.shape, seed++);
  return m;
}

// Serialises tensors in map order into one safetensors byte string; `header_override`, when not
// null, replaces the JSON header verbatim.
inline std::string safetensors_bytes(const TensorMap& tensors, const std::string* header_override = nullptr) {
  nlohmann::json header = nlohmann::json::object();
  std::string data;
  for (const auto& [name, t] : tensors) {
    header[name] = {{"dtype", t.dtype}, {"shape", t.shape}, {"data_offsets", {data.size(), data.size() + t.bytes.size()}}};
    data.append(reinterpret_cast<const char*>(t.bytes.data()), t.bytes.size());
  }
  std::string h = header_override ? *header_override : header.dump();
  while (h.size() % 8) h.push_back(' ');
  std::string out(8, '\0');
  uint64_t n = h.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xFF);
  return out + h + data;
}

inline void write_file(const std::filesystem::path& p, const std::string& bytes) {
  std::ofstream out(p, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

inline void write_checkpoint(const std::filesystem::path& dir, const nlohmann::json& cfg, const TensorMap& tensors) {
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "config.json") << cfg.dump();
  write_file(dir / "model.safetensors", safetensors_bytes(tensors));
}

// A fresh empty directory under the system temp dir, unique per test.
inline std::filesystem::path fresh_dir(const std::string& name) {
  const auto d = std::filesystem::temp_directory_path() /
                 ("longtail_policy_test_" + name + "_" + std::to_string(::getpid()));
  std::filesystem::remove_all(d);
  std::filesystem::create_directories(d);
  return d;
}

}  // namespace longtail::test
