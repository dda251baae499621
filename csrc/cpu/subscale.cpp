// CPU kernels of the slice ops: subscale_split, subscale_merge, slice_context, slice_scatter_.
// The spec is spn_kernels/subscale/ref.py. Each kernel is one pass over memory: at::parallel_for over
// whole planes (the index arithmetic, with its int64 divisions, is done once per plane, not per row: the
// rows are short, 8..64 elements), and the inner loop walks one contiguous output row (or, for the
// in-place scatter, one row of values). Inputs are read through their own int64 strides, so channels_last
// and strided views cost no extra copy.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cstdint>
#include <type_traits>

namespace spn {
namespace {

// Planes per parallel_for grain: about 64K elements each, so small images stay on one thread.
int64_t grain_planes(int64_t plane_len) { return std::max<int64_t>(1, 65536 / std::max<int64_t>(plane_len, 1)); }

// Pure data movement depends only on the element size: one instantiation per size covers every dtype
// (bool, ints, floats, complex) and keeps the binary small.
struct alignas(16) Bytes16 {
  uint64_t lo, hi;
};

template <typename Fn>
void dispatch_by_size(int64_t size, const char* op, Fn&& fn) {
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
void dispatch_step(int64_t step, Fn&& fn) {
  if (step == 2) return fn(std::integral_constant<int64_t, 2>{});
  if (step == 4) return fn(std::integral_constant<int64_t, 4>{});
  fn(std::integral_constant<int64_t, 0>{});
}

void check_image(const at::Tensor& x, int64_t s, const char* op) {
  TORCH_CHECK_VALUE(x.dim() == 4, op, ": x must be 4-D [B, C, H, W], got shape ", x.sizes());
  TORCH_CHECK_VALUE(s >= 1, op, ": s must be >= 1, got s=", s);
  TORCH_CHECK_VALUE(x.size(2) % s == 0 && x.size(3) % s == 0, op, ": x height and width must be divisible by s=", s,
                    ", got x of shape ", x.sizes());
}

// t as int64 [B], every value in [0, hi]. Under torch.compile the Python wrapper cannot check values, so
// the kernel does.
at::Tensor checked_t(const at::Tensor& t, int64_t B, int64_t hi, const char* op) {
  TORCH_CHECK_VALUE(t.dim() == 1 && t.size(0) == B, op, ": t must have shape [B]=(", B, ",), got shape ", t.sizes());
  TORCH_CHECK_VALUE(!t.is_floating_point() && !t.is_complex(), op, ": t must be an integer tensor, got ",
                    t.scalar_type());
  at::Tensor t64 = t.to(at::kLong).contiguous();
  const int64_t* tp = t64.const_data_ptr<int64_t>();
  for (int64_t b = 0; b < B; ++b) {
    TORCH_CHECK_VALUE(tp[b] >= 0 && tp[b] <= hi, op, ": t must be in [0, ", hi, "], got t[", b, "]=", tp[b]);
  }
  return t64;
}

// ------------------------------------------------------------------------------------------------ split
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

// ------------------------------------------------------------------------------------------------ merge
// slices [B, s*s, C, h, w] -> out [B, C, h*s, w*s], out[b, c, y*s + i, u*s + j] = slices[b, i*s + j, c, y, u]
at::Tensor subscale_merge_cpu(const at::Tensor& slices) {
  TORCH_CHECK_VALUE(slices.dim() == 5, "subscale_merge: slices must be 5-D [B, s*s, C, n, m], got shape ",
                    slices.sizes());
  const int64_t S2 = slices.size(1);
  int64_t s = 0;
  while ((s + 1) * (s + 1) <= S2) ++s;
  TORCH_CHECK_VALUE(s >= 1 && s * s == S2, "subscale_merge: slices.shape[1] must be a square s*s >= 1, got shape ",
                    slices.sizes());
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

// ------------------------------------------------------------------------------------------------ context
// integer x [B, C, H, W], t [B] -> float32 [B, s*s*(C+1), h, w]; plane k*(C+1) + c holds slice k channel c
// scaled as (2v + 1) / 2^bits - 1 when k < t[b] (0 otherwise); plane k*(C+1) + C is the presence flag.
// Multiplying by 1/2^bits is exact (a power of two), so this matches the reference's division bit for bit.
at::Tensor slice_context_cpu(const at::Tensor& x, int64_t s, const at::Tensor& t, int64_t bits) {
  check_image(x, s, "slice_context");
  TORCH_CHECK_VALUE(at::isIntegralType(x.scalar_type(), /*includeBool=*/false),
                    "slice_context: x must be an integer image (uint8/int8/int16/int32/int64), got ",
                    x.scalar_type());
  TORCH_CHECK_VALUE(bits >= 1 && bits <= 16, "slice_context: bits must be in 1..16, got bits=", bits);
  const int64_t B = x.size(0), C = x.size(1), h = x.size(2) / s, w = x.size(3) / s, S2 = s * s;
  at::Tensor t64 = checked_t(t, B, S2, "slice_context");
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

// ------------------------------------------------------------------------------------------------ scatter
// x[b, c, y*s + i, u*s + j] = values[b, c, y, u] with t[b] = i*s + j; in place, through x's own strides.
void slice_scatter_cpu_(at::Tensor& x, const at::Tensor& values, int64_t s, const at::Tensor& t) {
  check_image(x, s, "slice_scatter_");
  const int64_t B = x.size(0), C = x.size(1), h = x.size(2) / s, w = x.size(3) / s;
  TORCH_CHECK_VALUE(values.dim() == 4 && values.size(0) == B && values.size(1) == C && values.size(2) == h &&
                        values.size(3) == w,
                    "slice_scatter_: values must have shape (", B, ", ", C, ", ", h, ", ", w, ") for x ", x.sizes(),
                    " and s=", s, ", got ", values.sizes());
  TORCH_CHECK_VALUE(values.scalar_type() == x.scalar_type(), "slice_scatter_: values has dtype ",
                    values.scalar_type(), " but x has dtype ", x.scalar_type());
  at::Tensor t64 = checked_t(t, B, s * s - 1, "slice_scatter_");
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

TORCH_LIBRARY_IMPL(spn, CPU, m) {
  m.impl("subscale_split", &spn::subscale_split_cpu);
  m.impl("subscale_merge", &spn::subscale_merge_cpu);
  m.impl("slice_context", &spn::slice_context_cpu);
  m.impl("slice_scatter_", &spn::slice_scatter_cpu_);
}
