// Cell layout and updates of the per-scope draft calibration; see the header.
#include "drafter/calibration.h"

#include <algorithm>

#include "drafter/drafter.h"

namespace longtail::drafter {
namespace {
int count_bin(uint32_t n) {
  if (n <= 1) return 0;
  if (n == 2) return 1;
  if (n <= 4) return 2;
  if (n <= 8) return 3;
  if (n <= 16) return 4;
  if (n <= 64) return 5;
  return 6;
}
int length_bin(int32_t l) { return l < 4 ? 0 : l < 16 ? 1 : l < 64 ? 2 : 3; }
}  // namespace

int16_t DraftCalibration::history_cell(DraftSource source, uint32_t parent_count, double q,
                                       int32_t context_len) {
  const int qb = std::clamp(static_cast<int>(q * 5.0), 0, 4);
  const int c = (count_bin(parent_count) * 5 + qb) * 4 + length_bin(context_len);
  return static_cast<int16_t>((source == DraftSource::kGlobal ? kHistoryCells : 0) + c);
}

int16_t DraftCalibration::own_cell(int32_t repeat_len, int32_t depth) {
  const int lb = repeat_len < 4 ? 0 : repeat_len < 8 ? 1 : repeat_len < 16 ? 2 : repeat_len < 32 ? 3
                 : repeat_len < 64 ? 4 : 5;
  const int db = depth < 1 ? 0 : depth < 4 ? 1 : depth < 16 ? 2 : 3;
  return static_cast<int16_t>(2 * kHistoryCells + lb * 4 + db);
}

void DraftCalibration::add(int16_t cell, double q, bool accepted) {
  Cell& c = cells_[static_cast<size_t>(cell)];
  c.q_sum += q;
  c.accepted += accepted ? 1.0 : 0.0;
  c.trials += 1.0;
  if (c.trials > horizon_) {
    c.q_sum *= 0.5;
    c.accepted *= 0.5;
    c.trials *= 0.5;
  }
}

}  // namespace longtail::drafter
