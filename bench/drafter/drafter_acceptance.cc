// Drafting quality on recorded traces and the synthetic workload: the automaton drafter against the
// depth-64 frequency-path suffix trie baseline, same steps, same budget, one run; chains with and
// without calibrated scope scores and token trees with the same verified-token budget. Prints a
// markdown table (tokens per step, acceptance, drafter time per engine step, bytes per indexed token).
// Usage: drafter_acceptance [--budget N] [--match-states N] [--extend-prob P] [--factor F] [--own-scale S] [--own-earliest]
//                           [--count-prior C] [--no-calibrate] [--width W] [--min-prob P] [--cost-model FILE.yaml]
//                           [--scopes own,prompt,global] [--quick] [FILE.jsonl ...]
// (no files: synthetic workload only; --quick: longtail chains and trees with the given options only,
// no variant and no baseline, for tuning)
#include <cstdio>
#include <cstring>
#include <string>

#include "drafter_sim.h"
#include "suffix_trie_baseline.h"
#include "testing/workload.h"

using namespace longtail;

namespace {
void row(const std::string& input, const char* name, const bench::SimResult& r, double bytes_per_token) {
  std::printf("| %s | %s | %.3f | %.3f | %.3f | %.3f | %.1f | %.1f |\n", input.c_str(), name, r.tokens_per_step(),
              r.later_tokens_per_step(), r.acceptance(), r.projected_speedup(),
              r.engine_steps ? r.drafter_us / r.engine_steps : 0.0, bytes_per_token);
  std::fflush(stdout);
}

drafter::DrafterOptions g_ours;
drafter::StepCostModel g_cost;
bench::TrieDrafterOptions g_trie;
bool g_quick = false;

void compare(const std::string& name, const rollout::ReplayInput& in, int32_t budget) {
  drafter::Drafter sam(g_ours);
  const auto a = bench::simulate(sam, in, budget, false, g_cost);
  row(name, g_ours.calibrate ? "suffix automata (longtail), chain" : "suffix automata, chain, uncalibrated", a,
      sam.memory().bytes_per_indexed_token());
  drafter::Drafter sam_tree(g_ours);
  const auto t = bench::simulate(sam_tree, in, budget, /*tree=*/true, g_cost);
  row(name, "suffix automata (longtail), token tree", t, sam_tree.memory().bytes_per_indexed_token());
  std::printf("| %s | ratio tree / chain | %.3f | %.3f | %.3f | %.3f | %.3f | |\n", name.c_str(),
              t.tokens_per_step() / a.tokens_per_step(), t.later_tokens_per_step() / a.later_tokens_per_step(),
              t.acceptance() / a.acceptance(), t.projected_speedup() / a.projected_speedup(),
              (t.drafter_us / t.engine_steps) / (a.drafter_us / a.engine_steps));
  if (g_quick) return;
  // Before calibration: raw count ratios compete across scopes.
  drafter::DrafterOptions raw = g_ours;
  raw.calibrate = false;
  drafter::Drafter sam_raw(raw);
  const auto c = bench::simulate(sam_raw, in, budget, false, g_cost);
  row(name, "suffix automata, chain, uncalibrated", c, sam_raw.memory().bytes_per_indexed_token());
  bench::TrieDrafter trie(g_trie);
  const auto b = bench::simulate(trie, in, budget, false, g_cost);
  row(name, "depth-64 suffix trie (baseline)", b,
      trie.indexed_tokens() ? double(trie.index_bytes()) / double(trie.indexed_tokens()) : 0.0);
  auto ratio = [&](const char* what, const bench::SimResult& x) {
    std::printf("| %s | ratio %s / baseline | %.3f | %.3f | %.3f | %.3f | %.3f | |\n", name.c_str(), what,
                x.tokens_per_step() / b.tokens_per_step(), x.later_tokens_per_step() / b.later_tokens_per_step(),
                x.acceptance() / b.acceptance(), x.projected_speedup() / b.projected_speedup(),
                (x.drafter_us / x.engine_steps) / (b.drafter_us / b.engine_steps));
  };
  ratio("chain", a);
  ratio("tree", t);
  ratio("uncalibrated chain", c);
}
}  // namespace

int main(int argc, char** argv) {
  int32_t budget = 16;
  std::vector<std::string> files;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--budget") && i + 1 < argc) {
      budget = std::atoi(argv[++i]);
    } else if (!std::strcmp(argv[i], "--match-states") && i + 1 < argc) {
      g_ours.match_states = std::atoi(argv[++i]);
    } else if (!std::strcmp(argv[i], "--extend-prob") && i + 1 < argc) {
      g_ours.extend_prob = std::atof(argv[++i]);
    } else if (!std::strcmp(argv[i], "--factor") && i + 1 < argc) {
      g_ours.match_length_factor = std::atof(argv[++i]);
    } else if (!std::strcmp(argv[i], "--scopes") && i + 1 < argc) {
      // Ablation: which sources both drafters use, e.g. "own,prompt" (default all three).
      const std::string v = argv[++i];
      g_ours.use_own_context = g_trie.use_own = v.find("own") != std::string::npos;
      g_ours.use_prompt_scope = g_trie.use_prompt = v.find("prompt") != std::string::npos;
      g_ours.use_global_scope = g_trie.use_global = v.find("global") != std::string::npos;
    } else if (!std::strcmp(argv[i], "--own-scale") && i + 1 < argc) {
      g_ours.own_match_scale = std::atof(argv[++i]);
    } else if (!std::strcmp(argv[i], "--own-earliest")) {
      g_ours.own_recent = false;
    } else if (!std::strcmp(argv[i], "--count-prior") && i + 1 < argc) {
      g_ours.count_prior = std::atof(argv[++i]);
    } else if (!std::strcmp(argv[i], "--min-prob") && i + 1 < argc) {
      g_ours.min_prob = std::atof(argv[++i]);
    } else if (!std::strcmp(argv[i], "--width") && i + 1 < argc) {
      g_ours.tree_max_width = std::atoi(argv[++i]);
    } else if (!std::strcmp(argv[i], "--cost-model") && i + 1 < argc) {
      try {
        g_cost = drafter::load_cost_model(argv[++i]);
      } catch (const std::exception& e) {
        std::fprintf(stderr, "drafter_acceptance: %s\n", e.what());
        return 2;
      }
    } else if (!std::strcmp(argv[i], "--no-calibrate")) {
      g_ours.calibrate = false;
    } else if (!std::strcmp(argv[i], "--quick")) {
      g_quick = true;
    } else if (argv[i][0] == '-' && argv[i][1] == '-') {
      std::fprintf(stderr, "drafter_acceptance: unknown or incomplete option %s\n", argv[i]);
      return 2;
    } else {
      files.emplace_back(argv[i]);
    }
  }
  std::printf("budget %d draft tokens (or tree nodes) per step, fixed for every sequence (no length-aware budgets), window 8 rounds\n\n",
              budget);
  std::printf("| input | drafter | tokens/step | tokens/step (rounds >= 1) | acceptance | projected speedup (fixed budget, no cap; c_base %.0f us, c_tok %.2f us) | drafter us / engine step | bytes / indexed token |\n",
              g_cost.base_us, g_cost.per_token_us);
  std::printf("|---|---|---|---|---|---|---|---|\n");
  {
    workload::WorkloadOptions w;
    w.prompts = 16;
    w.samples = 8;
    w.rounds = 4;
    w.median_len = 400;
    const std::string path = "/tmp/longtail_synthetic_workload.jsonl";
    workload::write_jsonl(workload::generate_workload(w), path);
    compare("synthetic (16x8x4)", rollout::read_replay_input(path, 0, rollout::OnError::kStop), budget);
  }
  for (const auto& f : files) {
    try {
      const auto in = rollout::read_replay_input(f, 64, rollout::OnError::kStop);
      const auto slash = f.find_last_of('/');
      compare(slash == std::string::npos ? f : f.substr(slash + 1), in, budget);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "drafter_acceptance: %s\n", e.what());
      return 1;
    }
  }
  return 0;
}
