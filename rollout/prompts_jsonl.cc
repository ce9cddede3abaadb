// The prompt-file reader; the rule is in the header.
#include "rollout/prompts_jsonl.h"

#include <fstream>
#include <limits>

#include <nlohmann/json.hpp>

namespace longtail::rollout {
namespace {

using json = nlohmann::json;

std::vector<int32_t> token_ids(const json& j, const char* key, const std::string& origin, bool allow_empty) {
  const auto it = j.find(key);
  if (it == j.end()) throw std::invalid_argument(origin + ": missing \"" + key + "\"");
  if (!it->is_array()) throw std::invalid_argument(origin + ": \"" + key + "\" is not a list");
  std::vector<int32_t> ids;
  ids.reserve(it->size());
  for (size_t i = 0; i < it->size(); ++i) {
    const json& v = (*it)[i];
    if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() > std::numeric_limits<int32_t>::max()) {
      throw std::invalid_argument(origin + ": \"" + key + "\"[" + std::to_string(i) + "] = " + v.dump() +
                                  " is not a token id");
    }
    ids.push_back(v.get<int32_t>());
  }
  if (ids.empty() && !allow_empty) throw std::invalid_argument(origin + ": \"" + key + "\" is empty");
  return ids;
}

PromptLine parse_line(const std::string& line, const std::string& origin, Responses responses) {
  json j;
  try {
    j = json::parse(line);
  } catch (const json::parse_error& e) {
    throw std::invalid_argument(origin + ": bad JSON: " + e.what());
  }
  if (!j.is_object()) throw std::invalid_argument(origin + ": expected a JSON object");
  PromptLine p;
  p.prompt_tokens = token_ids(j, "prompt_tokens", origin, false);
  if (const auto id = j.find("prompt_id"); id != j.end() && !id->is_null()) {
    if (id->is_string()) {
      p.prompt_id = id->get<std::string>();
    } else if (id->is_number_integer()) {
      p.prompt_id = id->dump();
    } else {
      throw std::invalid_argument(origin + ": \"prompt_id\" is not a string or an integer");
    }
  }
  if (responses == Responses::kRequired) p.response_tokens = token_ids(j, "response_tokens", origin, true);
  return p;
}

}  // namespace

std::vector<PromptLine> read_prompts_jsonl(const std::filesystem::path& file, Responses responses) {
  const std::string path = file.string();
  std::ifstream in(file);
  if (!in) throw PromptFormatError(path + ": cannot open", 0);
  std::vector<PromptLine> out;
  std::string line;
  for (int64_t line_no = 1; std::getline(in, line); ++line_no) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    try {
      out.push_back(parse_line(line, path + ":" + std::to_string(line_no), responses));
    } catch (const std::invalid_argument& e) {
      throw PromptFormatError(e.what(), line_no);
    }
    out.back().source_line = line_no;
  }
  if (in.bad()) throw PromptFormatError(path + ": read error", 0);
  if (out.empty()) throw PromptFormatError(path + ": no prompts", 0);
  return out;
}

std::string vocabulary_problem(std::span<const int32_t> ids, int32_t vocab, std::string_view what) {
  for (size_t i = 0; i < ids.size(); ++i) {
    if (ids[i] < 0 || ids[i] >= vocab) {
      return std::string(what) + " token " + std::to_string(ids[i]) + " at index " + std::to_string(i) +
             " is outside the model's vocabulary of " + std::to_string(vocab);
    }
  }
  return "";
}

}  // namespace longtail::rollout
