// CPU kernel of slice_context. The spec is spn_kernels/ops/slice_context/ref.py; csrc/slices.h describes the loop
// structure the slice ops share.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>

#include "checks.h"
#include "slices.h"

namespace spn {
namespace {

using slices::dispatch_step;
using slices::grain_planes;

// integer x [B, C, H, W], t [B] -> float32 [B, s*s*(C+1), h, w]; plane k*(C+1) + c holds slice k channel c
// scaled as (2v + 1) / 2^bits - 1 when k < t[b] (0 otherwise); plane k*(C+1) + C is the presence flag.
// Multiplying by 1/2^bits is exact (a power of two), so this matches the reference's division bit for bit.
at::Tensor slice_context_cpu(const at::Tensor& x, int64_t s, const at::Tensor& t, int64_t bits) {
  const char* op = "slice_context";
  check_image(x, s, op);
  check_int_image(x, op);
  check_bits(bits, op);
  check_t(t, x, op);
  const int64_t B = x.size(0), C = x.size(1), h = x.size(2) / s, w = x.size(3) / s, S2 = s * s;
  const at::Tensor t64 = t.to(at::kLong).contiguous();
  check_t_values(t64.const_data_ptr<int64_t>(), B, S2, op);
  at::Tensor out = at::empty({B, S2 * (C + 1), h, w}, x.options().dtype(at::kFloat));
  if (out.numel() == 0) return out;
  const int64_t* tp = t64.const_data_ptr<int64_t>();
  const int64_t sb = x.stride(0), sc = x.stride(1), sh = x.stride(2), sw = x.stride(3);
  const float scale = 1.0f / static_cast<float>(int64_t{1} << bits);
  const int64_t planes = B * S2 * (C + 1);  // output planes [h, w]
  AT_DISPATCH_INTEGRAL_TYPES(x.scalar_type(), "slice_context", [&] {
    const scalar_t* src = x.const_data_ptr<scalar_t>();
    float* dst = out.mutable_data_ptr<float>();
    at::parallel_for(0, planes, grain_planes(h * w), [&](int64_t p0, int64_t p1) {
      for (int64_t pl = p0; pl < p1; ++pl) {
        const int64_t c = pl % (C + 1), k = (pl / (C + 1)) % S2, b = pl / ((C + 1) * S2);
        float* o = dst + pl * h * w;
        const bool seen = k < tp[b];
        if (!seen || c == C) {
          std::fill(o, o + h * w, seen ? 1.0f : 0.0f);
          continue;
        }
        const scalar_t* in = src + b * sb + c * sc + (k / s) * sh + (k % s) * sw;
        const int64_t row_step = s * sh;
        dispatch_step(s * sw, [&](auto S) {
          const int64_t step = S() ? S() : s * sw;
          for (int64_t y = 0; y < h; ++y, o += w, in += row_step) {
            for (int64_t u = 0; u < w; ++u) o[u] = (2.0f * static_cast<float>(in[u * step]) + 1.0f) * scale - 1.0f;
          }
        });
      }
    });
  });
  return out;
}

}  // namespace
}  // namespace spn

TORCH_LIBRARY_IMPL(spn, CPU, m) { m.impl("slice_context", &spn::slice_context_cpu); }
