// Opening CUDA IPC handles safely: a handle is opaque bytes from the network, so everything that
// can be checked is checked before a kernel touches the memory behind it (an out-of-range read
// would be a sticky device fault that ends the worker): the manifest first, then each handle's
// allocation size as the driver reports it, then the views. Errors from cudaIpcOpenMemHandle are
// ordinary (not sticky) and become LoadErrors.
#include "policy/cuda_ipc_receive.h"

#include <cuda.h>
#include <cuda_runtime_api.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "kernels/convert.h"
#include "policy/cuda_buffer.h"
#include "policy/cuda_check.h"

namespace longtail::policy::cuda {
namespace {

std::string buffer_name(size_t i) { return "cuda-ipc buffer[" + std::to_string(i) + "]"; }

// The handles opened for one update, closed when it ends whatever happens.
class OpenedBuffers {
 public:
  ~OpenedBuffers() {
    for (void* p : ptrs_) cudaIpcCloseMemHandle(p);
  }
  void open(size_t index, const std::string& handle_bytes) {
    cudaIpcMemHandle_t handle;
    static_assert(sizeof(handle) == kCudaIpcHandleBytes);
    std::memcpy(&handle, handle_bytes.data(), sizeof(handle));
    void* p = nullptr;
    const cudaError_t e = cudaIpcOpenMemHandle(&p, handle, cudaIpcMemLazyEnablePeerAccess);
    if (e != cudaSuccess) {
      (void)cudaGetLastError();  // not sticky: clear it so the next CUDA call does not report it
      throw LoadError(buffer_name(index) + ": cannot open the CUDA IPC handle: " + cudaGetErrorString(e) +
                      " (it must come from cudaIpcGetMemHandle on a live cudaMalloc allocation of another "
                      "process on this host, on a device this GPU can reach)");
    }
    ptrs_.push_back(p);
  }
  const std::vector<void*>& ptrs() const { return ptrs_; }

 private:
  std::vector<void*> ptrs_;
};

// Bytes of the allocation that starts at p, from the driver (the runtime API has no query for it).
size_t allocation_bytes(size_t index, void* p) {
  using GetRange = CUresult (*)(CUdeviceptr*, size_t*, CUdeviceptr);
  static GetRange get_range = [] {
    void* fn = nullptr;
    cudaDriverEntryPointQueryResult found{};
    if (cudaGetDriverEntryPointByVersion("cuMemGetAddressRange", &fn, 12000, cudaEnableDefault, &found) !=
            cudaSuccess ||
        found != cudaDriverEntryPointSuccess)
      fn = nullptr;
    return reinterpret_cast<GetRange>(fn);
  }();
  if (get_range == nullptr) throw LoadError("cuda-ipc: the driver does not provide cuMemGetAddressRange");
  CUdeviceptr base = 0;
  size_t size = 0;
  if (get_range(&base, &size, reinterpret_cast<CUdeviceptr>(p)) != CUDA_SUCCESS)
    throw LoadError(buffer_name(index) + ": the driver cannot tell the opened allocation's size");
  // The handle names an allocation's start; memory before the mapping is not the trainer's to give.
  return size - static_cast<size_t>(reinterpret_cast<CUdeviceptr>(p) - base);
}

void check_finite_on_device(const Checkpoint& ck, kernels::Stream stream) {
  // One device word per tensor, read back once: a tensor's first non-finite flat index, or max.
  const auto& tensors = ck.tensors();
  DeviceBuffer first_bad(tensors.size() * sizeof(uint64_t));
  auto* slots = first_bad.get<uint64_t>();
  LT_CUDA_CHECK(cudaMemsetAsync(slots, 0xff, tensors.size() * sizeof(uint64_t), stream));
  size_t k = 0;
  for (const auto& [name, v] : tensors) {
    LT_KERNEL_CHECK(kernels::find_first_nonfinite(v.bytes.data(), element_type(v.dtype), v.numel(), slots + k, stream));
    ++k;
  }
  std::vector<uint64_t> host(tensors.size());
  LT_CUDA_CHECK(cudaMemcpyAsync(host.data(), slots, host.size() * sizeof(uint64_t), cudaMemcpyDeviceToHost, stream));
  LT_CUDA_CHECK(cudaStreamSynchronize(stream));
  k = 0;
  for (const auto& [name, v] : tensors) {
    if (host[k] != std::numeric_limits<uint64_t>::max())
      throw LoadError(v.file.string() + ": tensor \"" + name + "\": non-finite value at flat index " +
                      std::to_string(host[k]));
    ++k;
  }
}

}  // namespace

void receive_cuda_ipc_weights(DeviceWeights& weights, const ModelConfig& config, const CudaIpcTensorSource& source,
                              bool check_finite, kernels::Stream stream) {
  const auto t0 = std::chrono::steady_clock::now();
  check_cuda_ipc_manifest(source);
  OpenedBuffers opened;
  std::vector<const std::byte*> bases;
  for (size_t i = 0; i < source.buffers.size(); ++i) {
    opened.open(i, source.buffers[i].handle);
    void* p = opened.ptrs().back();
    const size_t have = allocation_bytes(i, p);
    if (source.buffers[i].size > have) {
      throw LoadError(buffer_name(i) + ": size " + std::to_string(source.buffers[i].size) +
                      " bytes is beyond the allocation the handle opens (" + std::to_string(have) + " bytes)");
    }
    bases.push_back(static_cast<const std::byte*>(p));
  }
  const Checkpoint views = cuda_ipc_views(source, config, bases);
  if (check_finite) check_finite_on_device(views, stream);
  weights.replace_from_device(views, stream);
  spdlog::info("cuda backend: {} tensors from {} CUDA IPC buffers ({:.1f} MB) in {:.1f} ms", views.tensors().size(),
               source.buffers.size(), views.weight_bytes() / 1e6,
               std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
}

}  // namespace longtail::policy::cuda
