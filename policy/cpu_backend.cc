// CpuBackend: validation first (so a bad request changes nothing), then one pass over all new
// tokens of all chunks through the layers, each token attending to its own sequence's cache, then
// logits and sampling only for the rows that asked for outputs. A token-tree input attends to the
// committed context and then its ancestors in depth order, the keys and order a chain of the same
// path would use, so a tree node's logits are bitwise those of the chain (and of plain decoding).
#include "policy/cpu_backend.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>
#include <unordered_set>

#include <spdlog/spdlog.h>

namespace longtail::policy {

CpuBackend::CpuBackend(const std::filesystem::path& dir, const BackendOptions& opts)
    : weights_(std::make_unique<CpuWeights>(load_cpu_weights(dir))),
      pool_(opts.num_threads),
      kv_(opts.max_kv_tokens, opts.kv_block_size) {
  config_ = weights_->config;
  spdlog::info("cpu backend: {} ({} layers, hidden {}), {} threads, {}", weights_->config.architecture_name,
               weights_->config.num_layers, weights_->config.hidden_size, pool_.size(), kv_.describe());
}

CpuBackend::Sequence& CpuBackend::seq_ref(int64_t seq) {
  auto it = seqs_.find(seq);
  if (it == seqs_.end()) throw std::invalid_argument("unknown sequence handle " + std::to_string(seq));
  return it->second;
}

const CpuBackend::Sequence& CpuBackend::seq_ref(int64_t seq) const {
  auto it = seqs_.find(seq);
  if (it == seqs_.end()) throw std::invalid_argument("unknown sequence handle " + std::to_string(seq));
  return it->second;
}

void CpuBackend::check_awake(const char* what) const {
  if (sleep_level_ > 0)
    throw std::logic_error(std::string("cpu backend: ") + what + " while asleep (level " +
                           std::to_string(sleep_level_) + "): wake_up() first");
}

int64_t CpuBackend::create_sequence() {
  check_awake("create_sequence");
  const int64_t h = next_handle_++;
  Sequence s;
  s.k.resize(config_.num_layers);
  s.v.resize(config_.num_layers);
  seqs_.emplace(h, std::move(s));
  return h;
}

void CpuBackend::release_sequence(int64_t seq) {
  const Sequence& s = seq_ref(seq);
  kv_.resize(s.length, 0);
  seqs_.erase(seq);
}

int32_t CpuBackend::sequence_length(int64_t seq) const { return seq_ref(seq).length; }

void CpuBackend::truncate(int64_t seq, int32_t new_length) {
  Sequence& s = seq_ref(seq);
  if (new_length < 0 || new_length > s.length) {
    throw std::invalid_argument("truncate: new length " + std::to_string(new_length) +
                                " outside [0, " + std::to_string(s.length) + "] for sequence " +
                                std::to_string(seq));
  }
  const size_t kvd = static_cast<size_t>(config_.num_kv_heads) * config_.head_dim;
  for (auto& k : s.k) k.resize(static_cast<size_t>(new_length) * kvd);
  for (auto& v : s.v) v.resize(static_cast<size_t>(new_length) * kvd);
  kv_.resize(s.length, new_length);
  s.length = new_length;
}

KvCapacity CpuBackend::kv_capacity() const {
  if (sleep_level_ > 0) return KvCapacity{0, 0, kv_.block_size()};
  return kv_.capacity();
}

bool CpuBackend::can_fit(std::span<const KvGrowth> batch) const {
  if (sleep_level_ > 0) return false;
  return kv_.can_fit(batch, [&](int64_t seq) { return seq_ref(seq).length; });
}

std::vector<TokenOutput> CpuBackend::forward(std::span<const SequenceChunk> chunks) {
  return forward_with_logits(chunks, nullptr);
}

std::vector<TokenOutput> CpuBackend::forward_with_logits(std::span<const SequenceChunk> chunks,
                                                         std::vector<float>* logits_out) {
  check_awake("forward");
  const CpuWeights& W = *weights_;
  const ModelConfig& c = W.config;
  const int64_t H = c.hidden_size, D = c.head_dim, I = c.intermediate_size, V = c.vocab_size;
  const int64_t nh = c.num_heads, nkv = c.num_kv_heads, group = nh / nkv;
  const int64_t qd = nh * D, kvd = nkv * D, ld = qd + 2 * kvd;

  // ---- validation: nothing is modified until all of it passed ----
  std::unordered_set<int64_t> seen;
  int64_t total = 0, n_out = 0, new_blocks = 0;
  std::vector<Sequence*> seq_of(chunks.size());
  std::vector<std::vector<int32_t>> offsets(chunks.size());  // input positions - length
  for (size_t ci = 0; ci < chunks.size(); ++ci) {
    const SequenceChunk& ch = chunks[ci];
    const std::string where = "forward: chunk " + std::to_string(ci) + " (sequence " + std::to_string(ch.seq) + ")";
    auto it = seqs_.find(ch.seq);
    if (it == seqs_.end()) throw std::invalid_argument(where + ": unknown sequence handle");
    if (!seen.insert(ch.seq).second) throw std::invalid_argument(where + ": sequence appears twice in one forward");
    const int64_t len = it->second.length;
    if (auto e = check_chunk(ch, it->second.length, c, offsets[ci])) throw std::invalid_argument(where + ": " + *e);
    const int64_t n = static_cast<int64_t>(ch.tokens.size());
    new_blocks += kv_.growth(len, len + n);
    total += n;
    n_out += n - ch.first_output;
    seq_of[ci] = &it->second;
  }
  kv_.check_fits(new_blocks);
  if (total == 0) return {};

  // ---- rows: one per new token ----
  // A row attends to cache rows [0, context) and then to tree_keys[keys_begin, keys_end): for a
  // chain context = pos + 1 and no tree keys; for a tree input context = the committed length and
  // the tree keys are its ancestors' rows, root first, then its own.
  struct Row {
    Sequence* seq;
    int64_t slot;  // cache row its K/V are written to
    int64_t pos;   // its position (rotary angle, sampling key)
    int64_t context;
    size_t keys_begin = 0, keys_end = 0;
  };
  std::vector<Row> rows;
  rows.reserve(total);
  std::vector<int64_t> tree_keys;
  std::vector<float> x(static_cast<size_t>(total * H));
  for (size_t ci = 0; ci < chunks.size(); ++ci) {
    Sequence* s = seq_of[ci];
    const SequenceChunk& ch = chunks[ci];
    for (size_t i = 0; i < ch.tokens.size(); ++i) {
      const int32_t tok = ch.tokens[i];
      std::copy_n(W.embed.data() + tok * H, H, x.data() + rows.size() * H);
      const int64_t slot = s->length + static_cast<int64_t>(i);
      Row row{s, slot, s->length + offsets[ci][i], slot + 1};
      if (!ch.parents.empty()) {
        row.context = s->length;
        row.keys_begin = tree_keys.size();
        for (int64_t a = static_cast<int64_t>(i); a >= 0; a = ch.parents[a]) tree_keys.push_back(s->length + a);
        std::reverse(tree_keys.begin() + static_cast<std::ptrdiff_t>(row.keys_begin), tree_keys.end());
        row.keys_end = tree_keys.size();
      }
      rows.push_back(row);
    }
    for (int l = 0; l < c.num_layers; ++l) {
      s->k[l].resize(static_cast<size_t>((s->length + chunks[ci].tokens.size()) * kvd));
      s->v[l].resize(static_cast<size_t>((s->length + chunks[ci].tokens.size()) * kvd));
    }
  }
  for (size_t ci = 0; ci < chunks.size(); ++ci) {
    kv_.resize(seq_of[ci]->length, seq_of[ci]->length + static_cast<int64_t>(chunks[ci].tokens.size()));
  }

  std::vector<float> h(x.size()), qkv(static_cast<size_t>(total * ld)), attn(static_cast<size_t>(total * qd));
  std::vector<float> tmp(x.size()), gu(static_cast<size_t>(total * 2 * I)), act(static_cast<size_t>(total * I));
  const float eps = static_cast<float>(c.rms_norm_eps);
  const float scale = 1.0f / std::sqrt(static_cast<float>(D));

  for (int l = 0; l < c.num_layers; ++l) {
    const CpuLayerWeights& L = W.layers[l];
    h = x;
    pool_.parallel_for(total, [&](int64_t b, int64_t e) {
      for (int64_t t = b; t < e; ++t) rms_norm(h.data() + t * H, H, L.attn_norm.data(), eps);
    });
    matmul(pool_, h.data(), total, H, L.wqkv.data(), ld, L.bqkv.empty() ? nullptr : L.bqkv.data(), qkv.data());
    pool_.parallel_for(total, [&](int64_t b, int64_t e) {
      for (int64_t t = b; t < e; ++t) {
        float* q = qkv.data() + t * ld;
        float* k = q + qd;
        const float* v = k + kvd;
        for (int64_t hh = 0; hh < nh; ++hh) {
          if (c.qk_norm) rms_norm(q + hh * D, D, L.q_norm.data(), eps);
          apply_rope(q + hh * D, D, W.inv_freq.data(), rows[t].pos);
        }
        for (int64_t g = 0; g < nkv; ++g) {
          if (c.qk_norm) rms_norm(k + g * D, D, L.k_norm.data(), eps);
          apply_rope(k + g * D, D, W.inv_freq.data(), rows[t].pos);
        }
        std::copy_n(k, kvd, rows[t].seq->k[l].data() + rows[t].slot * kvd);
        std::copy_n(v, kvd, rows[t].seq->v[l].data() + rows[t].slot * kvd);
      }
    });
    pool_.parallel_for(total * nh, [&](int64_t b, int64_t e) {
      std::vector<float> scores;
      for (int64_t task = b; task < e; ++task) {
        const int64_t t = task / nh, hh = task % nh, g = hh / group;
        const float* q = qkv.data() + t * ld + hh * D;
        const float* K = rows[t].seq->k[l].data();
        const float* Vc = rows[t].seq->v[l].data();
        const Row& row = rows[t];
        const int64_t n = row.context + static_cast<int64_t>(row.keys_end - row.keys_begin);
        const auto key_row = [&](int64_t j) {
          return j < row.context ? j : tree_keys[row.keys_begin + static_cast<size_t>(j - row.context)];
        };
        scores.resize(static_cast<size_t>(n));
        float m = -std::numeric_limits<float>::infinity();
        for (int64_t j = 0; j < n; ++j) {
          scores[j] = dot(q, K + key_row(j) * kvd + g * D, D) * scale;
          m = std::max(m, scores[j]);
        }
        float sum = 0;
        for (int64_t j = 0; j < n; ++j) {
          scores[j] = std::exp(scores[j] - m);
          sum += scores[j];
        }
        const float inv = 1.0f / sum;
        float* out = attn.data() + t * qd + hh * D;
        std::fill_n(out, D, 0.0f);
        for (int64_t j = 0; j < n; ++j) {
          const float p = scores[j] * inv;
          const float* vr = Vc + key_row(j) * kvd + g * D;
          for (int64_t d = 0; d < D; ++d) out[d] += p * vr[d];
        }
      }
    });
    matmul(pool_, attn.data(), total, qd, L.wo.data(), H, nullptr, tmp.data());
    for (size_t i = 0; i < x.size(); ++i) x[i] += tmp[i];
    h = x;
    pool_.parallel_for(total, [&](int64_t b, int64_t e) {
      for (int64_t t = b; t < e; ++t) rms_norm(h.data() + t * H, H, L.mlp_norm.data(), eps);
    });
    matmul(pool_, h.data(), total, H, L.w_gate_up.data(), 2 * I, nullptr, gu.data());
    for (int64_t t = 0; t < total; ++t) {
      const float* gate = gu.data() + t * 2 * I;
      const float* up = gate + I;
      float* a = act.data() + t * I;
      for (int64_t i = 0; i < I; ++i) a[i] = gate[i] / (1.0f + std::exp(-gate[i])) * up[i];
    }
    matmul(pool_, act.data(), total, I, L.w_down.data(), H, nullptr, tmp.data());
    for (size_t i = 0; i < x.size(); ++i) x[i] += tmp[i];
  }

  // ---- outputs: final norm, logits and sampling for requested rows only ----
  struct OutRow {
    size_t chunk;
    int64_t index;  // input index within the chunk
    int64_t pos;    // absolute position of that input token
    int64_t next;   // the next given input (a tree: the first child), -1 when none
  };
  std::vector<OutRow> outs;
  outs.reserve(n_out);
  std::vector<float> hf(static_cast<size_t>(n_out * H));
  {
    int64_t r = 0;
    std::vector<int64_t> next;
    for (size_t ci = 0; ci < chunks.size(); ++ci) {
      const SequenceChunk& ch = chunks[ci];
      const int64_t n = static_cast<int64_t>(ch.tokens.size());
      next.assign(static_cast<size_t>(n), -1);
      for (int64_t i = n - 1; i >= 1; --i) {
        const int64_t p = ch.parents.empty() ? i - 1 : ch.parents[i];
        if (p >= 0) next[p] = i;  // descending, so the lowest-index child is the one left
      }
      for (int64_t i = 0; i < n; ++i, ++r) {
        if (i < ch.first_output) continue;
        std::copy_n(x.data() + r * H, H, hf.data() + outs.size() * H);
        rms_norm(hf.data() + outs.size() * H, H, W.final_norm.data(), eps);
        outs.push_back({ci, i, rows[r].pos, next[i]});
      }
    }
  }
  std::vector<float> logits(static_cast<size_t>(n_out * V));
  if (n_out > 0) matmul(pool_, hf.data(), n_out, H, W.lm_head_data(), V, nullptr, logits.data());
  std::vector<TokenOutput> result(static_cast<size_t>(n_out));
  pool_.parallel_for(n_out, [&](int64_t b, int64_t e) {
    for (int64_t o = b; o < e; ++o) {
      const SequenceChunk& ch = chunks[outs[o].chunk];
      const std::span<const float> row(logits.data() + o * V, static_cast<size_t>(V));
      const SampledToken s = sample_token(row, ch.sampling, ch.uid, outs[o].pos + 1);
      result[o].sampled = s.token;
      result[o].sampled_logprob = s.logprob;
      if (outs[o].next >= 0) {
        result[o].next_input_logprob = score_token(row, ch.sampling, outs[o].pos + 1, ch.tokens[outs[o].next]);
      }
    }
  });
  for (size_t ci = 0; ci < chunks.size(); ++ci) seq_of[ci]->length += static_cast<int32_t>(chunks[ci].tokens.size());
  if (logits_out != nullptr) *logits_out = std::move(logits);
  return result;
}

void CpuBackend::compact_kv(int64_t seq, int32_t start, std::span<const int32_t> keep) {
  Sequence& s = seq_ref(seq);
  check_compact_kv(s.length, start, keep);
  const size_t kvd = static_cast<size_t>(config_.num_kv_heads) * config_.head_dim;
  for (size_t j = 0; j < keep.size(); ++j) {
    const size_t from = (static_cast<size_t>(start) + keep[j]) * kvd, to = (static_cast<size_t>(start) + j) * kvd;
    if (from == to) continue;  // keep is increasing, so rows only move down and never overlap
    for (auto& k : s.k) std::copy_n(k.data() + from, kvd, k.data() + to);
    for (auto& v : s.v) std::copy_n(v.data() + from, kvd, v.data() + to);
  }
  truncate(seq, start + static_cast<int32_t>(keep.size()));
}

void CpuBackend::replace_weights(const std::filesystem::path& dir) { replace_weights(Checkpoint::open(dir)); }

void CpuBackend::replace_weights(const Checkpoint& weights) {
  if (!same_shapes(config_, weights.config())) {
    throw LoadError((weights.dir() / "config.json").string() + ": model shape differs from the loaded " +
                    config_.architecture_name + " (architecture, sizes, heads, bias, qk norm "
                    "and tied embeddings must all match)");
  }
  weights_ = std::make_unique<CpuWeights>(load_cpu_weights(weights));
  if (sleep_level_ == 2) sleep_level_ = 1;  // weights again: wake_up() may follow
  spdlog::info("cpu backend: weights replaced from {}", weights.dir().string());
}

namespace {

size_t weight_bytes(const CpuWeights& w) {
  size_t n = w.embed.size() + w.final_norm.size() + w.lm_head.size() + w.inv_freq.size();
  for (const CpuLayerWeights& l : w.layers)
    n += l.attn_norm.size() + l.wqkv.size() + l.bqkv.size() + l.q_norm.size() + l.k_norm.size() +
         l.wo.size() + l.mlp_norm.size() + l.w_gate_up.size() + l.w_down.size();
  return n * sizeof(float);
}

}  // namespace

size_t CpuBackend::sleep(int level) {
  if (level < 1 || level > max_sleep_level())
    throw std::logic_error("cpu backend: sleep level " + std::to_string(level) + " outside [1, 2]");
  if (!seqs_.empty())
    throw std::logic_error("cpu backend: cannot sleep with " + std::to_string(seqs_.size()) +
                           " live sequences (release them first)");
  if (level <= sleep_level_) return 0;
  size_t released = 0;
  if (level == 2 && weights_) {
    released = weight_bytes(*weights_);
    weights_.reset();
  }
  sleep_level_ = level;
  spdlog::info("cpu backend: asleep (level {}), {:.1f} MiB released", level, released / 1048576.0);
  return released;
}

size_t CpuBackend::wake_up() {
  if (sleep_level_ == 0) return 0;
  if (!weights_)
    throw std::logic_error("cpu backend: cannot wake up: level-2 sleep released the weights and none "
                           "were loaded since (replace_weights first)");
  sleep_level_ = 0;
  spdlog::info("cpu backend: awake");
  return 0;
}

std::unique_ptr<Backend> make_cpu_backend(const std::filesystem::path& dir, const BackendOptions& opts) {
  return std::make_unique<CpuBackend>(dir, opts);
}

}  // namespace longtail::policy
