// YAML -> WorkerOptions; see worker_config.h and configs/worker.yaml. The `backend:` and `engine:`
// sections go through the engine option table (rollout/engine_options_io.h), the one mapping of
// text to engine settings the tools' flags use too; the worker's own sections are read here with
// the same error shape: the YAML path, the expected type or range, and the value found.
#include "trainer_bridge/worker_config.h"

#include <cmath>
#include <limits>
#include <set>
#include <type_traits>

#include <spdlog/spdlog.h>
#include <yaml-cpp/yaml.h>

#include "rollout/engine_options_io.h"
#include "trainer_bridge/transport.h"

namespace longtail::bridge {
namespace {

// What a YAML node holds, for "got ..." in an error.
std::string shown(const YAML::Node& v) {
  if (v.IsScalar()) return "'" + v.Scalar() + "'";
  if (v.IsSequence()) return "a list";
  if (v.IsMap()) return "a mapping";
  return "nothing";
}

template <typename T>
std::string expected_type() {
  if constexpr (std::is_same_v<T, bool>) return "a bool (true/false)";
  else if constexpr (std::is_integral_v<T> && std::is_unsigned_v<T>) return "a non-negative integer";
  else if constexpr (std::is_integral_v<T>) return "an integer";
  else if constexpr (std::is_floating_point_v<T>) return "a number";
  else if constexpr (std::is_same_v<T, std::string>) return "a string";
  else return "a list of strings";
}

ConfigError expects(const std::string& where, const std::string& expected, const YAML::Node& v) {
  return ConfigError("configuration key '" + where + "' expects " + expected + ", got " + shown(v));
}

class Section {
 public:
  Section(const YAML::Node& n, std::string path, const std::filesystem::path& base)
      : node_(n), path_(std::move(path)), base_(base) {
    if (n && !n.IsNull() && !n.IsMap()) throw expects(path_, "a mapping", n);
  }
  ~Section() noexcept(false) {
    if (std::uncaught_exceptions() || !node_ || !node_.IsMap()) return;
    for (const auto& kv : node_) {
      const auto k = kv.first.as<std::string>();
      if (!seen_.count(k)) throw ConfigError("unknown configuration key '" + where(k) + "'");
    }
  }
  // Returns whether the key was given (a null value counts as not given).
  template <typename T>
  bool get(const std::string& key, T& out) {
    seen_.insert(key);
    if (!node_ || !node_.IsMap()) return false;
    const auto v = node_[key];
    if (!v || v.IsNull()) return false;
    // yaml-cpp converts "-1" to a huge unsigned value on some versions; a sign is never valid here.
    if constexpr (std::is_unsigned_v<T> && !std::is_same_v<T, bool>) {
      if (v.IsScalar() && !v.Scalar().empty() && v.Scalar()[0] == '-') throw expects(where(key), expected_type<T>(), v);
    }
    try {
      out = v.as<T>();
    } catch (const YAML::Exception&) {
      throw expects(where(key), expected_type<T>(), v);
    }
    if constexpr (std::is_floating_point_v<T>) {
      if (!std::isfinite(out)) throw expects(where(key), "a finite number", v);
    }
    return true;
  }
  // A number in [lo, hi] (lo_open: (lo, hi]).
  template <typename T>
  void number(const std::string& key, T& out, double lo, double hi, bool lo_open = false) {
    T x = out;
    if (!get(key, x)) return;
    const double d = static_cast<double>(x);
    if (d < lo || d > hi || (lo_open && d == lo)) {
      const std::string hi_text = std::isinf(hi) ? "inf" : fmt(hi);
      throw expects(where(key), expected_type<T>() + " in " + (lo_open ? "(" : "[") + fmt(lo) + ", " + hi_text + "]",
                    node_[key]);
    }
    out = x;
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
  // The section's node for a caller that reads it another way (the engine option table).
  YAML::Node take(const std::string& key) {
    seen_.insert(key);
    return node_ && node_.IsMap() ? node_[key] : YAML::Node();
  }
  std::string where(const std::string& k) const { return path_.empty() ? k : (k.empty() ? path_ : path_ + "." + k); }
  std::filesystem::path resolve(const std::string& s) const {
    std::filesystem::path p(s);
    return p.is_relative() && !base_.empty() ? base_ / p : p;
  }

 private:
  static std::string fmt(double v) {
    if (v == std::floor(v) && std::fabs(v) < 1e15) return std::to_string(static_cast<int64_t>(v));
    return std::to_string(v);
  }
  YAML::Node node_;
  std::string path_;
  std::filesystem::path base_;
  std::set<std::string> seen_;
};

// The YAML path of a table key: backend keys are their own path, the others live under `engine:`.
std::string yaml_path_of(const std::string& key) { return key.starts_with("backend.") ? key : "engine." + key; }

// Walks a YAML mapping through the engine option table: the scalar at YAML path `yaml_prefix.a.b`
// sets the key `key_prefix + "a.b"`. `backend` says which half of the table the section holds
// (`engine:` takes no backend.* keys, `backend:` nothing else).
void walk_options(const YAML::Node& n, const std::string& yaml_prefix, const std::string& key_prefix, bool backend,
                  const Section& base, rollout::EngineSettings& settings) {
  if (!n || n.IsNull()) return;
  if (!n.IsMap()) throw expects(yaml_prefix, "a mapping", n);
  for (const auto& kv : n) {
    const std::string k = kv.first.as<std::string>();
    const std::string yaml_path = yaml_prefix + "." + k;
    const std::string key = key_prefix + k;
    const YAML::Node& v = kv.second;
    const bool in_section = key.starts_with("backend.") == backend;
    const rollout::OptionSpec* spec = in_section ? rollout::find_option(key) : nullptr;
    if (!spec && v.IsMap()) {
      walk_options(v, yaml_path, key + ".", backend, base, settings);
      continue;
    }
    if (!spec) {
      std::string msg = "unknown configuration key '" + yaml_path + "'";
      const std::string near = rollout::closest_option(key);
      if (!near.empty() && near.starts_with("backend.") == backend) msg += " (did you mean '" + yaml_path_of(near) + "'?)";
      throw ConfigError(msg);
    }
    if (v.IsNull()) continue;  // as if absent: the default
    if (!v.IsScalar()) throw expects(yaml_path, rollout::describe_expected(*spec), v);
    std::string text = v.Scalar();
    if (spec->type == rollout::OptionType::kPath && !text.empty()) text = base.resolve(text).string();
    try {
      rollout::set_option(settings, key, text);
    } catch (const rollout::OptionError& e) {
      if (e.kind() == rollout::OptionError::Kind::kBadValue) throw expects(yaml_path, e.expected(), v);
      throw ConfigError("configuration key '" + yaml_path + "': " + e.what());
    }
  }
}

void parse(const YAML::Node& root, const std::filesystem::path& base, WorkerConfig& c) {
  auto& w = c.worker;
  Section top(root, "", base);
  top.get("worker_id", w.bridge.worker_id);
  top.path("model", w.model_dir);
  top.get("log_level", c.log_level);
  {
    rollout::EngineSettings s{w.engine, w.backend};
    walk_options(top.take("backend"), "backend", "backend.", true, top, s);
    walk_options(top.take("engine"), "engine", "", false, top, s);
    try {
      rollout::validate_settings(s);
    } catch (const std::invalid_argument& e) {
      throw ConfigError(std::string("engine settings: ") + e.what());
    }
    w.engine = s.engine;
    w.backend = s.backend;
  }
  {
    Section s = top.sub("bridge");
    s.get("endpoint", w.bridge.endpoint);
    s.number("max_message_bytes", w.bridge.max_message_bytes, 1, 1e12);
    s.number("max_pending_groups", w.max_pending_groups, 1, 1e12);
    s.number("max_pending_samples", w.max_pending_samples, 1, 1e15);
    s.number("max_pending_tokens", w.max_pending_tokens, 1, 1e18);
    s.number("max_outbox_batches", w.bridge.max_outbox_batches, 1, 1e9);
    s.number("heartbeat_interval_s", w.bridge.heartbeat_interval_s, 0, 3600, true);
    s.number("peer_timeout_s", w.bridge.peer_timeout_s, 0, 1e6, true);
    s.number("ack_timeout_s", w.bridge.ack_timeout_s, 0, 1e6);
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
    s.number("timeout_s", w.shutdown_timeout_s, 0, 1e6);
    s.number("ack_wait_s", w.shutdown_ack_wait_s, 0, 1e6);
  }
  {
    Section s = top.sub("metrics");
    s.number("port", w.metrics_port, 0, 65535);
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

void check_worker_config(const WorkerConfig& c) {
  const auto& w = c.worker;
  if (w.model_dir.empty()) throw ConfigError("no model: set 'model' in the config or pass --model");
  if (w.metrics_port < 0 || w.metrics_port > 65535) {
    throw ConfigError("metrics.port (--metrics-port) must be 0 (off) or in 1..65535, got " + std::to_string(w.metrics_port));
  }
  if (w.backend.kind != "cpu" && w.backend.kind != "cuda") {
    throw ConfigError("backend.kind must be cpu or cuda, got '" + w.backend.kind + "'");
  }
  if (w.bridge.endpoint.empty()) throw ConfigError("bridge.endpoint is empty");
  if (!(w.bridge.heartbeat_interval_s > 0) || !(w.bridge.peer_timeout_s > 0)) {
    throw ConfigError("bridge.heartbeat_interval_s and bridge.peer_timeout_s must be > 0");
  }
  const auto level = spdlog::level::from_str(c.log_level);
  if (level == spdlog::level::off && c.log_level != "off") {
    throw ConfigError("log_level expects one of trace, debug, info, warn, error, critical, off, got '" + c.log_level + "'");
  }
  std::error_code ec;
  if (!std::filesystem::is_directory(w.model_dir, ec)) {
    throw ConfigError("model: " + w.model_dir.string() + " is not a directory");
  }
  for (const auto& d : w.allowed_weight_dirs) {
    if (!std::filesystem::is_directory(d, ec)) {
      throw ConfigError("weights.allowed_dirs: " + d.string() + " is not an existing directory");
    }
  }
  try {
    rollout::validate_settings(rollout::EngineSettings{w.engine, w.backend});
  } catch (const std::invalid_argument& e) {
    throw ConfigError(std::string("engine settings: ") + e.what());
  }
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
