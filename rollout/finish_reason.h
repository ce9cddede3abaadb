// Why a trajectory ended, and the one table of its names as the trainer protocol, the trajectory
// log, JSON outputs and logs spell them. Header-only so that readers of logs and the wire codec need
// not link the engine.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string_view>

namespace longtail::rollout {

enum class FinishReason : uint8_t {
  kStop = 0,     // a stop token was sampled (it is the last response token)
  kLength = 1,   // max_new_tokens reached
  kContext = 2,  // the model's context limit reached
  kAborted = 3,  // cut short (cannot fit the KV cache even alone; shutdown without carry-over)
};

inline constexpr std::array<const char*, 4> kFinishReasonNames = {"stop", "length", "context",
                                                                  "aborted"};

// "stop", "length", "context", "aborted"; "unknown" for a value outside the enum (a corrupt
// cast), so that a log line never reads past the table.
inline const char* finish_reason_name(FinishReason r) {
  const auto i = static_cast<size_t>(r);
  return i < kFinishReasonNames.size() ? kFinishReasonNames[i] : "unknown";
}

// The inverse of finish_reason_name; nothing for any other text (callers name the bad value).
inline std::optional<FinishReason> parse_finish_reason(std::string_view name) {
  for (size_t i = 0; i < kFinishReasonNames.size(); ++i) {
    if (name == kFinishReasonNames[i]) return static_cast<FinishReason>(i);
  }
  return std::nullopt;
}

}  // namespace longtail::rollout
