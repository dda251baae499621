// CPU kernel of categorical_draw: one inverse-CDF draw per row of logits, in float64, with the row's log-probability
// at temperature 1 (spec: categorical_draw_ref in spn_kernels/ops/categorical_draw/ref.py). One call per sub-pixel
// replaces the reference's ~10 small tensor ops; the rows are short (K = 2^bits), so a plain loop per row.
#include <ATen/ATen.h>
#include <torch/library.h>

#include <cmath>
#include <tuple>

#include "categorical_draw/draw.h"

namespace spn {
namespace {

void draw_into(const at::Tensor& logits, const at::Tensor& u, double temperature, const at::Tensor& idx,
               const at::Tensor& lp) {
  TORCH_CHECK_VALUE(logits.dim() == 2 && logits.size(1) >= 1, "categorical_draw: logits must be [B, K], K >= 1, got ",
                    logits.sizes());
  const int64_t B = logits.size(0);
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
  draw::draw_into(logits, u.data_ptr<double>(), u.stride(0), temperature, idx.data_ptr<int64_t>(),
                  lp.data_ptr<double>());
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
