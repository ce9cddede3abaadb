// What every backend shares: the sampling input check, the reading of a chunk's tree parents, the
// chain case of compact_kv, the refusal to sleep of a backend that cannot, and make_backend, the
// one place that picks a backend by name. The CUDA factory lives in policy/cuda_backend.{h,cc}, compiled only when the build
// has CUDA.
#include "policy/backend.h"

#include <cmath>
#include <stdexcept>
#include <string>

#include "policy/checkpoint.h"
#include "policy/cpu_backend.h"
#ifdef LONGTAIL_HAVE_CUDA
#include "policy/cuda_backend.h"
#endif

namespace longtail::policy {

void Backend::replace_weights_from_cuda_ipc(const CudaIpcTensorSource&, bool) {
  throw LoadError("the " + name() + " backend cannot read CUDA IPC handles (only the cuda backend can): send the "
                  "tensors in shared memory (shm) or as a checkpoint directory (path)");
}

size_t Backend::sleep(int) {
  throw std::logic_error("the " + name() + " backend cannot sleep (max_sleep_level() is 0)");
}

size_t Backend::wake_up() { return 0; }  // never asleep

std::optional<SamplingParamsError> check_sampling_params(const SamplingParams& s) {
  if (!std::isfinite(s.temperature) || s.temperature < 0.0f) {
    return SamplingParamsError{"temperature", "temperature " + std::to_string(s.temperature) +
                                                  " must be a finite number >= 0"};
  }
  if (!(s.top_p > 0.0f && s.top_p <= 1.0f)) {  // NaN fails too
    return SamplingParamsError{"top_p", "top_p " + std::to_string(s.top_p) + " must be in (0, 1]"};
  }
  if (!(s.min_p <= 1.0f)) {
    return SamplingParamsError{"min_p", "min_p " + std::to_string(s.min_p) + " must be <= 1 (<= 0: off)"};
  }
  return std::nullopt;
}

std::optional<std::string> input_position_offsets(const SequenceChunk& chunk, std::vector<int32_t>& offsets) {
  const size_t n = chunk.tokens.size();
  offsets.resize(n);
  if (chunk.parents.empty()) {
    for (size_t i = 0; i < n; ++i) offsets[i] = static_cast<int32_t>(i);
    return std::nullopt;
  }
  if (chunk.parents.size() != n) {
    return "tree parents has " + std::to_string(chunk.parents.size()) + " entries for " + std::to_string(n) +
           " tokens (one per token, or none for a chain)";
  }
  for (size_t i = 0; i < n; ++i) {
    const int32_t p = chunk.parents[i];
    if (p < -1 || p >= static_cast<int32_t>(i)) {
      return "tree parent " + std::to_string(p) + " of token " + std::to_string(i) + " is outside [-1, " +
             std::to_string(i) + ") (parents come before their children; -1 = the committed context)";
    }
    offsets[i] = p < 0 ? 0 : offsets[p] + 1;
  }
  return std::nullopt;
}

std::optional<std::string> check_chunk(const SequenceChunk& ch, int32_t length, const ModelConfig& c,
                                       std::vector<int32_t>& offsets) {
  if (ch.tokens.empty()) return "no tokens";
  const int64_t n = static_cast<int64_t>(ch.tokens.size());
  if (ch.first_output < 0 || ch.first_output > n) {
    return "first_output " + std::to_string(ch.first_output) + " outside [0, " + std::to_string(n) + "]";
  }
  for (int64_t i = 0; i < n; ++i) {
    if (ch.tokens[i] < 0 || ch.tokens[i] >= c.vocab_size) {
      return "token id " + std::to_string(ch.tokens[i]) + " at index " + std::to_string(i) +
             " is outside the vocabulary of " + std::to_string(c.vocab_size);
    }
  }
  if (length + n > c.max_position_embeddings) {
    return "length " + std::to_string(length + n) + " would exceed max_position_embeddings " +
           std::to_string(c.max_position_embeddings);
  }
  if (auto e = check_sampling_params(ch.sampling)) return e->reason;
  return input_position_offsets(ch, offsets);
}

void check_compact_kv(int32_t length, int32_t start, std::span<const int32_t> keep) {
  if (start < 0 || start > length) {
    throw std::invalid_argument("compact_kv: start " + std::to_string(start) + " outside [0, " +
                                std::to_string(length) + "]");
  }
  for (size_t j = 0; j < keep.size(); ++j) {
    if (keep[j] < 0 || keep[j] >= length - start || (j > 0 && keep[j] <= keep[j - 1])) {
      throw std::invalid_argument("compact_kv: kept row " + std::to_string(keep[j]) + " (entry " +
                                  std::to_string(j) + ") is not increasing within [0, " +
                                  std::to_string(length - start) + ") after start " + std::to_string(start));
    }
  }
}

void Backend::compact_kv(int64_t seq, int32_t start, std::span<const int32_t> keep) {
  check_compact_kv(sequence_length(seq), start, keep);
  for (size_t j = 0; j < keep.size(); ++j) {
    if (keep[j] != static_cast<int32_t>(j)) {
      throw std::logic_error("compact_kv: the " + name() + " backend does not support token trees: it can "
                             "only keep a prefix of the rows after start");
    }
  }
  truncate(seq, start + static_cast<int32_t>(keep.size()));
}

std::unique_ptr<Backend> make_backend(const std::filesystem::path& dir, const BackendOptions& opts) {
  if (opts.kind == "cpu") return make_cpu_backend(dir, opts);
  if (opts.kind == "cuda") {
#ifdef LONGTAIL_HAVE_CUDA
    return make_cuda_backend(dir, opts);
#else
    throw std::runtime_error("this build has no CUDA backend");
#endif
  }
  throw std::runtime_error("unknown backend kind \"" + opts.kind + "\" (expected cpu or cuda)");
}

bool cuda_backend_available() {
#ifdef LONGTAIL_HAVE_CUDA
  return cuda_device_present();
#else
  return false;
#endif
}

}  // namespace longtail::policy
