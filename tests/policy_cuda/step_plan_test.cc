// Pass planning of the CUDA forward: graph-replayable decode steps padded to a batch bucket,
// long prefills cut into passes that continue each other exactly, outputs and their sampling
// positions/targets, and the packed metadata layout.
#include <gtest/gtest.h>

#include <numeric>
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
  EXPECT_EQ(p.key, (GraphKey{4, 1, 16}));
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
