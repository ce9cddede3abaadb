// Element-type conversion and the non-finite scan for tensors that are already in device memory
// (possibly another process's, opened by CUDA IPC). Kept out of kernels.h because only the weight
// upload uses them. Same conventions as kernels.h: raw pointers, a stream, a Status; no sync.
#pragma once

#include <cstdint>

#include "kernels/kernels.h"

namespace longtail::kernels {

enum class ElementType { kF32, kBF16, kF16 };

// out[i] = in[i] as bf16 (rounded to nearest even) or as fp32 (exact), for i < n. `in` holds
// elements of `type`; in and out must not overlap.
Status convert_to_bf16(const void* in, ElementType type, bf16* out, int64_t n, Stream stream);
Status convert_to_f32(const void* in, ElementType type, float* out, int64_t n, Stream stream);

// Lowers *first_bad (device uint64) to the smallest i < n whose element is NaN or infinite; leaves
// it unchanged when every element is finite. The caller sets it (e.g. to UINT64_MAX) beforehand.
Status find_first_nonfinite(const void* in, ElementType type, int64_t n, uint64_t* first_bad,
                            Stream stream);

}  // namespace longtail::kernels
