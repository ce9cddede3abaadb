// Cell layout and updates of the per-scope draft calibration; see the header.
#include "drafter/calibration.h"

#include <algorithm>

#include "drafter/drafter.h"

namespace longtail::drafter {
int16_t DraftCalibration::history_cell(DraftSource source, uint32_t parent_count, double q,
                                       int32_t context_len) {
  return history_cell(source == DraftSource::kGlobal, parent_count, q, context_len);
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
  ratio_[static_cast<size_t>(cell)] = (c.accepted + prior_weight_) / (c.q_sum + prior_weight_);
}

}  // namespace longtail::drafter
