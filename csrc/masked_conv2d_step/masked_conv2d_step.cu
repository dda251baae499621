// CUDA kernel of masked_conv2d_step: one cached step of the masked convolution (the sampler's inner loop).
// Semantics: spn_kernels/ops/masked_conv2d_step/ref.py (masked_conv2d_step_ref) and conv_mask in
// spn_kernels/ops/masked_conv2d/ref.py.
//
// A step is a tiny GEMV: out[b, o] = bias[o] + sum over (ci, dy, dx) of w[o, ci, dy, dx] * cache[b, ci, row -
// p + dy, col - p + dx], over the k//2 + 1 rows x k columns the mask can see. Its cost is latency, so one
// block computes one output channel for a tile of kBT images: its threads split the C_in * (p+1) * k reduction
// (consecutive threads read consecutive weights and cache columns), then a warp-shuffle + shared-memory tree
// sums it. With B=16, C=128, k=5 that is 128 x 4 blocks of 128 threads, ~15 multiply-adds x 4 images per
// thread: one wave on an H100/H200. (causal-conv1d's update kernel gives each channel one thread because its
// convolution is depthwise; here every output reads all C_in channels, so the reduction is what to split.)
// Mask V computes a whole row: gridDim.y runs over its columns. Sums are float32 (float64 for float64 input).
// A masked tap is skipped, never multiplied by a zero weight, so a non-finite cache value under it (a pixel not
// generated yet, a colour channel the centre tap masks) never reaches the output (the spec's rule for non-finite
// inputs).
//
// x_new must be written before the step reads its position. Rather than a second launch, every block takes
// the values at the written positions straight from x_new (never from the cache), and the blocks of output
// channel 0 store x_new into the cache; nothing reads a cache position that is being written, so there is no
// race and no ordering between blocks is needed.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

#include "cuda/params.h"

namespace spn {
namespace cuda {
namespace {

constexpr int kThreads = 128;
constexpr int kWarps = kThreads / 32;
constexpr int kBT = 4;  // images per block

// Explicit conversions: torch builds extensions with __CUDA_NO_HALF_CONVERSIONS__ and friends.
// Accumulation is float32 for every dtype but float64.
template <typename T>
using acc_of = typename std::conditional<std::is_same<T, double>::value, double, float>::type;

__device__ __forceinline__ float to_float(float v) { return v; }
__device__ __forceinline__ double to_float(double v) { return v; }
__device__ __forceinline__ float to_float(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }
template <typename T>
__device__ __forceinline__ T from_float(acc_of<T> v);
template <>
__device__ __forceinline__ float from_float<float>(float v) {
  return v;
}
template <>
__device__ __forceinline__ double from_float<double>(double v) {
  return v;
}
template <>
__device__ __forceinline__ __half from_float<__half>(float v) {
  return __float2half_rn(v);
}
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}

// conv_mask for the square-kernel rows dy <= p (rows below the centre are never visible).
__device__ __forceinline__ bool tap_visible(Mask mask, int dy, int dx, int p, int g_in, int64_t g_out) {
  if (dy < p || mask == Mask::kV) return true;
  if (dx != p) return dx < p;
  // centre tap: block-triangular over colour groups
  return mask == Mask::kA ? g_in < g_out : g_in <= g_out;
}

template <typename scalar_t>
__global__ void __launch_bounds__(kThreads) masked_conv2d_step_kernel(StepParams p) {
  using acc_t = acc_of<scalar_t>;
  scalar_t* cache = static_cast<scalar_t*>(p.cache);
  const scalar_t* x_new = static_cast<const scalar_t*>(p.x_new);
  const scalar_t* weight = static_cast<const scalar_t*>(p.weight);
  const scalar_t* bias = static_cast<const scalar_t*>(p.bias);
  scalar_t* out = static_cast<scalar_t*>(p.out);
  const bool vertical = p.mask == Mask::kV;
  const int64_t o = blockIdx.x;
  const int pad = static_cast<int>(p.k / 2);
  const int kk = static_cast<int>(p.k);
  const int taps = static_cast<int>(p.n_rows) * kk;
  const int R = static_cast<int>(p.C_in) * taps;  // the binding checks C_in * kh * k < 2^31
  const int dy0 = static_cast<int>(p.dy0);
  const int groups = static_cast<int>(p.color_groups);
  const int64_t g_out = p.interleaved ? o % p.color_groups : o / (p.C_out / p.color_groups);
  // 32-bit: divided once per tap; unused (and possibly 0) for the interleaved layout
  const int c_in_group = p.interleaved ? 1 : static_cast<int>(p.C_in / p.color_groups);
  const int64_t nx = vertical ? p.W : 1;
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  __shared__ acc_t partial[kWarps][kBT];

  for (int64_t b0 = static_cast<int64_t>(blockIdx.z) * kBT; b0 < p.B; b0 += static_cast<int64_t>(gridDim.z) * kBT) {
    for (int64_t xi = blockIdx.y; xi < nx; xi += gridDim.y) {
      const int64_t xc = vertical ? xi : p.col;  // output column
      if (x_new != nullptr && o == 0) {
        // A/B: x_new [B, C_in] -> cache[:, :, row, col]; V: column xi of x_new [B, C_in, W] -> cache[:, :, row, xi]
        for (int64_t e = threadIdx.x; e < kBT * p.C_in; e += kThreads) {
          const int64_t b = b0 + e / p.C_in, ci = e % p.C_in;
          if (b >= p.B) continue;
          cache[b * p.cache_stride[0] + ci * p.cache_stride[1] + p.row * p.cache_stride[2] + xc * p.cache_stride[3]] =
              x_new[b * p.x_new_stride[0] + ci * p.x_new_stride[1] + (vertical ? xc * p.x_new_stride[2] : 0)];
        }
      }
      acc_t acc[kBT];
#pragma unroll
      for (int bt = 0; bt < kBT; ++bt) acc[bt] = 0;
      for (int r = threadIdx.x; r < R; r += kThreads) {
        const int ci = r / taps, tap = r % taps;
        const int i = tap / kk, dx = tap % kk;  // weight row i is square row i + dy0 + pad
        const int g_in = p.interleaved ? ci % groups : ci / c_in_group;
        if (!tap_visible(p.mask, i + dy0 + pad, dx, pad, g_in, g_out)) continue;
        const int64_t Y = p.row + dy0 + i, X = xc - pad + dx;
        if (Y < 0 || X < 0 || X >= p.W) continue;  // zero padding
        const acc_t wv = to_float(
            weight[o * p.weight_stride[0] + ci * p.weight_stride[1] + i * p.weight_stride[2] + dx * p.weight_stride[3]]);
        // the position x_new writes: read x_new itself (see the file comment)
        const bool from_new = x_new != nullptr && Y == p.row && (vertical || X == p.col);
#pragma unroll
        for (int bt = 0; bt < kBT; ++bt) {
          const int64_t b = b0 + bt;
          if (b >= p.B) break;
          const scalar_t v =
              from_new ? x_new[b * p.x_new_stride[0] + ci * p.x_new_stride[1] + (vertical ? X * p.x_new_stride[2] : 0)]
                       : cache[b * p.cache_stride[0] + ci * p.cache_stride[1] + Y * p.cache_stride[2] +
                               X * p.cache_stride[3]];
          acc[bt] += wv * to_float(v);
        }
      }
#pragma unroll
      for (int bt = 0; bt < kBT; ++bt) {
        acc_t v = acc[bt];
#pragma unroll
        for (int off = 16; off > 0; off /= 2) v += __shfl_down_sync(0xffffffffu, v, off);
        if (lane == 0) partial[warp][bt] = v;
      }
      __syncthreads();
      if (threadIdx.x < kBT && b0 + threadIdx.x < p.B) {
        const int64_t b = b0 + threadIdx.x;
        acc_t sum = bias != nullptr ? to_float(bias[o * p.bias_stride]) : acc_t(0);
#pragma unroll
        for (int wi = 0; wi < kWarps; ++wi) sum += partial[wi][threadIdx.x];
        out[b * p.out_stride[0] + o * p.out_stride[1] + (vertical ? xi * p.out_stride[2] : 0)] = from_float<scalar_t>(sum);
      }
      __syncthreads();  // partial is reused by the next (b0, xi)
    }
  }
}

}  // namespace

cudaError_t launch_masked_conv2d_step(const StepParams& p, cudaStream_t stream) {
  const int64_t nx = p.mask == Mask::kV ? p.W : 1;
  const int64_t tiles = (p.B + kBT - 1) / kBT;
  // gridDim.y and gridDim.z are limited to 65535: the kernel loops over what does not fit.
  const dim3 grid(static_cast<unsigned>(p.C_out), static_cast<unsigned>(nx < 65535 ? nx : 65535),
                  static_cast<unsigned>(tiles < 65535 ? tiles : 65535));
  SPN_FLOAT_SWITCH(p.dtype, { masked_conv2d_step_kernel<scalar_t><<<grid, kThreads, 0, stream>>>(p); });
  return cudaGetLastError();
}

}  // namespace cuda
}  // namespace spn
