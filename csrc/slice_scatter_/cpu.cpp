// CPU kernel of slice_scatter_. The spec is spn_kernels/ops/slice_scatter_/ref.py; csrc/slices.h describes the loop
// structure the slice ops share.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cstdint>

#include "checks.h"
#include "slices.h"

namespace spn {
namespace {

using slices::dispatch_by_size;
using slices::grain_planes;

// x[b, c, y*s + i, u*s + j] = values[b, c, y, u] with t[b] = i*s + j; in place, through x's own strides.
void slice_scatter_cpu_(at::Tensor& x, const at::Tensor& values, int64_t s, const at::Tensor& t) {
  const char* op = "slice_scatter_";
  check_image(x, s, op);
  check_scatter_values(values, x, s, op);
  check_t(t, x, op);
  const int64_t B = x.size(0), C = x.size(1), h = x.size(2) / s, w = x.size(3) / s;
  const at::Tensor t64 = t.to(at::kLong).contiguous();
  check_t_values(t64.const_data_ptr<int64_t>(), B, s * s - 1, op);
  if (x.numel() == 0) return;
  const int64_t* tp = t64.const_data_ptr<int64_t>();
  const int64_t xb = x.stride(0), xc = x.stride(1), xh = x.stride(2), xw = x.stride(3);
  const int64_t vb = values.stride(0), vc = values.stride(1), vh = values.stride(2), vw = values.stride(3);
  const int64_t planes = B * C;  // planes [h, w] of values
  dispatch_by_size(x.element_size(), "slice_scatter_", [&](auto tag) {
    using T = decltype(tag);
    const T* src = static_cast<const T*>(values.const_data_ptr());
    T* dst = static_cast<T*>(x.mutable_data_ptr());
    at::parallel_for(0, planes, grain_planes(h * w), [&](int64_t p0, int64_t p1) {
      for (int64_t pl = p0; pl < p1; ++pl) {
        const int64_t c = pl % C, b = pl / C;
        const int64_t i = tp[b] / s, j = tp[b] % s;
        const T* in = src + b * vb + c * vc;
        T* o = dst + b * xb + c * xc + i * xh + j * xw;
        const int64_t row_step = s * xh, step = s * xw;
        for (int64_t y = 0; y < h; ++y, o += row_step, in += vh) {
          for (int64_t u = 0; u < w; ++u) o[u * step] = in[u * vw];
        }
      }
    });
  });
}

}  // namespace
}  // namespace spn

TORCH_LIBRARY_IMPL(spn, CPU, m) { m.impl("slice_scatter_", &spn::slice_scatter_cpu_); }
