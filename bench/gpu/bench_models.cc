// Qwen2.5 shapes for the GPU benchmark (see bench_models.h).
#include "bench_models.h"

#include <stdexcept>

namespace longtail::bench {
namespace {

policy::ModelConfig qwen2(int hidden, int inter, int layers, int heads, int kv_heads, int vocab,
                          bool tied) {
  policy::ModelConfig c;
  c.architecture = policy::Architecture::kQwen2;
  c.architecture_name = "Qwen2ForCausalLM";
  c.vocab_size = vocab;
  c.hidden_size = hidden;
  c.intermediate_size = inter;
  c.num_layers = layers;
  c.num_heads = heads;
  c.num_kv_heads = kv_heads;
  c.head_dim = hidden / heads;
  c.max_position_embeddings = 32768;
  c.rms_norm_eps = 1e-6;
  c.rope_theta = 1000000.0;
  c.tie_word_embeddings = tied;
  c.attention_bias = true;
  c.eos_token_ids = {151643};
  c.torch_dtype = "bfloat16";
  return c;
}

}  // namespace

NamedModel qwen25_shape(const std::string& name) {
  if (name == "0.5b") return {"Qwen2.5-0.5B", qwen2(896, 4864, 24, 14, 2, 151936, true)};
  if (name == "1.5b") return {"Qwen2.5-1.5B", qwen2(1536, 8960, 28, 12, 2, 151936, true)};
  if (name == "7b") return {"Qwen2.5-7B", qwen2(3584, 18944, 28, 28, 4, 152064, false)};
  throw std::invalid_argument("unknown model shape '" + name + "' (expected 0.5b, 1.5b or 7b)");
}

}  // namespace longtail::bench
