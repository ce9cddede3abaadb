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
// --cost-model-entry NAME picks one model's constants from the YAML's per_model map (the measured
// fit of that shape) instead of its step_cost (the largest model measured).
#include <boost/program_options.hpp>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <cmath>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "drafter/speculation_policy.h"
#include "policy/accounting_backend.h"
#include "policy/backend.h"
#include "policy/model_config.h"
#ifdef LONGTAIL_HAVE_CUDA
#include "policy/cuda_backend.h"
#endif
#include "rollout/engine.h"
#include "rollout/forced_trajectories.h"
#include "tools/cli_main.h"

namespace po = boost::program_options;
using namespace longtail;
using nlohmann::json;

namespace {

struct Config {
  std::string model, backend = "cpu", trace, cost_model, cost_model_entry;
  std::vector<std::string> modes = {"off", "das", "das+apr"};
  int32_t rounds = 3, groups = 4, n = 4, max_new_tokens = 128, prompt_len = 32, threads = 0;
  int32_t max_prompt_tokens = 64, budget = 16, max_tokens_per_step = 0, max_running = 256;
  int32_t vocab_modulo = 0;
  int32_t warm_history = 0;  // trace samples [0, warm_history) of each prompt preloaded as history
  int64_t max_kv_tokens = 0;
  bool deterministic = false;
  double overprovision = 2.0, temperature = 1.0;
  uint64_t seed = 1;
  bool refit = false, reload_weights = false, json_out = false;
  bool token_trees = drafter::SpeculationPolicyOptions{}.token_trees;
  drafter::StepCostModel cost;  // for the projected makespan (and the budgets when --cost-model)
};

// Projected time of a round under the linear step cost model t = c_base + c_tok * tokens, summed
// over its forwards: what the measured forwards and verified tokens would cost on the device the
// model describes (the default constants describe a 7B-class model on an H100).
double projected_s(const drafter::StepCostModel& m, const longtail::rollout::RoundStats& s) {
  return (m.base_us * static_cast<double>(s.forward_passes) +
          m.per_token_us * static_cast<double>(s.tokens_verified)) * 1e-6;
}

struct ModeResult {
  std::string mode;
  // CUDA backend passes by how they ran (all 0 on other backends).
  size_t graph_replays = 0, graphs_captured = 0, graph_eager = 0, ungraphable = 0;
  std::vector<rollout::RoundStats> rounds;
  double wall_s = 0;
  int64_t forwards = 0, tokens = 0, drafted = 0, accepted = 0, preemptions = 0;
  std::map<uint64_t, std::vector<int32_t>> tokens_by_uid;
  std::map<uint64_t, std::vector<float>> logprobs_by_uid;
};

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

ModeResult run_mode(const Config& c, const std::string& mode,
                    const std::vector<rollout::GroupRequest>& requests,
                    const rollout::ForcedTrajectories& forced,
                    const std::vector<rollout::RecordedRollout>& trace) {
  policy::BackendOptions bo;
  bo.kind = c.backend;
  bo.num_threads = c.threads;
  bo.max_kv_tokens = c.max_kv_tokens;
  bo.deterministic = c.deterministic;
  rollout::EngineOptions o;
  o.round_groups = c.groups;
  o.overprovision = mode == "das+apr" ? c.overprovision : 1.0;
  o.max_running_sequences = c.max_running;
  if (mode == "off") o.budgets.mode = drafter::BudgetMode::kOff;
  o.budgets.max_budget = c.budget;
  o.budgets.max_tokens_per_step = c.max_tokens_per_step;
  o.refit_cost_model = c.refit;
  o.budgets.token_trees = c.token_trees;
  if (!c.cost_model.empty()) {  // a constant of 0 keeps the default, as before
    if (c.cost.base_us > 0) o.budgets.cost.base_us = c.cost.base_us;
    if (c.cost.per_token_us > 0) o.budgets.cost.per_token_us = c.cost.per_token_us;
  }
  o.forced_trajectories = forced;
  std::unique_ptr<policy::Backend> backend =
      c.backend == "accounting" ? policy::make_accounting_backend(c.model, bo) : policy::make_backend(c.model, bo);
  [[maybe_unused]] const policy::Backend* backend_view = backend.get();  // the engine owns it from here on
  rollout::Engine e(std::move(backend), o);
  if (c.warm_history > 0) {  // earlier "training steps" of the benchmarked prompts
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
  }
  for (const auto& g : requests) e.submit(g);
  ModeResult res;
  res.mode = mode;
  const auto t0 = std::chrono::steady_clock::now();
  int64_t version = 0;
  while (static_cast<int32_t>(res.rounds.size()) < c.rounds) {
    std::optional<rollout::RoundBatch> b = e.step();
    if (!b && e.idle()) b = e.flush_round();
    if (!b) {
      if (e.idle()) throw std::runtime_error("engine idle before all rounds finished");
      continue;
    }
    for (const auto& t : b->trajectories) {
      res.tokens_by_uid[t.uid] = t.response_tokens;
      res.logprobs_by_uid[t.uid] = t.behaviour_logprobs;
    }
    res.rounds.push_back(b->stats);
    if (c.reload_weights && static_cast<int32_t>(res.rounds.size()) < c.rounds) {
      e.update_weights(c.model, ++version);  // same weights: measures the re-prefill cost only
    }
  }
  res.wall_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
#ifdef LONGTAIL_HAVE_CUDA
  if (backend_view->name() == "cuda") {
    const policy::CudaBackendStats st = policy::cuda_backend_stats(*backend_view);
    res.graph_replays = st.graph_replays;
    res.graphs_captured = st.graphs_captured;
    res.graph_eager = st.graphable_eager_passes;
    res.ungraphable = st.ungraphable_passes;
  }
#endif
  const rollout::EngineStats s = e.stats();
  res.forwards = s.forward_passes;
  res.tokens = s.tokens_generated;
  res.drafted = s.tokens_drafted;
  res.accepted = s.tokens_accepted;
  res.preemptions = s.preemptions;
  return res;
}

// Bitwise equality of two logprob lists (NaN equals NaN when its bits do).
bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
}

// Sequences whose tokens or logprobs (bit for bit) differ between a and b.
int64_t mismatches(const ModeResult& a, const ModeResult& b) {
  int64_t bad = 0;
  for (const auto& [uid, toks] : a.tokens_by_uid) {
    auto it = b.tokens_by_uid.find(uid);
    auto lp_a = a.logprobs_by_uid.find(uid), lp_b = b.logprobs_by_uid.find(uid);
    const bool same_logprobs = (lp_a == a.logprobs_by_uid.end()) == (lp_b == b.logprobs_by_uid.end()) &&
                               (lp_a == a.logprobs_by_uid.end() || same_bits(lp_a->second, lp_b->second));
    if (it == b.tokens_by_uid.end() || it->second != toks || !same_logprobs) ++bad;
  }
  return bad + static_cast<int64_t>(b.tokens_by_uid.size()) - static_cast<int64_t>(a.tokens_by_uid.size());
}

// Where speculation changed a trajectory (possible on the bf16 CUDA backend, where a verify forward
// of k tokens does not round exactly like k one-token forwards): for each differing sequence, the
// first differing response position and how far apart the two runs' logprobs of their own token
// were there. A small gap means a near-tie that rounding flipped, not a logic error.
struct Divergence {
  int64_t sequences = 0, differing = 0;
  std::vector<int64_t> first_position;  // per differing sequence
  std::vector<double> logprob_gap;      // |lp_off(tok_off) - lp_mode(tok_mode)| at that position
  double max_logprob_diff_before = 0;   // largest |lp_off - lp_mode| on the shared prefix
  int64_t logprobs_only = 0;            // same tokens, logprobs not bitwise equal
};

Divergence divergence(const ModeResult& off, const ModeResult& r) {
  Divergence d;
  for (const auto& [uid, a] : off.tokens_by_uid) {
    auto it = r.tokens_by_uid.find(uid);
    if (it == r.tokens_by_uid.end()) continue;
    ++d.sequences;
    const auto& b = it->second;
    const auto& la = off.logprobs_by_uid.at(uid);
    const auto& lb = r.logprobs_by_uid.at(uid);
    const size_t n = std::min(a.size(), b.size());
    size_t i = 0;
    while (i < n && a[i] == b[i]) ++i;
    for (size_t j = 0; j < i && j < la.size() && j < lb.size(); ++j) {
      if (std::isfinite(la[j]) && std::isfinite(lb[j])) {
        d.max_logprob_diff_before = std::max(d.max_logprob_diff_before, std::fabs(double(la[j]) - lb[j]));
      }
    }
    if (i == a.size() && i == b.size()) {
      d.logprobs_only += !same_bits(la, lb);
      continue;
    }
    ++d.differing;
    d.first_position.push_back(static_cast<int64_t>(i));
    if (i < n && i < la.size() && i < lb.size()) d.logprob_gap.push_back(std::fabs(double(la[i]) - lb[i]));
  }
  return d;
}

template <typename T>
T median_of(std::vector<T> v) {
  if (v.empty()) return T{};
  std::nth_element(v.begin(), v.begin() + v.size() / 2, v.end());
  return v[v.size() / 2];
}

double sum_makespan(const ModeResult& r) {
  double s = 0;
  for (const auto& x : r.rounds) s += x.makespan_s;
  return s;
}

std::optional<Config> parse(int argc, char** argv) {
  Config c;
  std::string modes;
  po::options_description desc("longtail-bench-rounds options");
  desc.add_options()("help,h", "show this help")("version", "print the version and exit")
      ("model", po::value(&c.model)->required(), "checkpoint directory")
      ("backend", po::value(&c.backend)->default_value("cpu"),
       "cpu | cuda | accounting (no model: the engine's counts of a --trace run, policy/accounting_backend.h)")
      ("threads", po::value(&c.threads)->default_value(0), "CPU backend threads (0 = all cores)")
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
      ("budget", po::value(&c.budget)->default_value(16), "max draft tokens per sequence")
      ("max-tokens-per-step", po::value(&c.max_tokens_per_step)->default_value(0),
       "cap on verified tokens per step (0 = from the cost model)")
      ("cost-model", po::value(&c.cost_model), "cost model YAML (configs/cost_model*.yaml)")
      ("cost-model-entry", po::value(&c.cost_model_entry),
       "use the YAML's per_model entry of this name (e.g. Qwen2.5-1.5B) instead of step_cost")
      ("refit-cost-model", po::bool_switch(&c.refit), "refit the cost model from measured steps")
      ("token-trees", po::value(&c.token_trees)->default_value(c.token_trees),
       "true: speculating modes verify token trees of up to --budget nodes (backends that support "
       "them), false: chains")
      ("overprovision", po::value(&c.overprovision)->default_value(2.0), "APRIL f")
      ("max-running", po::value(&c.max_running)->default_value(256), "max running sequences")
      ("max-kv-tokens", po::value(&c.max_kv_tokens)->default_value(0), "CPU KV bound (0 = none)")
      ("deterministic", po::bool_switch(&c.deterministic),
       "batch-invariant backend kernels (BackendOptions::deterministic)")
      ("reload-weights", po::bool_switch(&c.reload_weights),
       "reload the checkpoint as a new version after every round (re-prefill cost)")
      ("json", po::bool_switch(&c.json_out), "print one JSON object");
  try {
    po::variables_map vm;
    po::store(po::parse_command_line(argc, argv, desc), vm);
    if (vm.count("help")) {
      std::cout << desc << "\n";
      return std::nullopt;
    }
    po::notify(vm);
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
    if (c.backend == "accounting" && c.trace.empty()) throw std::runtime_error("--backend accounting needs --trace");
    if (c.warm_history > 0 && c.trace.empty()) throw std::runtime_error("--warm-history needs --trace");
    if (!c.cost_model_entry.empty() && c.cost_model.empty())
      throw std::runtime_error("--cost-model-entry needs --cost-model");
    if (!c.cost_model.empty()) c.cost = drafter::load_cost_model(c.cost_model, c.cost_model_entry);
  } catch (const std::exception& e) {
    throw tools::InputError(std::string(e.what()) + " (see --help)");
  }
  return c;
}

int run(const Config& c) {
  {
    const int32_t vocab = policy::load_model_config(c.model).vocab_size;
    std::vector<rollout::RecordedRollout> trace;
    rollout::ForcedTrajectories forced;
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
    const auto requests = build_requests(c, vocab, c.trace.empty() ? nullptr : &trace);
    std::vector<ModeResult> results;
    for (const std::string& m : c.modes) {
      if (!c.json_out) std::fprintf(stderr, "running mode %s...\n", m.c_str());
      results.push_back(run_mode(c, m, requests, forced, trace));
    }
    const ModeResult* base = nullptr;
    for (const auto& r : results) base = r.mode == "off" ? &r : base;

    json out;
    out["config"] = {{"model", c.model}, {"backend", c.backend}, {"deterministic", c.deterministic}, {"trace", c.trace},
                     {"rounds", c.rounds}, {"groups", c.groups}, {"n", c.n},
                     {"max_new_tokens", c.max_new_tokens}, {"temperature", c.temperature},
                     {"budget", c.budget}, {"max_tokens_per_step", c.max_tokens_per_step},
                     {"overprovision", c.overprovision}, {"reload_weights", c.reload_weights},
                {"warm_history", c.warm_history}, {"cost_model_entry", c.cost_model_entry}, {"token_trees", c.token_trees},
                {"cost_base_us", c.cost.base_us}, {"cost_per_token_us", c.cost.per_token_us}};
    out["modes"] = json::array();
    for (const auto& r : results) {
      json m;
      m["mode"] = r.mode;
      m["cuda_passes"] = {{"replayed", r.graph_replays}, {"graphs_captured", r.graphs_captured},
                          {"graphable_eager", r.graph_eager}, {"not_graphable", r.ungraphable}};
      m["rounds"] = json::array();
      for (const auto& s : r.rounds) {
        m["rounds"].push_back({{"round", s.round}, {"makespan_s", s.makespan_s},
                               {"trajectories", s.trajectories},
                               {"response_tokens", s.response_tokens},
                               {"forward_passes", s.forward_passes},
                               {"tokens_per_forward", s.forward_passes ? double(s.response_tokens) / s.forward_passes : 0.0},
                               {"tokens_drafted", s.tokens_drafted},
                               {"tokens_accepted", s.tokens_accepted},
                               {"off_policy_token_share", s.off_policy_token_share},
                               {"carried_over", s.carried_over},
                               {"tokens_verified", s.tokens_verified},
                               {"projected_s", projected_s(c.cost, s)},
                               {"draft_s", s.draft_s}, {"forward_s", s.forward_s},
                               {"sample_s", s.sample_s}});
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
      for (const auto& s : r.rounds) proj += projected_s(c.cost, s);
      m["projected_s"] = proj;
      m["wall_s"] = r.wall_s;
      m["response_tokens"] = r.tokens;
      m["forward_passes"] = r.forwards;
      m["tokens_per_forward"] = r.forwards ? double(r.tokens) / r.forwards : 0.0;
      m["tokens_drafted"] = r.drafted;
      m["tokens_accepted"] = r.accepted;
      m["acceptance_rate"] = r.drafted ? double(r.accepted) / r.drafted : 0.0;
      m["preemptions"] = r.preemptions;
      if (base) {
        double base_proj = 0;
        for (const auto& s : base->rounds) base_proj += projected_s(c.cost, s);
        m["projected_ratio_vs_off"] = proj / base_proj;
        m["makespan_ratio_vs_off"] = sum_makespan(r) / sum_makespan(*base);
        m["trajectories_differing_from_off"] = mismatches(*base, r);
        const Divergence d = divergence(*base, r);
        m["differing_fraction"] = d.sequences ? double(d.differing) / d.sequences : 0.0;
        m["first_difference_position_median"] = median_of(d.first_position);
        m["first_difference_logprob_gap_median"] = median_of(d.logprob_gap);
        m["max_logprob_diff_on_shared_prefix"] = d.max_logprob_diff_before;
      }
      out["modes"].push_back(m);
    }
    int64_t total_mismatch = 0;
    if (base) {
      for (const auto& r : results) total_mismatch += mismatches(*base, r);
    }
    out["identical_to_off"] = base ? json(total_mismatch == 0) : json(nullptr);

    if (c.json_out) {
      std::cout << out.dump() << "\n";
    } else {
      std::printf("model %s (%s), %s, %d rounds x %d groups x %d samples, max %d new tokens\n",
                  c.model.c_str(), c.backend.c_str(),
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
                    projected_s(c.cost, s), proj_ratio);
      };
      for (const auto& r : results) {
        rollout::RoundStats total;
        for (size_t i = 0; i < r.rounds.size(); ++i) {
          const auto& s = r.rounds[i];
          const bool has_base = base && i < base->rounds.size() && base->rounds[i].makespan_s > 0;
          row(r.mode, std::to_string(i), s,
              has_base ? s.makespan_s / base->rounds[i].makespan_s : 0.0,
              has_base ? projected_s(c.cost, s) / projected_s(c.cost, base->rounds[i]) : 0.0);
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
          for (const auto& s : base->rounds) base_proj += projected_s(c.cost, s);
        }
        row(r.mode, "all", total, base ? sum_makespan(r) / sum_makespan(*base) : 0.0,
            base_proj > 0 ? projected_s(c.cost, total) / base_proj : 0.0);
      }
      std::printf("proj_s: forwards x %.0f us + verified tokens x %.1f us (step cost model%s)\n",
                  c.cost.base_us, c.cost.per_token_us,
                  c.cost_model.empty()
                      ? ", defaults"
                      : (" " + c.cost_model +
                         (c.cost_model_entry.empty() ? "" : " [" + c.cost_model_entry + "]"))
                            .c_str());
      for (const auto& r : results) {
        const size_t passes = r.graph_replays + r.graph_eager + r.ungraphable;
        if (passes == 0) continue;
        std::printf("cuda passes %-8s %zu: %zu replayed from %zu captured graphs, %zu graphable run "
                    "eagerly, %zu not graphable\n",
                    r.mode.c_str(), passes, r.graph_replays, r.graphs_captured, r.graph_eager,
                    r.ungraphable);
      }
      if (base && total_mismatch != 0) {
        for (const auto& r : results) {
          const Divergence d = divergence(*base, r);
          if (d.logprobs_only > 0) {
            std::printf("%-8s same tokens as off but logprobs not bitwise equal in %lld of %lld "
                        "sequences; max |logprob diff| %.3g\n",
                        r.mode.c_str(), static_cast<long long>(d.logprobs_only),
                        static_cast<long long>(d.sequences), d.max_logprob_diff_before);
          }
          if (d.differing == 0) continue;
          std::printf("%-8s differs from off in %lld of %lld sequences (%.1f%%): first difference at "
                      "response position median %lld; |logprob gap| there median %.4f (small = a "
                      "near-tie flipped by rounding); max |logprob diff| on shared prefixes %.4f\n",
                      r.mode.c_str(), static_cast<long long>(d.differing),
                      static_cast<long long>(d.sequences), 100.0 * d.differing / d.sequences,
                      static_cast<long long>(median_of(d.first_position)), median_of(d.logprob_gap),
                      d.max_logprob_diff_before);
        }
      }
      if (base) {
        std::printf("trajectories identical to 'off' in every mode: %s\n",
                    total_mismatch == 0 ? "yes" : "NO");
      }
    }
    return base && total_mismatch != 0 ? 1 : 0;
  }
}

}  // namespace

int main(int argc, char** argv) { return longtail::tools::cli_main("longtail-bench-rounds", argc, argv, parse, run); }
