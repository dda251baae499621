// The input rules of every spn op, written once for the C++ side: the CPU kernels (csrc/<op>/cpu.cpp) and the
// CUDA binding (csrc/cuda/binding.cpp) call these, and the public Python functions leave these rules to them
// on the dispatcher path. spn_kernels/_checks.py states the same rules, in the same words, for where no C++
// runs (the reference, the Triton ops, the fake kernels). Every check raises c10::ValueError (Python's
// ValueError) naming the op, the argument and the shapes.
//
// Only ATen's core tensor header: binding.cpp includes this file too, and compiles against the c10/cuda
// headers alone where no CUDA torch is installed (tests/ops/test_cuda_sources.py).
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace spn {

// ------------------------------------------------------------------------------------------------ shared
// Same device and dtype.
inline void check_same(const at::Tensor& a, const at::Tensor& b, const char* na, const char* nb, const char* op) {
  TORCH_CHECK_VALUE(a.device() == b.device(), op, ": ", na, " is on ", a.device(), " but ", nb, " is on ", b.device());
  TORCH_CHECK_VALUE(a.scalar_type() == b.scalar_type(), op, ": ", na, " has dtype ", a.scalar_type(), " but ", nb,
                    " has dtype ", b.scalar_type());
}

// ------------------------------------------------------------------------------------------------ slice ops
// x [B, C, H, W] with H and W divisible by s >= 1.
inline void check_image(const at::Tensor& x, int64_t s, const char* op) {
  TORCH_CHECK_VALUE(x.dim() == 4, op, ": x must be 4-D [B, C, H, W], got shape ", x.sizes());
  TORCH_CHECK_VALUE(s >= 1, op, ": s must be >= 1, got s=", s);
  TORCH_CHECK_VALUE(x.size(2) % s == 0 && x.size(3) % s == 0, op, ": x height and width must be divisible by s=", s,
                    ", got x of shape ", x.sizes());
}

// slices [B, s*s, C, n, m]; returns s.
inline int64_t check_slices(const at::Tensor& slices, const char* op) {
  TORCH_CHECK_VALUE(slices.dim() == 5, op, ": slices must be 5-D [B, s*s, C, n, m], got shape ", slices.sizes());
  const int64_t S2 = slices.size(1);
  int64_t s = 0;
  while ((s + 1) * (s + 1) <= S2) ++s;
  TORCH_CHECK_VALUE(s >= 1 && s * s == S2, op, ": slices.shape[1] must be a square s*s >= 1, got shape ",
                    slices.sizes());
  return s;
}

inline void check_int_image(const at::Tensor& x, const char* op) {
  const at::ScalarType t = x.scalar_type();
  TORCH_CHECK_VALUE(t == at::kByte || t == at::kChar || t == at::kShort || t == at::kInt || t == at::kLong, op,
                    ": x must be an integer image (uint8/int8/int16/int32/int64), got ", t);
}

inline void check_bits(int64_t bits, const char* op) {
  TORCH_CHECK_VALUE(bits >= 1 && bits <= 16, op, ": bits must be in 1..16, got bits=", bits);
}

// t: an integer tensor [B] on x's device. Its values are the kernel's to check where it reads them on the
// host (check_t_values); the CUDA kernels stay in bounds whatever they are.
inline void check_t(const at::Tensor& t, const at::Tensor& x, const char* op) {
  TORCH_CHECK_VALUE(t.dim() == 1 && t.size(0) == x.size(0), op, ": t must have shape [B]=(", x.size(0),
                    ",), got shape ", t.sizes());
  TORCH_CHECK_VALUE(!t.is_floating_point() && !t.is_complex(), op, ": t must be an integer tensor, got ",
                    t.scalar_type());
  TORCH_CHECK_VALUE(t.device() == x.device(), op, ": t is on ", t.device(), " but x is on ", x.device());
}

// Every t[b] (int64, on the host) in [0, hi].
inline void check_t_values(const int64_t* t, int64_t B, int64_t hi, const char* op) {
  for (int64_t b = 0; b < B; ++b) {
    TORCH_CHECK_VALUE(t[b] >= 0 && t[b] <= hi, op, ": t must be in [0, ", hi, "], got t[", b, "]=", t[b]);
  }
}

// values [B, C, H/s, W/s] for x [B, C, H, W], with x's device and dtype.
inline void check_scatter_values(const at::Tensor& values, const at::Tensor& x, int64_t s, const char* op) {
  const int64_t B = x.size(0), C = x.size(1), h = x.size(2) / s, w = x.size(3) / s;
  TORCH_CHECK_VALUE(values.dim() == 4 && values.size(0) == B && values.size(1) == C && values.size(2) == h &&
                        values.size(3) == w,
                    op, ": values must have shape (", B, ", ", C, ", ", h, ", ", w, ") for x ", x.sizes(), " and s=", s,
                    ", got ", values.sizes());
  check_same(values, x, "values", "x", op);
}

// ------------------------------------------------------------------------------------------------ masked conv
enum class MaskType { A, B, V };

inline MaskType parse_mask_type(std::string_view s, const char* op) {
  if (s == "A") return MaskType::A;
  if (s == "B") return MaskType::B;
  TORCH_CHECK_VALUE(s == "V", op, ": mask_type must be one of 'A', 'B', 'V', got '", std::string(s), "'");
  return MaskType::V;
}

enum class ColorLayout { Blocked, Interleaved };

inline ColorLayout parse_color_layout(std::string_view s, const char* op) {
  if (s == "blocked") return ColorLayout::Blocked;
  TORCH_CHECK_VALUE(s == "interleaved", op, ": color_layout must be one of 'blocked', 'interleaved', got '",
                    std::string(s), "'");
  return ColorLayout::Interleaved;
}

inline bool is_float(at::ScalarType t) {
  return t == at::kHalf || t == at::kBFloat16 || t == at::kFloat || t == at::kDouble;
}

// A (kh, kw) weight holds rows r0 .. r0 + n - 1 of the centred kw x kw kernel (masked_conv2d/ref.py).
struct KernelRows {
  int64_t r0, n;
};

inline KernelRows kernel_rows(int64_t kh, int64_t kw, const char* op) {
  const int64_t p = kw / 2;
  TORCH_CHECK_VALUE(kw % 2 == 1, op, ": weight kernel width must be odd, got kernel (kh, kw)=(", kh, ", ", kw, ")");
  TORCH_CHECK_VALUE(kh >= 1, op, ": weight kernel height must be >= 1, got kernel (kh, kw)=(", kh, ", ", kw, ")");
  if (kh == kw) return {0, kw};
  if (kh == 1) return {p, 1};
  TORCH_CHECK_VALUE(kh == p || kh == p + 1, op, ": weight kernel height must be one of ", kw, " (all rows), 1 (centre row), ",
                    p + 1, " (rows 0..", p, ") or ", p, " (rows 0..", p - 1, ") for kernel width ", kw,
                    ", got kernel (kh, kw)=(", kh, ", ", kw, ")");
  return {0, kh};
}

// weight [C_out, C_in, kh, kw] float (kernel_rows); bias [C_out] or none; color_groups divides C_out and C_in for
// the blocked layout.
inline void check_conv_params(const at::Tensor& weight, const std::optional<at::Tensor>& bias, MaskType mt,
                              int64_t color_groups, ColorLayout layout, const char* op) {
  TORCH_CHECK_VALUE(weight.dim() == 4, op, ": weight must be 4-D [C_out, C_in, kh, kw], got shape ", weight.sizes());
  TORCH_CHECK_VALUE(weight.size(3) % 2 == 1, op, ": weight kernel width must be odd, got shape ", weight.sizes());
  kernel_rows(weight.size(2), weight.size(3), op);
  TORCH_CHECK_VALUE(is_float(weight.scalar_type()), op, ": weight must be float16/bfloat16/float32/float64, got ",
                    weight.scalar_type());
  TORCH_CHECK_VALUE(color_groups >= 1, op, ": color_groups must be >= 1, got ", color_groups);
  TORCH_CHECK_VALUE(mt != MaskType::V || color_groups == 1, op,
                    ": color_groups applies to the centre tap of masks 'A'/'B' only; mask 'V' needs 1, got ",
                    color_groups);
  TORCH_CHECK_VALUE(layout == ColorLayout::Interleaved ||
                        (weight.size(0) % color_groups == 0 && weight.size(1) % color_groups == 0),
                    op, ": C_out and C_in must be divisible by color_groups=", color_groups,
                    " for color_layout='blocked' (color_layout='interleaved' allows unequal groups), got weight ",
                    weight.sizes());
  if (bias.has_value()) {
    TORCH_CHECK_VALUE(bias->dim() == 1 && bias->size(0) == weight.size(0), op, ": bias must have shape [C_out]=(",
                      weight.size(0), ",), got ", bias->sizes());
    check_same(*bias, weight, "bias", "weight", op);
  }
}

// masked_conv2d: x [B, C_in, H, W] with weight's C_in, device and dtype, after check_conv_params.
inline void check_conv_input(const at::Tensor& x, const at::Tensor& weight, const char* op) {
  TORCH_CHECK_VALUE(x.dim() == 4, op, ": x must be 4-D [B, C_in, H, W], got shape ", x.sizes());
  TORCH_CHECK_VALUE(x.size(1) == weight.size(1), op, ": x has ", x.size(1), " channels but weight expects C_in=",
                    weight.size(1), ": x ", x.sizes(), ", weight ", weight.sizes());
  check_same(x, weight, "x", "weight", op);
}

// masked_conv2d_backward: grad_out [B, C_out, H, W] like the forward output; 3 output_mask entries.
inline void check_conv_backward(const at::Tensor& grad_out, const at::Tensor& x, const at::Tensor& weight,
                                size_t output_mask_size, const char* op) {
  TORCH_CHECK_VALUE(output_mask_size == 3, op, ": output_mask must have 3 entries, got ", output_mask_size);
  TORCH_CHECK_VALUE(grad_out.dim() == 4 && grad_out.size(0) == x.size(0) && grad_out.size(1) == weight.size(0) &&
                        grad_out.size(2) == x.size(2) && grad_out.size(3) == x.size(3),
                    op, ": grad_out must have shape [B, C_out, H, W]=(", x.size(0), ", ", weight.size(0), ", ",
                    x.size(2), ", ", x.size(3), "), got ", grad_out.sizes());
  check_same(grad_out, x, "grad_out", "x", op);
}

// masked_conv2d_step: cache [B, C_in, H, W]; (row, col) inside it; x_new [B, C_in] (A/B) or [B, C_in, W] (V).
inline void check_step(const at::Tensor& cache, const std::optional<at::Tensor>& x_new, const at::Tensor& weight,
                       const std::optional<at::Tensor>& bias, int64_t row, int64_t col, MaskType mt,
                       int64_t color_groups, ColorLayout layout, const char* op) {
  check_conv_params(weight, bias, mt, color_groups, layout, op);
  TORCH_CHECK_VALUE(cache.dim() == 4, op, ": cache must be 4-D [B, C_in, H, W], got shape ", cache.sizes());
  const int64_t B = cache.size(0), C_in = cache.size(1), H = cache.size(2), W = cache.size(3);
  TORCH_CHECK_VALUE(C_in == weight.size(1), op, ": cache has ", C_in, " channels but weight expects C_in=",
                    weight.size(1), ": cache ", cache.sizes(), ", weight ", weight.sizes());
  check_same(cache, weight, "cache", "weight", op);
  TORCH_CHECK_VALUE(row >= 0 && row < H, op, ": row must be in [0, ", H, ") for cache ", cache.sizes(), ", got row=",
                    row);
  TORCH_CHECK_VALUE(col >= 0 && col < W, op, ": col must be in [0, ", W, ") for cache ", cache.sizes(), ", got col=",
                    col);
  if (x_new.has_value()) {
    const bool v = mt == MaskType::V;
    const bool ok = v ? (x_new->dim() == 3 && x_new->size(0) == B && x_new->size(1) == C_in && x_new->size(2) == W)
                      : (x_new->dim() == 2 && x_new->size(0) == B && x_new->size(1) == C_in);
    TORCH_CHECK_VALUE(ok, op, ": x_new must have shape ",
                      v ? c10::str("(", B, ", ", C_in, ", ", W, ")") : c10::str("(", B, ", ", C_in, ")"),
                      " for mask '", v ? "V" : (mt == MaskType::A ? "A" : "B"), "' and cache ", cache.sizes(),
                      ", got ", x_new->sizes());
    check_same(*x_new, cache, "x_new", "cache", op);
  }
}

}  // namespace spn
