// A fixed set of worker threads for the CPU backend's data-parallel loops. Work is split into
// contiguous static ranges, one per participant, so every element is computed by the same code
// whatever the number of threads: results do not depend on the thread count.
#pragma once

#include <condition_variable>
#include <exception>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace longtail::policy {

class ThreadPool {
 public:
  // num_threads participants in all, the calling thread included (<= 0: hardware concurrency).
  explicit ThreadPool(int num_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return static_cast<int>(workers_.size()) + 1; }

  // Calls fn(begin, end) over a partition of [0, n). Ranges smaller than min_chunk are not split
  // further, so tiny loops run on the caller without waking anyone. Not reentrant. If fn throws,
  // every range still finishes (or throws) before the first exception is rethrown here.
  void parallel_for(int64_t n, const std::function<void(int64_t, int64_t)>& fn, int64_t min_chunk = 1);

 private:
  void worker_loop(int index);

  std::vector<std::thread> workers_;
  std::mutex mu_;
  std::condition_variable start_cv_;
  std::condition_variable done_cv_;
  uint64_t generation_ = 0;
  int pending_ = 0;
  int active_ = 0;  // participants in the current job (caller included)
  int64_t n_ = 0;
  const std::function<void(int64_t, int64_t)>* fn_ = nullptr;
  bool stop_ = false;
  std::exception_ptr error_;  // first exception of the current job
};

}  // namespace longtail::policy
