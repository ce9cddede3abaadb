// policy::Backend on one GPU (see cuda_backend.h): validates each forward on the host, reserves
// KV blocks, plans the device passes and hands them to the forward runner. Any failure before the
// device work leaves every sequence as it was; a device failure rolls the reservations back.
// Sleep frees the KV buffer and the forward runner (activations, cuBLAS workspace, CUDA graphs,
// stream) and at level 2 the weights; wake_up re-creates them with the same number of KV blocks
// and the deterministic GEMM algorithms chosen at start-up.
#include "policy/cuda_backend.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <unordered_set>

#include "kernels/kernels.h"
#include "policy/checkpoint.h"
#include "policy/cuda_check.h"
#include "policy/cuda_ipc_receive.h"
#include "policy/cuda_forward.h"
#include "policy/cuda_kv_blocks.h"
#include "policy/cuda_step_plan.h"
#include "policy/cuda_weights.h"

namespace longtail::policy {
namespace {

using cuda::DeviceBuffer;

// LONGTAIL_CUDA_GRAPHS: "0" = no graphs (and no padding); "eager" = the padded graph shapes, run
// without capture (the reference replay is checked against); anything else = graphs.
std::string graphs_mode() {
  const char* v = std::getenv("LONGTAIL_CUDA_GRAPHS");
  const std::string s = v ? v : "";
  if (s == "0") return "off";
  if (s == "eager") return "eager";
  if (!s.empty() && s != "1")
    spdlog::warn("cuda backend: LONGTAIL_CUDA_GRAPHS={} not understood (0, 1 or eager); graphs on", s);
  return "on";
}

// LONGTAIL_RAGGED_GRAPHS=0 keeps verify steps whose sequences add different token counts eager.
bool ragged_graphs_enabled() {
  const char* v = std::getenv("LONGTAIL_RAGGED_GRAPHS");
  return !(v && std::string(v) == "0");
}

// The sampler's form of the min_tokens mask: ascending, distinct, inside the vocabulary (ids
// outside it mask nothing, as in kernels/reference.h's rule 0). Empty when no position is masked.
std::vector<int32_t> mask_ids_of(const SamplingParams& s, int32_t vocab) {
  std::vector<int32_t> ids;
  if (s.mask_begin >= s.mask_end) return ids;
  for (const int32_t t : s.masked_tokens)
    if (t >= 0 && t < vocab) ids.push_back(t);
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  return ids;
}

class CudaBackend final : public Backend {
 public:
  CudaBackend(const ModelConfig& config, std::unique_ptr<cuda::DeviceWeights> weights,
              const BackendOptions& opts)
      : config_(config), weights_(std::move(weights)) {
    if (opts.kv_block_size <= 0)
      throw std::invalid_argument("kv_block_size must be positive, got " +
                                  std::to_string(opts.kv_block_size));
    if (!(opts.kv_memory_fraction > 0.0 && opts.kv_memory_fraction < 1.0))
      throw std::invalid_argument("kv_memory_fraction must be in (0, 1), got " +
                                  std::to_string(opts.kv_memory_fraction));
    cuda::PlanLimits limits;
    limits.block_size = opts.kv_block_size;
    const std::string mode = graphs_mode();
    limits.graphs = mode != "off";
    limits.ragged_graphs = ragged_graphs_enabled();
    limits_ = limits;
    capture_graphs_ = mode == "on";
    deterministic_ = opts.deterministic;
    runner_ = std::make_unique<cuda::ForwardRunner>(config_, limits_, capture_graphs_, deterministic_,
                                                    gemm_choices_);
    token_trees_ = runner_->supports_trees() && !runner_->deterministic();  // also while asleep

    size_t free_bytes = 0, total_bytes = 0;
    LT_CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes));
    const size_t slot_bytes = static_cast<size_t>(config_.num_kv_heads) * config_.head_dim * 2;
    const size_t block_bytes =
        2 * static_cast<size_t>(config_.num_layers) * opts.kv_block_size * slot_bytes;
    int64_t blocks = static_cast<int64_t>(
        static_cast<double>(free_bytes) * opts.kv_memory_fraction / static_cast<double>(block_bytes));
    if (opts.max_kv_tokens > 0)
      blocks = std::min<int64_t>(blocks, (opts.max_kv_tokens + opts.kv_block_size - 1) /
                                             opts.kv_block_size);
    blocks = std::min<int64_t>(blocks, INT32_MAX / opts.kv_block_size);
    if (blocks < 1)
      throw std::runtime_error("cuda backend: no GPU memory left for the KV cache (" +
                               std::to_string(free_bytes >> 20) + " MiB free)");
    kv_.num_blocks = static_cast<int32_t>(blocks);
    kv_.block_size = opts.kv_block_size;
    kv_.layer_bytes = static_cast<size_t>(blocks) * opts.kv_block_size * slot_bytes;
    allocate_kv();
    spdlog::info("cuda backend: KV cache of {} blocks x {} positions ({:.1f} GiB, {:.0f}% of {} "
                 "MiB free), graphs {}, ragged graphs {}",
                 kv_.num_blocks, kv_.block_size,
                 static_cast<double>(kv_buffer_.bytes()) / (1 << 30),
                 opts.kv_memory_fraction * 100, free_bytes >> 20, mode,
                 limits.graphs && limits.ragged_graphs ? "on" : "off");
  }

  const ModelConfig& config() const override { return config_; }
  std::string name() const override { return "cuda"; }
  std::string device_name() const override {
    int device = 0;
    cudaDeviceProp prop{};
    if (cudaGetDevice(&device) != cudaSuccess || cudaGetDeviceProperties(&prop, device) != cudaSuccess) {
      cudaGetLastError();
      return name();
    }
    return prop.name;
  }
  // kernels::sample_rows implements reference.h's whole rule: min-p, the mask, processed logprobs.
  bool samples_min_p() const override { return true; }
  bool samples_min_tokens() const override { return true; }
  bool samples_processed_logprobs() const override { return true; }

  int64_t create_sequence() override {
    check_awake("create_sequence");
    return blocks_->create();
  }
  void release_sequence(int64_t seq) override { blocks_->release(seq); }
  int32_t sequence_length(int64_t seq) const override { return blocks_->length(seq); }
  void truncate(int64_t seq, int32_t new_length) override { blocks_->truncate(seq, new_length); }
  bool can_fit(std::span<const KvGrowth> batch) const override {
    if (sleep_level_ > 0) return false;
    int64_t needed = 0;
    for (const KvGrowth& g : batch) {
      const int64_t len = g.seq < 0 ? 0 : blocks_->length(g.seq);
      needed += g.seq < 0 ? (g.new_tokens + kv_.block_size - 1) / kv_.block_size
                          : blocks_->blocks_needed(g.seq, len + g.new_tokens);
    }
    return needed <= blocks_->free_blocks();
  }
  KvCapacity kv_capacity() const override {
    KvCapacity k;
    k.block_size = kv_.block_size;
    if (sleep_level_ > 0) return k;  // no KV cache while asleep
    k.total_tokens = static_cast<int64_t>(blocks_->total_blocks()) * kv_.block_size;
    k.free_tokens = static_cast<int64_t>(blocks_->free_blocks()) * kv_.block_size;
    return k;
  }

  std::vector<TokenOutput> forward(std::span<const SequenceChunk> chunks) override {
    check_awake("forward");
    if (chunks.empty()) return {};
    std::vector<std::vector<int32_t>> offsets, mask_ids;
    validate(chunks, offsets, mask_ids);
    int64_t needed = 0;
    for (const auto& c : chunks)
      needed += blocks_->blocks_needed(
          c.seq, static_cast<int64_t>(blocks_->length(c.seq)) + static_cast<int64_t>(c.tokens.size()));
    if (needed > blocks_->free_blocks())
      throw KvCapacityError("cuda backend: forward needs " + std::to_string(needed) +
                            " KV blocks, " + std::to_string(blocks_->free_blocks()) + " free");

    std::vector<int32_t> old_lengths;
    old_lengths.reserve(chunks.size());
    for (const auto& c : chunks) {
      old_lengths.push_back(blocks_->length(c.seq));
      blocks_->grow(c.seq, old_lengths.back() + static_cast<int32_t>(c.tokens.size()));
    }
    try {
      std::vector<cuda::PlanChunk> plan(chunks.size());
      for (size_t i = 0; i < chunks.size(); ++i) {
        plan[i].blocks = &blocks_->blocks(chunks[i].seq);
        plan[i].old_length = old_lengths[i];
        plan[i].tokens = chunks[i].tokens;
        if (!chunks[i].parents.empty()) {
          plan[i].parents = chunks[i].parents;
          plan[i].offsets = offsets[i];
        }
        plan[i].first_output = chunks[i].first_output;
        plan[i].sampling = chunks[i].sampling;
        plan[i].uid = chunks[i].uid;
        plan[i].mask_ids = mask_ids[i];
      }
      const std::vector<cuda::PassPlan> passes = cuda::plan_passes(plan, runner_->limits());
      flush_kv_moves();
      return runner_->run(passes, weights_->view(), kv_);
    } catch (...) {
      for (size_t i = 0; i < chunks.size(); ++i) blocks_->truncate(chunks[i].seq, old_lengths[i]);
      throw;
    }
  }

  // Not in deterministic mode: a tree node's ancestors sit in other cache rows than its chain's,
  // between masked ones, so attention rounds its sums differently and the bitwise promise (a
  // node's logits are its chain's) would break; the speculative step then sends chains.
  bool supports_token_trees() const override { return token_trees_; }

  // The rows move on the device before the next forward's kernels (flush_kv_moves); the block
  // manager shrinks now. Blocks freed here may be handed to another sequence before the moves run:
  // harmless, since that sequence writes its rows only in a later forward, after the moves.
  void compact_kv(int64_t seq, int32_t start, std::span<const int32_t> keep) override {
    if (!blocks_->contains(seq))
      throw std::invalid_argument("compact_kv: unknown sequence handle " + std::to_string(seq));
    check_compact_kv(blocks_->length(seq), start, keep);
    if (moving_.count(seq)) flush_kv_moves();  // a second compaction reads what the first moves
    const std::vector<int32_t>& table = blocks_->blocks(seq);
    const int32_t B = kv_.block_size;
    auto slot = [&](int32_t pos) { return table[static_cast<size_t>(pos / B)] * B + pos % B; };
    bool moved = false;
    for (size_t j = 0; j < keep.size(); ++j) {
      const int32_t from = start + keep[j], to = start + static_cast<int32_t>(j);
      if (from == to) continue;
      if (!moved && move_groups_.empty()) move_groups_.push_back(0);
      move_src_.push_back(slot(from));
      move_dst_.push_back(slot(to));
      moved = true;
    }
    if (moved) {
      move_groups_.push_back(static_cast<int32_t>(move_src_.size()));
      moving_.insert(seq);
    }
    blocks_->truncate(seq, start + static_cast<int32_t>(keep.size()));
  }

  void replace_weights(const std::filesystem::path& dir) override { replace_weights(Checkpoint::open(dir)); }

  // Host-to-device copy of the validated host tensors (a mapped checkpoint or shared-memory segment).
  // After a level-2 sleep there are no weights to overwrite: the checkpoint gets a new allocation.
  void replace_weights(const Checkpoint& weights) override {
    LT_CUDA_CHECK(cudaStreamSynchronize(stream()));
    if (weights_) {
      weights_->replace(weights);
    } else {
      if (!same_shapes(config_, weights.config()))
        throw LoadError((weights.dir() / "config.json").string() + ": model shape differs from the loaded " +
                        config_.architecture_name);
      weights_ = std::make_unique<cuda::DeviceWeights>(weights);
      sleep_level_ = 1;
    }
  }

  // Device-to-device from a trainer's CUDA tensors (policy/cuda_ipc_receive.h). After a level-2
  // sleep into a fresh allocation, which replaces nothing until every check has passed.
  bool takes_cuda_ipc_weights() const override { return true; }
  void replace_weights_from_cuda_ipc(const CudaIpcTensorSource& source, bool check_finite) override {
    LT_CUDA_CHECK(cudaStreamSynchronize(stream()));
    if (weights_) {
      cuda::receive_cuda_ipc_weights(*weights_, config_, source, check_finite, stream());
      return;
    }
    auto fresh = std::make_unique<cuda::DeviceWeights>(config_, /*seed=*/0);
    cuda::receive_cuda_ipc_weights(*fresh, config_, source, check_finite, stream());
    weights_ = std::move(fresh);
    sleep_level_ = 1;
  }

  int max_sleep_level() const override { return 2; }
  int sleep_level() const override { return sleep_level_; }

  // Returns what cudaMemGetInfo sees freed (the KV buffer, the runner's buffers and graphs, and at
  // level 2 the weights), the figure a colocated trainer can use.
  size_t sleep(int level) override {
    if (level < 1 || level > 2)
      throw std::logic_error("cuda backend: sleep level " + std::to_string(level) + " outside [1, 2]");
    if (const size_t live = blocks_->num_sequences(); live > 0)
      throw std::logic_error("cuda backend: cannot sleep with " + std::to_string(live) +
                             " live sequences (release them first)");
    if (level <= sleep_level_) return 0;
    LT_CUDA_CHECK(cudaDeviceSynchronize());
    const size_t before = free_device_bytes();
    const size_t kv_bytes = kv_buffer_.bytes();
    move_src_.clear();
    move_dst_.clear();
    move_groups_.clear();
    moving_.clear();
    runner_.reset();
    kv_buffer_ = DeviceBuffer();
    kv_.base = nullptr;
    if (level == 2) weights_.reset();
    sleep_level_ = level;
    const size_t after = free_device_bytes();
    const size_t released = after > before ? after - before : 0;
    spdlog::info("cuda backend: asleep (level {}): {:.1f} MiB back to the device ({:.1f} MiB of KV cache)",
                 level, released / 1048576.0, kv_bytes / 1048576.0);
    return released;
  }

  // The same KV blocks as before the sleep (the budget was fixed at start-up, not re-derived from
  // what is free now). On failure everything re-created is freed again and the backend stays asleep.
  size_t wake_up() override {
    if (sleep_level_ == 0) return 0;
    if (!weights_)
      throw std::logic_error("cuda backend: cannot wake up: level-2 sleep released the weights and none "
                             "were loaded since (replace_weights first)");
    const size_t before = free_device_bytes();
    try {
      runner_ = std::make_unique<cuda::ForwardRunner>(config_, limits_, capture_graphs_, deterministic_,
                                                    gemm_choices_);
      allocate_kv();
    } catch (const std::exception& e) {
      runner_.reset();
      kv_buffer_ = DeviceBuffer();
      kv_.base = nullptr;
      cudaGetLastError();  // an allocation failure is not sticky; clear it for the next call
      throw std::runtime_error(std::string("cuda backend: cannot wake up (still asleep): ") + e.what());
    }
    sleep_level_ = 0;
    const size_t after = free_device_bytes();
    const size_t taken = before > after ? before - after : 0;
    spdlog::info("cuda backend: awake: {:.1f} MiB re-allocated ({} KV blocks)", taken / 1048576.0, kv_.num_blocks);
    return taken;
  }

  // ---- benchmark support ----
  CudaBackendStats stats() const {
    CudaBackendStats s;
    if (!weights_ || !runner_) return s;  // asleep
    s.weight_bytes_per_step = weights_->layout().bytes_read_per_step;
    s.kv_bytes_per_token = 2 * static_cast<size_t>(config_.num_layers) * config_.num_kv_heads *
                           config_.head_dim * 2;
    s.graph_replays = runner_->graph_replays();
    s.graphs_captured = runner_->graphs_captured();
    s.graph_capture_s = runner_->graph_capture_s();
    s.graphable_eager_passes = runner_->graphable_eager_passes();
    s.ungraphable_passes = runner_->ungraphable_passes();
    s.kv_blocks = kv_.num_blocks;
    return s;
  }

  void set_length(int64_t seq, int32_t length) {
    if (length < 0 || length > config_.max_position_embeddings)
      throw std::invalid_argument("benchmark length " + std::to_string(length) +
                                  " outside [0, max_position_embeddings]");
    if (length <= blocks_->length(seq)) {
      blocks_->truncate(seq, length);
      return;
    }
    if (blocks_->blocks_needed(seq, length) > blocks_->free_blocks())
      throw KvCapacityError("benchmark length " + std::to_string(length) + " does not fit");
    blocks_->grow(seq, length);
  }

  std::vector<float> last_logits(int32_t rows) {
    check_awake("last_logits");
    return runner_->last_logits(rows);
  }

  void fill_kv_random(uint64_t seed) {
    check_awake("fill_kv_random");
    LT_KERNEL_CHECK(kernels::fill_uniform_bf16(static_cast<kernels::bf16*>(kv_.base),
                                               static_cast<int64_t>(kv_buffer_.bytes() / 2), 1.0f,
                                               seed, runner_->stream()));
    LT_CUDA_CHECK(cudaStreamSynchronize(runner_->stream()));
  }

 private:
  // The KV buffer of kv_.num_blocks blocks (and the block manager at start-up; after a sleep it has
  // every block free already, since no sequence may be live to sleep).
  void allocate_kv() {
    kv_buffer_ = DeviceBuffer(kv_.layer_bytes * 2 * static_cast<size_t>(config_.num_layers));
    kv_.base = kv_buffer_.get();
    // Zeros, so that the attention of graph padding rows (which read block 0) stays finite.
    LT_CUDA_CHECK(cudaMemset(kv_.base, 0, kv_buffer_.bytes()));
    LT_CUDA_CHECK(cudaDeviceSynchronize());
    if (!blocks_) blocks_ = std::make_unique<cuda::KvBlockManager>(kv_.num_blocks, kv_.block_size);
  }

  void check_awake(const char* what) const {
    if (sleep_level_ > 0)
      throw std::logic_error(std::string("cuda backend: ") + what + " while asleep (level " +
                             std::to_string(sleep_level_) + "): wake_up() first");
  }

  // The runner's stream, or the legacy default stream while asleep (weights may change then).
  cudaStream_t stream() const { return runner_ ? runner_->stream() : nullptr; }

  static size_t free_device_bytes() {
    size_t free_bytes = 0, total_bytes = 0;
    LT_CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes));
    return free_bytes;
  }

  // Checks every chunk; offsets[i] receives chunk i's input positions minus the sequence length,
  // mask_ids[i] its min_tokens mask in the sampler's form.
  void validate(std::span<const SequenceChunk> chunks, std::vector<std::vector<int32_t>>& offsets,
                std::vector<std::vector<int32_t>>& mask_ids) const {
    offsets.resize(chunks.size());
    mask_ids.resize(chunks.size());
    std::unordered_set<int64_t> seen;
    for (size_t i = 0; i < chunks.size(); ++i) {
      const SequenceChunk& c = chunks[i];
      const std::string where = "chunk " + std::to_string(i) + " (sequence " + std::to_string(c.seq) + ")";
      if (!blocks_->contains(c.seq))
        throw std::invalid_argument(where + ": unknown sequence handle");
      if (!seen.insert(c.seq).second)
        throw std::invalid_argument(where + ": sequence appears twice in one forward");
      if (c.tokens.empty()) throw std::invalid_argument(where + ": no tokens");
      if (!c.parents.empty()) {
        if (!supports_token_trees())
          throw std::invalid_argument(where + ": token trees (SequenceChunk::parents) need head_dim 64 "
                                      "or 128 and the fast (not deterministic) mode on the cuda "
                                      "backend (supports_token_trees() is false)");
        if (c.tokens.size() > 64)
          throw std::invalid_argument(where + ": a token tree of " + std::to_string(c.tokens.size()) +
                                      " inputs; the cuda backend verifies at most 64 per chunk");
      }
      if (auto e = input_position_offsets(c, offsets[i])) throw std::invalid_argument(where + ": " + *e);
      const int64_t n = static_cast<int64_t>(c.tokens.size());
      if (c.first_output < 0 || c.first_output > n)
        throw std::invalid_argument(where + ": first_output " + std::to_string(c.first_output) +
                                    " outside [0, " + std::to_string(n) + "]");
      const int64_t end = static_cast<int64_t>(blocks_->length(c.seq)) + n;
      if (end > config_.max_position_embeddings)
        throw std::invalid_argument(where + ": length " + std::to_string(end) +
                                    " exceeds max_position_embeddings " +
                                    std::to_string(config_.max_position_embeddings));
      for (int64_t j = 0; j < n; ++j) {
        const int32_t t = c.tokens[static_cast<size_t>(j)];
        if (t < 0 || t >= config_.vocab_size)
          throw std::invalid_argument(where + ": token id " + std::to_string(t) + " at index " +
                                      std::to_string(j) + " outside the vocabulary [0, " +
                                      std::to_string(config_.vocab_size) + ")");
      }
      if (auto e = check_sampling_params(c.sampling)) throw std::invalid_argument(where + ": " + e->reason);
      mask_ids[i] = mask_ids_of(c.sampling, config_.vocab_size);
      if (mask_ids[i].size() > static_cast<size_t>(runner_->limits().max_mask_ids_per_seq))
        throw std::invalid_argument(where + ": a min_tokens mask of " + std::to_string(mask_ids[i].size()) +
                                    " distinct stop tokens; the cuda backend masks at most " +
                                    std::to_string(runner_->limits().max_mask_ids_per_seq) + " per sequence");
    }
  }

  // Enqueues the pending compactions (one group per compact_kv call) ahead of any device work.
  void flush_kv_moves() {
    if (move_src_.empty()) return;
    runner_->move_kv_rows(kv_, move_src_, move_dst_, move_groups_);
    move_src_.clear();
    move_dst_.clear();
    move_groups_.clear();
    moving_.clear();
  }

  ModelConfig config_;
  std::unique_ptr<cuda::DeviceWeights> weights_;  // null after sleep(2) until replace_weights
  std::unique_ptr<cuda::ForwardRunner> runner_;   // null while asleep
  cuda::PlanLimits limits_;                       // what the runner is (re-)created with
  // The deterministic GEMMs' algorithm choices: made by the first runner, re-used by the runners
  // a wake creates (choosing times candidates on the device: most of a wake otherwise).
  std::shared_ptr<cuda::GemmChoices> gemm_choices_ = std::make_shared<cuda::GemmChoices>();
  bool capture_graphs_ = true;
  bool deterministic_ = false;
  bool token_trees_ = false;
  int sleep_level_ = 0;
  DeviceBuffer kv_buffer_;
  cuda::KvPool kv_;
  std::unique_ptr<cuda::KvBlockManager> blocks_;
  std::vector<int32_t> move_src_, move_dst_, move_groups_;  // compactions not yet on the device
  std::unordered_set<int64_t> moving_;                       // their sequences
};

CudaBackend& as_cuda(Backend& b) {
  auto* c = dynamic_cast<CudaBackend*>(&b);
  if (!c) throw std::invalid_argument("backend '" + b.name() + "' is not the CUDA backend");
  return *c;
}

void select_device(int device) {
  if (!cuda_device_present()) throw std::runtime_error("cuda backend: no CUDA device is visible");
  int count = 0;
  LT_CUDA_CHECK(cudaGetDeviceCount(&count));
  if (device < 0 || device >= count)
    throw std::invalid_argument("cuda backend: device " + std::to_string(device) + " outside [0, " +
                                std::to_string(count) + ")");
  LT_CUDA_CHECK(cudaSetDevice(device));
}

}  // namespace

bool cuda_device_present() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();
    return false;
  }
  return count > 0;
}

std::unique_ptr<Backend> make_cuda_backend(const std::filesystem::path& dir,
                                           const BackendOptions& opts) {
  const Checkpoint ck = Checkpoint::open(dir);
  select_device(opts.device);
  auto weights = std::make_unique<cuda::DeviceWeights>(ck);
  return std::make_unique<CudaBackend>(ck.config(), std::move(weights), opts);
}

std::unique_ptr<Backend> make_cuda_backend_random(const ModelConfig& config,
                                                  const BackendOptions& opts, uint64_t seed) {
  if (config.num_heads <= 0 || config.num_kv_heads <= 0 || config.num_heads % config.num_kv_heads ||
      config.head_dim <= 0 || config.hidden_size <= 0 || config.vocab_size <= 0 ||
      config.num_layers <= 0 || config.intermediate_size <= 0)
    throw std::invalid_argument("make_cuda_backend_random: inconsistent model shape");
  select_device(opts.device);
  auto weights = std::make_unique<cuda::DeviceWeights>(config, seed);
  return std::make_unique<CudaBackend>(config, std::move(weights), opts);
}

CudaBackendStats cuda_backend_stats(const Backend& backend) {
  return as_cuda(const_cast<Backend&>(backend)).stats();
}

void cuda_set_length_for_benchmark(Backend& backend, int64_t seq, int32_t length) {
  as_cuda(backend).set_length(seq, length);
}

void cuda_fill_kv_random(Backend& backend, uint64_t seed) { as_cuda(backend).fill_kv_random(seed); }

std::vector<float> cuda_last_logits(Backend& backend, int32_t rows) {
  return as_cuda(backend).last_logits(rows);
}

}  // namespace longtail::policy
