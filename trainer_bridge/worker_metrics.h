// The worker's Prometheus metrics (prometheus-cpp) and the HTTP endpoints a deployment probes:
// /metrics, /health (200 while the process serves) and /ready (200 while it admits work, 503 while
// it shuts down). Names follow vLLM's where they mean the same thing (longtail:num_requests_running
// for vllm:num_requests_running, ...), so dashboards written for a vLLM rollout read a longtail
// worker; longtail_* names are the worker's own. Counters and gauges mirror the STATS document
// (worker_stats.h), so STATS and /metrics cannot disagree; histograms and finish reasons are
// observed as events. prometheus-cpp's metrics are atomic: a scrape on the server's threads never
// touches the engine or the service loop.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "rollout/engine.h"

namespace longtail::bridge {

class WorkerMetrics {
 public:
  // Every series carries the constant label worker="<worker_id>"; longtail_build_info carries
  // the software version and the backend.
  WorkerMetrics(const std::string& worker_id, const std::string& software_version, const std::string& backend);
  ~WorkerMetrics();
  WorkerMetrics(const WorkerMetrics&) = delete;
  WorkerMetrics& operator=(const WorkerMetrics&) = delete;

  // Serves the endpoints on bind:port from the server's own threads until destroyed. The port is
  // bound exclusively, so a second worker on it fails here. Throws std::invalid_argument for a
  // port outside 1..65535 and std::runtime_error naming the address when it cannot be bound.
  void serve(const std::string& bind, int port);

  void observe_admitted(int64_t prompt_tokens);          // prompt tokens of admitted samples
  void observe_step(double seconds);                     // one engine step
  void observe_batch(const rollout::RoundBatch& batch);  // finish reasons, round makespan
  void observe_weight_update(double seconds);            // a successful UPDATE_WEIGHTS
  void set_ready(bool ready, const std::string& why);    // /ready: 503 with `why` while not ready
  void refresh(const nlohmann::json& stats);             // a STATS document (worker_stats.h)

  std::string text() const;  // the /metrics body, Prometheus text format 0.0.4

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace longtail::bridge
