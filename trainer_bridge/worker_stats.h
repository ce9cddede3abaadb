// The worker's STATS reply: one JSON document built from the engine's, the trainer session's and
// the worker's own counters. The STATS message, the Prometheus endpoint (worker_metrics.h) and
// logs all read this one document, so a counter added here reaches each of them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "rollout/types.h"
#include "trainer_bridge/trainer_session.h"

namespace longtail::bridge {

// What only the worker knows: request outcomes and its configuration.
struct WorkerStatus {
  std::string worker_id;
  double uptime_s = 0;
  bool shutting_down = false;
  uint64_t groups_accepted = 0, groups_refused = 0;
  uint64_t weight_updates = 0, weight_update_failures = 0;
  size_t max_pending_groups = 0;
  std::string backend;
  std::string software_version;
  bool deterministic = false;
  uint64_t history_received = 0, history_applied = 0, history_dropped = 0;  // HISTORY rollouts
  int32_t sleep_level = 0;                  // 0 awake, 1 KV cache freed, 2 weights freed too
  uint64_t sleeps = 0, wake_ups = 0;        // SLEEP / WAKE_UP requests that changed the level
  uint64_t last_sleep_released_bytes = 0;   // what the last sleep gave back
  double last_sleep_s = 0, last_wake_up_s = 0;  // how long the last sleep / wake-up took (s)
};

// {"engine": ..., "bridge": ..., "worker": ...} as PROTOCOL.md, section STATS, lists them.
nlohmann::json stats_json(const rollout::EngineStats& engine, const TrainerSessionStats& session, const WorkerStatus& worker);

// One round's statistics, every field of its field list (the same keys BATCH carries in `stats`).
nlohmann::json round_stats_json(const rollout::RoundStats& r);

}  // namespace longtail::bridge
