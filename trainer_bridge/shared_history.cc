// HISTORY rollouts queued for the drafter; see shared_history.h.
#include "trainer_bridge/shared_history.h"

#include <string>

namespace longtail::bridge {

uint64_t SharedHistory::take(History&& h, int32_t vocab_size) {
  for (size_t i = 0; i < h.trajectories.size(); ++i) {
    const auto& e = h.trajectories[i];
    auto check = [&](const std::vector<int32_t>& tokens, const char* what) {
      for (size_t t = 0; t < tokens.size(); ++t) {
        if (tokens[t] < 0 || tokens[t] >= vocab_size)
          throw ProtocolError(errc::kInvalidRequest,
                              "trajectories[" + std::to_string(i) + "] (prompt '" + e.prompt_id + "'): " + what +
                                  " token " + std::to_string(t) + " = " + std::to_string(tokens[t]) +
                                  " is outside the vocabulary [0, " + std::to_string(vocab_size) + "); nothing added",
                              h.req, "HISTORY");
      }
    };
    check(e.prompt_tokens, "prompt");
    check(e.response_tokens, "response");
  }
  const uint64_t n = h.trajectories.size();
  for (auto& e : h.trajectories) {
    queued_tokens_ += static_cast<int64_t>(e.prompt_tokens.size() + e.response_tokens.size());
    queued_.push_back(std::move(e));
  }
  while (queued_tokens_ > max_tokens_ && !queued_.empty()) {
    queued_tokens_ -= static_cast<int64_t>(queued_.front().prompt_tokens.size() + queued_.front().response_tokens.size());
    queued_.pop_front();
    ++dropped;
  }
  received += n;
  return n;
}

void SharedHistory::apply(rollout::Engine& engine, int64_t round) {
  for (const auto& e : queued_) engine.add_history(e.prompt_id, e.prompt_tokens, e.response_tokens, round);
  applied += queued_.size();
  queued_.clear();
  queued_tokens_ = 0;
}

}  // namespace longtail::bridge
