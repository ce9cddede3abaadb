// Counter-based random numbers (Philox4x32-10, Salmon et al., SC'11) shared by the host sampler and
// the CUDA sampling kernel, so both draw the same uniform for the same (seed, uid, position, index)
// whatever the batch, the step size or the device. Header-only, host and device.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define LONGTAIL_HD __host__ __device__ __forceinline__
#else
#define LONGTAIL_HD inline
#endif

namespace longtail::kernels {

struct Philox4x32 {
  uint32_t v[4];
};

LONGTAIL_HD uint32_t philox_mulhilo(uint32_t a, uint32_t b, uint32_t* hi) {
  const uint64_t p = static_cast<uint64_t>(a) * b;
  *hi = static_cast<uint32_t>(p >> 32);
  return static_cast<uint32_t>(p);
}

// Ten rounds of Philox4x32 on counter c with key k.
LONGTAIL_HD Philox4x32 philox4x32_10(Philox4x32 c, uint32_t k0, uint32_t k1) {
  constexpr uint32_t kM0 = 0xD2511F53u, kM1 = 0xCD9E8D57u;
  constexpr uint32_t kW0 = 0x9E3779B9u, kW1 = 0xBB67AE85u;
  for (int r = 0; r < 10; ++r) {
    uint32_t hi0, hi1;
    const uint32_t lo0 = philox_mulhilo(kM0, c.v[0], &hi0);
    const uint32_t lo1 = philox_mulhilo(kM1, c.v[2], &hi1);
    c = Philox4x32{{hi1 ^ c.v[1] ^ k0, lo1, hi0 ^ c.v[3] ^ k1, lo0}};
    k0 += kW0;
    k1 += kW1;
  }
  return c;
}

// The four 32-bit words of one Philox call for drawing the token at `position` of sequence `uid`
// in a run seeded with `seed`: entries 4g .. 4g + 3 of the vocabulary share the call of group g
// (counter (g, position, uid_lo, uid_hi)), one word each. A Philox call is ten rounds of two wide
// multiplies; spending all four of its words, not one, makes a whole-vocabulary draw four times
// cheaper, and the words of one call are as independent as those of different calls.
LONGTAIL_HD Philox4x32 sampling_words(uint64_t seed, uint64_t uid, int64_t position, uint32_t group) {
  const Philox4x32 ctr{{group, static_cast<uint32_t>(position), static_cast<uint32_t>(uid),
                        static_cast<uint32_t>(uid >> 32)}};
  return philox4x32_10(ctr, static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32));
}

// The uniform in (0, 1) of one word: 24 random bits, centred, so never exactly 0 or 1.
// (x + 0.5) is not representable in float for x >= 2^23 and rounds to even, so the top draw
// x = 2^24 - 1 would round to exactly 1.0, giving an infinite Gumbel key (that entry would win
// whatever its logit, about once per 110 rows of a 152k vocabulary): it is clamped to the largest
// float below 1. Every other draw is unchanged.
LONGTAIL_HD float sampling_uniform_of_word(uint32_t word) {
  const float u = (static_cast<float>(word >> 8) + 0.5f) * (1.0f / 16777216.0f);
  return u < 1.0f ? u : 0x1.fffffep-1f;  // 1 - 2^-24
}

// The uniform in (0, 1) used for vocabulary entry `index`: word index % 4 of group index / 4.
LONGTAIL_HD float sampling_uniform(uint64_t seed, uint64_t uid, int64_t position, uint32_t index) {
  return sampling_uniform_of_word(sampling_words(seed, uid, position, index >> 2).v[index & 3u]);
}

// Uniform in (-1, 1) for element `index` of a synthetic tensor (random weights for tests and
// benchmarks): Philox on the counter (index, 0x5eed, 0) keyed by seed. Host and device give the
// same bits: the only rounding after the int -> float conversion is the final subtraction.
LONGTAIL_HD float synthetic_uniform(uint64_t seed, uint64_t index) {
  const Philox4x32 ctr{{static_cast<uint32_t>(index), static_cast<uint32_t>(index >> 32), 0x5eedu,
                        0u}};
  const Philox4x32 r = philox4x32_10(ctr, static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32));
  return (static_cast<float>(r.v[0] >> 8) + 0.5f) * (2.0f / 16777216.0f) - 1.0f;
}

}  // namespace longtail::kernels
