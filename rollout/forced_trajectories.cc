// JSONL trace loading for trace-forced benchmark runs (see forced_trajectories.h).
#include "rollout/forced_trajectories.h"

#include <nlohmann/json.hpp>

#include <fstream>
#include <stdexcept>

namespace longtail::rollout {

namespace {

std::vector<int32_t> read_tokens(const nlohmann::json& j, const char* key, int32_t modulo,
                                 const std::string& where) {
  if (!j.contains(key) || !j[key].is_array()) {
    throw std::runtime_error(where + ": missing array \"" + key + "\"");
  }
  std::vector<int32_t> out;
  out.reserve(j[key].size());
  for (const auto& v : j[key]) {
    if (!v.is_number_integer()) throw std::runtime_error(where + ": \"" + key + "\" has a non-integer");
    const int64_t t = v.get<int64_t>();
    if (t < 0 || t > INT32_MAX) {
      throw std::runtime_error(where + ": \"" + key + "\" has token id " + std::to_string(t));
    }
    out.push_back(static_cast<int32_t>(modulo > 0 ? t % modulo : t));
  }
  return out;
}

}  // namespace

std::vector<TraceRollout> load_trace_jsonl(const std::filesystem::path& file, int32_t vocab_modulo) {
  std::ifstream in(file);
  if (!in) throw std::runtime_error("cannot open trace " + file.string());
  std::vector<TraceRollout> out;
  std::string line;
  int64_t line_no = 0;
  while (std::getline(in, line)) {
    ++line_no;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const std::string where = file.string() + ":" + std::to_string(line_no);
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception& e) {
      throw std::runtime_error(where + ": bad JSON: " + e.what());
    }
    if (!j.is_object()) throw std::runtime_error(where + ": not a JSON object");
    TraceRollout r;
    if (!j.contains("prompt_id") || !j["prompt_id"].is_string()) {
      throw std::runtime_error(where + ": missing string \"prompt_id\"");
    }
    r.prompt_id = j["prompt_id"].get<std::string>();
    if (!j.contains("sample") || !j["sample"].is_number_integer() || j["sample"].get<int64_t>() < 0) {
      throw std::runtime_error(where + ": missing non-negative integer \"sample\"");
    }
    r.sample = static_cast<int32_t>(j["sample"].get<int64_t>());
    if (j.contains("step")) {
      if (!j["step"].is_number_integer()) throw std::runtime_error(where + ": \"step\" is not an integer");
      r.step = j["step"].get<int64_t>();
    }
    r.prompt_tokens = read_tokens(j, "prompt_tokens", vocab_modulo, where);
    r.response_tokens = read_tokens(j, "response_tokens", vocab_modulo, where);
    out.push_back(std::move(r));
  }
  return out;
}

ForcedTrajectories forced_from_trace(const std::vector<TraceRollout>& trace) {
  ForcedTrajectories f;
  for (const TraceRollout& r : trace) f[{r.prompt_id, r.sample}] = r.response_tokens;
  return f;
}

}  // namespace longtail::rollout
