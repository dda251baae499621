// Plain parameter structs shared by the CUDA kernels (csrc/<op>/<op>.cu) and their ATen binding (binding.cpp).
//
// This header must stay free of torch/ATen: the .cu files include only CUDA headers and this file, so bare
// nvcc compiles them without a CUDA build of torch (tests/ops/test_cuda_sources.py).
// All sizes, strides and offsets are int64 (element units): a 64 x 3 x 1024 x 1024 image already needs more
// than 2^31 elements of index space once split into slices of a large batch.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace spn {
namespace cuda {

// The dtypes the kernels know. The slice ops only move bits, so they dispatch on the element size; the step
// and slice_context need the real type.
enum class DType : int { kUInt8, kInt8, kInt16, kInt32, kInt64, kFloat16, kBFloat16, kFloat32, kFloat64 };

// Masks of masked_conv2d (spn_kernels/ops/masked_conv2d/ref.py: conv_mask).
enum class Mask : int { kA, kB, kV };

// subscale_split / subscale_merge: the image [B, C, H, W] and its slices [B, s*s, C, H/s, W/s].
struct SubscaleParams {
  void* img;     // read by split, written by merge
  void* slices;  // written by split, read by merge
  int64_t B, C, H, W, s;
  int64_t img_stride[4];     // b, c, y, x
  int64_t slice_stride[5];   // b, k, c, y, x
  int64_t elem_size;         // bytes: 1, 2, 4, 8 or 16
  bool vec_ok;               // both contiguous, 16-byte aligned, W % (s * 16 / elem_size) == 0, s in {2, 4, 8}
};

// slice_context: integer image [B, C, H, W], t [B] -> float32 out [B, s*s*(C+1), H/s, W/s] (contiguous).
struct ContextParams {
  const void* img;
  const int64_t* t;  // [B], stride t_stride
  float* out;
  int64_t B, C, H, W, s, bits;
  int64_t img_stride[4];
  int64_t t_stride;
  DType img_dtype;  // an integer dtype
};

// slice_scatter_: img[b, :, i::s, j::s] = values[b] with t[b] = i*s + j.
struct ScatterParams {
  void* img;           // [B, C, H, W], written in place
  const void* values;  // [B, C, H/s, W/s]
  const int64_t* t;    // [B]
  int64_t B, C, H, W, s;
  int64_t img_stride[4];
  int64_t values_stride[4];
  int64_t t_stride;
  int64_t elem_size;  // bytes: 1, 2, 4, 8 or 16
};

// masked_conv2d_step. A/B: out [B, C_out] at (row, col); V: out [B, C_out, W] for row `row`.
struct StepParams {
  void* cache;          // [B, C_in, H, W]; x_new is written into it
  const void* x_new;    // nullptr, or A/B: [B, C_in]; V: [B, C_in, W]
  const void* weight;   // [C_out, C_in, kh, k]: rows of the centred k x k kernel
  const void* bias;     // nullptr or [C_out]
  void* out;            // A/B: [B, C_out]; V: [B, C_out, W]
  int64_t B, C_in, C_out, H, W, k, row, col, color_groups;
  int64_t n_rows;        // weight rows that can hold kept taps (those through the square's centre row)
  int64_t dy0;           // image row offset of weight row 0 (r0 - k/2)
  bool interleaved;      // colour group of channel c: c % color_groups (else c / (C / color_groups))
  int64_t cache_stride[4];
  int64_t x_new_stride[3];   // b, c, x (x unused for A/B)
  int64_t weight_stride[4];
  int64_t bias_stride;
  int64_t out_stride[3];     // b, o, x (x unused for A/B)
  Mask mask;
  DType dtype;  // of cache, x_new, weight, bias and out: float32, bfloat16, float16 or float64
};

// Launchers (defined in csrc/<op>/<op>.cu). Each returns cudaGetLastError() after its launches so the binding can
// raise through C10_CUDA_CHECK; none synchronizes. Callers guarantee non-empty tensors and valid shapes.
cudaError_t launch_subscale_split(const SubscaleParams& p, cudaStream_t stream);
cudaError_t launch_subscale_merge(const SubscaleParams& p, cudaStream_t stream);
cudaError_t launch_slice_context(const ContextParams& p, cudaStream_t stream);
cudaError_t launch_slice_scatter(const ScatterParams& p, cudaStream_t stream);
cudaError_t launch_masked_conv2d_step(const StepParams& p, cudaStream_t stream);

// Grid sizing for grid-stride loops: enough blocks to fill an H100/H200 several times over, never more than
// gridDim.x allows. A fixed cap (not a device query) keeps launchers free of synchronous API calls.
constexpr int64_t kMaxBlocks = 132 * 32;

inline unsigned grid_for(int64_t work, int64_t threads) {
  int64_t blocks = (work + threads - 1) / threads;
  if (blocks < 1) blocks = 1;
  if (blocks > kMaxBlocks) blocks = kMaxBlocks;
  return static_cast<unsigned>(blocks);
}

}  // namespace cuda
}  // namespace spn

// Dtype switches: run __VA_ARGS__ with `scalar_t` bound to the C++ type of `dtype`. Element types come from
// the .cu file (uint8_t ... __nv_bfloat16), so these macros are used only there.
#define SPN_INT_SWITCH(dtype, ...)                 \
  switch (dtype) {                                 \
    case ::spn::cuda::DType::kUInt8: {             \
      using scalar_t = uint8_t;                    \
      __VA_ARGS__;                                 \
    } break;                                       \
    case ::spn::cuda::DType::kInt8: {              \
      using scalar_t = int8_t;                     \
      __VA_ARGS__;                                 \
    } break;                                       \
    case ::spn::cuda::DType::kInt16: {             \
      using scalar_t = int16_t;                    \
      __VA_ARGS__;                                 \
    } break;                                       \
    case ::spn::cuda::DType::kInt32: {             \
      using scalar_t = int32_t;                    \
      __VA_ARGS__;                                 \
    } break;                                       \
    case ::spn::cuda::DType::kInt64: {             \
      using scalar_t = int64_t;                    \
      __VA_ARGS__;                                 \
    } break;                                       \
    default:                                       \
      return cudaErrorInvalidValue;                \
  }

#define SPN_FLOAT_SWITCH(dtype, ...)               \
  switch (dtype) {                                 \
    case ::spn::cuda::DType::kFloat64: {           \
      using scalar_t = double;                     \
      __VA_ARGS__;                                 \
    } break;                                       \
    case ::spn::cuda::DType::kFloat32: {           \
      using scalar_t = float;                      \
      __VA_ARGS__;                                 \
    } break;                                       \
    case ::spn::cuda::DType::kBFloat16: {          \
      using scalar_t = __nv_bfloat16;              \
      __VA_ARGS__;                                 \
    } break;                                       \
    case ::spn::cuda::DType::kFloat16: {           \
      using scalar_t = __half;                     \
      __VA_ARGS__;                                 \
    } break;                                       \
    default:                                       \
      return cudaErrorInvalidValue;                \
  }

// Element-size switch of the pure data-movement ops: `word_t` is an unsigned type of that size.
#define SPN_WORD_SWITCH(elem_size, ...)            \
  switch (elem_size) {                             \
    case 1: {                                      \
      using word_t = uint8_t;                      \
      __VA_ARGS__;                                 \
    } break;                                       \
    case 2: {                                      \
      using word_t = uint16_t;                     \
      __VA_ARGS__;                                 \
    } break;                                       \
    case 4: {                                      \
      using word_t = uint32_t;                     \
      __VA_ARGS__;                                 \
    } break;                                       \
    case 8: {                                      \
      using word_t = uint64_t;                     \
      __VA_ARGS__;                                 \
    } break;                                       \
    case 16: {                                     \
      using word_t = uint4;                        \
      __VA_ARGS__;                                 \
    } break;                                       \
    default:                                       \
      return cudaErrorInvalidValue;                \
  }
