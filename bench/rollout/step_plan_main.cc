// longtail-bench-step-plan: what the CUDA backend's pass planning (policy/cuda_step_plan.h) and
// graph cache (policy/cuda_graph_cache.h) make of the forwards of a real run, without a GPU. The
// engine runs the rounds longtail-bench-rounds runs (trace-forced over the accounting backend, or
// sampling on the CPU backend with --prompts), and a wrapper hands every forward's chunks to
// plan_passes under each bucket rule before passing them on. Per rule it counts the distinct graph
// keys, what the graph cache would do with them under its capture policies (eager first sight then
// capture, or capture at first sight after one warm-up pass), the padding tokens, and the host time
// of planning and packing the metadata image per forward. Speculative verify steps are ragged
// (per-sequence budgets, token trees), so every new (sequences, tokens, query length, table width,
// tree) key costs an eager pass and a capture on the device.
//
//   longtail-bench-step-plan --model DIR --trace skythought.jsonl -R 2 -G 16 --n 4 --warm-history 3 \
//     --max-running 256 --max-prompt-tokens 512 --max-new-tokens 1024 [--modes off,das,das+apr] [--json]
#include <boost/program_options.hpp>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "policy/backend.h"
#include "policy/cuda_step_plan.h"
#include "policy/forwarding_backend.h"
#include "rollout/engine.h"
#include "rollout/forced_trajectories.h"
#include "rollout/prompts_jsonl.h"
#include "tools/cli_main.h"
#include "tools/engine_flags.h"

namespace po = boost::program_options;
using namespace longtail;
using nlohmann::json;
namespace cuda = policy::cuda;

namespace {

struct Config {
  std::string model, trace, prompts;
  std::vector<std::string> modes = {"off", "das", "das+apr"};
  int32_t rounds = 2, groups = 16, n = 4, warm_history = 0, max_new_tokens = 1024;
  int32_t max_prompt_tokens = 512;
  double overprovision = 2.0;
  bool json_out = false;
  rollout::EngineSettings settings;
};

// One bucket rule, as the CUDA backend's runner would set it up.
struct Rule {
  std::string name;
  cuda::PlanLimits limits;
};

// The runner's table-width limit (cuda_forward.cc): positions rounded up to a power of two of blocks.
int32_t max_table_width(const policy::ModelConfig& mc, int32_t block_size) {
  const int32_t blocks = (std::max(mc.max_position_embeddings, block_size) + block_size - 1) / block_size;
  int32_t w = 16;
  while (w < blocks) w *= 2;
  return w;
}

// The runner's pricing (priced_graph_limits) and what it was measured against: the legacy
// buckets, and padding bounded by 1/8 of the tokens instead of the step's cost.
std::vector<Rule> rules_for(const policy::ModelConfig& mc, int32_t block_size) {
  cuda::PlanLimits base;
  base.block_size = block_size;
  const int32_t width = max_table_width(mc, block_size);
  return {{"legacy", cuda::priced_graph_limits(base, mc, width, "legacy")},
          {"priced", cuda::priced_graph_limits(base, mc, width, "")},
          {"tokens", cuda::priced_graph_limits(base, mc, width, "tokens")}};
}

struct RuleStats {
  int64_t forwards = 0, passes = 0, graphable = 0, ungraphable = 0;
  int64_t real_tokens = 0, padded_tokens = 0;  // graphable passes only
  std::map<cuda::GraphKey, int64_t> seen;
  std::vector<double> plan_us;  // per forward: plan_passes + pack_meta
  // What the graph cache (cuda_graph_cache.h) does with the keys under the rule's capture policy.
  int64_t eager = 0, captures = 0;
  bool warm = false;
  std::set<cuda::GraphKey> captured;
};

// Forwards every call to the inner backend; forward() first plans the chunks under every rule.
class PlanningBackend final : public policy::ForwardingBackend {
 public:
  PlanningBackend(std::unique_ptr<policy::Backend> inner, std::vector<Rule> rules)
      : policy::ForwardingBackend(std::move(inner)), rules_(std::move(rules)), stats_(rules_.size()) {
    for (const Rule& r : rules_) {
      staging_.resize(std::max(staging_.size(), cuda::meta_capacity(r.limits, 2048)));
    }
  }
  const std::vector<Rule>& rules() const { return rules_; }
  std::vector<RuleStats>& stats() { return stats_; }

  void release_sequence(int64_t seq) override {
    blocks_.erase(seq);
    inner().release_sequence(seq);
  }

  std::vector<policy::TokenOutput> forward(std::span<const policy::SequenceChunk> chunks) override {
    plan(chunks);
    return inner().forward(chunks);
  }

 private:
  void plan(std::span<const policy::SequenceChunk> chunks) {
    const int32_t B = std::max(1, inner().kv_capacity().block_size);
    std::vector<cuda::PlanChunk> pc(chunks.size());
    std::vector<std::vector<int32_t>> offsets(chunks.size());
    for (size_t i = 0; i < chunks.size(); ++i) {
      const auto& c = chunks[i];
      const int32_t old = inner().sequence_length(c.seq);
      std::vector<int32_t>& blocks = blocks_[c.seq];
      const size_t need = static_cast<size_t>((old + static_cast<int32_t>(c.tokens.size()) + B - 1) / B);
      while (blocks.size() < need) blocks.push_back(static_cast<int32_t>(next_block_++ % 100000));
      pc[i].blocks = &blocks;
      pc[i].old_length = old;
      pc[i].tokens = c.tokens;
      if (!c.parents.empty()) {
        policy::input_position_offsets(c, offsets[i]);
        pc[i].parents = c.parents;
        pc[i].offsets = offsets[i];
      }
      pc[i].first_output = c.first_output;
      pc[i].sampling = c.sampling;
      pc[i].uid = c.uid;
    }
    int64_t real = 0;
    for (const auto& c : chunks) real += static_cast<int64_t>(c.tokens.size());
    for (size_t r = 0; r < rules_.size(); ++r) {
      RuleStats& st = stats_[r];
      const auto t0 = std::chrono::steady_clock::now();
      const std::vector<cuda::PassPlan> passes = cuda::plan_passes(pc, rules_[r].limits);
      for (const auto& p : passes) {
        const cuda::MetaLayout m = cuda::meta_layout(p.num_tokens, p.num_seqs, p.num_outputs,
                                                     p.table_width,
                                                     static_cast<int32_t>(p.masked_ids.size()));
        cuda::pack_meta(p, m, staging_.data());
      }
      st.plan_us.push_back(
          std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count());
      ++st.forwards;
      for (const auto& p : passes) {
        ++st.passes;
        if (!p.graphable) {
          ++st.ungraphable;
          continue;
        }
        ++st.graphable;
        st.real_tokens += real;
        st.padded_tokens += p.num_tokens;
        const int64_t sight = ++st.seen[p.key];
        if (st.captured.count(p.key)) continue;  // replayed
        if (!st.warm || (sight == 1 && !cuda::capture_at_first_sight(rules_[r].limits))) {
          ++st.eager;
        } else {
          ++st.captures;
          st.captured.insert(p.key);
        }
        st.warm = true;
      }
    }
  }

  std::vector<Rule> rules_;
  std::vector<RuleStats> stats_;
  std::unordered_map<int64_t, std::vector<int32_t>> blocks_;
  int64_t next_block_ = 1;
  std::vector<std::byte> staging_;
};

double quantile(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  const size_t k = static_cast<size_t>(q * static_cast<double>(v.size() - 1) + 0.5);
  std::nth_element(v.begin(), v.begin() + static_cast<ptrdiff_t>(k), v.end());
  return v[k];
}

std::vector<rollout::GroupRequest> requests(const Config& c,
                                            const std::vector<rollout::RecordedRollout>& trace,
                                            const std::vector<rollout::PromptLine>& prompts) {
  // Prompt ids in first-seen order with their prompt (cut to its last max_prompt_tokens).
  std::vector<std::pair<std::string, std::vector<int32_t>>> ps;
  std::map<std::string, int32_t> samples;
  auto cut = [&](std::vector<int32_t> p) {
    if (static_cast<int32_t>(p.size()) > c.max_prompt_tokens) p.erase(p.begin(), p.end() - c.max_prompt_tokens);
    return p;
  };
  for (const auto& r : trace) {
    if (!samples.count(r.prompt_id)) ps.emplace_back(r.prompt_id, cut(r.prompt_tokens));
    samples[r.prompt_id] = std::max(samples[r.prompt_id], r.sample + 1);
  }
  for (size_t i = 0; i < prompts.size(); ++i)
    ps.emplace_back(prompts[i].prompt_id.value_or("prompt-" + std::to_string(i)),
                    cut(prompts[i].prompt_tokens));
  std::vector<std::pair<std::string, std::vector<int32_t>>> used;
  for (auto& p : ps) {
    if (!trace.empty() && (samples[p.first] < c.warm_history + c.rounds * c.n || p.second.empty())) continue;
    if (static_cast<int32_t>(used.size()) < c.groups) used.push_back(std::move(p));
  }
  if (static_cast<int32_t>(used.size()) < c.groups)
    throw tools::InputError("only " + std::to_string(used.size()) + " usable prompts for --groups " +
                            std::to_string(c.groups));
  std::vector<rollout::GroupRequest> out;
  for (int32_t r = 0; r < c.rounds; ++r) {
    for (const auto& [id, tokens] : used) {
      rollout::GroupRequest g;
      g.group_id = id + "/round-" + std::to_string(r);
      g.prompt_id = id;
      g.prompt_tokens = tokens;
      g.n = c.n;
      g.sampling.temperature = 1.0f;
      g.sampling.seed = 1;
      g.max_new_tokens = c.max_new_tokens;
      g.trace_sample_offset = c.warm_history + r * c.n;
      out.push_back(std::move(g));
    }
  }
  return out;
}

json rule_json(const Rule& rule, const RuleStats& st) {
  json j;
  j["rule"] = rule.name;
  j["fixed_cost_tokens"] = rule.limits.fixed_cost_tokens;
  j["forwards"] = st.forwards;
  j["passes"] = st.passes;
  j["graphable"] = st.graphable;
  j["not_graphable"] = st.ungraphable;
  j["distinct_keys"] = st.seen.size();
  int64_t once = 0;
  std::set<int32_t> widths;
  int64_t trees = 0;
  for (const auto& [k, n] : st.seen) {
    once += n == 1;
    widths.insert(k.table_width);
    trees += k.tree;
  }
  j["keys_seen_once"] = once;
  json keys = json::array();
  for (const auto& [k, n] : st.seen)
    keys.push_back({{"seqs", k.seqs}, {"tokens", k.tokens}, {"max_query_len", k.max_query_len},
                    {"table_width", k.table_width}, {"tree", k.tree}, {"passes", n}});
  j["keys"] = std::move(keys);
  j["keys_with_tree"] = trees;
  j["table_widths"] = widths;
  j["padding_share"] = st.real_tokens ? double(st.padded_tokens - st.real_tokens) / double(st.real_tokens) : 0.0;
  j["ragged_graphs"] = rule.limits.ragged_graphs;
  j["capture_at_first_sight"] = cuda::capture_at_first_sight(rule.limits);
  j["graph_cache"] = {{"eager", st.eager}, {"captures", st.captures}};
  j["plan_us"] = {{"median", quantile(st.plan_us, 0.5)}, {"p90", quantile(st.plan_us, 0.9)},
                  {"max", quantile(st.plan_us, 1.0)}};
  return j;
}

int run(const Config& c) {
  std::vector<rollout::RecordedRollout> trace;
  std::vector<rollout::PromptLine> prompts;
  rollout::EngineSettings settings = c.settings;
  try {
    const int32_t vocab = policy::load_model_config(c.model).vocab_size;
    if (!c.trace.empty()) {
      int32_t modulo = 0;  // as longtail-bench-rounds maps ids beyond the vocabulary
      for (const auto& r : rollout::load_trace_jsonl(c.trace)) {
        for (int32_t t : r.prompt_tokens) modulo = t >= vocab ? vocab : modulo;
        for (int32_t t : r.response_tokens) modulo = t >= vocab ? vocab : modulo;
      }
      trace = rollout::load_trace_jsonl(c.trace, modulo);
      settings.engine.forced_trajectories = rollout::forced_from_trace(trace);
    } else {
      prompts = rollout::read_prompts_jsonl(c.prompts);
    }
  } catch (const std::exception& e) {
    throw tools::InputError(e.what());
  }
  const auto groups = requests(c, trace, prompts);
  json out;
  out["config"] = {{"model", c.model}, {"trace", c.trace}, {"prompts", c.prompts},
                   {"rounds", c.rounds}, {"groups", c.groups}, {"n", c.n},
                   {"max_running", settings.engine.max_running_sequences},
                   {"backend", settings.backend.kind}};
  out["modes"] = json::array();
  for (const std::string& mode : c.modes) {
    rollout::EngineSettings s = settings;
    s.engine.round_groups = c.groups;
    if (mode == "off") s.engine.budgets.mode = drafter::BudgetMode::kOff;
    s.engine.overprovision = mode == "das+apr" ? c.overprovision : 1.0;
    auto inner = tools::make_engine_backend(c.model, s.backend);
    const policy::ModelConfig mc = inner->config();
    auto wrapper = std::make_unique<PlanningBackend>(std::move(inner), rules_for(mc, s.backend.kv_block_size));
    PlanningBackend* planning = wrapper.get();
    rollout::Engine engine(std::move(wrapper), s.engine);
    if (c.warm_history > 0) {
      std::set<std::string> used;
      for (const auto& g : groups) used.insert(g.prompt_id);
      for (const auto& r : trace) {
        if (!used.count(r.prompt_id) || r.sample >= c.warm_history) continue;
        auto p = r.prompt_tokens;
        if (static_cast<int32_t>(p.size()) > c.max_prompt_tokens) p.erase(p.begin(), p.end() - c.max_prompt_tokens);
        engine.add_history(r.prompt_id, p, r.response_tokens, r.sample);
      }
    }
    for (const auto& g : groups) engine.submit(g);
    int32_t done = 0;
    while (done < c.rounds) {
      std::optional<rollout::RoundBatch> b = engine.step();
      if (!b && engine.idle()) b = engine.flush_round();
      if (!b) {
        if (engine.idle()) throw std::runtime_error("mode " + mode + ": the engine went idle early");
        continue;
      }
      ++done;
    }
    json m;
    m["mode"] = mode;
    m["forwards"] = engine.stats().forward_passes;
    m["rules"] = json::array();
    for (size_t r = 0; r < planning->rules().size(); ++r)
      m["rules"].push_back(rule_json(planning->rules()[r], planning->stats()[r]));
    if (!c.json_out) {
      for (const auto& rj : m["rules"]) {
        std::printf("%-8s %-14s | forwards %5lld graphable %5lld not %4lld | keys %4zu (once %3lld) | "
                    "padding %5.1f%% | graph cache: %3lld eager + %3lld captures | plan us median %6.1f p90 %6.1f\n",
                    mode.c_str(), rj["rule"].get<std::string>().c_str(),
                    (long long)rj["forwards"].get<int64_t>(), (long long)rj["graphable"].get<int64_t>(),
                    (long long)rj["not_graphable"].get<int64_t>(), rj["distinct_keys"].get<size_t>(),
                    (long long)rj["keys_seen_once"].get<int64_t>(), 100 * rj["padding_share"].get<double>(),
                    (long long)rj["graph_cache"]["eager"].get<int64_t>(),
                    (long long)rj["graph_cache"]["captures"].get<int64_t>(),
                    rj["plan_us"]["median"].get<double>(), rj["plan_us"]["p90"].get<double>());
      }
    }
    out["modes"].push_back(std::move(m));
  }
  if (c.json_out) std::printf("%s\n", out.dump(2).c_str());
  return 0;
}

std::optional<Config> parse(int argc, char** argv) {
  Config c;
  c.settings.backend.kind = "accounting";
  c.settings.engine.max_running_sequences = 256;
  std::vector<tools::FlagAlias> aliases = tools::common_engine_aliases();
  aliases.push_back({"max-running", "max_running_sequences", "", "max running sequences (default 256)"});
  tools::EngineFlags flags(aliases, {}, {"round_groups", "overprovision", "speculation.enabled"},
                           rollout::OptionScope::kTraceForced);
  std::string modes = "off,das,das+apr";
  po::options_description own("longtail-bench-step-plan");
  own.add_options()("help,h", "this help")
      ("model", po::value(&c.model)->required(), "checkpoint directory (config.json is enough for accounting)")
      ("trace", po::value(&c.trace), "JSONL trace: trace-forced rounds (backend accounting)")
      ("prompts", po::value(&c.prompts), "prompt JSONL (python -m examples.task prompts): sampled rounds, --backend cpu")
      ("rounds,R", po::value(&c.rounds)->default_value(2), "rounds")
      ("groups,G", po::value(&c.groups)->default_value(16), "groups per round")
      ("n", po::value(&c.n)->default_value(4), "samples per group")
      ("warm-history", po::value(&c.warm_history)->default_value(0), "trace samples [0, K) of each prompt as drafter history")
      ("max-prompt-tokens", po::value(&c.max_prompt_tokens)->default_value(512), "prompts keep their last this many tokens")
      ("max-new-tokens", po::value(&c.max_new_tokens)->default_value(1024), "response cap")
      ("overprovision", po::value(&c.overprovision)->default_value(2.0), "das+apr's f")
      ("modes", po::value(&modes)->default_value(modes), "comma-separated: off, das, das+apr")
      ("json", po::bool_switch(&c.json_out), "one JSON document on stdout");
  own.add(flags.options(c.settings));
  po::variables_map vm;
  try {
    po::store(po::parse_command_line(argc, argv, own), vm);
    if (vm.count("help")) {
      std::cout << own << "\n";
      return std::nullopt;
    }
    po::notify(vm);
    flags.apply(vm, c.settings);
  } catch (const po::error& e) {
    throw tools::InputError(std::string(e.what()) + " (see --help)");
  }
  if (c.trace.empty() == c.prompts.empty()) throw tools::InputError("give one of --trace and --prompts");
  c.modes.clear();
  for (size_t a = 0; a <= modes.size();) {
    const size_t b = std::min(modes.find(',', a), modes.size());
    if (b > a) c.modes.push_back(modes.substr(a, b - a));
    a = b + 1;
  }
  for (const auto& m : c.modes)
    if (m != "off" && m != "das" && m != "das+apr") throw tools::InputError("unknown mode " + m);
  return c;
}

}  // namespace

int main(int argc, char** argv) {
  return tools::cli_main("longtail-bench-step-plan", argc, argv, parse, run);
}
