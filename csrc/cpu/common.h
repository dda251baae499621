// Shared by the masked-convolution CPU kernels (masked_conv.cpp, masked_conv_step.cpp): argument checks
// that raise ValueError naming the argument and shapes, and the masked weight cut to the rows a mask can
// reach. The mask definition itself lives in spn_kernels/masked_conv/ref.py (conv_mask); this file encodes
// the same rule:
//   rows 0..p-1 (p = k/2) are kept by every mask; rows below p never are;
//   row p: "V" keeps all columns, "A"/"B" keep columns < p, and the centre tap (p, p) is kept for
//   (co, ci) when group(ci) < group(co) ("A") or group(ci) <= group(co) ("B") over color_groups groups.
#pragma once

#include <ATen/ATen.h>

#include <optional>
#include <string_view>

namespace spn {

enum class MaskType { A, B, V };

inline MaskType parse_mask_type(std::string_view s, const char* op) {
  if (s == "A") return MaskType::A;
  if (s == "B") return MaskType::B;
  TORCH_CHECK_VALUE(s == "V", op, ": mask_type must be one of 'A', 'B', 'V', got '", std::string(s), "'");
  return MaskType::V;
}

// weight [C_out, C_in, k, k] float, k odd; bias [C_out] or none; color_groups divides C_out and C_in.
inline void check_conv_params(const at::Tensor& weight, const std::optional<at::Tensor>& bias, MaskType mt,
                              int64_t color_groups, const char* op) {
  TORCH_CHECK_VALUE(weight.dim() == 4, op, ": weight must be 4-D [C_out, C_in, k, k], got shape ", weight.sizes());
  TORCH_CHECK_VALUE(weight.size(2) == weight.size(3), op, ": weight must have a square kernel, got shape ",
                    weight.sizes());
  TORCH_CHECK_VALUE(weight.size(2) % 2 == 1, op, ": weight kernel size must be odd, got shape ", weight.sizes());
  TORCH_CHECK_VALUE(at::isFloatingType(weight.scalar_type()), op,
                    ": weight must be float16/bfloat16/float32/float64, got ", weight.scalar_type());
  TORCH_CHECK_VALUE(color_groups >= 1, op, ": color_groups must be >= 1, got ", color_groups);
  TORCH_CHECK_VALUE(mt != MaskType::V || color_groups == 1, op,
                    ": color_groups applies to the centre tap of masks 'A'/'B' only; mask 'V' needs 1, got ",
                    color_groups);
  TORCH_CHECK_VALUE(weight.size(0) % color_groups == 0 && weight.size(1) % color_groups == 0, op,
                    ": C_out and C_in must be divisible by color_groups=", color_groups, ", got weight ",
                    weight.sizes());
  if (bias.has_value()) {
    TORCH_CHECK_VALUE(bias->dim() == 1 && bias->size(0) == weight.size(0), op, ": bias must have shape [C_out]=(",
                      weight.size(0), ",), got ", bias->sizes());
    TORCH_CHECK_VALUE(bias->scalar_type() == weight.scalar_type(), op, ": bias has dtype ", bias->scalar_type(),
                      " but weight has dtype ", weight.scalar_type());
  }
}

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
