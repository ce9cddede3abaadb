// STATS document of the worker; see worker_stats.h.
#include "trainer_bridge/worker_stats.h"

#include "trainer_bridge/wire_fields.h"

namespace longtail::bridge {
namespace {

// Writes the scalar fields of a field list into a JSON object.
struct JsonFields {
  nlohmann::json& out;
  template <class T>
  void operator()(std::string_view k, const T& v, wire::Presence = wire::kRequired) {
    out[std::string(k)] = v;
  }
};

}  // namespace

nlohmann::json round_stats_json(const rollout::RoundStats& r) {
  nlohmann::json j = nlohmann::json::object();
  JsonFields f{j};
  wire::fields(f, r);
  return j;
}

nlohmann::json stats_json(const rollout::EngineStats& e, const TrainerSessionStats& p, const WorkerStatus& w) {
  nlohmann::json rounds = nlohmann::json::array();
  for (const auto& r : e.recent_rounds) rounds.push_back(round_stats_json(r));
  const auto& ls = e.last_step;
  return {
      {"engine",
       {{"policy_version", e.policy_version}, {"steps", e.steps}, {"forward_passes", e.forward_passes},
        {"tokens_generated", e.tokens_generated}, {"tokens_drafted", e.tokens_drafted},
        {"tokens_accepted", e.tokens_accepted}, {"running_sequences", e.running_sequences},
        {"waiting_groups", e.waiting_groups}, {"carried_sequences", e.carried_sequences},
        {"preemptions", e.preemptions},
        {"last_step",
         {{"step", ls.step}, {"sequences", ls.sequences}, {"tokens_verified", ls.tokens_verified},
          {"tokens_drafted", ls.tokens_drafted}, {"tokens_accepted", ls.tokens_accepted},
          {"tokens_emitted", ls.tokens_emitted}, {"draft_us", ls.draft_us}, {"forward_us", ls.forward_us},
          {"sample_us", ls.sample_us}, {"total_us", ls.total_us}}},
        {"recent_rounds", rounds}}},
      {"bridge",
       {{"batches_published", p.batches_published}, {"batches_sent", p.batches_sent},
        {"batches_resent", p.batches_resent}, {"batches_acked", p.batches_acked}, {"bytes_sent", p.bytes_sent},
        {"messages_received", p.messages_received}, {"errors_sent", p.errors_sent}, {"sessions", p.sessions},
        {"credits", p.credits}, {"outbox_batches", p.outbox_batches}, {"outbox_unsent", p.outbox_unsent},
        {"outbox_bytes", p.outbox_bytes}, {"trainer_connected", p.trainer_connected}, {"next_seq", p.next_seq}}},
      {"worker",
       {{"worker_id", w.worker_id}, {"uptime_s", w.uptime_s}, {"shutting_down", w.shutting_down},
        {"groups_accepted", w.groups_accepted}, {"groups_refused", w.groups_refused},
        {"max_pending_groups", w.max_pending_groups}, {"weight_updates", w.weight_updates},
        {"weight_update_failures", w.weight_update_failures}, {"backend", w.backend}}},
  };
}

}  // namespace longtail::bridge
