// Reading an HF checkpoint directory: config.json (via model_config.h) plus safetensors weights,
// single file or sharded (model.safetensors.index.json). Files are memory-mapped and exposed as
// typed views {name, dtype, shape, bytes}, so a backend can upload bf16 weights as they are or
// convert any view to fp32. Everything is validated up front against the tensors the architecture
// needs (names, shapes, dtypes, byte ranges): a bad checkpoint is a LoadError naming the file, the
// tensor and the problem, never a crash or a silent default.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "policy/model_config.h"

namespace longtail::policy {

class LoadError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

enum class DType { kF32, kBF16, kF16 };

const char* dtype_name(DType dtype);  // "F32", "BF16", "F16" as safetensors writes them
size_t dtype_size(DType dtype);

inline float bf16_to_float(uint16_t bits) {
  const uint32_t w = static_cast<uint32_t>(bits) << 16;
  float f;
  static_assert(sizeof(f) == sizeof(w));
  __builtin_memcpy(&f, &w, sizeof(f));
  return f;
}
float f16_to_float(uint16_t bits);

// A tensor inside a memory-mapped safetensors file. `bytes` stays valid while the Checkpoint that
// produced it lives. Data are little-endian, row-major.
struct TensorView {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  std::span<const std::byte> bytes;
  std::filesystem::path file;  // for error messages

  int64_t numel() const;
};

// Converts any supported dtype to fp32; out.size() must equal view.numel().
void to_float(const TensorView& view, std::span<float> out);
std::vector<float> to_float(const TensorView& view);

// The tensors an architecture needs, with their HF names and shapes (lm_head only when untied).
struct ExpectedTensor {
  std::string name;
  std::vector<int64_t> shape;
};
std::vector<ExpectedTensor> expected_tensors(const ModelConfig& config);

// Per-layer HF tensor name, e.g. layer_tensor_name(3, "self_attn.q_proj.weight").
std::string layer_tensor_name(int layer, const std::string& suffix);

class MappedFile;  // read-only mmap of one file

// Where one tensor lies in a data region, as a safetensors header entry or a shared-memory manifest
// entry declares it. Both sources go through tensor_views() and Checkpoint's checks against the
// architecture, so a tensor set is validated the same way wherever its bytes come from.
struct TensorEntry {
  std::string name;
  std::string dtype;            // "F32" | "BF16" | "F16"
  std::vector<int64_t> shape;
  uint64_t begin = 0, end = 0;  // byte range [begin, end) relative to the start of the region
};

// Validates entries against the region (dtype supported, dimensions >= 0, range inside the region
// and equal to shape x dtype size, names unique, ranges non-overlapping) and returns views into
// data. `source` names the file or segment in each LoadError.
std::vector<TensorView> tensor_views(const std::filesystem::path& source, std::span<const std::byte> data,
                                     const std::vector<TensorEntry>& entries);

class Checkpoint {
 public:
  // Reads dir/config.json and the safetensors file(s), and validates every tensor the config
  // needs. Tensors that are not needed are refused (a checkpoint of another shape or model), except
  // HF's buffers that carry no weights (rotary inv_freq) and lm_head.weight of a tied model, which
  // are ignored with a log line.
  static Checkpoint open(const std::filesystem::path& dir);

  // A tensor set held in memory (e.g. a shared-memory segment from a trainer) for a model of
  // `config`: views over `region` are built by tensor_views() and checked against the architecture
  // exactly as open() checks a directory. `region` is kept mapped while the Checkpoint lives;
  // dir() is region's path.
  static Checkpoint from_region(const ModelConfig& config, std::shared_ptr<MappedFile> region,
                                const std::vector<TensorEntry>& entries);
  // Views already built by tensor_views() over memory the caller keeps alive, possibly several
  // regions and possibly memory the host cannot read (a trainer's GPU buffers opened by CUDA IPC,
  // cuda_ipc_weights.h: such a Checkpoint is only validated and handed to device code, never to
  // to_float or check_finite). Checked against the architecture exactly as open() checks a
  // directory; dir() is `source`.
  static Checkpoint from_views(const ModelConfig& config, const std::filesystem::path& source,
                               std::vector<TensorView> views);

  const std::filesystem::path& dir() const { return dir_; }
  const ModelConfig& config() const { return config_; }
  bool has(const std::string& name) const { return tensors_.count(name) != 0; }
  const TensorView& tensor(const std::string& name) const;  // LoadError when absent
  const std::map<std::string, TensorView>& tensors() const { return tensors_; }
  // Total bytes of weight data across the mapped files.
  size_t weight_bytes() const;

 private:
  // The checks against what the architecture needs: every expected tensor present with its shape,
  // nothing else but ignorable buffers (dropped here).
  void check_against_config();

  std::filesystem::path dir_;
  ModelConfig config_;
  std::vector<std::shared_ptr<MappedFile>> files_;
  std::map<std::string, TensorView> tensors_;
};

// Parses one safetensors file's header and returns its tensor views (validated: dtype known,
// shape × dtype size = byte range, ranges inside the file and non-overlapping). `file` must stay
// alive while the views are used. Exposed for tests and tools.
std::vector<TensorView> read_safetensors(const MappedFile& file);
std::shared_ptr<MappedFile> map_file(const std::filesystem::path& path);
size_t mapped_size(const MappedFile& file);

// Throws LoadError naming the first tensor that holds a NaN or an infinity and the element's flat
// index. A full pass over the data, hence only on request (UPDATE_WEIGHTS check_finite).
void check_finite(const Checkpoint& weights);

}  // namespace longtail::policy
