// Lookup of the measured step cost model by GPU name and model shape (see the header).
#include "rollout/measured_cost_model.h"

#include <stdexcept>

namespace longtail::rollout {
namespace {

// The HF config.json names the files' shapes use, and the config field each one is compared with.
constexpr std::pair<const char*, int32_t policy::ModelConfig::*> kShapeKeys[] = {
    {"hidden_size", &policy::ModelConfig::hidden_size},
    {"intermediate_size", &policy::ModelConfig::intermediate_size},
    {"num_hidden_layers", &policy::ModelConfig::num_layers},
    {"num_attention_heads", &policy::ModelConfig::num_heads},
    {"num_key_value_heads", &policy::ModelConfig::num_kv_heads},
    {"vocab_size", &policy::ModelConfig::vocab_size},
    {"head_dim", &policy::ModelConfig::head_dim},
};

std::optional<int64_t> config_value(const policy::ModelConfig& c, const std::string& key) {
  for (const auto& [name, field] : kShapeKeys)
    if (key == name) return c.*field;
  return std::nullopt;
}

std::string shape_key_names() {
  std::string names;
  for (const auto& [name, field] : kShapeKeys) names += (names.empty() ? "" : ", ") + std::string(name);
  return names;
}

}  // namespace

std::optional<MeasuredCostModel> measured_cost_model_in(
    const std::vector<std::pair<std::string, std::string>>& files, std::string_view device,
    const policy::ModelConfig& config) {
  for (const auto& [source, text] : files) {
    for (const drafter::MeasuredStepCost& m : drafter::read_measured_step_costs(text, source)) {
      bool match = m.device == device && !m.shape.empty();
      for (const auto& [key, value] : m.shape) {
        const std::optional<int64_t> have = config_value(config, key);
        if (!have) {
          throw std::runtime_error("cost model " + source + ": per_model." + m.entry + ".shape." + key +
                                   " is not a model config key this reader compares (" + shape_key_names() + ")");
        }
        match = match && *have == value;
      }
      if (match) return MeasuredCostModel{source + "#" + m.entry, m.cost};
    }
  }
  return std::nullopt;
}

const std::vector<std::pair<std::string, std::string>>& compiled_in_cost_models() {
  static const std::vector<std::pair<std::string, std::string>> files = {
#include "measured_cost_models.inc"
  };
  return files;
}

std::optional<MeasuredCostModel> measured_cost_model(std::string_view device, const policy::ModelConfig& config) {
  return measured_cost_model_in(compiled_in_cost_models(), device, config);
}

}  // namespace longtail::rollout
