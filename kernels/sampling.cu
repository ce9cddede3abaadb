// Sampling (the rule of reference.h's sample_row, LogRounding::kCorrect) and row argmax. A row of
// fp32 logits is cut into chunks of kChunk entries, a fixed size whatever the batch; a block takes
// one or several consecutive chunks of a row (more when the batch alone fills the GPU many times
// over, so that the next chunk's loads are in flight while the current one is reduced) and, in one
// pass over each chunk, reduces it to that chunk's own partial result, the same bits whichever
// block takes it:
//   max and sum of exp over z = logits / T (T = 1 when greedy), the argmax, and for rows drawn from
//   the whole vocabulary the Gumbel-max draw: key = z + (-logf(-logf(u))) in float as the reference
//   forms it, u = sampling_uniform(seed, uid, position, i) (one Philox call per group of four
//   entries), with logf evaluated as float(log(double)), i.e. correctly rounded, but only for
//   entries whose key can still reach the best key seen, by a log-free bound first and then the
//   device's accurate float logf (same token, almost no logs). The row's last block (a ticket per
//   row, counting chunks) combines the chunks in a fixed order;
//   for rows with min-p, top-k or top-p it then selects the candidates over the whole row:
//   min-p:  a lower bound on the key (z - zmax >= log(min_p) in fp64);
//   top-k:  exact radix select (8 bits per pass) of the k-th largest 64-bit key
//           (order-preserving bits of z, then ~index, so ties rank the lowest index first);
//   top-p:  the same radix descent weighing each bucket by its candidates' fp64 mass
//           exp(z - max): the largest key whose cumulative mass (in sorted order) reaches top_p of
//           the candidates' total, i.e. the shortest sorted prefix, with no sort;
//   and draws over the candidates, pruned the same way.
// Top-p compares the normalised cumulative mass with top_p exactly like ref::sample_row; only
// the fp64 summation order differs (buckets instead of a serial walk), which could move the
// boundary only when the cumulative mass lands within ~1e-15 of top_p.
// A radix descent stops early once the chosen bucket holds a single element.
#include <algorithm>
#include <cfloat>
#include <cmath>

#include "kernels/common.cuh"
#include "kernels/philox.h"

namespace longtail::kernels {
using namespace detail;

namespace {

constexpr int kThreads = 512;
constexpr int kWarps = kThreads / 32;
// Vocabulary entries per block. Fixed, so that a row's float sums (its logprob) are the same in
// any batch; 4096 spreads a 152k vocabulary over 38 blocks, enough to fill the GPU at batch 4.
constexpr int32_t kChunk = 4096;
constexpr int kPerThread = kChunk / kThreads;

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
// Smallest noise (u >= 2^-25): -2.853, rounded down with room, so the entry of the largest z
// keys at least zmax - kGumbelFloor, and so does the winner.
constexpr double kGumbelFloor = 2.86;

// How far a float evaluation of a key (accurate logf, a few ulp) may be trusted near `key`.
__host__ __device__ constexpr double key_margin(double key) {
  return 1e-3 + 1e-5 * (key < 0 ? -key : key);
}

// Rule 0 for one row: the ids it cannot draw (ascending, distinct), found by binary search; a row
// masks a handful of stop tokens, so the lookups cost little and only rows with a mask pay them.
struct RowMask {
  const int32_t* ids;
  int32_t count;
  __device__ int32_t lower_bound(int32_t i) const {
    int32_t lo = 0, hi = count;
    while (lo < hi) {
      const int32_t mid = (lo + hi) >> 1;
      if (ids[mid] < i) {
        lo = mid + 1;
      } else {
        hi = mid;
      }
    }
    return lo;
  }
  __device__ bool has(int32_t i) const {
    if (count == 0) return false;
    const int32_t at = lower_bound(i);
    return at < count && ids[at] == i;
  }
  // z = logits / T after rule 0.
  __device__ float z(const float* row, int32_t i, float temp) const {
    return has(i) ? -INFINITY : row[i] / temp;
  }
};

__device__ __forceinline__ double warp_sum_f64(double v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

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
__device__ uint64_t radix_select(const float* row, int32_t vocab, float temp, const RowMask& mask,
                                 uint64_t lower, bool mass, double target_or_top_p, float zmax,
                                 SelectSmem& sm) {
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
      const float zz = mask.z(row, i, temp);
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
        const uint64_t key = sort_key(mask.z(row, i, temp), i);
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

// One vocabulary chunk's share of a row: online max / sum of exp over z (rule 3 raw: unmasked),
// the argmax and (for rows drawn from the whole vocabulary) the chunk's best Gumbel key (both
// masked), the masked max, and for processed rows drawn from the whole vocabulary the fp64 sum of
// exp(z - pm) over the unmasked entries (the normaliser of rule 3 processed).
struct Partial {
  float m, s;
  float arg_z;
  int32_t arg_idx;
  float key;
  int32_t key_idx;
  float pm;
  float unused;
  double ps;
};
static_assert(sizeof(Partial) == 40);

__host__ __device__ constexpr int64_t chunks_of(int32_t vocab) { return (vocab + kChunk - 1) / kChunk; }
// Rows a workspace of `bytes` serves for this vocabulary; its layout depends on nothing else, so
// the tickets stay where they were between calls of any row count.
// 8 bytes of slack let the partials start 8-byte aligned after the tickets.
__host__ __device__ constexpr int64_t workspace_rows(size_t bytes, int32_t vocab) {
  return bytes < 8 ? 0
                   : static_cast<int64_t>((bytes - 8) /
                                          (sizeof(uint32_t) + sizeof(Partial) * chunks_of(vocab)));
}

// True when no Gumbel noise can lift z to `bound` (the noise is at most kGumbelMax).
__device__ __forceinline__ bool below_reach(float z, double bound) {
  return static_cast<double>(z) + kGumbelMax + 1e-6 * fabs(bound) < bound;
}

// -log(u) >= 1 - u, so the noise -log(-log u) is at most -log(1 - u), and z + noise is below
// bound - margin whenever 1 - u > exp(z - (bound - margin)): true means the key cannot reach
// `bound`. One __expf, no logs (its relative error is far below the 1% allowed for it; 1 - u is
// exact for u >= 1/2 and at least 2^-24).
__device__ __forceinline__ bool noise_cannot_reach(float z, float u, double bound) {
  const double margin = key_margin(bound);
  return 1.0f - u > 1.01f * __expf(z - static_cast<float>(bound - margin));
}

// The exact Gumbel key z + -logf(-logf(u)) (correctly rounded logs), or -inf when it cannot reach
// `bound`, a key some candidate is known to reach or exceed: by the log-free bound, or by the
// device's accurate float logf (within a few ulp, far inside `margin`).
__device__ __forceinline__ float gumbel_key_if_reachable(float z, float u, double bound) {
  if (noise_cannot_reach(z, u, bound)) return -INFINITY;
  const float approx = z - logf(-logf(u));
  if (static_cast<double>(approx) + key_margin(bound) < bound) return -INFINITY;
  const float inner = static_cast<float>(log(static_cast<double>(u)));
  return z + -static_cast<float>(log(static_cast<double>(-inner)));
}

// Smallest sort key of a min-p candidate: double(z) - double(zmax) >= log(min_p) (reference.h),
// i.e. every key whose z is at least the smallest float meeting that test.
__device__ uint64_t min_p_lower(float zmax, float min_p) {
  const double floor = log(static_cast<double>(min_p));
  auto keeps = [&](float z) { return static_cast<double>(z) - static_cast<double>(zmax) >= floor; };
  float z = static_cast<float>(static_cast<double>(zmax) + floor);
  while (!keeps(z)) z = nextafterf(z, INFINITY);
  while (keeps(nextafterf(z, -INFINITY))) z = nextafterf(z, -INFINITY);
  if (z == 0.0f) z = 0.0f;
  return static_cast<uint64_t>(float_ord(z)) << 32;
}

// Loads the raw logits of the chunk at `begin`, this thread's entries (-inf past the vocabulary).
__device__ __forceinline__ void load_chunk(const float* row, int32_t begin, int32_t vocab,
                                           float (&raw)[kPerThread]) {
#pragma unroll
  for (int j = 0; j < kPerThread; ++j) {
    const int32_t i = begin + j * kThreads + static_cast<int32_t>(threadIdx.x);
    raw[j] = i < vocab ? row[i] : -INFINITY;
  }
}

// Grid (rows, ceil(chunks / per_block)). Block (r, y) reduces chunks y * per_block, ... of row r
// (fewer at the row's end), one after the other, each to its own Partial exactly as a block of one
// chunk would; the next chunk's loads are issued before the current one is reduced, so the memory
// pipe stays busy through the reductions and barriers. The last block of a row to finish (a ticket
// per row, counting chunks, reset by that block) combines the chunks in order, and for a row with
// min-p / top-k / top-p it also runs the candidate selection and the draw over the whole row. Rule
// 0 (the mask) applies to the argmax, the draw, the candidates and the processed logprob; the raw
// logprob is over the unmasked logits (reference.h).
// (kThreads, 2) holds the registers to 64 with the next chunk's loads in flight, so that two blocks
// still fit on a multiprocessor.
__global__ void __launch_bounds__(kThreads, 2)
    sample_kernel(const float* __restrict__ logits, int64_t stride, int32_t vocab,
                  const SamplingRow* __restrict__ params, const int32_t* __restrict__ masked_ids,
                  const int32_t* __restrict__ targets, int32_t* __restrict__ tokens,
                  float* __restrict__ logprobs, float* __restrict__ target_logprobs,
                  Partial* __restrict__ parts, uint32_t* __restrict__ tickets, int32_t per_block) {
  wait_for_prior_kernels();
  __shared__ SelectSmem sm;
  __shared__ Best best_scratch[kWarps];
  __shared__ float fscratch[3 * kWarps];
  // The chunk's masked z, so that the draw can walk it in groups of four entries (one Philox call
  // each) after the first pass has found the chunk's maximum.
  __shared__ __align__(16) float chunk_z[kChunk];
  // The draw's queue: chunk offsets and uniforms of the entries the cheap bounds keep.
  __shared__ uint16_t queue_at[kChunk];
  __shared__ float queue_u[kChunk];
  __shared__ int queue_len;
  __shared__ uint32_t approx_ord;  // float_ord of the best float key in the queue
  __shared__ double dscratch[kWarps];
  __shared__ uint32_t best_key_ord;  // float_ord of a Gumbel key some candidate reached
  __shared__ bool last;
  __shared__ float row_zmax, row_log_z;
  __shared__ double row_log_zc;  // rule 3 processed normaliser of rows drawn from the whole vocab
  __shared__ Best row_arg, row_key;
  const int64_t r = blockIdx.x;
  const int32_t chunks = static_cast<int32_t>(chunks_of(vocab));
  const int32_t first = static_cast<int32_t>(blockIdx.y) * per_block;
  const int32_t own = min(per_block, chunks - first);  // chunks this block reduces
  const float* row = logits + r * stride;
  // The first chunk's loads need only the row's address: they go out before the row's parameters
  // (another dependent load) arrive; z = raw / T is formed when the chunk is reduced, the same
  // float division as a direct row[i] / T.
  float next[kPerThread];
  load_chunk(row, first * kChunk, vocab, next);
  if (threadIdx.x == 0) {
    best_key_ord = float_ord(-INFINITY);
    approx_ord = float_ord(-INFINITY);
    queue_len = 0;
  }
  __syncthreads();
  const SamplingRow p = params[r];
  const RowMask mask{masked_ids + p.mask_start, masked_ids != nullptr ? p.mask_count : 0};
  const bool greedy = !(p.temperature > 0.0f);
  const float temp = greedy ? 1.0f : p.temperature;
  const bool cut_k = p.top_k > 0 && p.top_k < vocab;
  const bool cut_p = p.top_p < 1.0f;
  const bool cut_min_p = p.min_p > 0.0f && p.min_p <= 1.0f;  // > 1 keeps nothing: the rule then draws from all
  const bool draw_all = !greedy && !cut_k && !cut_p && !cut_min_p;
  const bool processed = p.processed != 0;
  const bool chunk_mass = processed && draw_all;  // the chunks sum rule 3 processed's normaliser

  // The chunk: max / sum-exp of z, the argmax (lowest index on ties) and, when the row draws from
  // the whole vocabulary, the pruned Gumbel-max. Pruning is exact: any key is <= z + g_max, and
  // the winner's key is >= m + g_min for the chunk's masked max m (g_min = -2.853) and >= a key
  // some entry is known to reach; an entry clearly below either bound cannot win nor tie, so a
  // group of four whose entries all are skips its Philox call, and an entry whose key is clearly
  // below skips the logs. The result equals the unpruned one.
#pragma unroll 1
  for (int32_t c = 0; c < own; ++c) {
    const int32_t chunk = first + c;
    const int32_t begin = chunk * kChunk;
    float zs[kPerThread];
#pragma unroll
    for (int j = 0; j < kPerThread; ++j) zs[j] = next[j];
    // The next chunk's loads go out now and land while this one is reduced.
    if (c + 1 < own) load_chunk(row, begin + kChunk, vocab, next);
#pragma unroll
    for (int j = 0; j < kPerThread; ++j) {
      const int32_t i = begin + j * kThreads + static_cast<int32_t>(threadIdx.x);
      zs[j] = i < vocab ? zs[j] / temp : -INFINITY;
    }
    uint32_t masked_bits = 0;  // bit j: entry j of this thread is masked
    if (mask.count > 0) {
      for (int32_t q = mask.lower_bound(begin); q < mask.count; ++q) {
        const int32_t d = mask.ids[q] - begin;
        if (d >= kChunk) break;
        if (d % kThreads == static_cast<int32_t>(threadIdx.x)) masked_bits |= 1u << (d / kThreads);
      }
    }
    // Per thread: the max first, then the sum of exp over its entries in index order (one exp per
    // entry, no rescaling); the argmax in float.
    float m = -INFINITY, pm = -INFINITY, arg_z = -INFINITY;
    int32_t arg_i = -1;
    double ps = 0.0;
#pragma unroll
    for (int j = 0; j < kPerThread; ++j) {
      const int32_t i = begin + j * kThreads + static_cast<int32_t>(threadIdx.x);
      const float raw = zs[j];
      const float z = (masked_bits >> j) & 1u ? -INFINITY : raw;
      if (draw_all) chunk_z[j * kThreads + threadIdx.x] = z;
      if (i < vocab && (arg_i < 0 || z > arg_z)) {
        arg_z = z;
        arg_i = i;
      }
      m = fmaxf(m, raw);
      if (z == -INFINITY) continue;
      if (chunk_mass) {
        ps = z > pm ? ps * exp(static_cast<double>(pm) - static_cast<double>(z)) + 1.0
                    : ps + exp(static_cast<double>(z) - static_cast<double>(pm));
      }
      pm = fmaxf(pm, z);
    }
    float s = 0.0f;
    if (m != -INFINITY) {
#pragma unroll
      for (int j = 0; j < kPerThread; ++j) s += zs[j] == -INFINITY ? 0.0f : __expf(zs[j] - m);
    }
    Best arg{static_cast<double>(arg_z), arg_i}, b{-INFINITY, -1};
    const float mt = warp_max(m);
    const float pmt = warp_max(pm);
    {
      float sw = m == -INFINITY ? 0.0f : s * expf(m - mt);
      sw = warp_sum(sw);
      double pw = 0.0;
      if (chunk_mass) {
        pw = warp_sum_f64(pm == -INFINITY ? 0.0
                                          : ps * exp(static_cast<double>(pm) - static_cast<double>(pmt)));
      }
      if ((threadIdx.x & 31) == 0) {
        fscratch[threadIdx.x >> 5] = mt;
        fscratch[kWarps + (threadIdx.x >> 5)] = sw;
        fscratch[2 * kWarps + (threadIdx.x >> 5)] = pmt;
        dscratch[threadIdx.x >> 5] = pw;
      }
    }
    if (draw_all) {
      // The draw, once the chunk's masked max (so the floor every winner reaches) is known.
      // Pass 1, thread t on the groups of four entries t, t + kThreads, ...: a group below reach
      // skips its Philox call, an entry the log-free bound rules out is dropped, and the rest
      // (few, unless the row is nearly flat) join a queue in shared memory, appended a warp at a
      // time. Pass 2 runs the queue without divergence: float keys first, whose best (less a
      // margin) is a key some entry is sure to reach, then exact keys only near that best.
      __syncthreads();
      float chunk_pm = -INFINITY;
      for (int w = 0; w < kWarps; ++w) chunk_pm = fmaxf(chunk_pm, fscratch[2 * kWarps + w]);
      const double floor_key = static_cast<double>(chunk_pm) - kGumbelFloor;
      static_assert(kChunk / 4 % kThreads == 0, "every lane takes part in each round's append");
      const int lane = static_cast<int>(threadIdx.x & 31);
      for (int q = threadIdx.x; q < kChunk / 4; q += kThreads) {
        const float4 z4 = reinterpret_cast<const float4*>(chunk_z)[q];
        const float zj[4] = {z4.x, z4.y, z4.z, z4.w};
        const float zq = fmaxf(fmaxf(z4.x, z4.y), fmaxf(z4.z, z4.w));
        float uj[4] = {0.0f, 0.0f, 0.0f, 0.0f};
        uint32_t keep = 0;
        // -inf: masked or past the vocabulary
        if (zq != -INFINITY && !below_reach(zq, floor_key)) {
          const Philox4x32 words =
              sampling_words(p.seed, p.uid, p.position, static_cast<uint32_t>((begin >> 2) + q));
#pragma unroll
          for (int j = 0; j < 4; ++j) {
            uj[j] = sampling_uniform_of_word(words.v[j]);
            if (zj[j] != -INFINITY && !noise_cannot_reach(zj[j], uj[j], floor_key)) keep |= 1u << j;
          }
        }
        const int count = __popc(keep);
        int inclusive = count;
#pragma unroll
        for (int o = 1; o < 32; o <<= 1) {
          const int n = __shfl_up_sync(0xffffffffu, inclusive, o);
          if (lane >= o) inclusive += n;
        }
        int at = 0;
        if (lane == 31) at = atomicAdd(&queue_len, inclusive);
        at = __shfl_sync(0xffffffffu, at, 31) + inclusive - count;
#pragma unroll
        for (int j = 0; j < 4; ++j) {
          if (!((keep >> j) & 1u)) continue;
          queue_at[at] = static_cast<uint16_t>(4 * q + j);
          queue_u[at] = uj[j];
          ++at;
        }
      }
      __syncthreads();
      const int queued = queue_len;
      float best_approx = -INFINITY;
      for (int k = threadIdx.x; k < queued; k += kThreads) {
        best_approx = fmaxf(best_approx, chunk_z[queue_at[k]] - logf(-logf(queue_u[k])));
      }
      best_approx = warp_max(best_approx);
      if (lane == 0 && best_approx != -INFINITY) atomicMax(&approx_ord, float_ord(best_approx));
      __syncthreads();
      // The entry of the best float key has an exact key within a few ulp of it, far inside the
      // margin: every winner reaches `reached`.
      const double top = static_cast<double>(ord_float(approx_ord));
      const double reached = fmax(floor_key, top - key_margin(top));
      for (int k = threadIdx.x; k < queued; k += kThreads) {
        const int32_t at = queue_at[k];
        const float key = gumbel_key_if_reachable(chunk_z[at], queue_u[k], reached);
        if (key != -INFINITY) b = better(b, Best{static_cast<double>(key), begin + at});
      }
    }
    // block_best synchronises, so the scratch is complete after it; a row reduces only what it
    // uses.
    if (greedy) arg = block_best(arg, best_scratch);
    if (draw_all) b = block_best(b, best_scratch);
    if (!greedy && !draw_all) __syncthreads();
    if (threadIdx.x == 0) {
      float cm = -INFINITY, cpm = -INFINITY;
      for (int w = 0; w < kWarps; ++w) {
        cm = fmaxf(cm, fscratch[w]);
        cpm = fmaxf(cpm, fscratch[2 * kWarps + w]);
      }
      float cs = 0.0f;
      double cps = 0.0;
      for (int w = 0; w < kWarps; ++w) {
        if (fscratch[w] != -INFINITY) cs += fscratch[kWarps + w] * expf(fscratch[w] - cm);
        const float wpm = fscratch[2 * kWarps + w];
        if (chunk_mass && wpm != -INFINITY)
          cps += dscratch[w] * exp(static_cast<double>(wpm) - static_cast<double>(cpm));
      }
      parts[r * chunks + chunk] = Partial{cm, cs, static_cast<float>(arg.key), arg.idx,
                                          static_cast<float>(b.key), b.idx, cpm, 0.0f, cps};
      // Every thread read the queue's length and best key before block_best's barriers.
      queue_len = 0;
      approx_ord = float_ord(-INFINITY);
      if (c + 1 == own) {
        __threadfence();
        last = atomicAdd(&tickets[r], static_cast<uint32_t>(own)) ==
               static_cast<uint32_t>(chunks - own);
      }
    }
    // The next chunk rewrites the scratch this thread 0 has just read, and appends to the queue it
    // has just reset.
    __syncthreads();
  }
  if (!last) return;

  // The row's last block: the first warp combines the chunks, lane l taking chunks l, l + 32, ...
  // in order, then a fixed butterfly: the same operations for every row, whichever block finished
  // last and whatever the batch.
  if (threadIdx.x < 32) {
    __threadfence();
    const int lane = static_cast<int>(threadIdx.x);
    const Partial* all = parts + r * chunks;
    float lm = -INFINITY, ls = 0.0f, lpm = -INFINITY;
    double lps = 0.0;
    Best a{-INFINITY, -1}, k{-INFINITY, -1};
    for (int32_t c = lane; c < chunks; c += 32) {
      const float cm = __ldcg(&all[c].m), cs = __ldcg(&all[c].s);
      if (cm != -INFINITY) {
        if (cm > lm) {
          ls = ls * expf(lm - cm) + cs;
          lm = cm;
        } else {
          ls += cs * expf(cm - lm);
        }
      }
      const float cpm = __ldcg(&all[c].pm);
      if (chunk_mass && cpm != -INFINITY) {
        const double cps = __ldcg(&all[c].ps);
        lps = cpm > lpm ? lps * exp(static_cast<double>(lpm) - static_cast<double>(cpm)) + cps
                        : lps + cps * exp(static_cast<double>(cpm) - static_cast<double>(lpm));
      }
      lpm = fmaxf(lpm, cpm);
      a = better(a, Best{static_cast<double>(__ldcg(&all[c].arg_z)), __ldcg(&all[c].arg_idx)});
      k = better(k, Best{static_cast<double>(__ldcg(&all[c].key)), __ldcg(&all[c].key_idx)});
    }
    const float zmax = warp_max(lm);
    const float sum = warp_sum(lm == -INFINITY ? 0.0f : ls * expf(lm - zmax));
    const float pmax = warp_max(lpm);
    double psum = 0.0;
    if (chunk_mass) {
      psum = warp_sum_f64(lpm == -INFINITY ? 0.0
                                           : lps * exp(static_cast<double>(lpm) - static_cast<double>(pmax)));
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
      a = better(a, Best{__shfl_xor_sync(0xffffffffu, a.key, o), __shfl_xor_sync(0xffffffffu, a.idx, o)});
      k = better(k, Best{__shfl_xor_sync(0xffffffffu, k.key, o), __shfl_xor_sync(0xffffffffu, k.idx, o)});
    }
    if (lane == 0) {
      tickets[r] = 0;
      row_zmax = pmax;  // the masked max: min-p's reference and the draw's bound
      row_log_z = zmax + logf(sum);
      row_log_zc = static_cast<double>(pmax) + log(psum);
      row_arg = a;
      row_key = k;
      best_key_ord = float_ord(-INFINITY);
    }
  }
  __syncthreads();
  const float zmax = row_zmax;
  int32_t token = greedy ? row_arg.idx : row_key.idx;
  uint64_t lower = 0;
  double log_zc = row_log_zc;
  if (!greedy && !draw_all) {
    lower = cut_min_p ? min_p_lower(zmax, p.min_p) : 0;
    if (cut_k) {
      lower = radix_select(row, vocab, temp, mask, lower, false, static_cast<double>(p.top_k), zmax, sm);
    }
    if (cut_p) {
      lower = radix_select(row, vocab, temp, mask, lower, true, static_cast<double>(p.top_p), zmax, sm);
    }
    // The draw over the candidates, pruned like the chunks' (the top element is always a
    // candidate, so zmax + g_min bounds the winner's key); processed rows also sum the
    // candidates' fp64 mass exp(z - zmax), each thread in index order, then a fixed reduction.
    const double floor_key = static_cast<double>(zmax) - kGumbelFloor;
    Best bt{-INFINITY, -1};
    float pub = -INFINITY;
    double mass = 0.0;
    for (int32_t i = threadIdx.x; i < vocab; i += kThreads) {
      const float z = mask.z(row, i, temp);
      const uint64_t key_i = sort_key(z, i);
      if (key_i < lower) continue;
      if (processed && z != -INFINITY) mass += exp(static_cast<double>(z) - static_cast<double>(zmax));
      const double reached = static_cast<double>(
          ord_float(*reinterpret_cast<volatile uint32_t*>(&best_key_ord)));
      const double bound = fmax(floor_key, reached);
      if (below_reach(z, bound)) continue;
      const float u = sampling_uniform(p.seed, p.uid, p.position, static_cast<uint32_t>(i));
      const float key = gumbel_key_if_reachable(z, u, bound);
      if (key == -INFINITY) continue;
      bt = better(bt, Best{static_cast<double>(key), i});
      if (key > pub) {
        pub = key;
        atomicMax(&best_key_ord, float_ord(key));
      }
    }
    token = block_best(bt, best_scratch).idx;
    if (processed) {
      mass = warp_sum_f64(mass);
      if ((threadIdx.x & 31) == 0) dscratch[threadIdx.x >> 5] = mass;
      __syncthreads();
      double total = 0.0;
      for (int w = 0; w < kWarps; ++w) total += dscratch[w];
      log_zc = static_cast<double>(zmax) + log(total);
    }
  }
  if (threadIdx.x == 0) {
    if (token < 0) token = 0;  // a mask that leaves no finite logit (reference.h: token 0)
    const float log_z = row_log_z;
    // Rule 3 for token x in [0, vocab).
    auto rule_logprob = [&](int32_t x) -> float {
      if (!processed) return row[x] / temp - log_z;
      if (greedy) return x == token ? 0.0f : -INFINITY;
      const float zx = mask.z(row, x, temp);
      if (zx == -INFINITY || sort_key(zx, x) < lower) return -INFINITY;  // not a candidate
      return static_cast<float>(static_cast<double>(zx) - log_zc);
    };
    tokens[r] = token;
    logprobs[r] = rule_logprob(token);
    if (target_logprobs != nullptr) {
      const int32_t t = targets != nullptr ? targets[r] : -1;
      target_logprobs[r] = (t >= 0 && t < vocab) ? rule_logprob(t) : __int_as_float(0x7fc00000);
    }
  }
}

__global__ void __launch_bounds__(kThreads)
    argmax_kernel(const float* __restrict__ x, int64_t stride, int32_t cols,
                  int32_t* __restrict__ out_index, float* __restrict__ out_values) {
  wait_for_prior_kernels();
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

// Blocks of sample_kernel the device holds at once; read once (a layout choice only: results
// never depend on it).
int64_t resident_sample_blocks() {
  static const int64_t count = [] {
    int sms = multiprocessor_count();
    if (sms <= 0) sms = 132;  // unreadable: an H100 / H200's count
    int per_sm = 0;
    if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, sample_kernel, kThreads, 0) !=
            cudaSuccess ||
        per_sm <= 0) {
      cudaGetLastError();
      per_sm = 2;
    }
    return static_cast<int64_t>(sms) * per_sm;
  }();
  return count;
}

// The launch shape, measured on an H200 (full vocabulary, 16..4096 rows): one chunk a block while
// a block per (row, chunk) fills the device at most kSampleWaves times over, since small batches
// need every block to fill the GPU; past that, enough chunks a block to leave about kSampleWaves
// waves, at most kMaxChunksPerBlock (more leave a longer tail of the last wave and gained nothing).
constexpr int64_t kSampleWaves = 8;
constexpr int64_t kMaxChunksPerBlock = 8;

// Chunks each block of a launch reduces, spread evenly over a row's blocks. Any value gives the
// same bits: each chunk's Partial is computed alike, and the combine reads them all in order.
int32_t chunks_per_block(int64_t num_rows, int32_t chunks) {
  const int64_t target = kSampleWaves * resident_sample_blocks();
  if (num_rows * chunks <= target) return 1;
  const int64_t row_blocks = (target + num_rows - 1) / num_rows;  // blocks a row still needs
  const int64_t most = std::clamp<int64_t>(chunks / row_blocks, 1, kMaxChunksPerBlock);
  const int64_t blocks = (chunks + most - 1) / most;
  return static_cast<int32_t>((chunks + blocks - 1) / blocks);
}

}  // namespace

size_t sample_rows_workspace_bytes(int64_t num_rows, int32_t vocab) {
  if (num_rows <= 0 || vocab <= 0) return 0;
  return 8 + static_cast<size_t>(num_rows) * (sizeof(uint32_t) + sizeof(Partial) * chunks_of(vocab));
}

Status sample_rows(const float* logits, int64_t logits_stride, int64_t num_rows, int32_t vocab,
                   const SamplingRow* rows, const int32_t* masked_ids, const int32_t* target_tokens,
                   int32_t* tokens, float* logprobs, float* target_logprobs, void* workspace,
                   size_t workspace_bytes, Stream stream) {
  constexpr const char* kName = "sample_rows";
  if (num_rows < 0 || vocab <= 0) return invalid(kName, "num_rows must be >= 0 and vocab > 0");
  if (num_rows == 0) return Status::kOk;
  if (logits == nullptr || rows == nullptr || tokens == nullptr || logprobs == nullptr ||
      workspace == nullptr) {
    return invalid(kName, "logits, rows, tokens, logprobs and workspace must be non-null");
  }
  if (logits_stride < vocab) return invalid(kName, "logits_stride must be >= vocab");
  if (num_rows > 0x7fffffff) return invalid(kName, "num_rows exceeds 2^31-1");
  if (chunks_of(vocab) > 65535) return invalid(kName, "vocab exceeds 65535 chunks of 4096");
  const int64_t cap = workspace_rows(workspace_bytes, vocab);
  if (num_rows > cap) return invalid(kName, "workspace too small for num_rows (sample_rows_workspace_bytes)");
  if ((reinterpret_cast<uintptr_t>(workspace) & 7u) != 0) return invalid(kName, "workspace must be 8-byte aligned");
  auto* tickets = static_cast<uint32_t*>(workspace);
  const size_t parts_at = (static_cast<size_t>(cap) * sizeof(uint32_t) + 7) / 8 * 8;
  auto* parts = reinterpret_cast<Partial*>(static_cast<char*>(workspace) + parts_at);
  const int32_t chunks = static_cast<int32_t>(chunks_of(vocab));
  const int32_t per_block = chunks_per_block(num_rows, chunks);
  const dim3 grid(static_cast<unsigned>(num_rows),
                  static_cast<unsigned>((chunks + per_block - 1) / per_block));
  launch(sample_kernel, grid, kThreads, 0, stream, logits, logits_stride, vocab, rows, masked_ids,
         target_tokens, tokens, logprobs, target_logprobs, parts, tickets, per_block);
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
  launch(argmax_kernel, static_cast<unsigned>(num_rows), kThreads, 0, stream, x, stride, cols,
         out_index, out_values);
  return launched(kName);
}

}  // namespace longtail::kernels
