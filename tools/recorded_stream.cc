// Streaming recorded rollouts in process; see recorded_stream.h.
#include "tools/recorded_stream.h"

#include <limits>
#include <memory>

#include "rollout/trajectory_log.h"

namespace longtail::tools {

bridge::RecordSource records_of(rollout::ReplayInput input) {
  struct Cursor {
    rollout::ReplayInput in;
    size_t round = 0, rollout = 0;
    uint64_t next_uid = 1;
  };
  auto c = std::make_shared<Cursor>();
  c->in = std::move(input);
  return [c](rollout::LogRecord& rec) {
    if (c->round >= c->in.rounds.size()) return false;
    rollout::ReplayRound& round = c->in.rounds[c->round];
    if (c->rollout == round.rollouts.size()) {
      rec = rollout::RoundBoundary{round.round, round.round};
      ++c->round;
      c->rollout = 0;
      return true;
    }
    rollout::RecordedRollout& r = round.rollouts[c->rollout++];
    rollout::Trajectory t;
    t.uid = c->next_uid++;
    t.prompt_id = r.prompt_id;
    t.group_id = r.prompt_id + "/round-" + std::to_string(round.round);
    t.sample_index = r.sample;
    t.prompt_tokens = std::move(r.prompt_tokens);
    t.response_tokens = std::move(r.response_tokens);
    // A recording carries no logprobs: NaN says "unknown" rather than inventing a value.
    t.behaviour_logprobs.assign(t.response_tokens.size(), std::numeric_limits<float>::quiet_NaN());
    t.policy_versions.assign(t.response_tokens.size(), round.round);
    t.finish_reason = rollout::FinishReason::kStop;
    rec = std::move(t);
    return true;
  };
}

bridge::StreamResult stream_recorded(const std::filesystem::path& file, const bridge::StreamOptions& opts,
                                     int32_t round_size, rollout::OnError on_error,
                                     const std::atomic<bool>* stop) {
  bridge::BatchSource source =
      rollout::is_trajectory_log(file)
          ? bridge::trajectory_log_source(file, opts.trajectories_per_batch)
          : bridge::recorded_batch_source(records_of(rollout::read_replay_input(file, round_size, on_error)),
                                          opts.trajectories_per_batch);
  bridge::TrainerSession pub(opts.session, nullptr);
  return bridge::stream_batches(pub, source, opts, stop);
}

}  // namespace longtail::tools
