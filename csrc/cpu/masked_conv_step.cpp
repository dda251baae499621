// CPU kernel of masked_conv2d_step: one cached step of masked_conv2d (spec: masked_conv2d_step_ref in
// spn_kernels/masked_conv/ref.py). The cache is the layer's whole input map [B, C_in, H, W]; a step reads
// only the window its mask can see and never touches the rest of the image.
//
// Masks "A"/"B" (output at one position for the whole batch):
//   1. list the unmasked taps of rows 0..p that fall inside the image (edges clip the list, so no zero
//      padding is ever multiplied), the centre tap apart because color groups mask it per (co, ci);
//   2. gather those taps of the cache into a small panel [C_in, T, B] (<= 100 KB at C=128, k=5, B=16);
//   3. for every output channel (parallel), accumulate w[co, ci, tap] * panel[ci, tap, :] into a [B]
//      accumulator: the weight is read once, in its own layout, and the inner loop over the batch is
//      contiguous and vectorises. This is a GEMV-shaped product (B is small during sampling), so a direct
//      loop beats packing the weight for a GEMM, which alone would copy C_out*C_in*T elements per step.
// Mask "V" (a whole output row): a 1-row convolution of the p+1 cached rows above and at `row` with rows
//   0..p of the weight (the V mask keeps exactly those, so no masking is needed), through at::conv2d.
#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <string_view>
#include <vector>

#include "common.h"

namespace spn {
namespace {

struct Tap {
  int64_t w_off;  // offset inside one (co, ci) kernel: dy * k + dx
  int64_t c_off;  // offset of the cached pixel inside one (b, ci) plane
};

template <typename scalar_t>
void step_ab(const at::Tensor& cache, const at::Tensor& weight, const std::optional<at::Tensor>& bias, int64_t row,
             int64_t col, MaskType mt, int64_t color_groups, at::Tensor& out) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t B = cache.size(0), C_in = cache.size(1), H = cache.size(2), W = cache.size(3);
  const int64_t C_out = weight.size(0), k = weight.size(2), p = k / 2;
  const int64_t cs0 = cache.stride(0), cs1 = cache.stride(1), cs2 = cache.stride(2), cs3 = cache.stride(3);
  (void)H;

  // rows row-p .. row (inside the image), all columns inside the image, centre row left of centre only
  std::vector<Tap> taps;
  for (int64_t dy = 0; dy <= p; ++dy) {
    const int64_t r = row + dy - p;
    if (r < 0) continue;
    const int64_t dx_end = dy == p ? p : k;
    for (int64_t dx = 0; dx < dx_end; ++dx) {
      const int64_t c = col + dx - p;
      if (c < 0 || c >= W) continue;
      taps.push_back({dy * k + dx, r * cs2 + c * cs3});
    }
  }
  const int64_t T = static_cast<int64_t>(taps.size());
  const bool any_centre = centre_limit(C_out - 1, C_out, C_in, mt, color_groups) > 0;

  // panel [C_in, T + 1, B]: the taps, then the centre pixel
  const int64_t TB = (T + 1) * B;
  std::vector<acc_t> panel(C_in * TB);
  const scalar_t* cp = cache.const_data_ptr<scalar_t>();
  for (int64_t ci = 0; ci < C_in; ++ci) {
    acc_t* dst = panel.data() + ci * TB;
    for (int64_t t = 0; t < T; ++t) {
      for (int64_t b = 0; b < B; ++b) dst[t * B + b] = static_cast<acc_t>(cp[b * cs0 + ci * cs1 + taps[t].c_off]);
    }
    for (int64_t b = 0; b < B; ++b) dst[T * B + b] = static_cast<acc_t>(cp[b * cs0 + ci * cs1 + row * cs2 + col * cs3]);
  }

  const scalar_t* wp = weight.const_data_ptr<scalar_t>();  // contiguous [C_out, C_in, k, k]
  const scalar_t* bp = bias.has_value() ? bias->const_data_ptr<scalar_t>() : nullptr;
  const int64_t bs = bias.has_value() ? bias->stride(0) : 0;
  scalar_t* op = out.mutable_data_ptr<scalar_t>();  // [B, C_out]
  const int64_t centre = p * k + p;
  const int64_t work_per_co = C_in * (T + 1) * B;
  at::parallel_for(0, C_out, std::max<int64_t>(1, 16384 / std::max<int64_t>(work_per_co, 1)), [&](int64_t o0,
                                                                                                    int64_t o1) {
    std::vector<acc_t> acc_buf(B);
    acc_t* __restrict__ acc = acc_buf.data();
    for (int64_t co = o0; co < o1; ++co) {
      const acc_t b0 = bp ? static_cast<acc_t>(bp[co * bs]) : acc_t(0);
      for (int64_t b = 0; b < B; ++b) acc[b] = b0;
      const int64_t lim = any_centre ? centre_limit(co, C_out, C_in, mt, color_groups) : 0;
      for (int64_t ci = 0; ci < C_in; ++ci) {
        const scalar_t* wk = wp + (co * C_in + ci) * k * k;
        const acc_t* __restrict__ pc = panel.data() + ci * TB;
        for (int64_t t = 0; t < T; ++t) {
          const acc_t wv = static_cast<acc_t>(wk[taps[t].w_off]);
          const acc_t* __restrict__ pt = pc + t * B;
          for (int64_t b = 0; b < B; ++b) acc[b] += wv * pt[b];
        }
        if (ci < lim) {
          const acc_t wv = static_cast<acc_t>(wk[centre]);
          const acc_t* __restrict__ pt = pc + T * B;
          for (int64_t b = 0; b < B; ++b) acc[b] += wv * pt[b];
        }
      }
      for (int64_t b = 0; b < B; ++b) op[b * C_out + co] = static_cast<scalar_t>(acc[b]);
    }
  });
}

// cache [B, C_in, H, W] (written at (row, col), or row `row` for "V", when x_new is given), weight
// [C_out, C_in, k, k], bias [C_out]? -> [B, C_out] ("A"/"B") or [B, C_out, W] ("V")
at::Tensor masked_conv2d_step_cpu(at::Tensor& cache, const std::optional<at::Tensor>& x_new, const at::Tensor& weight,
                                  const std::optional<at::Tensor>& bias, int64_t row, int64_t col,
                                  std::string_view mask_type, int64_t color_groups) {
  const char* op = "masked_conv2d_step";
  const MaskType mt = parse_mask_type(mask_type, op);
  check_conv_params(weight, bias, mt, color_groups, op);
  TORCH_CHECK_VALUE(cache.dim() == 4, op, ": cache must be 4-D [B, C_in, H, W], got shape ", cache.sizes());
  const int64_t B = cache.size(0), C_in = cache.size(1), H = cache.size(2), W = cache.size(3);
  TORCH_CHECK_VALUE(C_in == weight.size(1), op, ": cache has ", C_in, " channels but weight expects C_in=",
                    weight.size(1), ": cache ", cache.sizes(), ", weight ", weight.sizes());
  TORCH_CHECK_VALUE(cache.scalar_type() == weight.scalar_type(), op, ": cache has dtype ", cache.scalar_type(),
                    " but weight has dtype ", weight.scalar_type());
  TORCH_CHECK_VALUE(row >= 0 && row < H, op, ": row must be in [0, ", H, ") for cache ", cache.sizes(), ", got row=",
                    row);
  TORCH_CHECK_VALUE(col >= 0 && col < W, op, ": col must be in [0, ", W, ") for cache ", cache.sizes(), ", got col=",
                    col);
  if (x_new.has_value()) {
    const bool ok = mt == MaskType::V
                        ? (x_new->dim() == 3 && x_new->size(0) == B && x_new->size(1) == C_in && x_new->size(2) == W)
                        : (x_new->dim() == 2 && x_new->size(0) == B && x_new->size(1) == C_in);
    TORCH_CHECK_VALUE(ok, op, ": x_new must have shape ",
                      mt == MaskType::V ? c10::str("(", B, ", ", C_in, ", ", W, ")") : c10::str("(", B, ", ", C_in, ")"),
                      " for mask '", std::string(mask_type), "' and cache ", cache.sizes(), ", got ", x_new->sizes());
    TORCH_CHECK_VALUE(x_new->scalar_type() == cache.scalar_type(), op, ": x_new has dtype ", x_new->scalar_type(),
                      " but cache has dtype ", cache.scalar_type());
    at::Tensor dst = cache.select(2, row);  // [B, C_in, W]
    if (mt != MaskType::V) dst = dst.select(2, col);
    dst.copy_(*x_new);
  }
  const int64_t C_out = weight.size(0), p = weight.size(2) / 2;

  if (mt == MaskType::V) {
    const int64_t r0 = std::max<int64_t>(row - p, 0);
    at::Tensor slab = cache.narrow(2, r0, row - r0 + 1);  // [B, C_in, <= p+1, W]
    if (row - r0 < p) slab = at::constant_pad_nd(slab, {0, 0, p - (row - r0), 0}, 0);
    at::Tensor w_top = weight.narrow(2, 0, p + 1);
    at::Tensor out = at::conv2d(slab, w_top, bias, at::IntArrayRef{1, 1}, at::IntArrayRef{0, p});  // [B, C_out, 1, W]
    return out.reshape({B, C_out, W}).clone(at::MemoryFormat::Contiguous);
  }

  at::Tensor out = at::empty({B, C_out}, cache.options().memory_format(at::MemoryFormat::Contiguous));
  if (out.numel() == 0) return out;
  const at::Tensor w = weight.contiguous();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, cache.scalar_type(), "masked_conv2d_step", [&] {
    step_ab<scalar_t>(cache, w, bias, row, col, mt, color_groups, out);
  });
  return out;
}

}  // namespace
}  // namespace spn

TORCH_LIBRARY_IMPL(spn, CPU, m) { m.impl("masked_conv2d_step", &spn::masked_conv2d_step_cpu); }
