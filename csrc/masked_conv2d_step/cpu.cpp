// CPU kernel of masked_conv2d_step: one cached step of masked_conv2d (spec: masked_conv2d_step_ref in
// spn_kernels/ops/masked_conv2d_step/ref.py). The cache is the layer's whole input map [B, C_in, H, W]; a step
// reads only the window its mask can see and never touches the rest of the image.
//
// Masks "A"/"B" (output at one position for the whole batch):
//   1. list the unmasked taps of the weight's box (masks.h: TapBox; rows through the centre row) that fall
//      inside the image (edges clip the list, so no zero padding is ever multiplied), the centre tap apart
//      because colour groups mask it per (co, ci) (its masked weights are copied once per step);
//   2. gather those taps of the cache into a small panel [C_in, T, B] (<= 100 KB at C=128, k=5, B=16);
//   3. for blocks of 4 output channels (parallel) and 16 batch entries, accumulate w[co, ci, tap] *
//      panel[ci, tap, :] in registers (4 independent FMA chains, each panel vector reused 4 times); the
//      weight is read once, in its own layout. The product is GEMV-shaped (B is small when sampling):
//      packing the weight for a GEMM would alone copy C_out*C_in*T elements per step, and at::mm on the
//      unpacked [C_out, C_in*k*k] weight would multiply the ~half of the taps that are masked.
// Mask "V" (a whole output row): a 1-row convolution of the cached rows the box sees with the box's rows of
//   the weight (the V mask keeps every tap of them, so no masking is needed), through at::conv2d.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <string_view>
#include <type_traits>
#include <vector>

#include "checks.h"
#include "masks.h"

namespace spn {
namespace {

struct Tap {
  int64_t w_off;  // offset inside one (co, ci) kernel: dy * k + dx
  int64_t c_off;  // offset of the cached pixel inside one (b, ci) plane
};

// Function multiversioning: the wheel is built for baseline x86-64, the loader picks the AVX-512 or
// AVX2+FMA clone of the micro-kernel at run time (ifunc).
#if defined(__x86_64__) && defined(__linux__) && (defined(__GNUC__) || defined(__clang__))
#define SPN_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define SPN_CLONES
#endif

// One 64-byte vector of batch entries (16 floats / 8 doubles), in GCC/clang vector extensions: each clone
// lowers it to one zmm (AVX-512), two ymm (AVX2) or four xmm registers. Loads and stores go through
// memcpy, which compiles to unaligned vector moves (the panel and accumulators are not 64-byte aligned).
typedef float vf32 __attribute__((vector_size(64)));
typedef double vf64 __attribute__((vector_size(64)));

template <typename V, typename T>
inline __attribute__((always_inline)) V load_vec(const T* p) {
  V v;
  __builtin_memcpy(&v, p, sizeof(V));
  return v;
}

// NCO output channels x one vector of batch entries, accumulated in registers: NCO independent FMA chains
// hide the FMA latency, and every panel vector loaded is used NCO times.
template <typename T, typename V, int NCO>
inline __attribute__((always_inline)) void dot_block(const T* __restrict__ w, const T* __restrict__ panel,
                                                     const Tap* taps, int64_t n_taps, int64_t c_in, int64_t kk,
                                                     const T* __restrict__ wc, int64_t Bp, T* __restrict__ acc_out) {
  V acc[NCO];
  for (int o = 0; o < NCO; ++o) acc[o] = V{} * T(0);
  const int64_t TB = (n_taps + 1) * Bp;
  // Blocked summation: each block of kCiBlock input channels is summed into fresh registers, then added to
  // the total. One long chain over C_in * taps terms (~1500 at C=128, k=5) had 3-4x the rounding error of
  // the reference convolution in float32; blocks bring it to the reference's level at the cost of NCO
  // vector adds per block.
  constexpr int64_t kCiBlock = 16;
  for (int64_t ci0 = 0; ci0 < c_in; ci0 += kCiBlock) {
    V part[NCO];
    for (int o = 0; o < NCO; ++o) part[o] = V{} * T(0);
    const int64_t ci1 = std::min(c_in, ci0 + kCiBlock);
    for (int64_t ci = ci0; ci < ci1; ++ci) {
      const T* pc = panel + ci * TB;
      const T* wk = w + ci * kk;
      for (int64_t t = 0; t < n_taps; ++t) {
        const V pv = load_vec<V>(pc + t * Bp);
        const int64_t off = taps[t].w_off;
        for (int o = 0; o < NCO; ++o) part[o] += wk[o * c_in * kk + off] * pv;
      }
      if (wc != nullptr) {  // the centre tap, its weights masked per (co, ci) by the colour groups
        const V pv = load_vec<V>(pc + n_taps * Bp);
        for (int o = 0; o < NCO; ++o) part[o] += wc[o * c_in + ci] * pv;
      }
    }
    for (int o = 0; o < NCO; ++o) acc[o] += part[o];
  }
  for (int o = 0; o < NCO; ++o) __builtin_memcpy(acc_out + o * Bp, &acc[o], sizeof(V));
}

// acc [co1 - co0, Bp] = sum over ci, taps of w[co, ci, tap] * panel[ci, tap, :] for co in [co0, co1).
template <typename T, typename V>
inline __attribute__((always_inline)) void dot_range(const T* w, const T* panel, const Tap* taps, int64_t n_taps,
                                                     int64_t c_in, int64_t kk, const T* wc, int64_t Bp, int64_t co0,
                                                     int64_t co1, T* acc) {
  constexpr int NCO = 4;
  constexpr int64_t L = sizeof(V) / sizeof(T);
  int64_t co = co0;
  for (; co + NCO <= co1; co += NCO) {
    for (int64_t bb = 0; bb < Bp; bb += L) {
      dot_block<T, V, NCO>(w + co * c_in * kk, panel + bb, taps, n_taps, c_in, kk, wc ? wc + co * c_in : nullptr,
                           Bp, acc + (co - co0) * Bp + bb);
    }
  }
  for (; co < co1; ++co) {
    for (int64_t bb = 0; bb < Bp; bb += L) {
      dot_block<T, V, 1>(w + co * c_in * kk, panel + bb, taps, n_taps, c_in, kk, wc ? wc + co * c_in : nullptr,
                         Bp, acc + (co - co0) * Bp + bb);
    }
  }
}

constexpr int kLf = sizeof(vf32) / sizeof(float), kLd = sizeof(vf64) / sizeof(double);

SPN_CLONES void dot_range_f32(const float* w, const float* panel, const Tap* taps, int64_t n_taps, int64_t c_in,
                              int64_t kk, const float* wc, int64_t Bp, int64_t co0, int64_t co1, float* acc) {
  dot_range<float, vf32>(w, panel, taps, n_taps, c_in, kk, wc, Bp, co0, co1, acc);
}

SPN_CLONES void dot_range_f64(const double* w, const double* panel, const Tap* taps, int64_t n_taps, int64_t c_in,
                              int64_t kk, const double* wc, int64_t Bp, int64_t co0, int64_t co1, double* acc) {
  dot_range<double, vf64>(w, panel, taps, n_taps, c_in, kk, wc, Bp, co0, co1, acc);
}

// [B, C_out] = bias + the masked taps of the window at (row, col). Half-precision weights are widened to
// float32 once per call (a copy of C_out*C_in*k*k elements), float32/float64 are read in place.
template <typename scalar_t>
void step_ab(const at::Tensor& cache, const at::Tensor& weight, const std::optional<at::Tensor>& bias, int64_t row,
             int64_t col, MaskType mt, int64_t color_groups, ColorLayout layout, const TapBox& box, at::Tensor& out) {
  using acc_t = std::conditional_t<std::is_same_v<scalar_t, double>, double, float>;
  constexpr int64_t L = std::is_same_v<acc_t, double> ? kLd : kLf;
  const int64_t B = cache.size(0), C_in = cache.size(1), W = cache.size(3);
  const int64_t C_out = weight.size(0), kw = weight.size(3), kk = weight.size(2) * kw, p = kw / 2;
  const int64_t cs0 = cache.stride(0), cs1 = cache.stride(1), cs2 = cache.stride(2), cs3 = cache.stride(3);

  // the box's rows (inside the image), all columns inside the image; in the centre row of "A"/"B" only the
  // columns left of the centre, the centre tap apart (its weights are masked per channel pair)
  std::vector<Tap> taps;
  for (int64_t i = 0; i < box.n_rows; ++i) {
    const int64_t r = row + box.dy0 + i;
    if (r < 0) continue;
    const int64_t dx_end = (box.masked_centre && i == box.centre_row) ? std::min(p, box.n_cols) : box.n_cols;
    for (int64_t dx = 0; dx < dx_end; ++dx) {
      const int64_t c = col + dx - p;
      if (c < 0 || c >= W) continue;
      taps.push_back({i * kw + dx, r * cs2 + c * cs3});
    }
  }
  const int64_t T = static_cast<int64_t>(taps.size());

  // panel [C_in, T + 1, Bp]: the taps, then the centre pixel; the batch padded with zeros to whole blocks
  const int64_t Bp = (B + L - 1) / L * L;
  const int64_t TB = (T + 1) * Bp;
  std::vector<acc_t> panel(C_in * TB, acc_t(0));
  const scalar_t* cp = cache.const_data_ptr<scalar_t>();
  for (int64_t ci = 0; ci < C_in; ++ci) {
    acc_t* dst = panel.data() + ci * TB;
    for (int64_t t = 0; t < T; ++t) {
      for (int64_t b = 0; b < B; ++b) dst[t * Bp + b] = static_cast<acc_t>(cp[b * cs0 + ci * cs1 + taps[t].c_off]);
    }
    const scalar_t* centre_px = cp + ci * cs1 + row * cs2 + col * cs3;
    for (int64_t b = 0; b < B; ++b) dst[T * Bp + b] = static_cast<acc_t>(centre_px[b * cs0]);
  }

  constexpr auto acc_type = c10::CppTypeToScalarType<acc_t>::value;
  const at::Tensor w = weight.to(acc_type).contiguous();  // no copy for float32/float64
  const acc_t* wp = w.const_data_ptr<acc_t>();             // [C_out, C_in, kh, kw]
  // the centre tap's weights [C_out, C_in], masked (a 1/(kh*kw) copy of the weight); none when no pair keeps it
  std::vector<acc_t> wc;
  if (box.masked_centre && !(mt == MaskType::A && color_groups == 1)) {
    wc.resize(C_out * C_in);
    const int64_t off = box.centre_row * kw + p;
    for (int64_t co = 0; co < C_out; ++co) {
      for (int64_t ci = 0; ci < C_in; ++ci) {
        const bool keep = centre_kept(co, ci, C_out, C_in, mt, color_groups, layout);
        wc[co * C_in + ci] = keep ? wp[(co * C_in + ci) * kk + off] : acc_t(0);
      }
    }
  }
  const acc_t* wcp = wc.empty() ? nullptr : wc.data();
  // A masked centre weight is a zero in wc, and NaN * 0 is NaN: a non-finite centre pixel (a colour channel an
  // output may not see) would reach every output. Then the centre column of the panel is zeroed and its kept
  // pairs are added afterwards, skipping the masked ones (spec: ref.py; costs a pass over B * C_in values).
  std::vector<acc_t> centre;  // [C_in, B]: the centre pixels, only when one of them is non-finite
  if (wcp != nullptr) {
    bool finite = true;
    for (int64_t ci = 0; ci < C_in && finite; ++ci) {
      for (int64_t b = 0; b < B; ++b) finite = finite && std::isfinite(panel[ci * TB + T * Bp + b]);
    }
    if (!finite) {
      centre.resize(C_in * B);
      for (int64_t ci = 0; ci < C_in; ++ci) {
        for (int64_t b = 0; b < B; ++b) {
          centre[ci * B + b] = panel[ci * TB + T * Bp + b];
          panel[ci * TB + T * Bp + b] = acc_t(0);
        }
      }
    }
  }
  const at::Tensor b_acc = bias.has_value() ? bias->to(acc_type).contiguous() : at::Tensor();
  const acc_t* bp = bias.has_value() ? b_acc.const_data_ptr<acc_t>() : nullptr;
  scalar_t* op = out.mutable_data_ptr<scalar_t>();  // [B, C_out]
  // The step streams the weight (1.6 MB at C=128, k=5), more than one core's L2: splitting the output
  // channels over threads splits that traffic. Chunks of >= 1M multiply-adds keep the fork/join (~10 us)
  // small against the work; smaller steps stay on the calling thread.
  const int64_t work_per_co = C_in * (T + 1) * Bp;
  const int64_t grain = std::max<int64_t>(4, (int64_t{1} << 20) / std::max<int64_t>(work_per_co, 1));
  at::parallel_for(0, C_out, grain, [&](int64_t o0, int64_t o1) {
    std::vector<acc_t> acc((o1 - o0) * Bp);
    if constexpr (std::is_same_v<acc_t, double>) {
      dot_range_f64(wp, panel.data(), taps.data(), T, C_in, kk, wcp, Bp, o0, o1, acc.data());
    } else {
      dot_range_f32(wp, panel.data(), taps.data(), T, C_in, kk, wcp, Bp, o0, o1, acc.data());
    }
    if (!centre.empty()) {
      for (int64_t co = o0; co < o1; ++co) {
        for (int64_t ci = 0; ci < C_in; ++ci) {
          if (!centre_kept(co, ci, C_out, C_in, mt, color_groups, layout)) continue;
          const acc_t wv = wcp[co * C_in + ci];
          for (int64_t b = 0; b < B; ++b) acc[(co - o0) * Bp + b] += wv * centre[ci * B + b];
        }
      }
    }
    for (int64_t co = o0; co < o1; ++co) {
      const acc_t b0 = bp ? bp[co] : acc_t(0);
      for (int64_t b = 0; b < B; ++b) op[b * C_out + co] = static_cast<scalar_t>(acc[(co - o0) * Bp + b] + b0);
    }
  });
}

// cache [B, C_in, H, W] (written at (row, col), or row `row` for "V", when x_new is given), weight
// [C_out, C_in, k, k], bias [C_out]? -> [B, C_out] ("A"/"B") or [B, C_out, W] ("V")
at::Tensor masked_conv2d_step_cpu(at::Tensor& cache, const std::optional<at::Tensor>& x_new, const at::Tensor& weight,
                                  const std::optional<at::Tensor>& bias, int64_t row, int64_t col,
                                  std::string_view mask_type, int64_t color_groups, std::string_view color_layout) {
  const char* op = "masked_conv2d_step";
  const MaskType mt = parse_mask_type(mask_type, op);
  const ColorLayout cl = parse_color_layout(color_layout, op);
  check_step(cache, x_new, weight, bias, row, col, mt, color_groups, cl, op);
  const int64_t B = cache.size(0), W = cache.size(3);
  if (x_new.has_value()) {
    at::Tensor dst = cache.select(2, row);  // [B, C_in, W]
    if (mt != MaskType::V) dst = dst.select(2, col);
    dst.copy_(*x_new);
  }
  const int64_t C_out = weight.size(0), p = weight.size(3) / 2;
  const TapBox box = tap_box(weight.size(2), weight.size(3), mt, color_groups, op);

  if (mt == MaskType::V) {
    // the box's rows row + dy0 .. row + dy0 + n_rows - 1, those above the image as zeros
    const int64_t first = row + box.dy0, r0 = std::max<int64_t>(first, 0), last = first + box.n_rows - 1;
    at::Tensor slab;  // [B, C_in, n_rows, W]
    if (last < 0) {
      slab = at::zeros({B, cache.size(1), box.n_rows, W}, cache.options());
    } else {
      slab = cache.narrow(2, r0, last - r0 + 1);
      if (r0 > first) slab = at::constant_pad_nd(slab, {0, 0, r0 - first, 0}, 0);
    }
    at::Tensor w_box = weight.narrow(2, 0, box.n_rows);
    at::Tensor out = at::conv2d(slab, w_box, bias, at::IntArrayRef{1, 1}, at::IntArrayRef{0, p});  // [B, C_out, 1, W]
    return out.reshape({B, C_out, W}).clone(at::MemoryFormat::Contiguous);
  }

  at::Tensor out = at::empty({B, C_out}, cache.options().memory_format(at::MemoryFormat::Contiguous));
  if (out.numel() == 0) return out;
  const at::Tensor w = weight.contiguous();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, cache.scalar_type(), "masked_conv2d_step", [&] {
    step_ab<scalar_t>(cache, w, bias, row, col, mt, color_groups, cl, box, out);
  });
  return out;
}

}  // namespace
}  // namespace spn

TORCH_LIBRARY_IMPL(spn, CPU, m) { m.impl("masked_conv2d_step", &spn::masked_conv2d_step_cpu); }
