// longtail-bench-rounds: runs R rounds of G groups x n samples through the rollout engine on a
// checkpoint (CPU or CUDA backend) in three modes, measured in the same process and run:
//   off      : no speculation, synchronous rounds (the baseline)
//   das      : DAS speculation (suffix-automaton drafts, length-aware budgets), synchronous rounds
//   das+apr  : DAS + partial rollouts (APRIL, round_groups = G, overprovision f)
// and prints each round's makespan, tokens per forward and acceptance, with ratios to `off`.
// Prompts are synthetic, or come from a JSONL trace (--trace): then the run is trace-forced (the
// verify pass runs for real on the drafts, the emitted tokens are the recording's), round r of
// prompt p replays trace samples [r*n, r*n + n). Token ids beyond the model's vocabulary (Qwen ids
// on a tiny model) are mapped modulo the vocabulary. Trajectories of every mode are compared with
// `off` by uid: speculation and partial rollouts must not change a single token.
// Engine and backend settings: every key of rollout/engine_options_io.h as a flag
// (tools/engine_flags.h), with this tool's older spellings as aliases (--budget, --max-running,
// --max-kv-tokens, --max-tokens-per-step, --token-trees, --refit-cost-model); the modes set
// round_groups, overprovision and whether speculation is on. The tool is trace-forced by purpose,
// so --backend also takes accounting (no model; needs --trace). --cost-model-entry NAME picks one
// model's constants from the --cost-model YAML's per_model map (the measured fit of that shape)
// instead of its step_cost (the largest model measured); the projected makespan uses the engine's
// step cost model. The modes run through tools/mode_comparison.h, as longtail-demo's do
// (--trajectory-log PATH: one log per mode, PATH.<mode>).
#include <boost/program_options.hpp>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "drafter/speculation_policy.h"
#include "policy/checkpoint.h"
#include "policy/model_config.h"
#include "rollout/engine.h"
#include "rollout/forced_trajectories.h"
#include "tools/cli_flags.h"
#include "tools/cli_main.h"
#include "tools/engine_flags.h"
#include "tools/mode_comparison.h"

namespace po = boost::program_options;
using namespace longtail;
using nlohmann::json;
using tools::Mode;
using tools::ModeRun;

namespace {

struct Config {
  std::string model, trace, cost_model, cost_model_entry;
  std::string steps_jsonl;  // every forward's StepStats, one JSON line each (empty: none)
  std::vector<std::string> modes = {"off", "das", "das+apr"};
  int32_t rounds = 3, groups = 4, n = 4, max_new_tokens = 128, prompt_len = 32;
  int32_t max_prompt_tokens = 64;
  int32_t vocab_modulo = 0;
  int32_t warm_history = 0;  // trace samples [0, warm_history) of each prompt preloaded as history
  double overprovision = 2.0, temperature = 1.0;
  uint64_t seed = 1;
  bool reload_weights = false, json_out = false;
  rollout::EngineSettings settings;  // engine and backend flags; budgets.cost also prices the projection
};

// Projected time of a round under the linear step cost model t = c_base + c_tok * tokens, summed
// over its forwards: what the measured forwards and verified tokens would cost on the device the
// model describes (the default constants describe a 7B-class model on an H100). The model's
// crossover and per-context terms need each forward's own counts, which a round's totals do not
// keep, so they are left out (and the text output says so when the model has them).
double projected_s(const drafter::StepCostModel& m, const longtail::rollout::RoundStats& s) {
  return (m.base_us * static_cast<double>(s.forward_passes) +
          m.per_token_us * static_cast<double>(s.tokens_verified)) * 1e-6;
}

std::vector<rollout::GroupRequest> build_requests(const Config& c, int32_t vocab,
                                                  const std::vector<rollout::RecordedRollout>* trace) {
  std::vector<rollout::GroupRequest> out;
  std::map<std::string, std::vector<int32_t>> prompt_of;
  std::vector<std::string> prompt_ids;
  std::map<std::string, int32_t> samples_of;
  if (trace) {
    for (const auto& r : *trace) {
      if (!prompt_of.count(r.prompt_id)) prompt_ids.push_back(r.prompt_id);
      auto p = r.prompt_tokens;
      if (static_cast<int32_t>(p.size()) > c.max_prompt_tokens) {
        p.erase(p.begin(), p.end() - c.max_prompt_tokens);
      }
      prompt_of[r.prompt_id] = p;
      samples_of[r.prompt_id] = std::max(samples_of[r.prompt_id], r.sample + 1);
    }
    std::vector<std::string> usable;
    for (const auto& p : prompt_ids) {
      if (samples_of[p] >= c.warm_history + c.rounds * c.n && !prompt_of[p].empty()) {
        usable.push_back(p);
      }
    }
    if (static_cast<int32_t>(usable.size()) < c.groups) {
      throw std::runtime_error("trace has only " + std::to_string(usable.size()) +
                               " prompts with >= warm-history + rounds * n = " +
                               std::to_string(c.warm_history + c.rounds * c.n) +
                               " samples; need --groups " + std::to_string(c.groups));
    }
    prompt_ids.assign(usable.begin(), usable.begin() + c.groups);
  } else {
    std::mt19937 rng(static_cast<uint32_t>(c.seed));
    for (int32_t g = 0; g < c.groups; ++g) {
      std::vector<int32_t> p(c.prompt_len);
      for (int32_t& t : p) t = static_cast<int32_t>(rng() % vocab);
      prompt_ids.push_back("prompt-" + std::to_string(g));
      prompt_of[prompt_ids.back()] = p;
    }
  }
  for (int32_t r = 0; r < c.rounds; ++r) {
    for (const std::string& pid : prompt_ids) {
      rollout::GroupRequest g;
      g.group_id = pid + "/round-" + std::to_string(r);
      g.prompt_id = pid;
      g.prompt_tokens = prompt_of[pid];
      g.n = c.n;
      g.sampling.temperature = static_cast<float>(c.temperature);
      g.sampling.seed = c.seed;
      g.max_new_tokens = c.max_new_tokens;
      g.trace_sample_offset = c.warm_history + r * c.n;
      out.push_back(std::move(g));
    }
  }
  return out;
}

template <typename T>
T median_of(std::vector<T> v) {
  if (v.empty()) return T{};
  std::nth_element(v.begin(), v.begin() + v.size() / 2, v.end());
  return v[v.size() / 2];
}

double sum_makespan(const ModeRun& r) {
  double s = 0;
  for (const auto& x : r.rounds) s += x.makespan_s;
  return s;
}

std::optional<Config> parse(int argc, char** argv) {
  Config c;
  std::string modes;
  std::vector<tools::FlagAlias> aliases = tools::common_engine_aliases();
  for (tools::FlagAlias& a : aliases) {
    if (a.flag == "backend") {
      a.help = "cpu | cuda | accounting (no model: the engine's counts of a --trace run, "
               "policy/accounting_backend.h) (same as --backend-kind)";
    }
  }
  aliases.push_back({"budget", "speculation.max_budget", "", "max draft tokens per sequence"});
  aliases.push_back({"max-tokens-per-step", "speculation.max_tokens_per_step", "",
                     "cap on verified tokens per step (0 = from the cost model)"});
  aliases.push_back({"refit-cost-model", "speculation.refit_cost_model", "true",
                     "refit the cost model from measured steps"});
  aliases.push_back({"token-trees", "speculation.token_trees", "",
                     "true: speculating modes verify token trees of up to --budget nodes (backends that support "
                     "them), false: chains"});
  aliases.push_back({"max-running", "max_running_sequences", "", "max running sequences"});
  aliases.push_back({"max-kv-tokens", "backend.max_kv_tokens", "", "CPU KV bound (0 = none)"});
  // The modes decide round_groups (G), overprovision (--overprovision for das+apr) and speculation;
  // --cost-model (+ --cost-model-entry) is this tool's spelling of speculation.cost_model.
  const tools::EngineFlags engine_flags(aliases, {},
                                        {"round_groups", "overprovision", "speculation.enabled", "speculation.cost_model"},
                                        rollout::OptionScope::kTraceForced);
  po::options_description desc("longtail-bench-rounds options");
  desc.add_options()("help,h", "show this help")("version", "print the version and exit")
      ("model", po::value(&c.model)->required(), "checkpoint directory")
      ("rounds,R", po::value(&c.rounds)->default_value(3), "rounds")
      ("groups,G", po::value(&c.groups)->default_value(4), "groups per round")
      ("n", po::value(&c.n)->default_value(4), "samples per group")
      ("max-new-tokens", po::value(&c.max_new_tokens)->default_value(128), "response cap")
      ("prompt-len", po::value(&c.prompt_len)->default_value(32), "synthetic prompt length")
      ("max-prompt-tokens", po::value(&c.max_prompt_tokens)->default_value(64),
       "trace prompts keep their last this many tokens")
      ("temperature", po::value(&c.temperature)->default_value(1.0), "sampling temperature")
      ("seed", po::value(&c.seed)->default_value(1), "sampling seed")
      ("trace", po::value(&c.trace), "JSONL trace: trace-forced run")
      ("warm-history", po::value(&c.warm_history)->default_value(0),
       "trace runs: preload samples [0, K) of each prompt as drafter history; rounds replay from K")
      ("vocab-modulo", po::value(&c.vocab_modulo)->default_value(0),
       "map trace ids modulo this (0 = the model's vocabulary when ids exceed it)")
      ("modes", po::value(&modes)->default_value("off,das,das+apr"), "comma-separated modes")
      ("cost-model", po::value(&c.cost_model),
       "cost model YAML (configs/cost_model*.yaml) for the budgets and the projection (speculation.cost_model)")
      ("cost-model-entry", po::value(&c.cost_model_entry),
       "use the YAML's per_model entry of this name (e.g. Qwen2.5-1.5B) instead of step_cost")
      ("overprovision", po::value(&c.overprovision)->default_value(2.0), "APRIL f of the das+apr mode")
      ("reload-weights", po::bool_switch(&c.reload_weights),
       "reload the checkpoint as a new version after every round (re-prefill cost)")
      ("json", po::bool_switch(&c.json_out), "print one JSON object")
      ("steps-jsonl", po::value(&c.steps_jsonl),
       "also write every forward's statistics to this file, one JSON object a line ({mode, step, "
       "sequences, tokens_verified, context_positions, token_trees, forward_us, ...}: "
       "rollout/types.h StepStats), the data scripts/fit_cost_model.py --steps fits real steps on");
  desc.add(engine_flags.options(c.settings));
  const auto vm = tools::parse_flags(argc, argv, desc);
  if (!vm) return std::nullopt;
  try {
    engine_flags.apply(*vm, c.settings);
    c.modes.clear();
    for (size_t pos = 0; pos <= modes.size();) {
      const size_t end = std::min(modes.find(',', pos), modes.size());
      const std::string m = modes.substr(pos, end - pos);
      if (m != "off" && m != "das" && m != "das+apr") {
        throw std::runtime_error("unknown mode '" + m + "' (off, das, das+apr)");
      }
      c.modes.push_back(m);
      pos = end + 1;
    }
    if (c.rounds < 1 || c.groups < 1 || c.n < 1) throw std::runtime_error("rounds, groups, n must be >= 1");
    if (c.warm_history < 0) throw std::runtime_error("--warm-history must be >= 0");
    if (c.settings.backend.kind == "accounting" && c.trace.empty()) {
      throw std::runtime_error("--backend accounting needs --trace");
    }
    if (c.warm_history > 0 && c.trace.empty()) throw std::runtime_error("--warm-history needs --trace");
    if (!c.cost_model_entry.empty() && c.cost_model.empty())
      throw std::runtime_error("--cost-model-entry needs --cost-model");
    if (!c.cost_model.empty()) {
      const std::string value = c.cost_model + (c.cost_model_entry.empty() ? "" : "#" + c.cost_model_entry);
      try {
        rollout::set_option(c.settings, "speculation.cost_model", value, rollout::OptionScope::kTraceForced);
      } catch (const rollout::OptionError& e) {
        throw std::runtime_error(std::string("--cost-model: ") + e.what());
      }
    }
  } catch (const std::exception& e) {
    throw tools::InputError(std::string(e.what()) + " (see --help)");
  }
  return c;
}

int run(const Config& c) {
  {
    // A checkpoint or trace that does not read is the user's input: exit 2 with its file and line.
    int32_t vocab = 0;
    std::vector<rollout::RecordedRollout> trace;
    rollout::ForcedTrajectories forced;
    try {
      vocab = policy::load_model_config(c.model).vocab_size;
      if (!c.trace.empty()) {
        int32_t modulo = c.vocab_modulo;
        if (modulo == 0) {
          for (const auto& r : rollout::load_trace_jsonl(c.trace)) {
            for (int32_t t : r.prompt_tokens) modulo = t >= vocab ? vocab : modulo;
            for (int32_t t : r.response_tokens) modulo = t >= vocab ? vocab : modulo;
          }
        }
        trace = rollout::load_trace_jsonl(c.trace, modulo);
        forced = rollout::forced_from_trace(trace);
      }
    } catch (const policy::LoadError& e) {
      throw tools::InputError(e.what());
    } catch (const rollout::RolloutFormatError& e) {
      throw tools::InputError(e.what());
    }
    const auto requests = build_requests(c, vocab, c.trace.empty() ? nullptr : &trace);
    rollout::EngineSettings settings = c.settings;
    settings.engine.round_groups = c.groups;
    settings.engine.forced_trajectories = forced;
    const drafter::StepCostModel& cost = settings.engine.budgets.cost;
    tools::ModeRunOptions o;
    o.model = c.model;
    o.rounds = c.rounds;
    o.update_weights = c.reload_weights;  // same weights: measures the re-prefill cost only
    if (c.warm_history > 0) {             // earlier "training steps" of the benchmarked prompts
      o.prepare = [&](rollout::Engine& e) {
        std::map<std::string, bool> used;
        for (const auto& g : requests) used[g.prompt_id] = true;
        for (const auto& r : trace) {
          if (used.count(r.prompt_id) && r.sample < c.warm_history) {
            auto p = r.prompt_tokens;
            if (static_cast<int32_t>(p.size()) > c.max_prompt_tokens) {
              p.erase(p.begin(), p.end() - c.max_prompt_tokens);
            }
            e.add_history(r.prompt_id, p, r.response_tokens, r.sample);
          }
        }
      };
    }
    o.progress = [&](const Mode& m, int32_t done, int32_t) {
      if (!c.json_out && done == 0) std::fprintf(stderr, "running mode %s...\n", m.name.c_str());
    };
    // Kept in memory and written at the end, so that the file costs the timed rounds nothing; opened
    // first, so that a path that cannot be written fails before the runs.
    std::vector<std::pair<std::string, rollout::StepStats>> steps;
    std::ofstream steps_file;
    if (!c.steps_jsonl.empty()) {
      steps_file.open(c.steps_jsonl);
      if (!steps_file) throw tools::InputError("--steps-jsonl: cannot write " + c.steps_jsonl);
      o.on_step = [&](const Mode& m, const rollout::StepStats& s) { steps.emplace_back(m.name, s); };
    }
    std::vector<ModeRun> results;
    for (const std::string& m : c.modes) {
      const Mode mode{m, m != "off", m == "das+apr" ? c.overprovision : 1.0};
      results.push_back(tools::run_mode(mode, settings, requests, o));
    }
    const ModeRun* base = nullptr;
    for (const auto& r : results) base = r.mode.name == "off" ? &r : base;
    for (const auto& [mode, s] : steps) {
      json line = tools::stats_json<json>(s);
      line["mode"] = mode;
      steps_file << line.dump() << '\n';
    }
    if (steps_file.is_open() && !steps_file.flush())
      throw std::runtime_error("--steps-jsonl: writing " + c.steps_jsonl + " failed");
    // Trace-forced, a forced token nobody verified has no logprob (NaN): compare where both scored it.
    const tools::LogprobRule logprob_rule =
        c.trace.empty() ? tools::LogprobRule::kBitwise : tools::LogprobRule::kWhereBothScored;

    json out;
    out["config"] = {{"model", c.model}, {"backend", c.settings.backend.kind},
                     {"deterministic", c.settings.backend.deterministic}, {"trace", c.trace},
                     {"rounds", c.rounds}, {"groups", c.groups}, {"n", c.n},
                     {"max_new_tokens", c.max_new_tokens}, {"temperature", c.temperature},
                     {"budget", c.settings.engine.budgets.max_budget},
                     {"max_tokens_per_step", c.settings.engine.budgets.max_tokens_per_step},
                     {"overprovision", c.overprovision}, {"reload_weights", c.reload_weights},
                {"warm_history", c.warm_history}, {"cost_model_entry", c.cost_model_entry}, {"token_trees", c.settings.engine.budgets.token_trees},
                {"cost_base_us", cost.base_us}, {"cost_per_token_us", cost.per_token_us}};
    out["modes"] = json::array();
    for (const auto& r : results) {
      json m;
      m["mode"] = r.mode.name;
      m["cuda_passes"] = {{"replayed", r.graph_replays}, {"graphs_captured", r.graphs_captured},
                          {"graphable_eager", r.graph_eager}, {"not_graphable", r.ungraphable},
                          {"capture_s", r.graph_capture_s}};
      m["rounds"] = json::array();
      for (const auto& s : r.rounds) {
        json round = tools::stats_json<json>(s);
        round["tokens_per_forward"] = s.forward_passes ? double(s.response_tokens) / s.forward_passes : 0.0;
        round["projected_s"] = projected_s(cost, s);
        m["rounds"].push_back(std::move(round));
      }
      double draft_s = 0, forward_s = 0, sample_s = 0;
      int64_t verified = 0;
      for (const auto& s : r.rounds) {
        draft_s += s.draft_s;
        forward_s += s.forward_s;
        sample_s += s.sample_s;
        verified += s.tokens_verified;
      }
      m["draft_s"] = draft_s;
      m["forward_s"] = forward_s;
      m["sample_s"] = sample_s;
      m["tokens_verified"] = verified;
      m["total_makespan_s"] = sum_makespan(r);
      double proj = 0;
      for (const auto& s : r.rounds) proj += projected_s(cost, s);
      m["projected_s"] = proj;
      m["wall_s"] = r.wall_s;
      const rollout::EngineStats& st = r.stats;
      m["response_tokens"] = st.tokens_generated;
      m["forward_passes"] = st.forward_passes;
      m["tokens_per_forward"] = st.forward_passes ? double(st.tokens_generated) / st.forward_passes : 0.0;
      m["tokens_drafted"] = st.tokens_drafted;
      m["tokens_accepted"] = st.tokens_accepted;
      m["acceptance_rate"] = st.tokens_drafted ? double(st.tokens_accepted) / st.tokens_drafted : 0.0;
      m["preemptions"] = st.preemptions;
      if (base) {
        double base_proj = 0;
        for (const auto& s : base->rounds) base_proj += projected_s(cost, s);
        m["projected_ratio_vs_off"] = proj / base_proj;
        m["makespan_ratio_vs_off"] = sum_makespan(r) / sum_makespan(*base);
        m["trajectories_differing_from_off"] = tools::mismatches(*base, r, logprob_rule);
        const tools::Divergence d = tools::divergence(*base, r);
        m["differing_fraction"] = d.sequences ? double(d.differing) / d.sequences : 0.0;
        m["first_difference_position_median"] = median_of(d.first_position);
        m["first_difference_logprob_gap_median"] = median_of(d.logprob_gap);
        m["max_logprob_diff_on_shared_prefix"] = d.max_logprob_diff_before;
      }
      out["modes"].push_back(m);
    }
    int64_t total_mismatch = 0;
    if (base) {
      for (const auto& r : results) total_mismatch += tools::mismatches(*base, r, logprob_rule);
    }
    out["identical_to_off"] = base ? json(total_mismatch == 0) : json(nullptr);

    if (c.json_out) {
      std::cout << out.dump() << "\n";
    } else {
      std::printf("model %s (%s), %s, %d rounds x %d groups x %d samples, max %d new tokens\n",
                  c.model.c_str(), c.settings.backend.kind.c_str(),
                  c.trace.empty() ? "synthetic prompts" : ("trace-forced " + c.trace).c_str(),
                  c.rounds, c.groups, c.n, c.max_new_tokens);
      std::printf("%-8s %-6s %11s %8s %8s %8s %9s %9s %8s %8s %8s %9s %8s %9s\n", "mode",
                  "round", "makespan_s", "tokens", "forwards", "tok/fwd", "verified", "drafted",
                  "accepted", "draft_s", "fwd_s", "vs off", "proj_s", "proj/off");
      auto row = [&](const std::string& mode, const std::string& round, const rollout::RoundStats& s,
                     double ratio, double proj_ratio) {
        std::printf("%-8s %-6s %11.3f %8lld %8lld %8.2f %9lld %9lld %8lld %8.3f %8.3f %8.3fx %8.3f "
                    "%8.3fx\n",
                    mode.c_str(), round.c_str(), s.makespan_s,
                    static_cast<long long>(s.response_tokens),
                    static_cast<long long>(s.forward_passes),
                    s.forward_passes ? double(s.response_tokens) / s.forward_passes : 0.0,
                    static_cast<long long>(s.tokens_verified),
                    static_cast<long long>(s.tokens_drafted),
                    static_cast<long long>(s.tokens_accepted), s.draft_s, s.forward_s, ratio,
                    projected_s(cost, s), proj_ratio);
      };
      for (const auto& r : results) {
        rollout::RoundStats total;
        for (size_t i = 0; i < r.rounds.size(); ++i) {
          const auto& s = r.rounds[i];
          const bool has_base = base && i < base->rounds.size() && base->rounds[i].makespan_s > 0;
          row(r.mode.name, std::to_string(i), s,
              has_base ? s.makespan_s / base->rounds[i].makespan_s : 0.0,
              has_base ? projected_s(cost, s) / projected_s(cost, base->rounds[i]) : 0.0);
          total.makespan_s += s.makespan_s;
          total.response_tokens += s.response_tokens;
          total.forward_passes += s.forward_passes;
          total.tokens_verified += s.tokens_verified;
          total.tokens_drafted += s.tokens_drafted;
          total.tokens_accepted += s.tokens_accepted;
          total.draft_s += s.draft_s;
          total.forward_s += s.forward_s;
        }
        double base_proj = 0;
        if (base) {
          for (const auto& s : base->rounds) base_proj += projected_s(cost, s);
        }
        row(r.mode.name, "all", total, base ? sum_makespan(r) / sum_makespan(*base) : 0.0,
            base_proj > 0 ? projected_s(cost, total) / base_proj : 0.0);
      }
      std::printf("proj_s: forwards x %.0f us + verified tokens x %.1f us (step cost model%s)\n",
                  cost.base_us, cost.per_token_us,
                  c.cost_model.empty()
                      ? ", defaults"
                      : (" " + c.cost_model +
                         (c.cost_model_entry.empty() ? "" : " [" + c.cost_model_entry + "]"))
                            .c_str());
      if (cost.crossover_tokens > 0 || cost.per_context_us > 0) {
        std::printf("proj_s leaves out the model's crossover and per-context terms: a round's totals cannot "
                    "price them (longtail-replay prices every forward)\n");
      }
      for (const auto& r : results) {
        const size_t passes = r.graph_replays + r.graph_eager + r.ungraphable;
        if (passes == 0) continue;
        std::printf("cuda passes %-8s %zu: %zu replayed from %zu captured graphs (%.3f s capturing), "
                    "%zu graphable run eagerly, %zu not graphable\n",
                    r.mode.name.c_str(), passes, r.graph_replays, r.graphs_captured,
                    r.graph_capture_s, r.graph_eager, r.ungraphable);
      }
      if (base && total_mismatch != 0) {
        for (const auto& r : results) {
          const tools::Divergence d = tools::divergence(*base, r);
          if (d.logprobs_only > 0) {
            std::printf("%-8s same tokens as off but logprobs not bitwise equal in %lld of %lld "
                        "sequences; max |logprob diff| %.3g\n",
                        r.mode.name.c_str(), static_cast<long long>(d.logprobs_only),
                        static_cast<long long>(d.sequences), d.max_logprob_diff_before);
          }
          if (d.differing == 0) continue;
          std::printf("%-8s differs from off in %lld of %lld sequences (%.1f%%): first difference at "
                      "response position median %lld; |logprob gap| there median %.4f (small = a "
                      "near-tie flipped by rounding); max |logprob diff| on shared prefixes %.4f\n",
                      r.mode.name.c_str(), static_cast<long long>(d.differing),
                      static_cast<long long>(d.sequences), 100.0 * d.differing / d.sequences,
                      static_cast<long long>(median_of(d.first_position)), median_of(d.logprob_gap),
                      d.max_logprob_diff_before);
        }
      }
      if (base) {
        std::printf("trajectories identical to 'off' in every mode: %s%s\n", total_mismatch == 0 ? "yes" : "NO",
                    c.trace.empty() ? ""
                                    : " (trace-forced: tokens, finish reasons, and logprobs where both modes "
                                      "scored the token; a forced token nobody verified has none)");
      }
    }
    return base && total_mismatch != 0 ? 1 : 0;
  }
}

}  // namespace

int main(int argc, char** argv) { return longtail::tools::cli_main("longtail-bench-rounds", argc, argv, parse, run); }
