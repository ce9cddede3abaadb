// Hands recorded rollouts to trainer_bridge's longtail-stream (see replay_stream.h).
#include "rollout/replay_stream.h"

#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <limits>
#include <vector>

#include "rollout/trajectory_log.h"

namespace longtail::rollout {

void write_replay_input_as_log(const ReplayInput& input, const std::filesystem::path& log) {
  TrajectoryLogWriter writer(log);
  uint64_t uid = 1;
  for (const ReplayRound& round : input.rounds) {
    for (const ReplayRollout& r : round.rollouts) {
      Trajectory t;
      t.uid = uid++;
      t.prompt_id = r.prompt_id;
      t.group_id = r.prompt_id + "/round-" + std::to_string(round.round);
      t.sample_index = static_cast<int32_t>(r.sample);
      t.prompt_tokens = r.prompt_tokens;
      t.response_tokens = r.response_tokens;
      // A recording carries no logprobs: NaN says "unknown" rather than inventing a value.
      t.behaviour_logprobs.assign(r.response_tokens.size(), std::numeric_limits<float>::quiet_NaN());
      t.policy_versions.assign(r.response_tokens.size(), round.round);
      t.finish_reason = FinishReason::kStop;
      writer.write(t);
    }
    writer.write_round(round.round, round.round);
  }
  writer.flush();
}

std::string exec_stream(const std::filesystem::path& log, const StreamRequest& request) {
  std::error_code ec;
  const std::filesystem::path self = std::filesystem::read_symlink("/proc/self/exe", ec);
  const std::filesystem::path tool = ec ? std::filesystem::path("longtail-stream")
                                        : self.parent_path() / "longtail-stream";
  std::vector<std::string> args = {tool.string(), "--log", log.string(), "--endpoint", request.endpoint,
                                   "--rate", std::to_string(request.batches_per_second),
                                   "--batch-size", std::to_string(request.trajectories_per_batch)};
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  ::execv(argv[0], argv.data());
  return "cannot run " + tool.string() + " (built with the trainer bridge): " + std::strerror(errno);
}

}  // namespace longtail::rollout
