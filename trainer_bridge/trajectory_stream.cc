// Trajectory streaming; see trajectory_stream.h.
#include "trainer_bridge/trajectory_stream.h"

#include <algorithm>
#include <memory>
#include <stdexcept>
#include <thread>

#include <spdlog/spdlog.h>

#include "rollout/importance.h"
#include "rollout/trajectory_log.h"

namespace longtail::bridge {
namespace {
using Clock = std::chrono::steady_clock;
}

StreamResult stream_batches(TrainerSession& pub, const BatchSource& source, const StreamOptions& opts,
                            const std::atomic<bool>* stop) {
  StreamResult r;
  const auto stopped = [&] { return stop && stop->load(); };
  const auto start = Clock::now();
  while (!pub.trainer_connected() && !stopped()) {
    if (Clock::now() - start > std::chrono::duration<double>(opts.wait_for_trainer_s))
      throw std::runtime_error("no trainer said HELLO on " + pub.endpoint() + " within " +
                               std::to_string(opts.wait_for_trainer_s) + " s");
    pub.poll(std::chrono::milliseconds(20));
  }
  const auto interval = opts.batches_per_second > 0 ? std::chrono::duration<double>(1.0 / opts.batches_per_second)
                                                     : std::chrono::duration<double>(0);
  auto next_due = Clock::now();
  bool exhausted = false;
  while (!exhausted && !stopped() && (opts.max_batches <= 0 || static_cast<int64_t>(r.batches) < opts.max_batches)) {
    // Wait until the rate allows the next batch and the trainer has credit for it. Without credit
    // (or without a trainer) only a message can change that, so poll blocks until one arrives; the
    // 20 ms bound only keeps a stop request noticed.
    while (!stopped() && (Clock::now() < next_due || !pub.wants_batches())) {
      const auto until = std::chrono::ceil<std::chrono::milliseconds>(next_due - Clock::now());
      pub.poll(pub.wants_batches() ? std::clamp(until, std::chrono::milliseconds(0), std::chrono::milliseconds(20))
                                   : std::chrono::milliseconds(20));
    }
    if (stopped()) break;
    auto b = source();
    if (!b) {
      exhausted = true;
      break;
    }
    r.trajectories += b->trajectories.size();
    pub.publish(std::move(*b));
    ++r.batches;
    next_due = std::max(next_due + std::chrono::duration_cast<Clock::duration>(interval), Clock::now() - std::chrono::seconds(1));
  }
  const auto wait_start = Clock::now();
  while (!pub.all_acked() && !stopped() && Clock::now() - wait_start < std::chrono::duration<double>(opts.ack_wait_s))
    pub.poll(std::chrono::milliseconds(20));
  r.all_acked = pub.all_acked();
  spdlog::info("stream: {} batches, {} trajectories published; {}", r.batches, r.trajectories,
               r.all_acked ? "all acked" : "some not acked (kept in the journal if one is configured)");
  return r;
}

BatchSource recorded_batch_source(RecordSource next_record, size_t per_batch) {
  auto done = std::make_shared<bool>(false);
  auto round = std::make_shared<int64_t>(0);
  return [next_record = std::move(next_record), done, round, per_batch]() -> std::optional<Batch> {
    if (*done) return std::nullopt;
    Batch b;
    rollout::LogRecord rec;
    while (true) {
      if (!next_record(rec)) {
        *done = true;
        break;
      }
      if (auto* t = std::get_if<rollout::Trajectory>(&rec)) {
        b.trajectories.push_back(std::move(*t));
        if (per_batch > 0 && b.trajectories.size() >= per_batch) break;
        continue;
      }
      const auto& boundary = std::get<rollout::RoundBoundary>(rec);
      *round = boundary.round;
      b.round = boundary.round;
      b.policy_version = boundary.policy_version;
      if (per_batch == 0 && !b.trajectories.empty()) break;
    }
    if (b.trajectories.empty()) return std::nullopt;
    if (per_batch > 0) b.round = *round;
    if (b.policy_version == 0)
      for (const auto& t : b.trajectories)
        for (int64_t v : t.policy_versions) b.policy_version = std::max(b.policy_version, v);
    b.importance = rollout::compute_batch_importance(b.trajectories, b.policy_version);
    b.stats.round = b.round;
    b.stats.trajectories = static_cast<int32_t>(b.trajectories.size());
    for (const auto& t : b.trajectories) b.stats.response_tokens += static_cast<int64_t>(t.response_tokens.size());
    return b;
  };
}

BatchSource trajectory_log_source(const std::filesystem::path& log, size_t per_batch) {
  auto reader = std::make_shared<rollout::TrajectoryLogReader>(log);
  return recorded_batch_source([reader](rollout::LogRecord& rec) { return reader->next(rec); }, per_batch);
}

StreamResult stream_trajectory_log(const std::filesystem::path& log, const StreamOptions& opts,
                                   const std::atomic<bool>* stop) {
  auto source = trajectory_log_source(log, opts.trajectories_per_batch);
  TrainerSession pub(opts.session, nullptr);
  return stream_batches(pub, source, opts, stop);
}

}  // namespace longtail::bridge
