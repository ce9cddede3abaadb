// Prometheus text and the /metrics server; see worker_metrics.h.
#include "trainer_bridge/worker_metrics.h"

#include <sstream>
#include <stdexcept>
#include <thread>

#include <spdlog/spdlog.h>

#ifdef LONGTAIL_HAVE_HTTPLIB
#include <httplib.h>
#endif

namespace longtail::bridge {

std::string prometheus_text(const nlohmann::json& s, const std::string& wid) {
  std::ostringstream o;
  auto metric = [&](const char* name, const char* type, const char* help, double v) {
    o << "# HELP " << name << ' ' << help << "\n# TYPE " << name << ' ' << type << '\n'
      << name << "{worker=\"" << wid << "\"} " << v << '\n';
  };
  const auto& e = s["engine"];
  const auto& b = s["bridge"];
  metric("longtail_policy_version", "gauge", "Policy version live in the engine.", e["policy_version"].get<double>());
  metric("longtail_engine_steps_total", "counter", "Engine steps run.", e["steps"].get<double>());
  metric("longtail_forward_passes_total", "counter", "Policy forward passes.", e["forward_passes"].get<double>());
  metric("longtail_tokens_generated_total", "counter", "Response tokens generated.", e["tokens_generated"].get<double>());
  metric("longtail_tokens_drafted_total", "counter", "Draft tokens proposed.", e["tokens_drafted"].get<double>());
  metric("longtail_tokens_accepted_total", "counter", "Draft tokens accepted.", e["tokens_accepted"].get<double>());
  metric("longtail_running_sequences", "gauge", "Sequences in the running batch.", e["running_sequences"].get<double>());
  metric("longtail_waiting_groups", "gauge", "Groups queued for admission.", e["waiting_groups"].get<double>());
  metric("longtail_carried_sequences", "gauge", "Partial rollouts carried to the next round.", e["carried_sequences"].get<double>());
  metric("longtail_preemptions_total", "counter", "Sequences preempted for KV space.", e["preemptions"].get<double>());
  metric("longtail_batches_published_total", "counter", "Batches handed to the bridge.", b["batches_published"].get<double>());
  metric("longtail_batches_sent_total", "counter", "BATCH messages sent, re-sends included.", b["batches_sent"].get<double>());
  metric("longtail_batches_resent_total", "counter", "BATCH messages sent again.", b["batches_resent"].get<double>());
  metric("longtail_batches_acked_total", "counter", "Batches acknowledged by the trainer.", b["batches_acked"].get<double>());
  metric("longtail_bytes_sent_total", "counter", "Bytes of BATCH messages sent.", b["bytes_sent"].get<double>());
  metric("longtail_errors_sent_total", "counter", "ERROR replies sent.", b["errors_sent"].get<double>());
  metric("longtail_credits", "gauge", "Batch credits granted by the trainer and not used.", b["credits"].get<double>());
  metric("longtail_outbox_batches", "gauge", "Un-acked batches held.", b["outbox_batches"].get<double>());
  metric("longtail_outbox_bytes", "gauge", "Bytes of un-acked batches held.", b["outbox_bytes"].get<double>());
  metric("longtail_trainer_connected", "gauge", "1 while a trainer session is live.", b["trainer_connected"].get<bool>() ? 1 : 0);
  return o.str();
}

#ifdef LONGTAIL_HAVE_HTTPLIB
struct MetricsServer::Impl {
  httplib::Server server;
  std::thread thread;
};

MetricsServer::MetricsServer(std::function<std::string()> text, const std::string& bind, int port)
    : impl_(std::make_unique<Impl>()) {
  impl_->server.Get("/metrics", [text = std::move(text)](const httplib::Request&, httplib::Response& res) {
    res.set_content(text(), "text/plain; version=0.0.4");
  });
  if (!impl_->server.bind_to_port(bind.c_str(), port))
    throw std::runtime_error("metrics: cannot listen on " + bind + ":" + std::to_string(port));
  impl_->thread = std::thread([this] { impl_->server.listen_after_bind(); });
  spdlog::info("metrics: Prometheus text on http://{}:{}/metrics", bind, port);
}

MetricsServer::~MetricsServer() {
  impl_->server.stop();
  if (impl_->thread.joinable()) impl_->thread.join();
}
#else
struct MetricsServer::Impl {};

MetricsServer::MetricsServer(std::function<std::string()>, const std::string&, int) {
  throw std::runtime_error("metrics: this build has no cpp-httplib (install libcpp-httplib-dev and rebuild)");
}

MetricsServer::~MetricsServer() = default;
#endif

}  // namespace longtail::bridge
