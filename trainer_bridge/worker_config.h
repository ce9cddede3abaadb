// Reading the worker's YAML configuration (configs/worker.yaml documents every key) into
// WorkerOptions, and checking it before anything is loaded. Unknown keys, mistyped and out-of-range
// values are errors naming the YAML path, the expected type or range and the value found, so a
// typo never silently falls back to a default. The `backend:` and `engine:` sections are the
// engine option table's keys (rollout/engine_options_io.h), as the tools' engine flags are.
#pragma once

#include <filesystem>
#include <stdexcept>
#include <string>

#include "trainer_bridge/worker.h"

namespace longtail::bridge {

class ConfigError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct WorkerConfig {
  WorkerOptions worker;
  std::string log_level = "info";
  std::filesystem::path curve_server_public_key_file, curve_server_secret_key_file, curve_allowed_clients_file;
};

// Parses the file (relative paths inside it are resolved against the file's directory): syntax,
// types and ranges. Throws ConfigError naming the file and the key.
WorkerConfig load_worker_config(const std::filesystem::path& file);
// What a finished configuration (file plus command-line overrides) must also satisfy, checked
// before the model loads: a model directory that exists, a metrics port in range, positive
// heartbeat and peer timeouts, weights.allowed_dirs entries that exist, a known log level, and the
// engine's cross-field rules. Throws ConfigError.
void check_worker_config(const WorkerConfig& c);
// Defaults only (no file).
WorkerConfig default_worker_config();
// Loads the CURVE key files named in the config into worker.bridge.curve (when curve is enabled).
void resolve_curve_keys(WorkerConfig& c);

}  // namespace longtail::bridge
