// longtail-demo: the main job in one command. Runs the same RL-like rollout workload through the
// rollout engine in up to three modes — speculation off (baseline), speculation on with DAS
// length-aware budgets, and DAS + partial rollouts (APRIL) — on the bundled random-weight checkpoint
// and prints what each mode cost (tokens/s, forward passes, tokens per forward, acceptance, response
// lengths, round makespans, off-policy share), a sample trajectory, and whether every trajectory is
// identical across modes (speculation and partial rollouts must never change a token or logprob).
//
// Workload: R rounds x G prompt groups x n samples. The G prompts are synthetic token ids drawn from
// a fixed generator seeded by --seed, and the same G prompts recur every round (prompt ids p0..pG-1),
// as a prompt does across epochs of RL training: earlier rounds' rollouts are the drafter's history.
// All R*G groups are submitted up front in round-major order, so every mode gives each sample the
// same RNG uid (the engine numbers sequences in submission order) and hence the same tokens. After
// each round's batch the weights are "updated" (the same checkpoint reloaded as policy version r+1),
// as a trainer would: sequences carried over by partial rollouts are re-prefilled and their older
// tokens count as off-policy.
//
// Engine and backend settings: every key of rollout/engine_options_io.h as a flag
// (tools/engine_flags.h; the modes set round_groups, overprovision and whether speculation is on).
// The modes run through tools/mode_comparison.h, as longtail-bench-rounds' do; --trajectory-log
// PATH writes one log per mode, PATH.<mode>.
//
// Exit codes: 0 ok, 1 trajectories differ between modes or an internal failure, 2 bad input.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include <boost/program_options.hpp>
#include <nlohmann/json.hpp>
#include <spdlog/fmt/fmt.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "drafter/speculation_policy.h"
#include "policy/backend.h"
#include "policy/checkpoint.h"
#include "rollout/engine.h"
#include "rollout/prompts_jsonl.h"
#include "tools/cli_flags.h"
#include "tools/cli_main.h"
#include "tools/engine_flags.h"
#include "tools/mode_comparison.h"
#include "tools/request_flags.h"

namespace {

using longtail::tools::InputError;

namespace po = boost::program_options;
namespace fs = std::filesystem;
namespace lp = longtail::policy;
namespace lr = longtail::rollout;
using ojson = nlohmann::ordered_json;
using longtail::tools::Mode;
using longtail::tools::ModeRun;

struct Args {
  std::string model;
  int rounds = 3, groups = 4, samples = 4, max_new_tokens = 384, prompt_len = 16;
  // Low next to 1, but this random-weight model's logits are flat (log p ~ -6 at T = 0.6): at 0.1
  // it samples with variety yet falls into loops now and then, the recurring structure to draft.
  float temperature = 0.1f, top_p = 1.0f;
  uint64_t seed = 1;
  int stop_modulus = 128;      // also stop at ids that are multiples of this (0 = eos only)
  double overprovision = 2.0;  // APRIL f for the third mode; 1 = skip that mode
  lr::EngineSettings settings;  // engine and backend flags (the modes override a few keys)
  bool json = false, verbose = false;
  std::string prompts_file;    // a prompt file (prompts_jsonl.h) instead of synthetic prompts, one group a line
  std::string responses_file;  // the baseline's trajectories as rollout JSONL, for a task checker
};

// The bundled checkpoint from the repository root, else from the source tree this was built from.
std::string default_model() {
  const fs::path local = "configs/models/tiny-qwen3";
  if (fs::exists(local / "config.json")) return local.string();
  return (fs::path(LONGTAIL_SOURCE_DIR) / "configs/models/tiny-qwen3").string();
}

// A group as the flags ask for it (what requests() submits, and what parse_args has the request
// validator check before the model loads).
lr::GroupRequest request_of(const Args& a, std::string group_id, std::vector<int32_t> prompt) {
  lr::GroupRequest g;
  g.group_id = std::move(group_id);
  g.prompt_tokens = std::move(prompt);
  g.n = a.samples;
  g.sampling.temperature = a.temperature;
  g.sampling.top_p = a.top_p;
  g.sampling.seed = a.seed;
  g.max_new_tokens = a.max_new_tokens;
  return g;
}

std::optional<Args> parse_args(int argc, char** argv) {
  Args a;
  std::vector<longtail::tools::FlagAlias> aliases = longtail::tools::common_engine_aliases();
  aliases.push_back({"max-draft", "speculation.max_budget", "", "DAS budget of the long class"});
  aliases.push_back({"refit-cost-model", "speculation.refit_cost_model", "true",
                     "DAS caps drafts with a step cost model refitted from this machine's forward times "
                     "(default: the GPU-class model of configs/cost_model.yaml)"});
  // The modes decide these: one round of --groups groups, speculation off or on, overprovision f.
  const longtail::tools::EngineFlags engine_flags(aliases, {}, {"round_groups", "overprovision", "speculation.enabled"});
  po::options_description desc("longtail-demo options");
  desc.add_options()
      ("help,h", "show this help")
      ("model", po::value(&a.model)->default_value(default_model()), "checkpoint directory")
      ("rounds", po::value(&a.rounds)->default_value(a.rounds), "training rounds (batches)")
      ("groups", po::value(&a.groups)->default_value(a.groups), "prompt groups per round")
      ("samples", po::value(&a.samples)->default_value(a.samples), "samples per prompt group")
      ("max-new-tokens", po::value(&a.max_new_tokens)->default_value(a.max_new_tokens),
       "response length cap")
      ("prompt-len", po::value(&a.prompt_len)->default_value(a.prompt_len), "synthetic prompt length")
      ("temperature", po::value(&a.temperature)->default_value(a.temperature),
       "sampling temperature (moderate: the random-weight model then repeats itself now and then)")
      ("top-p", po::value(&a.top_p)->default_value(a.top_p), "nucleus cut, 1 = none")
      ("seed", po::value(&a.seed)->default_value(a.seed), "sampling seed and prompt generator seed")
      ("stop-modulus", po::value(&a.stop_modulus)->default_value(a.stop_modulus),
       "end a response at the eos id or at any id that is a multiple of this (0 = eos only)")
      ("overprovision", po::value(&a.overprovision)->default_value(a.overprovision),
       "partial rollouts: groups kept in flight per round group (f); 1 skips that mode")
      ("json", po::bool_switch(&a.json), "print one JSON object instead of the summary")
      ("prompts", po::value(&a.prompts_file),
       "JSONL prompt file (rollout/prompts_jsonl.h: prompt_tokens per line, e.g. from python -m examples.task "
       "prompts): one group per line instead of --groups synthetic prompts")
      ("responses", po::value(&a.responses_file),
       "write every trajectory of the first mode here as rollout JSONL (step = round), for a task checker")
      ("verbose,v", po::bool_switch(&a.verbose), "engine logs (round ends) on stderr");
  desc.add(engine_flags.options(a.settings));
  const auto parsed = longtail::tools::parse_flags(argc, argv, desc, "Usage: longtail-demo [options]\n");
  if (!parsed) return std::nullopt;
  const po::variables_map& vm = *parsed;
  auto in_range = [](const char* flag, int v, int lo, int hi) {
    if (v < lo || v > hi) {
      throw InputError(fmt::format("--{} must be in [{}, {}], got {}", flag, lo, hi, v));
    }
  };
  in_range("rounds", a.rounds, 1, 100);
  in_range("groups", a.groups, 1, 256);
  in_range("samples", a.samples, 1, 64);
  in_range("max-new-tokens", a.max_new_tokens, 1, 1 << 20);
  in_range("prompt-len", a.prompt_len, 1, 1 << 20);
  in_range("stop-modulus", a.stop_modulus, 0, 1 << 20);
  longtail::tools::check_request_flags(request_of(a, "flags", {3}),
                                       {{"sampling.temperature", "--temperature"}, {"sampling.top_p", "--top-p"}});
  if (!(a.overprovision >= 1) || !std::isfinite(a.overprovision) || a.overprovision > 16) {
    throw InputError("--overprovision must be in [1, 16]");
  }
  engine_flags.apply(vm, a.settings);
  a.settings.engine.round_groups = a.groups;
  return a;
}

// One trajectory's identity across modes: (round, group, sample), from its group id "r<R>-g<G>".
using Key = std::tuple<int, int, int>;
Key key_of(const lr::Trajectory& t) {
  int r = -1, g = -1;
  if (std::sscanf(t.group_id.c_str(), "r%d-g%d", &r, &g) != 2) {
    throw std::runtime_error("engine returned an unknown group '" + t.group_id + "'");
  }
  return {r, g, t.sample_index};
}

std::vector<std::vector<int32_t>> synthetic_prompts(const Args& a, int32_t vocab) {
  // mt19937_64's output sequence is fixed by the standard, so prompts are the same everywhere.
  std::mt19937_64 gen(a.seed * 0x9E3779B97F4A7C15ull + 12345);
  std::vector<std::vector<int32_t>> prompts(a.groups);
  const uint64_t span = static_cast<uint64_t>(std::max(vocab - 3, 1));
  for (auto& p : prompts) {
    for (int i = 0; i < a.prompt_len; ++i) p.push_back(3 + static_cast<int32_t>(gen() % span));
  }
  return prompts;
}

void progress(const Mode& mode, int done, int total) {
  if (!isatty(STDERR_FILENO)) return;
  std::cerr << "\r  " << mode.name << ": round " << done << "/" << total << "   " << (done == total ? "\n" : "")
            << std::flush;
}

// A random-weight model almost never samples its eos id, so every response would run to the cap.
// Ending a response also at every multiple of --stop-modulus (about one token in that many at a
// flat distribution) gives roughly geometric lengths; a response that falls into a loop of
// non-stop tokens runs to the cap: the long tail of real rollouts, and where drafting pays most.
std::vector<int32_t> stop_tokens(const Args& a, const lp::ModelConfig& cfg) {
  std::vector<int32_t> stops = cfg.eos_token_ids;
  if (a.stop_modulus > 0) {
    for (int32_t t = a.stop_modulus; t < cfg.vocab_size; t += a.stop_modulus) stops.push_back(t);
  }
  return stops;
}

// The groups of every round, submitted up front in round-major order.
std::vector<lr::GroupRequest> requests(const Args& a, const std::vector<std::vector<int32_t>>& prompts,
                                       const std::vector<int32_t>& stops) {
  std::vector<lr::GroupRequest> out;
  for (int r = 0; r < a.rounds; ++r) {
    for (int g = 0; g < a.groups; ++g) {
      lr::GroupRequest req = request_of(a, fmt::format("r{}-g{}", r, g), prompts[g]);
      req.prompt_id = fmt::format("p{}", g);
      req.stop_tokens = stops;
      out.push_back(std::move(req));
    }
  }
  return out;
}

ModeRun run_mode(const Args& a, const Mode& mode, const std::vector<lr::GroupRequest>& groups) {
  longtail::tools::ModeRunOptions o;
  o.model = a.model;
  o.rounds = a.rounds;
  o.update_weights = true;  // the trainer's weight update after each batch (same weights, next version)
  o.progress = progress;
  ModeRun res = longtail::tools::run_mode(mode, a.settings, groups, o);
  for (const auto& [uid, t] : res.trajectories) key_of(t);  // every trajectory is one of ours
  const size_t expected = static_cast<size_t>(a.rounds) * a.groups * a.samples;
  if (res.trajectories.size() != expected) {
    throw std::runtime_error(fmt::format("mode {}: {} trajectories emitted, expected {}", mode.name,
                                         res.trajectories.size(), expected));
  }
  return res;
}

// Summary numbers of one mode, shared by the table and the JSON.
struct Summary {
  int64_t tokens = 0, forwards = 0, drafted = 0, accepted = 0, verified = 0;
  double projected_s = 0;  // the same forwards under the GPU-class step cost model
  double tokens_per_s = 0, tokens_per_forward = 0, acceptance = 0, off_policy_share = 0;
  int32_t len_min = 0, len_median = 0, len_max = 0;
};

Summary summarize(const ModeRun& m) {
  Summary s;
  std::vector<int32_t> lengths;
  for (const auto& [k, t] : m.trajectories) lengths.push_back(static_cast<int32_t>(t.response_tokens.size()));
  std::sort(lengths.begin(), lengths.end());
  double off_tokens = 0;
  for (const lr::RoundStats& r : m.rounds) {
    s.tokens += r.response_tokens;
    s.forwards += r.forward_passes;
    s.drafted += r.tokens_drafted;
    s.accepted += r.tokens_accepted;
    s.verified += r.tokens_verified;
    off_tokens += r.off_policy_token_share * static_cast<double>(r.response_tokens);
  }
  const longtail::drafter::StepCostModel cost;  // configs/cost_model.yaml: 7B-class model, H100
  s.projected_s = (cost.base_us * static_cast<double>(s.forwards) + cost.per_token_us * static_cast<double>(s.verified)) * 1e-6;
  s.tokens_per_s = m.wall_s > 0 ? s.tokens / m.wall_s : 0;
  s.tokens_per_forward = s.forwards ? double(s.tokens) / s.forwards : 0;
  s.acceptance = s.drafted ? double(s.accepted) / s.drafted : 0;
  s.off_policy_share = s.tokens ? off_tokens / s.tokens : 0;
  if (!lengths.empty()) {
    s.len_min = lengths.front();
    s.len_median = lengths[lengths.size() / 2];
    s.len_max = lengths.back();
  }
  return s;
}

// A float flag as the decimal the user typed (0.1, not 0.10000000149011612).
double as_decimal(float v) { return std::round(static_cast<double>(v) * 1e6) / 1e6; }

ojson to_json(const Args& a, const std::vector<ModeRun>& modes, const std::vector<int64_t>& diffs) {
  ojson j;
  j["config"] = {{"model", a.model},         {"rounds", a.rounds},
                 {"groups", a.groups},       {"samples", a.samples},
                 {"max_new_tokens", a.max_new_tokens}, {"prompt_len", a.prompt_len},
                 {"temperature", as_decimal(a.temperature)}, {"top_p", as_decimal(a.top_p)},
                 {"seed", a.seed},           {"max_draft", a.settings.engine.budgets.max_budget},
                 {"stop_modulus", a.stop_modulus},     {"overprovision", a.overprovision},
                 {"refit_cost_model", a.settings.engine.refit_cost_model},
                 {"deterministic", a.settings.backend.deterministic}};
  j["modes"] = ojson::array();
  for (const ModeRun& m : modes) {
    const Summary s = summarize(m);
    ojson rounds = ojson::array();
    for (const lr::RoundStats& r : m.rounds) {
      rounds.push_back(longtail::tools::stats_json<ojson>(r));
    }
    j["modes"].push_back({{"name", m.mode.name},
                          {"speculation", m.mode.speculation},
                          {"overprovision", m.mode.overprovision},
                          {"wall_s", m.wall_s},
                          {"response_tokens", s.tokens},
                          {"tokens_per_s", s.tokens_per_s},
                          {"forward_passes", s.forwards},
                          {"tokens_per_forward", s.tokens_per_forward},
                          {"drafted_tokens", s.drafted},
                          {"accepted_tokens", s.accepted},
                          {"verified_tokens", s.verified},
                          {"projected_gpu_s", s.projected_s},
                          {"acceptance_rate", s.acceptance},
                          {"off_policy_token_share", s.off_policy_share},
                          {"response_length", {{"min", s.len_min}, {"median", s.len_median}, {"max", s.len_max}}},
                          {"rounds", rounds}});
  }
  int64_t total = 0;
  for (int64_t d : diffs) total += d;
  j["identical"] = total == 0;
  j["mismatched_trajectories"] = total;
  const lr::Trajectory& t = modes.front().trajectories.begin()->second;
  const size_t k = std::min<size_t>(24, t.response_tokens.size());
  j["sample"] = {{"round", 0}, {"group", 0}, {"sample", 0},
                 {"response_length", t.response_tokens.size()},
                 {"tokens", std::vector<int32_t>(t.response_tokens.begin(), t.response_tokens.begin() + k)},
                 {"logprobs", std::vector<float>(t.behaviour_logprobs.begin(), t.behaviour_logprobs.begin() + k)}};
  return j;
}

void print_summary(const Args& a, const std::vector<ModeRun>& modes, const std::vector<int64_t>& diffs,
                   const std::string& device) {
  std::ostringstream o;
  o << fmt::format("longtail demo: {} rounds x {} prompt groups x {} samples, up to {} new tokens, T = {}, "
                   "seed {}\n",
                   a.rounds, a.groups, a.samples, a.max_new_tokens, a.temperature, a.seed);
  o << fmt::format("model {} on {}\n\n", a.model, device);
  const Summary base = summarize(modes.front());
  o << fmt::format("{:<22}{:>10}{:>9}{:>10}{:>9}{:>9}{:>11}{:>9}{:>12}{:>21}\n", "mode", "wall s", "vs off",
                   "tokens/s", "tokens", "forwards", "tok/fwd", "accept", "off-policy", "length min/med/max");
  for (const ModeRun& m : modes) {
    const Summary s = summarize(m);
    o << fmt::format("{:<22}{:>10.2f}{:>8.2f}x{:>10.0f}{:>9}{:>9}{:>11.2f}{:>9}{:>11.1f}%{:>21}\n", m.mode.name,
                     m.wall_s, modes.front().wall_s > 0 ? m.wall_s / modes.front().wall_s : 0, s.tokens_per_s,
                     s.tokens, s.forwards, s.tokens_per_forward,
                     s.drafted ? fmt::format("{:.2f}", s.acceptance) : std::string("-"),
                     100 * s.off_policy_share, fmt::format("{}/{}/{}", s.len_min, s.len_median, s.len_max));
  }
  // CPU seconds price every verified token; a memory-bound GPU prices mostly the forward passes.
  const longtail::drafter::StepCostModel cost;
  o << fmt::format("\nthe same forwards on a GPU (step cost model {:g} us/forward + {:g} us/verified token, "
                   "a 7B-class model on an H100; projected, not measured):\n",
                   cost.base_us, cost.per_token_us);
  o << fmt::format("{:<22}{:>12}{:>10}{:>16}{:>15}{:>9}\n", "mode", "forwards", "vs off", "verified tokens",
                   "projected s", "vs off");
  for (const ModeRun& m : modes) {
    const Summary s = summarize(m);
    o << fmt::format("{:<22}{:>12}{:>9.2f}x{:>16}{:>15.2f}{:>8.2f}x\n", m.mode.name, s.forwards,
                     base.forwards ? double(s.forwards) / base.forwards : 0, s.verified, s.projected_s,
                     base.projected_s > 0 ? s.projected_s / base.projected_s : 0);
  }
  o << "\nround makespans (s, measured):\n";
  for (const ModeRun& m : modes) {
    o << fmt::format("  {:<20}", m.mode.name);
    for (const lr::RoundStats& r : m.rounds) {
      o << fmt::format("  r{} {:.2f} ({} fwd{})", r.round, r.makespan_s, r.forward_passes,
                       r.carried_over ? fmt::format(", {} carried", r.carried_over) : std::string());
    }
    o << "\n";
  }
  const lr::Trajectory& t = modes.front().trajectories.begin()->second;
  const size_t k = std::min<size_t>(24, t.response_tokens.size());
  o << fmt::format("\nsample trajectory (round 0, group 0, sample 0; {} of {} tokens, {}):\n  token  ", k,
                   t.response_tokens.size(), lr::finish_reason_name(t.finish_reason));
  for (size_t i = 0; i < k; ++i) o << fmt::format("{:>7}", t.response_tokens[i]);
  o << "\n  logp   ";
  for (size_t i = 0; i < k; ++i) o << fmt::format("{:>7.2f}", t.behaviour_logprobs[i]);
  o << "\n\n";
  const size_t total = modes.front().trajectories.size();
  for (size_t i = 1; i < modes.size(); ++i) {
    o << fmt::format("trajectories {} vs off: {}\n", modes[i].mode.name,
                     diffs[i - 1] == 0
                         ? fmt::format("identical (all {} compared by round, group, sample: tokens, logprobs, "
                                       "finish reason)", total)
                         : fmt::format("{} of {} DIFFER", diffs[i - 1], total));
  }
  std::cout << o.str() << std::flush;
}

// Prompts of a --prompts file (rollout/prompts_jsonl.h), checked against the vocabulary.
std::vector<std::vector<int32_t>> file_prompts(const std::string& path, int32_t vocab) {
  std::vector<lr::PromptLine> lines;
  try {
    lines = lr::read_prompts_jsonl(path);
  } catch (const lr::PromptFormatError& e) {
    throw InputError(e.what());
  }
  std::vector<std::vector<int32_t>> out;
  for (lr::PromptLine& l : lines) {
    if (const std::string problem = lr::vocabulary_problem(l.prompt_tokens, vocab, "prompt"); !problem.empty()) {
      throw InputError(fmt::format("{}:{}: {}", path, l.source_line, problem));
    }
    out.push_back(std::move(l.prompt_tokens));
  }
  return out;
}

void write_responses(const std::string& path, const ModeRun& m, const std::vector<std::vector<int32_t>>& prompts) {
  std::ofstream out(path);
  for (const auto& [uid, t] : m.trajectories) {  // uid order is (round, group, sample) order
    const auto [r, g, s] = key_of(t);
    out << ojson{{"prompt_id", fmt::format("p{}", g)}, {"sample", s}, {"step", r}, {"prompt_tokens", prompts[g]},
                 {"response_tokens", t.response_tokens}, {"finish_reason", lr::finish_reason_name(t.finish_reason)}}
               .dump()
        << "\n";
  }
  if (!out) throw InputError(path + ": cannot write");
}

int run(const Args& args) {
  Args a = args;  // --prompts sets the group count
  std::vector<std::vector<int32_t>> prompts;
  std::vector<int32_t> stops;
  {
    std::unique_ptr<lp::Backend> probe;
    try {
      probe = longtail::tools::make_engine_backend(a.model, a.settings.backend);
    } catch (const lp::LoadError& e) {
      throw InputError(e.what());
    }
    if (a.prompts_file.empty()) {
      prompts = synthetic_prompts(a, probe->config().vocab_size);
    } else {
      prompts = file_prompts(a.prompts_file, probe->config().vocab_size);
      a.groups = static_cast<int>(prompts.size());
      a.prompt_len = 0;
      for (const auto& p : prompts) a.prompt_len = std::max(a.prompt_len, static_cast<int>(p.size()));
      a.settings.engine.round_groups = a.groups;
    }
    if (a.prompt_len + a.max_new_tokens > probe->config().max_position_embeddings) {
      throw InputError(fmt::format("--prompt-len + --max-new-tokens = {} exceeds the model's context of {}",
                                   a.prompt_len + a.max_new_tokens, probe->config().max_position_embeddings));
    }
    stops = stop_tokens(a, probe->config());
  }
  std::vector<Mode> modes = {{"off", false, 1.0}, {"das", true, 1.0}};
  if (a.overprovision > 1) modes.push_back({fmt::format("das+partial f={:g}", a.overprovision), true, a.overprovision});
  const std::vector<lr::GroupRequest> groups = requests(a, prompts, stops);
  std::vector<ModeRun> results;
  for (const Mode& m : modes) {
    results.push_back(run_mode(a, m, groups));
    spdlog::info("mode {}: {:.2f} s", m.name, results.back().wall_s);
  }
  if (!a.responses_file.empty()) write_responses(a.responses_file, results.front(), prompts);
  std::vector<int64_t> diffs;
  for (size_t i = 1; i < results.size(); ++i) diffs.push_back(longtail::tools::mismatches(results.front(), results[i]));
  const int threads = a.settings.backend.num_threads;
  const std::string device =
      a.settings.backend.kind == "cuda"
          ? fmt::format("CUDA backend (bf16), device {}{}", a.settings.backend.device,
                        a.settings.backend.deterministic ? ", deterministic" : "")
          : fmt::format("CPU backend (fp32), {} threads",
                        threads ? threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency())));
  if (a.json) {
    ojson j = to_json(a, results, diffs);
    j["device"] = device;
    std::cout << j.dump() << "\n";
  } else {
    print_summary(a, results, diffs, device);
  }
  for (int64_t d : diffs) {
    if (d != 0) {
      spdlog::error("speculation or partial rollouts changed {} trajectories", d);
      return 1;
    }
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return longtail::tools::cli_main("longtail-demo", argc, argv, parse_args, run);
}
