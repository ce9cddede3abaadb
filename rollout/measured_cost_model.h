// The step cost model an engine prices speculation with by default: the measurement of its own GPU
// and checkpoint shape. configs/cost_model_*.yaml files that name their `device:` and each entry's
// model `shape:` are compiled into the library (so this holds wherever the binary runs); a backend
// whose device name and model config match an entry exactly gets that entry's constants. Anything
// else (the CPU backend, an unmeasured GPU or shape) gets nothing, and the engine keeps the cost_*
// options' constants.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "drafter/speculation_policy.h"
#include "policy/model_config.h"

namespace longtail::rollout {

struct MeasuredCostModel {
  std::string source;  // the file it came from, e.g. "configs/cost_model_h200.yaml#Qwen2.5-1.5B"
  drafter::StepCostModel cost;
};

// The compiled-in files' entry for this device (cudaDeviceProp::name, e.g. "NVIDIA H200") and
// model shape; nullopt when none matches. Throws std::runtime_error naming the file and key when
// a file's shape uses a key this reader does not know (a typo must not silently never match).
std::optional<MeasuredCostModel> measured_cost_model(std::string_view device, const policy::ModelConfig& config);

// The same over given (source, YAML text) files: what the compiled-in lookup runs, and its tests.
std::optional<MeasuredCostModel> measured_cost_model_in(
    const std::vector<std::pair<std::string, std::string>>& files, std::string_view device,
    const policy::ModelConfig& config);

// The compiled-in (source, YAML text) files.
const std::vector<std::pair<std::string, std::string>>& compiled_in_cost_models();

}  // namespace longtail::rollout
