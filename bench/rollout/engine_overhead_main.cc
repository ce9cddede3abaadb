// longtail-bench-engine-overhead: the engine's own host time per step (scheduling, draft budgets,
// drafting, building the forward's inputs, acceptance, rollback, drafter updates, round
// bookkeeping), measured with the deterministic fake backend of testing/ so that the forward
// itself is cheap and is subtracted anyway (StepStats::forward_us). On a GPU a decode step takes
// milliseconds; this overhead must stay well below that at batch 256.
//
// --log FILE replays a trajectory log (EngineOptions::trajectory_log, e.g. of the GRPO example's
// worker) instead: each recorded round's groups are submitted as one round and trace-forced over
// the accounting backend (no model), with the history indexed between rounds as the worker does,
// so the host work per step -- drafting, acceptance, the drafter's updates -- is that of the real
// run's sequences and acceptance. Off and DAS alternate --repeat times (the build VM drifts), and
// the table gives per-step medians and sums over the run for each.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <variant>
#include <vector>

#include <spdlog/spdlog.h>

#include "policy/accounting_backend.h"
#include "rollout/engine.h"
#include "rollout/trajectory_log.h"
#include "testing/fake_backend.h"

using namespace longtail;

namespace {

// Medians per step: the machine may be shared, and a median shrugs off steps where this process
// was descheduled.
struct Result {
  int batch = 0;
  bool speculate = false;
  int64_t steps = 0;
  double overhead_us = 0, overhead_p90_us = 0, draft_us = 0, accept_us = 0, forward_us = 0;
  double tokens_per_step = 0;
};

double quantile(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  const size_t k = static_cast<size_t>(q * double(v.size() - 1) + 0.5);
  std::nth_element(v.begin(), v.begin() + k, v.end());
  return v[k];
}

Result run(int batch, bool speculate, int rounds) {
  rollout::testing::FakeBackendOptions fo;
  fo.vocab = 64;
  fo.max_position = 4096;
  rollout::EngineOptions o;
  o.max_running_sequences = batch;
  if (!speculate) o.budgets.mode = drafter::BudgetMode::kOff;
  o.budgets.max_budget = 16;
  rollout::Engine e(std::make_unique<rollout::testing::FakeBackend>(fo), o);
  Result r;
  r.batch = batch;
  r.speculate = speculate;
  int64_t tokens = 0;
  std::vector<double> overhead, draft, accept, forward;
  for (int round = 0; round < rounds; ++round) {
    for (int g = 0; g < batch / 8; ++g) {
      rollout::GroupRequest req;
      req.group_id = "r" + std::to_string(round) + "-g" + std::to_string(g);
      req.prompt_id = "p" + std::to_string(g);
      for (int i = 0; i < 32; ++i) req.prompt_tokens.push_back((g * 13 + i * 7) % 64);
      req.n = 8;
      req.max_new_tokens = 256;
      req.stop_tokens = {0};
      req.sampling.temperature = 1.0f;
      req.sampling.seed = 3;
      e.submit(req);
    }
    while (true) {
      auto b = e.step();
      const rollout::StepStats& s = e.stats().last_step;
      if (round > 0 && s.sequences >= batch / 2) {  // measured: later rounds, full-ish batches
        ++r.steps;
        overhead.push_back(s.total_us - s.forward_us);
        draft.push_back(s.draft_us);
        accept.push_back(s.sample_us);
        forward.push_back(s.forward_us);
        tokens += s.tokens_emitted;
      }
      if (b) break;
    }
  }
  if (r.steps > 0) {
    r.overhead_us = quantile(overhead, 0.5);
    r.overhead_p90_us = quantile(overhead, 0.9);
    r.draft_us = quantile(draft, 0.5);
    r.accept_us = quantile(accept, 0.5);
    r.forward_us = quantile(forward, 0.5);
    r.tokens_per_step = double(tokens) / r.steps;
  }
  return r;
}

// A trajectory log's rounds: the groups of each round in log order.
struct LoggedGroup {
  std::string group_id, prompt_id;
  std::vector<int32_t> prompt;
  std::vector<std::vector<int32_t>> responses;  // by sample index
};
using LoggedRounds = std::vector<std::vector<LoggedGroup>>;

LoggedRounds read_log(const std::string& path) {
  rollout::TrajectoryLogReader reader(path);
  LoggedRounds rounds(1);
  rollout::LogRecord rec;
  while (reader.next(rec)) {
    if (std::holds_alternative<rollout::RoundBoundary>(rec)) {
      if (!rounds.back().empty()) rounds.emplace_back();
      continue;
    }
    const rollout::Trajectory& t = std::get<rollout::Trajectory>(rec);
    std::vector<LoggedGroup>& gs = rounds.back();
    auto g = std::find_if(gs.begin(), gs.end(), [&](const LoggedGroup& x) { return x.group_id == t.group_id; });
    if (g == gs.end()) {
      gs.push_back(LoggedGroup{t.group_id, t.prompt_id, t.prompt_tokens, {}});
      g = gs.end() - 1;
    }
    if (g->responses.size() <= static_cast<size_t>(t.sample_index)) g->responses.resize(t.sample_index + 1);
    g->responses[t.sample_index] = t.response_tokens;
  }
  if (rounds.back().empty()) rounds.pop_back();
  return rounds;
}

// Sums over the run and medians per step of one replay of the log.
struct LogResult {
  int64_t steps = 0, forwards = 0, verified = 0, emitted = 0;
  double draft_s = 0, accept_s = 0, rest_s = 0;  // host: drafting, acceptance + drafter updates, the rest
  double draft_med_us = 0, accept_med_us = 0, rest_med_us = 0, sequences_med = 0;
};

LogResult run_log(const LoggedRounds& rounds, bool speculate, bool trees) {
  rollout::EngineOptions o;
  int32_t max_len = 1, vocab = 2;
  for (size_t r = 0; r < rounds.size(); ++r) {
    for (const LoggedGroup& g : rounds[r]) {
      for (size_t i = 0; i < g.responses.size(); ++i) {
        o.forced_trajectories[{g.prompt_id, static_cast<int32_t>(r * g.responses.size() + i)}] = g.responses[i];
        max_len = std::max(max_len, static_cast<int32_t>(g.responses[i].size()));
        for (const int32_t t : g.responses[i]) vocab = std::max(vocab, t + 1);
      }
      for (const int32_t t : g.prompt) vocab = std::max(vocab, t + 1);
    }
  }
  o.round_groups = static_cast<int32_t>(rounds.front().size());
  if (!speculate) o.budgets.mode = drafter::BudgetMode::kOff;
  o.budgets.token_trees = trees;
  policy::ModelConfig cfg;
  cfg.vocab_size = vocab;
  cfg.max_position_embeddings = 1 << 16;
  rollout::Engine e(std::make_unique<policy::AccountingBackend>(cfg, policy::BackendOptions{}), o);
  LogResult res;
  std::vector<double> draft, accept, rest, seqs;
  for (size_t r = 0; r < rounds.size(); ++r) {
    for (const LoggedGroup& g : rounds[r]) {
      rollout::GroupRequest req;
      req.group_id = g.group_id + "@" + std::to_string(r);
      req.prompt_id = g.prompt_id;
      req.prompt_tokens = g.prompt;
      req.n = static_cast<int32_t>(g.responses.size());
      req.max_new_tokens = max_len;
      req.trace_sample_offset = static_cast<int32_t>(r * g.responses.size());
      req.sampling.temperature = 1.0f;
      e.submit(req);
    }
    while (true) {
      auto b = e.step();
      const rollout::StepStats& s = e.stats().last_step;
      if (s.sequences > 0) {
        ++res.forwards;
        res.verified += s.tokens_verified;
        res.emitted += s.tokens_emitted;
        draft.push_back(s.draft_us);
        accept.push_back(s.sample_us);
        rest.push_back(s.total_us - s.forward_us - s.draft_us - s.sample_us);
        seqs.push_back(s.sequences);
      }
      ++res.steps;
      if (b) break;
    }
    e.index_history();  // the worker's idle time after sending the batch
  }
  for (size_t i = 0; i < draft.size(); ++i) {
    res.draft_s += draft[i] * 1e-6;
    res.accept_s += accept[i] * 1e-6;
    res.rest_s += rest[i] * 1e-6;
  }
  res.draft_med_us = quantile(draft, 0.5);
  res.accept_med_us = quantile(accept, 0.5);
  res.rest_med_us = quantile(rest, 0.5);
  res.sequences_med = quantile(seqs, 0.5);
  return res;
}

int run_log_table(const std::string& path, bool trees, int repeat, const std::string& modes) {
  const LoggedRounds rounds = read_log(path);
  if (rounds.empty()) {
    std::fprintf(stderr, "%s: no trajectories\n", path.c_str());
    return 1;
  }
  std::printf("log %s: %zu rounds of %zu groups; %s; %d alternating repeats\n", path.c_str(), rounds.size(),
              rounds.front().size(), trees ? "token trees" : "chains", repeat);
  std::printf("| speculation | repeat | forwards | verified tokens | median sequences | drafting median (us) | "
              "acceptance + drafter updates median (us) | rest median (us) | drafting sum (s) | "
              "acceptance sum (s) | rest sum (s) |\n|---|---|---|---|---|---|---|---|---|---|---|\n");
  for (int k = 0; k < repeat; ++k) {
    for (bool spec : {false, true}) {
      if (modes != "both" && modes != (spec ? "das" : "off")) continue;
      const LogResult r = run_log(rounds, spec, trees);
      std::printf("| %s | %d | %lld | %lld | %.0f | %.1f | %.1f | %.1f | %.4f | %.4f | %.4f |\n", spec ? "DAS" : "off",
                  k, static_cast<long long>(r.forwards), static_cast<long long>(r.verified), r.sequences_med,
                  r.draft_med_us, r.accept_med_us, r.rest_med_us, r.draft_s, r.accept_s, r.rest_s);
      std::fflush(stdout);
    }
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  int rounds = 3, repeat = 3;
  std::string log;
  bool trees = false;
  std::string modes = "both";
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--rounds") && i + 1 < argc) {
      rounds = std::atoi(argv[++i]);
    } else if (!std::strcmp(argv[i], "--log") && i + 1 < argc) {
      log = argv[++i];
    } else if (!std::strcmp(argv[i], "--repeat") && i + 1 < argc) {
      repeat = std::atoi(argv[++i]);
    } else if (!std::strcmp(argv[i], "--speculation") && i + 1 < argc) {
      modes = argv[++i];
    } else if (!std::strcmp(argv[i], "--trees")) {
      trees = true;
    } else {
      std::fprintf(stderr,
                   "usage: longtail-bench-engine-overhead [--rounds R]\n"
                   "       longtail-bench-engine-overhead --log TRAJECTORY_LOG [--repeat K (3)] [--trees]\n"
                   "           [--speculation off|das|both (both)]\n"
                   "  --log: replay a trajectory log's rounds, trace-forced, off vs DAS (chains unless --trees)\n");
      return 2;
    }
  }
  spdlog::set_level(spdlog::level::warn);
  if (!log.empty()) {
    if (repeat < 1 || (modes != "both" && modes != "off" && modes != "das")) {
      std::fprintf(stderr, "--repeat must be >= 1 and --speculation off, das or both\n");
      return 2;
    }
    try {
      return run_log_table(log, trees, repeat, modes);
    } catch (const std::exception& ex) {
      std::fprintf(stderr, "%s: %s\n", log.c_str(), ex.what());
      return 1;
    }
  }
  if (rounds < 2) {
    std::fprintf(stderr, "--rounds must be >= 2 (round 0 only builds history)\n");
    return 2;
  }
  std::printf("| batch | speculation | measured steps | engine overhead per step, median (us) | p90 (us) | drafting, median (us) | acceptance + drafter updates, median (us) | fake forward, median (us, excluded) | tokens per step |\n");
  std::printf("|---|---|---|---|---|---|---|---|---|\n");
  for (int batch : {64, 256}) {
    for (bool spec : {false, true}) {
      const Result r = run(batch, spec, rounds);
      std::printf("| %d | %s | %lld | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f |\n", r.batch,
                  spec ? "DAS" : "off", static_cast<long long>(r.steps), r.overhead_us,
                  r.overhead_p90_us, r.draft_us, r.accept_us, r.forward_us, r.tokens_per_step);
    }
  }
  return 0;
}
