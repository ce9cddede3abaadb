// The backend's matrix products: activations X [tokens, K] (row-major bf16) times a weight
// W [N, K] (row-major bf16, as HF stores nn.Linear) transposed, fp32 accumulation. The output is
// bf16, or fp32 with an optional accumulate (beta = 1) so the o_proj and down_proj products add
// straight into the fp32 residual stream without a separate add kernel.
//
// Two modes. Fast: each prepared shape runs, per row-count range (1-4, 5-8, 9-16, 17-32, ... 1025
// and up, each halved where no algorithm is near the best at both of its ends), the algorithm among
// those cuBLASLt's heuristic proposes for its two ends, split-K included, that is closest to the
// best at its worse end, timed once on the device at start-up (a graph of back-to-back products,
// weights from memory), kernels::skinny_gemm_bf16 among the candidates up to its 64 rows; shapes
// not prepared, or all with LONGTAIL_GEMM_TUNE=0, let cuBLAS pick per call. Either way the same row
// can be summed in another order when the number of tokens changes, and since the choice is timed,
// two processes may choose differently: fast mode's bits are reproducible across processes only
// with LONGTAIL_GEMM_TUNE=0 (batch-invariant mode's always are). Batch-invariant: one cuBLASLt
// algorithm per (N, K, output type), chosen once (deterministically, from cuBLASLt's heuristic at a
// fixed reference row count) with no split-K, checked on the device to give every row the same bits
// at several row counts, so each output element is reduced over K in one fixed order whatever the
// batch. Each range of row counts (1-16, 17-32, 33-64, 65-128, 129-256, 257-511, 512 and up) then
// runs the fastest of the candidates cuBLASLt proposes for that size that the same check shows to
// give exactly the reference's bits (same accumulation order, other tiling), timed once on the
// device at start-up; so the choice changes speed only, never a bit. That choice (GemmChoices) may
// outlive the Gemm: the CUDA backend keeps one across SLEEP/WAKE_UP.
// In fast mode, products of up to LONGTAIL_MATVEC_ROWS rows (default 0: none) go to
// kernels::matvec_bf16 instead, which streams the weight at a higher bandwidth than cuBLAS's tiles
// for one row but not yet for 2..8 (bench/results/gpu_2026-12-02b.md), and whose rounding differs
// from cuBLAS's, so a limit below the graph batch bucket of 8 makes a sequence's fast-mode logits
// depend on whether its batch is above the limit. Products of up to LONGTAIL_SKINNY_ROWS rows
// (0..64, default kDefaultSkinnyRows = 0: slower than cuBLAS on the 1.5B and 7B shapes, faster on
// 0.5B, bench/results/launch_2026-12-03.md) that matvec does not take go to kernels::skinny_gemm_bf16
// (tensor cores, the weight stream started before the previous kernel ends, no split-K), whose
// rows do not depend on how many rows a call has: a sequence's fast-mode logits are then the
// same in any batch of up to that many rows. The normed products (normed_f32_out, normed_swiglu:
// the RMSNorm before the qkv and gate/up products) run the norm kernel, then the product; with
// LONGTAIL_NORM_FUSION=1 (default off: on the device it paid little and made a row's rounding
// depend a little more on its batch, bench/results/gpu_2026-12-06.md), a shape prepared with its
// Fusion is timed with the kernels a fusion saves (the norm, the SwiGLU) and, where skinny_gemm
// wins, runs its normed variant: one kernel, another rounding of the normed input.
#pragma once

#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <cstddef>
#include <initializer_list>
#include <map>
#include <memory>
#include <span>
#include <tuple>
#include <vector>

#include "kernels/matvec.h"
#include "policy/cuda_buffer.h"

namespace longtail::policy::cuda {

// What was chosen for each product shape. Batch-invariant mode: the reference algorithm, whose
// bits every row count gets, and per row-count range the fastest algorithm shown to give exactly
// those bits. Fast mode: per row-count range the fastest candidate. Choosing probes and times
// candidates on the device (about a second for the 1.5B shapes), so the
// CUDA backend makes one set and hands it to every forward runner it creates: a wake after SLEEP
// re-creates the cuBLAS handles and workspace but chooses nothing again. cuBLASLt algorithm
// structs are plain data, valid with any handle of the same library and device. Not thread-safe:
// the Gemms sharing a set prepare their shapes one at a time.
class GemmChoices {
 public:
  struct Choice {
    cublasLtMatmulAlgo_t reference{};
    struct Range {
      int first;                   // the range's first row count
      cublasLtMatmulAlgo_t algo;   // what its products run
      bool skinny = false;         // fast mode: kernels::skinny_gemm_bf16 instead (x, w aligned)
    };
    // In increasing order of first: products of m rows use the last entry with first <= m
    // (empty: the reference everywhere).
    std::vector<Range> ranges;
  };
  // (n, k, output cudaDataType_t, max rows, workspace bytes, batch-invariant, Gemm::Fusion): what
  // a choice depends on besides the device.
  using Key = std::tuple<int, int, int, int, size_t, bool, int>;

  const Choice* find(const Key& key) const;
  void add(const Key& key, Choice choice);
  size_t size() const { return choices_.size(); }
  // Shapes chosen on the device so far by every set in this process (a test hook: a wake must
  // not add to it).
  static size_t made_in_process();

 private:
  std::map<Key, Choice> choices_;
};

class Gemm {
 public:
  static constexpr int kDefaultMatvecRows = 0;
  static constexpr int kDefaultSkinnyRows = 0;
  // The workspace is given to cuBLAS explicitly so that products captured into CUDA graphs never
  // allocate. max_rows bounds M: in batch-invariant mode every pinned algorithm is checked to
  // accept 1..max_rows rows; in fast mode products of more rows let cuBLAS choose. choices: where
  // this Gemm finds (and records) its algorithm choices; null = a set of this Gemm's own.
  Gemm(cudaStream_t stream, bool batch_invariant, int max_rows,
       std::shared_ptr<GemmChoices> choices = nullptr, size_t workspace_bytes = size_t{32} << 20);
  ~Gemm();
  Gemm(const Gemm&) = delete;
  Gemm& operator=(const Gemm&) = delete;

  // What a product runs with besides itself, so that fast mode's tuning times what will run:
  // cuBLAS candidates with kernels::rmsnorm_rows_f32 before them (and kernels::swiglu_bf16 after)
  // against the one skinny_gemm_normed_* kernel that folds those in.
  enum class Fusion { kNone = 0, kNormIn = 1, kNormInSwiglu = 2 };

  // Picks the algorithms of a shape now (host work and timing on the device; call it before any
  // graph capture). A no-op when already done, and in fast mode with tuning off. A shape is
  // prepared, and chosen for, separately for each fusion it is used with.
  void prepare(int n, int k, bool f32_out, Fusion fusion = Fusion::kNone);

  // Y[M, N] (bf16) = X[M, K] · W[N, K]^T
  void bf16_out(const void* x, const void* w, void* y, int m, int n, int k);
  // Y[M, N] (fp32) = X · W^T + (accumulate ? Y : 0)
  void f32_out(const void* x, const void* w, float* y, int m, int n, int k, bool accumulate);
  // Fast mode, few rows: act[M, inter] = SwiGLU of the bf16 product X · W_gate_up^T in one kernel
  // (kernels::matvec_swiglu_bf16 or skinny_gemm_swiglu_bf16), the same values as bf16_out then kernels::swiglu_bf16. Returns
  // false, doing nothing, where it does not apply; the caller then runs those two.
  bool swiglu_out(const void* x, const void* w_gate_up, void* act, int m, int inter, int k);

  // Y[M, N] (fp32) = rmsnorm(x) · W^T, rmsnorm(x) = kernels::rmsnorm_rows_f32 of the fp32 rows
  // x.x with x.weight and x.eps. Fast mode, where a product of m rows of the shape prepared with
  // Fusion::kNormIn runs skinny_gemm: one skinny_gemm_normed_bf16 (normed is not touched);
  // otherwise the norm into `normed` ([M, K] bf16 scratch), then f32_out.
  void normed_f32_out(const kernels::NormedRows& x, void* normed, const void* w, float* y, int m,
                      int n, int k);
  // act[M, inter] = SwiGLU(rmsnorm(x) · W_gate_up^T), as normed_f32_out: one
  // skinny_gemm_normed_swiglu_bf16 where the shape prepared with Fusion::kNormInSwiglu runs
  // skinny_gemm at m rows; otherwise the norm into `normed`, then swiglu_out or bf16_out into
  // `gate_up` ([M, 2 inter] bf16 scratch) and kernels::swiglu_bf16.
  void normed_swiglu(const kernels::NormedRows& x, void* normed, void* gate_up,
                     const void* w_gate_up, void* act, int m, int inter, int k);

  bool batch_invariant() const { return batch_invariant_; }

 private:
  // A prepared shape: its cuBLASLt descriptors and what was chosen for it (in either mode).
  struct Pinned {
    cublasLtMatmulDesc_t desc = nullptr;
    cublasLtMatrixLayout_t w_layout = nullptr;
    GemmChoices::Choice choice;
  };
  void run(const void* x, const void* w, void* y, cudaDataType_t ytype, int m, int n, int k,
           float beta, Fusion fusion = Fusion::kNone);
  // Fast mode: whether a product of m rows of x's norm with this shape and fusion runs skinny_gemm
  // (the env limit or the tuned choice), so that its fused normed variant can take it.
  bool runs_skinny(const kernels::NormedRows& x, const void* w, int m, int n, int k,
                   cudaDataType_t ytype, Fusion fusion) const;
  // The fallback's norm: kernels::rmsnorm_rows_f32 of x into `normed` ([m, k] bf16).
  void norm_rows(const kernels::NormedRows& x, void* normed, int m, int k);
  // Fast mode: the prepared shape a product of m rows looks up (null: not prepared, or more rows
  // than max_rows: cuBLAS's own choice).
  const Pinned* fast_pinned(int n, int k, cudaDataType_t ytype, Fusion fusion, int m) const;
  // The fusion a shape is chosen and looked up under: none in batch-invariant mode or with
  // LONGTAIL_NORM_FUSION=0.
  Fusion effective(Fusion f) const {
    return batch_invariant_ || !fuse_norm_ ? Fusion::kNone : f;
  }
  // Which of longtail's few-row kernels takes a fast-mode product of m rows (kNone: cuBLAS).
  enum class FewRows { kNone, kMatvec, kSkinny };
  FewRows few_rows_kernel(const void* x, const void* w, int m, int k) const;
  // Runs a product on kernels::matvec_bf16 or skinny_gemm_bf16 (x, w aligned, k % 8 == 0).
  void run_few_rows(FewRows few, const void* x, const void* w, void* y, cudaDataType_t ytype, int m,
                    int n, int k, float beta);
  const Pinned& pinned(int n, int k, cudaDataType_t ytype, Fusion fusion = Fusion::kNone);
  // Probes and times the candidates of one shape on the device (throws when none is invariant).
  GemmChoices::Choice choose(const Pinned& p, int n, int k, cudaDataType_t ytype);
  // Fast mode: times every candidate of each row range at both ends (cuBLASLt's, and
  // kernels::skinny_gemm_bf16 up to its row limit), halving ranges no candidate serves well.
  GemmChoices::Choice choose_fast(const Pinned& p, int n, int k, cudaDataType_t ytype,
                                  Fusion fusion);
  // The range a product of m rows runs (null: the reference).
  static const GemmChoices::Choice::Range* range_for(const GemmChoices::Choice& c, int m);
  // Heuristic candidates at reference_rows in the heuristic's order; split_k false: those without
  // split-K first, then split-K ones with split-K forced off.
  std::vector<cublasLtMatmulAlgo_t> candidates(const Pinned& p, int n, int k, cudaDataType_t ytype,
                                               int reference_rows, bool split_k);
  // cublasLtMatmulAlgoCheck passes at every row count given (within the workspace).
  bool accepts(const Pinned& p, const cublasLtMatmulAlgo_t& algo, int n, int k,
               cudaDataType_t ytype, std::initializer_list<int> rows);
  // Microseconds per product of m rows for each algorithm, and for kernels::skinny_gemm_bf16 last
  // when with_skinny (weights streamed from memory, a graph of back-to-back products), each with
  // the kernels `fusion` adds (the skinny one: its normed variant).
  std::vector<double> time_on_device(const Pinned& p, std::span<const cublasLtMatmulAlgo_t> algos,
                                     int n, int k, cudaDataType_t ytype, int m,
                                     bool with_skinny = false, Fusion fusion = Fusion::kNone);
  // On random data: rows of `batched` products at each row count equal the same rows computed one
  // at a time by `alone`, bit for bit.
  bool same_rows_on_device(const Pinned& p, const cublasLtMatmulAlgo_t& batched,
                           const cublasLtMatmulAlgo_t& alone, int n, int k, cudaDataType_t ytype,
                           std::span<const int> row_counts);

  cudaStream_t stream_ = nullptr;
  bool batch_invariant_ = false;
  int max_rows_ = 1;
  // Fast mode: products of up to this many rows run kernels::matvec_bf16 instead of cuBLAS
  // (LONGTAIL_MATVEC_ROWS, 0..8, default 0 = always cuBLAS), with the SwiGLU fused into the
  // gate/up product (by matvec or skinny) unless LONGTAIL_MATVEC_SWIGLU=0.
  int matvec_rows_ = kDefaultMatvecRows;
  bool matvec_swiglu_ = true;
  // Fast mode: products of more rows than matvec takes and at most this many run
  // kernels::skinny_gemm_bf16 (LONGTAIL_SKINNY_ROWS, 0..64), the SwiGLU fused as with matvec.
  int skinny_rows_ = kDefaultSkinnyRows;
  // Fast mode: prepare() times cuBLASLt's candidates per row range (LONGTAIL_GEMM_TUNE, default on).
  bool tune_fast_ = true;
  // Fast mode: the normed products fold their RMSNorm (and SwiGLU) into skinny_gemm where it runs
  // (LONGTAIL_NORM_FUSION=1; default off, see the top of this file: the separate kernels, chosen
  // for as plain products).
  bool fuse_norm_ = false;
  cublasHandle_t handle_ = nullptr;
  cublasLtHandle_t lt_ = nullptr;
  DeviceBuffer workspace_;
  std::shared_ptr<GemmChoices> choices_;
  std::map<std::tuple<int, int, int, int>, Pinned> pinned_;  // (n, k, ytype, fusion)
};

}  // namespace longtail::policy::cuda
