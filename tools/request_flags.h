// A tool's request flags (--n, --temperature, --top-p, ...) checked by the one request validator
// (rollout/request_validator.h) before the model loads, so the tools hold no copy of its ranges
// and a refusal still names the flag: "--top-p: top_p 1.500000 must be in (0, 1]". What needs the
// model (token ids against the vocabulary, the context length, what the backend's sampler
// implements) is checked again at submit.
#pragma once

#include <map>
#include <string>

#include "rollout/types.h"

namespace longtail::tools {

// `group`: a request built from the flags as the tool will submit it (any non-empty prompt);
// `flag_of_field`: the validator's field paths ("n", "sampling.top_p") to the tool's flags. Throws
// InputError (cli_main.h); a field without a flag is named by its path.
void check_request_flags(const rollout::GroupRequest& group, const std::map<std::string, std::string>& flag_of_field);

}  // namespace longtail::tools
