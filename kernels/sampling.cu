// Sampling (the rule of reference.h's sample_row, LogRounding::kCorrect) and row argmax. One block
// per row of fp32 logits:
//   pass 1: max and sum of exp over z = logits / T (T = 1 when greedy), the greedy argmax, and the
//           logprob of the given target token;
//   top-k:  exact radix select (8 bits per pass) of the k-th largest 64-bit key
//           (order-preserving bits of z, then ~index, so ties rank the lowest index first);
//   top-p:  the same radix descent weighing each bucket by its candidates' fp64 mass
//           exp(z - max): the largest key whose cumulative mass (in sorted order) reaches top_p of
//           the candidates' total, i.e. the shortest sorted prefix, with no sort;
//   draw:   Gumbel-max over the candidates, key = z + (-logf(-logf(u))) in float as the
//           reference forms it, u = sampling_uniform(seed, uid, position, i); logf is evaluated as
//           float(log(double)), i.e. correctly rounded, never the approximate device logf.
// Top-p compares the normalised cumulative mass with top_p exactly like ref::sample_row; only
// the fp64 summation order differs (buckets instead of a serial walk), which could move the
// boundary only when the cumulative mass lands within ~1e-15 of top_p.
// A radix descent stops early once the chosen bucket holds a single element.
#include <cfloat>
#include <cmath>

#include "kernels/common.cuh"
#include "kernels/philox.h"

namespace longtail::kernels {
using namespace detail;

namespace {

constexpr int kThreads = 512;
constexpr int kWarps = kThreads / 32;

// Order-preserving map of floats (no NaN) to unsigned integers, and back.
__device__ __forceinline__ uint32_t float_ord(float z) {
  const uint32_t u = __float_as_uint(z);
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}
__device__ __forceinline__ float ord_float(uint32_t o) {
  return __uint_as_float((o & 0x80000000u) ? (o & 0x7FFFFFFFu) : ~o);
}

__device__ __forceinline__ uint64_t sort_key(float z, int32_t i) {
  if (z == 0.0f) z = 0.0f;  // -0 ranks like +0, as the comparison-based reference does
  return (static_cast<uint64_t>(float_ord(z)) << 32) | (0xFFFFFFFFu - static_cast<uint32_t>(i));
}

// Largest Gumbel noise -logf(-logf(u)) can reach (u <= 1 - 2^-24): 16.63553, rounded up with room.
constexpr double kGumbelMax = 16.7;

struct SelectSmem {
  double hist_w[256];
  uint32_t hist_c[256];
  uint64_t prefix;
  double above;
  double target;  // k (counts) or top_p (mass, compared with cumulative mass / total)
  double total;
  int32_t single;  // 1 when the chosen bucket holds one element
};

// Largest key K with weight({key >= K} among candidates) >= target, candidates = keys >= lower.
// weight: element count (mass == false, target = k) or fp64 mass exp(z - zmax) (mass == true,
// target = top_p against cumulative mass / total, total taken from the first pass's histogram).
__device__ uint64_t radix_select(const float* row, int32_t vocab, float temp, uint64_t lower,
                                 bool mass, double target_or_top_p, float zmax, SelectSmem& sm) {
  if (threadIdx.x == 0) {
    sm.prefix = 0;
    sm.above = 0;
    sm.single = 0;
    sm.target = target_or_top_p;
  }
  for (int level = 0; level < 8; ++level) {
    const int shift = 56 - 8 * level;
    for (int d = threadIdx.x; d < 256; d += kThreads) {
      sm.hist_w[d] = 0;
      sm.hist_c[d] = 0;
    }
    __syncthreads();
    const uint64_t prefix = sm.prefix;
    const uint64_t hi_mask = level == 0 ? 0 : (~0ull << (shift + 8));
    for (int32_t i = threadIdx.x; i < vocab; i += kThreads) {
      const float zz = row[i] / temp;
      const uint64_t key = sort_key(zz, i);
      if (key < lower || (key & hi_mask) != (prefix & hi_mask)) continue;
      const int d = static_cast<int>((key >> shift) & 255u);
      atomicAdd(&sm.hist_c[d], 1u);
      if (mass) atomicAdd(&sm.hist_w[d], exp(static_cast<double>(zz) - static_cast<double>(zmax)));
    }
    __syncthreads();
    if (threadIdx.x == 0) {
      if (mass && level == 0) {
        double total = 0;
        for (int d = 0; d < 256; ++d) total += sm.hist_w[d];
        sm.total = total;
      }
      double cum = sm.above;
      int chosen = -1;
      for (int d = 255; d >= 0; --d) {
        if (sm.hist_c[d] == 0) continue;
        const double w = mass ? sm.hist_w[d] : static_cast<double>(sm.hist_c[d]);
        if ((mass ? (cum + w) / sm.total : cum + w) >= sm.target) {
          chosen = d;
          break;
        }
        cum += w;
      }
      if (chosen < 0) {  // fp64 rounding left the total just short: take the whole range
        cum = sm.above;
        for (int d = 255; d >= 0; --d) {
          if (sm.hist_c[d] == 0) continue;
          chosen = d;
          const double w = mass ? sm.hist_w[d] : static_cast<double>(sm.hist_c[d]);
          cum += w;
        }
        cum -= mass ? sm.hist_w[chosen] : static_cast<double>(sm.hist_c[chosen]);
      }
      sm.above = cum;
      sm.prefix = prefix | (static_cast<uint64_t>(chosen) << shift);
      sm.single = sm.hist_c[chosen] == 1u;
    }
    __syncthreads();
    if (sm.single) {
      // One element carries this prefix: its own key is the answer.
      const uint64_t p2 = sm.prefix;
      const uint64_t mask2 = ~0ull << shift;
      __syncthreads();
      for (int32_t i = threadIdx.x; i < vocab; i += kThreads) {
        const uint64_t key = sort_key(row[i] / temp, i);
        if (key >= lower && (key & mask2) == p2) sm.prefix = key;
      }
      __syncthreads();
      break;
    }
  }
  const uint64_t result = sm.prefix;
  __syncthreads();
  return result;
}

struct Best {
  double key;
  int32_t idx;
};

__device__ __forceinline__ Best better(Best a, Best b) {
  if (b.idx < 0) return a;
  if (a.idx < 0) return b;
  if (b.key > a.key || (b.key == a.key && b.idx < a.idx)) return b;
  return a;
}

__device__ Best block_best(Best v, Best* scratch) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    Best other{__shfl_xor_sync(0xffffffffu, v.key, o), __shfl_xor_sync(0xffffffffu, v.idx, o)};
    v = better(v, other);
  }
  __syncthreads();
  if ((threadIdx.x & 31) == 0) scratch[threadIdx.x >> 5] = v;
  __syncthreads();
  if (threadIdx.x < 32) {
    v = threadIdx.x < kWarps ? scratch[threadIdx.x] : Best{0.0, -1};
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
      Best other{__shfl_xor_sync(0xffffffffu, v.key, o), __shfl_xor_sync(0xffffffffu, v.idx, o)};
      v = better(v, other);
    }
    if (threadIdx.x == 0) scratch[0] = v;
  }
  __syncthreads();
  const Best r = scratch[0];
  __syncthreads();
  return r;
}

__global__ void __launch_bounds__(kThreads)
    sample_kernel(const float* __restrict__ logits, int64_t stride, int32_t vocab,
                  const SamplingRow* __restrict__ params, const int32_t* __restrict__ targets,
                  int32_t* __restrict__ tokens, float* __restrict__ logprobs,
                  float* __restrict__ target_logprobs) {
  __shared__ SelectSmem sm;
  __shared__ Best best_scratch[kWarps];
  __shared__ float fscratch[2 * kWarps];
  __shared__ uint32_t best_key_ord;  // float_ord of a Gumbel key some candidate reached
  if (threadIdx.x == 0) best_key_ord = float_ord(-INFINITY);
  const int64_t r = blockIdx.x;
  const float* row = logits + r * stride;
  const SamplingRow p = params[r];
  const bool greedy = !(p.temperature > 0.0f);
  const float temp = greedy ? 1.0f : p.temperature;

  // Pass 1: online max / sum-exp of z, and the argmax (lowest index on ties).
  float m = -INFINITY, s = 0.0f;
  Best arg{-INFINITY, -1};
  for (int32_t i = threadIdx.x; i < vocab; i += kThreads) {
    const float z = row[i] / temp;
    if (arg.idx < 0 || z > arg.key) arg = Best{z, i};
    if (z == -INFINITY) continue;
    if (z > m) {
      s = s * expf(m - z) + 1.0f;
      m = z;
    } else {
      s += expf(z - m);
    }
  }
  const float mt = warp_max(m);
  {
    float sw = m == -INFINITY ? 0.0f : s * expf(m - mt);
    sw = warp_sum(sw);
    if ((threadIdx.x & 31) == 0) {
      fscratch[threadIdx.x >> 5] = mt;
      fscratch[kWarps + (threadIdx.x >> 5)] = sw;
    }
  }
  __syncthreads();
  float zmax = -INFINITY;
  for (int w = 0; w < kWarps; ++w) zmax = fmaxf(zmax, fscratch[w]);
  float sum = 0.0f;
  for (int w = 0; w < kWarps; ++w) {
    if (fscratch[w] != -INFINITY) sum += fscratch[kWarps + w] * expf(fscratch[w] - zmax);
  }
  const float log_z = zmax + logf(sum);
  __syncthreads();

  int32_t token;
  if (greedy) {
    token = block_best(arg, best_scratch).idx;
  } else {
    uint64_t lower = 0;
    if (p.top_k > 0 && p.top_k < vocab) {
      lower = radix_select(row, vocab, temp, 0, false, static_cast<double>(p.top_k), zmax, sm);
    }
    if (p.top_p < 1.0f) {
      lower = radix_select(row, vocab, temp, lower, true, static_cast<double>(p.top_p), zmax, sm);
    }
    // Exact pruning: any key is <= z + g_max, and the winner's key is >= every key reached so
    // far (kept block-wide in shared memory) and >= zmax + g_min (the top element is always a
    // candidate; g_min = -2.853). An entry whose z + g_max is clearly below either bound cannot
    // win nor tie, so its Philox draw and logs are skipped; the result equals the unpruned one.
    // On a trained LM's peaked logits this skips almost the whole vocabulary.
    const double floor_key = static_cast<double>(zmax) - 2.86;
    Best b{-INFINITY, -1};
    float published = -INFINITY;
    for (int32_t i = threadIdx.x; i < vocab; i += kThreads) {
      const float z = row[i] / temp;
      const double reached = static_cast<double>(
          ord_float(*reinterpret_cast<volatile uint32_t*>(&best_key_ord)));
      const double bound = fmax(floor_key, reached);
      const double zmaxkey = static_cast<double>(z) + kGumbelMax;
      if (zmaxkey + 1e-6 * fabs(bound) < bound || sort_key(z, i) < lower) continue;
      const float u = sampling_uniform(p.seed, p.uid, p.position, static_cast<uint32_t>(i));
      const float inner = static_cast<float>(log(static_cast<double>(u)));
      const float g = -static_cast<float>(log(static_cast<double>(-inner)));
      const float key = z + g;
      b = better(b, Best{static_cast<double>(key), i});
      if (key > published) {
        published = key;
        atomicMax(&best_key_ord, float_ord(key));
      }
    }
    token = block_best(b, best_scratch).idx;
  }
  if (threadIdx.x == 0) {
    tokens[r] = token;
    logprobs[r] = row[token] / temp - log_z;
    if (target_logprobs != nullptr) {
      const int32_t t = targets != nullptr ? targets[r] : -1;
      target_logprobs[r] = (t >= 0 && t < vocab) ? row[t] / temp - log_z : __int_as_float(0x7fc00000);
    }
  }
}

__global__ void __launch_bounds__(kThreads)
    argmax_kernel(const float* __restrict__ x, int64_t stride, int32_t cols,
                  int32_t* __restrict__ out_index, float* __restrict__ out_values) {
  __shared__ Best scratch[kWarps];
  const float* row = x + static_cast<int64_t>(blockIdx.x) * stride;
  Best b{-INFINITY, -1};
  for (int32_t i = threadIdx.x; i < cols; i += kThreads) {
    const float v = row[i];
    if (b.idx < 0 || v > b.key) b = Best{v, i};
  }
  b = block_best(b, scratch);
  if (threadIdx.x == 0) {
    out_index[blockIdx.x] = b.idx;
    if (out_values != nullptr) out_values[blockIdx.x] = row[b.idx];
  }
}

}  // namespace

Status sample_rows(const float* logits, int64_t logits_stride, int64_t num_rows, int32_t vocab,
                   const SamplingRow* rows, const int32_t* target_tokens, int32_t* tokens,
                   float* logprobs, float* target_logprobs, Stream stream) {
  constexpr const char* kName = "sample_rows";
  if (num_rows < 0 || vocab <= 0) return invalid(kName, "num_rows must be >= 0 and vocab > 0");
  if (num_rows == 0) return Status::kOk;
  if (logits == nullptr || rows == nullptr || tokens == nullptr || logprobs == nullptr) {
    return invalid(kName, "logits, rows, tokens and logprobs must be non-null");
  }
  if (logits_stride < vocab) return invalid(kName, "logits_stride must be >= vocab");
  if (num_rows > 0x7fffffff) return invalid(kName, "num_rows exceeds 2^31-1");
  sample_kernel<<<static_cast<unsigned>(num_rows), kThreads, 0, stream>>>(
      logits, logits_stride, vocab, rows, target_tokens, tokens, logprobs, target_logprobs);
  return launched(kName);
}

Status argmax_rows(const float* x, int64_t stride, int64_t num_rows, int32_t cols,
                   int32_t* out_index, float* out_values, Stream stream) {
  constexpr const char* kName = "argmax_rows";
  if (num_rows < 0 || cols <= 0) return invalid(kName, "num_rows must be >= 0 and cols > 0");
  if (num_rows == 0) return Status::kOk;
  if (x == nullptr || out_index == nullptr) return invalid(kName, "x and out_index must be non-null");
  if (stride < cols) return invalid(kName, "stride must be >= cols");
  if (num_rows > 0x7fffffff) return invalid(kName, "num_rows exceeds 2^31-1");
  argmax_kernel<<<static_cast<unsigned>(num_rows), kThreads, 0, stream>>>(x, stride, cols,
                                                                         out_index, out_values);
  return launched(kName);
}

}  // namespace longtail::kernels
