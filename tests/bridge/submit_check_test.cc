// What a SUBMIT may ask for, as the worker checks it: the wire message decoded, then every group
// through the one request validator (check_submit). The error a trainer gets names the field path
// and the group; a value outside the protocol's own ranges is BAD_FIELD, what the model or engine
// refuses INVALID_REQUEST.
#include <cmath>
#include <functional>

#include <gtest/gtest.h>

#include "trainer_bridge/codec.h"
#include "trainer_bridge/worker.h"

namespace longtail::bridge {
namespace {

// The worker's vocabulary and context in these tests.
const rollout::RequestLimits kModel{/*vocab_size=*/64, /*context_length=*/16, nullptr};

Submit one_group_submit() {
  Submit s;
  s.req = 5;
  rollout::GroupRequest g;
  g.group_id = "g";
  g.prompt_tokens = {1, 2, 3, 4};
  s.groups.push_back(g);
  return s;
}

// Over the wire and through the worker's check, as the worker sees a SUBMIT.
void submit_check(const Submit& s, const rollout::RequestLimits& limits = kModel) {
  check_submit(std::get<Submit>(decode(encode(Message{s}), Direction::kToWorker)), limits);
}

ProtocolError submit_error(const Submit& s, const rollout::RequestLimits& limits = kModel) {
  try {
    submit_check(s, limits);
  } catch (const ProtocolError& e) {
    return e;
  }
  ADD_FAILURE() << "SUBMIT accepted";
  return ProtocolError("none", "none");
}

TEST(SubmitCheck, SubmitFieldErrorsNameTheGroup) {
  Submit s = one_group_submit();
  s.groups[0].n = 0;
  auto e = submit_error(s);
  EXPECT_EQ(e.code, errc::kBadField);
  EXPECT_EQ(e.req, std::optional<uint64_t>(5));
  EXPECT_NE(std::string(e.what()).find("groups[0].n"), std::string::npos) << e.what();
  s = one_group_submit();
  s.groups[0].sampling.temperature = -1;
  EXPECT_NE(std::string(submit_error(s).what()).find("temperature"), std::string::npos);
  s = one_group_submit();
  s.groups[0].stop_tokens = {-5};
  EXPECT_EQ(submit_error(s).code, errc::kBadField);
}

// Issue 16 item 4: the spec says top_p in (0, 1]; 1.5 was accepted.
TEST(SubmitCheck, TopPOutsideZeroOneIsRefused) {
  for (float bad : {1.5f, 0.0f, -0.1f}) {
    Submit s = one_group_submit();
    s.groups[0].sampling.top_p = bad;
    const auto e = submit_error(s);
    EXPECT_EQ(e.code, errc::kBadField);
    EXPECT_NE(std::string(e.what()).find("groups[0].sampling.top_p"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("(0, 1]"), std::string::npos) << e.what();
  }
  Submit ok = one_group_submit();
  ok.groups[0].sampling.top_p = 1.0f;
  EXPECT_NO_THROW(submit_check(ok));
}

// The protocol's ranges, whatever the model: BAD_FIELD with the group's index and field path.
TEST(SubmitCheck, ProtocolRangesAreBadFieldNamedByPath) {
  const auto refused = [](auto edit) {
    Submit s = one_group_submit();
    s.groups.insert(s.groups.begin(), s.groups[0]);
    s.groups[0].group_id = "first";
    edit(s.groups[1]);
    return submit_error(s);
  };
  const std::pair<std::function<void(rollout::GroupRequest&)>, const char*> cases[] = {
      {[](auto& g) { g.max_new_tokens = 0; }, "groups[1].max_new_tokens"},
      {[](auto& g) { g.sampling.min_p = 1.5f; }, "groups[1].sampling.min_p"},
      {[](auto& g) { g.sampling.temperature = NAN; }, "groups[1].sampling.temperature"},
      {[](auto& g) { g.prompt_tokens = {}; }, "groups[1].prompt_tokens"},
      {[](auto& g) { g.prompt_tokens = {1, -3}; }, "groups[1].prompt_tokens[1]"},
      {[](auto& g) { g.stop_token_ids = {2, -1}; }, "groups[1].stop_token_ids[1]"},
      {[](auto& g) { g.group_id = ""; }, "groups[1].group_id"},
  };
  for (const auto& [edit, path] : cases) {
    const auto e = refused(edit);
    EXPECT_EQ(e.code, errc::kBadField) << e.what();
    EXPECT_EQ(e.req, std::optional<uint64_t>(5));
    EXPECT_EQ(e.request_type, "SUBMIT");
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << path << ": " << e.what();
  }
}

// What this model or engine refuses: INVALID_REQUEST, still named by field path and group id.
TEST(SubmitCheck, ModelRefusalsAreInvalidRequest) {
  Submit s = one_group_submit();
  s.groups[0].prompt_tokens = {1, 64};
  auto e = submit_error(s);
  EXPECT_EQ(e.code, errc::kInvalidRequest);
  EXPECT_NE(std::string(e.what()).find("groups[0].prompt_tokens[1]"), std::string::npos) << e.what();
  EXPECT_NE(std::string(e.what()).find("vocabulary [0, 64)"), std::string::npos) << e.what();
  EXPECT_NE(std::string(e.what()).find("'g'"), std::string::npos) << e.what();

  s = one_group_submit();
  s.groups[0].prompt_tokens.assign(16, 1);
  e = submit_error(s);
  EXPECT_EQ(e.code, errc::kInvalidRequest);
  EXPECT_NE(std::string(e.what()).find("context"), std::string::npos) << e.what();

  s = one_group_submit();
  s.groups[0].stop_tokens = {70};
  EXPECT_EQ(submit_error(s).code, errc::kInvalidRequest);

  s = one_group_submit();
  s.groups.push_back(s.groups[0]);
  e = submit_error(s);
  EXPECT_EQ(e.code, errc::kInvalidRequest);
  EXPECT_NE(std::string(e.what()).find("groups[1].group_id"), std::string::npos) << e.what();
  EXPECT_NE(std::string(e.what()).find("repeated"), std::string::npos) << e.what();

  rollout::RequestLimits no_min_p = kModel;
  no_min_p.min_p_supported = false;
  s = one_group_submit();
  s.groups[0].sampling.min_p = 0.5f;
  e = submit_error(s, no_min_p);
  EXPECT_EQ(e.code, errc::kInvalidRequest);
  EXPECT_NE(std::string(e.what()).find("groups[0].sampling.min_p"), std::string::npos) << e.what();
  EXPECT_NO_THROW(submit_check(s));
}

}  // namespace
}  // namespace longtail::bridge
