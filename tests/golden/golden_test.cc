// The CPU backend reproduces transformers (fp32, eager attention) on every golden fixture: greedy
// continuations token for token, their logprobs and teacher-forced logprobs within 1e-4. Each
// fixture also runs with its config.json rewritten to the classic rope_theta/rope_scaling form,
// which transformers 5 no longer writes, so both parsing paths meet real weights.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "policy/backend.h"
#include "policy/plain_decode.h"

namespace lp = longtail::policy;
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

json read_json(const fs::path& p) {
  std::ifstream in(p);
  return json::parse(in);
}

// Copies the fixture and rewrites rope_parameters as top-level rope_theta + rope_scaling, using the
// old "type" key when old_type_key is set.
fs::path classic_copy(const fs::path& src, bool old_type_key) {
  const fs::path dst = fs::temp_directory_path() /
                       ("longtail_golden_classic_" + src.filename().string() + "_" + std::to_string(::getpid()) +
                        (old_type_key ? "_type" : "_rope_type"));
  fs::remove_all(dst);
  fs::create_directories(dst);
  for (const auto& e : fs::directory_iterator(src)) fs::copy(e.path(), dst / e.path().filename());
  json cfg = read_json(src / "config.json");
  json rp = cfg.at("rope_parameters");
  cfg.erase("rope_parameters");
  cfg["rope_theta"] = rp.at("rope_theta");
  rp.erase("rope_theta");
  const std::string type = rp.at("rope_type");
  if (type == "default") {
    cfg["rope_scaling"] = nullptr;
  } else {
    if (old_type_key) {
      rp.erase("rope_type");
      rp["type"] = type;
    }
    cfg["rope_scaling"] = rp;
  }
  std::ofstream(dst / "config.json") << cfg.dump(2);
  return dst;
}

void check_fixture(const fs::path& model_dir, const json& expected) {
  lp::BackendOptions opts;
  opts.num_threads = 2;
  auto backend = lp::make_backend(model_dir, opts);

  std::vector<lp::DecodeRequest> reqs;
  for (const json& g : expected.at("greedy")) reqs.push_back({g.at("prompt").get<std::vector<int32_t>>(), 7});
  lp::DecodeOptions dopt;
  dopt.sampling.temperature = 0;
  dopt.max_new_tokens = static_cast<int32_t>(expected.at("greedy")[0].at("tokens").size());
  const auto results = lp::plain_decode(*backend, reqs, dopt);  // both prompts in one batch
  double max_greedy = 0, max_tf = 0;
  for (size_t i = 0; i < reqs.size(); ++i) {
    const json& g = expected.at("greedy")[i];
    EXPECT_EQ(results[i].tokens, g.at("tokens").get<std::vector<int32_t>>()) << "prompt " << i;
    const auto lps = g.at("logprobs").get<std::vector<float>>();
    ASSERT_EQ(results[i].logprobs.size(), lps.size());
    for (size_t j = 0; j < lps.size(); ++j) {
      EXPECT_NEAR(results[i].logprobs[j], lps[j], 1e-4) << "prompt " << i << " token " << j;
      max_greedy = std::max(max_greedy, std::fabs(double{results[i].logprobs[j]} - lps[j]));
    }
  }
  for (const json& tf : expected.at("teacher_forced")) {
    const auto got = lp::score_response(*backend, tf.at("prompt").get<std::vector<int32_t>>(),
                                        tf.at("response").get<std::vector<int32_t>>(), 1.0f);
    const auto want = tf.at("logprobs").get<std::vector<float>>();
    ASSERT_EQ(got.size(), want.size());
    for (size_t j = 0; j < want.size(); ++j) {
      EXPECT_NEAR(got[j], want[j], 1e-4) << "response token " << j;
      max_tf = std::max(max_tf, std::fabs(double{got[j]} - want[j]));
    }
  }
  std::printf("%s: max |logprob diff| greedy %.3g, teacher-forced %.3g\n", model_dir.filename().c_str(),
              max_greedy, max_tf);
}

class Golden : public ::testing::TestWithParam<std::string> {};

TEST_P(Golden, MatchesTransformers) {
  const fs::path dir = fs::path(LONGTAIL_GOLDEN_DIR) / GetParam();
  check_fixture(dir, read_json(dir / "expected.json"));
}

TEST_P(Golden, MatchesTransformersWithClassicRopeConfig) {
  const fs::path dir = fs::path(LONGTAIL_GOLDEN_DIR) / GetParam();
  for (bool old_key : {false, true}) {
    const fs::path copy = classic_copy(dir, old_key);
    check_fixture(copy, read_json(dir / "expected.json"));
    fs::remove_all(copy);
  }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, Golden,
                         ::testing::Values("llama_rope_llama3", "llama_tied_sharded", "qwen2_bias_f16",
                                           "qwen3_qknorm_bf16"));

}  // namespace
