// Recorded rollouts as JSONL; see trajectory_export.h.
#include "tools/trajectory_export.h"

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "rollout/trajectory_log.h"

namespace longtail::tools {
namespace {

using ojson = nlohmann::ordered_json;

ojson trajectory_line(const rollout::Trajectory& t, int64_t round, int64_t policy_version) {
  ojson j;
  j["prompt_id"] = t.prompt_id.empty() ? t.group_id : t.prompt_id;
  j["sample"] = t.sample_index;
  j["step"] = round;
  j["prompt_tokens"] = t.prompt_tokens;
  j["response_tokens"] = t.response_tokens;
  j["uid"] = t.uid;
  j["group_id"] = t.group_id;
  j["behaviour_logprobs"] = t.behaviour_logprobs;
  j["policy_versions"] = t.policy_versions;
  j["current_logprobs"] = t.current_logprobs;
  j["finish_reason"] = rollout::finish_reason_name(t.finish_reason);
  j["metadata"] = t.metadata;
  j["reward"] = t.has_reward ? ojson(t.reward) : ojson(nullptr);
  j["log_ratio"] = t.log_ratio;
  j["weight"] = t.weight;
  j["truncated_weight"] = t.truncated_weight;
  j["token_tis"] = t.token_tis;
  j["policy_version"] = policy_version;
  return j;
}

int64_t export_log(const std::filesystem::path& file, rollout::OnError on_error, std::ostream& out) {
  rollout::TrajectoryLogReader reader(file);
  rollout::LogRecord rec;
  std::vector<rollout::Trajectory> round;  // trajectories precede their round's boundary
  int64_t lines = 0, next_round = 0;
  auto flush = [&](int64_t r, int64_t version) {
    for (const rollout::Trajectory& t : round) {
      out << trajectory_line(t, r, version).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << '\n';
      ++lines;
    }
    round.clear();
    next_round = r + 1;
  };
  try {
    while (reader.next(rec)) {
      if (auto* t = std::get_if<rollout::Trajectory>(&rec)) {
        round.push_back(std::move(*t));
      } else {
        const auto& b = std::get<rollout::RoundBoundary>(rec);
        flush(b.round, b.policy_version);
      }
    }
  } catch (const rollout::TrajectoryLogError& e) {
    if (on_error == rollout::OnError::kStop) throw;
    spdlog::warn("{} (the rest of the log is ignored)", e.what());
  }
  // A round cut short by a crash has no boundary: it is the round after the last one.
  flush(next_round, next_round);
  return lines;
}

}  // namespace

int64_t export_jsonl(const std::filesystem::path& file, int32_t round_size, rollout::OnError on_error,
                     std::ostream& out) {
  if (rollout::is_trajectory_log(file)) return export_log(file, on_error, out);
  int64_t lines = 0;
  for (rollout::ReplayRound& round : rollout::read_replay_input(file, round_size, on_error).rounds) {
    for (rollout::RecordedRollout& r : round.rollouts) {
      r.step = round.round;
      out << rollout::rollout_jsonl_line(r) << '\n';
      ++lines;
    }
  }
  return lines;
}

}  // namespace longtail::tools
