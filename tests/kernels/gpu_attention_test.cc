// GPU tests of paged attention (prefill, decode, verify, tree) and the KV cache it reads, against
// ref::paged_attention: scattered physical blocks, contexts crossing block boundaries, GQA ratios
// 1/2/7, head_dim 64/128, k = 1..16 draft tokens, with and without the split-KV path; the simple
// kernel (any head_dim <= 256, causal) on every causal scenario and on other head sizes.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <sstream>

#include "tests/kernels/gpu_test_util.h"

#if LONGTAIL_HAVE_CUDA
namespace longtail::kernels {
namespace {
using testing::DeviceBuffer;
using testing::random_bf16;
using testing::rel_error;
using testing::to_float;

// Attention outputs are bf16; inputs are bf16 too, so the reference sees identical values.
constexpr double kAttnTol = 1e-2;

struct Scenario {
  int32_t num_heads = 2, num_kv_heads = 1, head_dim = 128, block_size = 16;
  std::vector<int32_t> n;       // query tokens per sequence
  std::vector<int32_t> prefix;  // cached positions before them
  bool tree = false;
  int32_t splits = 1;           // 0: paged_attention_choose_splits
  int32_t split_size = 0;       // > 0: batch-invariant fixed splits (splits = enough for them)
  std::string name() const {
    std::ostringstream s;
    s << "H" << num_heads << "/KV" << num_kv_heads << " d" << head_dim << " seqs" << n.size()
      << " n0=" << n[0] << " prefix0=" << prefix[0] << (tree ? " tree" : "") << " splits "
      << splits << " split size " << split_size;
    return s.str();
  }
};

void run_scenario(const Scenario& sc, std::mt19937_64& rng) {
  SCOPED_TRACE(sc.name());
  const int32_t S = static_cast<int32_t>(sc.n.size());
  const int32_t H = sc.num_heads, KV = sc.num_kv_heads, D = sc.head_dim, B = sc.block_size;
  std::vector<int32_t> qstart(S + 1, 0), lens(S);
  int32_t max_blocks = 0, total_blocks = 0, max_n = 0;
  for (int32_t s = 0; s < S; ++s) {
    qstart[s + 1] = qstart[s] + sc.n[s];
    lens[s] = sc.prefix[s] + sc.n[s];
    const int32_t nb = (lens[s] + B - 1) / B;
    max_blocks = std::max(max_blocks, nb);
    total_blocks += nb;
    max_n = std::max(max_n, sc.n[s]);
  }
  const int64_t T = qstart[S];
  const int32_t num_blocks = total_blocks + 5;  // spare blocks hold decoys
  std::vector<int32_t> phys(num_blocks);
  std::iota(phys.begin(), phys.end(), 0);
  std::shuffle(phys.begin(), phys.end(), rng);
  const int64_t bt_stride = max_blocks + 3;
  std::vector<int32_t> table(S * bt_stride, 1 << 30);  // unused entries: far out of range
  int32_t next = 0;
  for (int32_t s = 0; s < S; ++s) {
    for (int32_t b = 0; b < (lens[s] + B - 1) / B; ++b) table[s * bt_stride + b] = phys[next++];
  }
  const int64_t cache_elems = static_cast<int64_t>(num_blocks) * B * KV * D;
  auto kc = random_bf16(cache_elems, rng);
  auto vc = random_bf16(cache_elems, rng);
  const int64_t q_stride = static_cast<int64_t>(H + 2 * KV) * D;  // q inside a fused qkv row
  auto qkv = random_bf16(T * q_stride, rng);
  std::vector<float> q_dense(T * H * D);
  for (int64_t t = 0; t < T; ++t) {
    std::copy_n(qkv.f.begin() + t * q_stride, H * D, q_dense.begin() + t * H * D);
  }
  std::vector<int32_t> parents;
  if (sc.tree) {
    parents.resize(T);
    for (int32_t s = 0; s < S; ++s) {
      for (int32_t j = 0; j < sc.n[s]; ++j) {
        std::uniform_int_distribution<int32_t> pd(-1, j - 1);
        parents[qstart[s] + j] = pd(rng);
      }
      ASSERT_EQ(ref::validate_tree_parents(
                    std::span<const int32_t>(parents).subspan(qstart[s], sc.n[s])),
                "");
    }
  }
  ref::AttentionShape shape{H, KV, D, B, bt_stride, 1.0f / std::sqrt(static_cast<float>(D))};
  std::vector<float> want(T * H * D);
  ref::paged_attention(shape, q_dense, kc.f, vc.f, table, qstart, lens, parents, want);

  const int32_t max_len = *std::max_element(lens.begin(), lens.end());
  const int32_t splits = sc.split_size > 0 ? (max_len + sc.split_size - 1) / sc.split_size
                         : sc.splits > 0   ? sc.splits
                                           : paged_attention_choose_splits(S, H, KV, max_n, max_len, 132);
  DeviceBuffer<bf16> d_qkv(qkv.b), d_kc(kc.b), d_vc(vc.b), d_out(T * H * D);
  DeviceBuffer<int32_t> d_table(table), d_qstart(qstart), d_lens(lens);
  DeviceBuffer<int32_t> d_parents(parents);
  const size_t ws_bytes = paged_attention_workspace_bytes(T, H, D, splits);
  DeviceBuffer<float> d_ws(ws_bytes / sizeof(float));
  PagedAttentionParams p;
  p.q = d_qkv.get();
  p.q_stride = q_stride;
  p.k_cache = d_kc.get();
  p.v_cache = d_vc.get();
  p.block_table = d_table.get();
  p.block_table_stride = bt_stride;
  p.block_size = B;
  p.query_start = d_qstart.get();
  p.seq_lens = d_lens.get();
  p.tree_parents = sc.tree ? d_parents.get() : nullptr;
  p.num_seqs = S;
  p.num_tokens = T;
  p.max_query_len = max_n;
  p.num_heads = H;
  p.num_kv_heads = KV;
  p.head_dim = D;
  p.scale = shape.scale;
  p.num_kv_splits = splits;
  p.kv_split_size = sc.split_size;
  p.workspace = d_ws.get();
  p.workspace_bytes = ws_bytes;
  p.out = d_out.get();
  p.out_stride = static_cast<int64_t>(H) * D;
  const bool fast_shape = D == 64 || D == 128;
  // Tensor cores reading the settled prefix before the wait (the engine's way), the same without
  // (the same bits), the CUDA-core kernel.
  struct Variant {
    bool tc, settled;
    const char* name;
  };
  constexpr Variant kVariants[] = {{true, true, "tensor cores, settled prefix"},
                                   {true, false, "tensor cores"},
                                   {false, false, "CUDA-core kernel"}};
  std::vector<bf16> first_bits;
  for (const Variant& v : kVariants) {
    if (!fast_shape) break;
    d_out.poison();
    p.use_tensor_cores = v.tc;
    p.cached_prefix_settled = v.settled;
    LT_KERNEL_OK(paged_attention(p, nullptr));
    const std::vector<bf16> got = d_out.download();
    EXPECT_LT(rel_error(to_float(got), want), kAttnTol) << v.name;
    if (first_bits.empty()) {
      first_bits = got;
    } else if (v.tc) {
      EXPECT_TRUE(std::equal(got.begin(), got.end(), first_bits.begin(),
                             [](bf16 a, bf16 b) { return a.bits == b.bits; }))
          << v.name << ": not the bits read with the settled prefix";
    }
  }
  if (sc.tree) return;
  std::vector<int32_t> token_seq(T);
  for (int32_t s = 0; s < S; ++s) {
    for (int32_t t = qstart[s]; t < qstart[s + 1]; ++t) token_seq[t] = s;
  }
  std::vector<bf16> q_dense_b(q_dense.size());
  for (size_t i = 0; i < q_dense.size(); ++i) q_dense_b[i] = ref::to_bf16(q_dense[i]);
  DeviceBuffer<bf16> d_qd(q_dense_b);
  DeviceBuffer<int32_t> d_token_seq(token_seq);
  SimplePagedAttentionParams sp;
  sp.q = d_qd.get();
  sp.k_cache = d_kc.get();
  sp.v_cache = d_vc.get();
  sp.block_table = d_table.get();
  sp.block_table_stride = bt_stride;
  sp.block_size = B;
  sp.token_seq = d_token_seq.get();
  sp.query_start = d_qstart.get();
  sp.seq_lens = d_lens.get();
  sp.num_tokens = T;
  sp.num_heads = H;
  sp.num_kv_heads = KV;
  sp.head_dim = D;
  sp.scale = shape.scale;
  d_out.poison();
  sp.out = d_out.get();
  LT_KERNEL_OK(paged_attention_simple(sp, nullptr));
  EXPECT_LT(rel_error(to_float(d_out.download()), want), kAttnTol) << "simple kernel";
}

struct Gqa {
  int32_t heads, kv;
};
constexpr Gqa kRatios[] = {{4, 4}, {4, 2}, {14, 2}};  // GQA ratios 1, 2, 7

TEST(KernelsGpuAttention, PrepareSetsSharedMemoryLimits) {
  LT_REQUIRE_GPU();
  EXPECT_EQ(prepare_paged_attention(), Status::kOk) << last_error();
  EXPECT_EQ(prepare_paged_attention(), Status::kOk) << "must be callable again";
}

TEST(KernelsGpuAttention, DecodeOneTokenPerSequence) {
  LT_REQUIRE_GPU();
  std::mt19937_64 rng(11);
  std::uniform_int_distribution<int32_t> ctx(0, 700);
  for (const Gqa g : kRatios) {
    for (int32_t d : {64, 128}) {
      for (int32_t seqs : {1, 5, 16}) {
        for (int32_t splits : {1, 0, 3}) {
          Scenario sc;
          sc.num_heads = g.heads;
          sc.num_kv_heads = g.kv;
          sc.head_dim = d;
          sc.splits = splits;
          for (int32_t s = 0; s < seqs; ++s) {
            sc.n.push_back(1);
            sc.prefix.push_back(s == 0 ? 15 : ctx(rng));  // 15 + 1 fills exactly one block
          }
          run_scenario(sc, rng);
        }
      }
    }
  }
}

TEST(KernelsGpuAttention, LongContextDecodeWithSplits) {
  LT_REQUIRE_GPU();
  std::mt19937_64 rng(12);
  Scenario sc;
  sc.num_heads = 12;
  sc.num_kv_heads = 2;
  sc.head_dim = 128;
  sc.n = {1, 1, 1};
  sc.prefix = {4095, 2000, 33};
  for (int32_t splits : {1, 0, 16}) {
    sc.splits = splits;
    run_scenario(sc, rng);
  }
}

TEST(KernelsGpuAttention, VerifyOneToSixteenDraftTokens) {
  LT_REQUIRE_GPU();
  std::mt19937_64 rng(13);
  std::uniform_int_distribution<int32_t> ctx(1, 300);
  for (int32_t k = 1; k <= 16; ++k) {
    const Gqa g = kRatios[k % 3];
    Scenario sc;
    sc.num_heads = g.heads;
    sc.num_kv_heads = g.kv;
    sc.head_dim = k % 2 ? 64 : 128;
    sc.splits = k % 4 == 0 ? 4 : 1;
    for (int32_t s = 0; s < 4; ++s) {
      sc.n.push_back(k);
      sc.prefix.push_back(ctx(rng));
    }
    run_scenario(sc, rng);
  }
  // Ragged k within one batch.
  Scenario sc;
  sc.num_heads = 14;
  sc.num_kv_heads = 2;
  sc.n = {1, 16, 7, 3};
  sc.prefix = {100, 31, 0, 250};
  run_scenario(sc, rng);
}

TEST(KernelsGpuAttention, VarlenCausalPrefill) {
  LT_REQUIRE_GPU();
  std::mt19937_64 rng(14);
  for (const Gqa g : {Gqa{4, 2}, Gqa{14, 2}}) {
    for (int32_t d : {64, 128}) {
      Scenario sc;
      sc.num_heads = g.heads;
      sc.num_kv_heads = g.kv;
      sc.head_dim = d;
      sc.n = {1, 17, 100, 300};
      sc.prefix = {0, 0, 0, 0};
      run_scenario(sc, rng);
      // Chunked prefill: a later chunk over an existing prefix.
      sc.n = {50, 33};
      sc.prefix = {40, 200};
      run_scenario(sc, rng);
      sc.splits = 3;
      run_scenario(sc, rng);
    }
  }
}

TEST(KernelsGpuAttention, FixedSplitSizeMatchesReference) {
  LT_REQUIRE_GPU();
  std::mt19937_64 rng(17);
  for (int32_t split : {64, 1024}) {
    for (const Gqa g : {Gqa{12, 2}, Gqa{28, 4}, Gqa{4, 4}}) {
      for (const std::vector<int32_t>& n : {std::vector<int32_t>{1, 1, 1}, std::vector<int32_t>{16, 3, 9},
                                            std::vector<int32_t>{200, 1, 40}}) {
        Scenario sc;
        sc.num_heads = g.heads;
        sc.num_kv_heads = g.kv;
        sc.head_dim = g.heads == 4 ? 64 : 128;
        sc.split_size = split;
        sc.n = n;
        sc.prefix = {2100, 5, 1020};
        run_scenario(sc, rng);
      }
    }
  }
}

TEST(KernelsGpuAttention, BalanceSplitsFillsTheLastWave) {
  LT_REQUIRE_GPU();
  // 16 sequences x 2 kv heads x 3 splits = 96 blocks: one wave, unchanged.
  EXPECT_EQ(paged_attention_balance_splits(3, 64, 16, 12, 2, 128, 1, 4096), 3);
  // 256 x 2 = 512 blocks per split, more than one wave on any current GPU: more splits, within
  // [1, 3], bounded by max_splits and by one 64-position tile per split.
  const int32_t s = paged_attention_balance_splits(1, 64, 256, 12, 2, 128, 1, 4096);
  EXPECT_GE(s, 1);
  EXPECT_LE(s, 3);
  EXPECT_EQ(paged_attention_balance_splits(1, 1, 256, 12, 2, 128, 1, 4096), 1);
  EXPECT_EQ(paged_attention_balance_splits(1, 64, 256, 12, 2, 128, 1, 64), 1);
  EXPECT_EQ(paged_attention_balance_splits(0, 64, 256, 12, 2, 128, 1, 4096), 1);  // bad input: 1
}

TEST(KernelsGpuAttention, SimpleKernelServesOtherHeadSizes) {
  LT_REQUIRE_GPU();
  std::mt19937_64 rng(16);
  for (int32_t d : {8, 32, 80, 96, 256}) {
    Scenario sc;
    sc.num_heads = 6;
    sc.num_kv_heads = 2;
    sc.head_dim = d;
    sc.n = {1, 5, 40, 1};
    sc.prefix = {0, 37, 16, 300};
    run_scenario(sc, rng);
  }
}

TEST(KernelsGpuAttention, TreeMaskSeesPrefixAndAncestorsOnly) {
  LT_REQUIRE_GPU();
  std::mt19937_64 rng(15);
  std::uniform_int_distribution<int32_t> ctx(0, 200), kd(1, 16);
  for (const Gqa g : kRatios) {
    for (int32_t splits : {1, 2}) {
      Scenario sc;
      sc.num_heads = g.heads;
      sc.num_kv_heads = g.kv;
      sc.head_dim = 128;
      sc.tree = true;
      sc.splits = splits;
      for (int32_t s = 0; s < 6; ++s) {
        sc.n.push_back(kd(rng));
        sc.prefix.push_back(ctx(rng));
      }
      run_scenario(sc, rng);
    }
  }
  Scenario wide;  // 64 draft tokens: the largest tree
  wide.num_heads = 4;
  wide.num_kv_heads = 2;
  wide.head_dim = 64;
  wide.tree = true;
  wide.n = {64};
  wide.prefix = {17};
  run_scenario(wide, rng);
}

}  // namespace
}  // namespace longtail::kernels
#else
TEST(KernelsGpuAttention, All) { GTEST_SKIP() << "built without CUDA (LONGTAIL_HAVE_CUDA off)"; }
#endif
