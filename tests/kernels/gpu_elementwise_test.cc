// GPU tests of the row/element-wise kernels (embedding, RMSNorms, RoPE, KV write, the fused q/k/v
// post-processing, SwiGLU, casts, bias, synthetic fills) against kernels/reference.h on fresh
// random inputs, odd sizes included.
#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>
#include <random>

#include "kernels/philox.h"
#include "tests/kernels/gpu_test_util.h"

#if LONGTAIL_HAVE_CUDA
namespace longtail::kernels {
namespace {
using testing::DeviceBuffer;
using testing::kBf16Tol;
using testing::random_bf16;
using testing::rel_error;
using testing::to_float;

TEST(KernelsGpu, EmbeddingGatherClampsBadIds) {
  LT_REQUIRE_GPU();
  std::mt19937_64 rng(1);
  for (int64_t hidden : {64, 100, 896}) {
    const int64_t vocab = 1000;
    auto table = random_bf16(vocab * hidden, rng);
    std::vector<int32_t> ids = {5, 999, 0, -1, 1000, 17, 17, 512, 3};
    std::vector<float> want(ids.size() * hidden);
    bool bad = false;
    ref::embedding_gather(table.f, vocab, hidden, ids, want, &bad);
    ASSERT_TRUE(bad);
    DeviceBuffer<bf16> d_table(table.b);
    DeviceBuffer<int32_t> d_ids(ids);
    DeviceBuffer<bf16> d_out(want.size());
    DeviceBuffer<float> d_out32(want.size());
    DeviceBuffer<int32_t> d_flag(std::vector<int32_t>{0});
    LT_KERNEL_OK(embedding_gather_bf16(d_table.get(), vocab, hidden, d_ids.get(),
                                       static_cast<int64_t>(ids.size()), d_out.get(),
                                       d_flag.get(), nullptr));
    EXPECT_EQ(d_flag.download()[0], 1);
    EXPECT_EQ(to_float(d_out.download()), want) << "hidden " << hidden;
    LT_KERNEL_OK(embedding_gather_f32(d_table.get(), vocab, hidden, d_ids.get(),
                                      static_cast<int64_t>(ids.size()), d_out32.get(), nullptr,
                                      nullptr));
    EXPECT_EQ(d_out32.download(), want) << "hidden " << hidden;
  }
}

TEST(KernelsGpu, FusedAddRmsNormMatchesReference) {
  LT_REQUIRE_GPU();
  std::mt19937_64 rng(2);
  struct Case { int64_t rows, dim, pad; bool with_x; };
  for (const Case c : {Case{1, 64, 0, true}, Case{7, 100, 3, true}, Case{33, 896, 8, true},
                       Case{5, 4096, 0, false}, Case{16, 1536, 0, true}}) {
    const int64_t stride = c.dim + c.pad;
    auto res0 = random_bf16(c.rows * stride, rng, 2.0f);  // fp32 residual with random content
    auto x = random_bf16(c.rows * stride, rng);
    auto w = random_bf16(c.dim, rng, 0.5f);
    std::vector<float> res_dense(c.rows * c.dim), x_dense(c.rows * c.dim);
    for (int64_t r = 0; r < c.rows; ++r) {
      for (int64_t i = 0; i < c.dim; ++i) {
        res_dense[r * c.dim + i] = res0.f[r * stride + i];
        x_dense[r * c.dim + i] = x.f[r * stride + i];
      }
    }
    std::vector<float> out_ref(c.rows * c.dim);
    ref::fused_add_rmsnorm(res_dense, c.with_x ? std::span<const float>(x_dense)
                                               : std::span<const float>(),
                           w.f, out_ref, c.rows, c.dim, 1e-6f);
    DeviceBuffer<float> d_res(res0.f);
    DeviceBuffer<bf16> d_x(x.b), d_w(w.b), d_out(c.rows * stride);
    LT_KERNEL_OK(fused_add_rmsnorm(d_res.get(), stride, c.with_x ? d_x.get() : nullptr, stride,
                                   d_w.get(), d_out.get(), stride, c.rows, c.dim, 1e-6f, nullptr));
    const auto res = d_res.download();
    const auto out = to_float(d_out.download());
    std::vector<float> res_got(c.rows * c.dim), out_got(c.rows * c.dim);
    for (int64_t r = 0; r < c.rows; ++r) {
      for (int64_t i = 0; i < c.dim; ++i) {
        res_got[r * c.dim + i] = res[r * stride + i];
        out_got[r * c.dim + i] = out[r * stride + i];
      }
      for (int64_t i = c.dim; i < stride; ++i) {
        EXPECT_EQ(res[r * stride + i], res0.f[r * stride + i]) << "padding of residual changed";
      }
    }
    EXPECT_LT(rel_error(res_got, res_dense), 1e-6) << "rows " << c.rows << " dim " << c.dim;
    EXPECT_LT(rel_error(out_got, out_ref), kBf16Tol) << "rows " << c.rows << " dim " << c.dim;
  }
}

TEST(KernelsGpu, PerHeadRmsNormInPlaceInsideFusedBuffer) {
  LT_REQUIRE_GPU();
  std::mt19937_64 rng(3);
  for (int32_t dim : {64, 128, 72}) {
    const int64_t tokens = 9;
    const int32_t heads = 3, kv = 2;
    const int64_t stride = static_cast<int64_t>(heads + 2 * kv) * dim;  // [q | k | v]
    auto qkv = random_bf16(tokens * stride, rng, 3.0f);
    auto w = random_bf16(dim, rng);
    std::vector<float> want = qkv.f;
    for (int64_t t = 0; t < tokens; ++t) {
      for (int32_t h = 0; h < heads; ++h) {
        std::vector<float> row(want.begin() + t * stride + h * dim,
                               want.begin() + t * stride + (h + 1) * dim);
        std::vector<float> out(dim);
        ref::fused_add_rmsnorm(row, {}, w.f, out, 1, dim, 1e-6f);
        std::copy(out.begin(), out.end(), want.begin() + t * stride + h * dim);
      }
    }
    DeviceBuffer<bf16> d_qkv(qkv.b), d_w(w.b);
    LT_KERNEL_OK(rmsnorm_bf16(d_qkv.get(), stride, d_qkv.get(), stride, tokens, heads, dim,
                              d_w.get(), 1e-6f, nullptr));
    const auto got = to_float(d_qkv.download());
    EXPECT_LT(rel_error(got, want), kBf16Tol) << "dim " << dim;
    for (int64_t t = 0; t < tokens; ++t) {
      for (int64_t i = heads * dim; i < stride; ++i) {
        ASSERT_EQ(got[t * stride + i], qkv.f[t * stride + i]) << "k/v region modified";
      }
    }
  }
}

TEST(KernelsGpu, RopeDefaultAndLlama3MatchReference) {
  LT_REQUIRE_GPU();
  std::mt19937_64 rng(4);
  ref::RopeConfig def;
  def.theta = 1000000.0;
  ref::RopeConfig l3;
  l3.theta = 500000.0;
  l3.llama3 = true;
  l3.factor = 32.0;
  l3.original_max_position = 8192;
  for (const auto& cfg : {def, l3}) {
    for (int32_t head_dim : {64, 128}) {
      const int64_t tokens = 37;
      const int32_t heads = 7, kv = 1;
      const int64_t stride = static_cast<int64_t>(heads + 2 * kv) * head_dim;
      auto qkv = random_bf16(tokens * stride, rng);
      std::vector<int32_t> pos(tokens);
      std::uniform_int_distribution<int32_t> pd(0, 131071);
      for (auto& p : pos) p = pd(rng);
      pos[0] = 0;
      const auto inv = ref::rope_inv_freq(cfg, head_dim);
      std::vector<float> q(tokens * heads * head_dim), k(tokens * kv * head_dim);
      for (int64_t t = 0; t < tokens; ++t) {
        std::copy_n(qkv.f.begin() + t * stride, heads * head_dim, q.begin() + t * heads * head_dim);
        std::copy_n(qkv.f.begin() + t * stride + heads * head_dim, kv * head_dim,
                    k.begin() + t * kv * head_dim);
      }
      ref::rope_inplace(q, heads, k, kv, head_dim, pos, inv);
      DeviceBuffer<bf16> d_qkv(qkv.b);
      DeviceBuffer<int32_t> d_pos(pos);
      DeviceBuffer<float> d_inv(inv);
      LT_KERNEL_OK(rope_inplace_bf16(d_qkv.get(), stride, heads, d_qkv.get() + heads * head_dim,
                                     stride, kv, head_dim, d_pos.get(), tokens, d_inv.get(),
                                     nullptr));
      const auto got = to_float(d_qkv.download());
      std::vector<float> gq(q.size()), gk(k.size());
      for (int64_t t = 0; t < tokens; ++t) {
        std::copy_n(got.begin() + t * stride, heads * head_dim, gq.begin() + t * heads * head_dim);
        std::copy_n(got.begin() + t * stride + heads * head_dim, kv * head_dim,
                    gk.begin() + t * kv * head_dim);
        for (int64_t i = (heads + kv) * head_dim; i < stride; ++i) {
          ASSERT_EQ(got[t * stride + i], qkv.f[t * stride + i]) << "v region modified";
        }
      }
      EXPECT_LT(rel_error(gq, q), kBf16Tol) << "llama3 " << cfg.llama3 << " d " << head_dim;
      EXPECT_LT(rel_error(gk, k), kBf16Tol) << "llama3 " << cfg.llama3 << " d " << head_dim;
    }
  }
}

TEST(KernelsGpu, KvCacheWritePlacesTokensAtTheirSlots) {
  LT_REQUIRE_GPU();
  std::mt19937_64 rng(5);
  for (int32_t head_dim : {64, 128, 35}) {
    const int32_t kv = 2;
    const int64_t row = static_cast<int64_t>(kv) * head_dim, num_slots = 16 * 12, tokens = 40;
    const int64_t stride = 3 * row;  // k and v inside a fused buffer
    auto src = random_bf16(tokens * stride, rng);
    auto cache0 = random_bf16(num_slots * row * 2, rng);
    std::vector<int32_t> slots(num_slots);
    std::iota(slots.begin(), slots.end(), 0);
    std::shuffle(slots.begin(), slots.end(), rng);
    slots.resize(tokens);
    slots[3] = -1;              // padding token
    slots[7] = num_slots + 5;   // out of range: skipped
    DeviceBuffer<bf16> d_src(src.b);
    DeviceBuffer<bf16> d_cache(cache0.b);
    DeviceBuffer<int32_t> d_slots(slots);
    bf16* kc = d_cache.get();
    bf16* vc = d_cache.get() + num_slots * row;
    LT_KERNEL_OK(kv_cache_write_bf16(d_src.get() + row, stride, d_src.get() + 2 * row, stride,
                                     tokens, kv, head_dim, d_slots.get(), kc, vc, num_slots,
                                     nullptr));
    std::vector<float> want = cache0.f;
    for (int64_t t = 0; t < tokens; ++t) {
      if (slots[t] < 0 || slots[t] >= num_slots) continue;
      for (int64_t i = 0; i < row; ++i) {
        want[slots[t] * row + i] = src.f[t * stride + row + i];
        want[num_slots * row + slots[t] * row + i] = src.f[t * stride + 2 * row + i];
      }
    }
    EXPECT_EQ(to_float(d_cache.download()), want) << "head_dim " << head_dim;
  }
}

TEST(KernelsGpu, KvCacheMoveRowsAppliesEachSequencesMovesInOrder) {
  LT_REQUIRE_GPU();
  std::mt19937_64 rng(41);
  const int32_t planes = 5, row_bytes = 96, rows = 64;
  const int64_t plane_bytes = static_cast<int64_t>(rows) * row_bytes;
  std::vector<uint8_t> host(static_cast<size_t>(planes * plane_bytes));
  for (auto& b : host) b = static_cast<uint8_t>(rng());
  // Three sequences' compactions (rows start + keep[j] -> start + j), each overlapping itself:
  // keep {1, 2, ...} moves row start + 2 into start + 1 only after row start + 1 moved to start.
  std::vector<int32_t> src, dst, group{0};
  auto compaction = [&](int32_t start, std::vector<int32_t> keep) {
    for (size_t j = 0; j < keep.size(); ++j) {
      src.push_back(start + keep[j]);
      dst.push_back(start + static_cast<int32_t>(j));
    }
    group.push_back(static_cast<int32_t>(src.size()));
  };
  compaction(3, {1, 2, 5, 9});
  compaction(20, {0, 3, 4});  // the first row stays
  compaction(40, {7});
  DeviceBuffer<uint8_t> d(host);
  DeviceBuffer<int32_t> d_src(src), d_dst(dst), d_group(group);
  LT_KERNEL_OK(kv_cache_move_rows(d.get(), plane_bytes, planes, row_bytes, d_src.get(), d_dst.get(),
                                  d_group.get(), static_cast<int32_t>(group.size()) - 1, nullptr));
  ref::kv_cache_move_rows(host, plane_bytes, planes, row_bytes, src, dst, group);
  EXPECT_EQ(d.download(), host);
  EXPECT_EQ(kv_cache_move_rows(d.get(), plane_bytes, planes, 40, d_src.get(), d_dst.get(),
                               d_group.get(), 3, nullptr),
            Status::kInvalidArgument);  // rows not a multiple of 16 bytes
}

TEST(KernelsGpu, SwigluMatchesReference) {
  LT_REQUIRE_GPU();
  std::mt19937_64 rng(6);
  for (int64_t rows : {1, 3, 64}) {
    for (int64_t inter : {8, 100, 4864}) {
      auto gu = random_bf16(rows * 2 * inter, rng, 2.0f);
      std::vector<float> want(rows * inter);
      ref::swiglu(gu.f, want, rows, inter);
      DeviceBuffer<bf16> d_gu(gu.b), d_out(rows * inter);
      LT_KERNEL_OK(swiglu_bf16(d_gu.get(), 2 * inter, d_out.get(), inter, rows, inter, nullptr));
      EXPECT_LT(rel_error(to_float(d_out.download()), want), kBf16Tol)
          << rows << "x" << inter;
    }
  }
}

TEST(KernelsGpu, CastsAndBiasAdd) {
  LT_REQUIRE_GPU();
  std::mt19937_64 rng(7);
  const int64_t n = 12345;
  std::normal_distribution<float> dist(0.0f, 10.0f);
  std::vector<float> x(n);
  for (auto& v : x) v = dist(rng);
  DeviceBuffer<float> d_x(x), d_back(n);
  DeviceBuffer<bf16> d_b(n);
  LT_KERNEL_OK(cast_f32_to_bf16(d_x.get(), d_b.get(), n, nullptr));
  const auto b = d_b.download();
  for (int64_t i = 0; i < n; ++i) ASSERT_EQ(b[i].bits, ref::to_bf16(x[i]).bits) << i;
  LT_KERNEL_OK(cast_bf16_to_f32(d_b.get(), d_back.get(), n, nullptr));
  const auto back = d_back.download();
  for (int64_t i = 0; i < n; ++i) ASSERT_EQ(back[i], ref::from_bf16(b[i])) << i;

  const int64_t rows = 13, cols = 77, stride = 80;
  auto m = random_bf16(rows * stride, rng);
  auto bias = random_bf16(cols, rng);
  DeviceBuffer<bf16> d_m(m.b), d_bias(bias.b);
  LT_KERNEL_OK(add_bias_bf16(d_m.get(), stride, rows, cols, d_bias.get(), nullptr));
  const auto got = to_float(d_m.download());
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < stride; ++c) {
      const float want = c < cols ? ref::round_bf16(m.f[r * stride + c] + bias.f[c])
                                  : m.f[r * stride + c];
      ASSERT_EQ(got[r * stride + c], want) << r << "," << c;
    }
  }
}

TEST(KernelsGpu, RmsNormRowsF32GathersRowsAndMatchesReference) {
  LT_REQUIRE_GPU();
  std::mt19937_64 rng(8);
  for (int32_t dim : {64, 100, 896, 1536, 3584, 8192}) {  // vector path, scalar path, wide rows
    const int64_t src_rows = 9;
    auto x = random_bf16(src_rows * dim, rng, 3.0f);
    std::normal_distribution<float> wd(1.0f, 0.3f);
    std::vector<float> w(dim);
    for (auto& v : w) v = wd(rng);
    DeviceBuffer<float> d_x(x.f), d_w(w);
    for (const std::vector<int32_t>& rows : {std::vector<int32_t>{}, std::vector<int32_t>{8, 0, 3, 3}}) {
      const int64_t n = rows.empty() ? src_rows : static_cast<int64_t>(rows.size());
      std::vector<float> want(n * dim);
      ref::rmsnorm_rows(x.f, rows, n, dim, w, 1e-6f, want);
      DeviceBuffer<int32_t> d_rows(rows);
      DeviceBuffer<bf16> d_out(n * dim);
      LT_KERNEL_OK(rmsnorm_rows_f32(d_x.get(), rows.empty() ? nullptr : d_rows.get(), n, dim,
                                    d_w.get(), 1e-6f, d_out.get(), nullptr));
      EXPECT_LT(rel_error(to_float(d_out.download()), want), kBf16Tol)
          << "dim " << dim << " gather " << !rows.empty();
    }
  }
}

TEST(KernelsGpu, QkvPostMatchesReferenceWithAndWithoutBiasAndNorms) {
  LT_REQUIRE_GPU();
  std::mt19937_64 rng(9);
  struct Case { int32_t heads, kv, dim; bool bias, norms; };
  for (const Case c : {Case{12, 2, 128, true, false}, Case{8, 8, 64, false, true},
                       Case{7, 1, 34, true, true}, Case{4, 2, 256, false, false}}) {
    SCOPED_TRACE(::testing::Message() << c.heads << "/" << c.kv << " d" << c.dim << " bias "
                                      << c.bias << " norms " << c.norms);
    const int64_t tokens = 21, num_slots = 64;
    const int64_t width = static_cast<int64_t>(c.heads + 2 * c.kv) * c.dim;
    auto qkv = random_bf16(tokens * width, rng, 2.0f);
    std::vector<float> bias, qn, kn;
    std::normal_distribution<float> nd(0.0f, 0.5f), wd(1.0f, 0.2f);
    if (c.bias) for (int64_t i = 0; i < width; ++i) bias.push_back(nd(rng));
    if (c.norms) {
      for (int32_t i = 0; i < c.dim; ++i) qn.push_back(wd(rng));
      for (int32_t i = 0; i < c.dim; ++i) kn.push_back(wd(rng));
    }
    std::vector<int32_t> pos(tokens), slots(tokens);
    std::uniform_int_distribution<int32_t> pd(0, 40000);
    for (auto& p : pos) p = pd(rng);
    std::iota(slots.begin(), slots.end(), 0);
    std::shuffle(slots.begin(), slots.end(), rng);
    slots[4] = -1;  // padding: nothing written
    ref::RopeConfig rc;
    rc.theta = 1000000.0;
    const auto inv = ref::rope_inv_freq(rc, c.dim);
    const int64_t cache_elems = num_slots * c.kv * c.dim;
    auto k0 = random_bf16(cache_elems, rng), v0 = random_bf16(cache_elems, rng);
    std::vector<float> want_q(tokens * c.heads * c.dim), want_k = k0.f, want_v = v0.f;
    ref::QkvShape shape{c.heads, c.kv, c.dim, 1e-6f};
    ref::qkv_post(shape, qkv.f, bias, qn, kn, pos, inv, slots, want_q, want_k, want_v);

    DeviceBuffer<float> d_qkv(qkv.f), d_bias(bias), d_qn(qn), d_kn(kn), d_inv(inv);
    DeviceBuffer<int32_t> d_pos(pos), d_slots(slots);
    DeviceBuffer<bf16> d_q(tokens * c.heads * c.dim), d_k(k0.b), d_v(v0.b);
    QkvPostParams p;
    p.qkv = d_qkv.get();
    p.bias = c.bias ? d_bias.get() : nullptr;
    p.q_norm = c.norms ? d_qn.get() : nullptr;
    p.k_norm = c.norms ? d_kn.get() : nullptr;
    p.norm_eps = 1e-6f;
    p.positions = d_pos.get();
    p.inv_freq = d_inv.get();
    p.slots = d_slots.get();
    p.q_out = d_q.get();
    p.k_cache = d_k.get();
    p.v_cache = d_v.get();
    p.num_tokens = tokens;
    p.num_heads = c.heads;
    p.num_kv_heads = c.kv;
    p.head_dim = c.dim;
    LT_KERNEL_OK(qkv_post(p, nullptr));
    EXPECT_LT(rel_error(to_float(d_q.download()), want_q), kBf16Tol);
    const auto got_k = to_float(d_k.download()), got_v = to_float(d_v.download());
    EXPECT_LT(rel_error(got_k, want_k), kBf16Tol);
    EXPECT_LT(rel_error(got_v, want_v), kBf16Tol);
    // Slots no token writes (the padding token's among them) keep their old values.
    for (int64_t s = 0; s < num_slots; ++s) {
      if (std::find(slots.begin(), slots.end(), s) != slots.end()) continue;
      for (int64_t i = 0; i < c.kv * c.dim; ++i) {
        ASSERT_EQ(got_k[s * c.kv * c.dim + i], k0.f[s * c.kv * c.dim + i]) << "slot " << s;
        ASSERT_EQ(got_v[s * c.kv * c.dim + i], v0.f[s * c.kv * c.dim + i]) << "slot " << s;
      }
    }
  }
}

TEST(KernelsGpu, SyntheticFillsAreThePhiloxValuesBitForBit) {
  LT_REQUIRE_GPU();
  const int64_t n = 100003;
  DeviceBuffer<bf16> d_b(n);
  DeviceBuffer<float> d_f(n), d_c(n);
  LT_KERNEL_OK(fill_uniform_bf16(d_b.get(), n, 0.03f, 77, nullptr));
  LT_KERNEL_OK(fill_uniform_f32(d_f.get(), n, 0.5f, 78, nullptr));
  LT_KERNEL_OK(fill_f32(d_c.get(), n, 1.25f, nullptr));
  const auto b = d_b.download();
  const auto f = d_f.download();
  const auto c = d_c.download();
  for (int64_t i = 0; i < n; ++i) {
    ASSERT_EQ(b[i].bits, ref::to_bf16(0.03f * synthetic_uniform(77, i)).bits) << i;
    ASSERT_EQ(f[i], 0.5f * synthetic_uniform(78, i)) << i;
    ASSERT_EQ(c[i], 1.25f) << i;
  }
  EXPECT_NE(f[0], f[1]);
}

TEST(KernelsGpu, InvalidArgumentsAreRefusedWithAReason) {
  LT_REQUIRE_GPU();
  EXPECT_EQ(swiglu_bf16(nullptr, 16, nullptr, 8, 4, 8, nullptr), Status::kInvalidArgument);
  EXPECT_NE(std::string(last_error()).find("swiglu_bf16"), std::string::npos);
  EXPECT_EQ(rope_inplace_bf16(nullptr, 0, 1, nullptr, 0, 0, 7, nullptr, 1, nullptr, nullptr),
            Status::kInvalidArgument);
  EXPECT_NE(std::string(last_error()).find("head_dim"), std::string::npos);
  PagedAttentionParams p;
  p.num_seqs = 1;
  p.num_tokens = 1;
  p.max_query_len = 1;
  p.head_dim = 80;
  EXPECT_EQ(paged_attention(p, nullptr), Status::kInvalidArgument);
  EXPECT_NE(std::string(last_error()).find("head_dim"), std::string::npos);
  // Zero-sized work is a no-op.
  EXPECT_EQ(swiglu_bf16(nullptr, 16, nullptr, 8, 0, 8, nullptr), Status::kOk);
}

}  // namespace
}  // namespace longtail::kernels
#else
TEST(KernelsGpu, Elementwise) { GTEST_SKIP() << "built without CUDA (LONGTAIL_HAVE_CUDA off)"; }
#endif
