// longtail-worker: the rollout worker daemon. Loads the YAML configuration (configs/worker.yaml),
// applies command-line overrides (every engine option as a flag, tools/engine_flags.h, over the
// YAML's engine: and backend: keys), checks the whole configuration before the model loads, loads
// the checkpoint into the chosen backend, binds the trainer endpoint and serves until SIGTERM/SIGINT
// or a SHUTDOWN message, shutting down gracefully.
// Exit codes: 0 clean shutdown, 1 runtime failure, 2 bad configuration or command line.
#include <iostream>
#include <optional>

#include <boost/program_options.hpp>
#include <spdlog/spdlog.h>

#include "policy/backend.h"
#include "tools/cli_flags.h"
#include "tools/cli_main.h"
#include "tools/engine_flags.h"
#include "tools/version.h"
#include "trainer_bridge/worker_config.h"

namespace {

namespace po = boost::program_options;
using namespace longtail;
using tools::InputError;

std::optional<bridge::WorkerConfig> parse(int argc, char** argv) {
  po::options_description desc("longtail-worker: rollout worker serving a trainer over ZeroMQ\nOptions");
  std::string config, model, endpoint, worker_id, journal_dir, log_level;
  std::vector<std::string> allow_dirs;
  int metrics_port = -1;
  int64_t max_message_bytes = -1, max_pending_groups = -1;
  desc.add_options()
      ("help,h", "show this help")
      ("version", "print the version and exit")
      ("config,c", po::value(&config), "YAML configuration file (configs/worker.yaml documents every key)")
      ("model", po::value(&model), "checkpoint directory (HF config.json + safetensors); overrides 'model'")
      ("endpoint", po::value(&endpoint), "ZeroMQ endpoint to bind (tcp://host:port or ipc://path); overrides bridge.endpoint")
      ("worker-id", po::value(&worker_id), "worker id reported to trainers; overrides worker_id")
      ("journal-dir", po::value(&journal_dir), "directory for un-acked batches; overrides bridge.journal_dir")
      ("max-message-bytes", po::value(&max_message_bytes), "request size limit; overrides bridge.max_message_bytes")
      ("max-pending-groups", po::value(&max_pending_groups), "queued groups limit; overrides bridge.max_pending_groups")
      ("allow-weights-dir", po::value(&allow_dirs)->composing(), "directory UPDATE_WEIGHTS may load from (repeatable); replaces weights.allowed_dirs")
      ("metrics-port", po::value(&metrics_port), "Prometheus /metrics port (0 = off); overrides metrics.port")
      ("log-level", po::value(&log_level), "trace|debug|info|warn|error; overrides log_level");
  // Engine and backend flags override the YAML's engine: and backend: keys of the same name.
  const tools::EngineFlags engine_flags(tools::common_engine_aliases());
  desc.add(engine_flags.options(rollout::EngineSettings{}));
  const auto parsed = tools::parse_flags(argc, argv, desc);
  if (!parsed) return std::nullopt;
  const po::variables_map& vm = *parsed;

  bridge::WorkerConfig cfg;
  try {
    cfg = config.empty() ? bridge::default_worker_config() : bridge::load_worker_config(config);
    auto& w = cfg.worker;
    rollout::EngineSettings settings{w.engine, w.backend};
    engine_flags.apply(vm, settings);
    w.engine = settings.engine;
    w.backend = settings.backend;
    w.software_version = tools::version_string();
    if (!model.empty()) w.model_dir = model;
    if (!endpoint.empty()) w.bridge.endpoint = endpoint;
    if (!worker_id.empty()) w.bridge.worker_id = worker_id;
    if (!journal_dir.empty()) w.bridge.journal_dir = journal_dir;
    if (max_message_bytes >= 0) w.bridge.max_message_bytes = static_cast<size_t>(max_message_bytes);
    if (max_pending_groups >= 0) w.max_pending_groups = static_cast<size_t>(max_pending_groups);
    if (!allow_dirs.empty()) w.allowed_weight_dirs.assign(allow_dirs.begin(), allow_dirs.end());
    if (metrics_port >= 0) w.metrics_port = metrics_port;
    if (!log_level.empty()) cfg.log_level = log_level;
    bridge::check_worker_config(cfg);
    spdlog::set_level(spdlog::level::from_str(cfg.log_level));
    bridge::resolve_curve_keys(cfg);
  } catch (const bridge::ConfigError& e) {
    throw InputError(std::string("configuration error: ") + e.what());
  }
  return cfg;
}

int run(bridge::WorkerConfig cfg) {
  const std::atomic<bool>* stop = tools::stop_on_signals();
  auto& w = cfg.worker;
  policy::BackendOptions bo = w.backend;
  spdlog::info("worker: loading {} on the {} backend", w.model_dir.string(), bo.kind);
  auto engine = std::make_unique<rollout::Engine>(tools::make_engine_backend(w.model_dir, bo), w.engine);
  bridge::Worker worker(w, std::move(engine));
  return worker.run(stop);
}

}  // namespace

int main(int argc, char** argv) { return longtail::tools::cli_main("longtail-worker", argc, argv, parse, run); }
