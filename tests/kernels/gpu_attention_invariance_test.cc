// GPU test of the batch-invariant attention (kv_split_size > 0), bit for bit: a query's output
// depends only on its position and its sequence's cache, never on how many queries its sequence
// brings to the launch (decode; verify of k = 2..16, i.e. the 16-row layout, one block of 8 warps,
// or several row chunks side by side), on the other sequences of the launch and the grid they
// size, on surplus (empty) splits, or on the K/V pipeline depth (kv_stages 2 or 3). The
// deterministic backend's bitwise promise rests on this; agreement with ref::paged_attention is
// gpu_attention_test.cc's (FixedSplitSizeMatchesReference).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <random>
#include <vector>

#include "tests/kernels/gpu_test_util.h"

#if LONGTAIL_HAVE_CUDA
namespace longtail::kernels {
namespace {
using testing::DeviceBuffer;
using testing::random_bf16;

constexpr int32_t kSplit = 1024;  // the deterministic backend's split size
constexpr int32_t kBlock = 16;
constexpr int32_t kMaxDraft = 16;

// One sequence of a launch: its cache length after the launch and its query rows (indices into
// the test's query pool, one per token).
struct Seq {
  int32_t cache;  // which cached sequence (its block table row)
  int32_t len;
  std::vector<int32_t> queries;
};

class InvariantAttention {
 public:
  InvariantAttention(int32_t heads, int32_t kv_heads, int32_t dim, std::vector<int32_t> capacity,
                     std::mt19937_64& rng)
      : heads_(heads), kv_heads_(kv_heads), dim_(dim) {
    int32_t blocks = 0;
    for (int32_t c : capacity) width_ = std::max(width_, (c + kBlock - 1) / kBlock);
    for (int32_t c : capacity) blocks += (c + kBlock - 1) / kBlock;
    std::vector<int32_t> phys(blocks);
    std::iota(phys.begin(), phys.end(), 0);
    std::shuffle(phys.begin(), phys.end(), rng);
    table_.assign(capacity.size() * width_, 0);
    int32_t next = 0;
    for (size_t s = 0; s < capacity.size(); ++s)
      for (int32_t b = 0; b < (capacity[s] + kBlock - 1) / kBlock; ++b) table_[s * width_ + b] = phys[next++];
    const size_t elems = static_cast<size_t>(blocks) * kBlock * kv_heads * dim;
    kc_ = random_bf16(elems, rng).b;
    vc_ = random_bf16(elems, rng).b;
    pool_ = random_bf16(static_cast<size_t>(64) * heads * dim, rng).b;  // 64 query rows
  }

  // The launch's output rows (bf16 bits, heads * dim per token), in launch order.
  std::vector<bf16> run(const std::vector<Seq>& seqs, int32_t kv_stages, int32_t len_bound) {
    std::vector<int32_t> qstart = {0}, lens, table;
    std::vector<bf16> q;
    int32_t max_n = 0;
    for (const Seq& s : seqs) {
      qstart.push_back(qstart.back() + static_cast<int32_t>(s.queries.size()));
      lens.push_back(s.len);
      table.insert(table.end(), table_.begin() + s.cache * width_, table_.begin() + (s.cache + 1) * width_);
      max_n = std::max(max_n, static_cast<int32_t>(s.queries.size()));
      for (int32_t r : s.queries)
        q.insert(q.end(), pool_.begin() + static_cast<size_t>(r) * heads_ * dim_,
                 pool_.begin() + static_cast<size_t>(r + 1) * heads_ * dim_);
    }
    const int64_t tokens = qstart.back();
    const int32_t splits = (len_bound + kSplit - 1) / kSplit;
    const size_t ws_bytes = paged_attention_workspace_bytes(tokens, heads_, dim_, splits);
    DeviceBuffer<bf16> d_q(q), d_kc(kc_), d_vc(vc_), d_out(static_cast<size_t>(tokens) * heads_ * dim_);
    DeviceBuffer<int32_t> d_table(table), d_qstart(qstart), d_lens(lens);
    DeviceBuffer<float> d_ws(ws_bytes / sizeof(float) + 1);
    PagedAttentionParams p;
    p.q = d_q.get();
    p.q_stride = static_cast<int64_t>(heads_) * dim_;
    p.k_cache = d_kc.get();
    p.v_cache = d_vc.get();
    p.block_table = d_table.get();
    p.block_table_stride = width_;
    p.block_size = kBlock;
    p.query_start = d_qstart.get();
    p.seq_lens = d_lens.get();
    p.num_seqs = static_cast<int32_t>(seqs.size());
    p.num_tokens = tokens;
    p.max_query_len = max_n;
    p.num_heads = heads_;
    p.num_kv_heads = kv_heads_;
    p.head_dim = dim_;
    p.scale = 1.0f / std::sqrt(static_cast<float>(dim_));
    p.num_kv_splits = splits;
    p.kv_split_size = kSplit;
    p.kv_stages = kv_stages;
    p.workspace = d_ws.get();
    p.workspace_bytes = ws_bytes;
    p.out = d_out.get();
    p.out_stride = p.q_stride;
    EXPECT_EQ(paged_attention(p, nullptr), Status::kOk) << last_error();
    EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    return d_out.download();
  }

  size_t row_elems() const { return static_cast<size_t>(heads_) * dim_; }

 private:
  int32_t heads_, kv_heads_, dim_, width_ = 0;
  std::vector<int32_t> table_;
  std::vector<bf16> kc_, vc_, pool_;
};

bool same_row(const std::vector<bf16>& a, size_t ra, const std::vector<bf16>& b, size_t rb, size_t n) {
  return std::memcmp(a.data() + ra * n, b.data() + rb * n, n * sizeof(bf16)) == 0;
}

struct InvarianceCase {
  int32_t heads, kv, dim, prefix;
};

class KernelsGpuAttentionInvariance : public ::testing::TestWithParam<InvarianceCase> {};

TEST_P(KernelsGpuAttentionInvariance, QueryOutputsDoNotDependOnTheLaunch) {
  LT_REQUIRE_GPU();
  const InvarianceCase sh = GetParam();
  const int32_t prefix = sh.prefix;
  std::mt19937_64 rng(static_cast<uint64_t>(sh.heads * 1000 + prefix));
  // Cached sequences: 0 the target (prefix + up to 16 drafts), 1 and 2 others.
  InvariantAttention att(sh.heads, sh.kv, sh.dim, {prefix + kMaxDraft, 3000, 300}, rng);
  const size_t n = att.row_elems();
  // Decoding draft j alone: the reference bits of query row j (pool rows 0..15).
  std::vector<std::vector<bf16>> alone;
  for (int32_t j = 0; j < kMaxDraft; ++j) {
    alone.push_back(att.run({Seq{0, prefix + j + 1, {j}}}, 0, prefix + j + 1));
    // Written (outputs start poisoned with NaN bits, which would compare equal).
    const std::vector<float> f = testing::to_float(alone.back());
    ASSERT_TRUE(std::none_of(f.begin(), f.end(), [](float x) { return std::isnan(x); })) << "draft " << j;
  }
  struct Case { int32_t k, stages; bool others; int32_t bound; };
  for (const Case c : {Case{2, 0, false, 4096}, Case{3, 0, true, 4096}, Case{5, 2, false, 8192},
                       Case{5, 3, true, 4096}, Case{6, 0, true, 4096}, Case{8, 2, true, 4096},
                       Case{11, 3, false, 4096}, Case{16, 0, false, 4096},
                       Case{16, 2, true, 8192}, Case{16, 3, true, 4096}}) {
    SCOPED_TRACE(::testing::Message() << "k " << c.k << " stages " << c.stages << " others "
                                      << c.others << " splits for " << c.bound);
    std::vector<int32_t> mine(c.k);
    std::iota(mine.begin(), mine.end(), 0);
    std::vector<Seq> seqs;
    if (c.others) seqs.push_back(Seq{1, 2990, {20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35}});
    const size_t first = c.others ? 16 : 0;
    seqs.push_back(Seq{0, prefix + c.k, mine});
    if (c.others) seqs.push_back(Seq{2, 297, {40, 41, 42}});
    const std::vector<bf16> out = att.run(seqs, c.stages, c.bound);
    for (int32_t j = 0; j < c.k; ++j)
      EXPECT_TRUE(same_row(out, first + j, alone[j], 0, n)) << "draft " << j << " differs from decoding it alone";
  }
}

// GQA groups 6 and 7 (the Qwen2.5-1.5B and 7B layers; 7 with head_dim 64 too) and 1; drafts
// crossing a split boundary (1015, 2047) or not (40).
std::vector<InvarianceCase> invariance_cases() {
  std::vector<InvarianceCase> v;
  for (const InvarianceCase sh : {InvarianceCase{12, 2, 128, 0}, InvarianceCase{28, 4, 128, 0},
                                  InvarianceCase{14, 2, 64, 0}, InvarianceCase{4, 4, 64, 0}})
    for (const int32_t prefix : {1015, 2047, 40}) v.push_back({sh.heads, sh.kv, sh.dim, prefix});
  return v;
}

INSTANTIATE_TEST_SUITE_P(Shapes, KernelsGpuAttentionInvariance, ::testing::ValuesIn(invariance_cases()),
                         [](const auto& info) {
                           return "H" + std::to_string(info.param.heads) + "_KV" +
                                  std::to_string(info.param.kv) + "_d" + std::to_string(info.param.dim) +
                                  "_prefix" + std::to_string(info.param.prefix);
                         });

}  // namespace
}  // namespace longtail::kernels
#else
TEST(KernelsGpuAttentionInvariance, All) { GTEST_SKIP() << "built without CUDA (LONGTAIL_HAVE_CUDA off)"; }
#endif
