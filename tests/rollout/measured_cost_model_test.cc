// The engine's default step cost model: the compiled-in measurement of its GPU and checkpoint
// shape (rollout/measured_cost_model.h), and the option rules that keep a user's model.
#include "rollout/measured_cost_model.h"

#include <gtest/gtest.h>

#include "policy/accounting_backend.h"
#include "policy/forwarding_backend.h"
#include "rollout/engine.h"
#include "rollout/engine_options_io.h"

namespace longtail::rollout {
namespace {

policy::ModelConfig qwen25_1p5b_shape() {
  policy::ModelConfig c;
  c.architecture = policy::Architecture::kQwen2;
  c.vocab_size = 151936;
  c.hidden_size = 1536;
  c.intermediate_size = 8960;
  c.num_layers = 28;
  c.num_heads = 12;
  c.num_kv_heads = 2;
  c.head_dim = 128;
  c.max_position_embeddings = 32768;
  c.eos_token_ids = {151643};
  return c;
}

// A backend on a named GPU: the accounting backend (a model config, no weights) under a name.
class OnDevice final : public policy::ForwardingBackend {
 public:
  OnDevice(std::unique_ptr<policy::Backend> inner, std::string device)
      : ForwardingBackend(std::move(inner)), device_(std::move(device)) {}
  std::string device_name() const override { return device_; }

 private:
  std::string device_;
};

std::unique_ptr<policy::Backend> backend_on(const std::string& device) {
  policy::BackendOptions opts;
  opts.max_kv_tokens = 1 << 16;
  return std::make_unique<OnDevice>(
      std::make_unique<policy::AccountingBackend>(qwen25_1p5b_shape(), opts), device);
}

TEST(MeasuredCostModel, CompiledInFilesParseAndTheH200EntryMatchesItsShape) {
  ASSERT_FALSE(compiled_in_cost_models().empty());
  for (const auto& [source, text] : compiled_in_cost_models())
    EXPECT_NO_THROW(drafter::read_measured_step_costs(text, source)) << source;
  const auto m = measured_cost_model("NVIDIA H200", qwen25_1p5b_shape());
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->source, "configs/cost_model_h200.yaml#Qwen2.5-1.5B");
  const auto file = drafter::load_cost_model(std::string(LONGTAIL_SOURCE_DIR) + "/configs/cost_model_h200.yaml",
                                             "Qwen2.5-1.5B");
  EXPECT_EQ(m->cost.base_us, file.base_us);
  EXPECT_EQ(m->cost.per_token_us, file.per_token_us);
  EXPECT_EQ(m->cost.crossover_tokens, file.crossover_tokens);
  EXPECT_EQ(m->cost.per_token_above_us, file.per_token_above_us);
  EXPECT_EQ(m->cost.per_context_us, file.per_context_us);
}

TEST(MeasuredCostModel, NothingForAnotherDeviceOrShape) {
  EXPECT_FALSE(measured_cost_model("cpu", qwen25_1p5b_shape()).has_value());
  EXPECT_FALSE(measured_cost_model("NVIDIA H200 NVL", qwen25_1p5b_shape()).has_value());
  auto other = qwen25_1p5b_shape();
  other.num_layers = 27;
  EXPECT_FALSE(measured_cost_model("NVIDIA H200", other).has_value());
}

TEST(MeasuredCostModel, UnknownShapeKeyIsAnErrorNamingIt) {
  const std::vector<std::pair<std::string, std::string>> files = {
      {"x.yaml", "device: \"G\"\nper_model:\n  m: {base_us: 1, per_token_us: 2, shape: {hidden_sise: 1536}}\n"}};
  try {
    measured_cost_model_in(files, "G", qwen25_1p5b_shape());
    FAIL() << "no error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("per_model.m.shape.hidden_sise"), std::string::npos) << e.what();
  }
  const std::vector<std::pair<std::string, std::string>> bad_number = {
      {"y.yaml", "device: \"G\"\nper_model:\n  m: {base_us: -1, per_token_us: 2, shape: {hidden_size: 1536}}\n"}};
  EXPECT_THROW(measured_cost_model_in(bad_number, "G", qwen25_1p5b_shape()), std::runtime_error);
}

TEST(MeasuredCostModel, OptionsAutoByDefaultAndAnyExplicitCostWins) {
  EngineSettings s;
  EXPECT_TRUE(s.engine.measured_cost_model);
  EXPECT_EQ(get_option(s, "speculation.cost_model"), "auto");
  set_option(s, "speculation.cost_base_us", "3000");
  EXPECT_FALSE(s.engine.measured_cost_model);
  set_option(s, "speculation.cost_model", "auto");
  EXPECT_TRUE(s.engine.measured_cost_model);
  set_option(s, "speculation.cost_model", std::string(LONGTAIL_SOURCE_DIR) + "/configs/cost_model.yaml");
  EXPECT_FALSE(s.engine.measured_cost_model);
  EXPECT_EQ(s.engine.budgets.cost.base_us, 5000.0);
}

TEST(MeasuredCostModel, EnginePricesWithTheMeasurementOfItsDeviceUnlessTold) {
  const auto want = measured_cost_model("NVIDIA H200", qwen25_1p5b_shape());
  ASSERT_TRUE(want.has_value());
  EXPECT_EQ(Engine(backend_on("NVIDIA H200"), EngineOptions{}).step_cost_model().base_us, want->cost.base_us);
  EXPECT_EQ(Engine(backend_on("cpu"), EngineOptions{}).step_cost_model().base_us,
            drafter::StepCostModel{}.base_us);
  EngineSettings told;
  set_option(told, "speculation.cost_base_us", "1234");
  EXPECT_EQ(Engine(backend_on("NVIDIA H200"), told.engine).step_cost_model().base_us, 1234.0);
}

}  // namespace
}  // namespace longtail::rollout
