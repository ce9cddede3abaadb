// KvBlockAccount: the block arithmetic of kv_account.h.
#include "policy/kv_account.h"

#include <limits>
#include <stdexcept>
#include <string>

namespace longtail::policy {

KvBlockAccount::KvBlockAccount(int64_t max_kv_tokens, int32_t block_size) : block_size_(block_size) {
  if (block_size_ <= 0) {
    throw std::invalid_argument("BackendOptions.kv_block_size must be positive, got " + std::to_string(block_size_));
  }
  if (max_kv_tokens < 0) throw std::invalid_argument("BackendOptions.max_kv_tokens must be >= 0");
  total_blocks_ = max_kv_tokens == 0 ? -1 : max_kv_tokens / block_size_;
  if (max_kv_tokens > 0 && total_blocks_ == 0) {
    throw std::invalid_argument("BackendOptions.max_kv_tokens " + std::to_string(max_kv_tokens) +
                                " is less than one block of " + std::to_string(block_size_));
  }
}

void KvBlockAccount::check_fits(int64_t new_blocks) const {
  if (fits(new_blocks)) return;
  throw KvCapacityError("forward needs " + std::to_string(new_blocks) + " more KV blocks, " +
                        std::to_string(total_blocks_ - used_blocks_) + " of " + std::to_string(total_blocks_) +
                        " are free");
}

KvCapacity KvBlockAccount::capacity() const {
  KvCapacity c;
  c.block_size = block_size_;
  if (unlimited()) {
    c.total_tokens = std::numeric_limits<int64_t>::max() / 4;
    c.free_tokens = c.total_tokens - used_blocks_ * block_size_;
  } else {
    c.total_tokens = total_blocks_ * block_size_;
    c.free_tokens = (total_blocks_ - used_blocks_) * block_size_;
  }
  return c;
}

std::string KvBlockAccount::describe() const {
  return "KV " + (unlimited() ? std::string("unlimited") : std::to_string(total_blocks_ * block_size_)) +
         " tokens in blocks of " + std::to_string(block_size_);
}

}  // namespace longtail::policy
