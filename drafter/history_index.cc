// Windowed, sharded rollout history; see the header.
#include "drafter/history_index.h"

#include <unordered_set>

#include <spdlog/spdlog.h>

namespace longtail::drafter {

HistoryIndex::HistoryIndex(HistoryOptions options) : options_(options) {}

void HistoryIndex::insert(std::string_view prompt_id, std::vector<int32_t> text, int64_t round) {
  if (text.empty()) return;
  staged_.push_back(
      {std::string(prompt_id), {round, std::make_shared<const std::vector<int32_t>>(std::move(text))}});
}

void HistoryIndex::end_round(int64_t round) {
  const int64_t oldest_kept = round - options_.window_rounds + 1;
  bool global_dirty = false;
  for (auto& s : staged_) {
    if (s.rollout.round < oldest_kept) continue;  // already outside the window
    const auto n = static_cast<int64_t>(s.rollout.text->size());
    if (options_.build_prompt && !s.prompt_id.empty()) {
      auto& shard = prompts_[s.prompt_id];
      shard.visible.push_back(s.rollout);
      shard.tokens += n;
      shard.dirty = true;
    }
    if (options_.build_global) {
      global_list_.push_back(s.rollout);
      global_tokens_ += n;
      global_dirty = true;
    }
  }
  staged_.clear();
  // Eviction: the window in rounds, then the token budgets, oldest first (inserts are in round order
  // in practice; a late rollout of an old round is evicted with its round).
  auto evict = [&](std::deque<Rollout>& list, int64_t& tokens, int64_t budget) {
    bool changed = false;
    for (auto it = list.begin(); it != list.end();) {
      if (it->round < oldest_kept) {
        tokens -= static_cast<int64_t>(it->text->size());
        it = list.erase(it);
        changed = true;
      } else {
        ++it;
      }
    }
    while (!list.empty() && tokens > budget) {
      tokens -= static_cast<int64_t>(list.front().text->size());
      list.pop_front();
      changed = true;
    }
    return changed;
  };
  global_dirty |= evict(global_list_, global_tokens_, options_.global_token_budget);
  for (auto it = prompts_.begin(); it != prompts_.end();) {
    auto& shard = it->second;
    shard.dirty |= evict(shard.visible, shard.tokens, options_.prompt_token_budget);
    if (shard.visible.empty()) {
      it = prompts_.erase(it);
      continue;
    }
    if (shard.dirty) {
      SamBuilder b;
      for (const auto& r : shard.visible) b.add_string(*r.text);
      shard.sam = FrozenSam(b);
      shard.dirty = false;
    }
    ++it;
  }
  if (global_dirty) {
    SamBuilder b;
    for (const auto& r : global_list_) b.add_string(*r.text);
    global_ = global_list_.empty() ? FrozenSam() : FrozenSam(b);
  }
  // Unique stored text: a rollout may be in both scopes (shared_ptr), count it once.
  std::unordered_set<const std::vector<int32_t>*> seen;
  indexed_tokens_ = 0;
  auto count = [&](const std::deque<Rollout>& list) {
    for (const auto& r : list) {
      if (seen.insert(r.text.get()).second) indexed_tokens_ += static_cast<int64_t>(r.text->size());
    }
  };
  count(global_list_);
  for (const auto& [id, shard] : prompts_) count(shard.visible);
  ++generation_;
  spdlog::debug("drafter history: round {} published, {} prompts, {} tokens, {} bytes", round,
                prompts_.size(), indexed_tokens_, bytes());
}

const FrozenSam* HistoryIndex::prompt_sam(std::string_view prompt_id) const {
  if (prompt_id.empty()) return nullptr;
  const auto it = prompts_.find(std::string(prompt_id));
  return it == prompts_.end() || it->second.sam.empty() ? nullptr : &it->second.sam;
}

int64_t HistoryIndex::bytes() const {
  int64_t b = global_.bytes() + indexed_tokens_ * static_cast<int64_t>(sizeof(int32_t));
  for (const auto& [id, shard] : prompts_) b += shard.sam.bytes();
  return b;
}

std::vector<std::span<const int32_t>> HistoryIndex::prompt_rollouts(std::string_view prompt_id) const {
  std::vector<std::span<const int32_t>> out;
  const auto it = prompts_.find(std::string(prompt_id));
  if (it != prompts_.end()) {
    for (const auto& r : it->second.visible) out.emplace_back(*r.text);
  }
  return out;
}

std::vector<std::span<const int32_t>> HistoryIndex::global_rollouts() const {
  std::vector<std::span<const int32_t>> out;
  for (const auto& r : global_list_) out.emplace_back(*r.text);
  return out;
}

}  // namespace longtail::drafter
