// End-to-end benchmark of the CUDA backend through the policy::Backend interface, on random-weight
// Qwen2.5 shapes. Measures in one run: a device-to-device copy (the bandwidth ceiling); decode
// steps at batch x context (tokens/s and achieved bandwidth = (weight bytes + KV bytes read) /
// step time); verify steps of k = 1..16 tokens per sequence at batch 1..256 x context 512/4096,
// each beside its roofline (fit t = c_base + c_tok * tokens over batch 64/256, context 512);
// prefill of a 2k prompt; and the generate() equivalent of the HF baseline (prompt 128, 256 new
// tokens, T = 1). Writes JSON (bench/gpu/make_report.py turns it into the results table) and the
// cost-model YAML; --stages tree times a 16-node token tree against a 16-token chain, --stages
// peer the generate() equivalent at batch 16/64/256 (the PyTorch peer's shapes). --compare-modes instead measures fast against deterministic mode
// (BackendOptions::deterministic) in one process: decode and verify steps at batch 16/64/256,
// context 512/4096, k = 1/2/4/8/16, each beside its roofline max(bytes / copy bandwidth,
// FLOP / measured bf16 GEMM rate), and generate()-equivalent throughput at batch 16/64/256
// (--stages steps leaves the generate part out). --stages wake times SLEEP / WAKE_UP (level 1) of
// a deterministic backend, and what choosing its GEMM algorithms afresh would add to each wake.
// --dependent-launch off launches every longtail kernel without programmatic dependent launch
// (kernels::set_dependent_launch), to measure what it buys against a run with it on.
#include <cublas_v2.h>
#include <cuda_profiler_api.h>
#include <cuda_runtime_api.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <random>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "bench_models.h"
#include "kernels/kernels.h"
#include "policy/backend.h"
#include "policy/cuda_backend.h"
#include "policy/cuda_gemm.h"
#include "policy/cuda_step_plan.h"

namespace longtail::bench {
namespace {

using policy::Backend;
using policy::SequenceChunk;
using Clock = std::chrono::steady_clock;

void cuda_ok(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(e));
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0.0 : v[v.size() / 2];
}

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// Median seconds of `reps` runs of work(i) on the default stream, timed with events, after 3
// untimed ones.
template <typename Work>
double median_device_seconds(int reps, Work&& work) {
  for (int i = 0; i < 3; ++i) work(i);
  cudaEvent_t e0, e1;
  cudaEventCreate(&e0);
  cudaEventCreate(&e1);
  std::vector<double> t;
  for (int i = 0; i < reps; ++i) {
    cudaEventRecord(e0);
    work(i);
    cudaEventRecord(e1);
    cuda_ok(cudaEventSynchronize(e1), "timed work");
    float ms = 0;
    cudaEventElapsedTime(&ms, e0, e1);
    t.push_back(ms * 1e-3);
  }
  cudaEventDestroy(e0);
  cudaEventDestroy(e1);
  return median(t);
}

// Bytes read + written per second by a large device-to-device copy.
double copy_bandwidth() {
  const size_t bytes = size_t{2} << 30;
  void *a = nullptr, *b = nullptr;
  cuda_ok(cudaMalloc(&a, bytes), "cudaMalloc");
  cuda_ok(cudaMalloc(&b, bytes), "cudaMalloc");
  cuda_ok(cudaMemset(a, 1, bytes), "cudaMemset");
  const double s = median_device_seconds(20, [&](int i) {
    cuda_ok(cudaMemcpyAsync(i % 2 ? a : b, i % 2 ? b : a, bytes, cudaMemcpyDeviceToDevice), "copy");
  });
  cudaFree(a);
  cudaFree(b);
  return 2.0 * static_cast<double>(bytes) / s;
}

// bf16 GEMM rate (FLOP/s) of an 8192^3 product through cuBLAS on random data: the compute ceiling.
double gemm_rate() {
  const int n = 8192;
  const size_t bytes = static_cast<size_t>(n) * n * 2;
  void *a = nullptr, *b = nullptr, *c = nullptr;
  cuda_ok(cudaMalloc(&a, bytes), "cudaMalloc");
  cuda_ok(cudaMalloc(&b, bytes), "cudaMalloc");
  cuda_ok(cudaMalloc(&c, bytes), "cudaMalloc");
  {
    std::vector<uint16_t> h(static_cast<size_t>(n) * n);
    std::mt19937 rng(5);
    for (auto& x : h) x = static_cast<uint16_t>(0x3c00 + rng() % 0x300) | ((rng() & 1) << 15);
    cuda_ok(cudaMemcpy(a, h.data(), bytes, cudaMemcpyHostToDevice), "upload");
    cuda_ok(cudaMemcpy(b, h.data(), bytes, cudaMemcpyHostToDevice), "upload");
  }
  cublasHandle_t handle = nullptr;
  if (cublasCreate(&handle) != CUBLAS_STATUS_SUCCESS) throw std::runtime_error("cublasCreate");
  const float alpha = 1.0f, beta = 0.0f;
  auto product = [&] {
    if (cublasGemmEx(handle, CUBLAS_OP_T, CUBLAS_OP_N, n, n, n, &alpha, a, CUDA_R_16BF, n, b,
                     CUDA_R_16BF, n, &beta, c, CUDA_R_16BF, n, CUBLAS_COMPUTE_32F,
                     CUBLAS_GEMM_DEFAULT) != CUBLAS_STATUS_SUCCESS)
      throw std::runtime_error("cublasGemmEx");
  };
  const double s = median_device_seconds(10, [&](int) { product(); });
  cublasDestroy(handle);
  cudaFree(a);
  cudaFree(b);
  cudaFree(c);
  return 2.0 * n * static_cast<double>(n) * n / s;
}

// Sampling temperature of every benchmarked step (--temperature, default 1; 0 = greedy, which
// skips the sampler's Gumbel draw: the difference between the two is the sampler's cost).
float g_temperature = 1.0f;

policy::SamplingParams t1(uint64_t seed) {
  policy::SamplingParams s;
  s.temperature = g_temperature;
  s.seed = seed;
  return s;
}

std::vector<int32_t> random_tokens(size_t n, std::mt19937& rng, int vocab) {
  std::vector<int32_t> t(n);
  for (auto& x : t) x = static_cast<int32_t>(rng() % static_cast<uint32_t>(vocab));
  return t;
}

// A batch of sequences at a given context; steps append k tokens each and roll them back after,
// so every timed step sees the same shape.
class Batch {
 public:
  Batch(Backend& be, int batch, int32_t context) : be_(be) {
    for (int i = 0; i < batch; ++i) {
      seqs_.push_back(be.create_sequence());
      policy::cuda_set_length_for_benchmark(be, seqs_.back(), context);
    }
  }
  ~Batch() {
    for (int64_t s : seqs_) be_.release_sequence(s);
  }
  // One forward of k tokens per sequence (a token tree when parents is given), all positions
  // output; returns wall seconds.
  double step(int k, std::mt19937& rng, bool rollback, std::span<const int32_t> parents = {}) {
    std::vector<std::vector<int32_t>> tokens(seqs_.size());
    std::vector<SequenceChunk> chunks(seqs_.size());
    for (size_t i = 0; i < seqs_.size(); ++i) {
      tokens[i] = random_tokens(static_cast<size_t>(k), rng, be_.config().vocab_size);
      chunks[i].seq = seqs_[i];
      chunks[i].uid = 1000 + i;
      chunks[i].tokens = tokens[i];
      chunks[i].sampling = t1(7);
      chunks[i].parents = parents;
    }
    const auto t0 = Clock::now();
    be_.forward(chunks);
    const double dt = seconds_since(t0);
    if (rollback)
      for (int64_t s : seqs_) be_.truncate(s, be_.sequence_length(s) - k);
    return dt;
  }

 private:
  Backend& be_;
  std::vector<int64_t> seqs_;
};

nlohmann::json bench_decode(Backend& be, const policy::CudaBackendStats& st, double copy_bw,
                            std::mt19937& rng, int steps) {
  nlohmann::json rows = nlohmann::json::array();
  for (int batch : {1, 2, 4, 8, 16, 64, 256}) {
    for (int ctx : {512, 4096}) {
      nlohmann::json r = {{"batch", batch}, {"context", ctx}};
      const int64_t need = static_cast<int64_t>(batch) * (ctx + 32);
      const int64_t have = be.kv_capacity().free_tokens;
      if (need > have) {
        r["skipped"] = "needs " + std::to_string(need) + " KV positions (" +
                       std::to_string(need * static_cast<int64_t>(st.kv_bytes_per_token) >> 30) +
                       " GiB), the cache holds " + std::to_string(have) + " after the weights";
        spdlog::info("decode batch {} ctx {}: skipped ({})", batch, ctx, r["skipped"].get<std::string>());
        rows.push_back(r);
        continue;
      }
      Batch b(be, batch, ctx - 1);
      for (int i = 0; i < 3; ++i) b.step(1, rng, true);  // warm-up; graph captured on the 2nd
      std::vector<double> t;
      for (int i = 0; i < steps; ++i) t.push_back(b.step(1, rng, true));
      const double s = median(t);
      // Each step reads every weight once and, per sequence, its ctx cached positions' K and V.
      const double bytes = static_cast<double>(st.weight_bytes_per_step) +
                           static_cast<double>(batch) * ctx * static_cast<double>(st.kv_bytes_per_token);
      r["step_ms"] = s * 1e3;
      r["tokens_per_s"] = batch / s;
      r["bytes_per_step"] = bytes;
      r["bandwidth_GBps"] = bytes / s / 1e9;
      r["fraction_of_copy"] = bytes / s / copy_bw;
      spdlog::info("decode batch {} ctx {}: {:.3f} ms/step, {:.0f} tok/s, {:.0f} GB/s ({:.0f}% of copy)",
                   batch, ctx, s * 1e3, batch / s, bytes / s / 1e9, 100 * bytes / s / copy_bw);
      rows.push_back(r);
    }
  }
  return rows;
}

// The roofline of a step of `tokens` new tokens over `batch` sequences at `ctx` cached positions:
// max(bytes / copy bandwidth, FLOP / bf16 GEMM rate), bytes = weights + the KV read (batch x ctx
// positions) + the KV written, FLOP = 2 x parameters x tokens + attention (4 x layers x heads x
// head_dim x ctx per token). Without a GEMM rate (0) only the bytes count.
double roofline_seconds(const policy::ModelConfig& c, const policy::CudaBackendStats& st,
                        double copy_bw, double gemm_flops, int batch, int ctx, int k) {
  const double params = static_cast<double>(st.weight_bytes_per_step) / 2.0;
  const double tokens = static_cast<double>(batch) * k;
  const double bytes = static_cast<double>(st.weight_bytes_per_step) +
                       static_cast<double>(batch) * (ctx + k) * static_cast<double>(st.kv_bytes_per_token);
  const double flop = 2.0 * params * tokens +
                      4.0 * c.num_layers * c.num_heads * static_cast<double>(c.head_dim) * ctx * tokens;
  return std::max(bytes / copy_bw, gemm_flops > 0 ? flop / gemm_flops : 0.0);
}

// Verify steps of k = 1..kmax tokens per sequence (k = 1 is a decode step) at every batch x
// context, each with its roofline; and the least-squares fit t = c_base + c_tok * tokens over
// batch 64 and 256 at context 512 (the cost-model YAML's fit, as before).
nlohmann::json bench_verify(Backend& be, const policy::CudaBackendStats& st, double copy_bw,
                            double gemm_flops, std::mt19937& rng, int steps, int kmax) {
  nlohmann::json out = {{"fit_context", 512}, {"fit_batches", {64, 256}},
                        {"points", nlohmann::json::array()}};
  std::vector<double> xs, ys;
  for (int ctx : {512, 4096}) {
    for (int batch : {1, 2, 4, 8, 16, 64, 256}) {
      const int64_t need = static_cast<int64_t>(batch) * (ctx + kmax + 16);
      if (need > be.kv_capacity().free_tokens) {
        spdlog::info("verify batch {} ctx {}: skipped (KV cache too small)", batch, ctx);
        continue;
      }
      Batch b(be, batch, ctx - 1);
      for (int k = 1; k <= kmax; ++k) {
        for (int i = 0; i < 2; ++i) b.step(k, rng, true);
        std::vector<double> t;
        for (int i = 0; i < steps; ++i) t.push_back(b.step(k, rng, true));
        const double s = median(t);
        const double roof = roofline_seconds(be.config(), st, copy_bw, gemm_flops, batch, ctx, k);
        out["points"].push_back({{"batch", batch}, {"context", ctx}, {"k", k}, {"tokens", batch * k},
                                 {"step_ms", s * 1e3}, {"roofline_ms", roof * 1e3},
                                 {"over_roofline", s / roof}});
        if (ctx == 512 && (batch == 64 || batch == 256)) {
          xs.push_back(batch * k);
          ys.push_back(s * 1e6);
        }
        spdlog::info("verify batch {} ctx {} k {}: {:.3f} ms/step, roofline {:.3f} ms ({:.2f}x)", batch,
                     ctx, k, s * 1e3, roof * 1e3, s / roof);
      }
    }
  }
  if (xs.size() < 2) return out;
  // Least squares t_us = c_base + c_tok * tokens over the fit points.
  const double n = static_cast<double>(xs.size());
  double sx = 0, sy = 0, sxx = 0, sxy = 0;
  for (size_t i = 0; i < xs.size(); ++i) {
    sx += xs[i];
    sy += ys[i];
    sxx += xs[i] * xs[i];
    sxy += xs[i] * ys[i];
  }
  const double c_tok = (n * sxy - sx * sy) / (n * sxx - sx * sx);
  const double c_base = (sy - c_tok * sx) / n;
  double ss_res = 0, ss_tot = 0;
  for (size_t i = 0; i < xs.size(); ++i) {
    const double f = c_base + c_tok * xs[i];
    ss_res += (ys[i] - f) * (ys[i] - f);
    ss_tot += (ys[i] - sy / n) * (ys[i] - sy / n);
  }
  out["fit"] = {{"c_base_us", c_base}, {"c_tok_us", c_tok}, {"r2", 1 - ss_res / ss_tot}};
  return out;
}

// Decode (k = 1) and verify (k > 1) steps at each batch x context x k, with the roofline of each
// cell (roofline_seconds).
nlohmann::json bench_steps(Backend& be, const policy::CudaBackendStats& st, double copy_bw,
                           double gemm_flops, std::mt19937& rng, int steps) {
  const policy::ModelConfig& c = be.config();
  nlohmann::json rows = nlohmann::json::array();
  for (int ctx : {512, 4096}) {
    for (int batch : {16, 64, 256}) {
      const int64_t need = static_cast<int64_t>(batch) * (ctx + 32);
      if (need > be.kv_capacity().free_tokens) {
        spdlog::info("steps batch {} ctx {}: skipped (KV cache too small)", batch, ctx);
        continue;
      }
      Batch b(be, batch, ctx - 1);
      for (int k : {1, 2, 4, 8, 16}) {
        for (int i = 0; i < 2; ++i) b.step(k, rng, true);
        std::vector<double> t;
        for (int i = 0; i < steps; ++i) t.push_back(b.step(k, rng, true));
        const double s = median(t);
        const double tokens = static_cast<double>(batch) * k;
        const double roof = roofline_seconds(c, st, copy_bw, gemm_flops, batch, ctx, k);
        rows.push_back({{"batch", batch}, {"context", ctx}, {"k", k}, {"step_ms", s * 1e3},
                        {"roofline_ms", roof * 1e3}, {"over_roofline", s / roof},
                        {"tokens_per_s", tokens / s}});
        spdlog::info("steps batch {} ctx {} k {}: {:.3f} ms, roofline {:.3f} ms ({:.2f}x)", batch,
                     ctx, k, s * 1e3, roof * 1e3, s / roof);
      }
    }
  }
  return rows;
}

// Verify of a 16-node token tree (a binary tree: node i hangs off node (i - 1) / 2, depth 5)
// against a 16-token chain, at batch 64 and 256, context 512: the same tokens per step, so the
// two should cost the same (tree attention masks, it does not add work).
nlohmann::json bench_tree(Backend& be, std::mt19937& rng, int steps) {
  nlohmann::json rows = nlohmann::json::array();
  if (!be.supports_token_trees()) return rows;
  std::vector<int32_t> parents(16);
  for (int i = 0; i < 16; ++i) parents[i] = i == 0 ? -1 : (i - 1) / 2;
  for (int batch : {64, 256}) {
    Batch b(be, batch, 511);
    double t[2];
    for (int tree = 0; tree < 2; ++tree) {
      const std::span<const int32_t> p = tree ? std::span<const int32_t>(parents) : std::span<const int32_t>();
      for (int i = 0; i < 2; ++i) b.step(16, rng, true, p);
      std::vector<double> v;
      for (int i = 0; i < steps; ++i) v.push_back(b.step(16, rng, true, p));
      t[tree] = median(v);
    }
    rows.push_back({{"batch", batch}, {"context", 512}, {"chain_ms", t[0] * 1e3},
                    {"tree_ms", t[1] * 1e3}, {"tree_over_chain", t[1] / t[0]}});
    spdlog::info("tree verify batch {} ctx 512, 16 tokens: chain {:.3f} ms, tree {:.3f} ms ({:.3f}x)",
                 batch, t[0] * 1e3, t[1] * 1e3, t[1] / t[0]);
  }
  return rows;
}

nlohmann::json bench_prefill(Backend& be, std::mt19937& rng) {
  const int n = 2048;
  std::vector<double> t;
  for (int rep = 0; rep < 6; ++rep) {
    const auto prompt = random_tokens(n, rng, be.config().vocab_size);
    const int64_t s = be.create_sequence();
    SequenceChunk c;
    c.seq = s;
    c.uid = 1;
    c.tokens = prompt;
    c.first_output = n - 1;
    c.sampling = t1(1);
    const auto t0 = Clock::now();
    be.forward(std::vector<SequenceChunk>{c});
    if (rep > 0) t.push_back(seconds_since(t0));
    be.release_sequence(s);
  }
  const double s = median(t);
  spdlog::info("prefill {} tokens: {:.2f} ms, {:.0f} tok/s", n, s * 1e3, n / s);
  return {{"tokens", n}, {"ms", s * 1e3}, {"tokens_per_s", n / s}};
}

struct GenerateTimes {
  double seconds = 0, prefill_seconds = 0;
};

// Prompt prefill then new_tokens - 1 decode steps at T = 1, batch B (what HF generate() does in
// the baseline), timed from the prefill's start.
GenerateTimes run_generate(Backend& be, std::mt19937& rng, int batch, int prompt_len, int new_tokens) {
  std::vector<int64_t> seqs;
  std::vector<std::vector<int32_t>> inputs(static_cast<size_t>(batch));
  std::vector<SequenceChunk> chunks(static_cast<size_t>(batch));
  for (int i = 0; i < batch; ++i) {
    seqs.push_back(be.create_sequence());
    inputs[static_cast<size_t>(i)] = random_tokens(static_cast<size_t>(prompt_len), rng, be.config().vocab_size);
  }
  const auto t0 = Clock::now();
  for (int i = 0; i < batch; ++i) {
    auto& c = chunks[static_cast<size_t>(i)];
    c.seq = seqs[static_cast<size_t>(i)];
    c.uid = 5000 + static_cast<uint64_t>(i);
    c.tokens = inputs[static_cast<size_t>(i)];
    c.first_output = prompt_len - 1;
    c.sampling = t1(3);
  }
  auto out = be.forward(chunks);
  const double prefill_s = seconds_since(t0);
  for (int step = 1; step < new_tokens; ++step) {
    for (int i = 0; i < batch; ++i) {
      inputs[static_cast<size_t>(i)] = {out[static_cast<size_t>(i)].sampled};
      chunks[static_cast<size_t>(i)].tokens = inputs[static_cast<size_t>(i)];
      chunks[static_cast<size_t>(i)].first_output = 0;
    }
    out = be.forward(chunks);
  }
  const double s = seconds_since(t0);
  for (int64_t q : seqs) be.release_sequence(q);
  return {s, prefill_s};
}

// run_generate after an untimed run of the same batch (8 new tokens), so that one-time costs
// (graph captures, cuBLAS's first calls at these row counts) stay out, as the PyTorch peer
// captures its graph before timing. Reports the whole generate's tokens/s and the decode steps'
// alone (the peer's measure).
nlohmann::json bench_generate(Backend& be, std::mt19937& rng, int batch, int prompt_len,
                              int new_tokens) {
  run_generate(be, rng, batch, prompt_len, 8);
  const GenerateTimes t = run_generate(be, rng, batch, prompt_len, new_tokens);
  const double decode_s = t.seconds - t.prefill_seconds;
  const double tps = static_cast<double>(batch) * new_tokens / t.seconds;
  const double decode_tps = static_cast<double>(batch) * (new_tokens - 1) / decode_s;
  spdlog::info("generate batch {} prompt {} new {}: {:.2f} s ({:.3f} s prefill), {:.0f} tok/s, "
               "decode steps alone {:.0f} tok/s ({:.3f} ms per step)",
               batch, prompt_len, new_tokens, t.seconds, t.prefill_seconds, tps, decode_tps,
               1e3 * decode_s / (new_tokens - 1));
  return {{"batch", batch},
          {"prompt", prompt_len},
          {"new_tokens", new_tokens},
          {"seconds", t.seconds},
          {"prefill_seconds", t.prefill_seconds},
          {"tokens_per_s", tps},
          {"decode_tokens_per_s", decode_tps}};
}

// Level-1 sleep / wake round trips of a deterministic backend (KV cache of half the free memory,
// as sleep_2026-12-02.md measured): ms of each sleep() and wake_up(), the GEMM choices the wakes
// made (none: the backend keeps its choice), and the ms a fresh choice of the model's five product
// shapes takes (what each wake cost before the choice was kept).
nlohmann::json bench_wake(const NamedModel& m, std::mt19937& rng, int reps) {
  policy::BackendOptions o;
  o.kind = "cuda";
  o.kv_memory_fraction = 0.5;
  o.deterministic = true;
  const auto t0 = Clock::now();
  auto be = policy::make_cuda_backend_random(m.config, o, 1);
  const double construct_s = seconds_since(t0);
  {
    Batch b(*be, 16, 511);
    b.step(1, rng, true);
  }
  const size_t chosen = policy::cuda::GemmChoices::made_in_process();
  std::vector<double> sleep_ms, wake_ms;
  for (int i = 0; i < reps; ++i) {
    auto t = Clock::now();
    be->sleep(1);
    sleep_ms.push_back(seconds_since(t) * 1e3);
    t = Clock::now();
    be->wake_up();
    wake_ms.push_back(seconds_since(t) * 1e3);
    Batch b(*be, 16, 511);
    b.step(1, rng, true);
  }
  const size_t chosen_by_wakes = policy::cuda::GemmChoices::made_in_process() - chosen;
  be.reset();
  // A fresh choice for the same shapes, on a stream of its own.
  const policy::ModelConfig& c = m.config;
  cudaStream_t stream = nullptr;
  cuda_ok(cudaStreamCreate(&stream), "cudaStreamCreate");
  double choice_ms = 0;
  {
    policy::cuda::Gemm gemm(stream, true, policy::cuda::PlanLimits{}.max_tokens);
    const int qkv_rows = (c.num_heads + 2 * c.num_kv_heads) * c.head_dim;
    const auto t = Clock::now();
    gemm.prepare(qkv_rows, c.hidden_size, true);
    gemm.prepare(c.hidden_size, c.num_heads * c.head_dim, true);
    gemm.prepare(2 * c.intermediate_size, c.hidden_size, false);
    gemm.prepare(c.hidden_size, c.intermediate_size, true);
    gemm.prepare(c.vocab_size, c.hidden_size, true);
    choice_ms = seconds_since(t) * 1e3;
  }
  cudaStreamDestroy(stream);
  spdlog::info("wake {}: backend made in {:.2f} s; sleep {:.1f} ms, wake_up {:.1f} ms (medians of {}); "
               "{} GEMM choices made by the wakes; a fresh GEMM choice takes {:.0f} ms",
               m.name, construct_s, median(sleep_ms), median(wake_ms), reps, chosen_by_wakes, choice_ms);
  return {{"name", m.name},          {"construct_s", construct_s}, {"sleep_ms", sleep_ms},
          {"wake_ms", wake_ms},      {"gemm_choices_made_by_wakes", chosen_by_wakes},
          {"fresh_gemm_choice_ms", choice_ms}};
}

int run(int argc, char** argv) {
  std::string models = "0.5b,1.5b,7b", json_out = "gpu_bench.json", yaml_out;
  int steps = 20, verify_steps = 8, kmax = 16;
  // "batch:context:k[,batch:context:k...]": only those step shapes, each inside
  // cudaProfilerStart/Stop (one profiler range per shape, in order)
  std::string profile;
  bool compare_modes = false;
  bool deterministic = false;  // --deterministic: the backend in deterministic mode (not with --compare-modes)
  std::string stages = ",decode,verify,prefill,generate,";  // --stages: which to run (+ tree, peer)
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) throw std::invalid_argument(a + " needs a value");
      return argv[++i];
    };
    if (a == "--profile") profile = next();
    else if (a == "--models") models = next();
    else if (a == "--json") json_out = next();
    else if (a == "--cost-model") yaml_out = next();
    else if (a == "--steps") steps = std::stoi(next());
    else if (a == "--verify-steps") verify_steps = std::stoi(next());
    else if (a == "--kmax") kmax = std::stoi(next());
    else if (a == "--compare-modes") compare_modes = true;
    else if (a == "--deterministic") deterministic = true;
    else if (a == "--stages") stages = "," + next() + ",";
    else if (a == "--temperature") g_temperature = std::stof(next());
    else if (a == "--dependent-launch") {
      const std::string v = next();
      if (v != "on" && v != "off") throw std::invalid_argument("--dependent-launch wants on or off, got " + v);
      kernels::set_dependent_launch(v == "on");
    } else throw std::invalid_argument("unknown argument " + a +
                                     " (--models a,b --json F --cost-model F --steps N --verify-steps N --kmax K"
                                     " --profile batch:context:k[,...] --deterministic --compare-modes --stages decode,verify,prefill,generate,tree,peer|steps|wake"
                                     " --temperature T --dependent-launch on|off)");
  }
  if (!policy::cuda_device_present()) throw std::runtime_error("no CUDA device");
  cudaDeviceProp prop{};
  cuda_ok(cudaGetDeviceProperties(&prop, 0), "cudaGetDeviceProperties");
  nlohmann::json result;
  result["device"] = prop.name;
  result["sms"] = prop.multiProcessorCount;
  const double copy_bw = copy_bandwidth();
  result["copy_GBps"] = copy_bw / 1e9;
  spdlog::info("device {}: copy {:.0f} GB/s (read + write)", prop.name, copy_bw / 1e9);
  result["models"] = nlohmann::json::array();
  double gemm_flops = 0;
  if (compare_modes || stages.find(",verify,") != std::string::npos) {
    gemm_flops = gemm_rate();
    result["gemm_TFLOPs"] = gemm_flops / 1e12;
    spdlog::info("device {}: bf16 GEMM 8192^3 {:.0f} TFLOP/s", prop.name, gemm_flops / 1e12);
  }

  std::mt19937 rng(2026);
  std::string list = models;
  while (!list.empty()) {
    const size_t comma = list.find(',');
    const std::string name = list.substr(0, comma);
    list = comma == std::string::npos ? "" : list.substr(comma + 1);
    const NamedModel m = qwen25_shape(name);
    if (stages == ",wake,") {
      result["models"].push_back(bench_wake(m, rng, std::max(1, steps)));
      std::ofstream(json_out) << result.dump(2);
      continue;
    }
    if (compare_modes) {
      nlohmann::json mj = {{"name", m.name}};
      for (const bool det : {false, true}) {
        policy::BackendOptions o;
        o.kind = "cuda";
        o.kv_memory_fraction = 0.9;
        o.deterministic = det;
        auto be = policy::make_cuda_backend_random(m.config, o, 1);
        policy::cuda_fill_kv_random(*be, 2);
        const auto st = policy::cuda_backend_stats(*be);
        spdlog::info("{} {} mode", m.name, det ? "deterministic" : "fast");
        mj[det ? "deterministic" : "fast"] = bench_steps(*be, st, copy_bw, gemm_flops, rng, steps);
        // The generate() equivalent the PyTorch peer (../shared/tools/torch_decode_peer.py)
        // measures: prompt 128, 256 new tokens at T = 1, batch 16 / 64 / 256.
        if (stages.find(",generate,") == std::string::npos) continue;
        nlohmann::json gen = nlohmann::json::array();
        for (int batch : {16, 64, 256}) gen.push_back(bench_generate(*be, rng, batch, 128, 256));
        mj[det ? "deterministic_generate" : "fast_generate"] = gen;
      }
      const auto& f = mj["fast"];
      const auto& d = mj["deterministic"];
      for (size_t i = 0; i < f.size() && i < d.size(); ++i) {
        const double ratio = d[i]["step_ms"].get<double>() / f[i]["step_ms"].get<double>();
        spdlog::info("compare {} batch {} ctx {} k {}: fast {:.3f} ms, deterministic {:.3f} ms ({:.2f}x)",
                     m.name, f[i]["batch"].get<int>(), f[i]["context"].get<int>(),
                     f[i]["k"].get<int>(), f[i]["step_ms"].get<double>(),
                     d[i]["step_ms"].get<double>(), ratio);
      }
      result["models"].push_back(mj);
      std::ofstream(json_out) << result.dump(2);
      continue;
    }
    policy::BackendOptions opts;
    opts.kind = "cuda";
    opts.kv_memory_fraction = 0.9;
    opts.deterministic = deterministic;
    auto be = policy::make_cuda_backend_random(m.config, opts, 1);
    policy::cuda_fill_kv_random(*be, 2);
    const auto st = policy::cuda_backend_stats(*be);
    // The HF config.json keys rollout/measured_cost_model.h matches a checkpoint by.
    const nlohmann::json shape = {{"hidden_size", m.config.hidden_size},
                                  {"intermediate_size", m.config.intermediate_size},
                                  {"num_hidden_layers", m.config.num_layers},
                                  {"num_attention_heads", m.config.num_heads},
                                  {"num_key_value_heads", m.config.num_kv_heads},
                                  {"vocab_size", m.config.vocab_size}};
    nlohmann::json mj = {{"name", m.name},
                         {"shape", shape},
                         {"weight_bytes_per_step", st.weight_bytes_per_step},
                         {"kv_bytes_per_token", st.kv_bytes_per_token},
                         {"kv_tokens", be->kv_capacity().total_tokens}};
    spdlog::info("{}: {:.2f} GB of weights read per step, {} KV bytes per token, {} KV positions",
                 m.name, st.weight_bytes_per_step / 1e9, st.kv_bytes_per_token,
                 be->kv_capacity().total_tokens);
    if (!profile.empty()) {
      std::string shapes = profile;
      while (!shapes.empty()) {
        const size_t cut = shapes.find(',');
        const std::string shape = shapes.substr(0, cut);
        shapes = cut == std::string::npos ? "" : shapes.substr(cut + 1);
        int pb = 0, pc = 0, pk = 0;
        if (std::sscanf(shape.c_str(), "%d:%d:%d", &pb, &pc, &pk) != 3 || pb <= 0 || pc <= 0 || pk <= 0)
          throw std::invalid_argument("--profile wants batch:context:k[,...], got " + shape);
        Batch b(*be, pb, pc - 1);
        for (int i = 0; i < 3; ++i) b.step(pk, rng, true);
        cudaProfilerStart();
        std::vector<double> t;
        for (int i = 0; i < steps; ++i) t.push_back(b.step(pk, rng, true));
        cudaProfilerStop();
        spdlog::info("profile {}{} batch {} ctx {} k {}: {:.3f} ms per forward (median of {})",
                     m.name, deterministic ? " deterministic" : "", pb, pc, pk, median(t) * 1e3,
                     steps);
      }
      continue;
    }
    auto stage = [&](const char* name) {
      return stages.find(std::string(",") + name + ",") != std::string::npos;
    };
    if (stage("decode")) mj["decode"] = bench_decode(*be, st, copy_bw, rng, steps);
    if (stage("verify")) mj["verify"] = bench_verify(*be, st, copy_bw, gemm_flops, rng, verify_steps, kmax);
    if (stage("prefill")) mj["prefill"] = bench_prefill(*be, rng);
    if (stage("tree")) mj["tree"] = bench_tree(*be, rng, steps);
    if (stage("peer")) {  // the shapes ../shared/tools/torch_decode_peer.py measures
      nlohmann::json gen = nlohmann::json::array();
      for (int batch : {16, 64, 256}) gen.push_back(bench_generate(*be, rng, batch, 128, 256));
      mj["generate_peer"] = gen;
    }
    if (stage("generate")) mj["generate"] = bench_generate(*be, rng, 256, 128, 256);
    mj["graph_replays"] = policy::cuda_backend_stats(*be).graph_replays;
    result["models"].push_back(mj);
    be.reset();
    std::ofstream(json_out) << result.dump(2);  // partial results survive a later failure
  }

  if (!yaml_out.empty() && !result["models"].empty() && result["models"].back().contains("verify")) {
    std::ofstream y(yaml_out);
    y << "# Step cost of the CUDA backend measured by bench/gpu/gpu_bench (bench/gpu/run_device.sh) on "
      << prop.name << ":\n#   t_step = base_us + per_token_us * tokens_verified   (microseconds per "
         "forward pass)\n# least-squares fit over verify steps of k = 1.." << kmax
      << " tokens per sequence at batch 64 and 256, context 512.\n"
         "# step_cost is the largest model measured; per_model lists every shape.\n";
    const auto& last = result["models"].back();
    auto clamp0 = [](double v) { return v < 0 ? 0.0 : v; };
    y << "step_cost:\n  base_us: " << clamp0(last["verify"]["fit"]["c_base_us"].get<double>())
      << "\n  per_token_us: " << clamp0(last["verify"]["fit"]["c_tok_us"].get<double>()) << "\n";
    y << "per_model:\n";
    for (const auto& mj : result["models"])
      y << "  \"" << mj["name"].get<std::string>() << "\": {base_us: "
        << clamp0(mj["verify"]["fit"]["c_base_us"].get<double>())
        << ", per_token_us: " << clamp0(mj["verify"]["fit"]["c_tok_us"].get<double>())
        << ", r2: " << mj["verify"]["fit"]["r2"].get<double>() << "}\n";
  }
  std::cout << result.dump(2) << "\n";
  return 0;
}

}  // namespace
}  // namespace longtail::bench

int main(int argc, char** argv) {
  try {
    return longtail::bench::run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "longtail_gpu_bench: %s\n", e.what());
    return 1;
  }
}
