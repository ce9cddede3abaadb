// The loader refuses every kind of bad checkpoint with a LoadError naming file, tensor and problem
// (crafted files written here), reads both config.json rope forms alike, and converts dtypes exactly.
#include <unistd.h>

#include <cmath>
#include <gtest/gtest.h>

#include "checkpoint_writer.h"
#include "policy/checkpoint.h"

namespace lp = longtail::policy;
namespace lt = longtail::test;
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// Opens dir and expects a LoadError whose message contains every one of `parts`.
void expect_refused(const fs::path& dir, std::initializer_list<std::string> parts) {
  try {
    lp::Checkpoint::open(dir);
    ADD_FAILURE() << "checkpoint in " << dir << " was accepted";
  } catch (const lp::LoadError& e) {
    const std::string msg = e.what();
    for (const auto& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << "message: " << msg << "\nmissing: " << p;
  }
}

class CheckpointTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = lt::fresh_dir(::testing::UnitTest::GetInstance()->current_test_info()->name());
    cfg_ = lt::tiny_config();
    tensors_ = lt::tensors_for(cfg_, dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  void write() { lt::write_checkpoint(dir_, cfg_, tensors_); }

  fs::path dir_;
  json cfg_;
  lt::TensorMap tensors_;
};

TEST_F(CheckpointTest, AcceptsValidCheckpoint) {
  write();
  const auto ck = lp::Checkpoint::open(dir_);
  EXPECT_EQ(ck.config().num_layers, 1);
  EXPECT_EQ(ck.config().head_dim, 4);
  const auto& v = ck.tensor("model.layers.0.self_attn.k_proj.weight");
  EXPECT_EQ(v.shape, (std::vector<int64_t>{4, 8}));
  const auto f = lp::to_float(v);
  float first;
  std::memcpy(&first, tensors_["model.layers.0.self_attn.k_proj.weight"].bytes.data(), 4);
  EXPECT_EQ(f[0], first);
}

TEST_F(CheckpointTest, RefusesUnknownArchitecture) {
  cfg_["architectures"] = {"GPT2LMHeadModel"};
  write();
  expect_refused(dir_, {"config.json", "unknown architecture", "GPT2LMHeadModel"});
}

TEST_F(CheckpointTest, RefusesUnknownRopeTypeInBothForms) {
  cfg_["rope_scaling"] = {{"type", "dynamic"}, {"factor", 2.0}};
  write();
  expect_refused(dir_, {"config.json", "rope_scaling", "unknown rope type", "dynamic"});
  cfg_.erase("rope_scaling");
  cfg_["rope_parameters"] = {{"rope_type", "yarn"}, {"rope_theta", 10000.0}, {"factor", 4.0}};
  write();
  expect_refused(dir_, {"rope_parameters", "unknown rope type", "yarn"});
}

TEST_F(CheckpointTest, RefusesRopeParametersWithoutTypeThetaOrWithPartialRotary) {
  cfg_.erase("rope_theta");
  cfg_["rope_parameters"] = {{"rope_theta", 10000.0}};
  write();
  expect_refused(dir_, {"rope_parameters", "rope_type", "missing"});
  cfg_["rope_parameters"] = {{"rope_type", "default"}};
  write();
  expect_refused(dir_, {"rope_parameters", "rope_theta", "missing"});
  cfg_["rope_parameters"] = {{"rope_type", "default"}, {"rope_theta", 1e4}, {"partial_rotary_factor", 0.5}};
  write();
  expect_refused(dir_, {"partial_rotary_factor", "not supported"});
}

TEST_F(CheckpointTest, RefusesLlama3WithoutItsFields) {
  cfg_["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", 8.0}};
  write();
  expect_refused(dir_, {"low_freq_factor", "missing"});
}

TEST_F(CheckpointTest, RefusesBadConfigJson) {
  write();
  std::ofstream(dir_ / "config.json") << "{\"architectures\": [\"LlamaForCausalLM\"],";
  expect_refused(dir_, {"config.json", "bad JSON"});
}

TEST_F(CheckpointTest, RefusesMistypedConfigKey) {
  cfg_["hidden_size"] = "eight";
  write();
  expect_refused(dir_, {"config.json", "hidden_size", "integer"});
}

TEST_F(CheckpointTest, RefusesSlidingWindowShorterThanContext) {
  cfg_["architectures"] = {"MistralForCausalLM"};
  cfg_["sliding_window"] = 16;
  write();
  expect_refused(dir_, {"sliding_window", "not supported"});
  cfg_["sliding_window"] = nullptr;  // Mistral without a window is the Llama computation
  write();
  EXPECT_EQ(lp::Checkpoint::open(dir_).config().architecture, lp::Architecture::kMistral);
}

TEST_F(CheckpointTest, RefusesMissingTensor) {
  tensors_.erase("model.layers.0.mlp.up_proj.weight");
  write();
  expect_refused(dir_, {"model.layers.0.mlp.up_proj.weight", "missing tensor"});
}

TEST_F(CheckpointTest, RefusesExtraTensor) {
  tensors_["model.layers.0.mlp.extra.weight"] = lt::random_f32({2}, 9);
  write();
  expect_refused(dir_, {"model.safetensors", "model.layers.0.mlp.extra.weight", "unexpected tensor"});
}

TEST_F(CheckpointTest, IgnoresRotaryBuffer) {
  tensors_["model.layers.0.self_attn.rotary_emb.inv_freq"] = lt::random_f32({2}, 9);
  write();
  EXPECT_FALSE(lp::Checkpoint::open(dir_).has("model.layers.0.self_attn.rotary_emb.inv_freq"));
}

TEST_F(CheckpointTest, RefusesWrongShape) {
  tensors_["model.norm.weight"] = lt::random_f32({9}, 3);
  write();
  expect_refused(dir_, {"model.safetensors", "model.norm.weight", "wrong shape [9]", "[8]"});
}

TEST_F(CheckpointTest, RefusesUnsupportedDtype) {
  auto& t = tensors_["model.norm.weight"];
  t.dtype = "I32";
  write();
  expect_refused(dir_, {"model.norm.weight", "unsupported dtype", "I32"});
}

TEST_F(CheckpointTest, RefusesDtypeSizeMismatch) {
  tensors_["model.norm.weight"].dtype = "BF16";  // 32 bytes where BF16 [8] needs 16
  write();
  expect_refused(dir_, {"model.norm.weight", "does not match shape"});
}

TEST_F(CheckpointTest, RefusesTruncatedFile) {
  write();
  const std::string bytes = lt::safetensors_bytes(tensors_);
  lt::write_file(dir_ / "model.safetensors", bytes.substr(0, bytes.size() - 10));
  expect_refused(dir_, {"model.safetensors", "truncated"});
  lt::write_file(dir_ / "model.safetensors", bytes.substr(0, 5));
  expect_refused(dir_, {"model.safetensors", "truncated"});
}

TEST_F(CheckpointTest, RefusesHeaderLengthBeyondFile) {
  write();
  std::string bytes = lt::safetensors_bytes(tensors_);
  bytes[6] = 0x10;  // header length ~ 2^52
  lt::write_file(dir_ / "model.safetensors", bytes);
  expect_refused(dir_, {"model.safetensors", "header length", "beyond the file"});
}

TEST_F(CheckpointTest, RefusesBadHeaderJson) {
  write();
  const std::string h = "{\"model.norm.weight\": {";
  lt::write_file(dir_ / "model.safetensors", lt::safetensors_bytes(tensors_, &h));
  expect_refused(dir_, {"model.safetensors", "bad JSON"});
}

TEST_F(CheckpointTest, RefusesOffsetsOutOfRange) {
  write();
  // Push one tensor's byte range past the end of the data.
  std::string bytes = lt::safetensors_bytes(tensors_);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<uint8_t>(bytes[i]);
  json h = json::parse(bytes.substr(8, n));
  auto& off = h["model.norm.weight"]["data_offsets"];
  const uint64_t total = bytes.size() - 8 - n;
  off = {total, total + 32};
  std::string hs = h.dump();
  lt::write_file(dir_ / "model.safetensors", lt::safetensors_bytes(tensors_, &hs));
  expect_refused(dir_, {"model.norm.weight", "beyond the data"});
}

TEST_F(CheckpointTest, RefusesOverlappingTensors) {
  std::string bytes = lt::safetensors_bytes(tensors_);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<uint8_t>(bytes[i]);
  json h = json::parse(bytes.substr(8, n));
  h["model.norm.weight"]["data_offsets"] = h["model.layers.0.input_layernorm.weight"]["data_offsets"];
  std::string hs = h.dump();
  std::ofstream(dir_ / "config.json") << cfg_.dump();
  lt::write_file(dir_ / "model.safetensors", lt::safetensors_bytes(tensors_, &hs));
  expect_refused(dir_, {"overlaps"});
}

TEST_F(CheckpointTest, ReadsShardedIndexAndRefusesInconsistentOnes) {
  lt::TensorMap a, b;
  bool first = true;
  json wm = json::object();
  for (auto& [name, t] : tensors_) {
    (first ? a : b)[name] = t;
    wm[name] = first ? "model-00001-of-00002.safetensors" : "model-00002-of-00002.safetensors";
    first = !first;
  }
  std::ofstream(dir_ / "config.json") << cfg_.dump();
  lt::write_file(dir_ / "model-00001-of-00002.safetensors", lt::safetensors_bytes(a));
  lt::write_file(dir_ / "model-00002-of-00002.safetensors", lt::safetensors_bytes(b));
  std::ofstream(dir_ / "model.safetensors.index.json") << json{{"metadata", json::object()}, {"weight_map", wm}}.dump();
  EXPECT_EQ(lp::Checkpoint::open(dir_).tensors().size(), tensors_.size());

  json wm2 = wm;
  wm2["model.norm.weight"] = wm["model.norm.weight"] == "model-00001-of-00002.safetensors"
                                 ? "model-00002-of-00002.safetensors"
                                 : "model-00001-of-00002.safetensors";
  std::ofstream(dir_ / "model.safetensors.index.json") << json{{"weight_map", wm2}}.dump();
  expect_refused(dir_, {"model.norm.weight", "index"});

  wm2 = wm;
  wm2["model.norm.weight"] = "model-00003-of-00002.safetensors";
  std::ofstream(dir_ / "model.safetensors.index.json") << json{{"weight_map", wm2}}.dump();
  expect_refused(dir_, {"model-00003-of-00002.safetensors", "cannot open"});

  std::ofstream(dir_ / "model.safetensors.index.json") << "{not json";
  expect_refused(dir_, {"model.safetensors.index.json", "bad JSON"});
}

TEST_F(CheckpointTest, RefusesDirectoryWithoutWeights) {
  std::ofstream(dir_ / "config.json") << cfg_.dump();
  expect_refused(dir_, {"no model.safetensors"});
}

TEST(ModelConfigTest, ClassicAndRopeParametersFormsAgree) {
  const fs::path d1 = lt::fresh_dir("rope_classic"), d2 = lt::fresh_dir("rope_params");
  json classic = lt::tiny_config();
  classic["rope_theta"] = 500000.0;
  classic["rope_scaling"] = {{"type", "llama3"}, {"factor", 8.0}, {"low_freq_factor", 1.0},
                             {"high_freq_factor", 4.0}, {"original_max_position_embeddings", 8192}};
  json modern = lt::tiny_config();
  modern.erase("rope_theta");
  modern["rope_parameters"] = {{"rope_type", "llama3"}, {"rope_theta", 500000.0}, {"factor", 8.0},
                               {"low_freq_factor", 1.0}, {"high_freq_factor", 4.0},
                               {"original_max_position_embeddings", 8192}};
  std::ofstream(d1 / "config.json") << classic.dump();
  std::ofstream(d2 / "config.json") << modern.dump();
  const auto a = lp::load_model_config(d1), b = lp::load_model_config(d2);
  for (const auto& c : {a, b}) {
    EXPECT_EQ(c.rope_theta, 500000.0);
    EXPECT_EQ(c.rope_scaling.type, "llama3");
    EXPECT_EQ(c.rope_scaling.factor, 8.0);
    EXPECT_EQ(c.rope_scaling.original_max_position_embeddings, 8192);
    EXPECT_EQ(c.eos_token_ids, std::vector<int32_t>{2});
  }
  fs::remove_all(d1);
  fs::remove_all(d2);
}

TEST(ModelConfigTest, ArchitectureSpecificFlags) {
  const fs::path d = lt::fresh_dir("arch_flags");
  json q2 = lt::tiny_config("Qwen2ForCausalLM");
  std::ofstream(d / "config.json") << q2.dump();
  EXPECT_TRUE(lp::load_model_config(d).attention_bias);
  json q3 = lt::tiny_config("Qwen3ForCausalLM");
  q3["head_dim"] = 6;
  std::ofstream(d / "config.json") << q3.dump();
  const auto c3 = lp::load_model_config(d);
  EXPECT_TRUE(c3.qk_norm);
  EXPECT_EQ(c3.head_dim, 6);
  std::ofstream(d / "generation_config.json") << json{{"eos_token_id", {2, 7}}}.dump();
  EXPECT_EQ(lp::load_model_config(d).eos_token_ids, (std::vector<int32_t>{2, 7}));
  fs::remove_all(d);
}

TEST(DtypeTest, HalfAndBfloatConversionsAreExact) {
  EXPECT_EQ(lp::f16_to_float(0x3C00), 1.0f);
  EXPECT_EQ(lp::f16_to_float(0xC000), -2.0f);
  EXPECT_EQ(lp::f16_to_float(0x0001), std::ldexp(1.0f, -24));
  EXPECT_EQ(lp::f16_to_float(0x7BFF), 65504.0f);
  EXPECT_TRUE(std::isinf(lp::f16_to_float(0x7C00)));
  EXPECT_TRUE(std::isnan(lp::f16_to_float(0x7E00)));
  EXPECT_EQ(lp::bf16_to_float(0x3F80), 1.0f);
  EXPECT_EQ(lp::bf16_to_float(0xC0A0), -5.0f);
}

}  // namespace
