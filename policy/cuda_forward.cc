// Device execution of planned passes (see cuda_forward.h).
#include "policy/cuda_forward.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <stdexcept>
#include <string>

#include "kernels/kernels.h"

namespace longtail::policy::cuda {
namespace {

constexpr size_t kMaxAttentionWorkspace = size_t{256} << 20;

template <typename T>
T* at(const DeviceBuffer& b, size_t offset) {
  return reinterpret_cast<T*>(b.get<char>() + offset);
}

kernels::bf16* bf(void* p) { return static_cast<kernels::bf16*>(p); }
const kernels::bf16* bf(const void* p) { return static_cast<const kernels::bf16*>(p); }

int32_t pow2_at_least(int64_t x) {
  int64_t p = 1;
  while (p < x) p <<= 1;
  return static_cast<int32_t>(p);
}

bool fast_attention_head_dim(int d) { return d == 64 || d == 128; }

// Block-table entries per sequence the runner sizes for: the model's context, in blocks, rounded
// up to a power of two.
int32_t table_width_limit(const ModelConfig& c, int32_t block_size) {
  const int64_t max_pos = std::max<int64_t>(c.max_position_embeddings, block_size);
  return pow2_at_least(std::max<int64_t>(16, (max_pos + block_size - 1) / block_size));
}

// The graph buckets for this model, as cuda_forward.h describes; a bad LONGTAIL_GRAPH_BUCKETS
// warns and prices by the model.
PlanLimits priced_limits(const PlanLimits& limits, const ModelConfig& c, int32_t max_table_width) {
  const char* v = std::getenv("LONGTAIL_GRAPH_BUCKETS");
  try {
    return priced_graph_limits(limits, c, max_table_width, v ? v : "");
  } catch (const std::invalid_argument& e) {
    spdlog::warn("cuda backend: {}; pricing the graph buckets by the model", e.what());
    return priced_graph_limits(limits, c, max_table_width, "");
  }
}

}  // namespace

ForwardRunner::ForwardRunner(const ModelConfig& c, const PlanLimits& limits, bool capture_graphs,
                             bool deterministic, std::shared_ptr<GemmChoices> gemm_choices)
    : config_(c),
      limits_(priced_limits(limits, c, table_width_limit(c, limits.block_size))),
      deterministic_(deterministic),
      graphs_(512, capture_graphs, capture_at_first_sight(limits_)) {
  int dev = 0;
  LT_CUDA_CHECK(cudaGetDevice(&dev));
  LT_CUDA_CHECK(cudaDeviceGetAttribute(&num_sms_, cudaDevAttrMultiProcessorCount, dev));
  LT_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
  for (auto& ev : staged_) LT_CUDA_CHECK(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming));
  gemm_ = std::make_unique<Gemm>(stream_, deterministic, limits.max_tokens, std::move(gemm_choices));

  const size_t T = static_cast<size_t>(limits.max_tokens);
  const size_t R = static_cast<size_t>(limits.max_outputs);
  const size_t hidden = static_cast<size_t>(c.hidden_size);
  const size_t qkv_rows = static_cast<size_t>(c.num_heads + 2 * c.num_kv_heads) * c.head_dim;
  const size_t attn_dim = static_cast<size_t>(c.num_heads) * c.head_dim;
  const size_t inter = static_cast<size_t>(c.intermediate_size);
  residual_ = DeviceBuffer(T * hidden * 4);
  normed_ = DeviceBuffer(T * hidden * 2);
  big_ = DeviceBuffer(T * std::max(qkv_rows * 4, 2 * inter * 2));  // fp32 q|k|v or bf16 gate|up
  q_ = DeviceBuffer(T * attn_dim * 2);
  attn_ = DeviceBuffer(T * attn_dim * 2);
  act_ = DeviceBuffer(T * inter * 2);
  logits_ = DeviceBuffer(R * static_cast<size_t>(c.vocab_size) * 4);
  out_ = DeviceBuffer(R * 12);
  sample_ws_ = DeviceBuffer(kernels::sample_rows_workspace_bytes(static_cast<int64_t>(R), c.vocab_size));
  LT_CUDA_CHECK(cudaMemset(sample_ws_.get(), 0, sample_ws_.bytes()));  // the sampler's row tickets

  const int64_t max_pos = std::max<int64_t>(c.max_position_embeddings, limits.block_size);
  max_table_width_ = table_width_limit(c, limits.block_size);
  const size_t meta_bytes = meta_capacity(limits_, max_table_width_);
  meta_ = DeviceBuffer(meta_bytes);
  staging_[0] = PinnedBuffer(meta_bytes);
  staging_[1] = PinnedBuffer(meta_bytes);

  if (const char* w = std::getenv("LONGTAIL_ATTN_WAVES")) attn_waves_ = std::max(1, std::atoi(w));
  if (fast_attention_head_dim(c.head_dim)) {
    // Kernel attributes are set here, never inside a graph capture.
    LT_KERNEL_CHECK(kernels::prepare_paged_attention());
    size_t ws = 0;
    if (deterministic) {
      // Every split a pass can need, for every token: fixed splits are never traded for memory.
      const int64_t max_kv = static_cast<int64_t>(max_table_width_) * limits.block_size;
      max_splits_ = static_cast<int32_t>((max_kv + kDeterministicSplit - 1) / kDeterministicSplit);
      ws = kernels::paged_attention_workspace_bytes(limits.max_tokens, c.num_heads, c.head_dim,
                                                    max_splits_);
    } else {
      max_splits_ = std::max(1, kernels::paged_attention_choose_splits(
                                    1, c.num_heads, c.num_kv_heads, 1, 4 * max_pos, num_sms_));
      ws = std::min(kernels::paged_attention_workspace_bytes(limits.max_tokens, c.num_heads,
                                                             c.head_dim, max_splits_),
                    kMaxAttentionWorkspace);
    }
    attn_ws_ = DeviceBuffer(std::max<size_t>(ws, 256));
  }
  {  // algorithm choice times products on the device: done here, never inside a capture
    const int qkv_rows = (c.num_heads + 2 * c.num_kv_heads) * c.head_dim;
    const int attn_dim = c.num_heads * c.head_dim;
    gemm_->prepare(qkv_rows, c.hidden_size, true, Gemm::Fusion::kNormIn);
    gemm_->prepare(c.hidden_size, attn_dim, true);
    gemm_->prepare(2 * c.intermediate_size, c.hidden_size, false, Gemm::Fusion::kNormInSwiglu);
    gemm_->prepare(c.hidden_size, c.intermediate_size, true);
    gemm_->prepare(c.vocab_size, c.hidden_size, true);
  }

  {  // RoPE inverse frequencies, scaling included, computed once on the host like HF does
    const std::vector<float> inv = rope_inv_freq(c);
    inv_freq_ = DeviceBuffer(inv.size() * 4);
    LT_CUDA_CHECK(cudaMemcpy(inv_freq_.get(), inv.data(), inv.size() * 4, cudaMemcpyHostToDevice));
  }
  const double act_mib = static_cast<double>(residual_.bytes() + normed_.bytes() + big_.bytes() +
                                             q_.bytes() + attn_.bytes() + act_.bytes() +
                                             logits_.bytes() + meta_.bytes() + attn_ws_.bytes() +
                                             sample_ws_.bytes()) /
                         (1 << 20);
  spdlog::info("cuda backend: {} SMs, {} tokens / {} outputs per pass, {:.0f} MiB of activations{}; "
               "graph buckets {} (fixed cost {} tokens), ragged graphs {}, capture at {} sight",
               num_sms_, limits.max_tokens, limits.max_outputs, act_mib,
               deterministic ? ", deterministic (batch-invariant kernels)" : "",
               limits_.token_buckets == TokenBuckets::kFixedSteps ? "legacy" : "bounded-cost",
               limits_.fixed_cost_tokens, limits_.ragged_graphs ? "on" : "off",
               capture_at_first_sight(limits_) ? "first" : "second");
}

ForwardRunner::~ForwardRunner() {
  graphs_.clear();
  gemm_.reset();
  for (auto& ev : staged_)
    if (ev) cudaEventDestroy(ev);
  if (stream_) cudaStreamDestroy(stream_);
}

void ForwardRunner::attention(const PassPlan& p, const MetaLayout& m, const KvPool& kv, int layer) {
  const ModelConfig& c = config_;
  if (fast_attention_head_dim(c.head_dim)) {
    kernels::PagedAttentionParams a;
    a.q = bf(q_.get());
    a.q_stride = static_cast<int64_t>(c.num_heads) * c.head_dim;
    a.k_cache = bf(kv.k(layer));
    a.v_cache = bf(kv.v(layer));
    a.block_table = at<int32_t>(meta_, m.block_table);
    a.block_table_stride = p.table_width;
    a.block_size = kv.block_size;
    a.query_start = at<int32_t>(meta_, m.query_start);
    a.seq_lens = at<int32_t>(meta_, m.seq_lens);
    a.tree_parents = p.tree ? at<int32_t>(meta_, m.tree_parents) : nullptr;
    a.num_seqs = p.num_seqs;
    a.num_tokens = p.num_tokens;
    a.max_query_len = p.max_query_len;
    a.num_heads = c.num_heads;
    a.num_kv_heads = c.num_kv_heads;
    a.head_dim = c.head_dim;
    a.scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
    // The kernel before this one (qkv_post) writes only q and the new tokens' K/V; the metadata
    // and older positions were written before it.
    a.cached_prefix_settled = true;
    int32_t splits = 1;
    if (deterministic_) {
      // Fixed split boundaries; enough splits for the pass's longest possible sequence (surplus
      // ones are empty and add exact zeros).
      splits = static_cast<int32_t>((p.max_kv_len + kDeterministicSplit - 1) / kDeterministicSplit);
      splits = std::max(1, splits);
      if (splits > max_splits_)
        throw std::logic_error("cuda forward: a pass needs more fixed attention splits than sized");
      a.kv_split_size = kDeterministicSplit;
    } else {
      // The library's heuristic keeps splits >= 256 positions; a decode step of a few sequences
      // at short context then runs on a handful of SMs, latency-bound (19 us per layer at batch
      // 16, ctx 512 on an H100). Splits of one 64-position tile fill the GPU instead: asking with
      // 4x the length moves its cap from len/256 to len/64 and keeps its block arithmetic.
      splits = std::min(max_splits_, kernels::paged_attention_choose_splits(
                                         p.num_seqs, c.num_heads, c.num_kv_heads,
                                         p.max_query_len, 4 * p.max_kv_len,
                                         num_sms_ * attn_waves_ / 2));
      splits = std::max(1, splits);
      // Past one wave of resident blocks (batch 256: 512 blocks on ~400 slots), a few more splits
      // so that the last wave is full (bench/results/gpu_2026-12-02c.md).
      splits = kernels::paged_attention_balance_splits(splits, max_splits_, p.num_seqs, c.num_heads,
                                                       c.num_kv_heads, c.head_dim,
                                                       p.max_query_len, p.max_kv_len);
      while (splits > 1 && kernels::paged_attention_workspace_bytes(p.num_tokens, c.num_heads,
                                                                    c.head_dim, splits) >
                               attn_ws_.bytes())
        --splits;
    }
    a.num_kv_splits = splits;
    a.workspace = attn_ws_.get<float>();
    a.workspace_bytes = attn_ws_.bytes();
    a.out = bf(attn_.get());
    a.out_stride = a.q_stride;
    LT_KERNEL_CHECK(kernels::paged_attention(a, stream_));
    return;
  }
  if (p.tree) throw std::logic_error("cuda forward: token trees need head_dim 64 or 128");
  kernels::SimplePagedAttentionParams a;
  a.q = bf(q_.get());
  a.k_cache = bf(kv.k(layer));
  a.v_cache = bf(kv.v(layer));
  a.block_table = at<int32_t>(meta_, m.block_table);
  a.block_table_stride = p.table_width;
  a.block_size = kv.block_size;
  a.token_seq = at<int32_t>(meta_, m.token_seq);
  a.query_start = at<int32_t>(meta_, m.query_start);
  a.seq_lens = at<int32_t>(meta_, m.seq_lens);
  a.num_tokens = p.num_tokens;
  a.num_heads = c.num_heads;
  a.num_kv_heads = c.num_kv_heads;
  a.head_dim = c.head_dim;
  a.scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
  a.out = bf(attn_.get());
  LT_KERNEL_CHECK(kernels::paged_attention_simple(a, stream_));
}

void ForwardRunner::body(const PassPlan& p, const MetaLayout& m, const ModelWeights& w,
                         const KvPool& kv) {
  const ModelConfig& c = config_;
  const int T = p.num_tokens, R = p.num_outputs;
  const int hidden = c.hidden_size, inter = c.intermediate_size;
  const int qkv_rows = (c.num_heads + 2 * c.num_kv_heads) * c.head_dim;
  const int attn_dim = c.num_heads * c.head_dim;
  const float eps = static_cast<float>(c.rms_norm_eps);
  float* residual = residual_.get<float>();

  LT_KERNEL_CHECK(kernels::embedding_gather_f32(bf(w.embed), c.vocab_size, hidden,
                                      at<int32_t>(meta_, m.tokens), T, residual, nullptr, stream_));
  for (int l = 0; l < c.num_layers; ++l) {
    const LayerWeights& lw = w.layers[static_cast<size_t>(l)];
    gemm_->normed_f32_out({residual, lw.attn_norm, eps}, normed_.get(), lw.qkv, big_.get<float>(),
                          T, qkv_rows, hidden);
    kernels::QkvPostParams qp;
    qp.qkv = big_.get<float>();
    qp.bias = lw.qkv_bias;
    qp.q_norm = lw.q_norm;
    qp.k_norm = lw.k_norm;
    qp.norm_eps = eps;
    qp.positions = at<int32_t>(meta_, m.positions);
    qp.inv_freq = inv_freq_.get<float>();
    qp.slots = at<int32_t>(meta_, m.slots);
    qp.q_out = bf(q_.get());
    qp.k_cache = bf(kv.k(l));
    qp.v_cache = bf(kv.v(l));
    qp.num_tokens = T;
    qp.num_heads = c.num_heads;
    qp.num_kv_heads = c.num_kv_heads;
    qp.head_dim = c.head_dim;
    LT_KERNEL_CHECK(kernels::qkv_post(qp, stream_));
    attention(p, m, kv, l);
    gemm_->f32_out(attn_.get(), lw.o, residual, T, hidden, attn_dim, true);
    gemm_->normed_swiglu({residual, lw.mlp_norm, eps}, normed_.get(), big_.get(), lw.gate_up,
                         act_.get(), T, inter, hidden);
    gemm_->f32_out(act_.get(), lw.down, residual, T, hidden, inter, true);
  }
  if (R == 0) return;  // a prefill chunk that is not the last: K/V written, nothing sampled
  LT_KERNEL_CHECK(kernels::rmsnorm_rows_f32(residual, at<int32_t>(meta_, m.out_rows), R, hidden,
                                            w.final_norm, eps, bf(normed_.get()), stream_));
  gemm_->f32_out(normed_.get(), w.lm_head, logits_.get<float>(), R, c.vocab_size, hidden, false);
  int32_t* tok = out_.get<int32_t>();
  float* lp = reinterpret_cast<float*>(tok + R);
  float* tlp = lp + R;
  LT_KERNEL_CHECK(kernels::sample_rows(logits_.get<float>(), c.vocab_size, R, c.vocab_size,
                             at<kernels::SamplingRow>(meta_, m.rows),
                             at<int32_t>(meta_, m.masked_ids), at<int32_t>(meta_, m.targets), tok,
                             lp, tlp, sample_ws_.get(),
                             sample_ws_.bytes(), stream_));
}

std::vector<TokenOutput> ForwardRunner::run(std::span<const PassPlan> passes,
                                            const ModelWeights& w, const KvPool& kv) {
  size_t total_rows = 0;
  for (const auto& p : passes) {
    if (p.num_tokens > limits_.max_tokens || p.num_outputs > limits_.max_outputs ||
        p.num_seqs > limits_.max_seqs || p.table_width > max_table_width_ ||
        p.masked_ids.size() > static_cast<size_t>(limits_.max_seqs) * limits_.max_mask_ids_per_seq)
      throw std::logic_error("cuda forward: a planned pass exceeds the runner's buffers");
    total_rows += static_cast<size_t>(p.num_outputs);
  }
  if (results_.bytes() < total_rows * 12) results_ = PinnedBuffer(std::max<size_t>(total_rows * 12, 4096));

  size_t row_base = 0;
  for (size_t i = 0; i < passes.size(); ++i) {
    const PassPlan& p = passes[i];
    const MetaLayout m = meta_layout(p.num_tokens, p.num_seqs, p.num_outputs, p.table_width,
                                     static_cast<int32_t>(p.masked_ids.size()));
    PinnedBuffer& staging = staging_[i % 2];
    LT_CUDA_CHECK(cudaEventSynchronize(staged_[i % 2]));  // its previous copy has been consumed
    pack_meta(p, m, staging.get<std::byte>());
    LT_CUDA_CHECK(
        cudaMemcpyAsync(meta_.get(), staging.get(), m.total, cudaMemcpyHostToDevice, stream_));
    LT_CUDA_CHECK(cudaEventRecord(staged_[i % 2], stream_));
    if (p.graphable) {
      graphs_.run(p.key, stream_, [&] { body(p, m, w, kv); });
    } else {
      ++ungraphable_passes_;
      body(p, m, w, kv);
    }
    LT_CUDA_CHECK(cudaMemcpyAsync(results_.get<char>() + row_base * 12, out_.get(),
                                  static_cast<size_t>(p.num_outputs) * 12, cudaMemcpyDeviceToHost,
                                  stream_));
    row_base += static_cast<size_t>(p.num_outputs);
  }
  LT_CUDA_CHECK(cudaStreamSynchronize(stream_));

  std::vector<TokenOutput> outs;
  row_base = 0;
  for (const auto& p : passes) {
    const char* base = results_.get<char>() + row_base * 12;
    const auto* tok = reinterpret_cast<const int32_t*>(base);
    const auto* lp = reinterpret_cast<const float*>(tok + p.num_outputs);
    const float* tlp = lp + p.num_outputs;
    for (int32_t r = 0; r < p.real_outputs; ++r) {
      TokenOutput o;
      o.sampled = tok[r];
      o.sampled_logprob = lp[r];
      o.next_input_logprob = tlp[r];  // NaN from the kernel where the target is -1
      outs.push_back(o);
    }
    row_base += static_cast<size_t>(p.num_outputs);
  }
  return outs;
}

void ForwardRunner::move_kv_rows(const KvPool& kv, std::span<const int32_t> src,
                                 std::span<const int32_t> dst, std::span<const int32_t> group_start) {
  if (src.empty() || group_start.size() < 2) return;
  std::vector<int32_t> meta(src.begin(), src.end());
  meta.insert(meta.end(), dst.begin(), dst.end());
  meta.insert(meta.end(), group_start.begin(), group_start.end());
  const size_t bytes = meta.size() * 4;
  if (moves_.bytes() < bytes) {
    LT_CUDA_CHECK(cudaStreamSynchronize(stream_));  // the old buffer may still be read
    moves_ = DeviceBuffer(std::max<size_t>(bytes * 2, 4096));
  }
  // Pageable source: the copy is staged before the call returns, ordered on the stream.
  LT_CUDA_CHECK(cudaMemcpyAsync(moves_.get(), meta.data(), bytes, cudaMemcpyHostToDevice, stream_));
  const int32_t* d = moves_.get<int32_t>();
  const int32_t row_bytes = config_.num_kv_heads * config_.head_dim * 2;
  LT_KERNEL_CHECK(kernels::kv_cache_move_rows(
      kv.base, static_cast<int64_t>(kv.layer_bytes), 2 * config_.num_layers, row_bytes, d,
      d + src.size(), d + 2 * src.size(), static_cast<int32_t>(group_start.size()) - 1, stream_));
}

std::vector<float> ForwardRunner::last_logits(int32_t rows) {
  rows = std::clamp(rows, 0, limits_.max_outputs);
  std::vector<float> out(static_cast<size_t>(rows) * config_.vocab_size);
  LT_CUDA_CHECK(cudaStreamSynchronize(stream_));
  LT_CUDA_CHECK(cudaMemcpy(out.data(), logits_.get(), out.size() * sizeof(float),
                           cudaMemcpyDeviceToHost));
  return out;
}

}  // namespace longtail::policy::cuda
