// CPU kernel of subscale_merge. The spec is spn_kernels/ops/subscale_merge/ref.py; csrc/slices.h describes the loop
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

// slices [B, s*s, C, h, w] -> out [B, C, h*s, w*s], out[b, c, y*s + i, u*s + j] = slices[b, i*s + j, c, y, u]
at::Tensor subscale_merge_cpu(const at::Tensor& slices) {
  const int64_t s = check_slices(slices, "subscale_merge");
  const int64_t B = slices.size(0), C = slices.size(2), h = slices.size(3), w = slices.size(4);
  const int64_t H = h * s, W = w * s;
  at::Tensor out = at::empty({B, C, H, W}, slices.options().memory_format(at::MemoryFormat::Contiguous));
  if (out.numel() == 0) return out;
  const int64_t sb = slices.stride(0), sk = slices.stride(1), sc = slices.stride(2), sy = slices.stride(3),
                su = slices.stride(4);
  const int64_t planes = B * C;  // output planes [H, W]
  dispatch_by_size(slices.element_size(), "subscale_merge", [&](auto tag) {
    using T = decltype(tag);
    const T* src = static_cast<const T*>(slices.const_data_ptr());
    T* dst = static_cast<T*>(out.mutable_data_ptr());
    at::parallel_for(0, planes, grain_planes(H * W), [&](int64_t p0, int64_t p1) {
      for (int64_t pl = p0; pl < p1; ++pl) {
        const int64_t c = pl % C, b = pl / C;
        T* o = dst + pl * H * W;
        for (int64_t y = 0; y < h; ++y) {
          for (int64_t i = 0; i < s; ++i, o += W) {
            const T* in = src + b * sb + (i * s) * sk + c * sc + y * sy;  // slice i*s + j is in + j*sk
            if (su == 1 && (s == 2 || s == 4)) {
              dispatch_step(s, [&](auto S) {  // S > 0 here: interleave S contiguous rows
                for (int64_t u = 0; u < w; ++u) {
                  for (int64_t j = 0; j < S(); ++j) o[u * S() + j] = in[j * sk + u];
                }
              });
              continue;
            }
            for (int64_t j = 0; j < s; ++j) {
              const T* in_j = in + j * sk;
              for (int64_t u = 0; u < w; ++u) o[u * s + j] = in_j[u * su];
            }
          }
        }
      }
    });
  });
  return out;
}

}  // namespace
}  // namespace spn

TORCH_LIBRARY_IMPL(spn, CPU, m) { m.impl("subscale_merge", &spn::subscale_merge_cpu); }
