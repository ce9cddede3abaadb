// The one request validator: every rule names the field at fault (relative to the group), the
// value and the allowed range; limits left at zero are not checked; a list of groups refuses a
// repeated group_id and says which group failed.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "rollout/request_validator.h"

namespace longtail::rollout {
namespace {

GroupRequest good() {
  GroupRequest g;
  g.group_id = "g";
  g.prompt_tokens = {1, 2, 3};
  g.n = 2;
  g.max_new_tokens = 8;
  return g;
}

const RequestLimits kLimits{/*vocab_size=*/64, /*context_length=*/16, nullptr};

// The field and reason of the refusal, or "accepted".
std::string refusal(const GroupRequest& g, const RequestLimits& limits = kLimits) {
  try {
    validate_group_request(g, limits);
  } catch (const InvalidRequest& e) {
    EXPECT_EQ(std::string(e.what()), "group '" + g.group_id + "': " + e.reason());
    return e.field() + ": " + e.reason();
  }
  return "accepted";
}

TEST(RequestValidator, NamesTheFieldTheValueAndTheRange) {
  EXPECT_EQ(refusal(good()), "accepted");
  GroupRequest g = good();
  g.group_id.clear();
  EXPECT_EQ(refusal(g), "group_id: group_id is empty");
  g = good();
  g.n = 0;
  EXPECT_EQ(refusal(g), "n: n must be >= 1, got 0");
  g = good();
  g.prompt_tokens.clear();
  EXPECT_EQ(refusal(g), "prompt_tokens: empty prompt");
  g = good();
  g.prompt_tokens[1] = 64;
  EXPECT_EQ(refusal(g), "prompt_tokens[1]: prompt token 1 = 64 is outside the vocabulary [0, 64)");
  g = good();
  g.prompt_tokens.assign(16, 1);
  EXPECT_EQ(refusal(g), "prompt_tokens: prompt of 16 tokens leaves no room in the context of 16");
  g.prompt_tokens.assign(15, 1);
  EXPECT_EQ(refusal(g), "accepted");
  g = good();
  g.max_new_tokens = 0;
  EXPECT_EQ(refusal(g), "max_new_tokens: max_new_tokens must be >= 1, got 0");
  g = good();
  g.stop_tokens = {5, -5};
  EXPECT_EQ(refusal(g), "stop_tokens[1]: stop token -5 is outside the vocabulary [0, 64)");
  g = good();
  g.sampling.temperature = -1;
  EXPECT_EQ(refusal(g).rfind("sampling.temperature: temperature -1", 0), 0u) << refusal(g);
  g.sampling.temperature = std::numeric_limits<float>::infinity();
  EXPECT_EQ(refusal(g).rfind("sampling.temperature: ", 0), 0u) << refusal(g);
  for (float top_p : {0.0f, -0.5f, 1.5f, std::nanf("")}) {
    g = good();
    g.sampling.top_p = top_p;
    EXPECT_EQ(refusal(g).rfind("sampling.top_p: top_p ", 0), 0u) << refusal(g);
    EXPECT_NE(refusal(g).find("must be in (0, 1]"), std::string::npos) << refusal(g);
  }
  g = good();
  g.sampling.top_p = 1.0f;
  g.sampling.temperature = 0.0f;
  g.sampling.top_k = -3;  // any top_k: <= 0 is no cut
  EXPECT_EQ(refusal(g), "accepted");
}

TEST(RequestValidator, MinTokensAndLogprobsMode) {
  GroupRequest g = good();  // max_new_tokens 8
  for (int32_t m : {0, 1, 8}) {
    g.sampling.min_tokens = m;
    EXPECT_EQ(refusal(g), "accepted") << m;
  }
  g.sampling.min_tokens = 9;
  EXPECT_EQ(refusal(g), "sampling.min_tokens: min_tokens 9 must be in [0, max_new_tokens = 8]");
  g.sampling.min_tokens = -1;
  EXPECT_EQ(refusal(g), "sampling.min_tokens: min_tokens -1 must be in [0, max_new_tokens = 8]");
  g = good();
  g.sampling.logprobs_mode = "processed";
  EXPECT_EQ(refusal(g), "accepted");
  g.sampling.logprobs_mode = "processed_logprobs";
  EXPECT_EQ(refusal(g), "sampling.logprobs_mode: logprobs_mode 'processed_logprobs' must be 'raw' or 'processed'");
}

TEST(RequestValidator, RefusesWhatTheBackendsSamplerLacksByName) {
  RequestLimits limits = kLimits;
  limits.min_tokens_supported = false;
  limits.processed_logprobs_supported = false;
  GroupRequest g = good();
  g.sampling.logprobs_mode = "raw";
  EXPECT_EQ(refusal(g, limits), "accepted");
  g.sampling.min_tokens = 2;
  EXPECT_EQ(refusal(g, limits), "sampling.min_tokens: min_tokens 2 > 0 is not implemented by this backend's "
                                "sampler (it cannot mask stop tokens)");
  g = good();
  g.sampling.logprobs_mode = "processed";
  EXPECT_EQ(refusal(g, limits),
            "sampling.logprobs_mode: logprobs_mode 'processed' is not implemented by this backend's sampler");
}

TEST(RequestValidator, LimitsOfZeroAreNotChecked) {
  GroupRequest g = good();
  g.prompt_tokens.assign(1000, 100000);
  g.stop_tokens = {70000};
  EXPECT_EQ(refusal(g, RequestLimits{}), "accepted");
  g.stop_tokens = {-1};  // never a token id, whatever the model
  EXPECT_EQ(refusal(g, RequestLimits{}), "stop_tokens[0]: stop token -1 is not a token id (ids are >= 0)");
}

TEST(RequestValidator, TraceForcedSamplesNeedRecordingsInTheVocabulary) {
  ForcedTrajectories forced;
  forced[{"p", 0}] = {4, 5};
  forced[{"p", 1}] = {4, 99};
  GroupRequest g = good();
  g.prompt_id = "p";
  g.n = 1;
  const RequestLimits limits{64, 16, &forced};
  EXPECT_EQ(refusal(g, limits), "accepted");
  g.n = 2;
  EXPECT_EQ(refusal(g, limits),
            ": recorded token 99 of prompt 'p' sample 1 is outside the vocabulary [0, 64)");
  g.n = 1;
  g.trace_sample_offset = 2;
  EXPECT_EQ(refusal(g, limits), ": trace-forced mode has no recorded response for prompt 'p' sample 2");
  g.prompt_id.clear();  // the group id stands in for the prompt id
  g.trace_sample_offset = 0;
  EXPECT_EQ(refusal(g, limits), ": trace-forced mode has no recorded response for prompt 'g' sample 0");
}

TEST(RequestValidator, AListSaysWhichGroupAndRefusesRepeatedIds) {
  std::vector<GroupRequest> groups = {good(), good(), good()};
  groups[1].group_id = "h";
  groups[2].group_id = "i";
  EXPECT_NO_THROW(validate_group_requests(groups, kLimits));
  groups[2].n = 0;
  try {
    validate_group_requests(groups, kLimits);
    ADD_FAILURE() << "accepted";
  } catch (const InvalidRequest& e) {
    EXPECT_EQ(e.index(), 2);
    EXPECT_EQ(e.field(), "n");
    EXPECT_EQ(e.group_id(), "i");
  }
  groups[2] = good();  // id "g" again
  try {
    validate_group_requests(groups, kLimits);
    ADD_FAILURE() << "accepted";
  } catch (const InvalidRequest& e) {
    EXPECT_EQ(e.index(), 2);
    EXPECT_EQ(e.field(), "group_id");
    EXPECT_EQ(e.reason(), "group_id repeated within the request (also group 0)");
  }
}

}  // namespace
}  // namespace longtail::rollout
