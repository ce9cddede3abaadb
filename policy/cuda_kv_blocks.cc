// Paged KV block allocation for the CUDA backend (see cuda_kv_blocks.h).
#include "policy/cuda_kv_blocks.h"

#include <stdexcept>
#include <string>

namespace longtail::policy::cuda {

KvBlockManager::KvBlockManager(int32_t num_blocks, int32_t block_size)
    : num_blocks_(num_blocks), block_size_(block_size) {
  if (num_blocks < 0) throw std::invalid_argument("KV cache: negative block count");
  if (block_size <= 0) throw std::invalid_argument("KV cache: block size must be positive");
  free_.reserve(static_cast<size_t>(num_blocks));
  for (int32_t b = num_blocks - 1; b >= 0; --b) free_.push_back(b);
}

KvBlockManager::Entry& KvBlockManager::entry(int64_t seq) {
  auto it = seqs_.find(seq);
  if (it == seqs_.end())
    throw std::invalid_argument("unknown KV sequence handle " + std::to_string(seq));
  return it->second;
}

const KvBlockManager::Entry& KvBlockManager::entry(int64_t seq) const {
  auto it = seqs_.find(seq);
  if (it == seqs_.end())
    throw std::invalid_argument("unknown KV sequence handle " + std::to_string(seq));
  return it->second;
}

int64_t KvBlockManager::create() {
  const int64_t h = next_handle_++;
  seqs_.emplace(h, Entry{});
  return h;
}

void KvBlockManager::release(int64_t seq) {
  Entry& e = entry(seq);
  for (auto it = e.blocks.rbegin(); it != e.blocks.rend(); ++it) free_.push_back(*it);
  seqs_.erase(seq);
}

int32_t KvBlockManager::length(int64_t seq) const { return entry(seq).length; }

const std::vector<int32_t>& KvBlockManager::blocks(int64_t seq) const { return entry(seq).blocks; }

int32_t KvBlockManager::blocks_needed(int64_t seq, int64_t new_length) const {
  const Entry& e = entry(seq);
  const int64_t want = (new_length + block_size_ - 1) / block_size_;
  const int64_t have = static_cast<int64_t>(e.blocks.size());
  return want > have ? static_cast<int32_t>(want - have) : 0;
}

void KvBlockManager::grow(int64_t seq, int32_t new_length) {
  Entry& e = entry(seq);
  if (new_length < e.length)
    throw std::logic_error("KV grow to " + std::to_string(new_length) + " below length " +
                           std::to_string(e.length));
  const int32_t need = blocks_needed(seq, new_length);
  if (need > free_blocks())
    throw std::logic_error("KV grow without enough free blocks (caller must check capacity)");
  for (int32_t i = 0; i < need; ++i) {
    e.blocks.push_back(free_.back());
    free_.pop_back();
  }
  e.length = new_length;
}

void KvBlockManager::truncate(int64_t seq, int32_t new_length) {
  Entry& e = entry(seq);
  if (new_length < 0 || new_length > e.length)
    throw std::invalid_argument("truncate of sequence " + std::to_string(seq) + " to " +
                                std::to_string(new_length) + " outside [0, " +
                                std::to_string(e.length) + "]");
  const size_t keep = static_cast<size_t>((new_length + block_size_ - 1) / block_size_);
  while (e.blocks.size() > keep) {
    free_.push_back(e.blocks.back());
    e.blocks.pop_back();
  }
  e.length = new_length;
}

}  // namespace longtail::policy::cuda
