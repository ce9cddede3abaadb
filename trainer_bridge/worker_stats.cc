// STATS document of the worker; see worker_stats.h.
#include "trainer_bridge/worker_stats.h"


namespace longtail::bridge {
namespace {

// A stats value as a JSON object of its engine-defined field list (rollout/types.h).
template <class Stats>
nlohmann::json fields_json(const Stats& s) {
  nlohmann::json j = nlohmann::json::object();
  rollout::for_each_field(s, [&j](const char* key, const auto& v) { j[key] = v; });
  return j;
}

}  // namespace

nlohmann::json round_stats_json(const rollout::RoundStats& r) { return fields_json(r); }

nlohmann::json stats_json(const rollout::EngineStats& e, const TrainerSessionStats& p, const WorkerStatus& w) {
  nlohmann::json engine = fields_json(e);
  engine["last_step"] = fields_json(e.last_step);
  engine["recent_rounds"] = nlohmann::json::array();
  for (const auto& r : e.recent_rounds) engine["recent_rounds"].push_back(round_stats_json(r));
  return {
      {"engine", engine},
      {"bridge",
       {{"batches_published", p.batches_published}, {"batches_recovered", p.batches_recovered}, {"batches_sent", p.batches_sent},
        {"batches_resent", p.batches_resent}, {"batches_acked", p.batches_acked}, {"bytes_sent", p.bytes_sent},
        {"messages_received", p.messages_received}, {"errors_sent", p.errors_sent}, {"sessions", p.sessions},
        {"credits", p.credits}, {"outbox_batches", p.outbox_batches}, {"outbox_unsent", p.outbox_unsent},
        {"outbox_bytes", p.outbox_bytes}, {"trainer_connected", p.trainer_connected}, {"next_seq", p.next_seq}}},
      {"worker",
       {{"worker_id", w.worker_id}, {"uptime_s", w.uptime_s}, {"shutting_down", w.shutting_down},
        {"groups_accepted", w.groups_accepted}, {"groups_refused", w.groups_refused},
        {"max_pending_groups", w.max_pending_groups}, {"weight_updates", w.weight_updates},
        {"weight_update_failures", w.weight_update_failures}, {"backend", w.backend},
        {"software_version", w.software_version}, {"deterministic", w.deterministic},
        {"history_received", w.history_received}, {"history_applied", w.history_applied},
        {"history_dropped", w.history_dropped}, {"sleep_level", w.sleep_level}, {"sleeps", w.sleeps},
        {"wake_ups", w.wake_ups}, {"last_sleep_released_bytes", w.last_sleep_released_bytes},
        {"last_sleep_s", w.last_sleep_s}, {"last_wake_up_s", w.last_wake_up_s}}},
  };
}

}  // namespace longtail::bridge
