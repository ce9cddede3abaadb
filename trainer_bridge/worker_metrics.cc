// The worker's metrics and its /metrics, /health, /ready server; see worker_metrics.h.
#include "trainer_bridge/worker_metrics.h"

#include <algorithm>
#include <map>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <vector>

#include <httplib.h>
#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>
#include <spdlog/spdlog.h>

#include "rollout/finish_reason.h"

namespace longtail::bridge {
namespace {

using prometheus::Histogram;

// Upper bounds in seconds: a step takes a millisecond (a small model on a CPU) to seconds (a large
// verify batch), a round seconds to an hour, a weight load a fraction of a second to minutes.
const Histogram::BucketBoundaries kStepBuckets = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
const Histogram::BucketBoundaries kRoundBuckets = {0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1200, 3600};
const Histogram::BucketBoundaries kWeightBuckets = {0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600};

// A series that follows one value of the STATS document, {"engine", "tokens_generated"}.
struct Source {
  const char* section;
  const char* key;
  double read(const nlohmann::json& stats) const {
    const auto& v = stats.at(section).at(key);
    return v.is_boolean() ? (v.get<bool>() ? 1.0 : 0.0) : v.get<double>();
  }
};

// The series that follow the STATS document, refreshed from it before each scrape: vLLM's names
// (longtail:...) where they mean the same thing, longtail_... for the worker's own.
enum class Kind { counter, gauge };
struct MirroredSeries {
  Kind kind;
  const char* name;
  Source source;
  const char* help;
};
const MirroredSeries kMirrored[] = {
    {Kind::gauge, "longtail:num_requests_running", {"engine", "running_sequences"},
     "Sequences (samples) in the running batch."},
    {Kind::gauge, "longtail:num_requests_waiting", {"engine", "waiting_groups"},
     "Groups queued for admission (each admits its n samples together)."},
    {Kind::counter, "longtail:generation_tokens_total", {"engine", "tokens_generated"},
     "Response tokens generated."},
    {Kind::counter, "longtail:spec_decode_num_draft_tokens_total", {"engine", "tokens_drafted"},
     "Draft tokens proposed by the suffix drafter."},
    {Kind::counter, "longtail:spec_decode_num_accepted_tokens_total", {"engine", "tokens_accepted"},
     "Draft tokens accepted by verification."},
    {Kind::counter, "longtail:num_preemptions_total", {"engine", "preemptions"},
     "Sequences preempted for KV space (recomputed later)."},
    {Kind::counter, "longtail:weight_update_failures_total", {"worker", "weight_update_failures"},
     "UPDATE_WEIGHTS refused or failed (the old weights stayed live)."},
    {Kind::gauge, "longtail_policy_version", {"engine", "policy_version"},
     "Policy version live in the engine."},
    {Kind::counter, "longtail_engine_steps_total", {"engine", "steps"},
     "Engine steps run."},
    {Kind::counter, "longtail_forward_passes_total", {"engine", "forward_passes"},
     "Policy forward passes."},
    {Kind::counter, "longtail_tokens_generated_total", {"engine", "tokens_generated"},
     "Response tokens generated."},
    {Kind::counter, "longtail_tokens_drafted_total", {"engine", "tokens_drafted"},
     "Draft tokens proposed."},
    {Kind::counter, "longtail_tokens_accepted_total", {"engine", "tokens_accepted"},
     "Draft tokens accepted."},
    {Kind::gauge, "longtail_running_sequences", {"engine", "running_sequences"},
     "Sequences in the running batch."},
    {Kind::gauge, "longtail_waiting_groups", {"engine", "waiting_groups"},
     "Groups queued for admission."},
    {Kind::gauge, "longtail_carried_sequences", {"engine", "carried_sequences"},
     "Partial rollouts carried to the next round."},
    {Kind::counter, "longtail_preemptions_total", {"engine", "preemptions"},
     "Sequences preempted for KV space."},
    {Kind::counter, "longtail_batches_published_total", {"bridge", "batches_published"},
     "Batches produced by this worker process."},
    {Kind::counter, "longtail_batches_recovered_total", {"bridge", "batches_recovered"},
     "Un-acked batches of an earlier run loaded from the journal."},
    {Kind::counter, "longtail_batches_sent_total", {"bridge", "batches_sent"},
     "BATCH messages sent, re-sends included."},
    {Kind::counter, "longtail_batches_resent_total", {"bridge", "batches_resent"},
     "BATCH messages sent again: to a new session, after an ack timeout, or recovered from the journal."},
    {Kind::counter, "longtail_batches_acked_total", {"bridge", "batches_acked"},
     "Batches acknowledged by the trainer."},
    {Kind::counter, "longtail_bytes_sent_total", {"bridge", "bytes_sent"},
     "Bytes of BATCH messages sent."},
    {Kind::counter, "longtail_errors_sent_total", {"bridge", "errors_sent"},
     "ERROR replies sent."},
    {Kind::gauge, "longtail_credits", {"bridge", "credits"},
     "Batch credits granted by the trainer and not used."},
    {Kind::gauge, "longtail_outbox_batches", {"bridge", "outbox_batches"},
     "Un-acked batches held."},
    {Kind::gauge, "longtail_outbox_bytes", {"bridge", "outbox_bytes"},
     "Bytes of un-acked batches held."},
    {Kind::gauge, "longtail_trainer_connected", {"bridge", "trainer_connected"},
     "1 while a trainer session is live."},
    {Kind::gauge, "longtail_sleep_level", {"worker", "sleep_level"},
     "0 awake; 1 asleep with the KV cache freed; 2 with the weights freed too (SLEEP)."},
    {Kind::counter, "longtail_sleeps_total", {"worker", "sleeps"},
     "SLEEP requests that put the worker to sleep."},
};

}  // namespace

struct WorkerMetrics::Impl {
  prometheus::Registry registry;
  prometheus::Labels worker_label;
  // Counters increase by what their statistic grew since the last refresh.
  struct Mirror {
    prometheus::Counter* counter;
    Source source;
    double last = 0;
  };
  std::vector<Mirror> counters;
  std::vector<std::pair<prometheus::Gauge*, Source>> gauges;
  prometheus::Gauge* kv_usage = nullptr;
  prometheus::Counter* prompt_tokens = nullptr;
  prometheus::Family<prometheus::Counter>* finished = nullptr;
  std::map<std::string, prometheus::Counter*> finished_by_reason;
  prometheus::Histogram* step_seconds = nullptr;
  prometheus::Histogram* round_seconds = nullptr;
  prometheus::Histogram* weight_seconds = nullptr;

  std::mutex ready_mu;
  bool ready = true;
  std::string not_ready_why;
  httplib::Server server;
  std::thread server_thread;  // runs server.listen_after_bind(); joined by the destructor

  prometheus::Counter& counter(const std::string& name, const std::string& help) {
    return prometheus::BuildCounter().Name(name).Help(help).Labels(worker_label).Register(registry).Add({});
  }
  prometheus::Gauge& gauge(const std::string& name, const std::string& help) {
    return prometheus::BuildGauge().Name(name).Help(help).Labels(worker_label).Register(registry).Add({});
  }
  prometheus::Histogram& histogram(const std::string& name, const std::string& help, const Histogram::BucketBoundaries& b) {
    return prometheus::BuildHistogram().Name(name).Help(help).Labels(worker_label).Register(registry).Add({}, b);
  }

  void add_routes() {
    server.Get("/metrics", [this](const httplib::Request&, httplib::Response& r) {
      r.set_content(prometheus::TextSerializer().Serialize(registry.Collect()), "text/plain; version=0.0.4");
    });
    server.Get("/health", [](const httplib::Request&, httplib::Response& r) { r.set_content("ok\n", "text/plain"); });
    server.Get("/ready", [this](const httplib::Request&, httplib::Response& r) {
      std::lock_guard lock(ready_mu);
      if (ready) {
        r.set_content("ready\n", "text/plain");
      } else {
        r.status = 503;
        r.set_content("not ready: " + not_ready_why + "\n", "text/plain");
      }
    });
  }
};

WorkerMetrics::WorkerMetrics(const std::string& worker_id, const std::string& software_version, const std::string& backend)
    : impl_(std::make_unique<Impl>()) {
  auto& m = *impl_;
  m.worker_label = {{"worker", worker_id}};

  for (const auto& series : kMirrored) {
    if (series.kind == Kind::counter) m.counters.push_back({&m.counter(series.name, series.help), series.source});
    else m.gauges.emplace_back(&m.gauge(series.name, series.help), series.source);
  }

  // Series observed as events, and the build.
  m.kv_usage = &m.gauge("longtail:kv_cache_usage_perc", "Share of the KV cache's positions in use, 0..1 (as vLLM's).");
  m.prompt_tokens = &m.counter("longtail:prompt_tokens_total", "Prompt tokens of admitted samples (n x prompt length per group).");
  m.finished = &prometheus::BuildCounter()
                    .Name("longtail:request_success_total")
                    .Help("Finished samples delivered in batches, by finish reason.")
                    .Labels(m.worker_label)
                    .Register(m.registry);
  for (const char* r : rollout::kFinishReasonNames) m.finished_by_reason[r] = &m.finished->Add({{"finished_reason", r}});
  m.step_seconds = &m.histogram("longtail:step_duration_seconds", "Wall time of one engine step (draft, forward, acceptance).", kStepBuckets);
  m.round_seconds = &m.histogram("longtail:round_makespan_seconds", "Wall time from a round's start to its batch.", kRoundBuckets);
  m.weight_seconds = &m.histogram("longtail:weight_update_seconds", "Time to load and swap in new weights (successful updates).", kWeightBuckets);
  prometheus::BuildGauge()
      .Name("longtail_build_info")
      .Help("Constant 1, labelled with the worker's software version (project version and git commit) and backend.")
      .Labels(m.worker_label)
      .Register(m.registry)
      .Add({{"version", software_version}, {"backend", backend}})
      .Set(1);

}

WorkerMetrics::~WorkerMetrics() {
  if (impl_->server_thread.joinable()) {
    impl_->server.stop();
    impl_->server_thread.join();
  }
}

void WorkerMetrics::serve(const std::string& bind, int port) {
  if (port < 1 || port > 65535) throw std::invalid_argument("metrics port " + std::to_string(port) + " is outside 1..65535");
  const std::string address = bind + ":" + std::to_string(port);
  auto& server = impl_->server;
  // SO_REUSEADDR only (httplib's default adds SO_REUSEPORT): a port another process listens on is
  // refused instead of shared, where scrapes would alternate between two workers.
  server.set_socket_options([](socket_t sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
  });
  // Two threads serve scrapes and probes; they are std::threads with the default stack. (civetweb
  // was used before: its threads have a fixed 100 KiB stack, smaller than the static TLS that
  // cuBLAS brings into a CUDA-linked worker, so pthread_create failed and the server never started.)
  server.new_task_queue = [] { return new httplib::ThreadPool(2); };
  impl_->add_routes();
  if (!server.bind_to_port(bind, port))
    throw std::runtime_error("metrics: cannot listen on " + address +
                             " (in use by another process, e.g. a second worker on the same metrics.port, or not a local address)");
  impl_->server_thread = std::thread([&server] { server.listen_after_bind(); });
  spdlog::info("metrics: Prometheus text on http://{}/metrics; probes on /health and /ready", address);
}

void WorkerMetrics::observe_admitted(int64_t prompt_tokens) { impl_->prompt_tokens->Increment(static_cast<double>(prompt_tokens)); }

void WorkerMetrics::observe_step(double seconds) { impl_->step_seconds->Observe(seconds); }

void WorkerMetrics::observe_batch(const rollout::RoundBatch& b) {
  for (const auto& t : b.trajectories) {
    const std::string reason = rollout::finish_reason_name(t.finish_reason);
    auto it = impl_->finished_by_reason.find(reason);
    if (it == impl_->finished_by_reason.end())
      it = impl_->finished_by_reason.emplace(reason, &impl_->finished->Add({{"finished_reason", reason}})).first;
    it->second->Increment();
  }
  impl_->round_seconds->Observe(b.stats.makespan_s);
}

void WorkerMetrics::observe_weight_update(double seconds) { impl_->weight_seconds->Observe(seconds); }

void WorkerMetrics::set_ready(bool ready, const std::string& why) {
  std::lock_guard lock(impl_->ready_mu);
  impl_->ready = ready;
  impl_->not_ready_why = why;
}

void WorkerMetrics::refresh(const nlohmann::json& stats) {
  for (auto& c : impl_->counters) {
    const double v = c.source.read(stats);
    if (v > c.last) c.counter->Increment(v - c.last);
    c.last = std::max(c.last, v);
  }
  for (auto& [g, s] : impl_->gauges) g->Set(s.read(stats));
  const auto& e = stats.at("engine");
  const double total = e.at("kv_total_tokens").get<double>();
  impl_->kv_usage->Set(total > 0 ? 1.0 - e.at("kv_free_tokens").get<double>() / total : 0.0);
}

std::string WorkerMetrics::text() const { return prometheus::TextSerializer().Serialize(impl_->registry.Collect()); }

}  // namespace longtail::bridge
