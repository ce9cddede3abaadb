// longtail-generate: sample continuations of token-id prompts (or score given responses) with a
// checkpoint, printing one JSON object per line. Three separable parts: argument parsing and input
// reading (with line numbers for every error), the decode itself (policy::plain_decode today; the
// rollout engine drives it later), and JSON output.
//
// Sample s of prompt p uses RNG uid (p << 32) | s (policy::sample_uid), so a run is reproducible
// from --seed whatever the batch. Exit codes: 0 ok, 2 bad input (flags, files, token ids,
// checkpoint), 1 anything else.
#include <cstdio>
#include <fstream>
#include <iostream>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include <boost/program_options.hpp>
#include <nlohmann/json.hpp>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "policy/backend.h"
#include "policy/checkpoint.h"
#include "policy/plain_decode.h"

namespace {

namespace po = boost::program_options;
namespace lp = longtail::policy;
using nlohmann::json;

// Anything the user got wrong: exit code 2.
struct InputError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct Args {
  std::string model;
  std::vector<std::string> prompt_flags;
  std::string prompts_file;
  std::string score_file;
  int n = 1;
  int max_new_tokens = 16;
  float temperature = 1.0f;
  float top_p = 1.0f;
  int top_k = 0;
  uint64_t seed = 0;
  std::string backend = "cpu";
  int threads = 0;
  std::optional<std::vector<int32_t>> stop_tokens;  // unset: the checkpoint's eos ids
  bool verbose = false;
};

// One input record with where it came from, for messages.
struct Prompt {
  std::vector<int32_t> tokens;
  std::vector<int32_t> response;  // --score only
  std::string origin;             // "--prompt #2" or "file.jsonl:7"
};

std::optional<Args> parse_args(int argc, char** argv) {
  Args a;
  std::vector<int64_t> stops;
  po::options_description desc("longtail-generate options");
  desc.add_options()
      ("help,h", "show this help")
      ("model", po::value(&a.model)->required(), "checkpoint directory (HF config.json + safetensors)")
      ("prompt", po::value(&a.prompt_flags), "prompt token ids, comma-separated (repeatable)")
      ("prompts", po::value(&a.prompts_file), "JSONL file, one {\"prompt_tokens\": [...]} per line")
      ("score", po::value(&a.score_file),
       "JSONL file of {\"prompt_tokens\", \"response_tokens\"}: print teacher-forced logprobs instead")
      ("n", po::value(&a.n)->default_value(1), "samples per prompt")
      ("max-new-tokens", po::value(&a.max_new_tokens)->default_value(16), "tokens to generate at most")
      ("temperature", po::value(&a.temperature)->default_value(1.0f), "0 = greedy")
      ("top-p", po::value(&a.top_p)->default_value(1.0f), "nucleus cut, 1 = none")
      ("top-k", po::value(&a.top_k)->default_value(0), "top-k cut, 0 = none")
      ("seed", po::value(&a.seed)->default_value(0), "run seed")
      ("backend", po::value(&a.backend)->default_value("cpu"), "cpu | cuda")
      ("threads", po::value(&a.threads)->default_value(0), "cpu backend threads, 0 = all cores")
      ("stop-token", po::value(&stops), "stop token id (repeatable; default: the checkpoint's eos ids)")
      ("verbose,v", po::bool_switch(&a.verbose), "log loading details to stderr");
  po::variables_map vm;
  try {
    po::store(po::parse_command_line(argc, argv, desc), vm);
    if (vm.count("help")) {
      std::cout << "Usage: longtail-generate --model DIR (--prompt 1,2,3 ... | --prompts FILE.jsonl | "
                   "--score FILE.jsonl) [options]\n"
                << desc << "\n";
      return std::nullopt;
    }
    po::notify(vm);
  } catch (const po::error& e) {
    throw InputError(std::string(e.what()) + " (see --help)");
  }
  const int sources = (a.prompt_flags.empty() ? 0 : 1) + (a.prompts_file.empty() ? 0 : 1) +
                      (a.score_file.empty() ? 0 : 1);
  if (sources != 1) throw InputError("give exactly one of --prompt, --prompts or --score");
  if (a.n < 1) throw InputError("--n must be at least 1, got " + std::to_string(a.n));
  if (a.max_new_tokens < 0) throw InputError("--max-new-tokens must be >= 0");
  if (!(a.temperature >= 0) || std::isinf(a.temperature)) throw InputError("--temperature must be a finite number >= 0");
  if (!(a.top_p > 0 && a.top_p <= 1)) throw InputError("--top-p must be in (0, 1]");
  if (a.threads < 0) throw InputError("--threads must be >= 0");
  if (vm.count("stop-token")) {
    a.stop_tokens.emplace();
    for (int64_t s : stops) {
      if (s < 0 || s > INT32_MAX) throw InputError("--stop-token " + std::to_string(s) + " is not a token id");
      a.stop_tokens->push_back(static_cast<int32_t>(s));
    }
  }
  return a;
}

std::vector<int32_t> parse_id_list(const std::string& text, const std::string& origin) {
  std::vector<int32_t> ids;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    size_t b = item.find_first_not_of(" \t"), e = item.find_last_not_of(" \t");
    if (b == std::string::npos) throw InputError(origin + ": empty token id in \"" + text + "\"");
    item = item.substr(b, e - b + 1);
    size_t used = 0;
    long long v = 0;
    try {
      v = std::stoll(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != item.size() || v < 0 || v > INT32_MAX) {
      throw InputError(origin + ": \"" + item + "\" is not a token id");
    }
    ids.push_back(static_cast<int32_t>(v));
  }
  if (ids.empty()) throw InputError(origin + ": empty prompt");
  return ids;
}

std::vector<int32_t> json_ids(const json& j, const char* key, const std::string& origin, bool allow_empty) {
  if (!j.contains(key)) throw InputError(origin + ": missing \"" + key + "\"");
  const json& arr = j.at(key);
  if (!arr.is_array()) throw InputError(origin + ": \"" + key + "\" is not a list");
  std::vector<int32_t> ids;
  for (size_t i = 0; i < arr.size(); ++i) {
    if (!arr[i].is_number_integer() || arr[i].get<int64_t>() < 0 || arr[i].get<int64_t>() > INT32_MAX) {
      throw InputError(origin + ": \"" + key + "\"[" + std::to_string(i) + "] = " + arr[i].dump() +
                       " is not a token id");
    }
    ids.push_back(arr[i].get<int32_t>());
  }
  if (ids.empty() && !allow_empty) throw InputError(origin + ": \"" + key + "\" is empty");
  return ids;
}

std::vector<Prompt> read_jsonl(const std::string& path, bool with_response) {
  std::ifstream in(path);
  if (!in) throw InputError(path + ": cannot open");
  std::vector<Prompt> out;
  std::string line;
  for (int64_t lineno = 1; std::getline(in, line); ++lineno) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const std::string origin = path + ":" + std::to_string(lineno);
    json j;
    try {
      j = json::parse(line);
    } catch (const json::parse_error& e) {
      throw InputError(origin + ": bad JSON: " + e.what());
    }
    if (!j.is_object()) throw InputError(origin + ": expected a JSON object");
    Prompt p;
    p.origin = origin;
    p.tokens = json_ids(j, "prompt_tokens", origin, false);
    if (with_response) p.response = json_ids(j, "response_tokens", origin, true);
    out.push_back(std::move(p));
  }
  if (in.bad()) throw InputError(path + ": read error");
  if (out.empty()) throw InputError(path + ": no prompts");
  return out;
}

std::vector<Prompt> read_inputs(const Args& a) {
  if (!a.score_file.empty()) return read_jsonl(a.score_file, true);
  if (!a.prompts_file.empty()) return read_jsonl(a.prompts_file, false);
  std::vector<Prompt> out;
  for (size_t i = 0; i < a.prompt_flags.size(); ++i) {
    const std::string origin = "--prompt #" + std::to_string(i + 1);
    out.push_back({parse_id_list(a.prompt_flags[i], origin), {}, origin});
  }
  return out;
}

void check_vocab(const std::vector<int32_t>& ids, int32_t vocab, const std::string& origin, const char* what) {
  for (size_t i = 0; i < ids.size(); ++i) {
    if (ids[i] >= vocab) {
      throw InputError(origin + ": " + what + " token " + std::to_string(ids[i]) + " at index " + std::to_string(i) +
                       " is outside the model's vocabulary of " + std::to_string(vocab));
    }
  }
}

void print_line(const nlohmann::ordered_json& j) {
  std::cout << j.dump() << '\n';
}

int run(const Args& a) {
  const std::vector<Prompt> inputs = read_inputs(a);
  lp::BackendOptions opts;
  opts.kind = a.backend;
  opts.num_threads = a.threads;
  std::unique_ptr<lp::Backend> backend;
  try {
    backend = lp::make_backend(a.model, opts);
  } catch (const lp::LoadError& e) {
    throw InputError(e.what());
  }
  const lp::ModelConfig& cfg = backend->config();
  for (const Prompt& p : inputs) {
    check_vocab(p.tokens, cfg.vocab_size, p.origin, "prompt");
    check_vocab(p.response, cfg.vocab_size, p.origin, "response");
    if (static_cast<int64_t>(p.tokens.size() + p.response.size()) > cfg.max_position_embeddings ||
        static_cast<int64_t>(p.tokens.size()) >= cfg.max_position_embeddings) {
      throw InputError(p.origin + ": " + std::to_string(p.tokens.size() + p.response.size()) +
                       " tokens do not fit max_position_embeddings " + std::to_string(cfg.max_position_embeddings));
    }
  }

  if (!a.score_file.empty()) {
    for (size_t i = 0; i < inputs.size(); ++i) {
      const auto lps = lp::score_response(*backend, inputs[i].tokens, inputs[i].response, a.temperature);
      print_line({{"prompt_index", i}, {"logprobs", lps}});
    }
    return 0;
  }

  lp::DecodeOptions dopt;
  dopt.sampling.temperature = a.temperature;
  dopt.sampling.top_p = a.top_p;
  dopt.sampling.top_k = a.top_k;
  dopt.sampling.seed = a.seed;
  dopt.max_new_tokens = a.max_new_tokens;
  dopt.stop_tokens = a.stop_tokens ? *a.stop_tokens : cfg.eos_token_ids;
  check_vocab(dopt.stop_tokens, cfg.vocab_size, "--stop-token", "stop");
  std::vector<lp::DecodeRequest> reqs;
  for (size_t p = 0; p < inputs.size(); ++p) {
    for (int s = 0; s < a.n; ++s) reqs.push_back({inputs[p].tokens, lp::sample_uid(p, static_cast<uint64_t>(s))});
  }
  const auto results = lp::plain_decode(*backend, reqs, dopt);
  for (size_t r = 0; r < results.size(); ++r) {
    print_line({{"prompt_index", r / a.n},
                {"sample", r % a.n},
                {"tokens", results[r].tokens},
                {"logprobs", results[r].logprobs},
                {"finish_reason", results[r].finish_reason}});
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  // stdout carries the JSON lines; every log line goes to stderr.
  spdlog::set_default_logger(spdlog::stderr_color_mt("longtail-generate"));
  spdlog::set_level(spdlog::level::warn);
  try {
    const auto args = parse_args(argc, argv);
    if (!args) return 0;
    if (args->verbose) spdlog::set_level(spdlog::level::info);
    return run(*args);
  } catch (const InputError& e) {
    std::cerr << "longtail-generate: error: " << e.what() << "\n";
    return 2;
  } catch (const std::invalid_argument& e) {
    std::cerr << "longtail-generate: error: " << e.what() << "\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "longtail-generate: error: " << e.what() << "\n";
    return 1;
  }
}
