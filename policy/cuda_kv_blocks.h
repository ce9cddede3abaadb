// Host-side bookkeeping of the paged KV cache: which fixed-size blocks of the device pool each
// sequence owns, and how many positions it holds. Pure C++ (no CUDA), so the allocation rules
// (whole blocks only, rollback frees only blocks past the new length) are testable anywhere.
#pragma once

#include <cstddef>
#include <cstdint>
#include <unordered_map>
#include <vector>

namespace longtail::policy::cuda {

class KvBlockManager {
 public:
  KvBlockManager(int32_t num_blocks, int32_t block_size);

  int64_t create();
  void release(int64_t seq);  // std::invalid_argument for an unknown handle
  bool contains(int64_t seq) const { return seqs_.count(seq) != 0; }
  int32_t length(int64_t seq) const;
  const std::vector<int32_t>& blocks(int64_t seq) const;

  // Blocks that must be taken from the free list for seq to hold new_length positions.
  int32_t blocks_needed(int64_t seq, int64_t new_length) const;
  // Takes the blocks needed for new_length (>= length) and records the new length. The caller has
  // checked blocks_needed against free_blocks(); a shortfall here is a logic error and throws.
  void grow(int64_t seq, int32_t new_length);
  // Keeps the first new_length positions and returns to the pool every block wholly past them.
  void truncate(int64_t seq, int32_t new_length);

  int32_t block_size() const { return block_size_; }
  int32_t total_blocks() const { return num_blocks_; }
  int32_t free_blocks() const { return static_cast<int32_t>(free_.size()); }
  size_t num_sequences() const { return seqs_.size(); }

 private:
  struct Entry {
    int32_t length = 0;
    std::vector<int32_t> blocks;
  };
  Entry& entry(int64_t seq);
  const Entry& entry(int64_t seq) const;

  int32_t num_blocks_;
  int32_t block_size_;
  std::vector<int32_t> free_;  // LIFO: a block freed by rollback is reused first while still in L2
  std::unordered_map<int64_t, Entry> seqs_;
  int64_t next_handle_ = 1;
};

}  // namespace longtail::policy::cuda
