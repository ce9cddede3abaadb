// Prometheus exposition of the worker's STATS document (worker_stats.h) and the small HTTP server
// that serves it on /metrics. The service loop renders a snapshot now and then; the server thread
// only reads the latest snapshot, so a scrape never touches the engine.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

namespace longtail::bridge {

// Prometheus text format (version 0.0.4) of the gauges and counters in a STATS document.
std::string prometheus_text(const nlohmann::json& stats, const std::string& worker_id);

// Serves text() on http://bind:port/metrics from its own thread until destroyed. Throws when the
// port cannot be bound or the build has no HTTP library (cpp-httplib).
class MetricsServer {
 public:
  MetricsServer(std::function<std::string()> text, const std::string& bind, int port);
  ~MetricsServer();
  MetricsServer(const MetricsServer&) = delete;
  MetricsServer& operator=(const MetricsServer&) = delete;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace longtail::bridge
