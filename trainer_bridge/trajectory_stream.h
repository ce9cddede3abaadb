// Streaming recorded trajectories to a trainer as BATCH messages at a chosen rate, through the same
// TrainerSession (credits, acks, journal, re-sends) as the worker. Used by longtail-stream and meant for
// `longtail-replay --stream ENDPOINT`: a trainer can be developed and load-tested against real
// rollouts (rollout/trajectory_log.h files) without running a model.
#pragma once

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>

#include "rollout/trajectory_log.h"
#include "trainer_bridge/trainer_session.h"

namespace longtail::bridge {

struct StreamOptions {
  TrainerSessionOptions session;
  double batches_per_second = 0;      // 0 = as fast as the trainer's credit allows
  size_t trajectories_per_batch = 0;  // 0 = one batch per round boundary recorded in the log
  int64_t max_batches = 0;            // 0 = the whole source
  double wait_for_trainer_s = 30;     // give up when no trainer says HELLO within this time
  double ack_wait_s = 30;             // at the end, wait this long for the trainer's acks
};

struct StreamResult {
  uint64_t batches = 0;
  uint64_t trajectories = 0;
  bool all_acked = false;
};

// A source of batches (seq, worker id and created_ns are filled by the trainer session). Returns nothing
// when exhausted.
using BatchSource = std::function<std::optional<Batch>()>;

// Publishes the source's batches at the chosen rate and no faster than credits allow, then waits
// for acks. Stops early when *stop becomes true. Throws std::runtime_error when no trainer connects.
StreamResult stream_batches(TrainerSession& pub, const BatchSource& source, const StreamOptions& opts,
                            const std::atomic<bool>* stop = nullptr);

// A BatchSource over recorded trajectories and round boundaries, in log order (next_record returns
// false at the end): batches end at the round boundaries (or every trajectories_per_batch
// trajectories); batch importance statistics are recomputed from the trajectories' recorded
// per-trajectory fields.
using RecordSource = std::function<bool(rollout::LogRecord&)>;
BatchSource recorded_batch_source(RecordSource next_record, size_t trajectories_per_batch);

// recorded_batch_source over a trajectory log. Throws rollout::TrajectoryLogError on a bad log.
BatchSource trajectory_log_source(const std::filesystem::path& log, size_t trajectories_per_batch);

// Convenience: binds opts.session.endpoint and streams the log.
StreamResult stream_trajectory_log(const std::filesystem::path& log, const StreamOptions& opts,
                                   const std::atomic<bool>* stop = nullptr);

}  // namespace longtail::bridge
