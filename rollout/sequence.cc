// Sequence and group helpers: stop-token lookup and conversion to the trajectory record.
#include "rollout/sequence.h"

#include <algorithm>

namespace longtail::rollout {

bool Group::is_stop(int32_t token) const {
  return std::find(stop_tokens.begin(), stop_tokens.end(), token) != stop_tokens.end();
}

Trajectory make_trajectory(const Sequence& s) {
  Trajectory t;
  t.uid = s.uid;
  t.group_id = s.group->request.group_id;
  t.prompt_id = s.group->request.prompt_id;
  t.sample_index = s.sample_index;
  t.prompt_tokens.assign(s.tokens.begin(), s.tokens.begin() + s.prompt_len);
  t.response_tokens.assign(s.tokens.begin() + s.prompt_len, s.tokens.end());
  t.behaviour_logprobs = s.behaviour_logprobs;
  t.policy_versions = s.policy_versions;
  t.current_logprobs = s.current_logprobs;
  t.finish_reason = s.finish_reason;
  t.metadata = s.group->request.metadata;
  return t;
}

}  // namespace longtail::rollout
