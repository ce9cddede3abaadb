// Parsing of HF config.json into ModelConfig. Both rope forms are read: classic (rope_theta at the
// top level, rope_scaling with "rope_type" or the older "type") and transformers-5 rope_parameters
// (one dict holding rope_theta, rope_type and the scaling fields). Keys HF itself treats as optional
// take HF's class defaults; anything the CPU/CUDA backends would compute differently from HF
// (sliding windows, other activations, MLP bias, unknown rope types) is refused with a LoadError.
#include <algorithm>
#include <fstream>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "kernels/reference.h"
#include "policy/checkpoint.h"
#include "policy/model_config.h"

namespace longtail::policy {
namespace {

using nlohmann::json;

struct Reader {
  std::string file;  // for messages
  const json& j;

  [[noreturn]] void fail(const std::string& key, const std::string& problem) const {
    throw LoadError(file + ": key \"" + key + "\": " + problem);
  }
  bool has(const std::string& key) const { return j.contains(key) && !j.at(key).is_null(); }
  int64_t integer(const json& v, const std::string& key) const {
    if (!v.is_number_integer()) fail(key, "expected an integer, got " + v.dump());
    return v.get<int64_t>();
  }
  int32_t positive_int(const std::string& key) const {
    if (!has(key)) fail(key, "missing");
    const int64_t v = integer(j.at(key), key);
    if (v <= 0 || v > (int64_t{1} << 30)) fail(key, "must be a positive integer, got " + std::to_string(v));
    return static_cast<int32_t>(v);
  }
  double number(const json& v, const std::string& key) const {
    if (!v.is_number()) fail(key, "expected a number, got " + v.dump());
    return v.get<double>();
  }
  double number_or(const std::string& key, double def) const {
    return has(key) ? number(j.at(key), key) : def;
  }
  bool boolean_or(const std::string& key, bool def) const {
    if (!has(key)) return def;
    if (!j.at(key).is_boolean()) fail(key, "expected true or false, got " + j.at(key).dump());
    return j.at(key).get<bool>();
  }
  std::string string_or(const std::string& key, const std::string& def) const {
    if (!has(key)) return def;
    if (!j.at(key).is_string()) fail(key, "expected a string, got " + j.at(key).dump());
    return j.at(key).get<std::string>();
  }
};

json read_json(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw LoadError(path.string() + ": cannot open");
  std::stringstream buf;
  buf << in.rdbuf();
  try {
    json j = json::parse(buf.str());
    if (!j.is_object()) throw LoadError(path.string() + ": bad JSON: the top level is not an object");
    return j;
  } catch (const json::parse_error& e) {
    throw LoadError(path.string() + ": bad JSON: " + e.what());
  }
}

// rope dict `r` in either form; `key` names where it came from for messages.
void read_rope(const Reader& top, const json& r, const std::string& key, ModelConfig& cfg) {
  if (!r.is_object()) top.fail(key, "expected an object, got " + r.dump());
  Reader rd{top.file + " (" + key + ")", r};
  // Both forms name their type; a dict without one (e.g. per-layer-type rope dicts of other
  // models) is not something to guess about.
  if (!rd.has("rope_type") && !rd.has("type")) rd.fail("rope_type", "missing");
  const std::string type = rd.string_or("rope_type", rd.string_or("type", ""));
  if (key == "rope_parameters") {
    if (!rd.has("rope_theta")) rd.fail("rope_theta", "missing");
    cfg.rope_theta = rd.number(r.at("rope_theta"), "rope_theta");
  }
  if (rd.has("partial_rotary_factor") && rd.number(r.at("partial_rotary_factor"), "partial_rotary_factor") != 1.0) {
    rd.fail("partial_rotary_factor", "partial rotary embeddings are not supported");
  }
  if (type == "default") {
    cfg.rope_scaling = RopeScaling{};
    return;
  }
  if (type != "llama3") {
    rd.fail("rope_type", "unknown rope type \"" + type + "\" (supported: default, llama3)");
  }
  RopeScaling s;
  s.type = "llama3";
  for (const char* k : {"factor", "low_freq_factor", "high_freq_factor",
                        "original_max_position_embeddings"}) {
    if (!rd.has(k)) rd.fail(k, "missing (required by rope type llama3)");
  }
  s.factor = rd.number(r.at("factor"), "factor");
  s.low_freq_factor = rd.number(r.at("low_freq_factor"), "low_freq_factor");
  s.high_freq_factor = rd.number(r.at("high_freq_factor"), "high_freq_factor");
  s.original_max_position_embeddings =
      rd.integer(r.at("original_max_position_embeddings"), "original_max_position_embeddings");
  if (!(s.factor > 0) || !(s.high_freq_factor > s.low_freq_factor) || s.low_freq_factor <= 0 ||
      s.original_max_position_embeddings <= 0) {
    rd.fail("factor", "llama3 scaling needs factor > 0, high_freq_factor > low_freq_factor > 0 and "
                      "original_max_position_embeddings > 0");
  }
  cfg.rope_scaling = s;
}

void add_eos(const Reader& rd, std::vector<int32_t>& out) {
  if (!rd.has("eos_token_id")) return;
  const json& v = rd.j.at("eos_token_id");
  auto add = [&](const json& e) {
    const int64_t id = rd.integer(e, "eos_token_id");
    if (id < 0) rd.fail("eos_token_id", "negative token id " + std::to_string(id));
    if (std::find(out.begin(), out.end(), id) == out.end()) out.push_back(static_cast<int32_t>(id));
  };
  if (v.is_array()) {
    for (const json& e : v) add(e);
  } else {
    add(v);
  }
}

}  // namespace

ModelConfig load_model_config(const std::filesystem::path& dir) {
  const std::filesystem::path path = dir / "config.json";
  const json j = read_json(path);
  const Reader rd{path.string(), j};
  ModelConfig cfg;

  if (!rd.has("architectures") || !j.at("architectures").is_array() || j.at("architectures").empty() ||
      !j.at("architectures")[0].is_string()) {
    rd.fail("architectures", "missing or not a list of names");
  }
  cfg.architecture_name = j.at("architectures")[0].get<std::string>();
  if (cfg.architecture_name == "LlamaForCausalLM") {
    cfg.architecture = Architecture::kLlama;
  } else if (cfg.architecture_name == "Qwen2ForCausalLM") {
    cfg.architecture = Architecture::kQwen2;
  } else if (cfg.architecture_name == "Qwen3ForCausalLM") {
    cfg.architecture = Architecture::kQwen3;
  } else if (cfg.architecture_name == "MistralForCausalLM") {
    cfg.architecture = Architecture::kMistral;
  } else {
    rd.fail("architectures", "unknown architecture \"" + cfg.architecture_name +
                                 "\" (supported: LlamaForCausalLM, Qwen2ForCausalLM, "
                                 "Qwen3ForCausalLM, MistralForCausalLM)");
  }

  cfg.vocab_size = rd.positive_int("vocab_size");
  cfg.hidden_size = rd.positive_int("hidden_size");
  cfg.intermediate_size = rd.positive_int("intermediate_size");
  cfg.num_layers = rd.positive_int("num_hidden_layers");
  cfg.num_heads = rd.positive_int("num_attention_heads");
  // HF's documented default: no key means multi-head attention.
  cfg.num_kv_heads = rd.has("num_key_value_heads") ? rd.positive_int("num_key_value_heads") : cfg.num_heads;
  if (cfg.num_heads % cfg.num_kv_heads != 0) {
    rd.fail("num_key_value_heads", "num_attention_heads " + std::to_string(cfg.num_heads) +
                                       " is not a multiple of " + std::to_string(cfg.num_kv_heads));
  }
  if (rd.has("head_dim")) {
    cfg.head_dim = rd.positive_int("head_dim");
  } else {
    if (cfg.hidden_size % cfg.num_heads != 0) {
      rd.fail("head_dim", "absent, and hidden_size is not a multiple of num_attention_heads");
    }
    cfg.head_dim = cfg.hidden_size / cfg.num_heads;
  }
  if (cfg.head_dim % 2 != 0) rd.fail("head_dim", "must be even for rotary embeddings");
  cfg.max_position_embeddings = rd.positive_int("max_position_embeddings");
  cfg.rms_norm_eps = rd.number_or("rms_norm_eps", 1e-6);
  if (!(cfg.rms_norm_eps > 0)) rd.fail("rms_norm_eps", "must be positive");
  cfg.tie_word_embeddings = rd.boolean_or("tie_word_embeddings", false);
  cfg.torch_dtype = rd.string_or("dtype", rd.string_or("torch_dtype", ""));

  const std::string act = rd.string_or("hidden_act", "silu");
  if (act != "silu") rd.fail("hidden_act", "unsupported activation \"" + act + "\" (only silu)");
  if (rd.boolean_or("mlp_bias", false)) rd.fail("mlp_bias", "MLP biases are not supported");

  switch (cfg.architecture) {
    case Architecture::kQwen2:
      cfg.attention_bias = true;  // Qwen2 always has q/k/v biases, whatever the config says
      break;
    case Architecture::kQwen3:
      cfg.qk_norm = true;
      cfg.attention_bias = rd.boolean_or("attention_bias", false);
      break;
    default:
      cfg.attention_bias = rd.boolean_or("attention_bias", false);
  }

  // Sliding-window attention changes the result once a sequence outgrows the window: refuse it
  // unless the window covers the whole context.
  const bool window_on = cfg.architecture == Architecture::kMistral
                             ? true
                             : rd.boolean_or("use_sliding_window", false);
  if (window_on && rd.has("sliding_window")) {
    const int64_t w = rd.integer(j.at("sliding_window"), "sliding_window");
    if (w < cfg.max_position_embeddings) {
      rd.fail("sliding_window", "sliding-window attention (window " + std::to_string(w) +
                                    " < max_position_embeddings " +
                                    std::to_string(cfg.max_position_embeddings) + ") is not supported");
    }
  }
  if (rd.has("layer_types") && window_on) {
    for (const json& t : j.at("layer_types")) {
      if (t != "full_attention") {
        rd.fail("layer_types", "only full_attention layers are supported, got " + t.dump());
      }
    }
  }

  if (rd.has("rope_parameters")) {
    read_rope(rd, j.at("rope_parameters"), "rope_parameters", cfg);
  } else {
    cfg.rope_theta = rd.number_or("rope_theta", 10000.0);
    if (rd.has("rope_scaling")) read_rope(rd, j.at("rope_scaling"), "rope_scaling", cfg);
  }
  if (!(cfg.rope_theta > 0)) rd.fail("rope_theta", "must be positive");

  add_eos(rd, cfg.eos_token_ids);
  const std::filesystem::path gen_path = dir / "generation_config.json";
  if (std::filesystem::exists(gen_path)) {
    const json g = read_json(gen_path);
    add_eos(Reader{gen_path.string(), g}, cfg.eos_token_ids);
  }
  for (int32_t id : cfg.eos_token_ids) {
    if (id >= cfg.vocab_size) {
      rd.fail("eos_token_id", "token id " + std::to_string(id) + " is outside the vocabulary of " +
                                  std::to_string(cfg.vocab_size));
    }
  }
  spdlog::debug("{}: {} layers={} hidden={} heads={}/{} head_dim={} vocab={} rope={} theta={}",
                path.string(), cfg.architecture_name, cfg.num_layers, cfg.hidden_size, cfg.num_heads,
                cfg.num_kv_heads, cfg.head_dim, cfg.vocab_size, cfg.rope_scaling.type, cfg.rope_theta);
  return cfg;
}

bool same_shapes(const ModelConfig& a, const ModelConfig& b) {
  return a.architecture == b.architecture && a.vocab_size == b.vocab_size &&
         a.hidden_size == b.hidden_size && a.intermediate_size == b.intermediate_size &&
         a.num_layers == b.num_layers && a.num_heads == b.num_heads &&
         a.num_kv_heads == b.num_kv_heads && a.head_dim == b.head_dim &&
         a.tie_word_embeddings == b.tie_word_embeddings && a.attention_bias == b.attention_bias &&
         a.qk_norm == b.qk_norm;
}

std::vector<float> rope_inv_freq(const ModelConfig& c) {
  kernels::ref::RopeConfig rc;
  rc.theta = c.rope_theta;
  rc.llama3 = c.rope_scaling.type == "llama3";
  rc.factor = c.rope_scaling.factor;
  rc.low_freq_factor = c.rope_scaling.low_freq_factor;
  rc.high_freq_factor = c.rope_scaling.high_freq_factor;
  rc.original_max_position = c.rope_scaling.original_max_position_embeddings;
  return kernels::ref::rope_inv_freq(rc, c.head_dim);
}

}  // namespace longtail::policy
