// YAML -> WorkerOptions; see worker_config.h and configs/worker.yaml.
#include "trainer_bridge/worker_config.h"

#include <set>

#include <yaml-cpp/yaml.h>

#include "trainer_bridge/transport.h"

namespace longtail::bridge {
namespace {

class Section {
 public:
  Section(const YAML::Node& n, std::string path, const std::filesystem::path& base)
      : node_(n), path_(std::move(path)), base_(base) {
    if (n && !n.IsNull() && !n.IsMap()) throw ConfigError(where("") + " must be a mapping");
  }
  ~Section() noexcept(false) {
    if (std::uncaught_exceptions() || !node_ || !node_.IsMap()) return;
    for (const auto& kv : node_) {
      const auto k = kv.first.as<std::string>();
      if (!seen_.count(k)) throw ConfigError("unknown configuration key '" + where(k) + "'");
    }
  }
  template <typename T>
  void get(const std::string& key, T& out) {
    seen_.insert(key);
    if (!node_ || !node_.IsMap()) return;
    const auto v = node_[key];
    if (!v || v.IsNull()) return;
    try {
      out = v.as<T>();
    } catch (const YAML::Exception&) {
      throw ConfigError("configuration key '" + where(key) + "' has a value of the wrong type");
    }
  }
  void path(const std::string& key, std::filesystem::path& out) {
    std::string s;
    get(key, s);
    if (!s.empty()) out = resolve(s);
  }
  void paths(const std::string& key, std::vector<std::filesystem::path>& out) {
    std::vector<std::string> v;
    get(key, v);
    if (!v.empty()) out.clear();
    for (const auto& s : v) out.push_back(resolve(s));
  }
  Section sub(const std::string& key) {
    seen_.insert(key);
    return Section(node_ && node_.IsMap() ? node_[key] : YAML::Node(), where(key), base_);
  }
  std::string where(const std::string& k) const { return path_.empty() ? k : (k.empty() ? path_ : path_ + "." + k); }

 private:
  std::filesystem::path resolve(const std::string& s) const {
    std::filesystem::path p(s);
    return p.is_relative() && !base_.empty() ? base_ / p : p;
  }
  YAML::Node node_;
  std::string path_;
  std::filesystem::path base_;
  std::set<std::string> seen_;
};

void parse(const YAML::Node& root, const std::filesystem::path& base, WorkerConfig& c) {
  auto& w = c.worker;
  Section top(root, "", base);
  top.get("worker_id", w.bridge.worker_id);
  top.path("model", w.model_dir);
  top.get("log_level", c.log_level);
  {
    Section s = top.sub("backend");
    s.get("kind", w.backend.kind);
    s.get("threads", w.backend.num_threads);
    s.get("max_kv_tokens", w.backend.max_kv_tokens);
    s.get("kv_memory_fraction", w.backend.kv_memory_fraction);
    s.get("kv_block_size", w.backend.kv_block_size);
    s.get("device", w.backend.device);
    s.get("deterministic", w.backend.deterministic);
  }
  {
    Section s = top.sub("engine");
    s.get("round_groups", w.engine.round_groups);
    s.get("overprovision", w.engine.overprovision);
    s.get("max_running_sequences", w.engine.max_running_sequences);
    s.get("max_tokens_per_forward", w.engine.max_tokens_per_forward);
    s.get("importance_cap", w.engine.importance_cap);
    s.get("token_ratio_cap", w.engine.token_ratio_cap);
    s.path("trajectory_log", w.engine.trajectory_log);
    Section sp = s.sub("speculation");
    drafter::SpeculationPolicyOptions& b = w.engine.budgets;
    bool enabled = b.mode != drafter::BudgetMode::kOff;
    bool length_aware = b.mode != drafter::BudgetMode::kFixed;
    double cost_base_us = 0, cost_per_token_us = 0;  // 0 = the cost model's defaults
    sp.get("enabled", enabled);
    sp.get("max_budget", b.max_budget);
    sp.get("max_tokens_per_step", b.max_tokens_per_step);
    sp.get("cost_base_us", cost_base_us);
    sp.get("cost_per_token_us", cost_per_token_us);
    sp.get("history_window_rounds", w.engine.drafter.window_rounds);
    sp.get("length_aware", length_aware);
    sp.get("acceptance_aware", b.acceptance_aware);
    b.mode = !enabled       ? drafter::BudgetMode::kOff
             : length_aware ? drafter::BudgetMode::kLengthAware
                            : drafter::BudgetMode::kFixed;
    if (cost_base_us > 0) b.cost.base_us = cost_base_us;
    if (cost_per_token_us > 0) b.cost.per_token_us = cost_per_token_us;
  }
  {
    Section s = top.sub("bridge");
    s.get("endpoint", w.bridge.endpoint);
    s.get("max_message_bytes", w.bridge.max_message_bytes);
    s.get("max_pending_groups", w.max_pending_groups);
    s.get("max_pending_samples", w.max_pending_samples);
    s.get("max_pending_tokens", w.max_pending_tokens);
    s.get("max_outbox_batches", w.bridge.max_outbox_batches);
    s.get("heartbeat_interval_s", w.bridge.heartbeat_interval_s);
    s.get("peer_timeout_s", w.bridge.peer_timeout_s);
    s.get("ack_timeout_s", w.bridge.ack_timeout_s);
    s.path("journal_dir", w.bridge.journal_dir);
    s.get("journal_fsync", w.bridge.journal_fsync);
    Section cv = s.sub("curve");
    cv.get("enabled", w.bridge.curve.enabled);
    cv.path("server_public_key_file", c.curve_server_public_key_file);
    cv.path("server_secret_key_file", c.curve_server_secret_key_file);
    cv.path("allowed_clients_file", c.curve_allowed_clients_file);
  }
  {
    Section s = top.sub("weights");
    s.paths("allowed_dirs", w.allowed_weight_dirs);
  }
  {
    Section s = top.sub("shutdown");
    s.get("finish_in_flight", w.finish_in_flight_on_shutdown);
    s.get("timeout_s", w.shutdown_timeout_s);
    s.get("ack_wait_s", w.shutdown_ack_wait_s);
  }
  {
    Section s = top.sub("metrics");
    s.get("port", w.metrics_port);
    s.get("bind", w.metrics_bind);
  }
}

}  // namespace

WorkerConfig default_worker_config() {
  WorkerConfig c;
  c.worker.bridge.endpoint = "tcp://127.0.0.1:5555";
  return c;
}

WorkerConfig load_worker_config(const std::filesystem::path& file) {
  WorkerConfig c = default_worker_config();
  YAML::Node root;
  try {
    root = YAML::LoadFile(file.string());
  } catch (const YAML::BadFile&) {
    throw ConfigError("cannot read configuration file " + file.string());
  } catch (const YAML::Exception& e) {
    throw ConfigError("configuration file " + file.string() + " is not valid YAML: " + e.what());
  }
  try {
    parse(root, file.parent_path(), c);
  } catch (const ConfigError& e) {
    throw ConfigError(file.string() + ": " + e.what());
  }
  return c;
}

void resolve_curve_keys(WorkerConfig& c) {
  auto& cv = c.worker.bridge.curve;
  if (!cv.enabled) return;
  if (c.curve_server_public_key_file.empty() || c.curve_server_secret_key_file.empty() || c.curve_allowed_clients_file.empty())
    throw ConfigError("bridge.curve.enabled needs server_public_key_file, server_secret_key_file and allowed_clients_file");
  try {
    cv.public_key = read_key_file(c.curve_server_public_key_file);
    cv.secret_key = read_key_file(c.curve_server_secret_key_file);
    cv.allowed_clients = read_allow_list(c.curve_allowed_clients_file);
  } catch (const std::runtime_error& e) {
    throw ConfigError(e.what());
  }
  if (cv.allowed_clients.empty()) throw ConfigError("CURVE allow-list " + c.curve_allowed_clients_file.string() + " names no key");
}

}  // namespace longtail::bridge
