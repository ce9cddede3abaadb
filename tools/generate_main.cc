// longtail-generate: sample continuations of token-id prompts (or score given responses) with a
// checkpoint, printing one JSON object per line. Three separable parts: argument parsing and input
// reading (with line numbers for every error), generation through the rollout engine
// (rollout::Engine: continuous batching + lossless speculative decoding from the drafter's
// history) or teacher-forced scoring (policy::score_response), and JSON output.
//
// RNG stream rule: every prompt is one group of n samples with sample_key 1 + p*n, so sample s of
// prompt p (0-based) draws from stream 1 + p*n + s under --seed (policy/sampling.h; the streams
// the engine's uids gave before per-request seeds). A run is therefore reproducible from --seed,
// --n and the prompt list, whatever the batch, --speculation or the budgets. (Before the engine
// drove this tool, the plain decode loop used uid (p << 32) | s: greedy output is unchanged,
// sampled output differs from that era.)
// Lines are printed in (prompt_index, sample) order, whatever order the engine finishes them in.
// finish_reason is "stop" or "length" (max_new_tokens or the context limit, as before), or
// "aborted" when a sequence cannot fit the KV cache even alone.
//
// Request flags use vLLM's SamplingParams names: --max-tokens (--max-new-tokens stays as an alias),
// --top-k (0 or -1 = off), --min-p, --stop-token-ids (added to the checkpoint's eos ids),
// --ignore-eos, --min-tokens (only 0 until the engine has a minimum: refused by name, never
// ignored). Engine and backend settings: every key of rollout/engine_options_io.h as a flag
// (tools/engine_flags.h), e.g. --speculation-mode, --drafter-min-prob, --deterministic,
// --trajectory-log.
//
// Exit codes: 0 ok, 2 bad input (flags, files, token ids, history lines, checkpoint), 1 anything
// else.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <memory>
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
#include "tools/cli_flags.h"
#include "tools/cli_main.h"
#include "tools/engine_flags.h"
#include "tools/request_flags.h"
#include "rollout/engine.h"
#include "rollout/prompts_jsonl.h"
#include "rollout/rollout_jsonl.h"

namespace {

using longtail::tools::InputError;

namespace po = boost::program_options;
namespace lp = longtail::policy;
namespace lr = longtail::rollout;

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
  float min_p = 0.0f;
  int min_tokens = 0;  // stop tokens cannot end a response before this many tokens
  uint64_t seed = 0;
  std::optional<std::vector<int32_t>> stop_tokens;  // --stop-token: replace the checkpoint's eos ids
  std::vector<int32_t> stop_token_ids;               // --stop-token-ids: added to them (vLLM's rule)
  bool ignore_eos = false;                           // the eos ids do not end a response
  bool verbose = false;
  // Engine, speculation and backend: every key of rollout/engine_options_io.h (tools/engine_flags.h).
  longtail::rollout::EngineSettings settings;
  std::string history_file;
  std::vector<std::string> prompt_ids;  // --prompt-id, one per --prompt
  bool stats = false;
};

// One input record with where it came from, for messages.
struct Prompt {
  std::vector<int32_t> tokens;
  std::vector<int32_t> response;  // --score only
  std::string origin;             // "--prompt #2" or "file.jsonl:7"
  std::string prompt_id;          // links to --history rollouts; default: the prompt's index
};

// The request of one prompt as the flags ask for it (what generate() submits, and what parse_args
// has the request validator check before the model loads).
lr::GroupRequest request_of(const Args& a, std::string group_id, std::vector<int32_t> prompt) {
  lr::GroupRequest g;
  g.group_id = std::move(group_id);
  g.prompt_tokens = std::move(prompt);
  g.n = a.n;
  g.sampling.temperature = a.temperature;
  g.sampling.top_p = a.top_p;
  g.sampling.top_k = a.top_k;
  g.sampling.min_p = a.min_p;
  g.sampling.min_tokens = a.min_tokens;
  g.sampling.seed = a.seed;
  g.max_new_tokens = a.max_new_tokens;
  if (a.stop_tokens) g.stop_tokens = *a.stop_tokens;
  g.stop_token_ids = a.stop_token_ids;
  g.ignore_eos = a.ignore_eos;
  return g;
}

std::optional<Args> parse_args(int argc, char** argv) {
  Args a;
  std::vector<int64_t> stops, extra_stops;
  // The older spellings of engine keys stay, with their defaults from the table.
  std::vector<longtail::tools::FlagAlias> aliases = longtail::tools::common_engine_aliases();
  aliases.push_back({"speculation", "speculation.enabled", "",
                     "on | off: speculative decoding from the drafter's history (never changes the output)"});
  aliases.push_back({"budget-policy", "speculation.mode", "",
                     "das (length-aware draft budgets) | fixed (--max-draft for every sequence) | off"});
  aliases.push_back({"max-draft", "speculation.max_budget", "", "draft tokens per sequence per step, at most"});
  aliases.push_back({"history-window", "drafter.window_rounds", "",
                     "drafter history kept for this many rounds (the history's \"step\" values)"});
  // One round holding every prompt: round_groups and overprovision are this tool's to set.
  const longtail::tools::EngineFlags engine_flags(aliases, {}, {"round_groups", "overprovision"});
  po::options_description desc("longtail-generate options");
  desc.add_options()
      ("help,h", "show this help")
      ("model", po::value(&a.model)->required(), "checkpoint directory (HF config.json + safetensors)")
      ("prompt", po::value(&a.prompt_flags), "prompt token ids, comma-separated (repeatable)")
      ("prompts", po::value(&a.prompts_file),
       "JSONL file, one {\"prompt_tokens\": [...], \"prompt_id\"?: ...} per line")
      ("prompt-id", po::value(&a.prompt_ids),
       "id linking a --prompt to --history rollouts (repeatable, one per --prompt, in order; "
       "default: the prompt's index)")
      ("score", po::value(&a.score_file),
       "JSONL file of {\"prompt_tokens\", \"response_tokens\"}: print teacher-forced logprobs instead")
      ("n", po::value(&a.n)->default_value(1), "samples per prompt")
      ("max-tokens", po::value<int>()->default_value(a.max_new_tokens), "tokens to generate at most (vLLM's name)")
      ("max-new-tokens", po::value<int>(), "same as --max-tokens")
      ("min-tokens", po::value(&a.min_tokens)->default_value(0),
       "response tokens before a stop token (eos or --stop-token-ids) may end a response, 0 = off (vLLM's "
       "min_tokens; at most --max-tokens)")
      ("temperature", po::value(&a.temperature)->default_value(1.0f), "0 = greedy")
      ("top-p", po::value(&a.top_p)->default_value(1.0f), "nucleus cut, 1 = none")
      ("top-k", po::value(&a.top_k)->default_value(0), "top-k cut, 0 or -1 = none")
      ("min-p", po::value(&a.min_p)->default_value(0.0f),
       "drop tokens less likely than this x the most likely, 0 = off")
      ("seed", po::value(&a.seed)->default_value(0), "run seed")
      ("stop-token-ids", po::value(&extra_stops)->multitoken(),
       "stop token ids added to the checkpoint's eos ids (vLLM's rule; repeatable)")
      ("ignore-eos", po::bool_switch(&a.ignore_eos),
       "the checkpoint's eos ids do not end a response (--stop-token-ids still do; vLLM's ignore_eos)")
      ("stop-token", po::value(&stops),
       "stop token id replacing the checkpoint's eos ids (repeatable; --stop-token-ids adds instead)")
      ("history", po::value(&a.history_file),
       "JSONL of earlier rollouts {\"prompt_id\", \"sample\", \"step\"?, \"prompt_tokens\", "
       "\"response_tokens\"} (the replay tool's format) loaded into the drafter's history")
      ("stats", po::bool_switch(&a.stats),
       "print a last JSON line {\"forward_passes\", \"tokens\", \"drafted_tokens\", \"accepted_tokens\"}")
      ("verbose,v", po::bool_switch(&a.verbose), "log loading details to stderr");
  desc.add(engine_flags.options(a.settings));
  const auto parsed = longtail::tools::parse_flags(argc, argv, desc,
                                                   "Usage: longtail-generate --model DIR (--prompt 1,2,3 ... | "
                                                   "--prompts FILE.jsonl | --score FILE.jsonl) [options]\n");
  if (!parsed) return std::nullopt;
  const po::variables_map& vm = *parsed;
  const int sources = (a.prompt_flags.empty() ? 0 : 1) + (a.prompts_file.empty() ? 0 : 1) +
                      (a.score_file.empty() ? 0 : 1);
  if (sources != 1) throw InputError("give exactly one of --prompt, --prompts or --score");
  if (vm.count("max-new-tokens") && !vm["max-tokens"].defaulted()) {
    throw InputError("give --max-tokens or its alias --max-new-tokens, not both");
  }
  a.max_new_tokens = vm.count("max-new-tokens") ? vm["max-new-tokens"].as<int>() : vm["max-tokens"].as<int>();
  if (a.max_new_tokens < 0) throw InputError("--max-tokens must be >= 0");
  if (a.top_k < -1) throw InputError("--top-k must be >= -1 (0 or -1 = off), got " + std::to_string(a.top_k));
  if (a.top_k == -1) a.top_k = 0;  // vLLM spells "off" as -1
  // vLLM's min_p is in [0, 1]; the validator reads a negative one as off, this flag refuses it.
  if (!(a.min_p >= 0)) throw InputError("--min-p must be in [0, 1] (0 = off)");
  engine_flags.apply(vm, a.settings);
  if (!a.prompt_ids.empty() && a.prompt_ids.size() != a.prompt_flags.size()) {
    throw InputError("--prompt-id given " + std::to_string(a.prompt_ids.size()) + " times for " +
                     std::to_string(a.prompt_flags.size()) + " --prompt (give one per --prompt, or none)");
  }
  if (!a.score_file.empty() && (!a.history_file.empty() || a.stats)) {
    throw InputError("--history and --stats apply to generation, not to --score");
  }
  auto token_id = [](const char* flag, int64_t s) {
    if (s < 0 || s > INT32_MAX) throw InputError(std::string(flag) + " " + std::to_string(s) + " is not a token id");
    return static_cast<int32_t>(s);
  };
  if (vm.count("stop-token")) {
    a.stop_tokens.emplace();
    for (int64_t s : stops) a.stop_tokens->push_back(token_id("--stop-token", s));
  }
  for (int64_t s : extra_stops) a.stop_token_ids.push_back(token_id("--stop-token-ids", s));
  // The ranges of the request flags are the request validator's. --max-tokens 0 is this tool's own
  // case (nothing to generate), so the check asks for one token.
  Args one = a;
  one.max_new_tokens = std::max(a.max_new_tokens, 1);
  longtail::tools::check_request_flags(request_of(one, "flags", {0}),
                                       {{"n", "--n"},
                                        {"max_new_tokens", "--max-tokens"},
                                        {"sampling.temperature", "--temperature"},
                                        {"sampling.top_p", "--top-p"},
                                        {"sampling.min_p", "--min-p"},
                                        {"sampling.min_tokens", "--min-tokens"}});
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

// A --prompts or --score file (rollout/prompts_jsonl.h); a line without "prompt_id" is linked to
// history by its index.
std::vector<Prompt> read_prompt_file(const std::string& path, lr::Responses responses) {
  std::vector<lr::PromptLine> lines;
  try {
    lines = lr::read_prompts_jsonl(path, responses);
  } catch (const lr::PromptFormatError& e) {
    throw InputError(e.what());
  }
  std::vector<Prompt> out;
  for (lr::PromptLine& l : lines) {
    const std::string id = l.prompt_id.value_or(std::to_string(out.size()));
    out.push_back({std::move(l.prompt_tokens), std::move(l.response_tokens), path + ":" + std::to_string(l.source_line), id});
  }
  return out;
}

std::vector<Prompt> read_inputs(const Args& a) {
  if (!a.score_file.empty()) return read_prompt_file(a.score_file, lr::Responses::kRequired);
  if (!a.prompts_file.empty()) return read_prompt_file(a.prompts_file, lr::Responses::kIgnored);
  std::vector<Prompt> out;
  for (size_t i = 0; i < a.prompt_flags.size(); ++i) {
    const std::string origin = "--prompt #" + std::to_string(i + 1);
    out.push_back({parse_id_list(a.prompt_flags[i], origin), {}, origin,
                   a.prompt_ids.empty() ? std::to_string(i) : a.prompt_ids[i]});
  }
  return out;
}

void check_vocab(const std::vector<int32_t>& ids, int32_t vocab, const std::string& origin, const char* what) {
  if (const std::string problem = lr::vocabulary_problem(ids, vocab, what); !problem.empty()) {
    throw InputError(origin + ": " + problem);
  }
}

// The --history file (rollout JSONL, rollout/rollout_jsonl.h), checked against the vocabulary so
// that a bad token is reported with its line rather than drafted into a forward.
std::vector<lr::RecordedRollout> read_history(const std::string& path, int32_t vocab) {
  std::vector<lr::RecordedRollout> out;
  try {
    out = lr::read_rollout_jsonl(path);
  } catch (const lr::RolloutFormatError& e) {
    throw InputError(e.what());
  }
  for (const lr::RecordedRollout& r : out) {
    const std::string origin = path + ":" + std::to_string(r.source_line);
    check_vocab(r.prompt_tokens, vocab, origin, "prompt");
    check_vocab(r.response_tokens, vocab, origin, "response");
  }
  return out;
}

const char* finish_name(lr::FinishReason r) {
  // The context limit reads "length", as the plain decode loop always reported it.
  return r == lr::FinishReason::kContext ? "length" : lr::finish_reason_name(r);
}

struct Generated {
  std::vector<lr::Trajectory> trajectories;  // indexed prompt_index * n + sample
  lr::EngineStats stats;
};

// Runs every prompt through the engine as one round.
Generated generate(const Args& a, const std::vector<Prompt>& inputs, std::unique_ptr<lp::Backend> backend) {
  const lp::ModelConfig cfg = backend->config();
  std::vector<lr::RecordedRollout> history;
  if (!a.history_file.empty()) history = read_history(a.history_file, cfg.vocab_size);

  std::vector<lr::Trajectory> results(inputs.size() * static_cast<size_t>(a.n));
  if (a.max_new_tokens == 0) {  // nothing to generate; the engine wants at least one token
    for (auto& t : results) t.finish_reason = lr::FinishReason::kLength;
    return {std::move(results), {}};
  }

  lr::EngineOptions eo = a.settings.engine;
  eo.round_groups = 0;  // one round holding every prompt
  const bool speculation = eo.budgets.mode != longtail::drafter::BudgetMode::kOff && eo.budgets.max_budget > 0;
  lr::Engine engine(std::move(backend), eo);
  for (const lr::RecordedRollout& h : history) {
    // A line without "step" is history of round 0.
    engine.add_history(h.prompt_id, h.prompt_tokens, h.response_tokens, h.step.value_or(0));
  }
  spdlog::info("generate: {} prompts x {} samples, speculation {}, {} history rollouts", inputs.size(),
               a.n, speculation ? "on" : "off", history.size());

  for (size_t p = 0; p < inputs.size(); ++p) {
    lr::GroupRequest g = request_of(a, std::to_string(p), inputs[p].tokens);  // the id finds its prompt_index
    g.prompt_id = inputs[p].prompt_id;
    g.sample_key = 1 + static_cast<uint64_t>(p) * static_cast<uint64_t>(a.n);
    try {
      engine.submit(std::move(g));
    } catch (const lr::InvalidRequest& e) {
      throw InputError(inputs[p].origin + ": " + e.what());
    }
  }

  std::vector<bool> filled(results.size(), false);
  auto collect = [&](lr::RoundBatch& batch) {
    for (lr::Trajectory& t : batch.trajectories) {
      const size_t p = std::stoull(t.group_id);
      const size_t slot = p * static_cast<size_t>(a.n) + static_cast<size_t>(t.sample_index);
      if (p >= inputs.size() || t.sample_index < 0 || t.sample_index >= a.n || filled[slot]) {
        throw std::runtime_error("engine returned an unexpected trajectory (group '" + t.group_id +
                                 "', sample " + std::to_string(t.sample_index) + ")");
      }
      if (t.finish_reason == lr::FinishReason::kAborted) {
        spdlog::warn("prompt {} sample {} was aborted: it does not fit the KV cache", p, t.sample_index);
      }
      filled[slot] = true;
      results[slot] = std::move(t);
    }
  };
  while (!engine.idle()) {
    if (auto batch = engine.step()) collect(*batch);
  }
  if (auto batch = engine.flush_round()) collect(*batch);
  for (size_t i = 0; i < filled.size(); ++i) {
    if (!filled[i]) {
      throw std::runtime_error("engine finished without prompt " + std::to_string(i / a.n) + " sample " +
                               std::to_string(i % a.n));
    }
  }
  return {std::move(results), engine.stats()};
}

void print_line(const nlohmann::ordered_json& j) {
  std::cout << j.dump() << '\n';
}

int run(const Args& a) {
  const std::vector<Prompt> inputs = read_inputs(a);
  std::unique_ptr<lp::Backend> backend;
  try {
    backend = longtail::tools::make_engine_backend(a.model, a.settings.backend);
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

  check_vocab(a.stop_tokens.value_or(std::vector<int32_t>{}), cfg.vocab_size, "--stop-token", "stop");
  check_vocab(a.stop_token_ids, cfg.vocab_size, "--stop-token-ids", "stop");
  const Generated gen = generate(a, inputs, std::move(backend));
  const std::vector<lr::Trajectory>& results = gen.trajectories;
  for (size_t r = 0; r < results.size(); ++r) {
    print_line({{"prompt_index", r / a.n},
                {"sample", r % a.n},
                {"tokens", results[r].response_tokens},
                {"logprobs", results[r].behaviour_logprobs},
                {"finish_reason", finish_name(results[r].finish_reason)}});
  }
  if (a.stats) {
    print_line({{"forward_passes", gen.stats.forward_passes},
                {"tokens", gen.stats.tokens_generated},
                {"drafted_tokens", gen.stats.tokens_drafted},
                {"accepted_tokens", gen.stats.tokens_accepted}});
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return longtail::tools::cli_main("longtail-generate", argc, argv, parse_args, run);
}
