// The rollout worker service: one loop that polls the trainer socket (TrainerSession) and steps the
// rollout engine whenever there is work and the trainer has credit for its output, so the process
// never spins while idle and an engine step never races a request. Requests map onto the Engine
// facade (rollout/engine.h); engine refusals become ERROR replies and the worker keeps serving.
// Graceful shutdown (SIGTERM or SHUTDOWN): stop admitting, finish in-flight sequences (bounded by a
// timeout), flush the round, wait a while for acks, leave the rest in the journal, exit 0.
// SLEEP / WAKE_UP (vLLM's sleep mode): the engine stops stepping and the backend frees its KV cache
// (and at level 2 its weights) for a trainer on the same device; requests keep being served.
#pragma once

#include <atomic>
#include <chrono>
#include <filesystem>
#include <memory>
#include <mutex>
#include <deque>
#include <map>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "rollout/engine.h"
#include "trainer_bridge/shared_history.h"
#include "trainer_bridge/trainer_session.h"
#include "trainer_bridge/worker_stats.h"

namespace longtail::bridge {

class WorkerMetrics;

struct WorkerOptions {
  std::filesystem::path model_dir;
  policy::BackendOptions backend;
  rollout::EngineOptions engine;
  TrainerSessionOptions bridge;
  size_t max_pending_groups = 1024;  // groups queued in the engine; SUBMIT beyond gets QUEUE_FULL
  // Admission by cost: samples, and tokens (prompt_len + max_new_tokens per sample), admitted and
  // not yet delivered in a BATCH. A SUBMIT that alone exceeds a cap gets TOO_LARGE; one that only
  // does on top of what is pending gets QUEUE_FULL (retryable).
  uint64_t max_pending_samples = 65536;
  uint64_t max_pending_tokens = uint64_t{1} << 26;
  // UPDATE_WEIGHTS paths must resolve inside one of these (symlinks resolved); empty = refuse all.
  std::vector<std::filesystem::path> allowed_weight_dirs;
  bool finish_in_flight_on_shutdown = true;
  double shutdown_timeout_s = 30;    // bound on finishing in-flight sequences
  double shutdown_ack_wait_s = 5;    // then wait this long for the trainer to ack what was sent
  int metrics_port = 0;              // 1..65535: Prometheus /metrics, /health, /ready; 0 = none
  std::string metrics_bind = "127.0.0.1";
  std::string software_version = "unknown";  // reported in HELLO, STATS and longtail_build_info
};

class Worker : public RequestHandler {
 public:
  Worker(WorkerOptions opts, std::unique_ptr<rollout::Engine> engine);
  ~Worker() override;

  // Serves until SHUTDOWN or until *stop becomes true (the SIGTERM handler sets it), then shuts
  // down gracefully. Returns the process exit code.
  int run(const std::atomic<bool>* stop);

  Welcome describe() override;
  void on_request(const std::string& peer, Message&& m) override;

  // Prometheus text exposition of the current metrics (thread-safe).
  std::string metrics_text() const;
  std::string endpoint() const { return session_->endpoint(); }

 private:
  void on_submit(const std::string& peer, const Submit& s);
  void on_update_weights(const std::string& peer, const UpdateWeights& u);
  void weights_live(const std::string& peer, const UpdateWeights& u, const std::filesystem::path& source,
                    std::chrono::steady_clock::time_point t0);
  void on_rewards(const std::string& peer, const Rewards& r);
  void on_drain(const std::string& peer, const Drain& d);
  void on_history(const std::string& peer, History&& h);
  void on_sleep(const std::string& peer, const Sleep& s);
  void on_wake_up(const std::string& peer, const WakeUp& w);
  void update_ready();  // /ready: 503 while shutting down, loading weights or asleep
  std::optional<uint64_t> publish(rollout::RoundBatch&& rb);
  void remember_published(const Batch& b);
  std::vector<GroupRewards> group_rewards(const std::map<std::pair<int64_t, std::string>, bool>& touched) const;
  bool step_engine();
  void begin_shutdown(const std::string& why);
  nlohmann::json stats_json() const;
  void refresh_metrics();

  WorkerOptions opts_;
  std::unique_ptr<rollout::Engine> engine_;
  std::unique_ptr<TrainerSession> session_;
  SharedHistory shared_history_;  // HISTORY rollouts waiting for the next round boundary
  int64_t last_round_ = 0;        // the round of the latest batch: where idle-time history goes
  bool shutting_down_ = false;
  std::chrono::steady_clock::time_point started_, shutdown_started_, last_metrics_;
  uint64_t groups_accepted_ = 0, groups_refused_ = 0, weight_updates_ = 0, weight_update_failures_ = 0;
  uint64_t sleeps_ = 0, wake_ups_ = 0;
  uint64_t last_sleep_released_bytes_ = 0;
  double last_sleep_s_ = 0, last_wake_up_s_ = 0;
  std::filesystem::path weights_;  // where the live weights came from

  // Admitted and not yet delivered, per group id: samples left and tokens each costs.
  struct Pending {
    uint64_t samples = 0, tokens_per_sample = 0;
  };
  std::unordered_map<std::string, Pending> pending_;
  uint64_t pending_samples_ = 0, pending_tokens_ = 0;

  // Delivered trajectories of the rounds the engine still keeps (recent_rounds_kept), by wire uid,
  // so REWARDS can be checked against this run and answered with the group's baseline.
  struct Delivered {
    int64_t round = 0;
    std::string group_id;
    double truncated_weight = 1;
    std::optional<double> reward;
  };
  std::unordered_map<uint64_t, Delivered> delivered_;
  std::map<std::pair<int64_t, std::string>, std::vector<uint64_t>> group_uids_;
  std::deque<int64_t> delivered_rounds_;

  std::unique_ptr<WorkerMetrics> metrics_;
};

// Trajectory uids on the wire: the worker's run number (TrainerSession::run, 24 bits) above the
// engine's per-run uid (40 bits), so a uid never repeats across restarts with the same journal.
inline constexpr int kEngineUidBits = 40;
inline constexpr uint64_t kEngineUidMask = (uint64_t{1} << kEngineUidBits) - 1;

// Resolves p (following symlinks where they exist) and reports whether it lies inside one of dirs.
bool path_inside(const std::filesystem::path& p, const std::vector<std::filesystem::path>& dirs);

// Checks every group of a SUBMIT with the one request validator (rollout/request_validator.h) and
// throws the ProtocolError the trainer gets, naming the field path (groups[2].sampling.top_p) and
// the group. A value outside the range the protocol states whatever the model (n < 1, top_p 1.5,
// a negative token id, an empty prompt) is BAD_FIELD; what this model or engine refuses (a token
// id outside its vocabulary, a prompt that fills the context, a repeated group id, a sampling
// option the backend lacks) is INVALID_REQUEST.
void check_submit(const Submit& s, const rollout::RequestLimits& limits);

}  // namespace longtail::bridge
