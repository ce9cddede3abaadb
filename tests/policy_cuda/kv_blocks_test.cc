// Paged KV block accounting of the CUDA backend: whole-block allocation, rollback that frees only
// blocks wholly past the new length, release, and clear errors for bad handles and lengths.
#include <gtest/gtest.h>

#include <set>
#include <stdexcept>

#include "policy/cuda_kv_blocks.h"

namespace longtail::policy::cuda {
namespace {

TEST(KvBlockManager, GrowsInWholeBlocks) {
  KvBlockManager m(10, 16);
  const int64_t s = m.create();
  EXPECT_EQ(m.length(s), 0);
  EXPECT_EQ(m.blocks_needed(s, 1), 1);
  EXPECT_EQ(m.blocks_needed(s, 16), 1);
  EXPECT_EQ(m.blocks_needed(s, 17), 2);
  m.grow(s, 17);
  EXPECT_EQ(m.length(s), 17);
  EXPECT_EQ(m.blocks(s).size(), 2u);
  EXPECT_EQ(m.free_blocks(), 8);
  EXPECT_EQ(m.blocks_needed(s, 32), 0);
  m.grow(s, 32);
  EXPECT_EQ(m.free_blocks(), 8);
}

TEST(KvBlockManager, TruncateFreesOnlyWholeBlocksPastTheNewLength) {
  KvBlockManager m(10, 16);
  const int64_t s = m.create();
  m.grow(s, 40);  // 3 blocks
  ASSERT_EQ(m.free_blocks(), 7);
  m.truncate(s, 33);  // still needs 3 blocks
  EXPECT_EQ(m.free_blocks(), 7);
  m.truncate(s, 32);  // 2 blocks
  EXPECT_EQ(m.free_blocks(), 8);
  EXPECT_EQ(m.length(s), 32);
  m.truncate(s, 0);
  EXPECT_EQ(m.free_blocks(), 10);
  EXPECT_TRUE(m.blocks(s).empty());
  EXPECT_THROW(m.truncate(s, 1), std::invalid_argument);  // beyond the length
  EXPECT_THROW(m.truncate(s, -1), std::invalid_argument);
}

TEST(KvBlockManager, SequencesNeverShareBlocksAndReleaseReturnsThem) {
  KvBlockManager m(8, 4);
  const int64_t a = m.create(), b = m.create();
  m.grow(a, 9);
  m.grow(b, 12);
  std::set<int32_t> used(m.blocks(a).begin(), m.blocks(a).end());
  for (int32_t blk : m.blocks(b)) EXPECT_TRUE(used.insert(blk).second) << "block " << blk;
  EXPECT_EQ(m.free_blocks(), 2);
  EXPECT_THROW(m.grow(a, 30), std::logic_error);  // callers check capacity first
  m.release(a);
  EXPECT_EQ(m.free_blocks(), 5);
  EXPECT_FALSE(m.contains(a));
  EXPECT_THROW(m.release(a), std::invalid_argument);
  EXPECT_THROW(m.length(12345), std::invalid_argument);
}

TEST(KvBlockManager, RejectsBadGeometry) {
  EXPECT_THROW(KvBlockManager(4, 0), std::invalid_argument);
  EXPECT_THROW(KvBlockManager(-1, 16), std::invalid_argument);
}

}  // namespace
}  // namespace longtail::policy::cuda
