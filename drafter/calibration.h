// Online calibration of draft-token probabilities per scope, so the own-context, per-prompt and
// global scopes compete (and share a token tree) in one unit: the probability that the token is
// accepted given its parent was.
//
// Why: raw scope estimates are not comparable. A history continuation seen once has count ratio 1
// (winning global drafts score ~2.7 expected tokens and accept ~0.5), and the own-context estimate
// l/(l+1) is a rule of thumb. Each raw conditional probability q (count ratio, or the own-context
// confidence) falls in a cell by scope and by what the evidence looked like: for history scopes
// the parent state's occurrence count (1, 2, 3-4, 5-8, 9-16, 17-64, >64), q itself (5 bins) and the
// context length matched at that node (1-3, 4-15, 16-63, >=64); for the own context the repeat
// length (6 bins) and the depth in the draft (4 bins). Per cell the table keeps Q = sum of q and
// A = accepted count over the draft tokens that were verified with their parent accepted; the
// calibrated probability is min(1, q * (A + w) / (Q + w)) with w = prior_weight pseudo-tokens at
// ratio 1, so an empty table leaves q unchanged. Cells halve their counts past `horizon` tokens so
// the estimate follows the policy as it drifts.
// The drafter feeds the table itself: it keeps each request's last proposal and compares it with
// the tokens the engine reports through observe() (accepted drafts + the verified token).
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>

namespace longtail::drafter {

enum class DraftSource : uint8_t;

class DraftCalibration {
 public:
  static constexpr int kHistoryCells = 7 * 5 * 4;
  static constexpr int kOwnCells = 6 * 4;
  static constexpr int kCells = 2 * kHistoryCells + kOwnCells;

  explicit DraftCalibration(double prior_weight = 8.0, double horizon = 20000.0)
      : prior_weight_(prior_weight), horizon_(horizon) {
    ratio_.fill(1.0);  // an empty cell leaves q unchanged
  }

  // Cell of a history-scope token (global: the second block): parent state count, raw q, context
  // length matched at the parent. Inline: drafting asks for one per candidate token.
  static int16_t history_cell(bool global, uint32_t parent_count, double q, int32_t context_len) {
    const int qb = std::clamp(static_cast<int>(q * 5.0), 0, 4);
    const int c = (count_bin(parent_count) * 5 + qb) * 4 + length_bin(context_len);
    return static_cast<int16_t>((global ? kHistoryCells : 0) + c);
  }
  static int16_t history_cell(DraftSource source, uint32_t parent_count, double q, int32_t context_len);
  // Cell of an own-context token: repeat length and depth (0 = first draft token).
  static int16_t own_cell(int32_t repeat_len, int32_t depth);

  double apply(int16_t cell, double q) const {
    const double p = q * ratio_[static_cast<size_t>(cell)];
    return p < 1.0 ? p : 1.0;
  }
  void add(int16_t cell, double q, bool accepted);
  // Realised / predicted acceptance of a cell (1 = calibrated as raw).
  double ratio(int16_t cell) const { return apply(cell, 1.0); }
  double tokens(int16_t cell) const { return cells_[static_cast<size_t>(cell)].trials; }

 private:
  struct Cell {
    double q_sum = 0, accepted = 0, trials = 0;
  };
  static int count_bin(uint32_t n) {
    return n <= 1 ? 0 : n == 2 ? 1 : n <= 4 ? 2 : n <= 8 ? 3 : n <= 16 ? 4 : n <= 64 ? 5 : 6;
  }
  static int length_bin(int32_t l) { return l < 4 ? 0 : l < 16 ? 1 : l < 64 ? 2 : 3; }
  std::array<Cell, kCells> cells_{};
  // (accepted + w) / (q_sum + w) per cell, kept by add(): drafting reads it for every candidate
  // token, and a cell changes only when a verified token lands in it.
  std::array<double, kCells> ratio_{};
  double prior_weight_, horizon_;
};

}  // namespace longtail::drafter
