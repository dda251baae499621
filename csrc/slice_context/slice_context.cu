// CUDA kernel of slice_context (integer image -> the context network's float32 input). Semantics:
// spn_kernels/ops/slice_context/ref.py; the grid-stride helpers are in csrc/cuda/slices.cuh. Includes only
// CUDA headers and params.h, so bare nvcc compiles this file.
#include <cuda_runtime.h>

#include <cstdint>

#include "cuda/params.h"
#include "cuda/slices.cuh"

namespace spn {
namespace cuda {
namespace {

// One step writes VEC consecutive outputs of one output row; the output is contiguous
// [B, S2, C+1, h, w] (channel k*(C+1) + ch), so step idx writes out[idx*VEC .. idx*VEC + VEC).
template <typename scalar_t, int VEC>
__global__ void __launch_bounds__(kThreads) slice_context_kernel(ContextParams p) {
  const scalar_t* img = static_cast<const scalar_t*>(p.img);
  const int64_t S2 = p.s * p.s, C1 = p.C + 1;
  const int64_t h = p.H / p.s, w = p.W / p.s, wv = w / VEC;
  const int64_t n = p.B * S2 * C1 * h * wv;
  // 2^-bits is exact, and so is every step of (2v + 1) * 2^-bits - 1 for bits <= 16 (bit-exact with the
  // reference, even under --use_fast_math contraction).
  const float scale = ldexpf(1.0f, -static_cast<int>(p.bits));
  for (int64_t idx = thread_index(); idx < n; idx += thread_count()) {
    const int64_t xv = idx % wv;
    int64_t r = idx / wv;
    const int64_t y = r % h;
    r /= h;
    const int64_t ch = r % C1;
    r /= C1;
    const int64_t k = r % S2;
    const int64_t b = r / S2;
    const bool present = k < p.t[b * p.t_stride];
    float vals[VEC];
    if (!present || ch == p.C) {
#pragma unroll
      for (int e = 0; e < VEC; ++e) vals[e] = present ? 1.0f : 0.0f;
    } else {
      const int64_t Y = y * p.s + k / p.s;
      const scalar_t* src = img + b * p.img_stride[0] + ch * p.img_stride[1] + Y * p.img_stride[2];
#pragma unroll
      for (int e = 0; e < VEC; ++e) {
        const int64_t X = (xv * VEC + e) * p.s + k % p.s;
        const float v = static_cast<float>(src[X * p.img_stride[3]]);
        vals[e] = (2.0f * v + 1.0f) * scale - 1.0f;
      }
    }
    if (VEC == 4) {
      reinterpret_cast<float4*>(p.out)[idx] = make_float4(vals[0], vals[1 % VEC], vals[2 % VEC], vals[3 % VEC]);
    } else {
      p.out[idx] = vals[0];
    }
  }
}

}  // namespace

cudaError_t launch_slice_context(const ContextParams& p, cudaStream_t stream) {
  const int64_t w = p.W / p.s;
  const int64_t rows = p.B * p.s * p.s * (p.C + 1) * (p.H / p.s);
  SPN_INT_SWITCH(p.img_dtype, {
    if (w % 4 == 0) {
      slice_context_kernel<scalar_t, 4><<<grid_for(rows * (w / 4), kThreads), kThreads, 0, stream>>>(p);
    } else {
      slice_context_kernel<scalar_t, 1><<<grid_for(rows * w, kThreads), kThreads, 0, stream>>>(p);
    }
  });
  return cudaGetLastError();
}

}  // namespace cuda
}  // namespace spn
