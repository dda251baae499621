// CPU kernels of masked_conv2d and masked_conv2d_backward. The spec is spn_kernels/ops/masked_conv2d/ref.py.
//
// The kept taps of every mask and kernel shape form a box of the weight (masks.h: TapBox): its rows through the
// centre row, and, for a lone centre row, its columns up to the centre (or just left of it). The convolution is
// computed with that box only, over the input padded by the box's offsets (the down-shifted convolution of
// PixelCNN++; for a centre row also right-shifted), leaving the work to oneDNN's convolution (at::conv2d /
// at::convolution_backward). No multiply-add of a masked tap is done, except for the masked centre-row taps of
// a multi-row box.
//
// Why not gather only the unmasked taps and call at::mm (the remaining centre-row waste: mask A uses 4 of
// the 6 taps at k = 3, 12 of 15 at k = 5, 24 of 28 at k = 7)? Measured on a 2-core AMD EPYC (AVX-512,
// B=16, C=128, 32x32): the BLAS behind at::mm (MKL) reaches ~200 GFLOP/s here, less than half of oneDNN's
// rate, so the exact-tap GEMM loses before the im2col copy is paid (k = 3, mask A: 4-tap GEMM alone
// 12.6 ms vs the 6-tap top-rows convolution 7.4 ms). Splitting the centre row into a second convolution
// (p rows x k, plus 1 x p) was slower as well (oneDNN handles the thin kernels poorly: 20.6 ms vs 7.4 ms
// at k = 3).
//
// Few channels are the exception: there the padded copies and oneDNN's slower non-square kernels cost more than
// the taps the box saves, and the masked box embedded in a centred kernel (oneDNN's own zero padding, no copy)
// is faster. From about a thousand channel pairs, and for a lone centre row cut after the centre ((1, k) "B"),
// the box runs with oneDNN's symmetric padding and a crop of its output instead (one copy each way rather than
// three); see Plan and choose.
//
// A lone row of kept taps without colour groups (PixelCNN's (1, k) rows, k = 1 "B") in float32/float64 is not
// oneDNN's at all: it runs as one BLAS product per tap over the flat image, reading x in place (shift_gemm.h).
// There the direct convolution's layout reorders dominate and it costs as much with 2 taps as with 3; the
// products at (1, 3) "B" took 0.64x of nn.Conv2d's (1, 3) against the crop's 0.91x (benchmarks/RESULTS.md).
//
// Backward of the box convolution:
//   grad_x: the adjoint of a shifted convolution is the opposite shift: the convolution of grad_out padded
//           the other way round, with the box transposed (in <-> out) and flipped in both axes, written
//           straight into a fresh contiguous tensor (no crop copy).
//   grad_w: oneDNN's weight gradient of the box convolution, its masked taps zeroed and padded with zeros
//           to [kh, kw].
//   grad_b: grad_out summed over (B, H, W).
// The dense path gets grad_x and grad_w from one at::convolution_backward, as F.conv2d's autograd does.
//
// Non-finite inputs (the spec: ref.py). Most plans multiply some masked taps by zero weights, and NaN * 0 is
// NaN: a NaN at a pixel an output may not see would reach it. So a non-finite x (forward) or grad_out (grad_x)
// takes an exact path instead (plans that multiply no masked tap need neither the test nor the exact path:
// Plan::exact): the kept taps split into boxes that the mask keeps whole (the rows above the
// centre row; the centre row left of the centre; the centre tap, once per output colour group over the input
// channels it keeps), each its own convolution, summed. Whether a tensor is finite is one pass over its bits
// (all_finite): far cheaper than the convolution (benchmarks/RESULTS.md). grad_w needs no exact path: at a kept
// tap it is the sum over every pixel anyway, and masked_copy zeroes the masked taps without multiplying; only
// the crop's padded grad_out meets pixels no tap reads, and a grad_w that is then not finite is the box's.
// Which tensor is tested: the smaller of the convolution's input and its result. The fast result is wrong only
// where a non-finite input met a masked (zero) weight, and that product is NaN, which no sum removes: so a fast
// result that is finite everywhere is exact, and testing it after the fact is as good as testing the input
// before (a finite input whose sum overflows takes the exact path in vain, with the same result). With 3 input
// channels and 64 output channels, grad_x is a 21st of grad_out.
#include <ATen/ATen.h>
#include <torch/autograd.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>
#include <string>
#include <string_view>
#include <tuple>

#include "checks.h"
#include "masks.h"
#include "masked_conv2d/shift_gemm.h"

namespace spn {
namespace {

// [B, C, H, W] -> [B, C, H + top + bottom, W + left + right], zero padded (negative amounts crop); t itself when
// nothing changes.
at::Tensor pad_zero(const at::Tensor& t, int64_t top, int64_t bottom, int64_t left, int64_t right) {
  if (top == 0 && bottom == 0 && left == 0 && right == 0) return t;
  return at::constant_pad_nd(t, {left, right, top, bottom}, 0);
}

// Whether no element of the contiguous float/double array p[0..n) is NaN or +-inf: the exponent bits all ones.
// A branch-free OR over the bit patterns, which the compiler vectorises: one pass over memory, no allocation and
// no dispatcher call (a sum and .item() cost a few percent of the small layers' convolution).
template <typename T, typename U>
bool finite_bits(const T* p, int64_t n, U exp_mask) {
  U bad = 0;
  constexpr int64_t kChunk = 4096;  // early exit between chunks, none inside
  for (int64_t i0 = 0; i0 < n; i0 += kChunk) {
    const int64_t i1 = std::min(n, i0 + kChunk);
    for (int64_t i = i0; i < i1; ++i) {
      U v;
      std::memcpy(&v, p + i, sizeof(U));  // the bit pattern (no aliasing cast; compiles to a plain load)
      bad |= static_cast<U>((v & exp_mask) == exp_mask);
    }
    if (bad) return false;
  }
  return true;
}

// Whether every element of t is finite (see the file comment): a bit test of contiguous float/double data; other
// dtypes and layouts by one reduction (half types sum in float32).
bool all_finite(const at::Tensor& t) {
  if (t.numel() == 0) return true;
  if (t.is_contiguous() && t.scalar_type() == at::kFloat) {
    return finite_bits(t.data_ptr<float>(), t.numel(), static_cast<uint32_t>(0x7f800000u));
  }
  if (t.is_contiguous() && t.scalar_type() == at::kDouble) {
    return finite_bits(t.data_ptr<double>(), t.numel(), static_cast<uint64_t>(0x7ff0000000000000ull));
  }
  const at::ScalarType acc = t.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  return std::isfinite(t.sum(acc).item<double>());
}

// stride / dilation (1, 1) and padding / output_padding (0, 0), as arrays that outlive every call
constexpr int64_t kOneArr[2] = {1, 1};
constexpr int64_t kZeroArr[2] = {0, 0};
const at::IntArrayRef kOnes(kOneArr);
const at::IntArrayRef kZeros(kZeroArr);

// How one call runs: the kept taps (TapBox) and which of three convolutions computes them.
//   box:   the weight cut to its TapBox, over the input padded (or cropped) so that the box's taps land on the
//          right pixels: no masked multiply-adds beyond the centre row's, one padded copy of the input.
//   dense: the masked box embedded in the smallest kernel centred on the output pixel, with oneDNN's own zero
//          padding: no copies, but the embedding's zero taps are multiplied (up to 2x at k x k).
//   crop:  the box with oneDNN's own symmetric padding (the box's offsets above and left of the output pixel):
//          the output is too tall and wide by the rows and columns the box lacks below and right of the pixel, and
//          its top-left H x W is the result (one crop copy); the backward pads grad_out by the same rows and
//          columns and gets grad_x, grad_w and grad_b from one oneDNN call (one copy each way, rather than the
//          box's three input copies).
// See choose for which wins where.
//   shift: one BLAS product per kept tap over the flat image (shift_gemm.h), for a lone row of kept taps (a
//          (1, k) row without colour groups, k = 1 "B") in float32/float64: no copies and no masked tap.
enum class Kind { Box, Dense, Crop, Shift };

struct Plan {
  TapBox t;
  int64_t top, bottom, left, right;  // box: the input padding (crop: top and left are its symmetric padding)
  int64_t mh, mw;                    // dense: the centred kernel is (2 mh + 1) x (2 mw + 1), padding (mh, mw)
  Kind kind;
  bool exact;  // the convolution multiplies no masked tap: exact for any input, no finiteness test
};

// Whether the box multiplies no masked tap: true for "V" and the rows strictly above (every tap of the box
// kept) and for a lone centre row without colour groups (cut at the centre); false where the box holds the
// centre row's masked right half (square "A"/"B") or a centre tap masked per colour group.
bool box_is_exact(const TapBox& t, int64_t groups) {
  return !t.masked_centre || (t.n_rows == 1 && groups == 1);
}

// Measured (benchmarks/bench_masked_conv2d.py and RESULTS.md, forward + backward, one core, 2026-12):
// - many channels (C_in * C_out >= 4096): the box's fewer taps win over the dense kernel (256 -> 512, 16 x 16,
//   k = 3: box 114 ms vs dense 154 ms);
// - from 1024 channel pairs the crop wins over the dense kernel (raw oneDNN calls, 30 shuffled rounds: 32 -> 64
//   at 8 x 8, k = 3: 0.95x; at 16 x 16: 0.89x; a gated PixelCNN's (3, 5) "V" stack, 30 -> 60 at 16 x 16: 0.89x;
//   a 7 x 7 stack's 32 -> 32 at 28 x 28: 0.78x); below (16 -> 32 at 8 x 8: 1.06x; 3 -> 64: 1.16x) the dense
//   kernel, which needs no copy, wins. The crop needs padding smaller than the box (oneDNN ran 1.7x slower with
//   a padding as large as the kernel);
// - a lone centre row: "B" (k // 2 + 1 taps) as the crop ((1, 7) "B" 0.86x of nn.Conv2d's own (1, 7), (1, 3)
//   "B" 1.00x in raw calls), "A" (k // 2 taps) as the box ((1, 7) 0.85x, (1, 3) 0.95x); without colour groups
//   both are exact and need no finiteness test. With colour groups "A" runs the box from k = 5 on ((1, 7) "A":
//   box 5.6 ms vs dense 7.5 ms), otherwise the dense kernel.
Kind choose(const at::Tensor& weight, const TapBox& t, int64_t groups, int64_t top) {
  const int64_t kw = weight.size(3), pairs = weight.size(0) * weight.size(1);
  const bool crop_ok = top < t.n_rows && kw / 2 < t.n_cols;
  if (t.n_rows == 1 && t.masked_centre) {
    if (groups == 1 && kw >= 3) return crop_ok ? Kind::Crop : Kind::Box;  // "B" : "A"
    return kw < 5 || 2 * t.n_cols > kw ? Kind::Dense : Kind::Box;
  }
  if (t.n_rows == 1) return Kind::Dense;  // "V": nn.Conv2d's own kernel
  if (pairs >= 4096) return Kind::Box;
  return pairs >= 1024 && crop_ok ? Kind::Crop : Kind::Dense;
}

Plan make_plan(const at::Tensor& x, const at::Tensor& weight, MaskType mt, int64_t groups, const char* op) {
  Plan pl{};
  const int64_t kw = weight.size(3), p = kw / 2;
  pl.t = tap_box(weight.size(2), kw, mt, groups, op);
  pl.top = -pl.t.dy0;
  pl.bottom = pl.t.dy0 + pl.t.n_rows - 1;
  pl.left = p;
  pl.right = pl.t.n_cols - 1 - p;
  pl.mh = std::max<int64_t>(pl.top, pl.t.dy0 + pl.t.n_rows - 1);
  pl.mw = std::max<int64_t>(p, pl.t.n_cols - 1 - p);
  pl.kind = choose(weight, pl.t, groups, pl.top);
  // the dense kernel is exact where the box fills it (a (1, k) "V" row: nn.Conv2d's own kernel)
  const bool fills = pl.t.n_rows == 2 * pl.mh + 1 && pl.t.n_cols == 2 * pl.mw + 1;
  pl.exact = box_is_exact(pl.t, groups) && (pl.kind != Kind::Dense || fills);
  // a lone row of kept taps without colour groups: the shift plan (file comment)
  if (pl.t.n_rows == 1 && pl.t.n_cols > 0 && pl.t.masked_centre && groups == 1 && have_blas(x.scalar_type()) &&
      blas_fits(x.size(1), weight.size(0), x.size(2), x.size(3), x.size(0))) {
    pl.kind = Kind::Shift;
    pl.exact = true;
  }
  return pl;
}

// The convolution with weight rows [i0, i1) and columns [j0, j1) of the (kh, kw) weight only, every tap of the
// box kept (forward: src = x), or its adjoint (adjoint: src = grad_out, the box transposed and flipped, the
// padding the other way round); co / ci select output / input channels (empty: all).
at::Tensor sub_box_conv(const at::Tensor& src, const at::Tensor& weight, const TapBox& t, int64_t i0, int64_t i1,
                        int64_t j0, int64_t j1, bool adjoint) {
  const int64_t p = weight.size(3) / 2;
  const int64_t top = -(t.dy0 + i0), bottom = t.dy0 + i1 - 1, left = p - j0, right = j1 - 1 - p;
  const at::Tensor w = weight.narrow(2, i0, i1 - i0).narrow(3, j0, j1 - j0);
  if (!adjoint) return at::conv2d(pad_zero(src, top, bottom, left, right), w.contiguous(), std::nullopt);
  const at::Tensor w_adj = w.flip({2, 3}).transpose(0, 1).contiguous();
  return at::conv2d(pad_zero(src, bottom, top, right, left), w_adj, std::nullopt);
}

// The exact path (file comment): [B, C_out, H, W] from x (forward), or grad_x [B, C_in, H, W] from grad_out
// (adjoint), summed over the kept taps only; src is never multiplied by a masked weight.
at::Tensor exact_conv(const at::Tensor& src, const at::Tensor& weight, const TapBox& t, MaskType mt,
                      int64_t groups, ColorLayout layout, bool adjoint) {
  const int64_t c_out = weight.size(0), c_in = weight.size(1), p = weight.size(3) / 2;
  const int64_t n_out = adjoint ? c_in : c_out;
  at::Tensor out = at::zeros({src.size(0), n_out, src.size(2), src.size(3)}, src.options());
  if (t.n_rows * t.n_cols == 0) return out;
  const at::Tensor s = src.contiguous();
  if (!t.masked_centre) return out.add_(sub_box_conv(s, weight, t, 0, t.n_rows, 0, t.n_cols, adjoint));
  const int64_t c = t.centre_row;
  if (c > 0) out.add_(sub_box_conv(s, weight, t, 0, c, 0, weight.size(3), adjoint));
  if (p > 0) out.add_(sub_box_conv(s, weight, t, c, c + 1, 0, p, adjoint));
  // the centre tap, a 1 x 1 convolution per output colour group over the input channels it keeps
  const at::Tensor wc = weight.select(3, p).select(2, c);  // [C_out, C_in]
  for (int64_t g = 0; g < groups; ++g) {
    std::vector<int64_t> co, ci;
    for (int64_t o = 0; o < c_out; ++o) {
      if (color_group(o, c_out, groups, layout) == g) co.push_back(o);
    }
    if (co.empty()) continue;
    for (int64_t i = 0; i < c_in; ++i) {
      if (centre_kept(co[0], i, c_out, c_in, mt, groups, layout)) ci.push_back(i);
    }
    if (ci.empty()) continue;
    const at::Tensor co_t = at::tensor(co, src.options().dtype(at::kLong));
    const at::Tensor ci_t = at::tensor(ci, src.options().dtype(at::kLong));
    const at::Tensor w = wc.index_select(0, co_t).index_select(1, ci_t);  // [n_co, n_ci]
    if (adjoint) {
      const at::Tensor w_adj = w.t().contiguous().unsqueeze(2).unsqueeze(3);
      out.index_add_(1, ci_t, at::conv2d(s.index_select(1, co_t), w_adj, std::nullopt));
    } else {
      out.index_add_(1, co_t, at::conv2d(s.index_select(1, ci_t), w.contiguous().unsqueeze(2).unsqueeze(3)));
    }
  }
  return out;
}

// The shift plan's taps (weight row 0, columns 0..n_cols-1) as flat spans over an h x w image; adjoint: the
// opposite shifts, for grad_x.
std::vector<ShiftSpan> shift_spans(const Plan& pl, int64_t kw, int64_t h, int64_t w, bool adjoint) {
  std::vector<ShiftSpan> spans;
  for (int64_t j = 0; j < pl.t.n_cols; ++j) {
    const int64_t dy = pl.t.dy0, dx = j - kw / 2;
    spans.push_back(adjoint ? shift_span(-dy, -dx, h, w) : shift_span(dy, dx, h, w));
  }
  return spans;
}

// The shift plan's weight, one [C_out, C_in] matrix per tap: [T, C_out, C_in].
at::Tensor shift_weight(const at::Tensor& weight, const Plan& pl) {
  return weight.select(2, 0).narrow(2, 0, pl.t.n_cols).permute({2, 0, 1}).contiguous();
}

at::Tensor shift_forward(const at::Tensor& x, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                         const Plan& pl) {
  const at::Tensor xc = x.contiguous(), wp = shift_weight(weight, pl);
  const int64_t batch = x.size(0), c_in = x.size(1), c_out = weight.size(0), h = x.size(2), w = x.size(3);
  at::Tensor out = at::empty({batch, c_out, h, w}, x.options().memory_format(at::MemoryFormat::Contiguous));
  const at::Tensor bc = bias.has_value() && bias->defined() ? bias->contiguous() : at::Tensor();
  const std::vector<ShiftSpan> spans = shift_spans(pl, weight.size(3), h, w, /*adjoint=*/false);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "masked_conv2d_shift", [&] {
    shift_conv<scalar_t>(xc.const_data_ptr<scalar_t>(), wp.const_data_ptr<scalar_t>(), /*transpose_w=*/false, spans,
                         bc.defined() ? bc.const_data_ptr<scalar_t>() : nullptr, out.mutable_data_ptr<scalar_t>(),
                         batch, c_in, c_out, h * w, c_out, c_in);
  });
  return out;
}

// The shift plan's grad_x [B, C_in, H, W].
at::Tensor shift_grad_x(const at::Tensor& gy, const at::Tensor& weight, const Plan& pl) {
  const at::Tensor wp = shift_weight(weight, pl);
  const int64_t batch = gy.size(0), c_in = weight.size(1), c_out = weight.size(0), h = gy.size(2), w = gy.size(3);
  at::Tensor gx = at::empty({batch, c_in, h, w}, gy.options().memory_format(at::MemoryFormat::Contiguous));
  const std::vector<ShiftSpan> spans = shift_spans(pl, weight.size(3), h, w, /*adjoint=*/true);
  AT_DISPATCH_FLOATING_TYPES(gy.scalar_type(), "masked_conv2d_shift_grad_x", [&] {
    shift_conv<scalar_t>(gy.const_data_ptr<scalar_t>(), wp.const_data_ptr<scalar_t>(), /*transpose_w=*/true, spans,
                         nullptr, gx.mutable_data_ptr<scalar_t>(), batch, c_out, c_in, h * w, c_out, c_in);
  });
  return gx;
}

// The shift plan's grad_w [C_out, C_in, kh, kw] and, when need_b, grad_b [C_out] (gb).
at::Tensor shift_grad_w_b(const at::Tensor& gy, const at::Tensor& x, const at::Tensor& weight, const Plan& pl,
                          bool need_b, at::Tensor& gb) {
  const at::Tensor xc = x.contiguous();
  const int64_t batch = x.size(0), c_in = x.size(1), c_out = weight.size(0), h = x.size(2), w = x.size(3);
  const int64_t n_taps = pl.t.n_cols;
  at::Tensor gt = at::empty({n_taps, c_out, c_in}, weight.options());
  if (need_b) gb = at::empty({c_out}, gy.options());
  const std::vector<ShiftSpan> spans = shift_spans(pl, weight.size(3), h, w, /*adjoint=*/false);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "masked_conv2d_shift_grad_w", [&] {
    shift_grad_w<scalar_t>(gy.const_data_ptr<scalar_t>(), xc.const_data_ptr<scalar_t>(), spans,
                           gt.mutable_data_ptr<scalar_t>(), need_b ? gb.mutable_data_ptr<scalar_t>() : nullptr, batch,
                           c_out, c_in, h, w);
  });
  at::Tensor gw = at::zeros_like(weight, at::MemoryFormat::Contiguous);
  gw.select(2, 0).narrow(2, 0, n_taps).copy_(gt.permute({1, 2, 0}));
  return gw;
}

// x [B, C_in, H, W], weight [C_out, C_in, kh, kw], bias [C_out]? -> [B, C_out, H, W]
at::Tensor masked_conv2d_cpu(const at::Tensor& x, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                             std::string_view mask_type, int64_t color_groups, std::string_view color_layout) {
  const char* op = "masked_conv2d";
  const MaskType mt = parse_mask_type(mask_type, op);
  const ColorLayout cl = parse_color_layout(color_layout, op);
  check_conv_params(weight, bias, mt, color_groups, cl, op);
  check_conv_input(x, weight, op);
  const Plan pl = make_plan(x, weight, mt, color_groups, op);
  if (pl.t.n_rows * pl.t.n_cols == 0) {  // no tap is kept (k = 1, mask "A"): the bias alone
    at::Tensor out = at::zeros({x.size(0), weight.size(0), x.size(2), x.size(3)}, x.options());
    if (bias.has_value()) out.add_(bias->view({1, -1, 1, 1}));
    return out;
  }
  const int64_t kw = weight.size(3);
  auto exact = [&] {
    at::Tensor out = exact_conv(x, weight, pl.t, mt, color_groups, cl, /*adjoint=*/false);
    if (bias.has_value()) out.add_(bias->view({1, -1, 1, 1}));
    return out;
  };
  if (pl.kind == Kind::Shift) return shift_forward(x, weight, bias, pl);
  const bool test_out = !pl.exact && weight.size(0) < weight.size(1);  // test the smaller tensor (file comment)
  if (!pl.exact && !test_out && !all_finite(x)) return exact();
  at::Tensor out;
  if (pl.kind == Kind::Dense) {
    const int64_t pad[2] = {pl.mh, pl.mw};
    const at::Tensor wd = masked_copy(weight, pl.t, kw, 2 * pl.mh + 1, kw, mt, color_groups, cl);
    out = at::conv2d(x, wd, bias, kOnes, at::IntArrayRef(pad)).contiguous();
  } else {
    const at::Tensor box = masked_copy(weight, pl.t, kw, pl.t.n_rows, pl.t.n_cols, mt, color_groups, cl);
    if (pl.kind == Kind::Crop) {
      const int64_t pad[2] = {pl.top, kw / 2};
      out = at::conv2d(x, box, bias, kOnes, at::IntArrayRef(pad)).narrow(2, 0, x.size(2)).narrow(3, 0, x.size(3));
    } else {
      out = at::conv2d(pad_zero(x.contiguous(), pl.top, pl.bottom, pl.left, pl.right), box, bias, kOnes, kZeros);
    }
    out = out.contiguous();
  }
  return test_out && !all_finite(out) ? exact() : out;
}

// grad_out [B, C_out, H, W], x [B, C_in, H, W], weight [C_out, C_in, kh, kw]
//   -> (grad_x [B, C_in, H, W], grad_weight [C_out, C_in, kh, kw], grad_bias [C_out]); empty where not asked.
std::tuple<at::Tensor, at::Tensor, at::Tensor> masked_conv2d_backward_cpu(const at::Tensor& grad_out,
                                                                          const at::Tensor& x,
                                                                          const at::Tensor& weight,
                                                                          std::string_view mask_type,
                                                                          int64_t color_groups,
                                                                          c10::List<bool> output_mask,
                                                                          std::string_view color_layout) {
  const char* op = "masked_conv2d_backward";
  const MaskType mt = parse_mask_type(mask_type, op);
  const ColorLayout cl = parse_color_layout(color_layout, op);
  check_conv_params(weight, std::nullopt, mt, color_groups, cl, op);
  check_conv_input(x, weight, op);
  check_conv_backward(grad_out, x, weight, output_mask.size(), op);
  const Plan pl = make_plan(x, weight, mt, color_groups, op);
  const at::Tensor gy = grad_out.contiguous();
  at::Tensor gx, gw, gb;
  at::Tensor empty = at::empty({0}, grad_out.options());
  const bool need_x = output_mask[0], need_w = output_mask[1];
  bool need_x_done = false;
  // the smaller tensor is tested: grad_x after the fact, or grad_out before (file comment)
  const bool test_gx = !pl.exact && weight.size(1) < weight.size(0);
  if ((need_x || need_w) && pl.t.n_rows * pl.t.n_cols == 0) {
    if (need_x) gx = at::zeros_like(x, at::MemoryFormat::Contiguous);
    if (need_w) gw = at::zeros_like(weight, at::MemoryFormat::Contiguous);
  } else if (need_x || need_w) {
    const int64_t kh = weight.size(2), kw = weight.size(3);
    const int64_t bias_size[1] = {weight.size(0)};
    const at::OptionalIntArrayRef bias_sizes = at::IntArrayRef(bias_size);
    const bool need_b = output_mask[2];
    // the exact grad_x where grad_out is not finite (file comment); grad_w below as usual
    if (need_x && !pl.exact && !test_gx && !all_finite(gy)) {
      gx = exact_conv(gy, weight, pl.t, mt, color_groups, cl, /*adjoint=*/true);
      need_x_done = true;
    }
    // grad_w (and grad_b) of the box over the shifted input: exact for any input (no product of a padded zero)
    auto box_grad_w = [&](const at::Tensor& box) {
      const at::Tensor xp = pad_zero(x.contiguous(), pl.top, pl.bottom, pl.left, pl.right);
      auto grads = at::convolution_backward(gy, xp, box, bias_sizes, kOnes, kZeros, kOnes, /*transposed=*/false,
                                            kZeros, /*groups=*/1, {false, true, need_b});
      gw = masked_copy(std::get<1>(grads), pl.t, kw, kh, kw, mt, color_groups, cl);  // zero outside the kept taps
      if (need_b) gb = std::get<2>(grads);
    };
    if (pl.kind == Kind::Shift) {
      if (need_x) gx = shift_grad_x(gy, weight, pl);
      if (need_w) gw = shift_grad_w_b(gy, x, weight, pl, need_b, gb);
    } else if (pl.kind == Kind::Crop) {
      // grad_out padded by the forward's extra rows and columns (zeros: they were cropped), then one oneDNN call
      const at::Tensor box = masked_copy(weight, pl.t, kw, pl.t.n_rows, pl.t.n_cols, mt, color_groups, cl);
      const int64_t pad[2] = {pl.top, kw / 2};
      const at::Tensor gyp = pad_zero(gy, 0, 2 * pl.top - pl.t.n_rows + 1, 0, 2 * (kw / 2) - pl.t.n_cols + 1);
      auto grads = at::convolution_backward(gyp, x.contiguous(), box, bias_sizes, kOnes, at::IntArrayRef(pad), kOnes,
                                            /*transposed=*/false, kZeros, /*groups=*/1,
                                            {need_x && !need_x_done, need_w, need_b});
      if (need_x && !need_x_done) gx = std::get<0>(grads).contiguous();
      if (need_b) gb = std::get<2>(grads);  // the padding is zeros: the sum of grad_out
      if (need_w) gw = masked_copy(std::get<1>(grads), pl.t, kw, kh, kw, mt, color_groups, cl);
      // the padded zeros of grad_out meet pixels near the bottom and right edges: a non-finite one there makes
      // taps non-finite that never read it. Only then is grad_w not finite (NaN * 0), and the box's is exact.
      if (need_w && !all_finite(gw)) box_grad_w(box);
    } else if (pl.kind == Kind::Dense) {
      // one oneDNN call for all gradients, as autograd's F.conv2d backward makes
      const at::Tensor wd = masked_copy(weight, pl.t, kw, 2 * pl.mh + 1, kw, mt, color_groups, cl);
      const int64_t pad[2] = {pl.mh, pl.mw};
      const bool dense_x = need_x && !need_x_done;
      auto grads = at::convolution_backward(gy, x.contiguous(), wd, bias_sizes, kOnes, at::IntArrayRef(pad), kOnes,
                                            /*transposed=*/false, kZeros, /*groups=*/1, {dense_x, need_w, need_b});
      if (dense_x) gx = std::get<0>(grads).contiguous();
      if (need_b) gb = std::get<2>(grads);
      // the dense kernel's rows start at the weight's row 0: mask it back to [kh, kw]
      if (need_w) gw = masked_copy(std::get<1>(grads), pl.t, kw, kh, kw, mt, color_groups, cl);
    } else {
      const at::Tensor box = masked_copy(weight, pl.t, kw, pl.t.n_rows, pl.t.n_cols, mt, color_groups, cl);
      if (need_x && !need_x_done) {
        // The adjoint of the box convolution: grad_out padded the other way round (top <-> bottom,
        // left <-> right) and convolved with the box transposed (in <-> out) and flipped in both axes.
        const at::Tensor w_adj = box.flip({2, 3}).transpose(0, 1).contiguous();
        const at::Tensor gyp = pad_zero(gy, pl.bottom, pl.top, pl.right, pl.left);
        gx = at::conv2d(gyp, w_adj, std::nullopt, kOnes, kZeros).contiguous();
      }
      if (need_w) box_grad_w(box);
    }
  }
  if (need_x && test_gx && !all_finite(gx)) {
    gx = exact_conv(gy, weight, pl.t, mt, color_groups, cl, /*adjoint=*/true);
  }
  if (output_mask[2] && !gb.defined()) gb = gy.sum({0, 2, 3});
  return {need_x ? gx : empty, need_w ? gw : empty.clone(), output_mask[2] ? gb : empty.clone()};
}

// Autograd of torch.ops.spn.masked_conv2d, in C++: the Python register_autograd path costs more than the
// whole convolution at the small shapes of the CPU presets. Saves x and weight; the backward is the
// masked_conv2d_backward op (so any backend's kernel serves it), grad_bias asked for only when there is a bias.
class MaskedConv2dFunction : public torch::autograd::Function<MaskedConv2dFunction> {
 public:
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x, const at::Tensor& weight,
                            const std::optional<at::Tensor>& bias, c10::string_view mask_type, int64_t color_groups,
                            c10::string_view color_layout) {
    ctx->save_for_backward({x, weight});
    ctx->saved_data["mask_type"] = std::string(mask_type);
    ctx->saved_data["color_groups"] = color_groups;
    ctx->saved_data["color_layout"] = std::string(color_layout);
    ctx->saved_data["has_bias"] = bias.has_value() && bias->defined();
    at::AutoDispatchBelowADInplaceOrView guard;
    static auto op = c10::Dispatcher::singleton()
                         .findSchemaOrThrow("spn::masked_conv2d", "")
                         .typed<at::Tensor(const at::Tensor&, const at::Tensor&, const std::optional<at::Tensor>&,
                                           c10::string_view, int64_t, c10::string_view)>();
    return op.call(x, weight, bias, mask_type, color_groups, color_layout);
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const bool has_bias = ctx->saved_data["has_bias"].toBool();
    const std::string mask_type = ctx->saved_data["mask_type"].toStringRef();
    const std::string color_layout = ctx->saved_data["color_layout"].toStringRef();
    const int64_t color_groups = ctx->saved_data["color_groups"].toInt();
    c10::List<bool> need({ctx->needs_input_grad(0), ctx->needs_input_grad(1),
                          has_bias && ctx->needs_input_grad(2)});
    static auto op = c10::Dispatcher::singleton()
                         .findSchemaOrThrow("spn::masked_conv2d_backward", "")
                         .typed<std::tuple<at::Tensor, at::Tensor, at::Tensor>(
                             const at::Tensor&, const at::Tensor&, const at::Tensor&, c10::string_view, int64_t,
                             c10::List<bool>, c10::string_view)>();
    auto [gx, gw, gb] =
        op.call(grads[0].contiguous(), saved[0], saved[1], mask_type, color_groups, need, color_layout);
    const at::Tensor none;
    return {need[0] ? gx : none, need[1] ? gw : none, need[2] ? gb : none, none, none, none};
  }
};

at::Tensor masked_conv2d_autograd(const at::Tensor& x, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                                  c10::string_view mask_type, int64_t color_groups, c10::string_view color_layout) {
  return MaskedConv2dFunction::apply(x, weight, bias, mask_type, color_groups, color_layout);
}

}  // namespace
}  // namespace spn

TORCH_LIBRARY_IMPL(spn, CPU, m) {
  m.impl("masked_conv2d", &spn::masked_conv2d_cpu);
  m.impl("masked_conv2d_backward", &spn::masked_conv2d_backward_cpu);
}

TORCH_LIBRARY_IMPL(spn, Autograd, m) { m.impl("masked_conv2d", &spn::masked_conv2d_autograd); }
