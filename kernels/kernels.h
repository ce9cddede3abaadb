// Public API of longtail's CUDA kernels (FlashInfer-like): plain functions taking raw device
// pointers, sizes, strides and a stream, returning a Status. The caller owns every buffer and all
// metadata. Includable from non-CUDA translation units
// (cudaStream_t is `CUstream_st*`, bf16 is a 2-byte POD layout-compatible with __nv_bfloat16).
// The definitions exist only in builds with LONGTAIL_HAVE_CUDA; the plain C++ reference of every
// kernel is in kernels/reference.h and is always built.
//
// Conventions shared by all kernels:
//  * "row stride" arguments are in elements, not bytes, and let a kernel read a slice of a fused
//    buffer in place (e.g. q/k/v inside the fused QKV GEMM output).
//  * Math is fp32 (fp64 where the sampler needs bit-exact agreement with its reference); bf16
//    results are rounded once, to nearest even.
//  * A kernel returns kInvalidArgument (and sets last_error()) for null pointers, negative sizes
//    or unsupported shapes, before launching anything; kLaunchFailed when the launch itself fails.
//    It never synchronises the stream, so everything is CUDA-graph capturable.
//  * Work of size zero is a no-op returning kOk.
#pragma once

#include <cstddef>
#include <cstdint>

struct CUstream_st;

namespace longtail::kernels {

using Stream = CUstream_st*;  // == cudaStream_t; nullptr is the legacy default stream

// bf16 storage (sign, 8 exponent bits, 7 mantissa bits); reinterpret_cast __nv_bfloat16* to it.
struct bf16 {
  uint16_t bits;
};
static_assert(sizeof(bf16) == 2);

enum class Status { kOk = 0, kInvalidArgument, kLaunchFailed };

const char* to_string(Status s);
// Human-readable reason of the last non-kOk Status returned on this host thread ("" if none).
const char* last_error();

// Whether kernels launch with programmatic dependent launch (default on): a kernel may then begin
// while the one before it on the stream finishes, and waits inside for that kernel's writes, so
// results are the same bits either way. Process-wide; read at each launch, so a CUDA graph keeps
// the setting it was captured with. Off is for measuring what it buys.
void set_dependent_launch(bool on);
bool dependent_launch();

// ---------------------------------------------------------------------------------------------
// Embedding gather: out[t, :] = table[ids[t], :], t < num_tokens; table is [vocab][hidden].
// Ids outside [0, vocab) never read out of bounds: their row is written as zeros and *bad_id_flag
// (device int32, may be nullptr) is set to 1 (never cleared here). The caller is expected to have
// validated ids already; the flag is a safety net.
Status embedding_gather_bf16(const bf16* table, int64_t vocab, int64_t hidden, const int32_t* ids,
                             int64_t num_tokens, bf16* out, int32_t* bad_id_flag, Stream stream);
// Same, into fp32 rows (e.g. straight into the fp32 residual stream).
Status embedding_gather_f32(const bf16* table, int64_t vocab, int64_t hidden, const int32_t* ids,
                            int64_t num_tokens, float* out, int32_t* bad_id_flag, Stream stream);

// ---------------------------------------------------------------------------------------------
// Fused residual add + RMSNorm over rows of `dim` elements:
//   if x != nullptr: residual[r] += x[r]           (residual is fp32: the stream keeps full precision)
//   out[r] = residual[r] * rsqrt(mean(residual[r]^2) + eps) * weight      (bf16 out)
// x == nullptr gives a plain norm of the residual (first layer). out may not alias residual.
Status fused_add_rmsnorm(float* residual, int64_t residual_stride, const bf16* x, int64_t x_stride,
                         const bf16* weight, bf16* out, int64_t out_stride, int64_t rows,
                         int64_t dim, float eps, Stream stream);

// Plain RMSNorm of bf16 rows, usable per head (Qwen3 q/k norm): for token t < num_tokens and head
// h < num_heads the row is in[t * in_stride + h * dim + (0..dim)], written to the same place in
// out (in == out is allowed: in place). weight has `dim` entries shared by all heads.
Status rmsnorm_bf16(const bf16* in, int64_t in_stride, bf16* out, int64_t out_stride,
                    int64_t num_tokens, int32_t num_heads, int32_t dim, const bf16* weight,
                    float eps, Stream stream);

// RMSNorm of dense fp32 rows (e.g. the residual stream) with fp32 weights and an optional gather:
//   out[r] = bf16(x[src] * rsqrt(mean(x[src]^2) + eps) * weight), src = rows ? rows[r] : r,
// r < num_rows; x rows and out rows are `dim` elements apart. One block per row.
Status rmsnorm_rows_f32(const float* x, const int32_t* rows, int64_t num_rows, int32_t dim,
                        const float* weight, float eps, bf16* out, Stream stream);

// ---------------------------------------------------------------------------------------------
// RoPE, rotate-half (HF) convention, in place on q and k:
//   for i < head_dim/2: angle = positions[t] * inv_freq[i]   (fp32 product, as HF computes it)
//   (x[i], x[i + half]) <- (x[i] cos - x[i + half] sin, x[i + half] cos + x[i] sin)
// q head h of token t is at q[t * q_stride + h * head_dim]; same for k with num_kv_heads.
// inv_freq (device, head_dim/2 floats) carries the scaling: build it on the host with
// reference.h's rope_inv_freq() (default and llama3 scaling). k may be nullptr (num_kv_heads 0).
// head_dim must be even and <= 512.
Status rope_inplace_bf16(bf16* q, int64_t q_stride, int32_t num_heads, bf16* k, int64_t k_stride,
                         int32_t num_kv_heads, int32_t head_dim, const int32_t* positions,
                         int64_t num_tokens, const float* inv_freq, Stream stream);

// One pass over a fused q/k/v product (fp32 [num_tokens][(H + 2 KV) * D], q heads then k heads
// then v heads), rounded once to bf16: for token t and head h,
//   x = qkv[t][h] + bias[h]                     (bias: fp32 [(H + 2 KV) * D], may be nullptr)
//   q and k heads: x = rmsnorm(x) * q_norm / k_norm over head_dim (fp32 [D]; nullptr: no norm),
//                  then rotate-half RoPE at positions[t] with inv_freq, as rope_inplace_bf16
//   q heads -> q_out[t][h] (dense bf16 [num_tokens][H][D]);
//   k and v heads -> k_cache / v_cache at slot slots[t] (kv_cache_write_bf16's layout; < 0: skip).
// head_dim even and <= 2048.
struct QkvPostParams {
  const float* qkv = nullptr;
  const float* bias = nullptr;
  const float* q_norm = nullptr;
  const float* k_norm = nullptr;
  float norm_eps = 1e-6f;
  const int32_t* positions = nullptr;  // [num_tokens]
  const float* inv_freq = nullptr;     // [head_dim / 2]
  const int32_t* slots = nullptr;      // [num_tokens]
  bf16* q_out = nullptr;
  bf16* k_cache = nullptr;
  bf16* v_cache = nullptr;
  int64_t num_tokens = 0;
  int32_t num_heads = 0, num_kv_heads = 0, head_dim = 0;
};
Status qkv_post(const QkvPostParams& p, Stream stream);

// ---------------------------------------------------------------------------------------------
// Paged KV cache. Per layer, K and V are each one array
//     [num_blocks][block_size][num_kv_heads][head_dim]   (bf16)
// so a slot (= block * block_size + offset) holds one token's K (or V) for all kv heads,
// num_kv_heads * head_dim contiguous elements. A sequence's logical position p lives in slot
// block_table[seq][p / block_size] * block_size + p % block_size.
//
// Write new K/V: token t goes to slot_mapping[t] (slot_mapping[t] < 0: skipped, for padding).
// k/v rows: k[t * k_stride + (0 .. num_kv_heads*head_dim)]. Slots >= num_slots are skipped too.
Status kv_cache_write_bf16(const bf16* k, int64_t k_stride, const bf16* v, int64_t v_stride,
                           int64_t num_tokens, int32_t num_kv_heads, int32_t head_dim,
                           const int32_t* slot_mapping, bf16* k_cache, bf16* v_cache,
                           int64_t num_slots, Stream stream);

// Moves cache rows: in each of num_planes planes (plane p at base + p * plane_bytes; a layer's K or
// V cache, num_blocks * block_size rows of row_bytes each), row src_slots[j] is copied to
// dst_slots[j] for j in [group_start[g], group_start[g + 1]) in increasing j, so a move may
// overwrite a row an earlier move of its group read; groups run in parallel and must touch
// disjoint rows. j with src == dst is skipped. row_bytes and plane_bytes multiples of 16, base
// 16-byte aligned; the arrays are device memory.
Status kv_cache_move_rows(void* base, int64_t plane_bytes, int32_t num_planes, int32_t row_bytes,
                          const int32_t* src_slots, const int32_t* dst_slots,
                          const int32_t* group_start, int32_t num_groups, Stream stream);

// Attention over the paged cache, one kernel for prefill (variable length, causal), decode and
// speculative verify (1..k query tokens per sequence, causal within the draft) and tree verify.
// The new tokens' K/V must already be in the cache (kv_cache_write_bf16 first).
//
// Sequence s owns query tokens [query_start[s], query_start[s+1]) (n_s of them) and has
// seq_lens[s] cached positions INCLUDING those n_s new ones, so its prefix is
// L_s = seq_lens[s] - n_s and query j (0-based within the sequence) sits at position L_s + j.
//  * tree_parents == nullptr (causal): query j attends to positions [0, L_s + j].
//  * tree_parents != nullptr (tree): tree_parents[query_start[s] + j] is the index, within the
//    sequence's queries, of j's parent (-1: j hangs off the cached prefix); it must be < j. Query j
//    attends to [0, L_s) plus itself and its ancestors. Requires n_s <= 64; the draft tokens'
//    K/V sit at positions L_s + j in query order (depth is the caller's business: RoPE positions
//    are whatever the caller rotated with). A parent index >= j is treated as -1 (no hang).
// GQA: q head h reads kv head h / (num_heads / num_kv_heads). Scale is given (1/sqrt(head_dim)).
// head_dim in {64, 128}. Layout: q[t * q_stride + h * head_dim], out[t * out_stride + h * head_dim].
//
// Decode at small batch splits each sequence's KV range into num_kv_splits chunks (or chunks of
// kv_split_size positions) processed by separate blocks and merged by a second kernel
// (flash-decoding). The grid depends only on the
// host-side sizes below, never on the device-side lengths, so one CUDA graph captured with a fixed
// (num_seqs, num_tokens, max_query_len, num_kv_splits) replays correctly for any lengths.
struct PagedAttentionParams {
  const bf16* q = nullptr;
  int64_t q_stride = 0;
  const bf16* k_cache = nullptr;
  const bf16* v_cache = nullptr;
  const int32_t* block_table = nullptr;  // [num_seqs][block_table_stride]
  int64_t block_table_stride = 0;
  int32_t block_size = 16;
  const int32_t* query_start = nullptr;  // [num_seqs + 1], query_start[0] = 0
  const int32_t* seq_lens = nullptr;     // [num_seqs]
  const int32_t* tree_parents = nullptr; // [num_tokens] or nullptr (causal)
  int32_t num_seqs = 0;
  int64_t num_tokens = 0;    // = query_start[num_seqs]
  int32_t max_query_len = 0; // host upper bound of n_s (sizes the grid)
  int32_t num_heads = 0;
  int32_t num_kv_heads = 0;
  int32_t head_dim = 0;
  float scale = 0;
  int32_t num_kv_splits = 1; // >= 1; see paged_attention_choose_splits
  // Batch-invariant mode when > 0 (a multiple of 64): split z covers KV positions
  // [z * kv_split_size, (z + 1) * kv_split_size), whatever the lengths, and the tensor-core kernel
  // keeps one warp layout for every shape, so a query's output bits depend only on its own
  // position and its sequence's cache, never on the other queries or sequences of the launch.
  // num_kv_splits should then be >= ceil(longest seq_len / kv_split_size) (surplus splits are
  // empty); if it is smaller the last split takes the rest: still correct, no longer invariant.
  // 0 (default): num_kv_splits chunks of equal length per block.
  int32_t kv_split_size = 0;
  // Batch-invariant mode, queries of more than 16 rows per kv head (rows = query tokens x GQA
  // group): K/V tiles in flight per block, 2 or 3; 0 (default) = 3. The same bits either way
  // (a benchmark knob: bench/kernels/kernels_bench --deterministic times both).
  int32_t kv_stages = 0;
  float* workspace = nullptr;     // >= paged_attention_workspace_bytes(...) when num_kv_splits > 1
  size_t workspace_bytes = 0;
  bf16* out = nullptr;
  int64_t out_stride = 0;
  // Tensor-core kernel (mma.sync, default) or the CUDA-core one (same results within bf16
  // rounding; kept as a cross-check and benchmark baseline).
  bool use_tensor_cores = true;
  // true: the metadata above and every cached position below a sequence's prefix (L_s) were
  // written before the kernel that precedes this launch on the stream started (that kernel writes
  // at most the new tokens' K/V and q). The tensor-core kernel (kv_split_size 0) then reads them
  // while that kernel is still finishing (dependent launch) and waits for it only before q and
  // the new positions.
  // false (default): nothing is read before the previous kernel has completed.
  bool cached_prefix_settled = false;
};
Status paged_attention(const PagedAttentionParams& p, Stream stream);
// Raises the attention kernels' dynamic shared-memory limit (> 48 KB) on the current device.
// paged_attention does it itself on first use; call this once per device at start-up when the
// first call could happen inside CUDA graph capture, so that no attribute call is made then.
Status prepare_paged_attention();

// Bytes of fp32 workspace paged_attention needs for the split-KV partial results.
size_t paged_attention_workspace_bytes(int64_t num_tokens, int32_t num_heads, int32_t head_dim,
                                       int32_t num_kv_splits);
// A split count that fills the GPU (num_sms multiprocessors) for this shape without making chunks
// shorter than ~256 positions of max_kv_len. Host-only arithmetic, no device query.
int32_t paged_attention_choose_splits(int32_t num_seqs, int32_t num_heads, int32_t num_kv_heads,
                                      int32_t max_query_len, int64_t max_kv_len, int32_t num_sms);
// For a launch of more than one wave of resident blocks (the tensor-core kernel's occupancy on the
// current device times its multiprocessors), the split count in [splits, 2 * splits + 1] (at most
// max_splits and one 64-position tile per split) whose waves leave the fewest block slots idle;
// splits otherwise: 512 blocks on ~400 slots, say, leave a second wave of ~110 that idles 70% of
// the GPU while it runs. Host only (device attribute and occupancy queries, cached), no stream work.
int32_t paged_attention_balance_splits(int32_t splits, int32_t max_splits, int32_t num_seqs,
                                       int32_t num_heads, int32_t num_kv_heads, int32_t head_dim,
                                       int32_t max_query_len, int64_t max_kv_len);

// Causal paged attention for any head_dim in [1, 256] (one warp per query token and head, every
// position in order; no tree, no splits), for the shapes paged_attention does not serve. Same
// cache layout and metadata meaning as PagedAttentionParams, plus token_seq[t] = the sequence of
// query token t. q and out are dense [num_tokens][num_heads][head_dim].
struct SimplePagedAttentionParams {
  const bf16* q = nullptr;
  const bf16* k_cache = nullptr;
  const bf16* v_cache = nullptr;
  const int32_t* block_table = nullptr;
  int64_t block_table_stride = 0;
  int32_t block_size = 16;
  const int32_t* token_seq = nullptr;    // [num_tokens]
  const int32_t* query_start = nullptr;  // [num_seqs + 1]
  const int32_t* seq_lens = nullptr;     // [num_seqs], including the new tokens
  int64_t num_tokens = 0;
  int32_t num_heads = 0, num_kv_heads = 0, head_dim = 0;
  float scale = 0;
  bf16* out = nullptr;
};
Status paged_attention_simple(const SimplePagedAttentionParams& p, Stream stream);

// ---------------------------------------------------------------------------------------------
// SwiGLU on a fused [gate | up] GEMM output: out[r, i] = silu(gu[r, i]) * gu[r, inter + i],
// gu row r at gate_up[r * gate_up_stride], out row r at out[r * out_stride], i < inter.
Status swiglu_bf16(const bf16* gate_up, int64_t gate_up_stride, bf16* out, int64_t out_stride,
                   int64_t rows, int64_t inter, Stream stream);

// ---------------------------------------------------------------------------------------------
// Sampling of rows of fp32 logits: the rule of reference.h's sample_row (its specification, with
// LogRounding::kCorrect), rules 0 (mask) and 3 (raw or processed logprob) included. Each row is
// cut into chunks of 4096 vocabulary entries (a fixed size, so a row's result never depends on
// the batch), a block reducing one or several of them; the row's last block combines them.
// Per-row parameters live in device memory so a graph can be replayed with new
// seeds/positions/masks. Outputs per row r:
//   tokens[r], logprobs[r] = rule 3 for the drawn token (raw: log softmax(logits / T)[token],
//   T = 1 when greedy), and if target_tokens != nullptr: target_logprobs[r] = rule 3 for
//   target_tokens[r] (NaN when it is outside [0, vocab), e.g. -1 for "no next input").
// Candidate selection (top-k, then top-p) is an exact radix select on the key (order-preserving
// bits of z, then ~index) so ties go to the lowest index; top-p weighs each radix bucket by its
// candidates' mass, so no sort is needed; rows with min-p, top-k or top-p run it in one block over
// the whole row, after the chunks. Logits must be finite or -inf (masked); no NaN or +inf.
// workspace: sample_rows_workspace_bytes(rows, vocab) or more, 4-byte aligned, zeroed once when
// allocated (it holds one ticket per row, which every launch leaves at zero), one per stream.
struct SamplingRow {
  float temperature = 1.0f;  // 0 = greedy (argmax, lowest index on ties)
  int32_t top_k = 0;         // <= 0: no top-k cut
  float top_p = 1.0f;        // >= 1: no nucleus cut
  float min_p = 0.0f;        // <= 0: no min-p cut
  uint64_t seed = 0;
  uint64_t uid = 0;
  int64_t position = 0;      // absolute position of the token being drawn
  // Rule 0, the device form of ref::RuleExtras::masked: this row cannot draw (nor, processed,
  // score) masked_ids[mask_start, mask_start + mask_count), ids ascending, distinct, in
  // [0, vocab). mask_count 0: no mask.
  int32_t mask_start = 0;
  int32_t mask_count = 0;
  int32_t processed = 0;     // rule 3: 0 raw, 1 processed (ref::LogprobKind::kProcessed)
  int32_t reserved = 0;      // keeps the struct a multiple of 8 bytes; set 0
};
static_assert(sizeof(SamplingRow) == 56);
size_t sample_rows_workspace_bytes(int64_t num_rows, int32_t vocab);
// masked_ids may be nullptr when no row has mask_count > 0.
Status sample_rows(const float* logits, int64_t logits_stride, int64_t num_rows, int32_t vocab,
                   const SamplingRow* rows, const int32_t* masked_ids, const int32_t* target_tokens,
                   int32_t* tokens, float* logprobs, float* target_logprobs, void* workspace,
                   size_t workspace_bytes, Stream stream);

// Argmax per row (lowest index on ties), value and index. out_values may be nullptr.
Status argmax_rows(const float* x, int64_t stride, int64_t num_rows, int32_t cols,
                   int32_t* out_index, float* out_values, Stream stream);

// ---------------------------------------------------------------------------------------------
// Small helpers.
Status cast_f32_to_bf16(const float* in, bf16* out, int64_t n, Stream stream);
Status cast_bf16_to_f32(const bf16* in, float* out, int64_t n, Stream stream);
// x[r * stride + c] += bias[c] for r < rows, c < cols (fp32 add, one bf16 rounding).
Status add_bias_bf16(bf16* x, int64_t stride, int64_t rows, int64_t cols, const bf16* bias,
                     Stream stream);
// dst[i] = scale * synthetic_uniform(seed, i) (philox.h), i < n: reproducible synthetic weights.
Status fill_uniform_bf16(bf16* dst, int64_t n, float scale, uint64_t seed, Stream stream);
Status fill_uniform_f32(float* dst, int64_t n, float scale, uint64_t seed, Stream stream);
Status fill_f32(float* dst, int64_t n, float value, Stream stream);

}  // namespace longtail::kernels
