// CPU kernel of categorical_draw: one inverse-CDF draw per row of logits, in float64, with the row's log-probability
// at temperature 1 (spec: categorical_draw_ref in spn_kernels/ops/categorical_draw/ref.py). One call per sub-pixel
// replaces the reference's ~10 small tensor ops; the rows are short (K = 2^bits), so a plain loop per row.
#include <ATen/ATen.h>
#include <torch/library.h>

#include <cmath>
#include <limits>
#include <tuple>
#include <vector>

namespace spn {
namespace {

// From this many logits on, ATen's vectorised exp (a few dispatcher calls) beats the scalar loop.
constexpr int64_t kVectorExp = 2048;

template <typename T>
void draw_rows(const T* z, int64_t s0, int64_t s1, const double* u, int64_t su, double temp, int64_t B, int64_t K,
               int64_t* idx, double* lp) {
  std::vector<double> cdf(K);
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
      idx[b] = 0;
      lp[b] = nan;
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
    idx[b] = v;
    lp[b] = (static_cast<double>(row[v * s1]) - m) - std::log(temp == 1.0 ? total : total1);
  }
}

// e: exp((z - max) / temperature) [B, K]; x: z - max [B, K]; log_total1: log sum exp(x) [B]. NaN anywhere in a
// row (a NaN or +inf logit, or only -inf logits, make x NaN) marks it as having no distribution.
void scan_rows(const double* e, const double* x, const double* log_total1, const double* u, int64_t su, int64_t B,
               int64_t K, int64_t* idx, double* lp) {
  for (int64_t b = 0; b < B; ++b) {
    const double* eb = e + b * K;
    double total = 0.0;
    for (int64_t j = 0; j < K; ++j) total += eb[j];
    if (std::isnan(total) || std::isnan(log_total1[b])) {
      idx[b] = 0;
      lp[b] = std::numeric_limits<double>::quiet_NaN();
      continue;
    }
    const double target = u[b * su] * total;
    double run = 0.0;
    int64_t v = 0;
    for (; v < K - 1; ++v) {
      run += eb[v];
      if (!(run < target)) break;
    }
    idx[b] = v;
    lp[b] = x[b * K + v] - log_total1[b];
  }
}

void draw_into(const at::Tensor& logits, const at::Tensor& u, double temperature, const at::Tensor& idx,
               const at::Tensor& lp) {
  TORCH_CHECK_VALUE(logits.dim() == 2 && logits.size(1) >= 1, "categorical_draw: logits must be [B, K], K >= 1, got ",
                    logits.sizes());
  const int64_t B = logits.size(0), K = logits.size(1);
  TORCH_CHECK_VALUE(u.dim() == 1 && u.size(0) == B && u.scalar_type() == at::kDouble,
                    "categorical_draw: u must be float64 [", B, "], got ", u.scalar_type(), " ", u.sizes());
  TORCH_CHECK_VALUE(idx.dim() == 1 && idx.size(0) == B && idx.scalar_type() == at::kLong && idx.is_contiguous(),
                    "categorical_draw: values must be contiguous int64 [", B, "], got ", idx.scalar_type(), " ",
                    idx.sizes());
  TORCH_CHECK_VALUE(lp.dim() == 1 && lp.size(0) == B && lp.scalar_type() == at::kDouble && lp.is_contiguous(),
                    "categorical_draw: log_p must be contiguous float64 [", B, "], got ", lp.scalar_type(), " ",
                    lp.sizes());
  TORCH_CHECK_VALUE(temperature > 0 && std::isfinite(temperature),
                    "categorical_draw: temperature must be a finite number > 0, got ", temperature);
  if (B * K < kVectorExp) {
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, logits.scalar_type(), "categorical_draw", [&] {
      draw_rows(logits.data_ptr<scalar_t>(), logits.stride(0), logits.stride(1), u.data_ptr<double>(), u.stride(0),
                temperature, B, K, idx.data_ptr<int64_t>(), lp.data_ptr<double>());
    });
    return;
  }
  // Many rows: the exponentials through ATen's vectorised exp, then the same scan per row.
  const at::Tensor z = logits.to(at::kDouble);
  const at::Tensor x = z - z.amax(1, true);
  const at::Tensor e = (temperature == 1.0 ? x : x / temperature).exp().contiguous();
  const at::Tensor e1 = temperature == 1.0 ? e : x.exp();
  const at::Tensor log_total1 = e1.sum(1).log_().contiguous();
  const at::Tensor xc = x.contiguous();
  scan_rows(e.data_ptr<double>(), xc.data_ptr<double>(), log_total1.data_ptr<double>(), u.data_ptr<double>(),
            u.stride(0), B, K, idx.data_ptr<int64_t>(), lp.data_ptr<double>());
}

std::tuple<at::Tensor, at::Tensor> categorical_draw_cpu(const at::Tensor& logits, const at::Tensor& u,
                                                        double temperature) {
  const int64_t B = logits.dim() >= 1 ? logits.size(0) : 0;
  at::Tensor idx = at::empty({B}, logits.options().dtype(at::kLong));
  at::Tensor lp = at::empty({B}, logits.options().dtype(at::kDouble));
  draw_into(logits, u, temperature, idx, lp);
  return {idx, lp};
}

void categorical_draw__cpu(const at::Tensor& logits, const at::Tensor& u, double temperature, const at::Tensor& values,
                           const at::Tensor& log_p) {
  draw_into(logits, u, temperature, values, log_p);
}

}  // namespace
}  // namespace spn

TORCH_LIBRARY_IMPL(spn, CPU, m) {
  m.impl("categorical_draw", &spn::categorical_draw_cpu);
  m.impl("categorical_draw_", &spn::categorical_draw__cpu);
}
