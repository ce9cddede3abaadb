// The rollout-JSONL parser; the rule is in the header.
#include "rollout/rollout_jsonl.h"

#include <fstream>
#include <limits>

#include <nlohmann/json.hpp>

namespace longtail::rollout {
namespace {

using json = nlohmann::json;

RolloutFormatError bad(int64_t line_no, const std::string& why) {
  return RolloutFormatError("line " + std::to_string(line_no) + ": " + why, line_no);
}

// An integer below zero (nlohmann keeps parsed non-negative integers unsigned).
bool negative(const json& v) { return !v.is_number_unsigned() && v.get<int64_t>() < 0; }

std::vector<int32_t> token_array(const json& j, const char* field, int64_t line_no) {
  const auto it = j.find(field);
  if (it == j.end()) throw bad(line_no, std::string("missing field '") + field + "'");
  if (!it->is_array()) throw bad(line_no, std::string("field '") + field + "' is not an array");
  std::vector<int32_t> out;
  out.reserve(it->size());
  for (size_t i = 0; i < it->size(); ++i) {
    const json& v = (*it)[i];
    const std::string at = std::string(field) + "[" + std::to_string(i) + "]";
    if (!v.is_number_integer()) throw bad(line_no, at + " is not an integer");
    if (negative(v)) throw bad(line_no, at + " = " + v.dump() + " is a negative token id");
    if (v.get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int32_t>::max())) {
      throw bad(line_no, at + " = " + v.dump() + " does not fit a token id");
    }
    out.push_back(static_cast<int32_t>(v.get<uint64_t>()));
  }
  return out;
}

}  // namespace

RecordedRollout parse_rollout_line(std::string_view line, int64_t line_no) {
  json j;
  try {
    j = json::parse(line);
  } catch (const json::parse_error& e) {
    throw bad(line_no, std::string("malformed JSON (") + e.what() + ")");
  }
  if (!j.is_object()) throw bad(line_no, "not a JSON object");
  RecordedRollout r;
  r.source_line = line_no;
  const auto pid = j.find("prompt_id");
  if (pid == j.end()) throw bad(line_no, "missing field 'prompt_id'");
  if (pid->is_string()) {
    r.prompt_id = pid->get<std::string>();
  } else if (pid->is_number_integer()) {
    r.prompt_id = pid->dump();
  } else {
    throw bad(line_no, "field 'prompt_id' is not a string or an integer");
  }
  const auto sample = j.find("sample");
  if (sample == j.end()) throw bad(line_no, "missing field 'sample'");
  if (!sample->is_number_integer()) throw bad(line_no, "field 'sample' is not an integer");
  if (negative(*sample) ||
      sample->get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int32_t>::max())) {
    throw bad(line_no, "field 'sample' = " + sample->dump() + " is not in [0, 2^31)");
  }
  r.sample = static_cast<int32_t>(sample->get<uint64_t>());
  if (const auto st = j.find("step"); st != j.end() && !st->is_null()) {
    if (!st->is_number_integer()) throw bad(line_no, "field 'step' is not an integer");
    if (negative(*st)) {
      throw bad(line_no, "field 'step' = " + st->dump() + " is negative");
    }
    r.step = st->get<int64_t>();
  }
  r.prompt_tokens = token_array(j, "prompt_tokens", line_no);
  r.response_tokens = token_array(j, "response_tokens", line_no);
  if (const auto h = j.find("history_only"); h != j.end() && !h->is_null()) {
    if (!h->is_boolean()) throw bad(line_no, "field 'history_only' is not a boolean");
    r.history_only = h->get<bool>();
  }
  return r;
}

void read_rollout_jsonl(const std::filesystem::path& file, OnError on_bad,
                        const std::function<void(RecordedRollout&&)>& sink,
                        const std::function<void(const RolloutFormatError&)>& skipped) {
  std::ifstream in(file);
  if (!in) throw RolloutFormatError(file.string() + ": cannot open", 0);
  std::string line;
  int64_t line_no = 0;
  while (std::getline(in, line)) {
    ++line_no;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    RecordedRollout r;
    try {
      r = parse_rollout_line(line, line_no);
    } catch (const RolloutFormatError& e) {
      // "line N: problem" becomes "file:N: problem", as compilers and every other tool here say it.
      const std::string what = e.what();
      RolloutFormatError named(file.string() + ":" + what.substr(what.find(' ') + 1), line_no);
      if (on_bad == OnError::kStop) throw named;
      if (skipped) skipped(named);
      continue;
    }
    sink(std::move(r));
  }
  if (in.bad()) throw RolloutFormatError(file.string() + ": read error after line " + std::to_string(line_no), line_no);
}

std::vector<RecordedRollout> read_rollout_jsonl(const std::filesystem::path& file) {
  std::vector<RecordedRollout> out;
  read_rollout_jsonl(file, OnError::kStop, [&](RecordedRollout&& r) { out.push_back(std::move(r)); });
  return out;
}

std::string rollout_jsonl_line(const RecordedRollout& r) {
  nlohmann::ordered_json j;
  j["prompt_id"] = r.prompt_id;
  j["sample"] = r.sample;
  if (r.step) j["step"] = *r.step;
  j["prompt_tokens"] = r.prompt_tokens;
  j["response_tokens"] = r.response_tokens;
  if (r.history_only) j["history_only"] = true;
  return j.dump();
}

}  // namespace longtail::rollout
