// safetensors reading (single file or sharded index) over read-only memory maps, and validation of
// the tensors against what the architecture needs. The header of every file is checked before any
// byte of data is touched: a truncated download or a hand-edited header becomes a LoadError with the
// file and tensor in it instead of a read past the end of a mapping.
#include "policy/checkpoint.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

namespace longtail::policy {

class MappedFile {
 public:
  MappedFile(std::filesystem::path path, const std::byte* data, size_t size)
      : path_(std::move(path)), data_(data), size_(size) {}
  ~MappedFile() {
    if (data_ != nullptr && size_ > 0) munmap(const_cast<std::byte*>(data_), size_);
  }
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const std::filesystem::path& path() const { return path_; }
  const std::byte* data() const { return data_; }
  size_t size() const { return size_; }

 private:
  std::filesystem::path path_;
  const std::byte* data_;
  size_t size_;
};

namespace {

using nlohmann::json;

std::string shape_str(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

[[noreturn]] void fail(const std::filesystem::path& file, const std::string& tensor,
                       const std::string& problem) {
  throw LoadError(file.string() + (tensor.empty() ? "" : ": tensor \"" + tensor + "\"") + ": " + problem);
}

bool parse_dtype(const std::string& s, DType* out) {
  if (s == "F32") *out = DType::kF32;
  else if (s == "BF16") *out = DType::kBF16;
  else if (s == "F16") *out = DType::kF16;
  else return false;
  return true;
}

}  // namespace

const char* dtype_name(DType dtype) {
  switch (dtype) {
    case DType::kF32: return "F32";
    case DType::kBF16: return "BF16";
    case DType::kF16: return "F16";
  }
  return "?";
}

size_t dtype_size(DType dtype) { return dtype == DType::kF32 ? 4 : 2; }

float f16_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1Fu;
  const uint32_t mant = h & 0x3FFu;
  uint32_t bits;
  if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else {  // subnormal: value = mant * 2^-24, exactly representable in fp32
      const float v = static_cast<float>(mant) * 5.9604644775390625e-8f;
      std::memcpy(&bits, &v, 4);
      bits |= sign;
    }
  } else if (exp == 31) {
    bits = sign | 0x7F800000u | (mant << 13);
  } else {
    bits = sign | ((exp + 112) << 23) | (mant << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

int64_t TensorView::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

void to_float(const TensorView& view, std::span<float> out) {
  const int64_t n = view.numel();
  if (static_cast<int64_t>(out.size()) != n) {
    throw std::invalid_argument("to_float: tensor " + view.name + " has " + std::to_string(n) +
                                " elements, output has " + std::to_string(out.size()));
  }
  const std::byte* p = view.bytes.data();
  switch (view.dtype) {
    case DType::kF32:
      std::memcpy(out.data(), p, n * 4);
      break;
    case DType::kBF16:
      for (int64_t i = 0; i < n; ++i) {
        uint16_t b;
        std::memcpy(&b, p + 2 * i, 2);
        out[i] = bf16_to_float(b);
      }
      break;
    case DType::kF16:
      for (int64_t i = 0; i < n; ++i) {
        uint16_t b;
        std::memcpy(&b, p + 2 * i, 2);
        out[i] = f16_to_float(b);
      }
      break;
  }
}

std::vector<float> to_float(const TensorView& view) {
  std::vector<float> out(static_cast<size_t>(view.numel()));
  to_float(view, out);
  return out;
}

std::string layer_tensor_name(int layer, const std::string& suffix) {
  return "model.layers." + std::to_string(layer) + "." + suffix;
}

std::vector<ExpectedTensor> expected_tensors(const ModelConfig& c) {
  const int64_t H = c.hidden_size, I = c.intermediate_size, V = c.vocab_size, D = c.head_dim;
  const int64_t q = int64_t{c.num_heads} * D, kv = int64_t{c.num_kv_heads} * D;
  std::vector<ExpectedTensor> out;
  out.push_back({"model.embed_tokens.weight", {V, H}});
  for (int l = 0; l < c.num_layers; ++l) {
    auto add = [&](const std::string& s, std::vector<int64_t> shape) {
      out.push_back({layer_tensor_name(l, s), std::move(shape)});
    };
    add("input_layernorm.weight", {H});
    add("self_attn.q_proj.weight", {q, H});
    add("self_attn.k_proj.weight", {kv, H});
    add("self_attn.v_proj.weight", {kv, H});
    add("self_attn.o_proj.weight", {H, q});
    if (c.attention_bias) {
      add("self_attn.q_proj.bias", {q});
      add("self_attn.k_proj.bias", {kv});
      add("self_attn.v_proj.bias", {kv});
    }
    if (c.qk_norm) {
      add("self_attn.q_norm.weight", {D});
      add("self_attn.k_norm.weight", {D});
    }
    add("post_attention_layernorm.weight", {H});
    add("mlp.gate_proj.weight", {I, H});
    add("mlp.up_proj.weight", {I, H});
    add("mlp.down_proj.weight", {H, I});
  }
  out.push_back({"model.norm.weight", {H}});
  if (!c.tie_word_embeddings) out.push_back({"lm_head.weight", {V, H}});
  return out;
}

std::shared_ptr<MappedFile> map_file(const std::filesystem::path& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail(path, "", std::string("cannot open: ") + std::strerror(errno));
  struct stat st {};
  if (fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    fail(path, "", std::string("cannot stat: ") + std::strerror(err));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    fail(path, "", "not a regular file");
  }
  const size_t size = static_cast<size_t>(st.st_size);
  if (size == 0) {
    ::close(fd);
    return std::make_shared<MappedFile>(path, nullptr, 0);
  }
  void* p = mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  const int err = errno;
  ::close(fd);
  if (p == MAP_FAILED) fail(path, "", std::string("cannot mmap: ") + std::strerror(err));
  return std::make_shared<MappedFile>(path, static_cast<const std::byte*>(p), size);
}

std::vector<TensorView> read_safetensors(const MappedFile& file) {
  const auto& path = file.path();
  const size_t size = file.size();
  if (size < 8) fail(path, "", "truncated file: " + std::to_string(size) + " bytes, no header length");
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | std::to_integer<uint64_t>(file.data()[i]);
  if (header_len > size - 8) {
    fail(path, "", "header length " + std::to_string(header_len) + " is beyond the file (" +
                       std::to_string(size) + " bytes): truncated or not a safetensors file");
  }
  const char* hp = reinterpret_cast<const char*>(file.data() + 8);
  json header;
  try {
    header = json::parse(hp, hp + header_len);
  } catch (const json::parse_error& e) {
    fail(path, "", std::string("bad JSON in the safetensors header: ") + e.what());
  }
  if (!header.is_object()) fail(path, "", "the safetensors header is not a JSON object");
  const size_t data_begin = 8 + header_len;
  const size_t data_size = size - data_begin;

  std::vector<TensorEntry> entries;
  for (const auto& [name, entry] : header.items()) {
    if (name == "__metadata__") continue;
    if (!entry.is_object() || !entry.contains("dtype") || !entry.contains("shape") ||
        !entry.contains("data_offsets")) {
      fail(path, name, "header entry lacks dtype, shape or data_offsets");
    }
    TensorEntry t;
    t.name = name;
    if (!entry["dtype"].is_string()) fail(path, name, "unsupported dtype " + entry["dtype"].dump() + " (supported: F32, BF16, F16)");
    t.dtype = entry["dtype"].get<std::string>();
    if (!entry["shape"].is_array()) fail(path, name, "shape is not a list");
    for (const json& d : entry["shape"]) {
      if (!d.is_number_integer()) fail(path, name, "bad shape " + entry["shape"].dump());
      t.shape.push_back(d.get<int64_t>());
    }
    const json& off = entry["data_offsets"];
    if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() || !off[1].is_number_unsigned()) {
      fail(path, name, "data_offsets must be two non-negative integers, got " + off.dump());
    }
    t.begin = off[0].get<uint64_t>();
    t.end = off[1].get<uint64_t>();
    entries.push_back(std::move(t));
  }
  return tensor_views(path, std::span<const std::byte>(file.data() + data_begin, data_size), entries);
}

std::vector<TensorView> tensor_views(const std::filesystem::path& path, std::span<const std::byte> data,
                                     const std::vector<TensorEntry>& entries) {
  const size_t data_size = data.size();
  std::vector<TensorView> views;
  std::set<std::string> names;
  std::vector<std::pair<uint64_t, uint64_t>> ranges;  // (begin, end) for the overlap check
  for (const TensorEntry& t : entries) {
    const std::string& name = t.name;
    if (name.empty()) fail(path, name, "tensor with an empty name");
    if (!names.insert(name).second) fail(path, name, "tensor is listed twice");
    TensorView v;
    v.name = name;
    v.file = path;
    if (!parse_dtype(t.dtype, &v.dtype)) {
      fail(path, name, "unsupported dtype \"" + t.dtype + "\" (supported: F32, BF16, F16)");
    }
    uint64_t numel = 1;
    for (int64_t d : t.shape) {
      if (d < 0) fail(path, name, "bad shape " + shape_str(t.shape));
      if (d > 0 && numel > (uint64_t{1} << 48) / static_cast<uint64_t>(d)) {
        fail(path, name, "shape " + shape_str(t.shape) + " is too large");
      }
      numel *= static_cast<uint64_t>(d);
    }
    v.shape = t.shape;
    const std::string off = "[" + std::to_string(t.begin) + ", " + std::to_string(t.end) + "]";
    if (t.begin > t.end) fail(path, name, "data_offsets " + off + " run backwards");
    if (t.end > data_size) {
      fail(path, name, "data_offsets " + off + " end beyond the data (" + std::to_string(data_size) +
                           " bytes): truncated file or offsets out of range");
    }
    if (t.end - t.begin != numel * dtype_size(v.dtype)) {
      fail(path, name, "byte range of " + std::to_string(t.end - t.begin) + " bytes does not match shape " +
                           shape_str(v.shape) + " of " + dtype_name(v.dtype));
    }
    v.bytes = data.subspan(t.begin, t.end - t.begin);
    ranges.emplace_back(t.begin, t.end);
    views.push_back(std::move(v));
  }
  std::vector<size_t> order(ranges.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return ranges[a] < ranges[b]; });
  for (size_t i = 1; i < order.size(); ++i) {
    const auto& prev = ranges[order[i - 1]];
    const auto& cur = ranges[order[i]];
    if (cur.first < prev.second && cur.first != cur.second) {
      fail(path, entries[order[i]].name, "data overlaps tensor \"" + entries[order[i - 1]].name + "\"");
    }
  }
  return views;
}

namespace {

json read_index(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(path, "", "cannot open");
  std::stringstream buf;
  buf << in.rdbuf();
  json j;
  try {
    j = json::parse(buf.str());
  } catch (const json::parse_error& e) {
    fail(path, "", std::string("bad JSON: ") + e.what());
  }
  if (!j.is_object() || !j.contains("weight_map") || !j["weight_map"].is_object()) {
    fail(path, "", "no \"weight_map\" object");
  }
  return j;
}

// Buffers HF writes that carry no weights we need.
bool ignorable(const std::string& name) {
  return name.size() >= 20 && name.ends_with("rotary_emb.inv_freq");
}

}  // namespace

Checkpoint Checkpoint::open(const std::filesystem::path& dir) {
  Checkpoint ck;
  ck.dir_ = dir;
  if (!std::filesystem::is_directory(dir)) throw LoadError(dir.string() + ": not a directory");
  ck.config_ = load_model_config(dir);

  const auto index_path = dir / "model.safetensors.index.json";
  const auto single_path = dir / "model.safetensors";
  std::map<std::string, std::string> weight_map;  // tensor -> shard file name (sharded only)
  std::vector<std::string> files;
  if (std::filesystem::exists(index_path)) {
    const json idx = read_index(index_path);
    std::set<std::string> seen;
    for (const auto& [name, f] : idx["weight_map"].items()) {
      if (!f.is_string()) fail(index_path, name, "weight_map value is not a file name");
      const std::string fname = f.get<std::string>();
      if (fname.find('/') != std::string::npos || fname == "..") {
        fail(index_path, name, "shard name \"" + fname + "\" is not a plain file name");
      }
      weight_map[name] = fname;
      if (seen.insert(fname).second) files.push_back(fname);
    }
  } else if (std::filesystem::exists(single_path)) {
    files.push_back("model.safetensors");
  } else {
    throw LoadError(dir.string() + ": no model.safetensors or model.safetensors.index.json "
                                   "(only safetensors checkpoints are supported)");
  }

  // Map every file before reading any, so a shard that is missing is reported as such rather than
  // as the index disagreeing with the shards that are there.
  std::vector<std::shared_ptr<MappedFile>> mapped;
  for (const std::string& fname : files) mapped.push_back(map_file(dir / fname));
  for (size_t fi = 0; fi < files.size(); ++fi) {
    const std::string& fname = files[fi];
    auto& mf = mapped[fi];
    for (TensorView& v : read_safetensors(*mf)) {
      if (!weight_map.empty()) {
        auto it = weight_map.find(v.name);
        if (it == weight_map.end() || it->second != fname) {
          fail(mf->path(), v.name, "tensor is in this shard but model.safetensors.index.json does not "
                                   "map it here");
        }
      }
      if (ck.tensors_.count(v.name)) fail(mf->path(), v.name, "tensor appears in more than one file");
      const std::string name = v.name;
      ck.tensors_.emplace(name, std::move(v));
    }
    ck.files_.push_back(std::move(mf));
  }
  for (const auto& [name, fname] : weight_map) {
    if (!ck.tensors_.count(name)) {
      fail(dir / fname, name, "missing tensor: model.safetensors.index.json maps it to this shard");
    }
  }

  ck.check_against_config();
  spdlog::info("{}: {} tensors in {} file(s), {:.1f} MB", dir.string(), ck.tensors_.size(), files.size(),
               ck.weight_bytes() / 1e6);
  return ck;
}

void Checkpoint::check_against_config() {
  std::set<std::string> needed;
  for (const ExpectedTensor& e : expected_tensors(config_)) {
    needed.insert(e.name);
    auto it = tensors_.find(e.name);
    if (it == tensors_.end()) {
      fail(dir_, e.name, "missing tensor (" + config_.architecture_name + " needs shape " +
                            shape_str(e.shape) + ")");
    }
    if (it->second.shape != e.shape) {
      fail(it->second.file, e.name, "wrong shape " + shape_str(it->second.shape) + ", expected " +
                                        shape_str(e.shape) + " from config.json");
    }
  }
  for (auto it = tensors_.begin(); it != tensors_.end();) {
    const std::string& name = it->first;
    if (needed.count(name)) {
      ++it;
      continue;
    }
    if (ignorable(name)) {
      it = tensors_.erase(it);
      continue;
    }
    if (name == "lm_head.weight" && config_.tie_word_embeddings) {
      spdlog::warn("{}: lm_head.weight present although tie_word_embeddings is true; using "
                   "model.embed_tokens.weight as HF does",
                   it->second.file.string());
      it = tensors_.erase(it);
      continue;
    }
    fail(it->second.file, name, "unexpected tensor: " + config_.architecture_name +
                                    " with this config.json has no such weight");
  }
}

Checkpoint Checkpoint::from_region(const ModelConfig& config, std::shared_ptr<MappedFile> region,
                                   const std::vector<TensorEntry>& entries) {
  Checkpoint ck;
  ck.dir_ = region->path();
  ck.config_ = config;
  for (TensorView& v : tensor_views(region->path(), std::span<const std::byte>(region->data(), region->size()),
                                    entries)) {
    const std::string name = v.name;
    ck.tensors_.emplace(name, std::move(v));
  }
  ck.files_.push_back(std::move(region));
  ck.check_against_config();
  return ck;
}

Checkpoint Checkpoint::from_views(const ModelConfig& config, const std::filesystem::path& source,
                                  std::vector<TensorView> views) {
  Checkpoint ck;
  ck.dir_ = source;
  ck.config_ = config;
  for (TensorView& v : views) {
    const std::string name = v.name;
    const std::filesystem::path file = v.file;
    if (!ck.tensors_.emplace(name, std::move(v)).second) fail(file, name, "tensor is listed twice");
  }
  ck.check_against_config();
  return ck;
}

size_t mapped_size(const MappedFile& file) { return file.size(); }

void check_finite(const Checkpoint& weights) {
  for (const auto& [name, v] : weights.tensors()) {
    const int64_t n = v.numel();
    const std::byte* p = v.bytes.data();
    for (int64_t i = 0; i < n; ++i) {
      bool finite;
      if (v.dtype == DType::kF32) {
        uint32_t b;
        std::memcpy(&b, p + 4 * i, 4);
        finite = (b & 0x7F800000u) != 0x7F800000u;
      } else {
        uint16_t b;
        std::memcpy(&b, p + 2 * i, 2);
        const uint16_t exp = v.dtype == DType::kBF16 ? 0x7F80u : 0x7C00u;
        finite = (b & exp) != exp;
      }
      if (!finite) fail(v.file, name, "non-finite value at flat index " + std::to_string(i));
    }
  }
}

const TensorView& Checkpoint::tensor(const std::string& name) const {
  auto it = tensors_.find(name);
  if (it == tensors_.end()) fail(dir_, name, "missing tensor");
  return it->second;
}

size_t Checkpoint::weight_bytes() const {
  size_t n = 0;
  for (const auto& [name, v] : tensors_) n += v.bytes.size();
  return n;
}

}  // namespace longtail::policy
