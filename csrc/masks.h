// Shared by the masked-convolution CPU kernels (csrc/masked_conv2d/cpu.cpp, csrc/masked_conv2d_step/cpu.cpp):
// the masked weight cut to the rows a mask can reach. The mask definition itself lives in
// spn_kernels/ops/masked_conv2d/ref.py (conv_mask); this file encodes the same rule:
//   rows 0..p-1 (p = k/2) are kept by every mask; rows below p never are;
//   row p: "V" keeps all columns, "A"/"B" keep columns < p, and the centre tap (p, p) is kept for
//   (co, ci) when group(ci) < group(co) ("A") or group(ci) <= group(co) ("B") over color_groups groups.
#pragma once

#include <ATen/ATen.h>

#include "checks.h"

namespace spn {

// The first input channel whose centre tap is masked for output channel co (C_in when none is).
inline int64_t centre_limit(int64_t co, int64_t c_out, int64_t c_in, MaskType mt, int64_t color_groups) {
  if (mt == MaskType::V) return c_in;
  const int64_t g_out = co / (c_out / color_groups);
  return (g_out + (mt == MaskType::B ? 1 : 0)) * (c_in / color_groups);
}

// Zeroes, in place, the masked taps of a tensor [C_out, C_in, p+1, k] that holds rows 0..p of a kernel
// (a weight or a weight gradient). Rows 0..p-1 are never masked, so only row p is touched.
inline void zero_masked_top(at::Tensor& top, MaskType mt, int64_t color_groups) {
  if (mt == MaskType::V) return;
  const int64_t c_out = top.size(0), c_in = top.size(1), p = top.size(2) - 1;
  at::Tensor centre_row = top.select(2, p);  // [C_out, C_in, k]
  centre_row.narrow(2, p + 1, p).zero_();
  const int64_t cog = c_out / color_groups;
  for (int64_t go = 0; go < color_groups; ++go) {
    const int64_t lim = centre_limit(go * cog, c_out, c_in, mt, color_groups);
    if (lim < c_in) centre_row.narrow(0, go * cog, cog).select(2, p).narrow(1, lim, c_in - lim).zero_();
  }
}

// weight * mask restricted to rows 0..p: [C_out, C_in, p+1, k], fresh and contiguous.
inline at::Tensor masked_top_weight(const at::Tensor& weight, MaskType mt, int64_t color_groups) {
  const int64_t p = weight.size(2) / 2;
  at::Tensor top = weight.narrow(2, 0, p + 1).clone(at::MemoryFormat::Contiguous);
  zero_masked_top(top, mt, color_groups);
  return top;
}

}  // namespace spn
