// Speculation budget policies on recorded traces: projected round makespan (longtail-replay's cost
// model, rollout/replay_simulation.h) of the length-aware policy against uniform (fixed) budgets under the same
// cost model and per-step cap, with the drafter's and the policy's own option defaults (the replay
// CLI sets some of them from its flags; this bench does not, so it measures what the engine gets).
// Usage: drafter_policy [--cost-model FILE.yaml ...] [--no-calibrate] [--policies fixed,length-aware,...]
//                       [--floor P] [--share S] [--global-length-weight W] [--margin M] [--tokens] FILE.jsonl ...
// (the tuning flags set SpeculationPolicyOptions fields for every policy; --tokens: critical_in_steps off)
// Policies: fixed, length-aware (defaults), classes (length-aware with the long/medium/short class
// rule of the earlier policy), fixed+acc / classes+acc (acceptance_aware on), fixed-noacc (= fixed
// with acceptance_aware off, whatever the default).
#include <cstdio>
#include <cstring>
#include <sstream>
#include <string>
#include <vector>

#include <spdlog/spdlog.h>

#include "drafter/speculation_policy.h"
#include "rollout/replay_simulation.h"

using namespace longtail;

namespace {
std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  for (std::string x; std::getline(ss, x, ',');) {
    if (!x.empty()) out.push_back(x);
  }
  return out;
}

// Options of one named variant, starting from the defaults.
bool variant(const std::string& name, drafter::SpeculationPolicyOptions& p) {
  if (name == "fixed") {
    p.mode = drafter::BudgetMode::kFixed;
  } else if (name == "fixed-noacc") {
    p.mode = drafter::BudgetMode::kFixed;
    p.acceptance_aware = false;
  } else if (name == "fixed+acc") {
    p.mode = drafter::BudgetMode::kFixed;
    p.acceptance_aware = true;
  } else if (name == "length-aware") {
    p.mode = drafter::BudgetMode::kLengthAware;
  } else if (name == "classes") {
    p.mode = drafter::BudgetMode::kLengthAware;
    p.critical_path = false;
    p.acceptance_aware = false;
  } else if (name == "classes+acc") {
    p.mode = drafter::BudgetMode::kLengthAware;
    p.critical_path = false;
    p.acceptance_aware = true;
  } else {
    return false;
  }
  return true;
}
}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> files, cost_files;
  std::vector<std::string> policies = {"fixed", "fixed+acc", "classes", "length-aware"};
  bool calibrate = true;
  drafter::SpeculationPolicyOptions tune;  // defaults, changed by the tuning flags
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--cost-model") && i + 1 < argc) {
      cost_files.emplace_back(argv[++i]);
    } else if (!std::strcmp(argv[i], "--policies") && i + 1 < argc) {
      policies = split(argv[++i]);
    } else if (!std::strcmp(argv[i], "--floor") && i + 1 < argc) {
      tune.critical_floor = std::atof(argv[++i]);
    } else if (!std::strcmp(argv[i], "--share") && i + 1 < argc) {
      tune.critical_share = std::atof(argv[++i]);
    } else if (!std::strcmp(argv[i], "--global-length-weight") && i + 1 < argc) {
      tune.global_length_weight = std::atof(argv[++i]);
    } else if (!std::strcmp(argv[i], "--margin") && i + 1 < argc) {
      tune.acceptance_cost_margin = std::atof(argv[++i]);
    } else if (!std::strcmp(argv[i], "--tokens")) {
      tune.critical_in_steps = false;
    } else if (!std::strcmp(argv[i], "--no-calibrate")) {
      calibrate = false;
    } else if (argv[i][0] == '-' && argv[i][1] == '-') {
      std::fprintf(stderr, "drafter_policy: unknown or incomplete option %s\n", argv[i]);
      return 2;
    } else {
      files.emplace_back(argv[i]);
    }
  }
  if (files.empty()) {
    std::fprintf(stderr, "usage: drafter_policy [--cost-model FILE.yaml ...] [--policies a,b] FILE.jsonl ...\n");
    return 2;
  }
  spdlog::set_level(spdlog::level::err);
  if (cost_files.empty()) cost_files.emplace_back("");
  std::printf("| trace | cost model | policy | projected speedup | ratio vs fixed | tokens/step | drafted | acceptance | policy+drafter us / engine step |\n");
  std::printf("|---|---|---|---|---|---|---|---|---|\n");
  for (const auto& f : files) {
    rollout::ReplayInput in;
    try {
      in = rollout::read_replay_input(f, 64, rollout::OnError::kStop);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "drafter_policy: %s\n", e.what());
      return 1;
    }
    const auto slash = f.find_last_of('/');
    const std::string name = slash == std::string::npos ? f : f.substr(slash + 1);
    for (const auto& cf : cost_files) {
      double fixed_speedup = 0;
      for (const auto& pol : policies) {
        rollout::ReplayOptions o;
        o.drafter.calibrate = calibrate;
        o.policy = tune;
        if (!variant(pol, o.policy)) {
          std::fprintf(stderr, "drafter_policy: unknown policy %s\n", pol.c_str());
          return 2;
        }
        try {
          if (!cf.empty()) o.policy.cost = drafter::load_cost_model(cf);
        } catch (const std::exception& e) {
          std::fprintf(stderr, "drafter_policy: %s\n", e.what());
          return 1;
        }
        const auto r = rollout::run_replay(in, o);
        if (pol == "fixed") fixed_speedup = r.projected_speedup();  // list it first for the ratios
        std::printf("| %s | %s | %s | %.4f | %.4f | %.3f | %lld | %.3f | %.1f |\n", name.c_str(),
                    cf.empty() ? "default (5000 + 20 us/token)" : cf.c_str(), pol.c_str(), r.projected_speedup(),
                    fixed_speedup > 0 ? r.projected_speedup() / fixed_speedup : 0.0, r.tokens_per_step(),
                    static_cast<long long>(r.drafted_tokens), r.acceptance_rate(), r.drafter_us_per_step());
        std::fflush(stdout);
      }
    }
  }
  return 0;
}
