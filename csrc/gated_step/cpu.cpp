// CPU kernel of gated_step: every gated block's horizontal step at one position, in one call (spec: gated_step_ref
// in spn_kernels/ops/gated_step/ref.py). The two matrix products per block go to at::addmm (BLAS); the window
// gather, the gate, the residual and the cache write are plain loops. One call per pixel replaces ~8 Python-level
// ops per block. Only O(L) shape checks run here: the sampler checks the full spec once per run
// (spn_kernels/ops/gated_step/op.py: check).
#include <ATen/ATen.h>
#include <torch/library.h>

#include <cmath>
#include <cstring>

namespace spn {
namespace {

// From this many gate outputs on, three vectorised ATen calls cost less than the scalar loop (measured on x86-64).
constexpr int64_t kVectorGate = 512;

// g = tanh(hp[:, :d]) * sigmoid(hp[:, d:])
template <typename T>
void gate(const T* hp, T* g, int64_t B, int64_t d) {
  for (int64_t b = 0; b < B; ++b) {
    const T* a = hp + b * 2 * d;
    for (int64_t j = 0; j < d; ++j) {
      g[b * d + j] = std::tanh(a[j]) / (T(1) + std::exp(-a[d + j]));
    }
  }
}

template <typename T>
void gather_window(const T* x, T* win, int64_t B, int64_t Hp, int64_t Wp, int64_t c, int64_t row, int64_t col,
                   int64_t rows, int64_t k) {
  const int64_t len = k * c;  // one window row is contiguous in the channels-last map
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t r = 0; r < rows; ++r) {
      std::memcpy(win + (b * rows + r) * len, x + ((b * Hp + row + r) * Wp + col) * c, len * sizeof(T));
    }
  }
}

template <typename T>
void write_centre(T* x, const T* h, int64_t B, int64_t Hp, int64_t Wp, int64_t c, int64_t r, int64_t col) {
  for (int64_t b = 0; b < B; ++b) std::memcpy(x + ((b * Hp + r) * Wp + col) * c, h + b * c, c * sizeof(T));
}

at::Tensor gated_step_cpu(at::TensorList h_in, at::TensorList row_term, at::TensorList w_h, at::TensorList w_out,
                          at::TensorList b_out, int64_t row, int64_t col) {
  const int64_t L = static_cast<int64_t>(h_in.size());
  TORCH_CHECK_VALUE(L >= 1 && row_term.size() == h_in.size() && w_h.size() == h_in.size() &&
                        w_out.size() == h_in.size() && b_out.size() == h_in.size(),
                    "gated_step: every list must hold the same number >= 1 of blocks");
  TORCH_CHECK_VALUE(h_in[0].dim() == 4 && row_term[0].dim() == 3, "gated_step: h_in[0] must be 4-D and "
                    "row_term[0] 3-D, got ", h_in[0].sizes(), " and ", row_term[0].sizes());
  const int64_t B = h_in[0].size(0), Hp = h_in[0].size(1), Wp = h_in[0].size(2), n = row_term[0].size(1);
  const int64_t p = (Wp - n) / 2, k = 2 * p + 1;
  TORCH_CHECK_VALUE(0 <= row && row < n && 0 <= col && col < n, "gated_step: (row, col) = (", row, ", ", col,
                    ") is outside the ", n, " x ", n, " map");
  at::Tensor h;
  for (int64_t i = 0; i < L; ++i) {
    const at::Tensor& x = h_in[i];
    const int64_t c = x.size(3), d = w_out[i].size(1);
    TORCH_CHECK_VALUE(x.is_contiguous() && x.size(0) == B && x.size(1) == Hp && x.size(2) == Wp,
                      "gated_step: h_in[", i, "] must be contiguous [B, n+p, n+2p, c] like h_in[0], got ", x.sizes());
    TORCH_CHECK_VALUE(w_h[i].size(0) == (p + 1) * k * c && w_h[i].size(1) == 2 * d,
                      "gated_step: w_h[", i, "] must be [(p+1)*k*c, 2d] = [", (p + 1) * k * c, ", ", 2 * d,
                      "], got ", w_h[i].sizes());
    at::Tensor win = at::empty({B, (p + 1) * k * c}, x.options());
    AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "gated_step", [&] {
      if (i > 0) write_centre(x.data_ptr<scalar_t>(), h.data_ptr<scalar_t>(), B, Hp, Wp, c, p + row, p + col);
      gather_window(x.data_ptr<scalar_t>(), win.data_ptr<scalar_t>(), B, Hp, Wp, c, row, col, p + 1, k);
    });
    at::Tensor hp = at::addmm(row_term[i].select(1, col), win, w_h[i]).contiguous();  // [B, 2d]
    at::Tensor g;
    if (B * d >= kVectorGate) {  // ATen's vectorised tanh and sigmoid beat the scalar loop on large batches
      g = at::tanh(hp.narrow(1, 0, d)).mul_(at::sigmoid(hp.narrow(1, d, d)));
    } else {
      g = at::empty({B, d}, x.options());
      AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "gated_step", [&] {
        gate(hp.data_ptr<scalar_t>(), g.data_ptr<scalar_t>(), B, d);
      });
    }
    h = i == 0 ? at::addmm(b_out[i], g, w_out[i]) : at::addmm(h.add(b_out[i]), g, w_out[i]);  // + the residual
  }
  return h;
}

}  // namespace
}  // namespace spn

TORCH_LIBRARY_IMPL(spn, CPU, m) { m.impl("gated_step", &spn::gated_step_cpu); }
