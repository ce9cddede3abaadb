// Weights handed over GPU to GPU: a trainer on this host shares the CUDA allocations that hold its
// tensors by CUDA IPC handles (cudaIpcGetMemHandle, as torch's storage._share_cuda_ returns them)
// and describes the tensors inside them with a manifest (name, dtype, shape, buffer, byte range),
// so UPDATE_WEIGHTS moves no byte through the host. This header is the description and its checks,
// usable without CUDA (the decoder, the CPU backend's refusal and CI's tests need them); the CUDA
// backend opens the handles and copies (policy/cuda_ipc_receive.h).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "policy/checkpoint.h"
#include "policy/model_config.h"

namespace longtail::policy {

inline constexpr size_t kCudaIpcHandleBytes = 64;  // sizeof(cudaIpcMemHandle_t)

// One allocation of the trainer's, opened once however many tensors lie in it.
struct CudaIpcBuffer {
  std::string handle;  // the kCudaIpcHandleBytes bytes of a cudaIpcMemHandle_t
  uint64_t size = 0;   // bytes from the allocation's start that tensors may use (<= its real size)
};

// A tensor inside buffers[buffer]: byte range [begin, end) from that allocation's start.
struct CudaIpcTensor {
  std::string name;
  std::string dtype;  // "F32" | "BF16" | "F16"
  std::vector<int64_t> shape;
  uint64_t buffer = 0;
  uint64_t begin = 0, end = 0;
};

struct CudaIpcTensorSource {
  std::vector<CudaIpcBuffer> buffers;
  std::vector<CudaIpcTensor> tensors;

  bool empty() const { return buffers.empty() && tensors.empty(); }  // none given
};

// The checks that need no GPU, before any handle is opened: at least one buffer and tensor, every
// handle kCudaIpcHandleBytes long and listed once (CUDA opens an allocation once per process),
// every tensor's buffer index in range. Throws LoadError naming the buffer or tensor.
void check_cuda_ipc_manifest(const CudaIpcTensorSource& source);

// The full validation of a checkpoint (checkpoint.h's tensor_views per buffer and the architecture
// checks) once buffer i is mapped at bases[i] (bases.size() == buffers.size()): dtype supported,
// shape x dtype size = range, ranges inside the buffer's size and not overlapping, every tensor the
// model needs with its shape and nothing else. The views point into the buffers; with device bases
// they must not be read on the host. Throws LoadError naming "cuda-ipc buffer[i]" and the tensor.
Checkpoint cuda_ipc_views(const CudaIpcTensorSource& source, const ModelConfig& config,
                          std::span<const std::byte* const> bases);

}  // namespace longtail::policy
