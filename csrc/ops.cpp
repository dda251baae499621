// The spn operator schemas, defined once. Backend files only add implementations:
//   csrc/<op>/cpu.cpp       TORCH_LIBRARY_IMPL(spn, CPU, m)
//   csrc/cuda/binding.cpp   TORCH_LIBRARY_IMPL(spn, CUDA, m)   (only when built with CUDA; kernels in csrc/<op>/*.cu)
// Each op registers its fake (meta) kernel, and masked_conv2d its autograd, from Python in
// spn_kernels/ops/<op>/op.py. The semantics of each op are written down in its pure-PyTorch reference,
// spn_kernels/ops/<op>/ref.py.
#include <torch/library.h>

TORCH_LIBRARY(spn, m) {
  // [B, C, H, W] -> [B, s*s, C, H/s, W/s], out[:, i*s + j] = x[:, :, i::s, j::s]
  m.def("subscale_split(Tensor x, int s) -> Tensor");
  // [B, s*s, C, n, n] -> [B, C, n*s, n*s], the exact inverse of subscale_split
  m.def("subscale_merge(Tensor slices) -> Tensor");
  // integer image [B, C, H, W], t [B] -> float32 [B, s*s*(C+1), H/s, W/s]
  m.def("slice_context(Tensor x, int s, Tensor t, int bits) -> Tensor");
  // x[b, :, i::s, j::s] = values[b] with t[b] = i*s + j; in place
  m.def("slice_scatter_(Tensor(a!) x, Tensor values, int s, Tensor t) -> ()");
  // PixelCNN masked convolution, stride 1, zero 'same' padding; weight [C_out, C_in, kh, kw], kw odd, kh one of
  // kw, 1, kw/2 + 1, kw/2 (rows of the centred kw x kw kernel); color_layout "blocked" or "interleaved"
  m.def(
      "masked_conv2d(Tensor x, Tensor weight, Tensor? bias, str mask_type, int color_groups, "
      "str color_layout=\"blocked\") -> Tensor");
  // (grad_x, grad_weight, grad_bias); an entry whose output_mask is False is returned empty
  m.def(
      "masked_conv2d_backward(Tensor grad_out, Tensor x, Tensor weight, str mask_type, int color_groups, "
      "bool[] output_mask, str color_layout=\"blocked\") -> (Tensor, Tensor, Tensor)");
  // Cached incremental step. cache: the layer's full input map [B, C_in, H, W]. If x_new is given it is
  // written first (A/B: [B, C_in] at (row, col); V: [B, C_in, W] as row `row`). Returns the output at
  // (row, col) [B, C_out] for A/B, or the whole row [B, C_out, W] for V.
  m.def(
      "masked_conv2d_step(Tensor(a!) cache, Tensor? x_new, Tensor weight, Tensor? bias, int row, int col, "
      "str mask_type, int color_groups, str color_layout=\"blocked\") -> Tensor");
}

// The sampler's per-position ops, kept apart from the blocks above.
TORCH_LIBRARY_FRAGMENT(spn, m) {
  // Every gated block's horizontal step at (row, col) on padded channels-last caches h_in[i] [B, n+p, n+2p, c_i]
  // (entries i >= 1 written in place at the position); returns the last block's output [B, d].
  m.def(
      "gated_step(Tensor(a!)[] h_in, Tensor[] row_term, Tensor[] w_h, Tensor[] w_out, Tensor[] b_out, int row, "
      "int col) -> Tensor");
  // One inverse-CDF draw per row of logits [B, K] with uniforms u (float64 [B]): (int64 values [B], float64
  // log p at temperature 1 [B], NaN for a row with no distribution).
  m.def("categorical_draw(Tensor logits, Tensor u, float temperature) -> (Tensor, Tensor)");
  // The same, written into values (int64 [B]) and log_p (float64 [B]): no allocation, no copy per sub-pixel.
  m.def("categorical_draw_(Tensor logits, Tensor u, float temperature, Tensor(a!) values, Tensor(b!) log_p) -> ()");
  // Rows [row_start, row_end) of a slice sampled in place: gated decoder, channel head (categorical, or a mixture of
  // `mixtures` discretised logistics), draws and cache writes
  // for every sub-pixel, then the vertical stacks (spn_kernels/ops/decode_rows/ref.py).
  m.def(
      "decode_rows(Tensor(a!) pixels, Tensor(b!)[] v_in, Tensor(c!)[] h_in, Tensor(d!)[] row_term, Tensor[] cond_v, "
      "Tensor[] cond_h, Tensor[] w_v, Tensor[] w_h, Tensor[] w_vh, Tensor[] w_out, Tensor[] b_out, Tensor head_inp, "
      "Tensor head_bias, Tensor[] head_prev, Tensor[] head_out_w, Tensor[] head_out_b, int mixtures, "
      "float log_scale_min, Tensor levels, Tensor u, "
      "float temperature, Tensor(e!) values, Tensor(f!) log_p, int row_start, int row_end) -> ()");
}
