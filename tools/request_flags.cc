// Request flags through the request validator; see request_flags.h.
#include "tools/request_flags.h"

#include "rollout/request_validator.h"
#include "tools/cli_main.h"

namespace longtail::tools {

void check_request_flags(const rollout::GroupRequest& group, const std::map<std::string, std::string>& flag_of_field) {
  try {
    rollout::validate_group_request(group, rollout::RequestLimits{});
  } catch (const rollout::InvalidRequest& e) {
    const auto it = flag_of_field.find(e.field());
    throw InputError((it != flag_of_field.end() ? it->second : e.field()) + ": " + e.reason());
  }
}

}  // namespace longtail::tools
