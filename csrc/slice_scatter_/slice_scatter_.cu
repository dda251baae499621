// CUDA kernel of slice_scatter_ (values -> slice t of the image, in place). Semantics:
// spn_kernels/ops/slice_scatter_/ref.py; the grid-stride helpers are in csrc/cuda/slices.cuh. Includes only
// CUDA headers and params.h, so bare nvcc compiles this file.
#include <cuda_runtime.h>

#include <cstdint>

#include "cuda/params.h"
#include "cuda/slices.cuh"

namespace spn {
namespace cuda {
namespace {

template <typename word_t>
__global__ void __launch_bounds__(kThreads) slice_scatter_kernel(ScatterParams p) {
  word_t* img = static_cast<word_t*>(p.img);
  const word_t* vals = static_cast<const word_t*>(p.values);
  const int64_t h = p.H / p.s, w = p.W / p.s;
  const int64_t n = p.B * p.C * h * w;
  for (int64_t idx = thread_index(); idx < n; idx += thread_count()) {
    const int64_t x = idx % w;
    int64_t r = idx / w;
    const int64_t y = r % h;
    r /= h;
    const int64_t c = r % p.C;
    const int64_t b = r / p.C;
    const int64_t t = p.t[b * p.t_stride];
    // The public function checks 0 <= t < s*s eagerly; under torch.compile it cannot, and a direct call of
    // torch.ops.spn.slice_scatter_ need not: never write out of bounds here.
    if (t < 0 || t >= p.s * p.s) continue;
    const int64_t Y = y * p.s + t / p.s, X = x * p.s + t % p.s;
    img[b * p.img_stride[0] + c * p.img_stride[1] + Y * p.img_stride[2] + X * p.img_stride[3]] =
        vals[b * p.values_stride[0] + c * p.values_stride[1] + y * p.values_stride[2] + x * p.values_stride[3]];
  }
}

}  // namespace

cudaError_t launch_slice_scatter(const ScatterParams& p, cudaStream_t stream) {
  const int64_t n = p.B * p.C * (p.H / p.s) * (p.W / p.s);
  SPN_WORD_SWITCH(p.elem_size, { slice_scatter_kernel<word_t><<<grid_for(n, kThreads), kThreads, 0, stream>>>(p); });
  return cudaGetLastError();
}

}  // namespace cuda
}  // namespace spn
