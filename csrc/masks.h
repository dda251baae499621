// Shared by the masked-convolution CPU kernels (csrc/masked_conv2d/cpu.cpp, csrc/masked_conv2d_step/cpu.cpp): which
// taps of a (kh, kw) weight a mask keeps. The mask definition itself lives in spn_kernels/ops/masked_conv2d/ref.py
// (conv_mask); this file encodes the same rule, in the square kernel's rows (p = kw / 2):
//   rows 0..p-1 are kept by every mask; rows below p never are;
//   row p: "V" keeps all columns, "A"/"B" keep columns < p, and the centre tap (p, p) is kept for (co, ci) when
//   group(ci) < group(co) ("A") or group(ci) <= group(co) ("B"), the groups by color_layout.
#pragma once

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>

#include <algorithm>
#include <type_traits>
#include <cstdint>
#include <cstring>
#include <vector>

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

// dst [C_out, C_in, dst_h, dst_w], fresh and contiguous: dst[.., i, j] = src[.., i, j] where (i, j) is a tap of
// src [C_out, C_in, src_h, src_w] (weight coordinates: the rows and columns of a (kh, kw) weight) that the mask
// keeps, zero elsewhere. One allocation: it builds the masked box weight (dst = the box), the dense kernel (dst
// taller than the weight), and masks a weight gradient back to [kh, kw].
//
// Which taps are kept depends on the output channel only through its colour group, so the mask of one output
// channel's [C_in, dst_h, dst_w] block is built once per group and applied block by block: for equal shapes a
// bitwise AND with all-ones / all-zeros words (vectorised; a masked weight is never multiplied, it becomes +0),
// else a gather by precomputed offsets. (A loop that re-derived the mask per tap cost more than the small
// layers' convolution itself.)
inline at::Tensor masked_copy(const at::Tensor& src, const TapBox& t, int64_t kw, int64_t dst_h, int64_t dst_w,
                              MaskType mt, int64_t groups, ColorLayout layout) {
  const at::Tensor s = src.contiguous();
  const int64_t c_out = s.size(0), c_in = s.size(1), sh = s.size(2), sw = s.size(3), p = kw / 2;
  at::Tensor dst = at::empty({c_out, c_in, dst_h, dst_w}, s.options().memory_format(at::MemoryFormat::Contiguous));
  const int64_t rows = std::min({sh, dst_h, t.n_rows}), cols = std::min({sw, dst_w, t.n_cols});
  const int64_t n_dst = dst_h * dst_w, s_stride = sh * sw, block = c_in * n_dst;
  const bool same = sh == dst_h && sw == dst_w;
  std::vector<int64_t> from(n_dst, -1);  // source offset of each destination tap every pair keeps; -1: zero
  int64_t centre = -1;                   // destination offset of the centre tap, kept per pair
  for (int64_t i = 0; i < rows; ++i) {
    int64_t end = cols;
    if (t.masked_centre && i == t.centre_row) {
      end = std::min(cols, p);
      if (p < cols) centre = i * dst_w + p;
    }
    for (int64_t j = 0; j < end; ++j) from[i * dst_w + j] = i * sw + j;
  }
  const int64_t c_src = centre >= 0 ? (centre / dst_w) * sw + p : -1;
  // index[g]: for an output channel of colour group g, the source offset (within its block) of each
  // destination element of its block, -1 for zero
  std::vector<std::vector<int64_t>> index(groups);
  auto index_of = [&](int64_t go) -> const std::vector<int64_t>& {
    std::vector<int64_t>& ix = index[go];
    if (!ix.empty()) return ix;
    ix.resize(block);
    for (int64_t ci = 0; ci < c_in; ++ci) {
      for (int64_t e = 0; e < n_dst; ++e) ix[ci * n_dst + e] = from[e] >= 0 ? ci * s_stride + from[e] : -1;
      if (centre >= 0) {
        const int64_t gi = color_group(ci, c_in, groups, layout);
        if (mt == MaskType::A ? gi < go : gi <= go) ix[ci * n_dst + centre] = ci * s_stride + c_src;
      }
    }
    return ix;
  };
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, s.scalar_type(), "masked_copy", [&] {
    using Word = std::conditional_t<sizeof(scalar_t) == 8, uint64_t,
                                    std::conditional_t<sizeof(scalar_t) == 4, uint32_t, uint16_t>>;
    static_assert(sizeof(Word) == sizeof(scalar_t));
    const scalar_t* sp = s.const_data_ptr<scalar_t>();
    scalar_t* dp = dst.mutable_data_ptr<scalar_t>();
    std::vector<std::vector<Word>> bits(same ? groups : 0);  // same shapes: the index as AND masks
    for (int64_t co = 0; co < c_out; ++co) {
      const int64_t go = color_group(co, c_out, groups, layout);
      const std::vector<int64_t>& ix = index_of(go);
      const scalar_t* a = sp + co * c_in * s_stride;
      scalar_t* d = dp + co * block;
      if (same) {
        std::vector<Word>& m = bits[go];
        if (m.empty()) {
          m.resize(block);
          for (int64_t e = 0; e < block; ++e) m[e] = ix[e] >= 0 ? static_cast<Word>(~Word(0)) : Word(0);
        }
        const Word* mp = m.data();
        for (int64_t e = 0; e < block; ++e) {
          Word w;
          std::memcpy(&w, a + e, sizeof(Word));
          w &= mp[e];
          std::memcpy(d + e, &w, sizeof(Word));
        }
      } else {
        const int64_t* ip = ix.data();
        for (int64_t e = 0; e < block; ++e) d[e] = ip[e] >= 0 ? a[ip[e]] : scalar_t(0);
      }
    }
  });
  return dst;
}

}  // namespace spn
