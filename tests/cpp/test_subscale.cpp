// subscale_split / subscale_merge / slice_context / slice_scatter_ against strided ATen slicing.
#include <ATen/ATen.h>

#include <vector>

#include "check.h"

namespace spn_test {
namespace {

// x[..., i::s, j::s]
at::Tensor slice_of(const at::Tensor& x, int64_t s, int64_t i, int64_t j) {
  return x.slice(-2, i, x.size(-2), s).slice(-1, j, x.size(-1), s);
}

at::Tensor image(std::vector<int64_t> shape, at::ScalarType dtype, int64_t hi = 256) {
  if (at::isFloatingType(dtype)) return at::randn(shape, at::TensorOptions().dtype(dtype));
  return at::randint(0, hi, shape, at::TensorOptions().dtype(dtype));
}

void check_split_merge(const at::Tensor& x, int64_t s) {
  at::Tensor out = subscale_split(x, s);
  EXPECT(out.is_contiguous() && out.scalar_type() == x.scalar_type());
  EXPECT(out.size(1) == s * s);
  for (int64_t i = 0; i < s; ++i) {
    for (int64_t j = 0; j < s; ++j) EXPECT(at::equal(out.select(1, i * s + j), slice_of(x, s, i, j)));
  }
  at::Tensor back = subscale_merge(out);
  EXPECT(back.is_contiguous() && at::equal(back, x));
  // a non-contiguous stack: the same values with the last two axes stored transposed
  EXPECT(at::equal(subscale_merge(out.transpose(3, 4).contiguous().transpose(3, 4)), x));
}

void test_split_merge() {
  for (auto dtype : {at::kByte, at::kShort, at::kInt, at::kLong, at::kFloat, at::kDouble, at::kBool}) {
    at::Tensor x = dtype == at::kBool ? at::randint(0, 2, {2, 3, 6, 6}).to(at::kBool) : image({2, 3, 6, 6}, dtype);
    check_split_merge(x, 3);
    check_split_merge(x, 1);
    check_split_merge(x.contiguous(at::MemoryFormat::ChannelsLast), 2);
  }
  check_split_merge(image({1, 5, 14, 21}, at::kFloat), 7);
  check_split_merge(at::complex(at::randn({1, 2, 4, 4}, at::kDouble), at::randn({1, 2, 4, 4}, at::kDouble)), 2);
  // a strided view: every other column of a wider image
  at::Tensor wide = image({2, 2, 8, 12}, at::kInt);
  check_split_merge(wide.slice(3, 0, 12, 2), 2);
}

// the reference formula, computed with ATen ops in float32
at::Tensor context_expected(const at::Tensor& x, int64_t s, const at::Tensor& t, int64_t bits) {
  const int64_t B = x.size(0), C = x.size(1), h = x.size(2) / s, w = x.size(3) / s;
  at::Tensor out = at::zeros({B, s * s, C + 1, h, w}, at::kFloat);
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t k = 0; k < t[b].item<int64_t>(); ++k) {
      at::Tensor v = slice_of(x[b], s, k / s, k % s).to(at::kFloat);  // [C, h, w]
      out[b][k].narrow(0, 0, C).copy_((2 * v + 1) / static_cast<double>(int64_t{1} << bits) - 1);
      out[b][k][C].fill_(1);
    }
  }
  return out.reshape({B, s * s * (C + 1), h, w});
}

void test_slice_context() {
  for (auto dtype : {at::kByte, at::kChar, at::kShort, at::kInt, at::kLong}) {
    const int64_t bits = dtype == at::kByte ? 8 : dtype == at::kChar ? 7 : dtype == at::kShort ? 15 : 16;
    at::Tensor x = image({3, 2, 8, 12}, dtype, int64_t{1} << bits);
    at::Tensor t = at::tensor({0, 3, 4}, at::kLong);
    at::Tensor got = slice_context(x, 2, t, bits);
    EXPECT(got.scalar_type() == at::kFloat && got.is_contiguous());
    EXPECT(at::equal(got, context_expected(x, 2, t, bits)));  // exact in float32
    EXPECT(at::equal(slice_context(x.contiguous(at::MemoryFormat::ChannelsLast), 2, t, bits), got));
  }
  // t of another integer dtype is accepted; values out of [0, s*s] are not
  at::Tensor x = image({2, 1, 4, 4}, at::kByte);
  EXPECT(at::equal(slice_context(x, 2, at::tensor({1, 2}, at::kInt), 8),
                   slice_context(x, 2, at::tensor({1, 2}, at::kLong), 8)));
  EXPECT_VALUE_ERROR(slice_context(x, 2, at::tensor({0, 5}, at::kLong), 8), "t must be in [0, 4]");
  EXPECT_VALUE_ERROR(slice_context(x, 2, at::tensor({0}, at::kLong), 8), "t must have shape [B]");
  EXPECT_VALUE_ERROR(slice_context(x.to(at::kFloat), 2, at::tensor({0, 1}, at::kLong), 8), "integer image");
  EXPECT_VALUE_ERROR(slice_context(x, 2, at::tensor({0, 1}, at::kLong), 17), "bits must be in 1..16");
  EXPECT_VALUE_ERROR(slice_context(x, 3, at::tensor({0, 1}, at::kLong), 8), "divisible by s=3");
}

void test_slice_scatter() {
  for (auto dtype : {at::kByte, at::kLong, at::kFloat, at::kBFloat16}) {
    for (bool channels_last : {false, true}) {
      at::Tensor x = image({3, 2, 6, 9}, dtype);
      if (channels_last) x = x.contiguous(at::MemoryFormat::ChannelsLast);
      at::Tensor vals = image({3, 2, 2, 3}, dtype);
      at::Tensor t = at::tensor({0, 4, 8}, at::kLong);
      at::Tensor want = x.clone();
      for (int64_t b = 0; b < 3; ++b) {
        const int64_t k = t[b].item<int64_t>();
        slice_of(want[b], 3, k / 3, k % 3).copy_(vals[b]);
      }
      slice_scatter_(x, vals, 3, t);
      EXPECT(at::equal(x, want));
    }
  }
  // in place through a strided view: the untouched columns of the base stay as they were
  at::Tensor base = at::zeros({1, 1, 4, 8}, at::kInt);
  at::Tensor view = base.slice(3, 0, 8, 2);
  slice_scatter_(view, at::full({1, 1, 2, 2}, 7, at::kInt), 2, at::tensor({3}, at::kLong));
  EXPECT(base.sum().item<int64_t>() == 7 * 4 && base[0][0][1][2].item<int>() == 7);
  at::Tensor x = at::zeros({2, 1, 4, 4});
  EXPECT_VALUE_ERROR(slice_scatter_(x, at::zeros({2, 1, 2, 2}), 2, at::tensor({0, 4}, at::kLong)),
                     "t must be in [0, 3]");
  EXPECT_VALUE_ERROR(slice_scatter_(x, at::zeros({2, 1, 2, 3}), 2, at::tensor({0, 1}, at::kLong)),
                     "values must have shape (2, 1, 2, 2)");
  EXPECT_VALUE_ERROR(slice_scatter_(x, at::zeros({2, 1, 2, 2}, at::kDouble), 2, at::tensor({0, 1}, at::kLong)),
                     "dtype");
}

}  // namespace

void test_subscale_ops() {
  test_split_merge();
  test_slice_context();
  test_slice_scatter();
  EXPECT_VALUE_ERROR(subscale_split(at::zeros({1, 1, 5, 4}), 2), "divisible by s=2");
  EXPECT_VALUE_ERROR(subscale_split(at::zeros({1, 1, 4, 4}), 0), "s must be >= 1");
  EXPECT_VALUE_ERROR(subscale_merge(at::zeros({1, 3, 1, 2, 2})), "square");
}

}  // namespace spn_test
