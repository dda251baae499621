// Tiny test support for the C++ tests (no GoogleTest dependency): EXPECT exits non-zero on the first
// failure, and typed handles call the spn ops through the dispatcher exactly as Python does.
#pragma once

#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>

#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>

#define EXPECT(cond)                                                                \
  do {                                                                              \
    if (!(cond)) {                                                                  \
      std::fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
      std::exit(1);                                                                 \
    }                                                                               \
  } while (0)

// Runs stmt and checks that it throws c10::ValueError (Python's ValueError) whose message has `needle`.
#define EXPECT_VALUE_ERROR(stmt, needle)                                                               \
  do {                                                                                                 \
    bool raised = false;                                                                               \
    try {                                                                                              \
      stmt;                                                                                            \
    } catch (const c10::ValueError& e) {                                                               \
      raised = std::string(e.what()).find(needle) != std::string::npos;                                \
      if (!raised) std::fprintf(stderr, "%s:%d: unexpected message: %s\n", __FILE__, __LINE__, e.what()); \
    }                                                                                                  \
    EXPECT(raised);                                                                                    \
  } while (0)

namespace spn_test {

template <typename Sig>
c10::TypedOperatorHandle<Sig> op(const char* name) {
  return c10::Dispatcher::singleton().findSchemaOrThrow((std::string("spn::") + name).c_str(), "").typed<Sig>();
}

inline at::Tensor subscale_split(const at::Tensor& x, int64_t s) {
  return op<at::Tensor(const at::Tensor&, int64_t)>("subscale_split").call(x, s);
}
inline at::Tensor subscale_merge(const at::Tensor& slices) {
  return op<at::Tensor(const at::Tensor&)>("subscale_merge").call(slices);
}
inline at::Tensor slice_context(const at::Tensor& x, int64_t s, const at::Tensor& t, int64_t bits) {
  return op<at::Tensor(const at::Tensor&, int64_t, const at::Tensor&, int64_t)>("slice_context").call(x, s, t, bits);
}
inline void slice_scatter_(at::Tensor& x, const at::Tensor& values, int64_t s, const at::Tensor& t) {
  op<void(at::Tensor&, const at::Tensor&, int64_t, const at::Tensor&)>("slice_scatter_").call(x, values, s, t);
}
inline at::Tensor masked_conv2d(const at::Tensor& x, const at::Tensor& w, const std::optional<at::Tensor>& b,
                                std::string_view mask_type, int64_t groups, std::string_view layout = "blocked") {
  return op<at::Tensor(const at::Tensor&, const at::Tensor&, const std::optional<at::Tensor>&, std::string_view,
                       int64_t, std::string_view)>("masked_conv2d")
      .call(x, w, b, mask_type, groups, layout);
}
inline std::tuple<at::Tensor, at::Tensor, at::Tensor> masked_conv2d_backward(const at::Tensor& gy, const at::Tensor& x,
                                                                             const at::Tensor& w,
                                                                             std::string_view mask_type, int64_t groups,
                                                                             c10::List<bool> output_mask,
                                                                             std::string_view layout = "blocked") {
  return op<std::tuple<at::Tensor, at::Tensor, at::Tensor>(const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                                           std::string_view, int64_t, c10::List<bool>,
                                                           std::string_view)>("masked_conv2d_backward")
      .call(gy, x, w, mask_type, groups, output_mask, layout);
}
inline at::Tensor masked_conv2d_step(at::Tensor& cache, const std::optional<at::Tensor>& x_new, const at::Tensor& w,
                                     const std::optional<at::Tensor>& b, int64_t row, int64_t col,
                                     std::string_view mask_type, int64_t groups,
                                     std::string_view layout = "blocked") {
  return op<at::Tensor(at::Tensor&, const std::optional<at::Tensor>&, const at::Tensor&,
                       const std::optional<at::Tensor>&, int64_t, int64_t, std::string_view, int64_t,
                       std::string_view)>("masked_conv2d_step")
      .call(cache, x_new, w, b, row, col, mask_type, groups, layout);
}

// max |a - b| <= atol + rtol * max |b|
inline bool close(const at::Tensor& a, const at::Tensor& b, double atol, double rtol) {
  if (a.sizes() != b.sizes() || a.scalar_type() != b.scalar_type()) return false;
  if (a.numel() == 0) return true;
  const double err = (a.to(at::kDouble) - b.to(at::kDouble)).abs().max().item<double>();
  const double scale = b.to(at::kDouble).abs().max().item<double>();
  if (err > atol + rtol * scale) std::fprintf(stderr, "max error %.3e (scale %.3e)\n", err, scale);
  return err <= atol + rtol * scale;
}

void test_subscale_ops();
void test_masked_conv();
void test_masked_conv_step();

}  // namespace spn_test
