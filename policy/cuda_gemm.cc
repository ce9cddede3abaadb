// cuBLAS products for the CUDA backend (see cuda_gemm.h). Row-major Y = X W^T is column-major
// Y^T = W^T' X^T', i.e. one product with op(A) = T on the weight.
#include "policy/cuda_gemm.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/kernels.h"
#include "kernels/matvec.h"

namespace longtail::policy::cuda {
namespace {

// The row count at which cuBLASLt's heuristic proposes the reference algorithm of a shape: the one
// whose bits every other algorithm of that shape must reproduce.
constexpr int kReferenceRows = 64;

// Row-count ranges that get an algorithm of their own: the fastest (timed at `timed` rows) of the
// heuristic's candidates for that size that give exactly the reference algorithm's bits at the
// `probe` row counts (same accumulation order over K, other tiling). Since every candidate kept
// gives the same bits, the timing decides speed only, never results. Below 512 rows a range is
// timed at its top: a tile chosen for 16 rows covers 32 in two passes over the weights (1.5B,
// batch 16, verify k = 2 ran 1.4x the fast mode with ranges 1-32 timed at 16 and 33-128 at 64).
struct RowRange {
  int lo, hi, timed;
  int probe[3];
};
constexpr RowRange kRowRanges[] = {
    {1, 16, 16, {1, 7, 16}},          {17, 32, 32, {17, 24, 32}},
    {33, 64, 64, {33, 48, 64}},       {65, 128, 128, {65, 100, 128}},
    {129, 256, 256, {129, 200, 256}}, {257, 511, 511, {257, 384, 511}},
    {512, 1 << 30, 1024, {512, 777, 1031}},
};
constexpr int kCandidatesPerRange = 8;

// Fast mode: row-count ranges that get the fastest of cuBLASLt's candidates for that size, split-K
// ones included (finer than deterministic mode's below 16 rows, where decode runs its graph
// buckets). Each is timed at both ends and gets the candidate whose worse end is closest to that
// end's best; where no candidate is within kFastEndsTolerance of the best at both ends the range
// is halved, up to kFastMaxHalvings times: one tile shape rarely serves both 129 and 256 rows (an
// algorithm timed at 256 alone ran 144 rows 4-17% slower than the best there,
// bench/results/gpu_2026-12-03c.md). Products of more rows than the last range's top use its
// choice.
struct FastRange {
  int lo, hi, timed;
};
constexpr FastRange kFastRowRanges[] = {
    {1, 4, 4},         {5, 8, 8},         {9, 16, 16},       {17, 32, 32},
    {33, 64, 64},      {65, 128, 128},    {129, 256, 256},   {257, 512, 512},
    {513, 1024, 1024}, {1025, 1 << 30, 2048},
};
constexpr double kFastEndsTolerance = 1.05;
constexpr int kFastMaxHalvings = 2;

// Whether `algos` holds `algo` (cuBLASLt algorithms are plain data).
bool holds(const std::vector<cublasLtMatmulAlgo_t>& algos, const cublasLtMatmulAlgo_t& algo) {
  return std::any_of(algos.begin(), algos.end(), [&](const cublasLtMatmulAlgo_t& a) {
    return std::memcmp(&a, &algo, sizeof(algo)) == 0;
  });
}

struct Event {
  cudaEvent_t h = nullptr;
  Event() { LT_CUDA_CHECK(cudaEventCreate(&h)); }
  ~Event() { cudaEventDestroy(h); }
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;
};

struct Layout {
  cublasLtMatrixLayout_t h = nullptr;
  Layout(cudaDataType_t type, uint64_t rows, uint64_t cols, int64_t ld) {
    LT_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&h, type, rows, cols, ld));
  }
  ~Layout() {
    if (h) cublasLtMatrixLayoutDestroy(h);
  }
  Layout(const Layout&) = delete;
  Layout& operator=(const Layout&) = delete;
};

// Row counts the reference candidate runs with on random data before it is pinned: each row of
// every product must equal the same row computed alone. cuBLASLt promises no split-K for the
// algorithms kept, but a kernel could still divide work by problem size (stream-K style), so the
// property is checked, not assumed. The probe is deterministic, so every process pins the same
// reference algorithm.
constexpr int kReferenceProbe[] = {1, 7, 64, 263};

template <typename T>
T algo_config(const cublasLtMatmulAlgo_t& algo, cublasLtMatmulAlgoConfigAttributes_t attr) {
  T v{};
  size_t written = 0;
  LT_CUBLAS_CHECK(cublasLtMatmulAlgoConfigGetAttribute(&algo, attr, &v, sizeof(v), &written));
  return v;
}

std::atomic<size_t> g_choices_made{0};

// The few-row kernels load X and W 16 bytes at a time.
bool aligned_for_few_rows(const void* x, const void* w) {
  return ((reinterpret_cast<uintptr_t>(x) | reinterpret_cast<uintptr_t>(w)) & 15u) == 0;
}

}  // namespace

const GemmChoices::Choice* GemmChoices::find(const Key& key) const {
  const auto it = choices_.find(key);
  return it == choices_.end() ? nullptr : &it->second;
}

void GemmChoices::add(const Key& key, Choice choice) {
  if (choices_.emplace(key, std::move(choice)).second) ++g_choices_made;
}

size_t GemmChoices::made_in_process() { return g_choices_made.load(); }

Gemm::Gemm(cudaStream_t stream, bool batch_invariant, int max_rows,
           std::shared_ptr<GemmChoices> choices, size_t workspace_bytes)
    : stream_(stream),
      batch_invariant_(batch_invariant),
      max_rows_(std::max(1, max_rows)),
      workspace_(workspace_bytes),
      choices_(choices ? std::move(choices) : std::make_shared<GemmChoices>()) {
  LT_CUBLAS_CHECK(cublasCreate(&handle_));
  LT_CUBLAS_CHECK(cublasSetStream(handle_, stream));
  LT_CUBLAS_CHECK(cublasSetWorkspace(handle_, workspace_.get(), workspace_.bytes()));
  LT_CUBLAS_CHECK(cublasSetMathMode(handle_, CUBLAS_DEFAULT_MATH));
  if (const char* v = std::getenv("LONGTAIL_MATVEC_ROWS"))
    matvec_rows_ = std::clamp(std::atoi(v), 0, static_cast<int>(kernels::kMatvecMaxRows));
  if (const char* v = std::getenv("LONGTAIL_MATVEC_SWIGLU")) matvec_swiglu_ = std::string(v) != "0";
  if (const char* v = std::getenv("LONGTAIL_SKINNY_ROWS"))
    skinny_rows_ = std::clamp(std::atoi(v), 0, static_cast<int>(kernels::kSkinnyMaxRows));
  if (const char* v = std::getenv("LONGTAIL_GEMM_TUNE")) tune_fast_ = std::string(v) != "0";
  if (const char* v = std::getenv("LONGTAIL_NORM_FUSION")) fuse_norm_ = std::string(v) != "0";
  LT_CUBLAS_CHECK(cublasLtCreate(&lt_));
}

Gemm::~Gemm() {
  for (auto& [key, p] : pinned_) {
    if (p.w_layout) cublasLtMatrixLayoutDestroy(p.w_layout);
    if (p.desc) cublasLtMatmulDescDestroy(p.desc);
  }
  if (lt_) cublasLtDestroy(lt_);
  if (handle_) cublasDestroy(handle_);
}

std::vector<cublasLtMatmulAlgo_t> Gemm::candidates(const Pinned& p, int n, int k,
                                                   cudaDataType_t ytype, int reference_rows,
                                                   bool split_k) {
  cublasLtMatmulPreference_t pref = nullptr;
  LT_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
  const uint64_t ws = workspace_.bytes();
  LT_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
      pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws)));
  constexpr int kWanted = 16;
  cublasLtMatmulHeuristicResult_t results[kWanted] = {};
  int found = 0;
  {
    Layout x(CUDA_R_16BF, k, reference_rows, k), y(ytype, n, reference_rows, n);
    LT_CUBLAS_CHECK(cublasLtMatmulAlgoGetHeuristic(lt_, p.desc, p.w_layout, x.h, y.h, y.h, pref,
                                                   kWanted, results, &found));
  }
  cublasLtMatmulPreferenceDestroy(pref);
  std::vector<cublasLtMatmulAlgo_t> out;
  if (split_k) {
    for (int i = 0; i < found; ++i)
      if (results[i].state == CUBLAS_STATUS_SUCCESS) out.push_back(results[i].algo);
    return out;
  }
  // The heuristic's (deterministic) order, those without split-K first, then those with split-K
  // forced off.
  for (int pass = 0; pass < 2; ++pass) {
    for (int i = 0; i < found; ++i) {
      if (results[i].state != CUBLAS_STATUS_SUCCESS) continue;
      cublasLtMatmulAlgo_t algo = results[i].algo;
      const bool split = algo_config<int32_t>(algo, CUBLASLT_ALGO_CONFIG_SPLITK_NUM) > 1;
      if (split != (pass == 1)) continue;
      if (split) {
        const int32_t one = 1;
        const uint32_t none = CUBLASLT_REDUCTION_SCHEME_NONE;
        if (cublasLtMatmulAlgoConfigSetAttribute(&algo, CUBLASLT_ALGO_CONFIG_SPLITK_NUM, &one,
                                                 sizeof(one)) != CUBLAS_STATUS_SUCCESS ||
            cublasLtMatmulAlgoConfigSetAttribute(&algo, CUBLASLT_ALGO_CONFIG_REDUCTION_SCHEME,
                                                 &none, sizeof(none)) != CUBLAS_STATUS_SUCCESS)
          continue;
      }
      out.push_back(algo);
    }
  }
  return out;
}

bool Gemm::accepts(const Pinned& p, const cublasLtMatmulAlgo_t& algo, int n, int k,
                   cudaDataType_t ytype, std::initializer_list<int> rows) {
  for (int m : rows) {
    Layout x(CUDA_R_16BF, k, m, k), y(ytype, n, m, n);
    cublasLtMatmulHeuristicResult_t check{};
    if (cublasLtMatmulAlgoCheck(lt_, p.desc, p.w_layout, x.h, y.h, y.h, &algo, &check) !=
            CUBLAS_STATUS_SUCCESS ||
        check.workspaceSize > workspace_.bytes())
      return false;
  }
  return true;
}

const Gemm::Pinned& Gemm::pinned(int n, int k, cudaDataType_t ytype, Fusion fusion) {
  fusion = effective(fusion);
  const auto key = std::make_tuple(n, k, static_cast<int>(ytype), static_cast<int>(fusion));
  if (auto it = pinned_.find(key); it != pinned_.end()) return it->second;
  Pinned p;
  LT_CUBLAS_CHECK(cublasLtMatmulDescCreate(&p.desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  const cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
  LT_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof(ta)));
  LT_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof(tb)));
  LT_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.w_layout, CUDA_R_16BF, k, n, k));
  const GemmChoices::Key choice_key{n, k, static_cast<int>(ytype), max_rows_, workspace_.bytes(),
                                    batch_invariant_, static_cast<int>(fusion)};
  if (const GemmChoices::Choice* known = choices_->find(choice_key)) {
    p.choice = *known;
  } else {
    try {
      p.choice = batch_invariant_ ? choose(p, n, k, ytype) : choose_fast(p, n, k, ytype, fusion);
    } catch (...) {
      cublasLtMatrixLayoutDestroy(p.w_layout);
      cublasLtMatmulDescDestroy(p.desc);
      throw;
    }
    choices_->add(choice_key, p.choice);
  }
  return pinned_.emplace(key, p).first->second;
}

GemmChoices::Choice Gemm::choose(const Pinned& p, int n, int k, cudaDataType_t ytype) {
  const auto t0 = std::chrono::steady_clock::now();
  const std::string shape = std::to_string(n) + " x " + std::to_string(k) +
                            (ytype == CUDA_R_32F ? " (f32 out)" : " (bf16 out)");
  GemmChoices::Choice c;
  // Reference algorithm: valid for every row count up to max_rows, invariant over kReferenceProbe.
  bool chosen = false;
  for (const auto& algo : candidates(p, n, k, ytype, kReferenceRows, false)) {
    if (!accepts(p, algo, n, k, ytype, {1, 7, kReferenceRows, max_rows_}) ||
        !same_rows_on_device(p, algo, algo, n, k, ytype, kReferenceProbe))
      continue;
    c.reference = algo;
    chosen = true;
    break;
  }
  if (!chosen)
    throw std::runtime_error("deterministic mode: cuBLASLt offers no batch-invariant algorithm for "
                             "a " + shape + " product valid for 1.." + std::to_string(max_rows_) +
                             " rows");
  // Per row-count range: the fastest candidate with the reference's bits (the reference itself
  // when none is faster).
  std::string report;
  for (const RowRange& r : kRowRanges) {
    if (r.lo > max_rows_) break;
    const int hi = std::min(r.hi, max_rows_), timed = std::min(r.timed, hi);
    std::vector<cublasLtMatmulAlgo_t> keep = {c.reference};
    int tried = 0;
    for (const auto& algo : candidates(p, n, k, ytype, timed, false)) {
      if (tried++ == kCandidatesPerRange) break;
      if (holds(keep, algo) || !accepts(p, algo, n, k, ytype, {r.lo, hi})) continue;
      std::vector<int> probe;
      for (int m : r.probe) probe.push_back(std::min(m, hi));
      if (same_rows_on_device(p, algo, c.reference, n, k, ytype, probe)) keep.push_back(algo);
    }
    const std::vector<double> us = time_on_device(p, keep, n, k, ytype, timed);
    const size_t best = static_cast<size_t>(std::min_element(us.begin(), us.end()) - us.begin());
    c.ranges.push_back({r.lo, keep[best], false});
    report += " | " + std::to_string(r.lo) + "-" + std::to_string(hi) + " rows: algo " +
              std::to_string(algo_config<int32_t>(keep[best], CUBLASLT_ALGO_CONFIG_ID)) + " tile " +
              std::to_string(algo_config<uint32_t>(keep[best], CUBLASLT_ALGO_CONFIG_TILE_ID)) +
              " (" + std::to_string(keep.size() - 1) + " alternatives with the same bits; " +
              std::to_string(static_cast<int>(us[best])) + " us vs " +
              std::to_string(static_cast<int>(us[0])) + " us at " + std::to_string(timed) + ")";
  }
  const double ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  spdlog::info("deterministic gemm {}: reference cuBLASLt algo {} tile {}{}; chosen in {:.0f} ms",
               shape, algo_config<int32_t>(c.reference, CUBLASLT_ALGO_CONFIG_ID),
               algo_config<uint32_t>(c.reference, CUBLASLT_ALGO_CONFIG_TILE_ID), report, ms);
  return c;
}

GemmChoices::Choice Gemm::choose_fast(const Pinned& p, int n, int k, cudaDataType_t ytype,
                                      Fusion fusion) {
  const auto t0 = std::chrono::steady_clock::now();
  GemmChoices::Choice c;
  std::string report;
  // Rows lo..hi, timed at lo and top (hi, or the row count that stands for an open-ended range).
  auto tune = [&](auto&& self, int lo, int hi, int top, int halvings) -> void {
    std::vector<cublasLtMatmulAlgo_t> keep;  // the heuristic's proposals for both ends, each once
    for (const int m : {top, lo}) {
      for (const auto& algo : candidates(p, n, k, ytype, m, true)) {
        if (!holds(keep, algo) && accepts(p, algo, n, k, ytype, {lo, hi})) keep.push_back(algo);
      }
    }
    if (keep.empty())
      throw std::runtime_error("fast gemm " + std::to_string(n) + " x " + std::to_string(k) +
                               ": cuBLASLt proposes no algorithm for " + std::to_string(lo) +
                               ".." + std::to_string(hi) + " rows");
    // skinny_gemm takes up to kSkinnyMaxRows rows of K a multiple of 8 (alignment is checked per
    // call); it starts its weight stream before the previous kernel ends, which only a graph of
    // back-to-back products shows.
    const bool skinny = hi <= kernels::kSkinnyMaxRows && k % 8 == 0;
    const std::vector<double> at_top = time_on_device(p, keep, n, k, ytype, top, skinny, fusion);
    const std::vector<double> at_lo =
        lo < top ? time_on_device(p, keep, n, k, ytype, lo, skinny, fusion) : at_top;
    const double best_top = *std::min_element(at_top.begin(), at_top.end());
    const double best_lo = *std::min_element(at_lo.begin(), at_lo.end());
    size_t best = 0;
    double score = 1e30;  // the chosen candidate's worse end, relative to that end's best
    for (size_t i = 0; i < at_top.size(); ++i) {
      const double s = std::max(at_top[i] / best_top, at_lo[i] / best_lo);
      if (s < score) score = s, best = i;
    }
    if (score > kFastEndsTolerance && halvings < kFastMaxHalvings && top - lo >= 16) {
      const int mid = lo + (top - lo) / 2;
      self(self, lo, mid, mid, halvings + 1);
      self(self, mid + 1, hi, top, halvings + 1);
      return;
    }
    const bool skinny_best = best == keep.size();
    c.ranges.push_back({lo, keep[skinny_best ? 0 : best], skinny_best});
    report += fmt::format(" | {}-{}: {:.1f} us at {}, {:.1f} at {} ({:.2f}x the best){}", lo,
                          std::min(hi, top), at_lo[best], lo, at_top[best], top, score,
                          skinny_best ? " skinny" : "");
  };
  for (const FastRange& r : kFastRowRanges) {
    if (r.lo > max_rows_) break;
    const int hi = std::min(r.hi, max_rows_);
    tune(tune, r.lo, hi, std::min(r.timed, hi), 0);
  }
  c.reference = c.ranges.front().algo;
  const double ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  static constexpr const char* kFusionNames[] = {"", ", after its rmsnorm",
                                                  ", after its rmsnorm and with its swiglu"};
  spdlog::info("fast gemm {} x {} ({} out{}), timed at both ends of each row range{}; chosen in "
               "{:.0f} ms", n, k, ytype == CUDA_R_32F ? "f32" : "bf16",
               kFusionNames[static_cast<int>(fusion)], report, ms);
  return c;
}

std::vector<double> Gemm::time_on_device(const Pinned& p,
                                         std::span<const cublasLtMatmulAlgo_t> algos, int n, int k,
                                         cudaDataType_t ytype, int m, bool with_skinny,
                                         Fusion fusion) {
  // Products cycle through enough weight copies that the weights come from memory, as in a
  // forward over many layers, not from L2.
  const size_t w_bytes = static_cast<size_t>(n) * k * 2;
  const int copies = static_cast<int>(std::clamp<size_t>((size_t{160} << 20) / w_bytes, 1, 32));
  // Enough repetitions that a product of a few microseconds is timed to ~1%; fewer for products
  // of a whole lm_head, whose start-up timing would otherwise take seconds.
  const int reps = w_bytes > (size_t{64} << 20) ? 4 : 16;
  const size_t ybytes = ytype == CUDA_R_32F ? 4 : 2;
  DeviceBuffer w(w_bytes * copies), x(static_cast<size_t>(m) * k * 2),
      y(static_cast<size_t>(m) * n * ybytes);
  LT_KERNEL_CHECK(kernels::fill_uniform_bf16(w.get<kernels::bf16>(),
                                             static_cast<int64_t>(w_bytes / 2) * copies, 0.05f, 93,
                                             stream_));
  LT_KERNEL_CHECK(kernels::fill_uniform_bf16(x.get<kernels::bf16>(), static_cast<int64_t>(m) * k,
                                             1.0f, 94, stream_));
  // A fused shape's timing includes its norm (from fp32 rows: the uniform bf16 X widened does)
  // and its SwiGLU, into buffers of their own.
  const bool norm_in = fusion != Fusion::kNone, swiglu = fusion == Fusion::kNormInSwiglu;
  if (swiglu && (ytype != CUDA_R_16BF || n % 2 != 0))
    throw std::logic_error("gemm timing: a SwiGLU fusion needs a bf16 [gate | up] product");
  DeviceBuffer rows_f32(norm_in ? static_cast<size_t>(m) * k * 4 : 0),
      norm_weight(norm_in ? static_cast<size_t>(k) * 4 : 0),
      act(swiglu ? static_cast<size_t>(m) * (n / 2) * 2 : 0);
  if (norm_in) {
    LT_KERNEL_CHECK(kernels::cast_bf16_to_f32(x.get<kernels::bf16>(), rows_f32.get<float>(),
                                              static_cast<int64_t>(m) * k, stream_));
    LT_KERNEL_CHECK(kernels::cast_bf16_to_f32(x.get<kernels::bf16>(), norm_weight.get<float>(), k,
                                              stream_));
  }
  const kernels::NormedRows normed{rows_f32.get<float>(), norm_weight.get<float>(), 1e-6f};
  auto norm_before = [&] {
    return !norm_in || kernels::rmsnorm_rows_f32(normed.x, nullptr, m, k, normed.weight,
                                                 normed.eps, x.get<kernels::bf16>(),
                                                 stream_) == kernels::Status::kOk;
  };
  auto swiglu_after = [&] {
    return !swiglu || kernels::swiglu_bf16(y.get<kernels::bf16>(), n, act.get<kernels::bf16>(),
                                           n / 2, m, n / 2, stream_) == kernels::Status::kOk;
  };
  Event ev[2];
  const float alpha = 1.0f, beta = 0.0f;
  Layout xl(CUDA_R_16BF, k, m, k), yl(ytype, n, m, n);
  // The repetitions replay as one graph, so that products of a few microseconds are timed on the
  // device back to back, as a forward's graph runs them, not at the host's launch rate.
  auto time_graph = [&](const auto& product) {
    cudaGraph_t graph = nullptr;
    LT_CUDA_CHECK(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal));
    bool ok = true;
    for (int i = 0; i < reps && ok; ++i) ok = product(w.get<char>() + (i % copies) * w_bytes);
    LT_CUDA_CHECK(cudaStreamEndCapture(stream_, &graph));
    if (!ok) {
      cudaGraphDestroy(graph);
      throw std::runtime_error("gemm timing: a candidate failed to launch");
    }
    cudaGraphExec_t exec = nullptr;
    LT_CUDA_CHECK(cudaGraphInstantiate(&exec, graph, 0));
    float best = 1e30f;
    for (int trial = 0; trial < 3; ++trial) {
      LT_CUDA_CHECK(cudaEventRecord(ev[0].h, stream_));
      LT_CUDA_CHECK(cudaGraphLaunch(exec, stream_));
      LT_CUDA_CHECK(cudaEventRecord(ev[1].h, stream_));
      LT_CUDA_CHECK(cudaEventSynchronize(ev[1].h));
      float ms = 0;
      LT_CUDA_CHECK(cudaEventElapsedTime(&ms, ev[0].h, ev[1].h));
      best = std::min(best, ms);  // the first trial also warms up
    }
    cudaGraphExecDestroy(exec);
    cudaGraphDestroy(graph);
    return 1e3 * best / reps;
  };
  std::vector<double> us;
  for (const auto& algo : algos) {
    us.push_back(time_graph([&](const void* wi) {
      return norm_before() &&
             cublasLtMatmul(lt_, p.desc, &alpha, wi, p.w_layout, x.get(), xl.h, &beta, y.get(),
                            yl.h, y.get(), yl.h, &algo, workspace_.get(), workspace_.bytes(),
                            stream_) == CUBLAS_STATUS_SUCCESS &&
             swiglu_after();
    }));
  }
  if (with_skinny) {
    const bool f32 = ytype == CUDA_R_32F;
    us.push_back(time_graph([&](const void* wi) {
      const auto* wb = static_cast<const kernels::bf16*>(wi);
      kernels::Status s;
      if (swiglu) {
        s = kernels::skinny_gemm_normed_swiglu_bf16(normed, wb, act.get<kernels::bf16>(), m, n / 2,
                                                    k, stream_);
      } else if (norm_in) {
        s = kernels::skinny_gemm_normed_bf16(normed, wb, f32 ? y.get<float>() : nullptr,
                                             f32 ? nullptr : y.get<kernels::bf16>(), false, m, n,
                                             k, stream_);
      } else {
        s = kernels::skinny_gemm_bf16(x.get<kernels::bf16>(), wb, f32 ? y.get<float>() : nullptr,
                                      f32 ? nullptr : y.get<kernels::bf16>(), false, m, n, k,
                                      stream_);
      }
      return s == kernels::Status::kOk;
    }));
  }
  return us;
}

bool Gemm::same_rows_on_device(const Pinned& p, const cublasLtMatmulAlgo_t& batched,
                               const cublasLtMatmulAlgo_t& alone, int n, int k,
                               cudaDataType_t ytype, std::span<const int> row_counts) {
  const int rows = *std::max_element(row_counts.begin(), row_counts.end());
  const size_t ybytes = ytype == CUDA_R_32F ? 4 : 2;
  const size_t row_bytes = static_cast<size_t>(n) * ybytes;
  DeviceBuffer w(static_cast<size_t>(n) * k * 2), x(static_cast<size_t>(rows) * k * 2),
      y(static_cast<size_t>(rows) * row_bytes), y_alone(row_bytes);
  LT_KERNEL_CHECK(kernels::fill_uniform_bf16(w.get<kernels::bf16>(), static_cast<int64_t>(n) * k,
                                             0.05f, 91, stream_));
  LT_KERNEL_CHECK(kernels::fill_uniform_bf16(x.get<kernels::bf16>(),
                                             static_cast<int64_t>(rows) * k, 1.0f, 92, stream_));
  const float alpha = 1.0f, beta = 0.0f;
  auto product = [&](const cublasLtMatmulAlgo_t& algo, const void* xs, void* ys, int m) {
    Layout xl(CUDA_R_16BF, k, m, k), yl(ytype, n, m, n);
    return cublasLtMatmul(lt_, p.desc, &alpha, w.get(), p.w_layout, xs, xl.h, &beta, ys, yl.h, ys,
                          yl.h, &algo, workspace_.get(), workspace_.bytes(),
                          stream_) == CUBLAS_STATUS_SUCCESS;
  };
  std::vector<char> one(row_bytes), many(row_bytes);
  for (int m : row_counts) {
    if (!product(batched, x.get(), y.get(), m)) return false;
    for (int r : {0, m / 2, m - 1}) {
      if (!product(alone, x.get<char>() + static_cast<size_t>(r) * k * 2, y_alone.get(), 1))
        return false;
      LT_CUDA_CHECK(cudaMemcpyAsync(one.data(), y_alone.get(), row_bytes, cudaMemcpyDeviceToHost,
                                    stream_));
      LT_CUDA_CHECK(cudaMemcpyAsync(many.data(), y.get<char>() + r * row_bytes, row_bytes,
                                    cudaMemcpyDeviceToHost, stream_));
      LT_CUDA_CHECK(cudaStreamSynchronize(stream_));
      if (std::memcmp(one.data(), many.data(), row_bytes) != 0) {
        spdlog::debug("gemm {}x{}: candidate rejected, row {} of {} differs", n, k, r, m);
        return false;
      }
    }
  }
  return true;
}

void Gemm::prepare(int n, int k, bool f32_out, Fusion fusion) {
  const cudaDataType_t ytype = f32_out ? CUDA_R_32F : CUDA_R_16BF;
  if (batch_invariant_) {
    pinned(n, k, ytype);
  } else if (tune_fast_) {
    try {  // fast mode only gets slower without the tuning: never a reason to fail
      pinned(n, k, ytype, fusion);
    } catch (const std::exception& e) {
      spdlog::warn("fast gemm {} x {}: no tuned algorithms ({}); cuBLAS chooses per call", n, k,
                   e.what());
    }
  }
}

const GemmChoices::Choice::Range* Gemm::range_for(const GemmChoices::Choice& c, int m) {
  const GemmChoices::Choice::Range* at = nullptr;
  for (const auto& r : c.ranges)
    if (m >= r.first) at = &r;
  return at;
}

void Gemm::run_few_rows(FewRows few, const void* x, const void* w, void* y, cudaDataType_t ytype,
                        int m, int n, int k, float beta) {
  const bool f32 = ytype == CUDA_R_32F;
  const auto* xb = static_cast<const kernels::bf16*>(x);
  const auto* wb = static_cast<const kernels::bf16*>(w);
  float* yf = f32 ? static_cast<float*>(y) : nullptr;
  kernels::bf16* yb = f32 ? nullptr : static_cast<kernels::bf16*>(y);
  if (few == FewRows::kMatvec) {
    LT_KERNEL_CHECK(kernels::matvec_bf16(xb, wb, yf, yb, beta != 0.0f, m, n, k, stream_));
  } else {
    LT_KERNEL_CHECK(kernels::skinny_gemm_bf16(xb, wb, yf, yb, beta != 0.0f, m, n, k, stream_));
  }
}

void Gemm::run(const void* x, const void* w, void* y, cudaDataType_t ytype, int m, int n, int k,
               float beta, Fusion fusion) {
  const float alpha = 1.0f;
  if (const FewRows few = few_rows_kernel(x, w, m, k); few != FewRows::kNone) {
    run_few_rows(few, x, w, y, ytype, m, n, k, beta);
    return;
  }
  const Pinned* p = nullptr;
  if (batch_invariant_) {
    if (m > max_rows_)
      throw std::logic_error("gemm: " + std::to_string(m) + " rows exceed the " +
                             std::to_string(max_rows_) + " the pinned algorithms were checked for");
    p = &pinned(n, k, ytype);
  } else {
    p = fast_pinned(n, k, ytype, fusion, m);
  }
  if (p == nullptr) {  // fast mode, a shape not prepared (or tuning off): cuBLAS's own choice
    LT_CUBLAS_CHECK(cublasGemmEx(handle_, CUBLAS_OP_T, CUBLAS_OP_N, n, m, k, &alpha, w,
                                 CUDA_R_16BF, k, x, CUDA_R_16BF, k, &beta, y, ytype, n,
                                 CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    return;
  }
  const GemmChoices::Choice::Range* range = range_for(p->choice, m);
  if (range != nullptr && range->skinny && aligned_for_few_rows(x, w)) {
    run_few_rows(FewRows::kSkinny, x, w, y, ytype, m, n, k, beta);
    return;
  }
  Layout xl(CUDA_R_16BF, k, m, k), yl(ytype, n, m, n);
  LT_CUBLAS_CHECK(cublasLtMatmul(lt_, p->desc, &alpha, w, p->w_layout, x, xl.h, &beta, y, yl.h, y,
                                 yl.h, range != nullptr ? &range->algo : &p->choice.reference,
                                 workspace_.get(), workspace_.bytes(), stream_));
}

void Gemm::bf16_out(const void* x, const void* w, void* y, int m, int n, int k) {
  run(x, w, y, CUDA_R_16BF, m, n, k, 0.0f);
}

void Gemm::f32_out(const void* x, const void* w, float* y, int m, int n, int k, bool accumulate) {
  run(x, w, y, CUDA_R_32F, m, n, k, accumulate ? 1.0f : 0.0f);
}

Gemm::FewRows Gemm::few_rows_kernel(const void* x, const void* w, int m, int k) const {
  if (batch_invariant_ || m < 1 || k % 8 != 0 || !aligned_for_few_rows(x, w)) return FewRows::kNone;
  if (m <= matvec_rows_) return FewRows::kMatvec;
  if (m <= skinny_rows_) return FewRows::kSkinny;
  return FewRows::kNone;
}

const Gemm::Pinned* Gemm::fast_pinned(int n, int k, cudaDataType_t ytype, Fusion fusion,
                                      int m) const {
  const auto it =
      pinned_.find({n, k, static_cast<int>(ytype), static_cast<int>(effective(fusion))});
  return it != pinned_.end() && m <= max_rows_ ? &it->second : nullptr;
}

bool Gemm::runs_skinny(const kernels::NormedRows& x, const void* w, int m, int n, int k,
                       cudaDataType_t ytype, Fusion fusion) const {
  if (effective(fusion) == Fusion::kNone || !aligned_for_few_rows(x.weight, x.weight)) return false;
  switch (few_rows_kernel(x.x, w, m, k)) {  // checks the row count, k and the alignment
    case FewRows::kSkinny:
      return true;
    case FewRows::kMatvec:
      return false;
    case FewRows::kNone:
      break;
  }
  const Pinned* p = fast_pinned(n, k, ytype, fusion, m);
  const GemmChoices::Choice::Range* range = p != nullptr ? range_for(p->choice, m) : nullptr;
  return range != nullptr && range->skinny && aligned_for_few_rows(x.x, w);
}

void Gemm::norm_rows(const kernels::NormedRows& x, void* normed, int m, int k) {
  LT_KERNEL_CHECK(kernels::rmsnorm_rows_f32(x.x, nullptr, m, k, x.weight, x.eps,
                                            static_cast<kernels::bf16*>(normed), stream_));
}

void Gemm::normed_f32_out(const kernels::NormedRows& x, void* normed, const void* w, float* y,
                          int m, int n, int k) {
  if (runs_skinny(x, w, m, n, k, CUDA_R_32F, Fusion::kNormIn)) {
    LT_KERNEL_CHECK(kernels::skinny_gemm_normed_bf16(x, static_cast<const kernels::bf16*>(w), y,
                                                     nullptr, false, m, n, k, stream_));
    return;
  }
  norm_rows(x, normed, m, k);
  run(normed, w, y, CUDA_R_32F, m, n, k, 0.0f, Fusion::kNormIn);
}

void Gemm::normed_swiglu(const kernels::NormedRows& x, void* normed, void* gate_up,
                         const void* w_gate_up, void* act, int m, int inter, int k) {
  auto* out = static_cast<kernels::bf16*>(act);
  if (runs_skinny(x, w_gate_up, m, 2 * inter, k, CUDA_R_16BF, Fusion::kNormInSwiglu)) {
    LT_KERNEL_CHECK(kernels::skinny_gemm_normed_swiglu_bf16(
        x, static_cast<const kernels::bf16*>(w_gate_up), out, m, inter, k, stream_));
    return;
  }
  norm_rows(x, normed, m, k);
  if (swiglu_out(normed, w_gate_up, act, m, inter, k)) return;
  run(normed, w_gate_up, gate_up, CUDA_R_16BF, m, 2 * inter, k, 0.0f, Fusion::kNormInSwiglu);
  LT_KERNEL_CHECK(kernels::swiglu_bf16(static_cast<const kernels::bf16*>(gate_up),
                                       2 * static_cast<int64_t>(inter), out, inter, m, inter,
                                       stream_));
}

bool Gemm::swiglu_out(const void* x, const void* w_gate_up, void* act, int m, int inter, int k) {
  if (!matvec_swiglu_) return false;
  const auto* xb = static_cast<const kernels::bf16*>(x);
  const auto* wb = static_cast<const kernels::bf16*>(w_gate_up);
  auto* out = static_cast<kernels::bf16*>(act);
  switch (few_rows_kernel(x, w_gate_up, m, k)) {
    case FewRows::kMatvec:
      LT_KERNEL_CHECK(kernels::matvec_swiglu_bf16(xb, wb, out, m, inter, k, stream_));
      return true;
    case FewRows::kSkinny:
      LT_KERNEL_CHECK(kernels::skinny_gemm_swiglu_bf16(xb, wb, out, m, inter, k, stream_));
      return true;
    case FewRows::kNone:
      return false;
  }
  return false;
}

}  // namespace longtail::policy::cuda
