// The policy backend contract: what the rollout engine may ask of a loaded LLM, whatever device it
// runs on. One call, forward(), serves prefill, decode and speculative verification alike: every
// sequence contributes 1..k new tokens appended to its KV cache, and the backend returns, for each
// requested position, the token it samples there (counter-based RNG keyed by seed, uid, position,
// so the draw does not depend on batch composition or on how many tokens a forward processes), that
// token's logprob, and the logprob of the next *given* input token (teacher forcing: scoring and the
// re-prefill after a weight update both need it). Rollback of rejected draft positions is truncate();
// a chunk may also be a token tree (SequenceChunk::parents), whose accepted root-to-node path
// compact_kv() moves into consecutive positions.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <limits>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "policy/model_config.h"
#include "policy/sampling.h"

namespace longtail::policy {

class Checkpoint;
struct CudaIpcTensorSource;

// One sequence's share of a forward pass.
struct SequenceChunk {
  int64_t seq = -1;           // KV cache handle from Backend::create_sequence
  uint64_t uid = 0;           // RNG stream of the sequence (policy/sampling.h; stable across preemption)
  std::span<const int32_t> tokens;  // appended at positions [length(seq), length(seq) + size)
  SamplingParams sampling;    // temperature / top-k / top-p / min-p / seed / mask / logprobs mode
  // Outputs are produced for input indices i in [first_output, tokens.size()); a prefill of a long
  // prompt only needs the last one (first_output = size - 1), verification needs all of them, a
  // chunked prefill that is not the last chunk needs none (first_output = size).
  int32_t first_output = 0;
  // Token tree (verification of a drafter's tree). Empty: a chain, input i follows input i - 1.
  // Otherwise one entry per input: parents[i] in [-1, i) is the input that input i follows, -1 the
  // committed context. Input i sits at position length + depth(i) - 1 (depth of -1 is 0; see
  // input_position_offsets), attends to the committed context, its ancestors and itself only, and
  // its K/V are stored in cache row length + i whatever its position (compact_kv moves an accepted
  // path into place). parents[i] = i - 1 for all i is the chain. Backends whose
  // supports_token_trees() is false refuse a non-empty parents (std::invalid_argument).
  std::span<const int32_t> parents;
};

// Each input's position relative to the sequence's length (offset 0 = position length): i for a
// chain, depth(i) - 1 for a tree. The one reading of SequenceChunk::parents for every backend.
// Returns a message naming the first parent outside [-1, i) (or a parents size that is not the
// tokens' size), or nullopt when the chunk is well formed.
std::optional<std::string> input_position_offsets(const SequenceChunk& chunk, std::vector<int32_t>& offsets);

// One chunk's input check for a sequence of `length` positions under `config` (tokens non-empty
// and inside the vocabulary, first_output in range, length + size within max_position_embeddings,
// sampling parameters, tree parents; offsets as input_position_offsets). Returns the reason for the
// first problem, nullopt when the chunk is valid. The CPU and accounting backends' check.
std::optional<std::string> check_chunk(const SequenceChunk& chunk, int32_t length, const ModelConfig& config,
                                       std::vector<int32_t>& offsets);

// compact_kv's range check, shared by every backend: throws std::invalid_argument naming the entry.
void check_compact_kv(int32_t length, int32_t start, std::span<const int32_t> keep);

// The documented ranges of SamplingParams, the one input check of both backends and of the
// rollout request validator: temperature finite and >= 0, top_p in (0, 1], min_p <= 1 (<= 0 is
// off; top_k and seed take any value). Returns the first field out of range and a reason naming the
// value and the range. (A backend may still refuse a valid value it does not implement.)
struct SamplingParamsError {
  std::string field;   // "temperature", "top_p" or "min_p"
  std::string reason;
};
std::optional<SamplingParamsError> check_sampling_params(const SamplingParams& s);

// The result at input index i of a chunk: what follows position length + i.
// (In a tree, "what follows" is what follows input i's own position, length + depth(i) - 1.)
struct TokenOutput {
  int32_t sampled = -1;       // token drawn at absolute position (position of input i) + 1
  float sampled_logprob = 0;  // by sampling.logprobs_mode; raw: log softmax(logits / T)[sampled],
                              // T = 1 when greedy
  // The same logprob of the next given input token tokens[i + 1] (teacher forcing); NaN for the
  // chunk's last input, whose successor is not given. In a tree the next given input is input i's
  // first child (the lowest-index input whose parent is i); NaN when it has none.
  float next_input_logprob = std::numeric_limits<float>::quiet_NaN();
};

// One sequence's growth in a planned forward (Backend::can_fit).
struct KvGrowth {
  int64_t seq = -1;        // handle from create_sequence; -1: a sequence not created yet (length 0)
  int32_t new_tokens = 0;  // positions the forward appends
};

// A forward would need more KV positions than are free. Nothing was changed. The engine plans with
// can_fit, so this is the backend's guard against a plan that did not ask.
class KvCapacityError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// KV capacity, in tokens, for the scheduler's admission and preemption decisions.
struct KvCapacity {
  int64_t total_tokens = 0;   // all positions the cache can hold
  int64_t free_tokens = 0;    // positions not yet reserved by any sequence
  int32_t block_size = 1;     // allocation granularity; a sequence of L tokens uses ceil(L/B) blocks
};

class Backend {
 public:
  virtual ~Backend() = default;

  virtual const ModelConfig& config() const = 0;
  virtual std::string name() const = 0;  // "cpu" or "cuda"
  // The hardware it runs on, as measured cost models name it (rollout/measured_cost_model.h): the
  // CUDA runtime's device name ("NVIDIA H200") for the CUDA backend, name() otherwise.
  virtual std::string device_name() const { return name(); }
  // What forward() honours beyond temperature / top-k / top-p / seed; a backend without a feature
  // ignores its fields, so the engine refuses requests that need it. min_p: SamplingParams::min_p;
  // min_tokens: the mask (masked_tokens); processed logprobs: logprobs_mode kProcessed
  // (kernels/reference.h's rules 0 and 3).
  virtual bool samples_min_p() const { return false; }
  virtual bool samples_min_tokens() const { return false; }
  virtual bool samples_processed_logprobs() const { return false; }

  // KV cache handles. create_sequence() never allocates KV memory; positions are reserved by
  // forward() as tokens are appended, and a forward that would exceed capacity throws
  // KvCapacityError before touching any sequence.
  virtual int64_t create_sequence() = 0;
  virtual void release_sequence(int64_t seq) = 0;
  virtual int32_t sequence_length(int64_t seq) const = 0;
  // Rollback: keep the first new_length positions (new_length <= length). Frees whole blocks only.
  virtual void truncate(int64_t seq, int32_t new_length) = 0;
  virtual KvCapacity kv_capacity() const = 0;
  // Admission control before a forward (llama.cpp's find_slot): true when a forward appending
  // these positions would fit the KV cache as it stands now, by the backend's own accounting.
  // forward() refuses (KvCapacityError) exactly the batches this refuses. A handle may appear
  // once; an unknown one throws std::invalid_argument. The scheduler asks it before admitting or
  // growing a sequence, the draft planner before spending KV on drafts.
  virtual bool can_fit(std::span<const KvGrowth> batch) const = 0;

  // Runs one batched forward. Returns outputs flattened in chunk order, chunk c contributing
  // tokens.size() - first_output entries. Throws std::invalid_argument for a token id outside the
  // vocabulary, a sequence past max_position_embeddings or an unknown handle, without side effects.
  virtual std::vector<TokenOutput> forward(std::span<const SequenceChunk> chunks) = 0;

  // Token trees: true when forward() verifies SequenceChunk::parents and compact_kv() moves rows.
  // The speculative step asks for chains from a backend that answers false.
  virtual bool supports_token_trees() const { return false; }
  // After verifying a tree: keeps cache rows [0, start), then rows start + keep[0], start + keep[1],
  // ... moved to positions start, start + 1, ..., and drops every other row, so the length becomes
  // start + keep.size(). keep must be strictly increasing with start + keep.back() < length. Each
  // tree input's K was rotated at its own position (length + depth - 1), so an accepted
  // root-to-node path moved this way is exactly what a chain of the same tokens would have written.
  // Frees whole blocks as truncate() does. Throws std::invalid_argument, changing nothing, for a
  // keep list out of range. This default handles the chain case (keep[j] == j: a truncate) and
  // throws std::logic_error for any other; backends that support trees override it.
  virtual void compact_kv(int64_t seq, int32_t start, std::span<const int32_t> keep);

  // Replaces the weights with the checkpoint in dir (same architecture and shapes). The new
  // checkpoint is fully read and validated before anything is swapped: on any error the old
  // weights stay live and LoadError names the file, tensor and problem. KV contents of existing
  // sequences are stale afterwards; the engine re-prefills them.
  virtual void replace_weights(const std::filesystem::path& dir) = 0;
  // The same from a tensor set already open and validated (a checkpoint or a trainer's
  // shared-memory segment, see shared_tensors.h), read before this returns: the caller may
  // release it afterwards. Same guarantees: old weights stay live on any error.
  virtual void replace_weights(const Checkpoint& weights) = 0;
  // The same from tensors in a trainer's GPU memory on this host (CUDA IPC handles and a manifest,
  // cuda_ipc_weights.h), copied device to device and cast to the backend's dtypes; check_finite
  // refuses NaN or infinity before anything is written. Only a backend answering true to
  // takes_cuda_ipc_weights() can; the default throws LoadError naming the backend.
  virtual bool takes_cuda_ipc_weights() const { return false; }
  virtual void replace_weights_from_cuda_ipc(const CudaIpcTensorSource& source, bool check_finite);

  // Sleep (vLLM's sleep mode): hands the device memory back to a trainer colocated on it.
  // sleep(1) releases the KV cache and everything else the backend rebuilds without the checkpoint
  // (on the CUDA backend: KV buffer, activation buffers, cuBLAS workspace and CUDA graphs, cudaFree'd
  // so cudaMemGetInfo shows them free); the weights stay. sleep(2) releases the weights too; a
  // replace_weights* call while asleep loads new ones (sleep_level() then reads 1). Only with no
  // live sequence handle: std::logic_error naming how many are live otherwise (the engine drops
  // their KV first), and for a level outside [1, max_sleep_level()]. While asleep create_sequence()
  // and forward() throw std::logic_error, can_fit() is false and kv_capacity() reports 0 tokens;
  // replace_weights* work. wake_up() re-creates what sleep released with the same KV budget (the
  // same number of blocks); it throws std::logic_error at level 2 (no weights to serve) and
  // std::runtime_error when the memory cannot be had back, staying asleep in both cases. Both
  // return the bytes released / re-allocated. Sleeping or waking twice is a no-op returning 0.
  // max_sleep_level() 0 (the default): the backend cannot sleep and sleep() throws
  // std::logic_error naming it.
  virtual int max_sleep_level() const { return 0; }
  virtual int sleep_level() const { return 0; }  // 0 = awake
  virtual size_t sleep(int level);
  virtual size_t wake_up();
};

struct BackendOptions {
  std::string kind = "cpu";          // "cpu" | "cuda"
  int num_threads = 0;               // cpu: 0 = hardware concurrency
  int64_t max_kv_tokens = 0;         // cpu: 0 = unlimited (bounded by memory); cuda: see fraction
  double kv_memory_fraction = 0.85;  // cuda: share of free GPU memory given to the KV cache
  int32_t kv_block_size = 16;
  int device = 0;                    // cuda device ordinal
  // Batch-invariant kernels: a sequence's logits at a position are bitwise independent of the
  // batch, of how many tokens the forward carries for it (decode, verify, prefill chunks) and of
  // graph replay, so speculation cannot change outputs. cuda: costs throughput (bench/results/);
  // cpu: holds by construction, accepted. Default off.
  bool deterministic = false;
};

// Loads the checkpoint in dir and builds the requested backend. Throws LoadError (see checkpoint.h)
// for anything wrong with the checkpoint, std::runtime_error when the backend is unavailable (e.g.
// "cuda" in a build without CUDA or on a machine without a GPU).
std::unique_ptr<Backend> make_backend(const std::filesystem::path& dir, const BackendOptions& opts);

// True when this build has the CUDA backend and a GPU is visible.
bool cuda_backend_available();

}  // namespace longtail::policy
