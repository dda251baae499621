// The shift-GEMM plan of masked_conv2d's CPU kernel (csrc/masked_conv2d/cpu.cpp): the convolution as one
// matrix product per kept tap over the flat [C, H*W] image, with no padded copy and no im2col.
//
// A tap at image offset (dy, dx) reads x at flat position o + d, d = dy * W + dx, for output position o. Over
// the flat image that is one product W_t [C_out, C_in] @ x[:, lo + d : hi + d] into out[:, lo : hi] (lo, hi
// keep o + d inside the image), with both matrices read in place (leading dimension H * W). Rows shifted
// vertically are exact in the flat layout; a horizontal shift wraps: at the |dx| columns where w + dx leaves
// the row, the product read a pixel of the neighbouring row instead of the zero padding. Those "wrapped"
// outputs, (H - 1) * |dx| columns per tap, are saved before the product and written back after it: the tap's
// true contribution there is zero. So the forward and grad_x (the same products with the weight transposed and
// the shift reversed) multiply only kept taps, exactly, and non-finite inputs stay where the mask puts them.
//
// grad_w[t] = sum_b grad_out_b[:, lo:hi] @ x_b[:, lo + d : hi + d]^T sums the wrapped pairs too; their products
// are gathered and subtracted (one small product per tap over all images). A wrapped pair that is not finite
// leaves a NaN that no subtraction removes, so a grad_w that is not finite everywhere is recomputed row by row
// (one product per image, row and tap, over the row's valid columns only): a finite one is exact.
//
// Why: PixelCNN's (1, k) rows have few channels and wide images, where oneDNN's direct convolution pays for its
// blocked-layout reorders and costs as much with 2 taps as with 3 ((1, 3) "B"); the per-tap products are plain
// BLAS (benchmarks/RESULTS.md). The BLAS is the Fortran sgemm_/dgemm_ that the torch library exports (MKL in
// the x86 wheels), found at load time; where it is missing the caller keeps its oneDNN plans (have_blas).
#pragma once

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <vector>

extern "C" {
// Weak: resolved from the torch library when it exports a Fortran BLAS, null otherwise (LP64: 32-bit ints).
void sgemm_(const char* transa, const char* transb, const int* m, const int* n, const int* k, const float* alpha,
            const float* a, const int* lda, const float* b, const int* ldb, const float* beta, float* c,
            const int* ldc) __attribute__((weak));
void dgemm_(const char* transa, const char* transb, const int* m, const int* n, const int* k, const double* alpha,
            const double* a, const int* lda, const double* b, const int* ldb, const double* beta, double* c,
            const int* ldc) __attribute__((weak));
}

namespace spn {

inline bool have_blas(at::ScalarType t) {
  if (t == at::kFloat) return sgemm_ != nullptr;
  if (t == at::kDouble) return dgemm_ != nullptr;
  return false;
}

// Whether every BLAS dimension and leading dimension of a call on x [B, C, H, W] fits the LP64 interface.
inline bool blas_fits(int64_t c_in, int64_t c_out, int64_t h, int64_t w, int64_t batch) {
  const int64_t lim = std::numeric_limits<int>::max();
  return h * w < lim && c_in < lim && c_out < lim && batch * (h + 1) * w < lim;
}

// Row-major C [m, n] = alpha op(A) op(B) + beta C, op(A) [m, k], op(B) [k, n]; ta / tb: A / B stored
// transposed. Row-major C is column-major C^T = op(B)^T op(A)^T, hence the swapped operands.
template <typename T>
void gemm_rm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, T alpha, const T* a, int64_t lda, const T* b,
             int64_t ldb, T beta, T* c, int64_t ldc) {
  if (m == 0 || n == 0) return;
  const char tra = ta ? 'T' : 'N', trb = tb ? 'T' : 'N';
  const int im = static_cast<int>(m), in = static_cast<int>(n), ik = static_cast<int>(k);
  const int ilda = static_cast<int>(lda), ildb = static_cast<int>(ldb), ildc = static_cast<int>(ldc);
  if constexpr (std::is_same_v<T, float>) {
    sgemm_(&trb, &tra, &in, &im, &ik, &alpha, b, &ildb, a, &ilda, &beta, c, &ildc);
  } else {
    dgemm_(&trb, &tra, &in, &im, &ik, &alpha, b, &ildb, a, &ilda, &beta, c, &ildc);
  }
}

// A tap at image offset (dy, dx) over an H x W image: outputs [lo, hi) read o + d; wrapped: the outputs in
// [lo, hi) whose pixel w + dx lies outside the row. Empty (hi <= lo) when the tap never meets the image.
struct ShiftSpan {
  int64_t dy, dx, d, lo, hi;
  std::vector<int64_t> wrapped;
};

inline ShiftSpan shift_span(int64_t dy, int64_t dx, int64_t h, int64_t w) {
  ShiftSpan s{dy, dx, dy * w + dx, 0, 0, {}};
  if (dy <= -h || dy >= h || dx <= -w || dx >= w) return s;
  const int64_t n = h * w;
  s.lo = std::max<int64_t>(0, -s.d);
  s.hi = n - std::max<int64_t>(0, s.d);
  const int64_t w0 = dx < 0 ? 0 : w - dx, w1 = dx < 0 ? -dx : w;  // the columns a horizontal shift wraps
  for (int64_t r = 0; r < h && dx != 0; ++r) {
    for (int64_t c = w0; c < w1; ++c) {
      const int64_t o = r * w + c;
      if (o >= s.lo && o < s.hi) s.wrapped.push_back(o);
    }
  }
  return s;
}

// Work items: image b, pixels [p0, p1) of its flat image. With fewer images than threads each image splits into
// pixel ranges, one product per range and tap on its own thread, because the BLAS threads products this small
// poorly (one 64 x 64 image: 1.13x nn.Conv2d's time on 2 threads, against 0.76x on one).
struct ShiftWork {
  int64_t parts, items;  // ranges per image; items = batch * parts
  int64_t range(int64_t part, int64_t n_pix) const { return part * n_pix / parts; }
};

inline ShiftWork shift_work(int64_t batch, int64_t n_pix) {
  const int64_t nt = std::max<int64_t>(1, at::get_num_threads());
  const int64_t parts = batch >= nt ? 1 : std::max<int64_t>(1, std::min<int64_t>(n_pix, (nt + batch - 1) / batch));
  return {parts, batch * parts};
}

// fn(c, i0, i1) for chunk c of work items [i0, i1), the chunks on at::parallel_for's threads.
template <typename F>
void run_chunks(int64_t items, int64_t chunks, const F& fn) {
  if (chunks <= 1) return fn(int64_t(0), int64_t(0), items);
  at::parallel_for(0, chunks, 1, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) fn(c, c * items / chunks, (c + 1) * items / chunks);
  });
}

// dst_b [M, H*W] (+)= sum_t op(W_t) @ shift_t(src_b) for each image b: the forward (src = x, M = C_out, W_t as
// stored, shifts d) or grad_x (src = grad_out, M = C_in, W_t transposed, shifts -d). wp [T, C_out, C_in];
// init [M] or null: the value dst starts from (the bias), else zero.
template <typename T>
void shift_conv(const T* src, const T* wp, bool transpose_w, const std::vector<ShiftSpan>& spans, const T* init,
                T* dst, int64_t batch, int64_t c_src, int64_t m, int64_t n_pix, int64_t c_out, int64_t c_in) {
  // a full-image tap (d = 0) first, so that it overwrites dst (beta = 0) instead of a fill
  int64_t first = -1;
  for (size_t t = 0; t < spans.size(); ++t) {
    if (spans[t].d == 0 && first < 0) first = static_cast<int64_t>(t);
  }
  const ShiftWork work = shift_work(batch, n_pix);
  auto item = [&](int64_t i, std::vector<T>& saved) {
    const int64_t b = i / work.parts, p0 = work.range(i % work.parts, n_pix);
    const int64_t p1 = work.range(i % work.parts + 1, n_pix);
    const T* s = src + b * c_src * n_pix;
    T* o = dst + b * m * n_pix;
    bool filled = false;
    if (init != nullptr || first < 0) {
      for (int64_t r = 0; r < m; ++r) std::fill(o + r * n_pix + p0, o + r * n_pix + p1, init ? init[r] : T(0));
      filled = true;
    }
    auto run = [&](size_t t) {
      const ShiftSpan& sp = spans[t];
      const int64_t lo = std::max(sp.lo, p0), hi = std::min(sp.hi, p1);
      if (hi <= lo) return;
      const auto w0 = std::lower_bound(sp.wrapped.begin(), sp.wrapped.end(), lo);
      const auto w1 = std::lower_bound(w0, sp.wrapped.end(), hi);
      const int64_t nw = w1 - w0;
      saved.resize(m * nw);
      for (int64_t r = 0; r < m; ++r) {
        for (int64_t e = 0; e < nw; ++e) saved[r * nw + e] = o[r * n_pix + w0[e]];
      }
      const T* wt = wp + t * c_out * c_in;
      gemm_rm<T>(transpose_w, false, m, hi - lo, c_src, T(1), wt, c_in, s + lo + sp.d, n_pix,
                 filled ? T(1) : T(0), o + lo, n_pix);
      filled = true;
      for (int64_t r = 0; r < m; ++r) {
        for (int64_t e = 0; e < nw; ++e) o[r * n_pix + w0[e]] = saved[r * nw + e];
      }
    };
    if (first >= 0) run(static_cast<size_t>(first));
    for (size_t t = 0; t < spans.size(); ++t) {
      if (static_cast<int64_t>(t) != first) run(t);
    }
  };
  run_chunks(work.items, std::min<int64_t>(work.items, at::get_num_threads()), [&](int64_t, int64_t i0, int64_t i1) {
    std::vector<T> saved;
    for (int64_t i = i0; i < i1; ++i) item(i, saved);
  });
}

// gw [T, C_out, C_in] of the taps, row by row: exact for any input, and slow (file comment).
template <typename T>
void shift_grad_w_rows(const T* gy, const T* x, const std::vector<ShiftSpan>& spans, T* gw, int64_t batch,
                       int64_t c_out, int64_t c_in, int64_t h, int64_t w) {
  const int64_t n_pix = h * w;
  for (size_t t = 0; t < spans.size(); ++t) {
    const ShiftSpan& sp = spans[t];
    T* g_t = gw + static_cast<int64_t>(t) * c_out * c_in;
    std::fill(g_t, g_t + c_out * c_in, T(0));
    if (sp.hi <= sp.lo) continue;
    const int64_t c0 = std::max<int64_t>(0, -sp.dx), c1 = w - std::max<int64_t>(0, sp.dx);
    for (int64_t b = 0; b < batch; ++b) {
      for (int64_t r = std::max<int64_t>(0, -sp.dy); r < std::min<int64_t>(h, h - sp.dy); ++r) {
        const int64_t o = r * w + c0;
        gemm_rm<T>(false, true, c_out, c_in, c1 - c0, T(1), gy + b * c_out * n_pix + o, n_pix,
                   x + b * c_in * n_pix + o + sp.d, n_pix, T(1), g_t, c_in);
      }
    }
  }
}

// gw [T, C_out, C_in] = sum_b grad_out_b[:, lo:hi] @ x_b[:, lo + d : hi + d]^T less the wrapped pairs (row by row
// where that is not finite: file comment), and gb [C_out] (null: not asked) the sum of grad_out.
template <typename T>
void shift_grad_w(const T* gy, const T* x, const std::vector<ShiftSpan>& spans, T* gw, T* gb, int64_t batch,
                  int64_t c_out, int64_t c_in, int64_t h, int64_t w) {
  const int64_t n_pix = h * w;
  const int64_t n_taps = static_cast<int64_t>(spans.size()), wsize = n_taps * c_out * c_in;
  const ShiftWork work = shift_work(batch, n_pix);
  const int64_t chunks = std::max<int64_t>(1, std::min<int64_t>(work.items, at::get_num_threads()));
  // one partial sum per chunk of work items, summed at the end (no two threads write one buffer)
  std::vector<T> part(static_cast<size_t>(chunks * (wsize + c_out)), T(0));
  const std::vector<T> ones(static_cast<size_t>(gb ? n_pix : 0), T(1));
  run_chunks(work.items, chunks, [&](int64_t c, int64_t i0, int64_t i1) {
    T* pw = part.data() + c * (wsize + c_out);
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t b = i / work.parts, p0 = work.range(i % work.parts, n_pix);
      const int64_t p1 = work.range(i % work.parts + 1, n_pix);
      const T* g = gy + b * c_out * n_pix;
      const T* s = x + b * c_in * n_pix;
      for (int64_t t = 0; t < n_taps; ++t) {
        const int64_t lo = std::max(spans[t].lo, p0), hi = std::min(spans[t].hi, p1);
        if (hi <= lo) continue;
        gemm_rm<T>(false, true, c_out, c_in, hi - lo, T(1), g + lo, n_pix, s + lo + spans[t].d, n_pix, T(1),
                   pw + t * c_out * c_in, c_in);
      }
      if (gb) gemm_rm<T>(false, false, c_out, 1, p1 - p0, T(1), g + p0, n_pix, ones.data(), 1, T(1), pw + wsize, 1);
    }
  });
  std::fill(gw, gw + wsize, T(0));
  if (gb) std::fill(gb, gb + c_out, T(0));
  for (int64_t c = 0; c < chunks; ++c) {
    const T* pw = part.data() + c * (wsize + c_out);
    for (int64_t e = 0; e < wsize; ++e) gw[e] += pw[e];
    for (int64_t e = 0; gb && e < c_out; ++e) gb[e] += pw[wsize + e];
  }
  // the wrapped pairs of every image, gathered per tap into [C, B * n_wrapped], subtracted in one product
  std::vector<T> g_w, x_w;
  for (int64_t t = 0; t < n_taps; ++t) {
    const ShiftSpan& sp = spans[t];
    const int64_t nw = static_cast<int64_t>(sp.wrapped.size()), cols = batch * nw;
    if (sp.hi <= sp.lo || nw == 0) continue;
    g_w.resize(c_out * cols);
    x_w.resize(c_in * cols);
    for (int64_t b = 0; b < batch; ++b) {
      for (int64_t r = 0; r < c_out; ++r) {
        const T* g = gy + (b * c_out + r) * n_pix;
        for (int64_t e = 0; e < nw; ++e) g_w[r * cols + b * nw + e] = g[sp.wrapped[e]];
      }
      for (int64_t r = 0; r < c_in; ++r) {
        const T* s = x + (b * c_in + r) * n_pix + sp.d;
        for (int64_t e = 0; e < nw; ++e) x_w[r * cols + b * nw + e] = s[sp.wrapped[e]];
      }
    }
    gemm_rm<T>(false, true, c_out, c_in, cols, T(-1), g_w.data(), cols, x_w.data(), cols, T(1),
               gw + t * c_out * c_in, c_in);
  }
  for (int64_t e = 0; e < wsize; ++e) {
    if (!std::isfinite(gw[e])) return shift_grad_w_rows(gy, x, spans, gw, batch, c_out, c_in, h, w);
  }
}

}  // namespace spn
