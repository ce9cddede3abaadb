// Validation of a CUDA-IPC weight manifest (see cuda_ipc_weights.h). Everything but the opening
// of the handles lives here, on the checkpoint's own rules, so a manifest is refused for the same
// reasons and with the same words as a safetensors file, and CI can test every refusal without a GPU.
#include "policy/cuda_ipc_weights.h"

#include <map>

namespace longtail::policy {
namespace {

std::string buffer_name(uint64_t i) { return "cuda-ipc buffer[" + std::to_string(i) + "]"; }

}  // namespace

void check_cuda_ipc_manifest(const CudaIpcTensorSource& source) {
  if (source.buffers.empty()) throw LoadError("cuda-ipc: no buffers (at least one allocation handle is needed)");
  if (source.tensors.empty()) throw LoadError("cuda-ipc: no tensors in the manifest");
  std::map<std::string, size_t> seen;
  for (size_t i = 0; i < source.buffers.size(); ++i) {
    const std::string& h = source.buffers[i].handle;
    if (h.size() != kCudaIpcHandleBytes) {
      throw LoadError(buffer_name(i) + ": handle has " + std::to_string(h.size()) + " bytes, a cudaIpcMemHandle_t has " +
                      std::to_string(kCudaIpcHandleBytes));
    }
    const auto [it, fresh] = seen.emplace(h, i);
    if (!fresh) {
      throw LoadError(buffer_name(i) + ": same handle as " + buffer_name(it->second) +
                      " (list each allocation once and point its tensors into it)");
    }
  }
  for (const CudaIpcTensor& t : source.tensors) {
    if (t.buffer >= source.buffers.size()) {
      throw LoadError("cuda-ipc: tensor \"" + t.name + "\": buffer " + std::to_string(t.buffer) + " does not exist (" +
                      std::to_string(source.buffers.size()) + " buffers)");
    }
  }
}

Checkpoint cuda_ipc_views(const CudaIpcTensorSource& source, const ModelConfig& config,
                          std::span<const std::byte* const> bases) {
  check_cuda_ipc_manifest(source);
  if (bases.size() != source.buffers.size())
    throw std::invalid_argument("cuda_ipc_views: one base address per buffer is needed");
  std::vector<std::vector<TensorEntry>> per_buffer(source.buffers.size());
  for (const CudaIpcTensor& t : source.tensors)
    per_buffer[t.buffer].push_back(TensorEntry{t.name, t.dtype, t.shape, t.begin, t.end});
  std::vector<TensorView> views;
  for (size_t i = 0; i < per_buffer.size(); ++i) {
    const std::span<const std::byte> region(bases[i], source.buffers[i].size);
    for (TensorView& v : tensor_views(buffer_name(i), region, per_buffer[i])) views.push_back(std::move(v));
  }
  return Checkpoint::from_views(config, "cuda-ipc", std::move(views));
}

}  // namespace longtail::policy
