// longtail-worker: the rollout worker daemon. Loads the YAML configuration (configs/worker.yaml),
// applies command-line overrides, loads the checkpoint into the chosen backend, binds the trainer
// endpoint and serves until SIGTERM/SIGINT or a SHUTDOWN message, shutting down gracefully.
// Exit codes: 0 clean shutdown, 1 runtime failure, 2 bad configuration or command line.
#include <csignal>
#include <iostream>
#include <optional>

#include <boost/program_options.hpp>
#include <spdlog/spdlog.h>

#include "policy/backend.h"
#include "tools/cli_main.h"
#include "trainer_bridge/worker_config.h"

namespace {

namespace po = boost::program_options;
using namespace longtail;
using tools::InputError;

std::atomic<bool> g_stop{false};
void on_signal(int) { g_stop.store(true); }

std::optional<bridge::WorkerConfig> parse(int argc, char** argv) {
  po::options_description desc("longtail-worker: rollout worker serving a trainer over ZeroMQ\nOptions");
  std::string config, model, backend, endpoint, worker_id, journal_dir, log_level;
  std::vector<std::string> allow_dirs;
  int metrics_port = -1, threads = -1, round_groups = -1;
  int64_t max_message_bytes = -1, max_pending_groups = -1;
  desc.add_options()
      ("help,h", "show this help")
      ("version", "print the version and exit")
      ("config,c", po::value(&config), "YAML configuration file (configs/worker.yaml documents every key)")
      ("model", po::value(&model), "checkpoint directory (HF config.json + safetensors); overrides 'model'")
      ("backend", po::value(&backend), "cpu | cuda; overrides backend.kind")
      ("threads", po::value(&threads), "CPU backend threads (0 = all cores); overrides backend.threads")
      ("endpoint", po::value(&endpoint), "ZeroMQ endpoint to bind (tcp://host:port or ipc://path); overrides bridge.endpoint")
      ("worker-id", po::value(&worker_id), "worker id reported to trainers; overrides worker_id")
      ("journal-dir", po::value(&journal_dir), "directory for un-acked batches; overrides bridge.journal_dir")
      ("max-message-bytes", po::value(&max_message_bytes), "request size limit; overrides bridge.max_message_bytes")
      ("max-pending-groups", po::value(&max_pending_groups), "queued groups limit; overrides bridge.max_pending_groups")
      ("round-groups", po::value(&round_groups), "groups per batch (0 = all submitted); overrides engine.round_groups")
      ("allow-weights-dir", po::value(&allow_dirs)->composing(), "directory UPDATE_WEIGHTS may load from (repeatable); replaces weights.allowed_dirs")
      ("metrics-port", po::value(&metrics_port), "Prometheus /metrics port (0 = off); overrides metrics.port")
      ("log-level", po::value(&log_level), "trace|debug|info|warn|error; overrides log_level");
  po::variables_map vm;
  try {
    po::store(po::parse_command_line(argc, argv, desc), vm);
    po::notify(vm);
  } catch (const po::error& e) {
    throw InputError(std::string(e.what()) + " (see --help)");
  }
  if (vm.count("help")) {
    std::cout << desc << "\n";
    return std::nullopt;
  }

  bridge::WorkerConfig cfg;
  try {
    cfg = config.empty() ? bridge::default_worker_config() : bridge::load_worker_config(config);
    auto& w = cfg.worker;
    if (!model.empty()) w.model_dir = model;
    if (!backend.empty()) w.backend.kind = backend;
    if (threads >= 0) w.backend.num_threads = threads;
    if (!endpoint.empty()) w.bridge.endpoint = endpoint;
    if (!worker_id.empty()) w.bridge.worker_id = worker_id;
    if (!journal_dir.empty()) w.bridge.journal_dir = journal_dir;
    if (max_message_bytes >= 0) w.bridge.max_message_bytes = static_cast<size_t>(max_message_bytes);
    if (max_pending_groups >= 0) w.max_pending_groups = static_cast<size_t>(max_pending_groups);
    if (round_groups >= 0) w.engine.round_groups = round_groups;
    if (!allow_dirs.empty()) w.allowed_weight_dirs.assign(allow_dirs.begin(), allow_dirs.end());
    if (metrics_port >= 0) w.metrics_port = metrics_port;
    if (!log_level.empty()) cfg.log_level = log_level;
    w.software_version = tools::version_string();  // HELLO, STATS and longtail_build_info
    if (w.model_dir.empty()) throw bridge::ConfigError("no model: set 'model' in the config or pass --model");
    if (w.metrics_port < 0 || w.metrics_port > 65535)
      throw bridge::ConfigError("metrics.port (--metrics-port) must be 0 (off) or in 1..65535, got " + std::to_string(w.metrics_port));
    if (w.backend.kind != "cpu" && w.backend.kind != "cuda")
      throw bridge::ConfigError("backend.kind must be cpu or cuda, got '" + w.backend.kind + "'");
    const auto level = spdlog::level::from_str(cfg.log_level);
    if (level == spdlog::level::off && cfg.log_level != "off") throw bridge::ConfigError("unknown log level '" + cfg.log_level + "'");
    spdlog::set_level(level);
    bridge::resolve_curve_keys(cfg);
  } catch (const bridge::ConfigError& e) {
    throw InputError(std::string("configuration error: ") + e.what());
  }
  return cfg;
}

int run(bridge::WorkerConfig cfg) {
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGINT, &sa, nullptr);

  auto& w = cfg.worker;
  policy::BackendOptions bo = w.backend;
  spdlog::info("worker: loading {} on the {} backend", w.model_dir.string(), bo.kind);
  auto engine = std::make_unique<rollout::Engine>(policy::make_backend(w.model_dir, bo), w.engine);
  bridge::Worker worker(w, std::move(engine));
  return worker.run(&g_stop);
}

}  // namespace

int main(int argc, char** argv) { return longtail::tools::cli_main("longtail-worker", argc, argv, parse, run); }
