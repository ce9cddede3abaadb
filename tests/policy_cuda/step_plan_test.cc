// Pass planning of the CUDA forward: graph-replayable decode steps padded to a batch bucket,
// ragged verify steps padded to (sequence, token, query-length) buckets with harmless padding,
// long prefills cut into passes that continue each other exactly, outputs and their sampling
// positions/targets, token trees (depth positions, own cache rows, first-child targets, never
// beside a long piece), and the packed metadata layout. Pure C++: runs in every build.
#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "policy/cuda_step_plan.h"

namespace longtail::policy::cuda {
namespace {

PlanChunk chunk(const std::vector<int32_t>& blocks, int32_t old_length,
                const std::vector<int32_t>& tokens, int32_t first_output, uint64_t uid) {
  PlanChunk c;
  c.blocks = &blocks;
  c.old_length = old_length;
  c.tokens = tokens;
  c.first_output = first_output;
  c.uid = uid;
  c.sampling.temperature = 0.7f;
  c.sampling.seed = 5;
  return c;
}

TEST(StepPlan, DecodeStepIsPaddedToABucketForGraphReplay) {
  const std::vector<int32_t> b0{3}, b1{4, 9}, b2{1};
  const std::vector<int32_t> t0{11}, t1{12}, t2{13};
  std::vector<PlanChunk> chunks{chunk(b0, 5, t0, 0, 100), chunk(b1, 16, t1, 0, 101),
                                chunk(b2, 0, t2, 0, 102)};
  PlanLimits limits;
  const auto passes = plan_passes(chunks, limits);
  ASSERT_EQ(passes.size(), 1u);
  const PassPlan& p = passes[0];
  EXPECT_TRUE(p.graphable);
  EXPECT_EQ(p.num_seqs, 4);  // bucket of 3
  EXPECT_EQ(p.num_tokens, 4);
  EXPECT_EQ(p.num_outputs, 4);
  EXPECT_EQ(p.real_outputs, 3);
  EXPECT_EQ(p.key, (GraphKey{4, 4, 1, 16}));
  EXPECT_EQ(p.tokens, (std::vector<int32_t>{11, 12, 13, 0}));
  EXPECT_EQ(p.positions, (std::vector<int32_t>{5, 16, 0, 0}));
  EXPECT_EQ(p.slots, (std::vector<int32_t>{3 * 16 + 5, 9 * 16 + 0, 1 * 16 + 0, -1}));
  EXPECT_EQ(p.query_start, (std::vector<int32_t>{0, 1, 2, 3, 4}));
  EXPECT_EQ(p.seq_lens, (std::vector<int32_t>{6, 17, 1, 1}));
  ASSERT_EQ(p.block_table.size(), 4u * 16u);
  EXPECT_EQ(p.block_table[0], 3);
  EXPECT_EQ(p.block_table[16], 4);
  EXPECT_EQ(p.block_table[17], 9);
  EXPECT_EQ(p.block_table[32], 1);
  EXPECT_EQ(p.targets, (std::vector<int32_t>{-1, -1, -1, -1}));
  EXPECT_EQ(p.rows[0].position, 6);
  EXPECT_EQ(p.rows[1].position, 17);
  EXPECT_EQ(p.rows[1].uid, 101u);
  EXPECT_FLOAT_EQ(p.rows[1].temperature, 0.7f);
  EXPECT_EQ(p.rows[3].temperature, 0.0f);  // padding row: greedy, cheapest
}

TEST(StepPlan, RaggedVerifyStepIsPaddedToTokenAndQueryBuckets) {
  const std::vector<int32_t> b0{3}, b1{4, 9}, b2{1};
  const std::vector<int32_t> t0{11, 21, 31}, t1{12}, t2{13, 23, 33, 43, 53};
  std::vector<PlanChunk> chunks{chunk(b0, 5, t0, 0, 100), chunk(b1, 16, t1, 0, 101),
                                chunk(b2, 0, t2, 0, 102)};
  const auto passes = plan_passes(chunks, PlanLimits{});
  ASSERT_EQ(passes.size(), 1u);
  const PassPlan& p = passes[0];
  ASSERT_TRUE(p.graphable);
  // 3 sequences -> 4; 9 tokens -> 16 (7 in one padding sequence); longest query 5 -> 8.
  EXPECT_EQ(p.key, (GraphKey{4, 16, 8, 16}));
  EXPECT_EQ(p.num_seqs, 4);
  EXPECT_EQ(p.num_tokens, 16);
  EXPECT_EQ(p.num_outputs, 16);
  EXPECT_EQ(p.real_outputs, 9);
  EXPECT_EQ(p.max_query_len, 8);
  EXPECT_EQ(p.max_kv_len, 16 * 16);  // from the table width: the split choice ignores contents
  EXPECT_EQ(p.query_start, (std::vector<int32_t>{0, 3, 4, 9, 16}));
  EXPECT_EQ(p.seq_lens, (std::vector<int32_t>{8, 17, 5, 7}));
  EXPECT_EQ(std::vector<int32_t>(p.slots.begin(), p.slots.begin() + 9),
            (std::vector<int32_t>{53, 54, 55, 144, 16, 17, 18, 19, 20}));
  for (int32_t t = 9; t < 16; ++t) {
    EXPECT_EQ(p.slots[t], -1) << "padding token " << t << " would write KV";
    EXPECT_EQ(p.token_seq[t], 3);
    EXPECT_EQ(p.positions[t], t - 9);
    EXPECT_EQ(p.rows[t].temperature, 0.0f);
    EXPECT_EQ(p.targets[t], -1);
  }
  EXPECT_EQ(std::vector<int32_t>(p.targets.begin(), p.targets.begin() + 9),
            (std::vector<int32_t>{21, 31, -1, -1, 23, 33, 43, 53, -1}));
  EXPECT_EQ(p.rows[8].position, 5);
  EXPECT_EQ(p.rows[8].uid, 102u);
  for (int32_t w = 0; w < 16; ++w) EXPECT_EQ(p.block_table[3 * 16 + w], 0);  // block 0: read only
}

TEST(StepPlan, AFullSequenceBucketGrowsForPaddingSequencesSomeEmpty) {
  const std::vector<int32_t> b{2};
  const std::vector<int32_t> two{1, 2}, one{3};
  std::vector<PlanChunk> chunks{chunk(b, 0, two, 0, 1), chunk(b, 2, one, 0, 2),
                                chunk(b, 3, one, 0, 3), chunk(b, 4, one, 0, 4)};
  const auto passes = plan_passes(chunks, PlanLimits{});
  ASSERT_EQ(passes.size(), 1u);
  const PassPlan& p = passes[0];
  ASSERT_TRUE(p.graphable);
  // 5 tokens -> 8; 4 sequences fill bucket 4, so 4 padding sequences of <= 2 tokens hold 3.
  EXPECT_EQ(p.key, (GraphKey{8, 8, 2, 16}));
  EXPECT_EQ(p.query_start, (std::vector<int32_t>{0, 2, 3, 4, 5, 6, 7, 8, 8}));
  EXPECT_EQ(p.seq_lens, (std::vector<int32_t>{2, 3, 4, 5, 1, 1, 1, 0}));
  EXPECT_EQ(p.real_outputs, 5);
  EXPECT_EQ(p.num_outputs, 8);
}

TEST(StepPlan, RaggedGraphsCanBeSwitchedOff) {
  const std::vector<int32_t> b0{3}, b1{4};
  const std::vector<int32_t> t0{1, 2}, t1{3};
  std::vector<PlanChunk> chunks{chunk(b0, 0, t0, 0, 1), chunk(b1, 0, t1, 0, 2)};
  PlanLimits limits;
  limits.ragged_graphs = false;
  const auto passes = plan_passes(chunks, limits);
  ASSERT_EQ(passes.size(), 1u);
  EXPECT_FALSE(passes[0].graphable);
  EXPECT_EQ(passes[0].num_tokens, 3);
  EXPECT_EQ(passes[0].num_seqs, 2);
  EXPECT_EQ(passes[0].max_query_len, 2);
}

TEST(StepPlan, RaggedPassesBeyondTheGraphLimitsRunEagerly) {
  const std::vector<int32_t> b0{3, 4, 5}, b1{4};
  std::vector<int32_t> t0(33, 7);
  const std::vector<int32_t> t1{3};
  std::vector<PlanChunk> chunks{chunk(b0, 0, t0, 0, 1), chunk(b1, 0, t1, 0, 2)};
  EXPECT_FALSE(plan_passes(chunks, PlanLimits{})[0].graphable);  // a 33-token query
  t0.resize(4);
  chunks[0] = chunk(b0, 0, t0, 0, 1);
  PlanLimits small;
  small.max_tokens = 6;  // 5 tokens would pad to 8
  EXPECT_FALSE(plan_passes(chunks, small)[0].graphable);
  chunks[0].first_output = 3;  // a prefill-like chunk: only some tokens output
  EXPECT_FALSE(plan_passes(chunks, PlanLimits{})[0].graphable);
}

// Random ragged verify batches: every padded pass has exactly its key's sizes, the real part is
// the unpadded plan's, padding never writes KV and costs at most ~1/8 of the tokens.
TEST(StepPlan, RandomRaggedBatchesMatchTheUnpaddedPlanAndTheirKeys) {
  std::mt19937 rng(7);
  const int32_t B = 16;
  std::vector<std::vector<int32_t>> blocks(200), tokens(200);
  PlanLimits graphs, eager;
  eager.graphs = false;
  for (int iter = 0; iter < 300; ++iter) {
    const int32_t S = 1 + static_cast<int32_t>(rng() % 200);  // <= 3400 tokens: one pass
    std::vector<PlanChunk> chunks;
    for (int32_t s = 0; s < S; ++s) {
      const int32_t old_len = static_cast<int32_t>(rng() % 3000);
      const int32_t n = 1 + static_cast<int32_t>(rng() % 17);
      blocks[s].resize(static_cast<size_t>((old_len + n + B - 1) / B));
      for (auto& x : blocks[s]) x = 1 + static_cast<int32_t>(rng() % 100000);
      tokens[s].assign(static_cast<size_t>(n), 0);
      for (auto& x : tokens[s]) x = static_cast<int32_t>(rng() % 1000);
      chunks.push_back(chunk(blocks[s], old_len, tokens[s], 0, 1000 + s));
    }
    const auto padded = plan_passes(chunks, graphs);
    const auto plain = plan_passes(chunks, eager);
    ASSERT_EQ(padded.size(), 1u);
    ASSERT_EQ(plain.size(), 1u);
    const PassPlan& p = padded[0];
    const PassPlan& q = plain[0];
    ASSERT_TRUE(p.graphable) << "iteration " << iter << ": " << S << " sequences, "
                             << q.num_tokens << " tokens";
    EXPECT_EQ(p.num_seqs, p.key.seqs);
    EXPECT_EQ(p.num_tokens, p.key.tokens);
    EXPECT_EQ(p.num_outputs, p.key.tokens);
    EXPECT_EQ(p.max_query_len, p.key.max_query_len);
    EXPECT_GE(p.max_query_len, q.max_query_len);
    EXPECT_EQ(p.real_outputs, q.num_outputs);
    EXPECT_LE(p.num_tokens - q.num_tokens, std::max(15, q.num_tokens / 8)) << "too much padding";
    const auto T = static_cast<size_t>(q.num_tokens);
    EXPECT_TRUE(std::equal(q.tokens.begin(), q.tokens.end(), p.tokens.begin()));
    EXPECT_TRUE(std::equal(q.positions.begin(), q.positions.end(), p.positions.begin()));
    EXPECT_TRUE(std::equal(q.slots.begin(), q.slots.end(), p.slots.begin()));
    EXPECT_TRUE(std::equal(q.targets.begin(), q.targets.end(), p.targets.begin()));
    EXPECT_TRUE(std::equal(q.seq_lens.begin(), q.seq_lens.end(), p.seq_lens.begin()));
    EXPECT_TRUE(std::equal(q.query_start.begin(), q.query_start.end(), p.query_start.begin()));
    for (size_t t = T; t < p.slots.size(); ++t) ASSERT_EQ(p.slots[t], -1);
    for (int32_t s = S; s < p.num_seqs; ++s) {
      const int32_t n = p.query_start[s + 1] - p.query_start[s];
      EXPECT_LE(n, p.max_query_len);
      EXPECT_EQ(p.seq_lens[s], n);
    }
    EXPECT_EQ(p.query_start.back(), p.num_tokens);
    for (int32_t s = 0; s < S; ++s)
      for (int32_t w = 0; w < q.table_width; ++w)
        if (w < (q.seq_lens[s] + B - 1) / B)
          ASSERT_EQ(p.block_table[static_cast<size_t>(s) * p.table_width + w],
                    q.block_table[static_cast<size_t>(s) * q.table_width + w]);
  }
}

TEST(StepPlan, GraphBucketsGrowWithTheirInput) {
  EXPECT_EQ(graph_token_bucket(1), 8);
  EXPECT_EQ(graph_token_bucket(64), 64);
  EXPECT_EQ(graph_token_bucket(65), 80);
  EXPECT_EQ(graph_token_bucket(257), 288);
  EXPECT_EQ(graph_token_bucket(1025), 1152);
  for (int32_t t = 1; t < 5000; ++t) {
    ASSERT_GE(graph_token_bucket(t), t);
    ASSERT_LE(graph_token_bucket(t), graph_token_bucket(t + 1));
  }
  EXPECT_EQ(graph_query_len_bucket(5), 8);
  EXPECT_EQ(graph_query_len_bucket(17), 32);
  EXPECT_EQ(graph_query_len_bucket(16), 16);
  EXPECT_EQ(graph_query_len_bucket(33), 0);
}

TEST(StepPlan, VerifyChunkTargetsAreTheNextGivenTokens) {
  const std::vector<int32_t> b{0, 1};
  const std::vector<int32_t> t{7, 8, 9};
  std::vector<PlanChunk> chunks{chunk(b, 14, t, 0, 1)};
  const auto passes = plan_passes(chunks, PlanLimits{});
  ASSERT_EQ(passes.size(), 1u);
  EXPECT_EQ(passes[0].targets, (std::vector<int32_t>{8, 9, -1}));
  EXPECT_EQ(passes[0].rows[2].position, 17);
  EXPECT_EQ(passes[0].slots, (std::vector<int32_t>{14, 15, 16}));
}

TEST(StepPlan, LongPrefillIsCutIntoContinuingPasses) {
  std::vector<int32_t> blocks{6, 2, 8};
  std::vector<int32_t> t(10);
  std::iota(t.begin(), t.end(), 100);
  const std::vector<int32_t> b2{5, 7};
  const std::vector<int32_t> t2{1, 2};
  std::vector<PlanChunk> chunks{chunk(blocks, 0, t, 9, 1), chunk(b2, 3, t2, 1, 2)};
  PlanLimits limits;
  limits.max_tokens = 4;
  limits.block_size = 4;
  const auto passes = plan_passes(chunks, limits);
  ASSERT_EQ(passes.size(), 3u);
  EXPECT_FALSE(passes[0].graphable);
  EXPECT_EQ(passes[0].seq_lens, (std::vector<int32_t>{4}));
  EXPECT_EQ(passes[1].seq_lens, (std::vector<int32_t>{8}));
  EXPECT_EQ(passes[1].positions, (std::vector<int32_t>{4, 5, 6, 7}));
  EXPECT_EQ(passes[1].slots, (std::vector<int32_t>{8, 9, 10, 11}));  // block 2
  EXPECT_EQ(passes[0].num_outputs + passes[1].num_outputs, 0);
  // Last pass: the prompt's tail (2 tokens, its last one outputs) and the second chunk.
  const PassPlan& p = passes[2];
  EXPECT_EQ(p.num_seqs, 2);
  EXPECT_EQ(p.seq_lens, (std::vector<int32_t>{10, 5}));
  EXPECT_EQ(p.max_query_len, 2);
  EXPECT_EQ(p.out_rows, (std::vector<int32_t>{1, 3}));
  EXPECT_EQ(p.targets, (std::vector<int32_t>{-1, -1}));
  EXPECT_EQ(p.rows[0].position, 10);
  EXPECT_EQ(p.rows[1].position, 5);
  EXPECT_EQ(p.table_width, 3);
  EXPECT_EQ(p.block_table, (std::vector<int32_t>{6, 2, 8, 5, 7, 0}));
}

TEST(StepPlan, OutputRowsAreCappedPerPass) {
  const std::vector<int32_t> b{0};
  const std::vector<int32_t> t{1, 2, 3, 4, 5, 6};
  std::vector<PlanChunk> chunks{chunk(b, 0, t, 0, 1)};
  PlanLimits limits;
  limits.max_outputs = 4;
  limits.graphs = false;
  const auto passes = plan_passes(chunks, limits);
  ASSERT_EQ(passes.size(), 2u);
  EXPECT_EQ(passes[0].num_outputs, 4);
  EXPECT_EQ(passes[1].num_outputs, 2);
  EXPECT_EQ(passes[0].targets, (std::vector<int32_t>{2, 3, 4, 5}));
  EXPECT_EQ(passes[1].targets, (std::vector<int32_t>{6, -1}));
}

// The min_tokens mask: rows drawn at positions in [mask_begin, mask_end) point at the piece's ids,
// stored once per pass; rows outside it, and sequences without a mask, mask nothing; every row
// carries its logprob mode. A prefill piece whose outputs all lie past the range stores nothing.
TEST(StepPlan, MaskedRowsPointAtTheirPiecesIdsAndCarryTheLogprobMode) {
  const std::vector<int32_t> b0{0, 1}, b1{2}, b2{3};
  const std::vector<int32_t> t0{7, 8, 9}, t1{4}, t2{5, 6};
  const std::vector<int32_t> stop0{3, 17, 40}, stop2{2};
  std::vector<PlanChunk> chunks{chunk(b0, 14, t0, 0, 1), chunk(b1, 2, t1, 0, 2), chunk(b2, 5, t2, 1, 3)};
  chunks[0].mask_ids = stop0;
  chunks[0].sampling.mask_begin = 10;
  chunks[0].sampling.mask_end = 17;  // draws at 15, 16 masked; 17 not
  chunks[0].sampling.logprobs_mode = LogprobsMode::kProcessed;
  chunks[2].mask_ids = stop2;
  chunks[2].sampling.mask_begin = 0;
  chunks[2].sampling.mask_end = 7;  // its one output draws at 7: nothing masked, nothing stored
  for (const bool graphs : {true, false}) {
    PlanLimits limits;
    limits.graphs = graphs;
    const auto passes = plan_passes(chunks, limits);
    ASSERT_EQ(passes.size(), 1u);
    const PassPlan& p = passes[0];
    EXPECT_EQ(p.masked_ids, stop0);
    ASSERT_GE(p.rows.size(), 5u);
    EXPECT_EQ(p.rows[0].position, 15);
    EXPECT_EQ(p.rows[0].mask_start, 0);
    EXPECT_EQ(p.rows[0].mask_count, 3);
    EXPECT_EQ(p.rows[1].mask_count, 3);
    EXPECT_EQ(p.rows[2].position, 17);
    EXPECT_EQ(p.rows[2].mask_count, 0);
    EXPECT_EQ(p.rows[3].mask_count, 0);
    EXPECT_EQ(p.rows[4].position, 7);
    EXPECT_EQ(p.rows[4].mask_count, 0);
    for (int r = 0; r < 3; ++r) EXPECT_EQ(p.rows[r].processed, 1);
    for (size_t r = 3; r < p.rows.size(); ++r) EXPECT_EQ(p.rows[r].processed, 0);
  }
  // The masked ids come last in the image, so their count moves no other array.
  const MetaLayout none = meta_layout(64, 8, 64, 32), some = meta_layout(64, 8, 64, 32, 100);
  EXPECT_EQ(none.masked_ids, some.masked_ids);
  EXPECT_EQ(none.tree_parents, some.tree_parents);
  EXPECT_GE(some.total, some.masked_ids + 400u);
}

TEST(StepPlan, MetaLayoutDependsOnlyOnShapeAndIsAligned) {
  const MetaLayout a = meta_layout(64, 8, 64, 32);
  const MetaLayout b = meta_layout(64, 8, 64, 32);
  EXPECT_EQ(a.rows, b.rows);
  EXPECT_EQ(a.block_table, b.block_table);
  for (size_t off : {a.tokens, a.positions, a.slots, a.token_seq, a.query_start, a.seq_lens,
                     a.out_rows, a.targets, a.rows, a.block_table})
    EXPECT_EQ(off % 16, 0u);
  EXPECT_GE(a.total, a.block_table + 8u * 32u * 4u);
  EXPECT_EQ(graph_batch_bucket(3), 4);
  EXPECT_EQ(graph_batch_bucket(256), 256);
  EXPECT_EQ(graph_batch_bucket(257), 0);
}

}  // namespace
}  // namespace longtail::policy::cuda

namespace longtail::policy::cuda {
namespace {

TEST(StepPlan, TreeInputsSitAtTheirDepthInTheirOwnRowsAndTargetTheirFirstChild) {
  const std::vector<int32_t> b{2, 5};
  const std::vector<int32_t> toks{10, 11, 12, 13};
  const std::vector<int32_t> parents{-1, 0, 0, 1}, offsets{0, 1, 1, 2};
  PlanChunk c = chunk(b, 14, toks, 0, 7);
  c.parents = parents;
  c.offsets = offsets;
  const auto passes = plan_passes(std::vector<PlanChunk>{c}, PlanLimits{});
  ASSERT_EQ(passes.size(), 1u);
  const PassPlan& p = passes[0];
  EXPECT_TRUE(p.tree);
  EXPECT_TRUE(p.key.tree);
  EXPECT_EQ(std::vector<int32_t>(p.positions.begin(), p.positions.begin() + 4),
            (std::vector<int32_t>{14, 15, 15, 16}));
  // Cache rows 14..17: block 2 holds 0..15, block 5 holds 16..31.
  EXPECT_EQ(std::vector<int32_t>(p.slots.begin(), p.slots.begin() + 4),
            (std::vector<int32_t>{2 * 16 + 14, 2 * 16 + 15, 5 * 16, 5 * 16 + 1}));
  EXPECT_EQ(std::vector<int32_t>(p.tree_parents.begin(), p.tree_parents.begin() + 4), parents);
  EXPECT_EQ(std::vector<int32_t>(p.targets.begin(), p.targets.begin() + 4),
            (std::vector<int32_t>{11, 13, -1, -1}));  // input 0's first child is input 1
  EXPECT_EQ(p.rows[3].position, 17);                   // drawn after position 16
  for (size_t t = 4; t < p.tree_parents.size(); ++t)  // graph padding: chains
    EXPECT_LT(p.tree_parents[t], static_cast<int32_t>(t));
}

TEST(StepPlan, ATreeNeverSharesAPassWithALongPieceAndOutputsKeepChunkOrder) {
  const std::vector<int32_t> b0{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, b1{11};
  std::vector<int32_t> prompt(100, 3);
  const std::vector<int32_t> toks{4, 5}, parents{-1, -1}, offsets{0, 0};
  PlanChunk tree = chunk(b1, 3, toks, 0, 2);
  tree.parents = parents;
  tree.offsets = offsets;
  PlanLimits limits;
  limits.graphs = false;
  const std::vector<PlanChunk> two{chunk(b0, 0, prompt, 99, 1), tree};
  const auto passes = plan_passes(two, limits);
  ASSERT_EQ(passes.size(), 2u);
  EXPECT_FALSE(passes[0].tree);
  EXPECT_EQ(passes[0].num_tokens, 100);
  EXPECT_TRUE(passes[1].tree);
  EXPECT_EQ(passes[1].real_outputs, 2);
  const std::vector<PlanChunk> tree_first{tree, chunk(b0, 0, prompt, 99, 1)};
  const auto again = plan_passes(tree_first, limits);
  ASSERT_EQ(again.size(), 2u);
  EXPECT_TRUE(again[0].tree);
  EXPECT_EQ(again[0].real_outputs, 2);
  EXPECT_EQ(again[1].num_tokens, 100);
}

}  // namespace
}  // namespace longtail::policy::cuda

// The priced (bounded-cost) graph buckets the runner uses: padding under 1/8 of the step's cost,
// powers of two where padding is free, the same real part as the unpadded plan.
namespace longtail::policy::cuda {
namespace {

ModelConfig shape(int32_t hidden, int32_t inter, int32_t layers, int32_t heads, int32_t kv_heads,
                  int32_t head_dim, int32_t vocab) {
  ModelConfig c;
  c.hidden_size = hidden;
  c.intermediate_size = inter;
  c.num_layers = layers;
  c.num_heads = heads;
  c.num_kv_heads = kv_heads;
  c.head_dim = head_dim;
  c.vocab_size = vocab;
  c.max_position_embeddings = 32768;
  return c;
}
const ModelConfig kQwen15B = shape(1536, 8960, 28, 12, 2, 128, 151936);
const ModelConfig kQwen7B = shape(3584, 18944, 28, 28, 4, 128, 152064);
const ModelConfig kTinyPolicy = shape(128, 256, 3, 4, 2, 32, 32);  // configs/models/chain-qwen3

TEST(StepPlanPriced, BoundedCostBucketsPadUnderAnEighthOfTheStepAndAtMostDouble) {
  for (const int32_t fixed : {0, 150, 270, 5000, 1 << 20}) {
    int32_t buckets = 0, last = 0;
    for (int32_t t = 1; t <= 4096; ++t) {
      const int32_t b = graph_token_bucket(t, fixed);
      ASSERT_GE(b, t);
      ASSERT_GE(b, last) << "buckets must not shrink as tokens grow";
      ASSERT_LT(b - t, std::max(8, (t + fixed) / 8)) << t << " tokens, fixed cost " << fixed;
      ASSERT_LE(b, std::max(8, 2 * t));
      ASSERT_EQ(b % 8, 0);
      buckets += b != last;
      last = b;
    }
    if (fixed >= 4 * 4096) EXPECT_EQ(buckets, 10) << "free padding: 8, 16, ..., 4096";
    if (fixed == 270) EXPECT_LE(buckets, 30);
  }
  EXPECT_EQ(graph_token_bucket(100, 1 << 20), 128);
  EXPECT_EQ(graph_token_bucket(129, 1 << 20), 256);
  EXPECT_EQ(graph_token_bucket(65, 0), 72);
}

TEST(StepPlanPriced, ModelsArePricedByTheirShapeAndModesOverrideIt) {
  const int32_t f15 = fixed_cost_tokens_of(kQwen15B), f7 = fixed_cost_tokens_of(kQwen7B);
  EXPECT_GT(f15, 150);
  EXPECT_LT(f15, 500);
  EXPECT_LT(f7, f15) << "a larger model is compute-bound at fewer tokens";
  EXPECT_GT(f7, 50);
  EXPECT_GE(fixed_cost_tokens_of(kTinyPolicy), 4 * PlanLimits{}.max_tokens) << "all launches";

  const PlanLimits base;
  const PlanLimits legacy = priced_graph_limits(base, kQwen15B, 2048, "legacy");
  EXPECT_EQ(legacy.token_buckets, TokenBuckets::kFixedSteps);
  EXPECT_FALSE(capture_at_first_sight(legacy));
  const PlanLimits priced = priced_graph_limits(base, kQwen15B, 2048, "");
  EXPECT_EQ(priced.token_buckets, TokenBuckets::kBoundedCost);
  EXPECT_EQ(priced.fixed_cost_tokens, f15);
  EXPECT_EQ(priced.min_graph_table_width, 16);
  EXPECT_TRUE(priced.ragged_graphs);
  EXPECT_TRUE(capture_at_first_sight(priced));
  const PlanLimits tiny = priced_graph_limits(base, kTinyPolicy, 32, "");
  EXPECT_TRUE(tiny.ragged_graphs);
  EXPECT_TRUE(capture_at_first_sight(tiny));
  EXPECT_EQ(tiny.min_graph_table_width, 32) << "wider tables for free padding, within the runner's";
  EXPECT_EQ(priced_graph_limits(base, kTinyPolicy, 2048, "266").min_graph_table_width, 16);
  EXPECT_EQ(priced_graph_limits(base, kTinyPolicy, 2048, "").min_graph_table_width, 64);
  EXPECT_EQ(priced_graph_limits(base, kQwen15B, 2048, "tokens").fixed_cost_tokens, 0);
  EXPECT_EQ(priced_graph_limits(base, kQwen15B, 2048, "123").fixed_cost_tokens, 123);
  for (const char* bad : {"abc", "-5", "12x", "99999999"})
    EXPECT_THROW(priced_graph_limits(base, kQwen15B, 2048, bad), std::invalid_argument) << bad;
}

TEST(StepPlanPriced, FewSequencesAddingTheSameCountAreBucketedAsRagged) {
  const std::vector<int32_t> b{3};
  const std::vector<int32_t> three{1, 2, 3};
  const PlanLimits priced = priced_graph_limits(PlanLimits{}, kQwen15B, 2048, "");
  std::vector<PlanChunk> two{chunk(b, 0, three, 0, 1), chunk(b, 4, three, 0, 2)};
  const auto p = plan_passes(two, priced);
  ASSERT_EQ(p.size(), 1u);
  ASSERT_TRUE(p[0].graphable);
  EXPECT_EQ(p[0].key.max_query_len, 4) << "the query-length bucket, not the exact draft length";
  EXPECT_EQ(p[0].real_outputs, 6);
  EXPECT_EQ(p[0].num_tokens, p[0].key.tokens);
  // Eight or more: padded with whole sequences, as decode is (the verify benchmark's uniform k).
  std::vector<PlanChunk> eight;
  for (int i = 0; i < 8; ++i) eight.push_back(chunk(b, 4, three, 0, 10 + i));
  const auto q = plan_passes(eight, priced);
  EXPECT_EQ(q[0].key, (GraphKey{8, 24, 3, 16}));
}

TEST(StepPlanPriced, FreePaddingTakesTheLargestQueryBucketAndAWideTable) {
  const std::vector<int32_t> b{3};
  const std::vector<int32_t> one{1}, five{1, 2, 3, 4, 5};
  const PlanLimits tiny = priced_graph_limits(PlanLimits{}, kTinyPolicy, 64, "");
  std::vector<PlanChunk> chunks{chunk(b, 0, one, 0, 1), chunk(b, 4, five, 0, 2),
                                chunk(b, 9, one, 0, 3)};
  const auto p = plan_passes(chunks, tiny);
  ASSERT_TRUE(p[0].graphable);
  EXPECT_EQ(p[0].key.max_query_len, 32);
  EXPECT_EQ(p[0].key.table_width, 64);
  EXPECT_EQ(p[0].key.tokens, 8);
}

// As RandomRaggedBatchesMatchTheUnpaddedPlanAndTheirKeys, under each model's price: the real part
// is the unpadded plan's, padding writes no KV, and padding tokens stay under the rule's bound.
TEST(StepPlanPriced, RandomRaggedBatchesMatchTheUnpaddedPlanUnderEveryPricing) {
  std::mt19937 rng(11);
  const int32_t B = 16;
  std::vector<std::vector<int32_t>> blocks(200), tokens(200), parents(200), offsets(200);
  PlanLimits eager;
  eager.graphs = false;
  for (const ModelConfig& m : {kQwen15B, kQwen7B, kTinyPolicy}) {
    const PlanLimits priced = priced_graph_limits(PlanLimits{}, m, 2048, "");
    for (int iter = 0; iter < 200; ++iter) {
      const int32_t S = 1 + static_cast<int32_t>(rng() % 200);
      std::vector<PlanChunk> chunks;
      for (int32_t s = 0; s < S; ++s) {
        const int32_t old_len = static_cast<int32_t>(rng() % 3000);
        const int32_t n = 1 + static_cast<int32_t>(rng() % 17);
        blocks[s].resize(static_cast<size_t>((old_len + n + B - 1) / B));
        for (auto& x : blocks[s]) x = 1 + static_cast<int32_t>(rng() % 100000);
        tokens[s].assign(static_cast<size_t>(n), 0);
        for (auto& x : tokens[s]) x = static_cast<int32_t>(rng() % 1000);
        chunks.push_back(chunk(blocks[s], old_len, tokens[s], 0, 1000 + s));
        if (rng() % 2) {  // a token tree: parents before children, depth offsets
          parents[s].assign(static_cast<size_t>(n), -1);
          offsets[s].assign(static_cast<size_t>(n), 0);
          for (int32_t i = 1; i < n; ++i) {
            parents[s][i] = static_cast<int32_t>(rng() % static_cast<uint32_t>(i + 1)) - 1;
            offsets[s][i] = parents[s][i] < 0 ? 0 : offsets[s][parents[s][i]] + 1;
          }
          chunks.back().parents = parents[s];
          chunks.back().offsets = offsets[s];
        }
      }
      const auto padded = plan_passes(chunks, priced);
      const auto plain = plan_passes(chunks, eager);
      ASSERT_EQ(padded.size(), 1u);
      ASSERT_EQ(plain.size(), 1u);
      const PassPlan& p = padded[0];
      const PassPlan& q = plain[0];
      ASSERT_TRUE(p.graphable) << S << " sequences, " << q.num_tokens << " tokens";
      EXPECT_EQ(p.num_seqs, p.key.seqs);
      EXPECT_EQ(p.num_tokens, p.key.tokens);
      EXPECT_EQ(p.num_outputs, p.key.tokens);
      EXPECT_EQ(p.max_query_len, p.key.max_query_len);
      EXPECT_GE(p.max_query_len, q.max_query_len);
      EXPECT_EQ(p.real_outputs, q.num_outputs);
      EXPECT_EQ(p.tree, q.tree);
      EXPECT_LT(p.num_tokens - q.num_tokens,
                std::max(8, (q.num_tokens + priced.fixed_cost_tokens) / 8) + 1)
          << "padding beyond an eighth of the step's price";
      EXPECT_LE(p.num_tokens, std::max(8, 2 * q.num_tokens));
      const auto T = static_cast<size_t>(q.num_tokens);
      EXPECT_TRUE(std::equal(q.tokens.begin(), q.tokens.end(), p.tokens.begin()));
      EXPECT_TRUE(std::equal(q.positions.begin(), q.positions.end(), p.positions.begin()));
      EXPECT_TRUE(std::equal(q.slots.begin(), q.slots.end(), p.slots.begin()));
      EXPECT_TRUE(std::equal(q.targets.begin(), q.targets.end(), p.targets.begin()));
      EXPECT_TRUE(std::equal(q.tree_parents.begin(), q.tree_parents.end(), p.tree_parents.begin()));
      EXPECT_TRUE(std::equal(q.seq_lens.begin(), q.seq_lens.end(), p.seq_lens.begin()));
      for (size_t t = T; t < p.slots.size(); ++t) ASSERT_EQ(p.slots[t], -1);
      EXPECT_EQ(p.query_start.back(), p.num_tokens);
      EXPECT_GE(p.table_width, priced.min_graph_table_width);
    }
  }
}

}  // namespace
}  // namespace longtail::policy::cuda
