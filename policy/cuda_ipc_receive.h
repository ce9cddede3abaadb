// The CUDA backend's side of UPDATE_WEIGHTS cuda_ipc (cuda_ipc_weights.h): opens a trainer's
// allocation handles, checks the manifest against them and the model, copies the tensors into the
// model's weights device to device, and closes every handle on every path.
#pragma once

#include "kernels/kernels.h"
#include "policy/cuda_ipc_weights.h"
#include "policy/cuda_weights.h"

namespace longtail::policy::cuda {

// Nothing is written to `weights` until every check has passed (manifest, handles, sizes against
// the opened allocations, the architecture, and with check_finite every value on the GPU); on any
// failure LoadError names the buffer or tensor and the old weights stay. Synchronises `stream`.
void receive_cuda_ipc_weights(DeviceWeights& weights, const ModelConfig& config, const CudaIpcTensorSource& source,
                              bool check_finite, kernels::Stream stream);

}  // namespace longtail::policy::cuda
