// kernels_bench: times paged attention (decode and k-token verify, Qwen2.5 head shapes) and the
// sampler on the GPU with CUDA events, medians of many runs, inputs rotated across several cache
// regions so L2 does not hold them; prints a markdown table whose bandwidth column is relative to
// a device-to-device copy measured in the same run. Usage: kernels_bench [--quick]
// kernels_bench --deterministic instead times the batch-invariant attention (fixed 1024-position
// splits, as the deterministic backend runs it) against the fast mode's (chosen and wave-balanced
// splits, as the fast backend runs it) at the 1.5B and 7B head shapes, batch 16/64/256, context
// 512/4096, k = 1/2/4/8/16: the attention part of the deterministic mode's step cost.
// kernels_bench --sampler times only the sampler, at 16 .. 4096 rows (4096 = verify at batch 256,
// k = 16).
// kernels_bench --products times the few-row products (kernels/matvec.h: matvec for <= 8 rows,
// skinny_gemm for <= 64) against cuBLAS's cublasGemmEx as the fast backend calls it, one
// product alone, at the 1.5B and 7B projection shapes and 1..64 rows, weights rotated over
// copies so L2 does not hold them; GB/s counts the weight bytes.
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <numeric>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include <cublas_v2.h>

#include "kernels/kernels.h"
#include "kernels/matvec.h"
#include "kernels/reference.h"

namespace lk = longtail::kernels;

namespace {

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(e));
}
void check(lk::Status s, const char* what) {
  if (s != lk::Status::kOk) throw std::runtime_error(std::string(what) + ": " + lk::last_error());
}

template <typename T>
T* dalloc(size_t n) {
  void* p = nullptr;
  check(cudaMalloc(&p, std::max<size_t>(n, 1) * sizeof(T)), "cudaMalloc");
  return static_cast<T*>(p);
}

// Median time in ms of fn(i) over iters calls, after warmup.
template <typename F>
double median_ms(F&& fn, int iters, int warmup = 3) {
  for (int i = 0; i < warmup; ++i) fn(i);
  check(cudaDeviceSynchronize(), "warmup");
  cudaEvent_t a, b;
  cudaEventCreate(&a);
  cudaEventCreate(&b);
  std::vector<double> t;
  for (int i = 0; i < iters; ++i) {
    cudaEventRecord(a);
    fn(i);
    cudaEventRecord(b);
    check(cudaEventSynchronize(b), "run");
    float ms = 0;
    cudaEventElapsedTime(&ms, a, b);
    t.push_back(ms);
  }
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

void fill_random_bf16(lk::bf16* d, size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> nd;
  std::vector<lk::bf16> h(std::min<size_t>(n, size_t{1} << 24));
  for (auto& v : h) v = lk::ref::to_bf16(nd(rng));
  for (size_t off = 0; off < n; off += h.size()) {
    const size_t c = std::min(h.size(), n - off);
    check(cudaMemcpy(d + off, h.data(), c * sizeof(lk::bf16), cudaMemcpyHostToDevice), "upload");
  }
}

struct Shape {
  const char* name;
  int32_t heads, kv, dim;
};

// One attention launch's timing harness: a batch at context ctx verifying k tokens each, block
// tables rotated over a pool of random K/V blocks so L2 does not hold them.
struct AttentionCase {
  const Shape& sh;
  lk::bf16 *kc, *vc;
  int64_t pool_blocks;
  int32_t batch, ctx, k;
};

// Median us of paged_attention for `c` with num_kv_splits = splits, kv_split_size = split_size,
// kv_stages = stages, on the tensor cores or the CUDA-core kernel; -1 when the pool is too small.
double time_attention(const AttentionCase& c, int32_t splits, int32_t split_size, int32_t stages,
                      int iters, bool tensor_cores = true) {
  const int32_t B = 16, len = c.ctx + c.k, nb = (len + B - 1) / B;
  const int64_t need = static_cast<int64_t>(c.batch) * nb;
  if (need > c.pool_blocks) return -1;
  const int rot = static_cast<int>(std::min<int64_t>(8, c.pool_blocks / need));
  std::vector<int32_t> table(static_cast<size_t>(rot) * c.batch * nb), perm(c.pool_blocks);
  std::iota(perm.begin(), perm.end(), 0);
  std::shuffle(perm.begin(), perm.end(), std::mt19937_64(c.batch * 31 + c.ctx));
  std::copy_n(perm.begin(), table.size(), table.begin());
  std::vector<int32_t> qs(c.batch + 1), lens(c.batch, len);
  for (int32_t s = 0; s <= c.batch; ++s) qs[s] = s * c.k;
  const int64_t T = static_cast<int64_t>(c.batch) * c.k;
  int32_t* d_table = dalloc<int32_t>(table.size());
  int32_t* d_qs = dalloc<int32_t>(qs.size());
  int32_t* d_lens = dalloc<int32_t>(lens.size());
  check(cudaMemcpy(d_table, table.data(), table.size() * 4, cudaMemcpyHostToDevice), "table");
  check(cudaMemcpy(d_qs, qs.data(), qs.size() * 4, cudaMemcpyHostToDevice), "qs");
  check(cudaMemcpy(d_lens, lens.data(), lens.size() * 4, cudaMemcpyHostToDevice), "lens");
  lk::bf16* q = dalloc<lk::bf16>(T * c.sh.heads * c.sh.dim);
  lk::bf16* out = dalloc<lk::bf16>(T * c.sh.heads * c.sh.dim);
  fill_random_bf16(q, T * c.sh.heads * c.sh.dim, 3);
  const size_t ws_bytes = lk::paged_attention_workspace_bytes(T, c.sh.heads, c.sh.dim, splits);
  float* ws = dalloc<float>(ws_bytes / 4 + 1);
  lk::PagedAttentionParams p;
  p.q = q;
  p.q_stride = static_cast<int64_t>(c.sh.heads) * c.sh.dim;
  p.k_cache = c.kc;
  p.v_cache = c.vc;
  p.block_table_stride = nb;
  p.block_size = B;
  p.query_start = d_qs;
  p.seq_lens = d_lens;
  p.num_seqs = c.batch;
  p.num_tokens = T;
  p.max_query_len = c.k;
  p.num_heads = c.sh.heads;
  p.num_kv_heads = c.sh.kv;
  p.head_dim = c.sh.dim;
  p.scale = 1.0f / std::sqrt(static_cast<float>(c.sh.dim));
  p.num_kv_splits = splits;
  p.kv_split_size = split_size;
  p.kv_stages = stages;
  p.use_tensor_cores = tensor_cores;
  p.workspace = ws;
  p.workspace_bytes = ws_bytes;
  p.out = out;
  p.out_stride = p.q_stride;
  const double ms = median_ms(
      [&](int i) {
        p.block_table = d_table + static_cast<size_t>(i % rot) * c.batch * nb;
        check(lk::paged_attention(p, nullptr), "paged_attention");
      },
      iters);
  for (void* d : {static_cast<void*>(d_table), static_cast<void*>(d_qs), static_cast<void*>(d_lens),
                  static_cast<void*>(q), static_cast<void*>(out), static_cast<void*>(ws)})
    cudaFree(d);
  return ms * 1e3;
}

// --deterministic: fast-mode attention (splits as the fast backend picks them: chosen, then
// balanced over the waves) against the deterministic mode's fixed 1024-position splits.
void bench_deterministic_attention(const cudaDeviceProp& prop, double copy_gbs) {
  constexpr int32_t kSplit = 1024;  // policy's ForwardRunner::kDeterministicSplit
  const int32_t B = 16;
  std::printf("Attention, fast vs deterministic (fixed %d-position splits); GB/s counts the K/V "
              "bytes of all cached positions.\n\n", kSplit);
  std::printf("| shape | batch | ctx | k | fast splits | fast us | det splits | det us | det / fast | "
              "det of copy | det us, 2 K/V stages | det us, split 512 | det us, split 2048 |\n"
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
  const Shape shapes[] = {{"qwen2.5-1.5b", 12, 2, 128}, {"qwen2.5-7b", 28, 4, 128}};
  for (const Shape& sh : shapes) {
    const size_t slot_elems = static_cast<size_t>(sh.kv) * sh.dim;
    const int64_t pool_blocks = static_cast<int64_t>((size_t{8} << 30) / (2 * B * slot_elems * 2));
    lk::bf16* kc = dalloc<lk::bf16>(pool_blocks * B * slot_elems);
    lk::bf16* vc = dalloc<lk::bf16>(pool_blocks * B * slot_elems);
    fill_random_bf16(kc, pool_blocks * B * slot_elems, 1);
    fill_random_bf16(vc, pool_blocks * B * slot_elems, 2);
    for (int32_t ctx : {512, 4096}) {
      for (int32_t batch : {16, 64, 256}) {
        for (int32_t k : {1, 2, 4, 8, 16}) {
          const AttentionCase c{sh, kc, vc, pool_blocks, batch, ctx, k};
          const int32_t len = ctx + k;
          const int32_t max_splits = std::max(1, lk::paged_attention_choose_splits(
                                                     1, sh.heads, sh.kv, 1, 4 * 32768, prop.multiProcessorCount));
          int32_t fast_splits = lk::paged_attention_choose_splits(batch, sh.heads, sh.kv, k, len,
                                                                  prop.multiProcessorCount);
          fast_splits = lk::paged_attention_balance_splits(fast_splits, max_splits, batch, sh.heads,
                                                           sh.kv, sh.dim, k, len);
          // As a captured graph's pass sizes them: the block table's width rounded up to a power
          // of two (at least 16 blocks), splits for all of it (the surplus ones are empty).
          int32_t width = 16;
          while (width * B < len) width *= 2;
          auto splits_of = [&](int32_t size) { return (width * B + size - 1) / size; };
          const int32_t det_splits = splits_of(kSplit);
          const double fast_us = time_attention(c, fast_splits, 0, 0, 20);
          const double det_us = time_attention(c, det_splits, kSplit, 0, 20);
          const double det2_us = time_attention(c, det_splits, kSplit, 2, 20);
          // Other fixed split sizes (other bits, the same invariance): what the choice costs.
          const double det512_us = time_attention(c, splits_of(512), 512, 0, 20);
          const double det2048_us = time_attention(c, splits_of(2048), 2048, 0, 20);
          if (fast_us < 0 || det_us < 0) continue;
          const double gbs = 2.0 * batch * len * slot_elems * 2 / (det_us * 1e-6) / 1e9;
          std::printf("| %s | %d | %d | %d | %d | %.1f | %d | %.1f | %.2fx | %.0f%% | %.1f | %.1f | "
                      "%.1f |\n",
                      sh.name, batch, ctx, k, fast_splits, fast_us, det_splits, det_us,
                      det_us / fast_us, 100.0 * gbs / copy_gbs, det2_us, det512_us, det2048_us);
        }
      }
    }
    cudaFree(kc);
    cudaFree(vc);
  }
}

// Sampler over the Qwen vocabulary, one table: greedy, plain temperature (the whole-vocabulary
// Gumbel draw), top-k, top-p. Logits: "flat" N(0, 3) and "flat s1" N(0, 1) (random weights: the
// draw prunes few entries), "peaked" N(0, 3) plus 16 entries per row 25 higher (closer to a trained
// LM: most entries pruned exactly). Rows past 256 repeat the first 256 rows' logits (different
// uids, so different draws), which keeps the host's random generation short.
void bench_sampler(double copy_gbs, const std::vector<int32_t>& row_counts, bool quick) {
  const int32_t vocab = 151936;
  std::printf("\nSampler (vocab %d): GB/s counts the logits read once.\n\n", vocab);
  std::printf("| mode | logits | rows | time us | us / row | GB/s | of copy |\n");
  std::printf("|---|---|---|---|---|---|---|\n");
  struct Logits { const char* name; float sigma; bool peaked; };
  for (const int32_t rows : row_counts) {
    for (const Logits kind : {Logits{"flat", 3.0f, false}, Logits{"flat s1", 1.0f, false},
                              Logits{"peaked", 3.0f, true}}) {
      const int32_t unique = std::min(rows, 256);
      float* logits = dalloc<float>(static_cast<size_t>(rows) * vocab);
      {
        std::mt19937_64 rng(9);
        std::normal_distribution<float> nd(0.0f, kind.sigma);
        std::uniform_int_distribution<int32_t> pick(0, vocab - 1);
        std::vector<float> h(static_cast<size_t>(unique) * vocab);
        for (auto& v : h) v = nd(rng);
        if (kind.peaked) {
          for (int32_t r = 0; r < unique; ++r) {
            for (int j = 0; j < 16; ++j) h[static_cast<size_t>(r) * vocab + pick(rng)] += 25.0f;
          }
        }
        check(cudaMemcpy(logits, h.data(), h.size() * 4, cudaMemcpyHostToDevice), "logits");
        for (int32_t r = unique; r < rows; r += unique) {
          const int32_t n = std::min(unique, rows - r);
          check(cudaMemcpy(logits + static_cast<size_t>(r) * vocab, logits,
                           static_cast<size_t>(n) * vocab * 4, cudaMemcpyDeviceToDevice),
                "tile logits");
        }
      }
      lk::SamplingRow* d_rows = dalloc<lk::SamplingRow>(rows);
      int32_t* tok = dalloc<int32_t>(rows);
      float* lp = dalloc<float>(rows);
      const size_t ws_bytes = lk::sample_rows_workspace_bytes(rows, vocab);
      char* ws = dalloc<char>(ws_bytes);
      check(cudaMemset(ws, 0, ws_bytes), "workspace");
      struct Mode { const char* name; float t; int32_t k; float p; };
      for (const Mode m : {Mode{"greedy", 0.0f, 0, 1.0f}, Mode{"T=1", 1.0f, 0, 1.0f},
                           Mode{"T=0.7", 0.7f, 0, 1.0f}, Mode{"T=1 top-k 50", 1.0f, 50, 1.0f},
                           Mode{"T=1 top-p 0.9", 1.0f, 0, 0.9f},
                           Mode{"T=0.7 k 50 p 0.9", 0.7f, 50, 0.9f}}) {
        std::vector<lk::SamplingRow> h(rows);
        for (int32_t r = 0; r < rows; ++r) {
          h[r].temperature = m.t;
          h[r].top_k = m.k;
          h[r].top_p = m.p;
          h[r].seed = 1;
          h[r].uid = r;
          h[r].position = 100;
        }
        check(cudaMemcpy(d_rows, h.data(), rows * sizeof(lk::SamplingRow), cudaMemcpyHostToDevice),
              "rows");
        const double ms = median_ms(
            [&](int) {
              check(lk::sample_rows(logits, vocab, rows, vocab, d_rows, nullptr, nullptr, tok, lp,
                                    nullptr, ws, ws_bytes, nullptr),
                    "sample_rows");
            },
            quick ? 5 : 20);
        const double gbs = 4.0 * rows * vocab / (ms * 1e-3) / 1e9;
        std::printf("| %s | %s | %d | %.1f | %.2f | %.0f | %.0f%% |\n", m.name, kind.name, rows,
                    ms * 1e3, ms * 1e3 / rows, gbs, 100.0 * gbs / copy_gbs);
      }
      cudaFree(logits);
      cudaFree(d_rows);
      cudaFree(tok);
      cudaFree(lp);
      cudaFree(ws);
    }
  }
}

// One projection of a model: Y[rows, n] = X W^T, W [n, k]; swiglu: W is [gate | up] of n each.
struct Product {
  const char* model;
  const char* name;
  int32_t n, k;
  bool swiglu;
};

void bench_products(double copy_gbs) {
  const Product products[] = {
      {"1.5b", "qkv", 2048, 1536, false},     {"1.5b", "o_proj", 1536, 1536, false},
      {"1.5b", "gate_up", 8960, 1536, true},  {"1.5b", "down", 1536, 8960, false},
      {"1.5b", "lm_head", 151936, 1536, false}, {"7b", "qkv", 4608, 3584, false},
      {"7b", "o_proj", 3584, 3584, false},    {"7b", "gate_up", 18944, 3584, true},
      {"7b", "down", 3584, 18944, false}};
  cublasHandle_t h = nullptr;
  if (cublasCreate(&h) != CUBLAS_STATUS_SUCCESS) throw std::runtime_error("cublasCreate");
  std::printf("Few-row products, one launch alone (us; GB/s of weight bytes, %% of the copy).\n"
              "cuBLAS: cublasGemmEx as the fast backend calls it (gate_up: bf16 [gate | up] then\n"
              "swiglu_bf16, two launches); skinny: skinny_gemm (gate_up fused); matvec: <= 8 rows.\n\n");
  std::printf("| model | product | n x k | rows | cuBLAS us | skinny us | skinny GB/s | of copy | "
              "skinny / cuBLAS | matvec us |\n|---|---|---|---|---|---|---|---|---|---|\n");
  for (const Product& p : products) {
    const int32_t wrows = p.swiglu ? 2 * p.n : p.n;
    const size_t w_elems = static_cast<size_t>(wrows) * p.k;
    const int copies = static_cast<int>(std::max<size_t>(1, (size_t{256} << 20) / (w_elems * 2)));
    lk::bf16* w = dalloc<lk::bf16>(w_elems * copies);
    fill_random_bf16(w, w_elems * copies, 7);
    const int32_t max_rows = lk::kSkinnyMaxRows;
    lk::bf16* x = dalloc<lk::bf16>(static_cast<size_t>(max_rows) * p.k);
    fill_random_bf16(x, static_cast<size_t>(max_rows) * p.k, 8);
    float* y = dalloc<float>(static_cast<size_t>(max_rows) * wrows);
    lk::bf16* yb = dalloc<lk::bf16>(static_cast<size_t>(max_rows) * wrows);
    lk::bf16* act = dalloc<lk::bf16>(static_cast<size_t>(max_rows) * p.n);
    const double w_bytes = 2.0 * static_cast<double>(w_elems);
    for (int32_t rows : {1, 2, 4, 8, 16, 32, 48, 64}) {
      auto wi = [&](int i) { return w + static_cast<size_t>(i % copies) * w_elems; };
      const float one = 1.0f, zero = 0.0f;
      const double cublas_us = 1e3 * median_ms([&](int i) {
        if (p.swiglu) {
          cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, wrows, rows, p.k, &one, wi(i), CUDA_R_16BF, p.k,
                       x, CUDA_R_16BF, p.k, &zero, yb, CUDA_R_16BF, wrows, CUBLAS_COMPUTE_32F,
                       CUBLAS_GEMM_DEFAULT);
          check(lk::swiglu_bf16(yb, 2 * p.n, act, p.n, rows, p.n, nullptr), "swiglu");
        } else {
          cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, p.n, rows, p.k, &one, wi(i), CUDA_R_16BF, p.k,
                       x, CUDA_R_16BF, p.k, &one, y, CUDA_R_32F, p.n, CUBLAS_COMPUTE_32F,
                       CUBLAS_GEMM_DEFAULT);
        }
      }, 30);
      const double skinny_us = 1e3 * median_ms([&](int i) {
        if (p.swiglu) check(lk::skinny_gemm_swiglu_bf16(x, wi(i), act, rows, p.n, p.k, nullptr), "skinny");
        else check(lk::skinny_gemm_bf16(x, wi(i), y, nullptr, true, rows, p.n, p.k, nullptr), "skinny");
      }, 30);
      double matvec_us = -1;
      if (rows <= lk::kMatvecMaxRows)
        matvec_us = 1e3 * median_ms([&](int i) {
          if (p.swiglu) check(lk::matvec_swiglu_bf16(x, wi(i), act, rows, p.n, p.k, nullptr), "matvec");
          else check(lk::matvec_bf16(x, wi(i), y, nullptr, true, rows, p.n, p.k, nullptr), "matvec");
        }, 30);
      const double gbs = w_bytes / (skinny_us * 1e-6) / 1e9;
      char mv[32] = "-";
      if (matvec_us > 0) std::snprintf(mv, sizeof mv, "%.1f", matvec_us);
      std::printf("| %s | %s | %d x %d | %d | %.1f | %.1f | %.0f | %.0f%% | %.2fx | %s |\n", p.model,
                  p.name, wrows, p.k, rows, cublas_us, skinny_us, gbs, 100.0 * gbs / copy_gbs,
                  skinny_us / cublas_us, mv);
    }
    cudaFree(w);
    cudaFree(x);
    cudaFree(y);
    cudaFree(yb);
    cudaFree(act);
  }
  cublasDestroy(h);
}

}  // namespace

int main(int argc, char** argv) {
  const bool quick = argc > 1 && std::strcmp(argv[1], "--quick") == 0;
  const bool deterministic = argc > 1 && std::strcmp(argv[1], "--deterministic") == 0;
  const bool sampler_only = argc > 1 && std::strcmp(argv[1], "--sampler") == 0;
  const bool products_only = argc > 1 && std::strcmp(argv[1], "--products") == 0;
  try {
    cudaDeviceProp prop{};
    check(cudaGetDeviceProperties(&prop, 0), "cudaGetDeviceProperties");
    std::printf("device: %s, %d SMs, L2 %d MiB\n\n", prop.name, prop.multiProcessorCount,
                prop.l2CacheSize >> 20);

    // Copy ceiling: bytes read + written by a 1 GiB device-to-device copy.
    const size_t copy_bytes = size_t{1} << 30;
    char* src = dalloc<char>(copy_bytes);
    char* dst = dalloc<char>(copy_bytes);
    check(cudaMemset(src, 1, copy_bytes), "memset");
    const double copy_ms = median_ms(
        [&](int) { check(cudaMemcpyAsync(dst, src, copy_bytes, cudaMemcpyDeviceToDevice), "copy"); },
        quick ? 5 : 20);
    const double copy_gbs = 2.0 * copy_bytes / (copy_ms * 1e-3) / 1e9;
    check(cudaFree(src), "free");
    check(cudaFree(dst), "free");
    std::printf("device-to-device copy: %.1f GB/s (read + write)\n\n", copy_gbs);
    if (deterministic) {
      bench_deterministic_attention(prop, copy_gbs);
      return 0;
    }
    if (products_only) {
      bench_products(copy_gbs);
      return 0;
    }
    if (sampler_only) {
      bench_sampler(copy_gbs, {16, 64, 256, 1024, 4096}, false);
      return 0;
    }

    // Pool of KV blocks large enough that rotating block tables defeats the L2 cache.
    const int32_t B = 16;
    const size_t pool_bytes = size_t{4} << 30;
    std::printf("Attention: tensor-core kernel (default) vs the CUDA-core kernel (baseline), same\n"
                "inputs; GB/s counts K/V bytes of all cached positions + q + out.\n\n");
    std::printf("| kernel | shape | batch | ctx | k | splits | time us | GB/s | of copy | "
                "CUDA-core us | speedup | 2x splits us |\n");
    std::printf("|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    const Shape shapes[] = {{"qwen2.5-0.5b", 14, 2, 64}, {"qwen2.5-1.5b", 12, 2, 128},
                            {"qwen2.5-7b", 28, 4, 128}};
    for (const Shape& sh : shapes) {
      const size_t slot_elems = static_cast<size_t>(sh.kv) * sh.dim;
      const int64_t pool_blocks = static_cast<int64_t>(pool_bytes / (2 * B * slot_elems * 2));
      lk::bf16* kc = dalloc<lk::bf16>(pool_blocks * B * slot_elems);
      lk::bf16* vc = dalloc<lk::bf16>(pool_blocks * B * slot_elems);
      fill_random_bf16(kc, pool_blocks * B * slot_elems, 1);
      fill_random_bf16(vc, pool_blocks * B * slot_elems, 2);
      for (int32_t batch : {1, 16, 64, 256}) {
        for (int32_t ctx : {512, 4096}) {
          for (int32_t k : {1, 8}) {
            if (k == 8 && batch != 64 && batch != 16) continue;
            if (quick && (batch == 1 || ctx == 512)) continue;
            const int32_t len = ctx + k;  // ctx cached + k new
            const AttentionCase c{sh, kc, vc, pool_blocks, batch, ctx, k};
            const int32_t splits = lk::paged_attention_choose_splits(
                batch, sh.heads, sh.kv, k, len, prop.multiProcessorCount);
            const int iters = quick ? 10 : 30;
            // Tensor cores with the chosen splits; the CUDA-core kernel; tensor cores, 2x splits.
            const double us[3] = {
                time_attention(c, splits, 0, 0, iters),
                time_attention(c, splits, 0, 0, iters, /*tensor_cores=*/false),
                time_attention(c, std::min(2 * splits, std::max(1, len / 64)), 0, 0, iters)};
            if (us[0] < 0) continue;
            const int64_t T = static_cast<int64_t>(batch) * k;
            const double bytes = 2.0 * batch * len * slot_elems * 2 + 2.0 * T * sh.heads * sh.dim * 2;
            const double gbs = bytes / (us[0] * 1e-6) / 1e9;
            std::printf(
                "| paged_attention | %s | %d | %d | %d | %d | %.1f | %.0f | %.0f%% | %.1f | %.2fx | "
                "%.1f |\n",
                sh.name, batch, ctx, k, splits, us[0], gbs, 100.0 * gbs / copy_gbs, us[1],
                us[1] / us[0], us[2]);
          }
        }
      }
      cudaFree(kc);
      cudaFree(vc);
    }

    bench_sampler(copy_gbs, {64, 256}, quick);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "kernels_bench: %s\n", e.what());
    return 1;
  }
  return 0;
}
