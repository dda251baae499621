// Shared by the CPU kernels of the slice ops (csrc/{subscale_split,subscale_merge,slice_context,slice_scatter_}/
// cpu.cpp). Each kernel is one pass over memory: at::parallel_for over whole planes (the index arithmetic, with
// its int64 divisions, is done once per plane, not per row: the rows are short, 8..64 elements), and the inner
// loop walks one contiguous output row (or, for the in-place scatter, one row of values). Inputs are read
// through their own int64 strides, so channels_last and strided views cost no extra copy.
#pragma once

#include <c10/util/Exception.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>

namespace spn {
namespace slices {

// Planes per parallel_for grain: about 64K elements each, so small images stay on one thread.
inline int64_t grain_planes(int64_t plane_len) {
  return std::max<int64_t>(1, 65536 / std::max<int64_t>(plane_len, 1));
}

// Pure data movement depends only on the element size: one instantiation per size covers every dtype
// (bool, ints, floats, complex) and keeps the binary small.
struct alignas(16) Bytes16 {
  uint64_t lo, hi;
};

template <typename Fn>
inline void dispatch_by_size(int64_t size, const char* op, Fn&& fn) {
  switch (size) {
    case 1: fn(uint8_t{}); break;
    case 2: fn(uint16_t{}); break;
    case 4: fn(uint32_t{}); break;
    case 8: fn(uint64_t{}); break;
    case 16: fn(Bytes16{}); break;
    default: TORCH_CHECK_VALUE(false, op, ": unsupported element size ", size);
  }
}

// Calls fn(std::integral_constant<int64_t, S>) with S = step for the common unit-stride cases s = 2 and 4
// (an element stride known at compile time lets the row loops vectorise) and S = 0 (stride read at run
// time) otherwise.
template <typename Fn>
inline void dispatch_step(int64_t step, Fn&& fn) {
  if (step == 2) return fn(std::integral_constant<int64_t, 2>{});
  if (step == 4) return fn(std::integral_constant<int64_t, 4>{});
  fn(std::integral_constant<int64_t, 0>{});
}

}  // namespace slices
}  // namespace spn
