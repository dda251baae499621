// CPU kernel of decode_rows: whole rows of a slice sampled in one call (spec: decode_rows_ref in
// spn_kernels/ops/decode_rows/ref.py). Per position: every gated block's horizontal step, the channel head
// (categorical, or a discretised logistic mixture) channel by channel, the inverse-CDF draw and the cache writes; after each row, the vertical stacks. The sampler
// calls it once per slice, so no Python and no dispatcher run per sub-pixel.
//
// Matrix products: a plain loop for a few rows (where a BLAS call costs more in overhead than the arithmetic),
// at::addmm_out on the same memory (no copies) from kBlasRows rows on. Only O(L) shape checks run here: the
// sampler checks the full spec once per run (spn_kernels/ops/decode_rows/op.py: check).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "categorical_draw/draw.h"

namespace spn {
namespace {

// From this many rows on, a matrix product goes to BLAS (measured on x86-64 with 1 and 2 threads).
constexpr int64_t kBlasRows = 8;

template <typename T>
struct Mat {  // a row-major [rows, cols] matrix whose rows are `stride` elements apart
  T* p;
  int64_t rows, cols, stride;
};

template <typename T>
at::Tensor as_tensor(const Mat<T>& m, const at::TensorOptions& opt) {
  return at::from_blob(m.p, {m.rows, m.cols}, {m.stride, 1}, opt);
}

// y = init + x @ w, w contiguous [x.cols, y.cols]; init rows `init.stride` apart (0: one row broadcast).
template <typename T>
void mm(const Mat<T>& y, const Mat<T>& init, const Mat<T>& x, const T* w, const at::TensorOptions& opt) {
  const int64_t B = y.rows, K = x.cols, N = y.cols;
  if (B >= kBlasRows) {
    at::Tensor out = as_tensor(y, opt);
    // init may be y itself (an accumulation): then the same tensor, which addmm_out handles in place
    at::Tensor in = init.p == y.p ? out : init.stride == 0 ? at::from_blob(init.p, {N}, opt) : as_tensor(init, opt);
    at::addmm_out(out, in, as_tensor(x, opt), at::from_blob(const_cast<T*>(w), {K, N}, opt));
    return;
  }
  for (int64_t b = 0; b < B; ++b) {
    T* yb = y.p + b * y.stride;
    const T* xb = x.p + b * x.stride;
    if (init.p != y.p) std::memcpy(yb, init.p + b * init.stride, N * sizeof(T));
    for (int64_t k = 0; k < K; ++k) {
      const T a = xb[k];
      const T* wk = w + k * N;
      for (int64_t j = 0; j < N; ++j) yb[j] += a * wk[j];
    }
  }
}

// g[b] = tanh(hp[b, :d]) * sigmoid(hp[b, d:]) (+ res[b]), rows of hp 2d apart, of g and res their strides.
template <typename T>
void gate(const T* hp, T* g, int64_t gs, const T* res, int64_t rs, int64_t B, int64_t d) {
  for (int64_t b = 0; b < B; ++b) {
    const T* a = hp + b * 2 * d;
    T* gb = g + b * gs;
    for (int64_t j = 0; j < d; ++j) gb[j] = std::tanh(a[j]) / (T(1) + std::exp(-a[d + j]));
    if (res != nullptr) {
      for (int64_t j = 0; j < d; ++j) gb[j] += res[b * rs + j];
    }
  }
}

// log sigmoid(t) and log sigmoid(-t) from one exp and one log1p, both exact for either sign and for +-inf.
template <typename T>
void log_sigmoids(T t, T* lp, T* lm) {
  const T l = std::log1p(std::exp(-std::abs(t)));
  *lp = t >= T(0) ? -l : t - l;
  *lm = t >= T(0) ? -t - l : -l;
}

// Scratch floats mixture_row needs for M components and K bins.
inline int64_t mixture_work(int64_t M, int64_t K) { return 5 * M + 2 * M * (K + 1); }

// The K bin log-probabilities of channel c under a mixture of M discretised logistics (mixture_log_probs_ref in
// spn_kernels/ops/decode_rows/ref.py): raw [M*(3+C)], x [C] the pixel's scaled values (< c read), out [K];
// work: mixture_work(M, K) scratch. Bin k's mass is sigmoid(a) - sigmoid(b) with b its lower edge and a its upper
// edge, scaled; neighbouring bins share an edge, so each of the K - 1 inner edges of a component costs one exp and
// one log1p (log sigmoid of both signs), and the terms that do not depend on the bin are computed once.
template <typename T>
void mixture_row(const T* raw, const T* x, int64_t c, int64_t M, int64_t C, int64_t K, T lsmin, T* out, T* work) {
  const T inf = std::numeric_limits<T>::infinity();
  T *lw = work, *mu = work + M, *inv = work + 2 * M, *lwid = work + 3 * M, *v = work + 4 * M;
  T *lp = work + 5 * M, *lm = lp + M * (K + 1);  // [M, K + 1]: log sigmoid(+-edge j), edge j = bin j's lower edge
  T mx = -inf;
  for (int64_t m = 0; m < M; ++m) mx = (raw[m] > mx || std::isnan(raw[m])) ? raw[m] : mx;
  T se = 0;
  for (int64_t m = 0; m < M; ++m) se += std::exp(raw[m] - mx);
  const T lse = mx + std::log(se), half = T(1) / T(K);
  for (int64_t m = 0; m < M; ++m) {
    lw[m] = raw[m] - lse;
    T mean = raw[M + m];
    for (int64_t q = 0; q < c; ++q) mean += std::tanh(raw[3 * M + m * C + q]) * x[q];
    mu[m] = mean;
    const T ls = raw[2 * M + m] < lsmin ? lsmin : raw[2 * M + m];  // NaN stays NaN, as torch.clamp
    inv[m] = std::exp(-ls);
    lwid[m] = std::log(-std::expm1(-(2 * half * inv[m])));
    T* lpm = lp + m * (K + 1);
    T* lmm = lm + m * (K + 1);
    for (int64_t j = 1; j < K; ++j) {
      const T centre = (2 * T(j) + 1) / T(K) - 1;  // bin j's centre: its lower edge is centre - half
      log_sigmoids((centre - half - mean) * inv[m], lpm + j, lmm + j);
    }
  }
  for (int64_t k = 0; k < K; ++k) {
    const bool first = k == 0, last = k == K - 1;
    T best = -inf;
    for (int64_t m = 0; m < M; ++m) {
      // log sigmoid(a) with a the upper edge (+inf for the last bin), log sigmoid(-b) with b the lower (-inf first)
      const T la = last ? T(0) : lp[m * (K + 1) + k + 1];
      const T lb = first ? T(0) : lm[m * (K + 1) + k];
      v[m] = lw[m] + la + lb + (first || last ? T(0) : lwid[m]);
      best = (v[m] > best || std::isnan(v[m])) ? v[m] : best;
    }
    if (best == -inf) {
      out[k] = -inf;
      continue;
    }
    T sum = 0;
    for (int64_t m = 0; m < M; ++m) sum += std::exp(v[m] - best);
    out[k] = best + std::log(sum);
  }
}

template <typename T>
struct Block {  // one gated block's cache and packed weights (spn.cache.GatedBlockCache)
  T *v_in, *h_in, *row_term;
  const T *cond_v, *cond_h, *w_v, *w_h, *w_vh, *w_out, *b_out;
  int64_t c, d;
};

template <typename T>
struct Decoder {
  std::vector<Block<T>> blocks;
  int64_t B, n, p, k, Hp, Wp, C, Dh, K, M, outs;  // M: mixture components (0: categorical); outs: head outputs
  T lsmin;
  const T *head_inp, *head_bias, *levels;
  std::vector<const T*> prev, out_w, out_b;
  at::TensorOptions opt;
  // scratch
  std::vector<T> win, hp, g, h, h2, base, z, logits, lk;
  std::vector<double> cdf, dx, de;

  T* at(T* map, int64_t c, int64_t b, int64_t r, int64_t col) const { return map + ((b * Hp + r) * Wp + col) * c; }

  // Every block's horizontal step at (r, col): the last block's output into h [B, d].
  void horizontal(int64_t r, int64_t col) {
    T* hcur = h.data();
    T* hnext = h2.data();
    for (size_t i = 0; i < blocks.size(); ++i) {
      const Block<T>& bl = blocks[i];
      const int64_t c = bl.c, d = bl.d, len = k * c, wlen = (p + 1) * len;
      for (int64_t b = 0; b < B; ++b) {
        if (i > 0) std::memcpy(at(bl.h_in, c, b, p + r, p + col), hcur + b * c, c * sizeof(T));
        for (int64_t q = 0; q <= p; ++q) {
          std::memcpy(win.data() + b * wlen + q * len, at(bl.h_in, c, b, r + q, col), len * sizeof(T));
        }
      }
      mm<T>({hp.data(), B, 2 * d, 2 * d}, {bl.row_term + col * 2 * d, B, 2 * d, n * 2 * d}, {win.data(), B, wlen, wlen},
            bl.w_h, opt);
      gate(hp.data(), g.data(), d, static_cast<const T*>(nullptr), 0, B, d);
      mm<T>({hnext, B, d, d}, {const_cast<T*>(bl.b_out), B, d, 0}, {g.data(), B, d, d}, bl.w_out, opt);
      if (i > 0) {
        for (int64_t j = 0; j < B * d; ++j) hnext[j] += hcur[j];
      }
      std::swap(hcur, hnext);
    }
    if (hcur != h.data()) std::memcpy(h.data(), hcur, B * blocks.back().d * sizeof(T));
  }

  // The head and the draws of position (r, col): C sub-pixels from index i0.
  void head(int64_t r, int64_t col, int64_t i0, const double* u, double temp, int64_t* values, double* lp) {
    const int64_t d = blocks.back().d;
    T* pixels = blocks[0].h_in;
    mm<T>({base.data(), B, C * Dh, C * Dh}, {const_cast<T*>(head_bias), B, C * Dh, 0}, {h.data(), B, d, d}, head_inp,
          opt);
    for (int64_t ch = 0; ch < C; ++ch) {
      for (int64_t b = 0; b < B; ++b) std::memcpy(z.data() + b * Dh, base.data() + (b * C + ch) * Dh, Dh * sizeof(T));
      if (ch > 0) {  // the pixel's earlier channels, read from the cache
        mm<T>({z.data(), B, Dh, Dh}, {z.data(), B, Dh, Dh}, {at(pixels, C, 0, p + r, p + col), B, ch, Hp * Wp * C},
              prev[ch], opt);
      }
      for (int64_t j = 0; j < B * Dh; ++j) z[j] = z[j] > T(0) ? z[j] : (z[j] == z[j] ? T(0) : z[j]);  // NaN stays
      mm<T>({logits.data(), B, outs, outs}, {const_cast<T*>(out_b[ch]), B, outs, 0}, {z.data(), B, Dh, Dh}, out_w[ch],
            opt);
      const T* rows = logits.data();  // [B, K]: the categorical's logits, or the mixture's log-probabilities
      if (M > 0) {
        // rows are independent and each costs ~K*M transcendentals: worth the threads from two rows on
        at::parallel_for(0, B, 1, [&](int64_t b0, int64_t b1) {
          std::vector<T> work(mixture_work(M, K));
          for (int64_t b = b0; b < b1; ++b) {
            mixture_row(logits.data() + b * outs, at(pixels, C, b, p + r, p + col), ch, M, C, K, lsmin,
                        lk.data() + b * K, work.data());
          }
        });
        rows = lk.data();
      }
      const int64_t i = i0 + ch;
      if (B * K < draw::kVectorExp) {
        draw::draw_rows(rows, K, 1, u + i * B, 1, temp, B, K, values + i * B, lp + i * B, 1, cdf.data());
      } else {
        draw::draw_batch(rows, K, 1, u + i * B, 1, temp, B, K, values + i * B, lp + i * B, 1, dx.data(), de.data());
      }
      for (int64_t b = 0; b < B; ++b) at(pixels, C, b, p + r, p + col)[ch] = levels[values[i * B + b]];
    }
  }

  // The vertical stacks over the finished row r, preparing row r + 1's terms.
  void vertical(int64_t r) {
    std::vector<T> v, vnext;  // [B*n, d]: block i-1's output row
    for (size_t i = 0; i < blocks.size(); ++i) {
      const Block<T>& bl = blocks[i];
      const int64_t c = bl.c, d = bl.d, len = k * c, wlen = (p + 1) * len, rows = B * n;
      if (static_cast<int64_t>(vwin.size()) < rows * wlen) vwin.resize(rows * wlen);
      if (static_cast<int64_t>(vp.size()) < rows * 2 * d) vp.resize(rows * 2 * d);
      for (int64_t b = 0; b < B; ++b) {
        if (i > 0) std::memcpy(at(bl.v_in, c, b, p + r, p), v.data() + b * n * c, n * c * sizeof(T));
        for (int64_t col = 0; col < n; ++col) {
          for (int64_t q = 0; q <= p; ++q) {
            std::memcpy(vwin.data() + (b * n + col) * wlen + q * len, at(bl.v_in, c, b, r + q, col), len * sizeof(T));
          }
        }
      }
      mm<T>({vp.data(), rows, 2 * d, 2 * d}, {const_cast<T*>(bl.cond_v) + r * rows * 2 * d, rows, 2 * d, 2 * d},
            {vwin.data(), rows, wlen, wlen}, bl.w_v, opt);
      mm<T>({bl.row_term, rows, 2 * d, 2 * d}, {const_cast<T*>(bl.cond_h) + (r + 1) * rows * 2 * d, rows, 2 * d, 2 * d},
            {vp.data(), rows, 2 * d, 2 * d}, bl.w_vh, opt);
      if (i + 1 == blocks.size()) break;  // the last block's vertical output is read by nobody
      vnext.resize(rows * d);
      for (int64_t b = 0; b < B; ++b) {
        gate(vp.data() + b * n * 2 * d, vnext.data() + b * n * d, d,
             i > 0 ? at(bl.v_in, c, b, p + r, p) : static_cast<const T*>(nullptr), c, n, d);
      }
      std::swap(v, vnext);
    }
  }
  std::vector<T> vwin, vp;
};

template <typename T>
const T* ptr(const at::Tensor& t) {
  return t.data_ptr<T>();
}

void decode_rows_cpu(const at::Tensor& pixels, at::TensorList v_in, at::TensorList h_in, at::TensorList row_term,
                     at::TensorList cond_v, at::TensorList cond_h, at::TensorList w_v, at::TensorList w_h,
                     at::TensorList w_vh, at::TensorList w_out, at::TensorList b_out, const at::Tensor& head_inp,
                     const at::Tensor& head_bias, at::TensorList head_prev, at::TensorList head_out_w,
                     at::TensorList head_out_b, int64_t mixtures, double log_scale_min, const at::Tensor& levels,
                     const at::Tensor& u, double temperature,
                     const at::Tensor& values, const at::Tensor& log_p, int64_t row_start, int64_t row_end) {
  const int64_t L = static_cast<int64_t>(w_h.size());
  TORCH_CHECK_VALUE(L >= 1 && static_cast<int64_t>(v_in.size()) == L - 1 &&
                        static_cast<int64_t>(h_in.size()) == L - 1 && row_term.size() == w_h.size() &&
                        cond_v.size() == w_h.size() && cond_h.size() == w_h.size() && w_v.size() == w_h.size() &&
                        w_vh.size() == w_h.size() && w_out.size() == w_h.size() && b_out.size() == w_h.size(),
                    "decode_rows: the per-block lists must hold L >= 1 entries (v_in and h_in L - 1)");
  TORCH_CHECK_VALUE(pixels.dim() == 4 && pixels.is_contiguous() && row_term[0].dim() == 3,
                    "decode_rows: pixels must be contiguous [B, n+p, n+2p, C], got ", pixels.sizes());
  const int64_t C = pixels.size(3), n = row_term[0].size(1);
  TORCH_CHECK_VALUE(static_cast<int64_t>(head_prev.size()) == C && static_cast<int64_t>(head_out_w.size()) == C &&
                        static_cast<int64_t>(head_out_b.size()) == C,
                    "decode_rows: the head lists must hold C = ", C, " entries");
  TORCH_CHECK_VALUE(levels.dim() == 1 && mixtures >= 0 && head_out_w[0].dim() == 2 &&
                        head_out_w[0].size(1) == (mixtures > 0 ? mixtures * (3 + C) : levels.size(0)),
                    "decode_rows: head_out_w[0] must be [Dh, K] (categorical) or [Dh, M*(3+C)] (mixture)");
  TORCH_CHECK_VALUE(0 <= row_start && row_start < row_end && row_end <= n, "decode_rows: rows [", row_start, ", ",
                    row_end, ") are not inside 0..", n);
  TORCH_CHECK_VALUE(u.dim() == 2 && u.size(0) == n * n * C && u.size(1) == pixels.size(0) && u.is_contiguous() &&
                        values.sizes() == u.sizes() && log_p.sizes() == u.sizes() && values.is_contiguous() &&
                        log_p.is_contiguous(),
                    "decode_rows: u, values and log_p must be contiguous [n*n*C, B]");
  AT_DISPATCH_FLOATING_TYPES(pixels.scalar_type(), "decode_rows", [&] {
    using T = scalar_t;
    Decoder<T> dec;
    dec.B = pixels.size(0);
    dec.Hp = pixels.size(1);
    dec.Wp = pixels.size(2);
    dec.C = C;
    dec.n = n;
    dec.p = (dec.Wp - n) / 2;
    dec.k = 2 * dec.p + 1;
    dec.K = levels.size(0);
    dec.M = mixtures;
    dec.outs = head_out_w[0].size(1);
    dec.lsmin = static_cast<T>(log_scale_min);
    dec.Dh = head_out_w[0].size(0);
    dec.opt = pixels.options();
    dec.head_inp = ptr<T>(head_inp);
    dec.head_bias = ptr<T>(head_bias);
    dec.levels = ptr<T>(levels);
    int64_t wmax = 0, dmax = 0;
    for (int64_t i = 0; i < L; ++i) {
      T* vi = i == 0 ? pixels.data_ptr<T>() : v_in[i - 1].data_ptr<T>();
      T* hi = i == 0 ? pixels.data_ptr<T>() : h_in[i - 1].data_ptr<T>();
      const int64_t c = i == 0 ? C : h_in[i - 1].size(3), d = w_out[i].size(1);
      dec.blocks.push_back({vi, hi, row_term[i].data_ptr<T>(), ptr<T>(cond_v[i]), ptr<T>(cond_h[i]), ptr<T>(w_v[i]),
                            ptr<T>(w_h[i]), ptr<T>(w_vh[i]), ptr<T>(w_out[i]), ptr<T>(b_out[i]), c, d});
      wmax = std::max(wmax, (dec.p + 1) * dec.k * c);
      dmax = std::max(dmax, d);
    }
    for (int64_t ch = 0; ch < C; ++ch) {
      dec.prev.push_back(ptr<T>(head_prev[ch]));
      dec.out_w.push_back(ptr<T>(head_out_w[ch]));
      dec.out_b.push_back(ptr<T>(head_out_b[ch]));
    }
    const int64_t B = dec.B;
    dec.win.resize(B * wmax);
    dec.hp.resize(B * 2 * dmax);
    dec.g.resize(B * dmax);
    dec.h.resize(B * dmax);
    dec.h2.resize(B * dmax);
    dec.base.resize(B * C * dec.Dh);
    dec.z.resize(B * dec.Dh);
    dec.logits.resize(B * dec.outs);
    if (mixtures > 0) {
      dec.lk.resize(B * dec.K);
    }
    dec.cdf.resize(dec.K);
    if (B * dec.K >= draw::kVectorExp) {
      dec.dx.resize(B * dec.K);
      dec.de.resize(B * dec.K);
    }
    const double* pu = u.data_ptr<double>();
    int64_t* pv = values.data_ptr<int64_t>();
    double* plp = log_p.data_ptr<double>();
    for (int64_t r = row_start; r < row_end; ++r) {
      for (int64_t col = 0; col < n; ++col) {
        dec.horizontal(r, col);
        dec.head(r, col, (r * n + col) * C, pu, temperature, pv, plp);
      }
      if (r + 1 < n) dec.vertical(r);
    }
  });
}

}  // namespace
}  // namespace spn

TORCH_LIBRARY_IMPL(spn, CPU, m) { m.impl("decode_rows", &spn::decode_rows_cpu); }
