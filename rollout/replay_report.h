// The replay's reports (longtail-replay --json, the table, --plot).
#pragma once

#include <string>

#include "rollout/replay_simulation.h"

namespace longtail::rollout {

std::string report_json(const ReplayReport& r);   // one JSON object
std::string report_table(const ReplayReport& r);  // human-readable
std::string report_svg(const ReplayReport& r);    // acceptance and step speedup by length bucket

}  // namespace longtail::rollout
