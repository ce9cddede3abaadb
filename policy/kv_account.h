// KV capacity accounted in blocks, for backends whose cache is not paged on a device: the CPU
// backend and the accounting backend (which must refuse and admit exactly what the CPU backend
// would, so a replay through it schedules as the engine does). A sequence of L positions uses
// ceil(L / block_size) blocks; max_kv_tokens = 0 is unlimited.
#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "policy/backend.h"

namespace longtail::policy {

class KvBlockAccount {
 public:
  // Throws std::invalid_argument naming BackendOptions.kv_block_size / max_kv_tokens when out of
  // range (block size <= 0, a negative bound, or a bound below one block).
  KvBlockAccount(int64_t max_kv_tokens, int32_t block_size);

  int32_t block_size() const { return block_size_; }
  bool unlimited() const { return total_blocks_ < 0; }
  int64_t blocks_for(int64_t tokens) const { return (tokens + block_size_ - 1) / block_size_; }
  // Blocks a sequence needs to grow from `from` to `to` positions (0 when it shrinks).
  int64_t growth(int64_t from, int64_t to) const { return to > from ? blocks_for(to) - blocks_for(from) : 0; }
  bool fits(int64_t new_blocks) const { return unlimited() || used_blocks_ + new_blocks <= total_blocks_; }
  // Backend::can_fit's answer, given each handle's current length (length_of(seq), 0 for -1).
  template <class LengthOf>
  bool can_fit(std::span<const KvGrowth> batch, LengthOf length_of) const {
    if (unlimited()) return true;
    int64_t new_blocks = 0;
    for (const KvGrowth& g : batch) {
      const int64_t len = g.seq < 0 ? 0 : length_of(g.seq);
      new_blocks += growth(len, len + g.new_tokens);
    }
    return fits(new_blocks);
  }
  // Throws KvCapacityError (changing nothing) unless new_blocks fit.
  void check_fits(int64_t new_blocks) const;
  // A sequence's length changed from `from` to `to` positions.
  void resize(int64_t from, int64_t to) { used_blocks_ += blocks_for(to) - blocks_for(from); }
  KvCapacity capacity() const;
  // "KV <n> tokens in blocks of <b>" / "KV unlimited tokens ..." for the backends' start-up line.
  std::string describe() const;

 private:
  int32_t block_size_;
  int64_t total_blocks_;  // < 0: unlimited
  int64_t used_blocks_ = 0;
};

}  // namespace longtail::policy
