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
// length tokens each) whose tokens write no KV and whose outputs are dropped. Pure C++.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "kernels/kernels.h"
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

struct PlanLimits {
  int32_t max_tokens = 4096;   // tokens per pass (activation buffers)
  int32_t max_seqs = 1024;     // sequences per pass
  int32_t max_outputs = 4096;  // output rows per pass (logits buffer)
  int32_t block_size = 16;
  bool graphs = true;
  bool ragged_graphs = true;             // also pad passes whose sequences add different counts
  int32_t max_graph_tokens_per_seq = 32; // DAS verifies 1 + up to 16 drafts (budget 16) per sequence
  int32_t max_mask_ids_per_seq = 1024;   // distinct min_tokens stop tokens a sequence may mask
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
int32_t graph_token_bucket(int32_t tokens);
int32_t graph_query_len_bucket(int32_t max_query_len);  // 0 above the largest bucket (32)

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
