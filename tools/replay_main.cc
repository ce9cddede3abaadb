// longtail-replay: replays recorded rollouts (JSONL or a trajectory log) through the rollout engine
// without a model (rollout/replay_engine.h: the real engine over the accounting backend, trace-
// forced: continuous batching, admissions, partial rollouts, drafts and trees are the engine's) or,
// with --simulation static, through the drafter alone in one static batch per round
// (rollout/replay_simulation.h), and reports drafting quality and projected round makespans.
// With --stream ENDPOINT it instead re-sends the rollouts to a trainer as BATCH messages (in
// process, as longtail-stream does); with --export jsonl it writes them as rollout JSONL.
// Exit codes: 0 ok, 1 failure, 2 bad command line or input, 3 (--stream) not every batch acked.
#include <unistd.h>

#include <csignal>
#include <functional>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <optional>

#include <boost/program_options.hpp>
#include <spdlog/spdlog.h>

#include "policy/checkpoint.h"
#include "rollout/replay_engine.h"
#include "rollout/replay_fleet.h"
#include "rollout/replay_report.h"
#include "rollout/replay_simulation.h"
#include "tools/cli_main.h"
#include "tools/recorded_stream.h"
#include "tools/trajectory_export.h"

namespace {

namespace po = boost::program_options;
using namespace longtail;
using tools::InputError;

std::atomic<bool> g_stop{false};
void on_signal(int) { g_stop.store(true); }

struct Args {
  std::string input, plot, export_format;
  int32_t round_size = 64;
  rollout::OnError on_error = rollout::OnError::kSkip;
  rollout::ReplayOptions replay;
  rollout::EngineReplayOptions engine;
  bool static_batches = false;  // --simulation static
  rollout::FleetReplayOptions fleet;
  bool as_fleet = false;  // --workers > 1 or --shared-history
  bridge::StreamOptions stream;
  bool json = false, quiet = false;
};

std::optional<Args> parse(int argc, char** argv) {
  Args a;
  std::string policy_name = "length-aware", on_error = "skip", cost_file, endpoint, routing, simulation = "engine";
  int32_t own_min_match = 1, window = 8, budget = 16, threads = 1, medium_budget = 4, max_tokens_per_step = 0;
  double long_frac = 0.5, short_frac = 0.15, extend_prob = 1.0, min_prob = 0.1, match_factor = 1.0, count_prior = 0.0, cost_base = -1, cost_tok = -1, max_step_overhead = 1.0;
  double stream_rate = 0;
  size_t stream_batch = 0;
  po::options_description desc(
      "longtail-replay INPUT [options]\n"
      "INPUT: JSONL, one rollout per line in generation order: {\"prompt_id\", \"sample\", \"step\"?,\n"
      "\"prompt_tokens\", \"response_tokens\"}, or a longtail trajectory log (detected by its magic)");
  desc.add_options()
      ("help,h", "this help")
      ("version", "print the version and exit")
      ("input", po::value(&a.input), "input file")
      ("simulation", po::value(&simulation)->default_value("engine"),
       "engine: the rollout engine over the accounting backend (continuous batching, admissions, partial rollouts); "
       "static: the drafter alone, one static batch per round")
      ("model", po::value(&a.engine.model), "engine: checkpoint directory whose config.json sets vocabulary, context "
       "and EOS ids (default: one that holds every recorded token and length)")
      ("max-running-sequences", po::value(&a.engine.max_running_sequences)->default_value(256),
       "engine: sequences in one forward at most (EngineOptions::max_running_sequences)")
      ("overprovision", po::value(&a.engine.overprovision)->default_value(1.0),
       "engine: partial rollouts, ceil(f x N) groups in flight (1 = off)")
      ("round-groups", po::value(&a.engine.round_groups)->default_value(0),
       "engine: groups per emitted batch N (0 = the groups of the first round)")
      ("max-new-tokens", po::value(&a.engine.max_new_tokens)->default_value(0),
       "engine: every group's max_new_tokens (0 = the longest recorded response)")
      ("max-kv-tokens", po::value(&a.engine.max_kv_tokens)->default_value(0),
       "engine: KV cache capacity in positions (0 = unlimited)")
      ("kv-block-size", po::value(&a.engine.kv_block_size)->default_value(16), "engine: KV block size in positions")
      ("round-size", po::value(&a.round_size)->default_value(64), "prompts per round for lines without \"step\" (0 = one round)")
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
      ("cost-model", po::value(&cost_file), "YAML cost model, FILE or FILE#ENTRY (configs/cost_model*.yaml)")
      ("cost-base-us", po::value(&cost_base), "c_base in t = c_base + c_tok * tokens (us)")
      ("cost-per-token-us", po::value(&cost_tok), "c_tok (us per verified token)")
      ("no-speculation", "baseline: no drafting at all")
      ("acceptance-aware", "shrink draft budgets where drafts keep failing (drafter/speculation_policy.h)")
      ("chains", "draft chains instead of token trees (the engine's default, SpeculationPolicyOptions::token_trees)")
      ("no-global", "do not draft from the global history")
      ("no-prompt-scope", "do not draft from the same prompt's history")
      ("no-own", "do not draft from the rollout's own context")
      ("threads", po::value(&threads)->default_value(1), "drafting threads")
      ("on-error", po::value(&on_error)->default_value("skip"), "bad input line: skip or stop")
      ("json", "print one JSON object instead of the table")
      ("plot", po::value(&a.plot), "write acceptance and speedup by length bucket to this SVG file")
      ("quiet,q", "no progress bar or warnings")
      ("workers", po::value(&a.fleet.workers)->default_value(1), "replay as a fleet of K workers, each drafting from the history it generated (rollout/replay_fleet.h)")
      ("routing", po::value(&routing)->default_value("affine"), "--workers: affine (consistent hashing of prompt_id with bounded load, as longtail.fleet) or random")
      ("shared-history", "--workers: every worker also indexes the others' rollouts at round ends (the fleet's HISTORY messages)")
      ("route-max-new-tokens", po::value(&a.fleet.max_new_tokens)->default_value(4096), "--workers: per-sample load estimate of the router (tokens)")
      ("export", po::value(&a.export_format), "instead of replaying, write the rollouts to stdout in this format: jsonl (rollout JSONL; from a trajectory log with every recorded field)")
      ("stream", po::value(&endpoint), "instead of replaying, send the rollouts to a trainer as BATCH messages from this endpoint (bound; see trainer_bridge/PROTOCOL.md)")
      ("stream-rate", po::value(&stream_rate)->default_value(0), "--stream: batches per second (0 = as fast as credit allows)")
      ("stream-batch-size", po::value(&stream_batch)->default_value(0), "--stream: trajectories per batch (0 = one batch per round)");
  po::positional_options_description pos;
  pos.add("input", 1);
  po::variables_map vm;
  try {
    po::store(po::command_line_parser(argc, argv).options(desc).positional(pos).run(), vm);
    po::notify(vm);
  } catch (const po::error& e) {
    throw InputError(std::string(e.what()) + " (see --help)");
  }
  if (vm.count("help")) {
    std::cout << desc << "\n";
    return std::nullopt;
  }
  if (a.input.empty()) throw InputError("no input file given (see --help)");
  a.json = vm.count("json") > 0;
  a.quiet = vm.count("quiet") > 0;
  rollout::ReplayOptions& opts = a.replay;
  {
    if (on_error != "skip" && on_error != "stop") {
      throw InputError("--on-error must be skip or stop, not '" + on_error + "'");
    }
    if (window < 1) throw InputError("--window must be >= 1");
    if (budget < 0 || medium_budget < 0) throw InputError("--budget must be >= 0");
    if (!(min_prob >= 0 && min_prob <= 1)) throw InputError("--min-prob must be in [0, 1]");
    opts.drafter.window_rounds = window;
    opts.drafter.min_prob = min_prob;
    if (match_factor < 0 || count_prior < 0) throw InputError("--match-factor and --count-prior must be >= 0");
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
      throw InputError("need 0 <= --short-frac <= --long-frac <= 1");
    }
    opts.policy.long_frac = long_frac;
    opts.policy.short_frac = short_frac;
    opts.policy.medium_budget = std::min(medium_budget, budget);
    opts.policy.max_tokens_per_step = max_tokens_per_step;
    opts.policy.max_step_overhead = max_step_overhead;
    if (!cost_file.empty()) {
      try {
        opts.policy.cost = drafter::load_cost_model(cost_file);
      } catch (const std::runtime_error& e) {
        throw InputError(e.what());
      }
    }
    if (vm.count("cost-base-us")) {
      if (cost_base < 0) throw InputError("--cost-base-us must be >= 0");
      opts.policy.cost.base_us = cost_base;
    }
    if (vm.count("cost-per-token-us")) {
      if (cost_tok < 0) throw InputError("--cost-per-token-us must be >= 0");
      opts.policy.cost.per_token_us = cost_tok;
    }
    opts.speculation = !vm.count("no-speculation");
    opts.policy.acceptance_aware = vm.count("acceptance-aware") > 0;
    if (vm.count("chains")) opts.policy.token_trees = false;
    if (a.fleet.workers < 1) throw InputError("--workers must be >= 1");
    if (routing != "affine" && routing != "random") throw InputError("--routing must be affine or random, not '" + routing + "'");
    a.fleet.routing = routing == "affine" ? rollout::FleetRouting::kAffine : rollout::FleetRouting::kRandom;
    a.fleet.shared_history = vm.count("shared-history") > 0;
    a.as_fleet = a.fleet.workers > 1 || a.fleet.shared_history;
  }
  a.on_error = on_error == "stop" ? rollout::OnError::kStop : rollout::OnError::kSkip;
  if (simulation != "engine" && simulation != "static") {
    throw InputError("--simulation must be engine or static, not '" + simulation + "'");
  }
  a.static_batches = simulation == "static";
  if (a.engine.max_running_sequences < 1) throw InputError("--max-running-sequences must be >= 1");
  if (!(a.engine.overprovision >= 1)) throw InputError("--overprovision must be >= 1");
  if (a.engine.round_groups < 0 || a.engine.max_new_tokens < 0 || a.engine.max_kv_tokens < 0) {
    throw InputError("--round-groups, --max-new-tokens and --max-kv-tokens must be >= 0");
  }
  if (a.engine.kv_block_size < 1) throw InputError("--kv-block-size must be >= 1");
  if (!a.export_format.empty() && a.export_format != "jsonl") {
    throw InputError("--export must be jsonl, not '" + a.export_format + "'");
  }
  if (!a.export_format.empty() && !endpoint.empty()) throw InputError("give --export or --stream, not both");
  if (stream_rate < 0) throw InputError("--stream-rate must be >= 0");
  a.stream.session.endpoint = endpoint;
  a.stream.session.worker_id = "replay-0";
  a.stream.batches_per_second = stream_rate;
  a.stream.trajectories_per_batch = stream_batch;
  return a;
}


int run(const Args& a) {
  if (a.quiet) spdlog::set_level(spdlog::level::err);
  try {
    if (!a.export_format.empty()) {
      tools::export_jsonl(a.input, a.round_size, a.on_error, std::cout);
      std::cout.flush();
      return std::cout ? 0 : 1;
    }
    if (!a.stream.session.endpoint.empty()) {
      std::signal(SIGTERM, on_signal);
      std::signal(SIGINT, on_signal);
      return tools::stream_recorded(a.input, a.stream, a.round_size, a.on_error, &g_stop).all_acked ? 0 : 3;
    }
  } catch (const rollout::ReplayInputError& e) {
    throw InputError(e.what());
  } catch (const rollout::TrajectoryLogError& e) {
    throw InputError(e.what());
  }
  rollout::ReplayInput in;
  try {
    in = rollout::read_replay_input(a.input, a.round_size, a.on_error);
  } catch (const rollout::ReplayInputError& e) {
    throw InputError(e.what());
  }
  const bool bar = isatty(STDERR_FILENO) && !a.quiet;
  auto progress = [&](size_t done, size_t total) {
    if (!bar) return;
    const int width = 40;
    const int filled = total ? static_cast<int>(width * done / total) : width;
    std::fprintf(stderr, "\r[%.*s%*s] %zu/%zu rounds", filled, "========================================",
                 width - filled, "", done, total);
    if (done == total) std::fprintf(stderr, "\n");
    std::fflush(stderr);
  };
  auto replay = [&](const rollout::ReplayInput& part, const std::function<void(size_t, size_t)>& bar_of) {
    if (a.static_batches) return rollout::run_replay(part, a.replay, bar_of);
    try {
      return rollout::run_engine_replay(part, a.replay, a.engine, bar_of);
    } catch (const std::invalid_argument& e) {  // options or input the engine refuses, by name
      throw InputError(e.what());
    } catch (const policy::LoadError& e) {      // --model
      throw InputError(e.what());
    }
  };
  if (a.as_fleet) {
    const auto rep = rollout::run_fleet_replay(in, a.fleet, [&](const rollout::ReplayInput& part) { return replay(part, {}); });
    std::cout << rollout::fleet_report_json(rep, a.fleet) << "\n";
    return 0;
  }
  const rollout::ReplayReport rep = replay(in, progress);
  if (!a.plot.empty()) {
    std::ofstream svg(a.plot);
    svg << rollout::report_svg(rep);
    if (!svg) throw std::runtime_error("cannot write " + a.plot);
  }
  std::cout << (a.json ? rollout::report_json(rep) : rollout::report_table(rep)) << "\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return longtail::tools::cli_main("longtail-replay", argc, argv, parse, run); }
