// Reading the worker's YAML configuration (configs/worker.yaml documents every key) into
// WorkerOptions. Unknown keys and mistyped values are errors naming the key, so a typo never
// silently falls back to a default.
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

// Parses the file (relative paths inside it are resolved against the file's directory).
WorkerConfig load_worker_config(const std::filesystem::path& file);
// Defaults only (no file).
WorkerConfig default_worker_config();
// Loads the CURVE key files named in the config into worker.bridge.curve (when curve is enabled).
void resolve_curve_keys(WorkerConfig& c);

}  // namespace longtail::bridge
