// Drafting quality on recorded traces and the synthetic workload: the automaton drafter against the
// depth-64 frequency-path suffix trie baseline, same steps, same budget, one run. Prints a markdown
// table (tokens per step, acceptance, drafter time per engine step, bytes per indexed token).
// Usage: drafter_acceptance [--budget N] [--match-states N] [--extend-prob P] [--factor F] [--own-scale S] [--own-earliest]
//                           [--scopes own,prompt,global] [--quick] [FILE.jsonl ...]
// (no files: synthetic workload only; --quick: longtail with the given options only, no variant and
// no baseline, for tuning)
#include <cstdio>
#include <cstring>
#include <string>

#include "drafter_sim.h"
#include "suffix_trie_baseline.h"
#include "workload/workload.h"

using namespace longtail;

namespace {
void row(const std::string& input, const char* name, const bench::SimResult& r, double bytes_per_token) {
  std::printf("| %s | %s | %.3f | %.3f | %.3f | %.1f | %.1f |\n", input.c_str(), name, r.tokens_per_step(),
              r.later_tokens_per_step(), r.acceptance(), r.engine_steps ? r.drafter_us / r.engine_steps : 0.0,
              bytes_per_token);
  std::fflush(stdout);
}

drafter::DrafterOptions g_ours;
bench::TrieDrafterOptions g_trie;
bool g_quick = false;

void compare(const std::string& name, const rollout::ReplayInput& in, int32_t budget) {
  drafter::Drafter sam(g_ours);
  const auto a = bench::simulate(sam, in, budget);
  row(name, "suffix automata (longtail)", a, sam.memory().bytes_per_indexed_token());
  if (g_quick) return;
  // Variant: past the match-length limit keep drafting while the path probability >= 0.5 (more
  // tokens per step, lower acceptance).
  drafter::DrafterOptions ext = g_ours;
  ext.extend_prob = 0.5;
  drafter::Drafter sam_ext(ext);
  const auto c = bench::simulate(sam_ext, in, budget);
  row(name, "suffix automata, extend_prob 0.5", c, sam_ext.memory().bytes_per_indexed_token());
  bench::TrieDrafter trie(g_trie);
  const auto b = bench::simulate(trie, in, budget);
  row(name, "depth-64 suffix trie (baseline)", b,
      trie.indexed_tokens() ? double(trie.index_bytes()) / double(trie.indexed_tokens()) : 0.0);
  std::printf("| %s | ratio longtail / baseline | %.3f | %.3f | %.3f | %.3f | %.3f |\n", name.c_str(),
              a.tokens_per_step() / b.tokens_per_step(), a.later_tokens_per_step() / b.later_tokens_per_step(),
              a.acceptance() / b.acceptance(), (a.drafter_us / a.engine_steps) / (b.drafter_us / b.engine_steps),
              sam.memory().bytes_per_indexed_token() /
                  (double(trie.index_bytes()) / double(std::max<int64_t>(1, trie.indexed_tokens()))));
  std::printf("| %s | ratio extend_prob 0.5 / baseline | %.3f | %.3f | %.3f | %.3f | |\n", name.c_str(),
              c.tokens_per_step() / b.tokens_per_step(), c.later_tokens_per_step() / b.later_tokens_per_step(),
              c.acceptance() / b.acceptance(), (c.drafter_us / c.engine_steps) / (b.drafter_us / b.engine_steps));
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
    } else if (!std::strcmp(argv[i], "--quick")) {
      g_quick = true;
    } else if (argv[i][0] == '-' && argv[i][1] == '-') {
      std::fprintf(stderr, "drafter_acceptance: unknown or incomplete option %s\n", argv[i]);
      return 2;
    } else {
      files.emplace_back(argv[i]);
    }
  }
  std::printf("budget %d draft tokens per step, fixed for every sequence (no length-aware budgets), window 8 rounds\n\n",
              budget);
  std::printf("| input | drafter | tokens/step | tokens/step (rounds >= 1) | acceptance | drafter us / engine step | bytes / indexed token |\n");
  std::printf("|---|---|---|---|---|---|---|\n");
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
