// longtail-replay: replays recorded rollouts (JSONL or a trajectory log) through the rollout engine
// without a model (rollout/replay_engine.h: the real engine over the accounting backend, trace-
// forced: continuous batching, admissions, partial rollouts, drafts and trees are the engine's) or,
// with --simulation static, through the drafter alone in one static batch per round
// (rollout/replay_simulation.h), and reports drafting quality and projected round makespans.
// With --stream ENDPOINT it instead re-sends the rollouts to a trainer as BATCH messages (in
// process, as longtail-stream does); with --export jsonl it writes them as rollout JSONL.
// Exit codes: 0 ok, 1 failure, 2 bad command line or input, 3 (--stream) not every batch acked.
#include <unistd.h>

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
#include "rollout/engine_options_io.h"
#include "tools/cli_flags.h"
#include "tools/cli_main.h"
#include "tools/engine_flags.h"
#include "tools/recorded_stream.h"
#include "tools/trajectory_export.h"

namespace {

namespace po = boost::program_options;
using namespace longtail;
using tools::InputError;

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

// The replay's older flag names, as aliases of the option table's keys (tools/engine_flags.h).
std::vector<tools::FlagAlias> replay_aliases() {
  return {
      {"window", "drafter.window_rounds", "", ""},
      {"budget", "speculation.max_budget", "", "max draft tokens (tree nodes) per sequence per step"},
      {"medium-budget", "speculation.medium_budget", "", ""},
      {"long-frac", "speculation.long_frac", "", ""},
      {"short-frac", "speculation.short_frac", "", ""},
      {"policy", "speculation.mode", "", "budget policy: fixed, length-aware or off"},
      {"min-prob", "drafter.min_prob", "", ""},
      {"match-factor", "drafter.match_length_factor", "", ""},
      {"own-min-match", "drafter.own_min_match", "", ""},
      {"extend-prob", "drafter.extend_prob", "", ""},
      {"count-prior", "drafter.count_prior", "", ""},
      {"max-tokens-per-step", "speculation.max_tokens_per_step", "", ""},
      {"max-step-overhead", "speculation.max_step_overhead", "", ""},
      {"cost-model", "speculation.cost_model", "", "YAML cost model, FILE or FILE#ENTRY (configs/cost_model*.yaml)"},
      {"cost-base-us", "speculation.cost_base_us", "", ""},
      {"cost-per-token-us", "speculation.cost_per_token_us", "", ""},
      {"no-speculation", "speculation.enabled", "false", "baseline: no drafting at all"},
      {"acceptance-aware", "speculation.acceptance_aware", "true", ""},
      {"chains", "speculation.token_trees", "false", "draft chains instead of token trees"},
      {"no-global", "drafter.use_global_scope", "false", "do not draft from the global history"},
      {"no-prompt-scope", "drafter.use_prompt_scope", "false", "do not draft from the same prompt's history"},
      {"no-own", "drafter.use_own_context", "false", "do not draft from the rollout's own context"},
      {"threads", "drafter.threads", "", "drafting threads"},
      {"max-kv-tokens", "backend.max_kv_tokens", "", "engine model: KV capacity in positions (0 = unlimited)"},
      {"kv-block-size", "backend.kv_block_size", "", ""},
  };
}

std::optional<Args> parse(int argc, char** argv) {
  Args a;
  std::string on_error = "skip", endpoint, routing, simulation = "engine", price_model;
  double stream_rate = 0;
  size_t stream_batch = 0;
  rollout::EngineSettings settings;
  // The engine options the replay uses: drafting, budgets and the cost model, and the engine
  // model's batching and KV (round_groups is the replay's own: 0 means the first round's groups).
  // Measured step times (refit) do not exist here; the backend is always the accounting one.
  const tools::EngineFlags engine_flags(
      replay_aliases(),
      {"speculation.", "drafter.", "max_running_sequences", "overprovision", "backend.max_kv_tokens",
       "backend.kv_block_size"},
      {"speculation.refit_cost_model", "speculation.rls_forgetting"}, rollout::OptionScope::kTraceForced);
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
      ("round-groups", po::value(&a.engine.round_groups)->default_value(0),
       "engine: groups per emitted batch N (0 = the groups of the first round)")
      ("max-new-tokens", po::value(&a.engine.max_new_tokens)->default_value(0),
       "engine: every group's max_new_tokens (0 = the longest recorded response)")
      ("round-size", po::value(&a.round_size)->default_value(64), "prompts per round for lines without \"step\" (0 = one round)")
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
      ("stream-batch-size", po::value(&stream_batch)->default_value(0), "--stream: trajectories per batch (0 = one batch per round)")
      ("price-cost-model", po::value(&price_model), "engine: price the forwards with this cost model (FILE or FILE#ENTRY, "
       "configs/cost_model*.yaml) while the budgets keep theirs (--cost-model): budgets that believe one model on a "
       "device that follows another; the report's cost model stays the budgets'");
  desc.add(engine_flags.options(settings));
  po::positional_options_description pos;
  pos.add("input", 1);
  const auto vm = tools::parse_flags(argc, argv, desc, {}, &pos);
  if (!vm) return std::nullopt;
  if (a.input.empty()) throw InputError("no input file given (see --help)");
  a.json = vm->count("json") > 0;
  a.quiet = vm->count("quiet") > 0;
  engine_flags.apply(*vm, settings);
  rollout::ReplayOptions& opts = a.replay;
  opts.drafter = settings.engine.drafter;
  opts.policy = rollout::effective_budgets(settings.engine);
  opts.speculation = rollout::speculation_enabled(settings.engine);
  a.engine.max_running_sequences = settings.engine.max_running_sequences;
  a.engine.overprovision = settings.engine.overprovision;
  a.engine.max_kv_tokens = settings.backend.max_kv_tokens;
  a.engine.kv_block_size = settings.backend.kv_block_size;
  if (!price_model.empty()) {
    try {
      a.engine.price = drafter::load_cost_model(price_model);
    } catch (const std::runtime_error& e) {
      throw InputError(std::string("--price-cost-model: ") + e.what());
    }
  }
  if (on_error != "skip" && on_error != "stop") {
    throw InputError("--on-error must be skip or stop, not '" + on_error + "'");
  }
  if (a.fleet.workers < 1) throw InputError("--workers must be >= 1");
  if (routing != "affine" && routing != "random") throw InputError("--routing must be affine or random, not '" + routing + "'");
  a.fleet.routing = routing == "affine" ? rollout::FleetRouting::kAffine : rollout::FleetRouting::kRandom;
  a.fleet.shared_history = vm->count("shared-history") > 0;
  a.as_fleet = a.fleet.workers > 1 || a.fleet.shared_history;
  a.on_error = on_error == "stop" ? rollout::OnError::kStop : rollout::OnError::kSkip;
  if (simulation != "engine" && simulation != "static") {
    throw InputError("--simulation must be engine or static, not '" + simulation + "'");
  }
  a.static_batches = simulation == "static";
  if (a.static_batches && a.engine.price) {
    throw InputError("--price-cost-model prices the engine model's forwards; it needs --simulation engine");
  }
  if (a.engine.round_groups < 0 || a.engine.max_new_tokens < 0) {
    throw InputError("--round-groups and --max-new-tokens must be >= 0");
  }
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
      return tools::stream_recorded(a.input, a.stream, a.round_size, a.on_error, tools::stop_on_signals()).all_acked
                 ? 0
                 : 3;
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
