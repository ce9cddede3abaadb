// longtail-replay: replays recorded rollouts (JSONL or a trajectory log) through the drafter and the
// speculation policy without a model, and reports drafting quality and projected round makespans.
// With --stream ENDPOINT it instead re-sends the rollouts to a trainer as BATCH messages.
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <iostream>

#include <boost/program_options.hpp>
#include <spdlog/spdlog.h>

#include "rollout/replay.h"
#include "rollout/replay_fleet.h"
#include "rollout/replay_stream.h"
#include "rollout/trajectory_log.h"

namespace po = boost::program_options;
using namespace longtail;

int main(int argc, char** argv) {
  std::string input, policy_name = "length-aware", on_error = "skip", cost_file, plot;
  rollout::StreamRequest stream;
  rollout::FleetReplayOptions fleet;
  std::string routing;
  int32_t own_min_match = 1, round_size = 64, window = 8, budget = 16, threads = 1, medium_budget = 4, max_tokens_per_step = 0;
  double long_frac = 0.5, short_frac = 0.15, extend_prob = 1.0, min_prob = 0.1, match_factor = 1.0, count_prior = 0.0, cost_base = -1, cost_tok = -1, max_step_overhead = 1.0;
  po::options_description desc(
      "longtail-replay INPUT [options]\n"
      "INPUT: JSONL, one rollout per line in generation order: {\"prompt_id\", \"sample\", \"step\"?,\n"
      "\"prompt_tokens\", \"response_tokens\"}, or a longtail trajectory log (detected by its magic)");
  desc.add_options()
      ("help,h", "this help")
      ("input", po::value(&input), "input file")
      ("round-size", po::value(&round_size)->default_value(64), "prompts per round for lines without \"step\" (0 = one round)")
      ("window", po::value(&window)->default_value(8), "drafter history window in rounds")
      ("budget", po::value(&budget)->default_value(16), "max draft tokens per sequence per step")
      ("medium-budget", po::value(&medium_budget)->default_value(4), "draft tokens for medium predicted lengths (length-aware)")
      ("long-frac", po::value(&long_frac)->default_value(0.5), "length-aware: predicted remaining >= this x the batch max is long")
      ("short-frac", po::value(&short_frac)->default_value(0.15), "length-aware: below this x the batch max is short (no drafts)")
      ("policy", po::value(&policy_name)->default_value("length-aware"), "budget policy: fixed, length-aware or off")
      ("min-prob", po::value(&min_prob)->default_value(0.1), "stop drafting below this path probability")
      ("match-factor", po::value(&match_factor)->default_value(1.0), "draft at most factor x match length tokens (0 = no limit)")
      ("own-min-match", po::value(&own_min_match)->default_value(1), "shortest own-context repeat that is drafted from")
      ("extend-prob", po::value(&extend_prob)->default_value(1.0), "past the match-length limit, keep drafting while path probability >= this")
      ("count-prior", po::value(&count_prior)->default_value(0.0), "path probability = count / (context count + prior)")
      ("max-tokens-per-step", po::value(&max_tokens_per_step)->default_value(0), "cap on verified tokens per step (0 = from the cost model)")
      ("max-step-overhead", po::value(&max_step_overhead)->default_value(1.0), "speculative step may cost (1 + x) times a plain step")
      ("cost-model", po::value(&cost_file), "YAML cost model (configs/cost_model.yaml format)")
      ("cost-base-us", po::value(&cost_base), "c_base in t = c_base + c_tok * tokens (us)")
      ("cost-per-token-us", po::value(&cost_tok), "c_tok (us per verified token)")
      ("no-speculation", "baseline: no drafting at all")
      ("acceptance-aware", "shrink draft budgets where drafts keep failing (drafter/speculation_policy.h)")
      ("no-global", "do not draft from the global history")
      ("no-prompt-scope", "do not draft from the same prompt's history")
      ("no-own", "do not draft from the rollout's own context")
      ("threads", po::value(&threads)->default_value(1), "drafting threads")
      ("on-error", po::value(&on_error)->default_value("skip"), "bad input line: skip or stop")
      ("json", "print one JSON object instead of the table")
      ("plot", po::value(&plot), "write acceptance and speedup by length bucket to this SVG file")
      ("quiet,q", "no progress bar or warnings")
      ("workers", po::value(&fleet.workers)->default_value(1), "replay as a fleet of K workers, each drafting from the history it generated (rollout/replay_fleet.h)")
      ("routing", po::value(&routing)->default_value("affine"), "--workers: affine (consistent hashing of prompt_id with bounded load, as longtail.fleet) or random")
      ("shared-history", "--workers: every worker also indexes the others' rollouts at round ends (the fleet's HISTORY messages)")
      ("route-max-new-tokens", po::value(&fleet.max_new_tokens)->default_value(4096), "--workers: per-sample load estimate of the router (tokens)")
      ("stream", po::value(&stream.endpoint), "instead of replaying, send the rollouts to a trainer as BATCH messages from this endpoint (bound; see trainer_bridge/PROTOCOL.md)")
      ("stream-rate", po::value(&stream.batches_per_second)->default_value(0), "--stream: batches per second (0 = as fast as credit allows)")
      ("stream-batch-size", po::value(&stream.trajectories_per_batch)->default_value(0), "--stream: trajectories per batch (0 = one batch per round)");
  po::positional_options_description pos;
  pos.add("input", 1);
  po::variables_map vm;
  try {
    po::store(po::command_line_parser(argc, argv).options(desc).positional(pos).run(), vm);
    po::notify(vm);
  } catch (const po::error& e) {
    std::cerr << "longtail-replay: " << e.what() << "\n" << desc << "\n";
    return 2;
  }
  if (vm.count("help")) {
    std::cout << desc << "\n";
    return 0;
  }
  if (input.empty()) {
    std::cerr << "longtail-replay: no input file given\n" << desc << "\n";
    return 2;
  }
  if (vm.count("quiet")) spdlog::set_level(spdlog::level::err);
  rollout::ReplayOptions opts;
  try {
    if (on_error != "skip" && on_error != "stop") {
      throw std::invalid_argument("--on-error must be skip or stop, not '" + on_error + "'");
    }
    if (window < 1) throw std::invalid_argument("--window must be >= 1");
    if (budget < 0 || medium_budget < 0) throw std::invalid_argument("--budget must be >= 0");
    if (!(min_prob >= 0 && min_prob <= 1)) throw std::invalid_argument("--min-prob must be in [0, 1]");
    opts.drafter.window_rounds = window;
    opts.drafter.min_prob = min_prob;
    if (match_factor < 0 || count_prior < 0) throw std::invalid_argument("--match-factor and --count-prior must be >= 0");
    opts.drafter.match_length_factor = match_factor;
    opts.drafter.count_prior = count_prior;
    opts.drafter.own_min_match = std::max(1, own_min_match);
    opts.drafter.extend_prob = extend_prob;
    opts.drafter.threads = threads;
    opts.drafter.use_global_scope = !vm.count("no-global");
    opts.drafter.use_prompt_scope = !vm.count("no-prompt-scope");
    opts.drafter.use_own_context = !vm.count("no-own");
    opts.policy.mode = drafter::parse_budget_mode(policy_name);
    opts.policy.max_budget = budget;
    if (!(short_frac >= 0 && short_frac <= long_frac && long_frac <= 1)) {
      throw std::invalid_argument("need 0 <= --short-frac <= --long-frac <= 1");
    }
    opts.policy.long_frac = long_frac;
    opts.policy.short_frac = short_frac;
    opts.policy.medium_budget = std::min(medium_budget, budget);
    opts.policy.max_tokens_per_step = max_tokens_per_step;
    opts.policy.max_step_overhead = max_step_overhead;
    if (!cost_file.empty()) opts.policy.cost = drafter::load_cost_model(cost_file);
    if (vm.count("cost-base-us")) {
      if (cost_base < 0) throw std::invalid_argument("--cost-base-us must be >= 0");
      opts.policy.cost.base_us = cost_base;
    }
    if (vm.count("cost-per-token-us")) {
      if (cost_tok < 0) throw std::invalid_argument("--cost-per-token-us must be >= 0");
      opts.policy.cost.per_token_us = cost_tok;
    }
    opts.speculation = !vm.count("no-speculation");
    opts.policy.acceptance_aware = vm.count("acceptance-aware") > 0;
    if (fleet.workers < 1) throw std::invalid_argument("--workers must be >= 1");
    if (routing != "affine" && routing != "random") throw std::invalid_argument("--routing must be affine or random, not '" + routing + "'");
    fleet.routing = routing == "affine" ? rollout::FleetRouting::kAffine : rollout::FleetRouting::kRandom;
    fleet.shared_history = vm.count("shared-history") > 0;
  } catch (const std::exception& e) {
    std::cerr << "longtail-replay: " << e.what() << "\n";
    return 2;
  }

  rollout::ReplayInput in;
  try {
    in = rollout::read_replay_input(input, round_size,
                                    on_error == "stop" ? rollout::OnError::kStop : rollout::OnError::kSkip);
  } catch (const rollout::ReplayInputError& e) {
    std::cerr << "longtail-replay: " << e.what() << "\n";
    return 1;
  }
  if (!stream.endpoint.empty()) {
    std::filesystem::path log = input;
    try {
      if (stream.batches_per_second < 0 || stream.trajectories_per_batch < 0) {
        throw std::invalid_argument("--stream-rate and --stream-batch-size must be >= 0");
      }
      if (!rollout::is_trajectory_log(input)) {  // JSONL: the streamer reads trajectory logs
        log = std::filesystem::temp_directory_path() /
              ("longtail-replay-" + std::to_string(::getpid()) + ".trajlog");
        rollout::write_replay_input_as_log(in, log);
      }
    } catch (const std::exception& e) {
      std::cerr << "longtail-replay: --stream: " << e.what() << "\n";
      return 2;
    }
    std::cerr << "longtail-replay: " << rollout::exec_stream(log, stream) << "\n";
    return 1;
  }
  const bool bar = isatty(STDERR_FILENO) && !vm.count("quiet");
  auto progress = [&](size_t done, size_t total) {
    if (!bar) return;
    const int width = 40;
    const int filled = total ? static_cast<int>(width * done / total) : width;
    std::fprintf(stderr, "\r[%.*s%*s] %zu/%zu rounds", filled, "========================================",
                 width - filled, "", done, total);
    if (done == total) std::fprintf(stderr, "\n");
    std::fflush(stderr);
  };
  if (fleet.workers > 1 || vm.count("shared-history")) {
    try {
      const auto rep = rollout::run_fleet_replay(in, opts, fleet);
      std::cout << rollout::fleet_report_json(rep, fleet) << "\n";
    } catch (const std::exception& e) {
      std::cerr << "longtail-replay: fleet replay failed: " << e.what() << "\n";
      return 1;
    }
    return 0;
  }
  rollout::ReplayReport rep;
  try {
    rep = rollout::run_replay(in, opts, progress);
  } catch (const std::exception& e) {
    std::cerr << "longtail-replay: replay failed: " << e.what() << "\n";
    return 1;
  }
  if (!plot.empty()) {
    std::ofstream svg(plot);
    svg << rollout::report_svg(rep);
    if (!svg) {
      std::cerr << "longtail-replay: cannot write " << plot << "\n";
      return 1;
    }
  }
  std::cout << (vm.count("json") ? rollout::report_json(rep) : rollout::report_table(rep)) << "\n";
  return 0;
}
