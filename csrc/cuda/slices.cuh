// What the CUDA kernels of the slice ops share (csrc/{subscale_split,subscale_merge,slice_context,
// slice_scatter_}/*.cu): grid-stride loop helpers, and the split/merge kernels, one template for both directions.
// The index math mirrors the references (spn_kernels/ops/*/ref.py): slice k = i*s + j of an image is
// img[:, :, i::s, j::s], i.e. image pixel (Y, X) = (y*s + i, x*s + j) is pixel (y, x) of slice k.
//
// split/merge/scatter only move bits, so they are instantiated per element size (word_t), not per dtype.
// Includes only CUDA headers and params.h, so bare nvcc compiles every .cu that includes it.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "cuda/params.h"

namespace spn {
namespace cuda {
namespace {

constexpr int kThreads = 256;

__device__ __forceinline__ int64_t thread_index() {
  return static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}
__device__ __forceinline__ int64_t thread_count() { return static_cast<int64_t>(gridDim.x) * blockDim.x; }

// Any strides, one element per step, iterating over the image in (b, c, Y, X) order.
template <typename word_t, bool kMerge>
__global__ void __launch_bounds__(kThreads) subscale_generic_kernel(SubscaleParams p) {
  word_t* img = static_cast<word_t*>(p.img);
  word_t* sl = static_cast<word_t*>(p.slices);
  const int64_t n = p.B * p.C * p.H * p.W;
  for (int64_t idx = thread_index(); idx < n; idx += thread_count()) {
    const int64_t X = idx % p.W;
    int64_t r = idx / p.W;
    const int64_t Y = r % p.H;
    r /= p.H;
    const int64_t c = r % p.C;
    const int64_t b = r / p.C;
    const int64_t k = (Y % p.s) * p.s + X % p.s;
    const int64_t io = b * p.img_stride[0] + c * p.img_stride[1] + Y * p.img_stride[2] + X * p.img_stride[3];
    const int64_t so = b * p.slice_stride[0] + k * p.slice_stride[1] + c * p.slice_stride[2] +
                       (Y / p.s) * p.slice_stride[3] + (X / p.s) * p.slice_stride[4];
    if (kMerge) {
      img[io] = sl[so];
    } else {
      sl[so] = img[io];
    }
  }
}

// Contiguous tensors, 16-byte aligned, W % (S*V) == 0. One step moves one image-row chunk of S*V words (S
// 16-byte loads/stores) and its S slice-row chunks of V words each (one 16-byte store/load each): both sides
// are vectorised and coalesced, the de-interleave happens in registers (indices are compile-time constants).
template <typename word_t, int S, bool kMerge>
__global__ void __launch_bounds__(kThreads) subscale_vec_kernel(SubscaleParams p) {
  constexpr int V = 16 / sizeof(word_t);  // words per slice chunk
  constexpr int L = S * V;                // words per image chunk
  union Chunk {
    uint4 v[S];
    word_t w[L];
  };
  word_t* img = static_cast<word_t*>(p.img);
  word_t* sl = static_cast<word_t*>(p.slices);
  const int64_t chunks = p.W / L;  // per image row
  const int64_t h = p.H / S, w = p.W / S;
  const int64_t n = p.B * p.C * p.H * chunks;
  const int64_t slice_step = p.C * h * w;  // slice k -> k + 1
  for (int64_t idx = thread_index(); idx < n; idx += thread_count()) {
    const int64_t q = idx % chunks;
    const int64_t r = idx / chunks;  // (b*C + c)*H + Y
    const int64_t Y = r % p.H;
    const int64_t c = (r / p.H) % p.C;
    const int64_t b = r / (p.H * p.C);
    const int64_t i = Y % S, y = Y / S;
    // slice (b, i*S + j, c, y, q*V): contiguous [B, S*S, C, h, w]; j = 0 here, + j*slice_step below
    word_t* s0 = sl + ((b * S * S + i * S) * p.C + c) * h * w + y * w + q * V;
    word_t* row = img + r * p.W + q * L;
    Chunk a, z;  // a: the image chunk; z.v[j]: the chunk of slice j
    if (!kMerge) {
#pragma unroll
      for (int u = 0; u < S; ++u) a.v[u] = reinterpret_cast<const uint4*>(row)[u];
#pragma unroll
      for (int j = 0; j < S; ++j) {
#pragma unroll
        for (int e = 0; e < V; ++e) z.w[j * V + e] = a.w[e * S + j];
      }
#pragma unroll
      for (int j = 0; j < S; ++j) *reinterpret_cast<uint4*>(s0 + j * slice_step) = z.v[j];
    } else {
#pragma unroll
      for (int j = 0; j < S; ++j) z.v[j] = *reinterpret_cast<const uint4*>(s0 + j * slice_step);
#pragma unroll
      for (int j = 0; j < S; ++j) {
#pragma unroll
        for (int e = 0; e < V; ++e) a.w[e * S + j] = z.w[j * V + e];
      }
#pragma unroll
      for (int u = 0; u < S; ++u) reinterpret_cast<uint4*>(row)[u] = a.v[u];
    }
  }
}

template <bool kMerge>
cudaError_t launch_subscale(const SubscaleParams& p, cudaStream_t stream) {
  SPN_WORD_SWITCH(p.elem_size, {
    if (p.vec_ok) {
      const int64_t n = p.B * p.C * p.H * (p.W / (p.s * (16 / static_cast<int64_t>(sizeof(word_t)))));
      const unsigned grid = grid_for(n, kThreads);
      if (p.s == 2) subscale_vec_kernel<word_t, 2, kMerge><<<grid, kThreads, 0, stream>>>(p);
      if (p.s == 4) subscale_vec_kernel<word_t, 4, kMerge><<<grid, kThreads, 0, stream>>>(p);
      if (p.s == 8) subscale_vec_kernel<word_t, 8, kMerge><<<grid, kThreads, 0, stream>>>(p);
    } else {
      const unsigned grid = grid_for(p.B * p.C * p.H * p.W, kThreads);
      subscale_generic_kernel<word_t, kMerge><<<grid, kThreads, 0, stream>>>(p);
    }
  });
  return cudaGetLastError();
}

}  // namespace

}  // namespace cuda
}  // namespace spn
