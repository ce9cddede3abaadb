// Host-side planning of one CUDA forward: turns the engine's chunks (each sequence's new tokens on
// top of its cached prefix) into one or more device passes with flat metadata arrays (token ids,
// positions, cache slots, per-sequence query ranges and block tables, output rows with their
// sampling parameters). A forward that fits the limits is one pass; a larger one (long prefill)
// is cut into passes, splitting chunks where needed, which is exact because each pass attends to
// the cache the earlier passes wrote; a token tree is never cut, and shares a pass only with
// pieces of at most 64 tokens (tree attention's limit). Decode/verify steps are padded so a captured CUDA graph can
// replay them: when every sequence adds the same number of tokens, to a batch bucket of such
// sequences; when they add different numbers (speculative verify with per-sequence draft budgets),
// to a (sequence, token, max-query-length) bucket by appending padding sequences (0..max-query-
// length tokens each) whose tokens write no KV and whose outputs are dropped. Every distinct
// bucket is one more graph to capture, and every padding token costs compute, so the token buckets
// are priced: a pass pads by less than 1/8 of what it costs (PlanLimits::fixed_cost_tokens), which
// for a launch-bound model means powers of two and for a 1.5B model a few percent of the step.
// Pure C++.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "kernels/kernels.h"
#include "policy/model_config.h"
#include "policy/sampling.h"

namespace longtail::policy::cuda {

struct PlanChunk {
  const std::vector<int32_t>* blocks = nullptr;  // the sequence's blocks, grown to the new length
  int32_t old_length = 0;                        // cached positions before this forward
  std::span<const int32_t> tokens;
  // Token tree (SequenceChunk::parents, checked): empty for a chain; else parents[i] in [-1, i) and
  // offsets[i] = input i's position - old_length (input_position_offsets). A tree's inputs stay in
  // one pass, in cache rows old_length + i.
  std::span<const int32_t> parents, offsets;
  int32_t first_output = 0;
  SamplingParams sampling;
  uint64_t uid = 0;
  // sampling.masked_tokens ascending, distinct and inside the vocabulary (the backend prepares
  // them); rows drawn at positions in [sampling.mask_begin, sampling.mask_end) mask these.
  std::span<const int32_t> mask_ids;
};

// How a ragged pass's token count is rounded up (PlanLimits::token_buckets).
enum class TokenBuckets {
  // Steps of 8 / 16 / 32 / 64 / 128 tokens up to 64 / 256 / 512 / 1024 / beyond, every model
  // alike: the runner's rule until 2026-12-02 (LONGTAIL_GRAPH_BUCKETS=legacy brings it back, with
  // the first-sight eager passes of cuda_graph_cache.h, to measure against).
  kFixedSteps,
  // graph_token_bucket(tokens, fixed_cost_tokens): padding below 1/8 of the step's cost; and a
  // verify step of fewer than 8 sequences is ragged even when they all add the same count.
  kBoundedCost,
};

struct PlanLimits {
  int32_t max_tokens = 4096;   // tokens per pass (activation buffers)
  int32_t max_seqs = 1024;     // sequences per pass
  int32_t max_outputs = 4096;  // output rows per pass (logits buffer)
  int32_t block_size = 16;
  bool graphs = true;
  bool ragged_graphs = true;             // also pad passes whose sequences add different counts
  int32_t max_graph_tokens_per_seq = 32; // DAS verifies 1 + up to 16 drafts (budget 16) per sequence
  int32_t max_mask_ids_per_seq = 1024;   // distinct min_tokens stop tokens a sequence may mask
  // The runner prices its buckets (priced_graph_limits); unpriced limits keep the fixed steps.
  TokenBuckets token_buckets = TokenBuckets::kFixedSteps;
  // kBoundedCost: the step's fixed cost (weights read once, launches) in tokens of compute, i.e.
  // a step of T tokens costs ~ fixed_cost_tokens + T (fixed_cost_tokens_of gives it per model).
  // 0: padding bounded by 1/8 of the real tokens. At or above 4 x max_tokens (padding costs
  // nothing at any size, the buckets are powers of two: a launch-bound model) ragged passes also
  // take the largest query-length bucket, so that far fewer shapes are captured.
  int32_t fixed_cost_tokens = 0;
  // Graphable passes' block tables are at least this wide (a power of two; the runner raises it
  // for launch-bound models, where a wider table costs nothing and saves captures).
  int32_t min_graph_table_width = 16;
};

// Identifies a replayable pass shape: every size a captured graph bakes in (the attention split
// count follows from these too, since graphable passes size it by table_width, not by lengths).
struct GraphKey {
  int32_t seqs = 0;            // S, padded
  int32_t tokens = 0;          // T, padded (= R: every token of a graphable pass has an output)
  int32_t max_query_len = 0;   // attention grid and tile shape, padded
  int32_t table_width = 0;     // block-table row stride, a power of two
  bool tree = false;           // attention takes the tree parents
  bool operator==(const GraphKey&) const = default;
  auto operator<=>(const GraphKey&) const = default;
};

struct PassPlan {
  int32_t num_tokens = 0;      // T (padded when graphable)
  int32_t num_seqs = 0;        // S (padded when graphable)
  int32_t num_outputs = 0;     // R (padded when graphable)
  int32_t real_outputs = 0;    // the first real_outputs rows are results, in chunk order
  int32_t table_width = 0;     // W
  int32_t max_query_len = 0;
  int64_t max_kv_len = 0;      // upper bound of seq_lens (grid sizing only)
  bool graphable = false;
  bool tree = false;           // some sequence is a token tree: attention reads tree_parents
  GraphKey key;

  std::vector<int32_t> tokens, positions, slots, token_seq;  // [T]
  std::vector<int32_t> tree_parents;  // [T]: parent index within the sequence's queries (-1 none)
  std::vector<int32_t> query_start;                          // [S + 1]
  std::vector<int32_t> seq_lens;                             // [S]
  std::vector<int32_t> block_table;                          // [S * W]
  std::vector<int32_t> out_rows, targets;                    // [R]
  std::vector<kernels::SamplingRow> rows;                    // [R]
  std::vector<int32_t> masked_ids;  // [M]: each masking piece's ids once; rows point into it
};

// Batch buckets for graph replay: sizes a decode batch is padded up to.
int32_t graph_batch_bucket(int32_t seqs);  // 0 when seqs exceeds the largest bucket
// Buckets of a ragged pass (its sequence count goes to a power of two): total tokens (coarser as
// passes grow, so padding stays a few percent) and the longest query (few, since each distinct key
// is a separate capture; only the attention grid depends on it).
int32_t graph_token_bucket(int32_t tokens);  // TokenBuckets::kFixedSteps
// TokenBuckets::kBoundedCost: the smallest bucket >= tokens of the sequence b0 = 8,
// b(i+1) = b(i) + clamp(floor8((b(i) + fixed_cost_tokens) / 8), 8, b(i)): a pass of T tokens pads
// by less than (T + fixed_cost_tokens) / 8, i.e. by under 1/8 of a step priced fixed + per token,
// and never beyond 2T (large fixed_cost_tokens: powers of two).
int32_t graph_token_bucket(int32_t tokens, int32_t fixed_cost_tokens);
int32_t graph_query_len_bucket(int32_t max_query_len);  // 0 above the largest bucket (32)
// PlanLimits::fixed_cost_tokens for a model on an H100/H200-class GPU, from its shape alone (a
// rough price: launches and one read of the weights against the products' per-token FLOPs).
int32_t fixed_cost_tokens_of(const ModelConfig& config);
// `limits` with its graph buckets set for `config` by `mode` (LONGTAIL_GRAPH_BUCKETS, see
// cuda_forward.h): "" = kBoundedCost priced by fixed_cost_tokens_of, and where that makes padding
// free a minimum table width of min(64, max_table_width); "tokens" = kBoundedCost with
// fixed_cost_tokens 0; a number = that fixed_cost_tokens; "legacy" = kFixedSteps. Throws
// std::invalid_argument naming anything else.
PlanLimits priced_graph_limits(PlanLimits limits, const ModelConfig& config, int32_t max_table_width,
                               const std::string& mode);
// The graph cache's policy for these limits (cuda_graph_cache.h): under priced buckets a new
// shape is captured at first sight; under the legacy ones it runs eagerly once first.
bool capture_at_first_sight(const PlanLimits& limits);

std::vector<PassPlan> plan_passes(std::span<const PlanChunk> chunks, const PlanLimits& limits);

// Offsets (bytes) of each array inside the packed metadata image; a function of (T, S, R, W)
// only, so passes with the same GraphKey put every array at the same device address. The masked
// ids (M of them, a count that replays of one key may change) come last, so M moves nothing.
struct MetaLayout {
  size_t tokens, positions, slots, token_seq, query_start, seq_lens, out_rows, targets, rows,
      block_table, tree_parents, masked_ids, total;
};
MetaLayout meta_layout(int32_t T, int32_t S, int32_t R, int32_t W, int32_t M = 0);
// Bytes needed for the largest pass under these limits and table width.
size_t meta_capacity(const PlanLimits& limits, int32_t max_table_width);
void pack_meta(const PassPlan& pass, const MetaLayout& layout, std::byte* dst);

}  // namespace longtail::policy::cuda
