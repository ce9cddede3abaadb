// Names of trajectory finish reasons, as the trainer protocol, logs and JSON outputs spell them.
#include "rollout/trajectory.h"

namespace longtail::rollout {

const char* to_string(FinishReason r) {
  switch (r) {
    case FinishReason::kStop: return "stop";
    case FinishReason::kLength: return "length";
    case FinishReason::kContext: return "context";
    case FinishReason::kAborted: return "aborted";
  }
  return "unknown";
}

}  // namespace longtail::rollout
