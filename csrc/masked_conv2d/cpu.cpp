// CPU kernels of masked_conv2d and masked_conv2d_backward. The spec is spn_kernels/ops/masked_conv2d/ref.py.
//
// Every tap below the centre row is masked for all three masks, so the convolution is computed with only
// rows 0..p (p = k/2) of the kernel, over the input padded by p zero rows on top, none below and p zero
// columns on each side (the down-shifted convolution of PixelCNN++). That drops (p / k) of the taps with no waste of its own and
// leaves the work to oneDNN's convolution (at::conv2d / at::convolution_backward), which runs at ~430 GFLOP/s
// on 2 AVX-512 cores for these shapes.
//
// Why not gather only the unmasked taps and call at::mm (the remaining centre-row waste: mask A uses 4 of
// the 6 taps at k = 3, 12 of 15 at k = 5, 24 of 28 at k = 7)? Measured on a 2-core AMD EPYC (AVX-512,
// B=16, C=128, 32x32): the BLAS behind at::mm (MKL) reaches ~200 GFLOP/s here, less than half of oneDNN's
// rate, so the exact-tap GEMM loses before the im2col copy is paid (k = 3, mask A: 4-tap GEMM alone
// 12.6 ms vs the 6-tap top-rows convolution 7.4 ms). Splitting the centre row into a second convolution
// (p rows x k, plus 1 x p) was slower as well (oneDNN handles the thin kernels poorly: 20.6 ms vs 7.4 ms
// at k = 3). A hand-written AVX-512 direct loop would have to beat oneDNN's JIT kernels; see
// benchmarks/RESULTS.md for the table this choice rests on.
//
// Backward, with w_top = (weight * mask)[:, :, :p+1]:
//   grad_x: the adjoint of a down-shifted convolution is an up-shifted one: the convolution of grad_out
//           padded by p zero rows *below* (and p columns each side), with w_top transposed (in <-> out)
//           and flipped in both axes.
//           One forward convolution, written straight into a fresh contiguous tensor (no crop copy).
//   grad_w: oneDNN's weight gradient of the top-rows convolution, then the masked taps of its centre
//           row zeroed and rows p+1..k-1 padded with zeros.
//   grad_b: grad_out summed over (B, H, W).
#include <ATen/ATen.h>
#include <torch/library.h>

#include <string_view>
#include <tuple>

#include "checks.h"
#include "masks.h"

namespace spn {
namespace {

// [B, C, H, W] -> [B, C, H + top + bottom, W + 2 * side], zero padded; t itself when nothing is added.
// The width padding is done here too, not by the convolution: oneDNN ran the padded-input, zero-padding
// convolution ~15% faster at k = 3 (17.4 vs 20.9 ms forward, B=16, C=128, 32x32, one thread).
at::Tensor pad_zero(const at::Tensor& t, int64_t top, int64_t bottom, int64_t side) {
  if (top == 0 && bottom == 0 && side == 0) return t;
  return at::constant_pad_nd(t, {side, side, top, bottom}, 0);
}

// stride / dilation (1, 1) and padding / output_padding (0, 0), as arrays that outlive every call
constexpr int64_t kOneArr[2] = {1, 1};
constexpr int64_t kZeroArr[2] = {0, 0};
const at::IntArrayRef kOnes(kOneArr);
const at::IntArrayRef kZeros(kZeroArr);

// x [B, C_in, H, W], weight [C_out, C_in, k, k], bias [C_out]? -> [B, C_out, H, W]
at::Tensor masked_conv2d_cpu(const at::Tensor& x, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                             std::string_view mask_type, int64_t color_groups) {
  const char* op = "masked_conv2d";
  const MaskType mt = parse_mask_type(mask_type, op);
  check_conv_params(weight, bias, mt, color_groups, op);
  check_conv_input(x, weight, op);
  const int64_t p = weight.size(2) / 2;
  at::Tensor w_top = masked_top_weight(weight, mt, color_groups);  // [C_out, C_in, p+1, k]
  const at::Tensor xp = pad_zero(x.contiguous(), p, 0, p);  // [B, C_in, H + p, W + 2p]
  at::Tensor out = at::conv2d(xp, w_top, bias, kOnes, kZeros);
  return out.contiguous();
}

// grad_out [B, C_out, H, W], x [B, C_in, H, W], weight [C_out, C_in, k, k]
//   -> (grad_x [B, C_in, H, W], grad_weight [C_out, C_in, k, k], grad_bias [C_out]); empty where not asked.
std::tuple<at::Tensor, at::Tensor, at::Tensor> masked_conv2d_backward_cpu(const at::Tensor& grad_out,
                                                                          const at::Tensor& x,
                                                                          const at::Tensor& weight,
                                                                          std::string_view mask_type,
                                                                          int64_t color_groups,
                                                                          c10::List<bool> output_mask) {
  const char* op = "masked_conv2d_backward";
  const MaskType mt = parse_mask_type(mask_type, op);
  check_conv_params(weight, std::nullopt, mt, color_groups, op);
  check_conv_input(x, weight, op);
  check_conv_backward(grad_out, x, weight, output_mask.size(), op);
  const int64_t p = weight.size(2) / 2;
  const at::Tensor gy = grad_out.contiguous();
  at::Tensor gx, gw, gb;
  at::Tensor empty = at::empty({0}, grad_out.options());
  if (output_mask[0] || output_mask[1]) {
    at::Tensor w_top = masked_top_weight(weight, mt, color_groups);  // [C_out, C_in, p+1, k]
    if (output_mask[0]) {
      // [C_in, C_out, p+1, k]: transposed and flipped, for the up-shifted adjoint convolution
      at::Tensor w_adj = w_top.flip({2, 3}).transpose(0, 1).contiguous();
      const at::Tensor gyp = pad_zero(gy, 0, p, p);  // [B, C_out, H + p, W + 2p], zero rows below
      gx = at::conv2d(gyp, w_adj, std::nullopt, kOnes, kZeros).contiguous();
    }
    if (output_mask[1]) {
      const at::Tensor xp = pad_zero(x.contiguous(), p, 0, p);  // [B, C_in, H + p, W + 2p]
      at::Tensor gw_top = std::get<1>(at::convolution_backward(gy, xp, w_top, std::nullopt, kOnes, kZeros, kOnes,
                                                               /*transposed=*/false, kZeros, /*groups=*/1,
                                                               {false, true, false}));
      gw_top = gw_top.contiguous();
      zero_masked_top(gw_top, mt, color_groups);
      gw = pad_zero(gw_top, 0, p, 0);  // rows p+1..k-1 are masked: zero gradient
    }
  }
  if (output_mask[2]) gb = gy.sum({0, 2, 3});
  return {output_mask[0] ? gx : empty, output_mask[1] ? gw : empty.clone(), output_mask[2] ? gb : empty.clone()};
}

}  // namespace
}  // namespace spn

TORCH_LIBRARY_IMPL(spn, CPU, m) {
  m.impl("masked_conv2d", &spn::masked_conv2d_cpu);
  m.impl("masked_conv2d_backward", &spn::masked_conv2d_backward_cpu);
}
