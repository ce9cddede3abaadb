// The argument checks of the few-row products (matvec.h), one rule for matvec_* and skinny_gemm_*:
// each returns "" when the call is valid, else what is wrong.
#pragma once

#include <string>

#include "kernels/common.cuh"
#include "kernels/matvec.h"

namespace longtail::kernels::detail {

inline std::string few_row_rows_error(int32_t rows, int32_t max_rows) {
  if (rows >= 1 && rows <= max_rows) return "";
  return "rows must be in [1, " + std::to_string(max_rows) + "], got " + std::to_string(rows);
}

inline std::string few_row_product_error(const bf16* x, const bf16* w, const float* y_f32,
                                         const bf16* y_bf16, bool accumulate, int32_t rows,
                                         int32_t max_rows, int32_t n, int32_t k) {
  if (std::string e = few_row_rows_error(rows, max_rows); !e.empty()) return e;
  if (n <= 0 || k <= 0 || k % 8 != 0) return "n must be > 0 and k a positive multiple of 8";
  if (x == nullptr || w == nullptr || (y_f32 == nullptr) == (y_bf16 == nullptr))
    return "x and w must be non-null, and exactly one of y_f32 and y_bf16";
  if (!aligned16(x) || !aligned16(w)) return "x and w must be 16-byte aligned";
  if (y_bf16 != nullptr && accumulate) return "accumulate needs the fp32 output";
  return "";
}

inline std::string few_row_swiglu_error(const bf16* x, const bf16* w_gate_up, const bf16* act,
                                        int32_t rows, int32_t max_rows, int32_t inter, int32_t k) {
  if (std::string e = few_row_rows_error(rows, max_rows); !e.empty()) return e;
  if (inter <= 0 || k <= 0 || k % 8 != 0) return "inter must be > 0 and k a positive multiple of 8";
  if (x == nullptr || w_gate_up == nullptr || act == nullptr)
    return "x, w_gate_up and act must be non-null";
  if (!aligned16(x) || !aligned16(w_gate_up)) return "x and w_gate_up must be 16-byte aligned";
  return "";
}

// The input of the normed variants (matvec.h's NormedRows); its x is then checked as the product's x.
inline std::string few_row_normed_error(const NormedRows& x) {
  if (x.weight == nullptr || !aligned16(x.weight))
    return "the norm weight must be non-null and 16-byte aligned";
  if (!(x.eps >= 0.0f) || x.eps > 1.0f) return "the norm eps must be in [0, 1]";
  return "";
}

}  // namespace longtail::kernels::detail
