// The model shapes the GPU benchmark runs (Qwen2.5 0.5B / 1.5B / 7B: q/k/v bias, GQA, RoPE theta
// 1e6), as policy::ModelConfig values, so random-weight backends need no checkpoint files.
#pragma once

#include <string>
#include <vector>

#include "policy/model_config.h"

namespace longtail::bench {

struct NamedModel {
  std::string name;
  policy::ModelConfig config;
};

// "0.5b", "1.5b", "7b"; throws std::invalid_argument for another name.
NamedModel qwen25_shape(const std::string& name);

}  // namespace longtail::bench
