// CPU kernel of subscale_split. The spec is spn_kernels/ops/subscale_split/ref.py; csrc/slices.h describes the loop
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
using slices::dispatch_step;
using slices::grain_planes;

// x [B, C, H, W] -> out [B, s*s, C, h, w], out[b, i*s + j, c, y, u] = x[b, c, y*s + i, u*s + j]
at::Tensor subscale_split_cpu(const at::Tensor& x, int64_t s) {
  check_image(x, s, "subscale_split");
  const int64_t B = x.size(0), C = x.size(1), h = x.size(2) / s, w = x.size(3) / s;
  at::Tensor out = at::empty({B, s * s, C, h, w}, x.options().memory_format(at::MemoryFormat::Contiguous));
  if (out.numel() == 0) return out;
  const int64_t sb = x.stride(0), sc = x.stride(1), sh = x.stride(2), sw = x.stride(3);
  if (sw == 1 && (s == 2 || s == 4)) {
    // Unit-stride rows: walk the input plane by plane, each input row once, de-interleaving it into the s
    // output rows it feeds (a group load of s neighbours, which the compiler vectorises).
    dispatch_by_size(x.element_size(), "subscale_split", [&](auto tag) {
      using T = decltype(tag);
      const T* src = static_cast<const T*>(x.const_data_ptr());
      T* dst = static_cast<T*>(out.mutable_data_ptr());
      dispatch_step(s, [&](auto S) {
        at::parallel_for(0, B * C, grain_planes(h * w * s * s), [&](int64_t p0, int64_t p1) {
          for (int64_t pl = p0; pl < p1; ++pl) {
            const int64_t c = pl % C, b = pl / C;
            for (int64_t y = 0; y < h; ++y) {
              for (int64_t i = 0; i < S(); ++i) {
                const T* in = src + b * sb + c * sc + (y * S() + i) * sh;
                T* o[S()];
                for (int64_t j = 0; j < S(); ++j) o[j] = dst + (((b * S() * S() + i * S() + j) * C + c) * h + y) * w;
                for (int64_t u = 0; u < w; ++u) {
                  for (int64_t j = 0; j < S(); ++j) o[j][u] = in[u * S() + j];
                }
              }
            }
          }
        });
      });
    });
    return out;
  }
  const int64_t planes = B * s * s * C;  // output planes [h, w]
  dispatch_by_size(x.element_size(), "subscale_split", [&](auto tag) {
    using T = decltype(tag);
    const T* src = static_cast<const T*>(x.const_data_ptr());
    T* dst = static_cast<T*>(out.mutable_data_ptr());
    at::parallel_for(0, planes, grain_planes(h * w), [&](int64_t p0, int64_t p1) {
      for (int64_t pl = p0; pl < p1; ++pl) {
        const int64_t c = pl % C, k = (pl / C) % (s * s), b = pl / (C * s * s);
        const T* in = src + b * sb + c * sc + (k / s) * sh + (k % s) * sw;
        T* o = dst + pl * h * w;
        const int64_t row_step = s * sh;
        const int64_t step = s * sw;
        for (int64_t y = 0; y < h; ++y, o += w, in += row_step) {
          for (int64_t u = 0; u < w; ++u) o[u] = in[u * step];
        }
      }
    });
  });
  return out;
}

}  // namespace
}  // namespace spn

TORCH_LIBRARY_IMPL(spn, CPU, m) { m.impl("subscale_split", &spn::subscale_split_cpu); }
