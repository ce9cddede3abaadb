// Trajectory log: every field round-trips, round boundaries, append, and corrupt or truncated files
// are reported with the offending offset instead of crashing.
#include "rollout/trajectory_log.h"

#include <gtest/gtest.h>

#include <fstream>

namespace longtail::rollout {
namespace {

Trajectory sample_trajectory(uint64_t uid) {
  Trajectory t;
  t.uid = uid;
  t.group_id = "g" + std::to_string(uid);
  t.prompt_id = "prompt-" + std::to_string(uid % 3);
  t.sample_index = 2;
  t.prompt_tokens = {1, 2, 3};
  t.response_tokens = {4, 5, 151645};
  t.behaviour_logprobs = {-0.5f, -1.25f, -0.125f};
  t.policy_versions = {7, 7, 8};
  t.current_logprobs = {-0.5f, -1.0f, -0.125f};
  t.finish_reason = FinishReason::kStop;
  t.metadata = std::string("meta\0data", 9);
  t.reward = 0.75;
  t.has_reward = true;
  t.log_ratio = 0.25;
  t.weight = 1.284;
  t.truncated_weight = 1.284;
  t.token_tis = {1.0f, 1.2f, 1.0f};
  return t;
}

void expect_same(const Trajectory& a, const Trajectory& b) {
  EXPECT_EQ(a.uid, b.uid);
  EXPECT_EQ(a.group_id, b.group_id);
  EXPECT_EQ(a.prompt_id, b.prompt_id);
  EXPECT_EQ(a.sample_index, b.sample_index);
  EXPECT_EQ(a.prompt_tokens, b.prompt_tokens);
  EXPECT_EQ(a.response_tokens, b.response_tokens);
  EXPECT_EQ(a.behaviour_logprobs, b.behaviour_logprobs);
  EXPECT_EQ(a.policy_versions, b.policy_versions);
  EXPECT_EQ(a.current_logprobs, b.current_logprobs);
  EXPECT_EQ(a.finish_reason, b.finish_reason);
  EXPECT_EQ(a.metadata, b.metadata);
  EXPECT_EQ(a.reward, b.reward);
  EXPECT_EQ(a.has_reward, b.has_reward);
  EXPECT_EQ(a.log_ratio, b.log_ratio);
  EXPECT_EQ(a.weight, b.weight);
  EXPECT_EQ(a.truncated_weight, b.truncated_weight);
  EXPECT_EQ(a.token_tis, b.token_tis);
}

std::string temp(const std::string& name) { return ::testing::TempDir() + "/" + name; }

TEST(TrajectoryLog, RoundTripsEveryFieldAndRoundBoundaries) {
  const auto path = temp("roundtrip.ltlog");
  {
    TrajectoryLogWriter w(path);
    w.write(sample_trajectory(1));
    w.write(sample_trajectory(2));
    w.write_round(0, 7);
  }
  {
    TrajectoryLogWriter w(path, /*append=*/true);
    w.write(sample_trajectory(3));
    w.write_round(1, 8);
  }
  ASSERT_TRUE(is_trajectory_log(path));
  TrajectoryLogReader r(path);
  LogRecord rec;
  std::vector<LogRecord> all;
  while (r.next(rec)) all.push_back(rec);
  ASSERT_EQ(all.size(), 5u);
  expect_same(std::get<Trajectory>(all[0]), sample_trajectory(1));
  expect_same(std::get<Trajectory>(all[1]), sample_trajectory(2));
  EXPECT_EQ(std::get<RoundBoundary>(all[2]).round, 0);
  EXPECT_EQ(std::get<RoundBoundary>(all[2]).policy_version, 7);
  expect_same(std::get<Trajectory>(all[3]), sample_trajectory(3));
  EXPECT_EQ(std::get<RoundBoundary>(all[4]).policy_version, 8);
}

// Every round boundary of the log, in file order.
std::vector<int64_t> rounds_of(const std::string& path) {
  std::vector<int64_t> out;
  TrajectoryLogReader r(path);
  LogRecord rec;
  while (r.next(rec)) {
    if (const auto* b = std::get_if<RoundBoundary>(&rec)) out.push_back(b->round);
  }
  return out;
}

TEST(TrajectoryLog, RoundNumbersKeepIncreasingAcrossRestarts) {
  const auto path = temp("restarts.ltlog");
  std::filesystem::remove(path);
  for (int run = 0; run < 3; ++run) {  // each run numbers its rounds from 0, as the engine does
    TrajectoryLogWriter w(path, /*append=*/true);
    EXPECT_EQ(w.round_offset(), 2 * run);
    for (int r = 0; r < 2; ++r) {
      w.write(sample_trajectory(10 * run + r));
      w.write_round(r, r);
    }
  }
  EXPECT_EQ(rounds_of(path), (std::vector<int64_t>{0, 1, 2, 3, 4, 5}));

  // A crash inside a round (trajectories without their boundary) and inside a write (a partial
  // record): the next run closes the orphaned round on its own and cuts the partial record off.
  {
    TrajectoryLogWriter w(path, true);
    w.write(sample_trajectory(100));
    w.flush();
    w.write(sample_trajectory(101));
  }
  std::filesystem::resize_file(path, std::filesystem::file_size(path) - 5);
  {
    TrajectoryLogWriter w(path, true);
    EXPECT_EQ(w.round_offset(), 7);
    w.write(sample_trajectory(200));
    w.write_round(0, 9);
  }
  EXPECT_EQ(rounds_of(path), (std::vector<int64_t>{0, 1, 2, 3, 4, 5, 6, 7}));
  TrajectoryLogReader r(path);
  LogRecord rec;
  std::vector<uint64_t> uids;
  while (r.next(rec)) {
    if (const auto* t = std::get_if<Trajectory>(&rec)) uids.push_back(t->uid);
  }
  EXPECT_EQ(uids.size(), 8u);  // 6 + the crashed round's complete one + the new one
  EXPECT_EQ(uids[6], 100u);
  EXPECT_EQ(uids[7], 200u);
}

TEST(TrajectoryLog, TruncatedTailReportsItsOffset) {
  const auto path = temp("truncated.ltlog");
  uint64_t first_end = 0;
  {
    TrajectoryLogWriter w(path);
    w.write(sample_trajectory(1));
    w.flush();
    first_end = w.bytes_written();
    w.write(sample_trajectory(2));
  }
  std::filesystem::resize_file(path, std::filesystem::file_size(path) - 3);
  TrajectoryLogReader r(path);
  LogRecord rec;
  ASSERT_TRUE(r.next(rec));
  try {
    r.next(rec);
    FAIL() << "truncated record not detected";
  } catch (const TrajectoryLogError& e) {
    EXPECT_EQ(e.offset(), first_end);
    EXPECT_NE(std::string(e.what()).find("truncated"), std::string::npos) << e.what();
  }
}

TEST(TrajectoryLog, CorruptRecordsAndHeadersAreErrors) {
  const auto path = temp("corrupt.ltlog");
  {
    TrajectoryLogWriter w(path);
    w.write(sample_trajectory(1));
  }
  // Inflate the first vector count (group_id length) so it points past the record.
  {
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(16 + 5 + 8);
    const uint32_t huge = 1u << 20;
    f.write(reinterpret_cast<const char*>(&huge), 4);
  }
  TrajectoryLogReader r(path);
  LogRecord rec;
  EXPECT_THROW(r.next(rec), TrajectoryLogError);

  const auto not_log = temp("not_a_log.jsonl");
  std::ofstream(not_log) << "{\"prompt_id\": 1}\n";
  EXPECT_FALSE(is_trajectory_log(not_log));
  EXPECT_THROW(TrajectoryLogReader{not_log}, TrajectoryLogError);
  EXPECT_THROW(TrajectoryLogWriter(not_log, /*append=*/true), TrajectoryLogError);
  EXPECT_THROW(decode_trajectory(std::string("abc")), std::runtime_error);
  std::string extra = encode_trajectory(sample_trajectory(1)) + "x";
  EXPECT_THROW(decode_trajectory(extra), std::runtime_error);
}

}  // namespace
}  // namespace longtail::rollout
