// Shared by the masked-convolution CPU kernels (csrc/masked_conv2d/cpu.cpp, csrc/masked_conv2d_step/cpu.cpp): which
// taps of a (kh, kw) weight a mask keeps. The mask definition itself lives in spn_kernels/ops/masked_conv2d/ref.py
// (conv_mask); this file encodes the same rule, in the square kernel's rows (p = kw / 2):
//   rows 0..p-1 are kept by every mask; rows below p never are;
//   row p: "V" keeps all columns, "A"/"B" keep columns < p, and the centre tap (p, p) is kept for (co, ci) when
//   group(ci) < group(co) ("A") or group(ci) <= group(co) ("B"), the groups by color_layout.
#pragma once

#include <ATen/ATen.h>

#include "checks.h"

namespace spn {

// The colour group of channel c of n channels.
inline int64_t color_group(int64_t c, int64_t n, int64_t groups, ColorLayout layout) {
  return layout == ColorLayout::Interleaved ? c % groups : c / (n / groups);
}

// Whether the centre tap of (co, ci) is kept ("V": always).
inline bool centre_kept(int64_t co, int64_t ci, int64_t c_out, int64_t c_in, MaskType mt, int64_t groups,
                        ColorLayout layout) {
  if (mt == MaskType::V) return true;
  const int64_t go = color_group(co, c_out, groups, layout), gi = color_group(ci, c_in, groups, layout);
  return mt == MaskType::A ? gi < go : gi <= go;
}

// The kept taps of a (kh, kw) weight as a box of weight rows 0..n_rows-1 and columns 0..n_cols-1 (every kept
// set starts at weight row 0 and column 0), plus whether the box holds the centre tap, which is masked per
// channel pair, and the taps right of it in the centre row, which are masked. dy0 = r0 - p is the image row
// offset of weight row 0.
struct TapBox {
  int64_t n_rows, n_cols;
  int64_t dy0;
  int64_t centre_row;  // weight row of the square's centre row, or -1 when the box does not reach it
  bool masked_centre;  // "A"/"B": the centre row is cut at the centre tap, kept per channel pair
};

inline TapBox tap_box(int64_t kh, int64_t kw, MaskType mt, int64_t groups, const char* op) {
  const KernelRows kr = kernel_rows(kh, kw, op);
  const int64_t p = kw / 2;
  TapBox t{};
  t.n_rows = std::min(kr.n, p - kr.r0 + 1);  // rows below the centre row are always masked
  t.dy0 = kr.r0 - p;
  t.centre_row = kr.r0 + t.n_rows - 1 == p ? t.n_rows - 1 : -1;
  t.masked_centre = t.centre_row >= 0 && mt != MaskType::V;
  t.n_cols = kw;
  if (t.masked_centre && t.n_rows == 1) {
    // the centre row alone: its right half is masked, and so is the centre tap of "A" without colour groups
    t.n_cols = (mt == MaskType::A && groups == 1) ? p : p + 1;
  }
  return t;
}

// [C_out, C_in] 0/1 of the kept centre taps, in dtype.
inline at::Tensor centre_mask(int64_t c_out, int64_t c_in, MaskType mt, int64_t groups, ColorLayout layout,
                              const at::TensorOptions& opts) {
  at::Tensor m = at::empty({c_out, c_in}, opts.dtype(at::kFloat).device(at::kCPU));
  float* mp = m.mutable_data_ptr<float>();
  for (int64_t co = 0; co < c_out; ++co) {
    for (int64_t ci = 0; ci < c_in; ++ci) mp[co * c_in + ci] = centre_kept(co, ci, c_out, c_in, mt, groups, layout);
  }
  return m.to(opts);
}

// Zeroes, in place, the masked taps of a tensor [C_out, C_in, n_rows, n_cols] cut to a TapBox (a weight or a
// weight gradient): only the centre row can hold masked taps.
inline void zero_masked(at::Tensor& box, const TapBox& t, MaskType mt, int64_t groups, ColorLayout layout) {
  if (!t.masked_centre) return;
  const int64_t c_out = box.size(0), c_in = box.size(1);
  at::Tensor row = box.select(2, t.centre_row);  // [C_out, C_in, n_cols]
  if (t.n_rows > 1) {
    // a full-width box: the columns right of the centre are masked
    const int64_t pc = (box.size(3) - 1) / 2;
    row.narrow(2, pc + 1, pc).zero_();
    row.select(2, pc).mul_(centre_mask(c_out, c_in, mt, groups, layout, box.options()));
  } else if (t.n_cols > 0 && !(mt == MaskType::A && groups == 1)) {
    // the centre row alone, cut just after the centre tap
    row.select(2, t.n_cols - 1).mul_(centre_mask(c_out, c_in, mt, groups, layout, box.options()));
  }
}

// weight * mask cut to its TapBox: [C_out, C_in, n_rows, n_cols], fresh and contiguous.
inline at::Tensor masked_box_weight(const at::Tensor& weight, const TapBox& t, MaskType mt, int64_t groups,
                                    ColorLayout layout) {
  at::Tensor box = weight.narrow(2, 0, t.n_rows).narrow(3, 0, t.n_cols).clone(at::MemoryFormat::Contiguous);
  zero_masked(box, t, mt, groups, layout);
  return box;
}

}  // namespace spn
