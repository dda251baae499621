// The inverse-CDF draw of categorical_draw (spec: categorical_draw_ref in spn_kernels/ops/categorical_draw/ref.py),
// shared by csrc/categorical_draw/cpu.cpp and the fused sampler loop csrc/decode_rows/cpu.cpp.
#pragma once

#include <ATen/ATen.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

namespace spn {
namespace draw {

// From this many logits on, ATen's vectorised exp (a few dispatcher calls) beats the scalar loop.
constexpr int64_t kVectorExp = 2048;

// Row b of z (strides s0, s1) -> idx[b * si], lp[b * si]; cdf: scratch of K doubles.
template <typename T>
void draw_rows(const T* z, int64_t s0, int64_t s1, const double* u, int64_t su, double temp, int64_t B, int64_t K,
               int64_t* idx, double* lp, int64_t si, double* cdf) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  for (int64_t b = 0; b < B; ++b) {
    const T* row = z + b * s0;
    double m = -std::numeric_limits<double>::infinity();
    bool bad = false;
    for (int64_t j = 0; j < K; ++j) {
      const double v = static_cast<double>(row[j * s1]);
      bad |= std::isnan(v);
      m = v > m ? v : m;
    }
    if (bad || !std::isfinite(m)) {  // NaN, +inf, or only -inf: no distribution
      idx[b * si] = 0;
      lp[b * si] = nan;
      continue;
    }
    double total = 0.0, total1 = 0.0;
    for (int64_t j = 0; j < K; ++j) {
      const double x = static_cast<double>(row[j * s1]) - m;
      const double e = std::exp(temp == 1.0 ? x : x / temp);
      total += e;
      cdf[j] = total;
      if (temp != 1.0) total1 += std::exp(x);
    }
    const double target = u[b * su] * total;
    int64_t v = 0;
    while (v < K - 1 && cdf[v] < target) ++v;
    idx[b * si] = v;
    lp[b * si] = (static_cast<double>(row[v * s1]) - m) - std::log(temp == 1.0 ? total : total1);
  }
}

// Many rows at once: z - max per row into x (float64 [B, K]), the exponentials by one vectorised ATen call into e,
// then one scan per row. A row with a NaN or +inf logit, or only -inf logits, has no distribution.
template <typename T>
void draw_batch(const T* z, int64_t s0, int64_t s1, const double* u, int64_t su, double temp, int64_t B, int64_t K,
                int64_t* idx, double* lp, int64_t si, double* x, double* e) {
  const double inf = std::numeric_limits<double>::infinity();
  std::vector<char> bad(B);
  for (int64_t b = 0; b < B; ++b) {
    const T* row = z + b * s0;
    double* xb = x + b * K;
    double m = -inf;
    bool nan = false;
    for (int64_t j = 0; j < K; ++j) {
      xb[j] = static_cast<double>(row[j * s1]);
      nan |= std::isnan(xb[j]);
      m = xb[j] > m ? xb[j] : m;
    }
    bad[b] = nan || !std::isfinite(m);
    for (int64_t j = 0; j < K; ++j) {
      xb[j] -= m;
      e[b * K + j] = temp == 1.0 ? xb[j] : xb[j] / temp;
    }
  }
  const at::TensorOptions f64 = at::TensorOptions().dtype(at::kDouble);
  at::Tensor te = at::from_blob(e, {B * K}, f64);
  at::exp_(te);
  std::vector<double> e1;  // exp(x) at temperature 1, for the log-probabilities
  if (temp != 1.0) {
    e1.resize(B * K);
    at::Tensor te1 = at::from_blob(e1.data(), {B * K}, f64);
    at::exp_out(te1, at::from_blob(x, {B * K}, f64));
  }
  for (int64_t b = 0; b < B; ++b) {
    if (bad[b]) {
      idx[b * si] = 0;
      lp[b * si] = std::numeric_limits<double>::quiet_NaN();
      continue;
    }
    const double* eb = e + b * K;
    double acc[4] = {0.0, 0.0, 0.0, 0.0};  // four partial sums: the adds overlap instead of waiting on each other
    int64_t j = 0;
    for (; j + 4 <= K; j += 4) {
      for (int q = 0; q < 4; ++q) acc[q] += eb[j + q];
    }
    for (; j < K; ++j) acc[0] += eb[j];
    const double total = (acc[0] + acc[1]) + (acc[2] + acc[3]);
    const double target = u[b * su] * total;
    double run = 0.0;
    int64_t v = 0;
    for (; v < K - 1; ++v) {
      run += eb[v];
      if (!(run < target)) break;
    }
    double total1 = total;
    if (temp != 1.0) {
      total1 = 0.0;
      for (int64_t q = 0; q < K; ++q) total1 += e1[b * K + q];
    }
    idx[b * si] = v;
    lp[b * si] = x[b * K + v] - std::log(total1);
  }
}

// Draws one value per row of logits [B, K] (any strides) into idx, lp (contiguous [B]).
inline void draw_into(const at::Tensor& logits, const double* u, int64_t su, double temperature, int64_t* idx,
                      double* lp) {
  const int64_t B = logits.size(0), K = logits.size(1);
  std::vector<double> x(B * K < kVectorExp ? K : B * K), e(B * K < kVectorExp ? 0 : B * K);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, logits.scalar_type(), "categorical_draw", [&] {
    if (B * K < kVectorExp) {
      draw_rows(logits.data_ptr<scalar_t>(), logits.stride(0), logits.stride(1), u, su, temperature, B, K, idx, lp, 1,
                x.data());
    } else {
      draw_batch(logits.data_ptr<scalar_t>(), logits.stride(0), logits.stride(1), u, su, temperature, B, K, idx, lp, 1,
                 x.data(), e.data());
    }
  });
}

}  // namespace draw
}  // namespace spn
