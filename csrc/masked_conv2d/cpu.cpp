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
// Small images are the exception: there the padded copies cost more than the taps they save, and the masked
// box embedded in a centred kernel (oneDNN's own zero padding, no copy) is faster; see choose_dense.
//
// Backward of the box convolution:
//   grad_x: the adjoint of a shifted convolution is the opposite shift: the convolution of grad_out padded
//           the other way round, with the box transposed (in <-> out) and flipped in both axes, written
//           straight into a fresh contiguous tensor (no crop copy).
//   grad_w: oneDNN's weight gradient of the box convolution, its masked taps zeroed and padded with zeros
//           to [kh, kw].
//   grad_b: grad_out summed over (B, H, W).
// The dense path gets grad_x and grad_w from one at::convolution_backward, as F.conv2d's autograd does.
#include <ATen/ATen.h>
#include <torch/library.h>

#include <algorithm>
#include <string_view>
#include <tuple>

#include "checks.h"
#include "masks.h"

namespace spn {
namespace {

// [B, C, H, W] -> [B, C, H + top + bottom, W + left + right], zero padded (negative amounts crop); t itself when
// nothing changes.
at::Tensor pad_zero(const at::Tensor& t, int64_t top, int64_t bottom, int64_t left, int64_t right) {
  if (top == 0 && bottom == 0 && left == 0 && right == 0) return t;
  return at::constant_pad_nd(t, {left, right, top, bottom}, 0);
}

// stride / dilation (1, 1) and padding / output_padding (0, 0), as arrays that outlive every call
constexpr int64_t kOneArr[2] = {1, 1};
constexpr int64_t kZeroArr[2] = {0, 0};
const at::IntArrayRef kOnes(kOneArr);
const at::IntArrayRef kZeros(kZeroArr);

// How one call runs: the kept taps (TapBox) and which of the two convolutions computes them.
//   box:   the weight cut to its TapBox, over the input padded (or cropped) so that the box's taps land on the
//          right pixels: no masked multiply-adds beyond the centre row's, one padded copy of the input.
//   dense: the masked box embedded in the smallest kernel centred on the output pixel, with oneDNN's own zero
//          padding: no copies, but the embedding's zero taps are multiplied (up to 2x at k x k).
// dense wins where the copies cost more than the extra taps (small images, few channels); see choose_dense.
struct Plan {
  TapBox t;
  int64_t top, bottom, left, right;  // box: the input padding
  int64_t mh, mw;                    // dense: the centred kernel is (2 mh + 1) x (2 mw + 1), padding (mh, mw)
  bool dense;
};

// Measured on the presets' shapes (benchmarks/bench_masked_conv2d.py, benchmarks/RESULTS.md): the padded copy
// dominates for small images, where the dense kernel's extra taps are cheap; a lone centre row (the dense
// kernel is exactly nn.Conv2d's) runs dense unless the box drops most of its taps.
bool choose_dense(const at::Tensor& x, const TapBox& t, int64_t mh, int64_t mw) {
  const int64_t hw = x.size(2) * x.size(3);
  const int64_t box = t.n_rows * t.n_cols, centred = (2 * mh + 1) * (2 * mw + 1);
  if (box == 0) return false;
  if (hw <= 16 * 16) return true;
  return centred <= box + box / 4;  // at most 25% extra taps: not worth a copy
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
  pl.dense = choose_dense(x, pl.t, pl.mh, pl.mw);
  return pl;
}

// The masked box embedded in the centred (2 mh + 1) x (2 mw + 1) kernel.
at::Tensor dense_weight(const at::Tensor& box, const Plan& pl) {
  const int64_t kw = 2 * pl.mw + 1, p = kw / 2;
  const int64_t row0 = pl.mh + pl.t.dy0, col0 = pl.mw - p;  // where the box's row 0 and column 0 land
  if (row0 == 0 && col0 == 0 && box.size(2) == 2 * pl.mh + 1 && box.size(3) == kw) return box;
  return at::constant_pad_nd(box, {col0, kw - col0 - box.size(3), row0, 2 * pl.mh + 1 - row0 - box.size(2)}, 0);
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
  const at::Tensor box = masked_box_weight(weight, pl.t, mt, color_groups, cl);  // [C_out, C_in, n_rows, n_cols]
  if (pl.dense) {
    const int64_t pad[2] = {pl.mh, pl.mw};
    return at::conv2d(x, dense_weight(box, pl), bias, kOnes, at::IntArrayRef(pad)).contiguous();
  }
  const at::Tensor xp = pad_zero(x.contiguous(), pl.top, pl.bottom, pl.left, pl.right);
  return at::conv2d(xp, box, bias, kOnes, kZeros).contiguous();
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
  if ((need_x || need_w) && pl.t.n_rows * pl.t.n_cols == 0) {
    if (need_x) gx = at::zeros_like(x, at::MemoryFormat::Contiguous);
    if (need_w) gw = at::zeros_like(weight, at::MemoryFormat::Contiguous);
  } else if (need_x || need_w) {
    const at::Tensor box = masked_box_weight(weight, pl.t, mt, color_groups, cl);  // [C_out, C_in, n_rows, n_cols]
    at::Tensor gw_box;
    if (pl.dense) {
      // one oneDNN call for both gradients, as autograd's F.conv2d backward makes
      const at::Tensor wd = dense_weight(box, pl);
      const int64_t pad[2] = {pl.mh, pl.mw};
      const int64_t bias_size[1] = {weight.size(0)};
      const bool need_b = output_mask[2];
      auto grads = at::convolution_backward(gy, x.contiguous(), wd, at::OptionalIntArrayRef(at::IntArrayRef(bias_size)),
                                            kOnes, at::IntArrayRef(pad), kOnes, /*transposed=*/false, kZeros,
                                            /*groups=*/1, {need_x, need_w, need_b});
      if (need_x) gx = std::get<0>(grads).contiguous();
      if (need_b) gb = std::get<2>(grads);
      if (need_w) {
        const int64_t row0 = pl.mh + pl.t.dy0, col0 = pl.mw - weight.size(3) / 2;
        gw_box = std::get<1>(grads).narrow(2, row0, pl.t.n_rows).narrow(3, col0, pl.t.n_cols);
      }
    } else {
      if (need_x) {
        // The adjoint of the box convolution: grad_out padded the other way round (top <-> bottom,
        // left <-> right) and convolved with the box transposed (in <-> out) and flipped in both axes.
        const at::Tensor w_adj = box.flip({2, 3}).transpose(0, 1).contiguous();
        const at::Tensor gyp = pad_zero(gy, pl.bottom, pl.top, pl.right, pl.left);
        gx = at::conv2d(gyp, w_adj, std::nullopt, kOnes, kZeros).contiguous();
      }
      if (need_w) {
        const at::Tensor xp = pad_zero(x.contiguous(), pl.top, pl.bottom, pl.left, pl.right);
        gw_box = std::get<1>(at::convolution_backward(gy, xp, box, std::nullopt, kOnes, kZeros, kOnes,
                                                      /*transposed=*/false, kZeros, /*groups=*/1,
                                                      {false, true, false}));
      }
    }
    if (need_w) {
      gw_box = gw_box.contiguous();
      zero_masked(gw_box, pl.t, mt, color_groups, cl);
      // the taps outside the box are masked: zero gradient
      gw = pad_zero(gw_box, 0, weight.size(2) - pl.t.n_rows, 0, weight.size(3) - pl.t.n_cols);
    }
  }
  if (output_mask[2] && !gb.defined()) gb = gy.sum({0, 2, 3});
  return {need_x ? gx : empty, need_w ? gw : empty.clone(), output_mask[2] ? gb : empty.clone()};
}

}  // namespace
}  // namespace spn

TORCH_LIBRARY_IMPL(spn, CPU, m) {
  m.impl("masked_conv2d", &spn::masked_conv2d_cpu);
  m.impl("masked_conv2d_backward", &spn::masked_conv2d_backward_cpu);
}
