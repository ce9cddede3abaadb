// Recorded rollouts into rounds, from JSONL or a trajectory log; see replay_input.h.
#include "rollout/replay_input.h"

#include <map>
#include <unordered_map>

#include <spdlog/spdlog.h>

#include "rollout/trajectory_log.h"

namespace longtail::rollout {
namespace {

// The log carries int32 tokens without a sign check; a negative one is a bad record.
void check_tokens(const std::vector<int32_t>& v, const char* field, const std::string& where, int64_t record) {
  for (size_t i = 0; i < v.size(); ++i) {
    if (v[i] < 0) {
      throw ReplayInputError(where + ": " + field + "[" + std::to_string(i) + "] = " + std::to_string(v[i]) +
                                 " is a negative token id",
                             record);
    }
  }
}

ReplayInput read_log(const std::filesystem::path& file, OnError on_error) {
  ReplayInput in;
  TrajectoryLogReader reader(file);
  LogRecord rec;
  ReplayRound current;
  int64_t record_no = 0;
  int64_t next_round = 0;
  auto close_round = [&](int64_t round) {
    current.round = round;
    for (RecordedRollout& r : current.rollouts) r.step = round;
    if (!current.rollouts.empty()) in.rounds.push_back(std::move(current));
    current = ReplayRound{};
    next_round = round + 1;
  };
  try {
    while (reader.next(rec)) {
      ++record_no;
      if (const auto* b = std::get_if<RoundBoundary>(&rec)) {
        close_round(b->round);
        continue;
      }
      auto& t = std::get<Trajectory>(rec);
      try {
        const std::string where = file.string() + ": record " + std::to_string(record_no);
        check_tokens(t.prompt_tokens, "prompt_tokens", where, record_no);
        check_tokens(t.response_tokens, "response_tokens", where, record_no);
      } catch (const ReplayInputError& e) {
        if (on_error == OnError::kStop) throw;
        spdlog::warn("{} (skipped)", e.what());
        in.errors.push_back(e.what());
        continue;
      }
      RecordedRollout r;
      r.prompt_id = t.prompt_id.empty() ? t.group_id : t.prompt_id;
      r.sample = t.sample_index;
      r.prompt_tokens = std::move(t.prompt_tokens);
      r.response_tokens = std::move(t.response_tokens);
      r.source_line = record_no;
      current.rollouts.push_back(std::move(r));
    }
  } catch (const TrajectoryLogError& e) {
    // A corrupt record ends the readable part of the log: nothing after it can be framed.
    if (on_error == OnError::kStop) throw ReplayInputError(e.what(), static_cast<int64_t>(e.offset()));
    spdlog::warn("{} (the rest of the log is ignored)", e.what());
    in.errors.push_back(e.what());
  }
  close_round(next_round);
  return in;
}

}  // namespace

ReplayInput read_replay_input(const std::filesystem::path& file, int32_t round_size, OnError on_error) {
  if (!std::filesystem::exists(file)) {
    throw ReplayInputError("input " + file.string() + " does not exist", 0);
  }
  if (is_trajectory_log(file)) return read_log(file, on_error);
  ReplayInput out;
  std::map<int64_t, ReplayRound> rounds;
  std::unordered_map<std::string, int64_t> stepless_prompt_index;
  read_rollout_jsonl(
      file, on_error,
      [&](RecordedRollout&& r) {
        int64_t round = r.step.value_or(0);
        if (!r.step) {
          const auto [it, fresh] = stepless_prompt_index.emplace(
              r.prompt_id, static_cast<int64_t>(stepless_prompt_index.size()));
          round = round_size > 0 ? it->second / round_size : 0;
        }
        auto& rr = rounds[round];
        rr.round = round;
        (r.history_only ? rr.history : rr.rollouts).push_back(std::move(r));
      },
      [&](const RolloutFormatError& e) {
        spdlog::warn("{} (skipped)", e.what());
        out.errors.push_back(e.what());
      });
  for (auto& [k, v] : rounds) out.rounds.push_back(std::move(v));
  return out;
}

}  // namespace longtail::rollout
