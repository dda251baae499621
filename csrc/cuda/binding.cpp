// ATen side of the CUDA kernels: checks the inputs (ValueError naming the argument and shapes), turns tensors
// into the plain params of params.h, sets the device guard and launches on the current stream. The kernels
// themselves live in the .cu files, which see no torch header.
//
// Dispatch: these are the spn::* CUDA kernels, so backend=None on CUDA tensors runs them for the five ops
// below, while masked_conv2d and its backward (no CUDA C++ kernel) run Triton. That split is a prior, not yet
// measured on a GPU: a hand-written latency kernel is expected to beat the generic Triton step, and the slice
// ops are expected to tie with Triton at copy bandwidth (benchmarks/gpu_check.py measures both backends).
//
// CI has no CUDA torch, so this file is compiled there by tests/kernels/test_cuda_sources.py against the CPU
// wheel's c10/cuda headers (compile only, plus a check that every launcher it calls is defined by a .cu).
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <cstdint>
#include <optional>

#include "params.h"

namespace spn {
namespace cuda {
namespace {

void check_cuda(const at::Tensor& t, const char* name, const char* op) {
  TORCH_CHECK_VALUE(t.is_cuda(), op, ": ", name, " must be a CUDA tensor, got one on ", t.device());
}

void check_same(const at::Tensor& a, const at::Tensor& b, const char* na, const char* nb, const char* op) {
  TORCH_CHECK_VALUE(a.device() == b.device(), op, ": ", na, " is on ", a.device(), " but ", nb, " is on ", b.device());
  TORCH_CHECK_VALUE(a.scalar_type() == b.scalar_type(), op, ": ", na, " has dtype ", a.scalar_type(), " but ", nb,
                    " has dtype ", b.scalar_type());
}

void check_image(const at::Tensor& x, int64_t s, const char* op) {
  check_cuda(x, "x", op);
  TORCH_CHECK_VALUE(x.dim() == 4, op, ": x must be 4-D [B, C, H, W], got shape ", x.sizes());
  TORCH_CHECK_VALUE(s >= 1, op, ": s must be >= 1, got s=", s);
  TORCH_CHECK_VALUE(x.size(2) % s == 0 && x.size(3) % s == 0, op, ": x height and width must be divisible by s=", s,
                    ", got x of shape ", x.sizes());
}

int64_t word_size(const at::Tensor& x, const char* name, const char* op) {
  const int64_t size = static_cast<int64_t>(x.element_size());
  TORCH_CHECK_VALUE(size == 1 || size == 2 || size == 4 || size == 8 || size == 16, op, ": ", name,
                    " has an unsupported element size ", size, " (dtype ", x.scalar_type(), ")");
  return size;
}

// t as int64 [B] on x's device. Its values are not checked here (that would synchronise with the GPU): the
// public functions check them eagerly, and the kernels stay in bounds whatever they are.
at::Tensor as_t(const at::Tensor& t, const at::Tensor& x, const char* op) {
  TORCH_CHECK_VALUE(t.dim() == 1 && t.size(0) == x.size(0), op, ": t must have shape [B]=(", x.size(0),
                    ",), got shape ", t.sizes());
  TORCH_CHECK_VALUE(!t.is_floating_point() && !t.is_complex(), op, ": t must be an integer tensor, got ",
                    t.scalar_type());
  TORCH_CHECK_VALUE(t.device() == x.device(), op, ": t is on ", t.device(), " but x is on ", x.device());
  return t.to(at::kLong);
}

template <int N>
void strides_of(const at::Tensor& t, int64_t (&out)[N]) {
  for (int d = 0; d < N; ++d) out[d] = t.stride(d);
}

bool aligned16(const void* p) { return reinterpret_cast<std::uintptr_t>(p) % 16 == 0; }

cudaStream_t current_stream() { return c10::cuda::getCurrentCUDAStream().stream(); }

SubscaleParams subscale_params(const at::Tensor& img, const at::Tensor& slices, int64_t s) {
  SubscaleParams p{};
  p.img = img.data_ptr();
  p.slices = slices.data_ptr();
  p.B = img.size(0);
  p.C = img.size(1);
  p.H = img.size(2);
  p.W = img.size(3);
  p.s = s;
  strides_of(img, p.img_stride);
  strides_of(slices, p.slice_stride);
  p.elem_size = static_cast<int64_t>(img.element_size());
  p.vec_ok = (s == 2 || s == 4 || s == 8) && img.is_contiguous() && slices.is_contiguous() &&
             p.W % (s * (16 / p.elem_size)) == 0 && aligned16(p.img) && aligned16(p.slices);
  return p;
}

at::Tensor subscale_split_cuda(const at::Tensor& x, int64_t s) {
  const char* op = "subscale_split";
  check_image(x, s, op);
  word_size(x, "x", op);
  const int64_t B = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  const c10::cuda::CUDAGuard guard(x.device());
  at::Tensor out = at::empty({B, s * s, C, H / s, W / s}, x.options());  // contiguous
  if (out.numel() == 0) return out;
  C10_CUDA_CHECK(launch_subscale_split(subscale_params(x, out, s), current_stream()));
  return out;
}

at::Tensor subscale_merge_cuda(const at::Tensor& slices) {
  const char* op = "subscale_merge";
  check_cuda(slices, "slices", op);
  TORCH_CHECK_VALUE(slices.dim() == 5, op, ": slices must be 5-D [B, s*s, C, n, m], got shape ", slices.sizes());
  int64_t s = 1;
  while ((s + 1) * (s + 1) <= slices.size(1)) ++s;
  TORCH_CHECK_VALUE(s * s == slices.size(1), op, ": slices.shape[1] must be a square s*s >= 1, got shape ",
                    slices.sizes());
  word_size(slices, "slices", op);
  const int64_t B = slices.size(0), C = slices.size(2), h = slices.size(3), w = slices.size(4);
  const c10::cuda::CUDAGuard guard(slices.device());
  at::Tensor out = at::empty({B, C, h * s, w * s}, slices.options());
  if (out.numel() == 0) return out;
  C10_CUDA_CHECK(launch_subscale_merge(subscale_params(out, slices, s), current_stream()));
  return out;
}

at::Tensor slice_context_cuda(const at::Tensor& x, int64_t s, const at::Tensor& t, int64_t bits) {
  const char* op = "slice_context";
  check_image(x, s, op);
  DType dtype;
  switch (x.scalar_type()) {
    case at::kByte: dtype = DType::kUInt8; break;
    case at::kChar: dtype = DType::kInt8; break;
    case at::kShort: dtype = DType::kInt16; break;
    case at::kInt: dtype = DType::kInt32; break;
    case at::kLong: dtype = DType::kInt64; break;
    default:
      TORCH_CHECK_VALUE(false, op, ": x must be an integer image (uint8/int8/int16/int32/int64), got ",
                        x.scalar_type());
  }
  TORCH_CHECK_VALUE(1 <= bits && bits <= 16, op, ": bits must be in 1..16, got bits=", bits);
  const c10::cuda::CUDAGuard guard(x.device());
  const at::Tensor t64 = as_t(t, x, op);
  const int64_t B = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  at::Tensor out = at::empty({B, s * s * (C + 1), H / s, W / s}, x.options().dtype(at::kFloat));
  if (out.numel() == 0) return out;
  ContextParams p{};
  p.img = x.data_ptr();
  p.t = t64.const_data_ptr<int64_t>();
  p.out = out.data_ptr<float>();
  p.B = B;
  p.C = C;
  p.H = H;
  p.W = W;
  p.s = s;
  p.bits = bits;
  strides_of(x, p.img_stride);
  p.t_stride = t64.stride(0);
  p.img_dtype = dtype;
  C10_CUDA_CHECK(launch_slice_context(p, current_stream()));
  return out;
}

void slice_scatter_cuda_(at::Tensor& x, const at::Tensor& values, int64_t s, const at::Tensor& t) {
  const char* op = "slice_scatter_";
  check_image(x, s, op);
  const int64_t B = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  TORCH_CHECK_VALUE(values.dim() == 4 && values.size(0) == B && values.size(1) == C && values.size(2) == H / s &&
                        values.size(3) == W / s,
                    op, ": values must have shape [B, C, H/s, W/s]=(", B, ", ", C, ", ", H / s, ", ", W / s,
                    ") for x ", x.sizes(), " and s=", s, ", got ", values.sizes());
  check_same(values, x, "values", "x", op);
  word_size(x, "x", op);
  const c10::cuda::CUDAGuard guard(x.device());
  const at::Tensor t64 = as_t(t, x, op);
  if (values.numel() == 0) return;
  ScatterParams p{};
  p.img = x.data_ptr();
  p.values = values.const_data_ptr();
  p.t = t64.const_data_ptr<int64_t>();
  p.B = B;
  p.C = C;
  p.H = H;
  p.W = W;
  p.s = s;
  strides_of(x, p.img_stride);
  strides_of(values, p.values_stride);
  p.t_stride = t64.stride(0);
  p.elem_size = static_cast<int64_t>(x.element_size());
  C10_CUDA_CHECK(launch_slice_scatter(p, current_stream()));
}

at::Tensor masked_conv2d_step_cuda(at::Tensor& cache, const std::optional<at::Tensor>& x_new,
                                   const at::Tensor& weight, const std::optional<at::Tensor>& bias, int64_t row,
                                   int64_t col, c10::string_view mask_type, int64_t color_groups) {
  const char* op = "masked_conv2d_step";
  check_cuda(cache, "cache", op);
  TORCH_CHECK_VALUE(cache.dim() == 4, op, ": cache must be 4-D [B, C_in, H, W], got shape ", cache.sizes());
  TORCH_CHECK_VALUE(weight.dim() == 4, op, ": weight must be 4-D [C_out, C_in, k, k], got shape ", weight.sizes());
  check_same(weight, cache, "weight", "cache", op);
  const int64_t B = cache.size(0), C_in = cache.size(1), H = cache.size(2), W = cache.size(3);
  const int64_t C_out = weight.size(0), k = weight.size(2);
  TORCH_CHECK_VALUE(weight.size(1) == C_in, op, ": cache has ", C_in, " channels but weight expects C_in=",
                    weight.size(1), ": cache ", cache.sizes(), ", weight ", weight.sizes());
  TORCH_CHECK_VALUE(k == weight.size(3) && k % 2 == 1, op, ": weight must have an odd square kernel, got shape ",
                    weight.sizes());
  TORCH_CHECK_VALUE(C_in * k * k < (int64_t{1} << 31) && C_out < (int64_t{1} << 31), op,
                    ": weight is too large for the step kernel, got shape ", weight.sizes());
  DType dtype;
  switch (cache.scalar_type()) {
    case at::kFloat: dtype = DType::kFloat32; break;
    case at::kBFloat16: dtype = DType::kBFloat16; break;
    case at::kHalf: dtype = DType::kFloat16; break;
    case at::kDouble: dtype = DType::kFloat64; break;
    default:
      TORCH_CHECK_VALUE(false, op, ": cache must be float32/bfloat16/float16/float64, got ", cache.scalar_type());
  }
  Mask mask;
  if (mask_type == "A") {
    mask = Mask::kA;
  } else if (mask_type == "B") {
    mask = Mask::kB;
  } else if (mask_type == "V") {
    mask = Mask::kV;
  } else {
    TORCH_CHECK_VALUE(false, op, ": mask_type must be one of 'A', 'B', 'V', got '", mask_type, "'");
  }
  TORCH_CHECK_VALUE(color_groups >= 1 && C_out % color_groups == 0 && C_in % color_groups == 0, op,
                    ": color_groups must be >= 1 and divide C_out and C_in, got color_groups=", color_groups,
                    " and weight ", weight.sizes());
  TORCH_CHECK_VALUE(mask != Mask::kV || color_groups == 1, op,
                    ": color_groups applies to the centre tap of masks 'A'/'B' only; mask 'V' needs 1, got ",
                    color_groups);
  TORCH_CHECK_VALUE(0 <= row && row < H, op, ": row must be in [0, ", H, ") for cache ", cache.sizes(),
                    ", got row=", row);
  TORCH_CHECK_VALUE(0 <= col && col < W, op, ": col must be in [0, ", W, ") for cache ", cache.sizes(),
                    ", got col=", col);
  if (bias.has_value()) {
    TORCH_CHECK_VALUE(bias->dim() == 1 && bias->size(0) == C_out, op, ": bias must have shape [C_out]=(", C_out,
                      ",), got ", bias->sizes());
    check_same(*bias, cache, "bias", "cache", op);
  }
  if (x_new.has_value()) {
    const bool ok = mask == Mask::kV ? x_new->dim() == 3 && x_new->size(0) == B && x_new->size(1) == C_in &&
                                           x_new->size(2) == W
                                     : x_new->dim() == 2 && x_new->size(0) == B && x_new->size(1) == C_in;
    TORCH_CHECK_VALUE(ok, op, ": x_new must have shape ", (mask == Mask::kV ? "[B, C_in, W]" : "[B, C_in]"),
                      " for mask '", mask_type, "' and cache ", cache.sizes(), ", got ", x_new->sizes());
    check_same(*x_new, cache, "x_new", "cache", op);
  }

  const c10::cuda::CUDAGuard guard(cache.device());
  at::Tensor out = mask == Mask::kV ? at::empty({B, C_out, W}, cache.options()) : at::empty({B, C_out}, cache.options());
  if (out.numel() == 0) {
    if (x_new.has_value() && x_new->numel() > 0) {
      // C_out == 0: nothing to compute, but x_new must still land in the cache.
      if (mask == Mask::kV) {
        cache.select(2, row).copy_(*x_new);
      } else {
        cache.select(3, col).select(2, row).copy_(*x_new);
      }
    }
    return out;
  }
  StepParams p{};
  p.cache = cache.data_ptr();
  p.x_new = x_new.has_value() ? x_new->const_data_ptr() : nullptr;
  p.weight = weight.const_data_ptr();
  p.bias = bias.has_value() ? bias->const_data_ptr() : nullptr;
  p.out = out.data_ptr();
  p.B = B;
  p.C_in = C_in;
  p.C_out = C_out;
  p.H = H;
  p.W = W;
  p.k = k;
  p.row = row;
  p.col = col;
  p.color_groups = color_groups;
  strides_of(cache, p.cache_stride);
  if (x_new.has_value()) {
    p.x_new_stride[0] = x_new->stride(0);
    p.x_new_stride[1] = x_new->stride(1);
    p.x_new_stride[2] = mask == Mask::kV ? x_new->stride(2) : 0;
  }
  strides_of(weight, p.weight_stride);
  p.bias_stride = bias.has_value() ? bias->stride(0) : 0;
  p.out_stride[0] = out.stride(0);
  p.out_stride[1] = out.stride(1);
  p.out_stride[2] = mask == Mask::kV ? out.stride(2) : 0;
  p.mask = mask;
  p.dtype = dtype;
  C10_CUDA_CHECK(launch_masked_conv2d_step(p, current_stream()));
  return out;
}

}  // namespace
}  // namespace cuda
}  // namespace spn

TORCH_LIBRARY_IMPL(spn, CUDA, m) {
  m.impl("subscale_split", &spn::cuda::subscale_split_cuda);
  m.impl("subscale_merge", &spn::cuda::subscale_merge_cuda);
  m.impl("slice_context", &spn::cuda::slice_context_cuda);
  m.impl("slice_scatter_", &spn::cuda::slice_scatter_cuda_);
  m.impl("masked_conv2d_step", &spn::cuda::masked_conv2d_step_cuda);
}
