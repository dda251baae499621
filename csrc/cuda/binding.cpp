// ATen side of the CUDA kernels: checks the inputs (csrc/checks.h, the rules the CPU kernels use, plus what only
// the GPU needs: CUDA tensors, supported element sizes, 32-bit limits of the step kernel), turns tensors into
// the plain params of params.h, sets the device guard and launches on the current stream. The kernels
// themselves live in csrc/<op>/<op>.cu, which see no torch header.
//
// Dispatch: these are the spn::* CUDA kernels, so backend=None on CUDA tensors runs them for the five ops
// below, while masked_conv2d and its backward (no CUDA C++ kernel) run Triton (spn_kernels/_backend.py). The
// expectation behind that split: a hand-written latency kernel beats the generic Triton step, and the slice ops
// tie with Triton at copy bandwidth; benchmarks/gpu_check.py measures both backends.
//
// Without a CUDA build of torch, tests/ops/test_cuda_sources.py compiles this file against the CPU wheel's
// c10/cuda headers (compile only, plus a check that every launcher it calls is defined by a .cu).
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>
#include <optional>

#include "checks.h"
#include "cuda/params.h"

namespace spn {
namespace cuda {
namespace {

void check_cuda(const at::Tensor& t, const char* name, const char* op) {
  TORCH_CHECK_VALUE(t.is_cuda(), op, ": ", name, " must be a CUDA tensor, got one on ", t.device());
}

int64_t word_size(const at::Tensor& x, const char* name, const char* op) {
  const int64_t size = static_cast<int64_t>(x.element_size());
  TORCH_CHECK_VALUE(size == 1 || size == 2 || size == 4 || size == 8 || size == 16, op, ": ", name,
                    " has an unsupported element size ", size, " (dtype ", x.scalar_type(), ")");
  return size;
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
  check_cuda(x, "x", op);
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
  const int64_t s = check_slices(slices, op);
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
  check_cuda(x, "x", op);
  check_image(x, s, op);
  check_int_image(x, op);
  check_bits(bits, op);
  check_t(t, x, op);
  DType dtype;
  switch (x.scalar_type()) {
    case at::kByte: dtype = DType::kUInt8; break;
    case at::kChar: dtype = DType::kInt8; break;
    case at::kShort: dtype = DType::kInt16; break;
    case at::kInt: dtype = DType::kInt32; break;
    case at::kLong: dtype = DType::kInt64; break;
    default:
      TORCH_CHECK_VALUE(false, op, ": x has a dtype the kernel does not know, ", x.scalar_type());
  }
  const c10::cuda::CUDAGuard guard(x.device());
  const at::Tensor t64 = t.to(at::kLong);  // values unchecked: that would synchronise (see checks.h, check_t)
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
  check_cuda(x, "x", op);
  check_image(x, s, op);
  check_scatter_values(values, x, s, op);
  check_t(t, x, op);
  word_size(x, "x", op);
  const int64_t B = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  const c10::cuda::CUDAGuard guard(x.device());
  const at::Tensor t64 = t.to(at::kLong);  // values unchecked: the kernel skips a t outside [0, s*s)
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
                                   int64_t col, c10::string_view mask_type, int64_t color_groups,
                                   c10::string_view color_layout) {
  const char* op = "masked_conv2d_step";
  check_cuda(cache, "cache", op);
  const MaskType mt = parse_mask_type(mask_type, op);
  const ColorLayout cl = parse_color_layout(color_layout, op);
  check_step(cache, x_new, weight, bias, row, col, mt, color_groups, cl, op);
  const int64_t B = cache.size(0), C_in = cache.size(1), H = cache.size(2), W = cache.size(3);
  const int64_t C_out = weight.size(0), kh = weight.size(2), k = weight.size(3);
  const KernelRows kr = kernel_rows(kh, k, op);
  TORCH_CHECK_VALUE(C_in * kh * k < (int64_t{1} << 31) && C_out < (int64_t{1} << 31), op,
                    ": weight is too large for the step kernel, got shape ", weight.sizes());
  DType dtype;
  switch (cache.scalar_type()) {
    case at::kFloat: dtype = DType::kFloat32; break;
    case at::kBFloat16: dtype = DType::kBFloat16; break;
    case at::kHalf: dtype = DType::kFloat16; break;
    case at::kDouble: dtype = DType::kFloat64; break;
    default:
      TORCH_CHECK_VALUE(false, op, ": cache has a dtype the kernel does not know, ", cache.scalar_type());
  }
  const Mask mask = mt == MaskType::A ? Mask::kA : mt == MaskType::B ? Mask::kB : Mask::kV;

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
  p.n_rows = std::min<int64_t>(kr.n, k / 2 - kr.r0 + 1);  // rows below the centre row are always masked
  p.dy0 = kr.r0 - k / 2;
  p.interleaved = cl == ColorLayout::Interleaved;
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
