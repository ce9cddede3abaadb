// Weights handed over in memory instead of through a checkpoint directory: a trainer on the same
// host writes its tensors into one POSIX shared-memory segment (/dev/shm/<name>) and describes
// them with a manifest (name, dtype, shape, byte range, as a safetensors header does). The segment
// is mapped read-only and validated by the same code as a safetensors checkpoint (checkpoint.h),
// so a bad manifest is a LoadError naming the segment, the tensor and the problem.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "policy/checkpoint.h"
#include "policy/model_config.h"

namespace longtail::policy {

// Only segments whose name starts with this prefix may be opened: a request cannot make the
// worker map an unrelated process's shared memory.
inline constexpr std::string_view kSharedSegmentPrefix = "longtail-";

struct SharedTensorSource {
  std::string segment;               // name under /dev/shm: kSharedSegmentPrefix + [A-Za-z0-9._-]
  uint64_t size = 0;                 // bytes the segment must have, exactly
  std::vector<TensorEntry> tensors;  // byte ranges relative to the segment's start

  bool empty() const { return segment.empty(); }  // no segment named: weights come from elsewhere
};

// Throws LoadError when the name is not an allowed segment name (prefix, no '/', no "..").
void check_segment_name(std::string_view segment);

// Maps the segment read-only and validates it for a model of `config`. The returned Checkpoint
// keeps the mapping alive; the segment itself stays owned (and unlinked) by its creator.
Checkpoint open_shared_tensors(const SharedTensorSource& source, const ModelConfig& config);

}  // namespace longtail::policy
