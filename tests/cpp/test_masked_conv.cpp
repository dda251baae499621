// masked_conv2d, masked_conv2d_backward and masked_conv2d_step against a full-kernel ATen convolution with
// the masked weight (the definition in spn_kernels/ops/masked_conv2d/ref.py), in float64 so that only rounding
// differs.
#include <ATen/ATen.h>

#include <string>
#include <vector>

#include "check.h"

namespace spn_test {
namespace {

// The 0/1 mask [c_out, c_in, k, k], written tap by tap from the rule in ref.py's module docstring.
at::Tensor mask_of(int64_t c_out, int64_t c_in, int64_t k, char mt, int64_t g) {
  const int64_t p = k / 2;
  at::Tensor m = at::zeros({c_out, c_in, k, k}, at::kDouble);
  auto a = m.accessor<double, 4>();
  for (int64_t o = 0; o < c_out; ++o) {
    for (int64_t i = 0; i < c_in; ++i) {
      const int64_t go = o / (c_out / g), gi = i / (c_in / g);
      for (int64_t y = 0; y < k; ++y) {
        for (int64_t x = 0; x < k; ++x) {
          bool keep = y < p || (y == p && x < p) || (y == p && mt == 'V');
          if (y == p && x == p && mt != 'V') keep = mt == 'A' ? gi < go : gi <= go;
          a[o][i][y][x] = keep ? 1.0 : 0.0;
        }
      }
    }
  }
  return m;
}

struct Case {
  int64_t B, ci, co, H, W, k;
  char mt;
  int64_t g;
};

const std::vector<Case> kCases = {
    {1, 1, 1, 5, 5, 3, 'A', 1}, {2, 3, 8, 7, 7, 3, 'B', 1},  {1, 4, 4, 11, 13, 5, 'V', 1}, {3, 6, 9, 7, 5, 5, 'A', 3},
    {2, 6, 6, 9, 9, 7, 'B', 3}, {1, 5, 7, 3, 3, 7, 'B', 1},  {2, 16, 16, 8, 8, 1, 'B', 1}, {2, 6, 6, 4, 6, 1, 'A', 3},
};

void test_forward_backward() {
  for (const Case& c : kCases) {
    const std::string mt(1, c.mt);
    at::Tensor x = at::randn({c.B, c.ci, c.H, c.W}, at::kDouble);
    at::Tensor w = at::randn({c.co, c.ci, c.k, c.k}, at::kDouble);
    at::Tensor b = at::randn({c.co}, at::kDouble);
    at::Tensor mask = mask_of(c.co, c.ci, c.k, c.mt, c.g);
    const int64_t p = c.k / 2;
    at::Tensor want = at::conv2d(x, w * mask, b, 1, p);
    EXPECT(close(masked_conv2d(x, w, b, mt, c.g), want, 1e-12, 1e-12));
    EXPECT(close(masked_conv2d(x.contiguous(at::MemoryFormat::ChannelsLast), w, std::nullopt, mt, c.g),
                 at::conv2d(x, w * mask, {}, 1, p), 1e-12, 1e-12));
    // float32 agrees with the float64 result to float32 rounding
    EXPECT(close(masked_conv2d(x.to(at::kFloat), w.to(at::kFloat), b.to(at::kFloat), mt, c.g), want.to(at::kFloat),
                 1e-4, 1e-5));

    at::Tensor gy = at::randn_like(want);
    auto full = at::convolution_backward(gy, x, w * mask, std::vector<int64_t>{c.co}, {1, 1}, {p, p}, {1, 1}, false,
                                         {0, 0}, 1, {true, true, true});
    auto [gx, gw, gb] = masked_conv2d_backward(gy, x, w, mt, c.g, c10::List<bool>({true, true, true}));
    EXPECT(close(gx, std::get<0>(full), 1e-12, 1e-12));
    EXPECT(close(gw, std::get<1>(full) * mask, 1e-12, 1e-12));
    EXPECT(at::equal(gw.masked_select(mask == 0), at::zeros({(mask == 0).sum().item<int64_t>()}, at::kDouble)));
    EXPECT(close(gb, std::get<2>(full), 1e-12, 1e-12));
    EXPECT(gx.is_contiguous() && gw.is_contiguous());
    // entries not asked for come back empty
    auto [gx2, gw2, gb2] = masked_conv2d_backward(gy, x, w, mt, c.g, c10::List<bool>({false, true, false}));
    EXPECT(gx2.numel() == 0 && gb2.numel() == 0 && close(gw2, gw, 0, 0));
  }
}

void test_conv_bad_input() {
  at::Tensor x = at::zeros({2, 3, 7, 7});
  at::Tensor w = at::zeros({6, 3, 3, 3});
  EXPECT_VALUE_ERROR(masked_conv2d(x, at::zeros({6, 3, 4, 5}), {}, "B", 1), "kernel height must be one of 5");
  EXPECT_VALUE_ERROR(masked_conv2d(x, at::zeros({6, 3, 1, 4}), {}, "B", 1), "width must be odd");
  EXPECT_VALUE_ERROR(masked_conv2d(x, w, {}, "B", 1, "rgb"), "color_layout must be one of");
  EXPECT(masked_conv2d(x, at::zeros({7, 3, 1, 3}), {}, "A", 3, "interleaved").size(1) == 7);
  EXPECT_VALUE_ERROR(masked_conv2d(x, at::zeros({6, 3, 4, 4}), {}, "B", 1), "odd");
  EXPECT_VALUE_ERROR(masked_conv2d(x, w, {}, "C", 1), "mask_type must be one of");
  EXPECT_VALUE_ERROR(masked_conv2d(x, at::zeros({4, 3, 3, 3}), {}, "B", 3), "divisible by color_groups=3");
  EXPECT_VALUE_ERROR(masked_conv2d(x, w, {}, "V", 3), "mask 'V' needs 1");
  EXPECT_VALUE_ERROR(masked_conv2d(at::zeros({2, 5, 7, 7}), w, {}, "B", 1), "x has 5 channels");
  EXPECT_VALUE_ERROR(masked_conv2d(x, w.to(at::kDouble), {}, "B", 1), "dtype");
  EXPECT_VALUE_ERROR(masked_conv2d(x, w, at::zeros({5}), "B", 1), "bias must have shape [C_out]");
  EXPECT_VALUE_ERROR(masked_conv2d_backward(at::zeros({2, 6, 7, 6}), x, w, "B", 1, c10::List<bool>({true, true, true})),
                     "grad_out must have shape");
}

}  // namespace

void test_masked_conv() {
  test_forward_backward();
  test_conv_bad_input();
}

void test_masked_conv_step() {
  // Stepping through every position in raster order (rows for V) reproduces the full convolution, and the
  // cache ends equal to the input.
  for (const Case& c : kCases) {
    const std::string mt(1, c.mt);
    at::Tensor x = at::randn({c.B, c.ci, c.H, c.W}, at::kDouble);
    at::Tensor w = at::randn({c.co, c.ci, c.k, c.k}, at::kDouble);
    at::Tensor b = at::randn({c.co}, at::kDouble);
    at::Tensor full = at::conv2d(x, w * mask_of(c.co, c.ci, c.k, c.mt, c.g), b, 1, c.k / 2);
    at::Tensor cache = at::zeros_like(x).contiguous(at::MemoryFormat::ChannelsLast);  // strided cache
    for (int64_t r = 0; r < c.H; ++r) {
      if (c.mt == 'V') {
        at::Tensor out = masked_conv2d_step(cache, x.select(2, r), w, b, r, 0, mt, c.g);
        EXPECT(out.is_contiguous() && close(out, full.select(2, r), 1e-12, 1e-12));
        continue;
      }
      for (int64_t col = 0; col < c.W; ++col) {
        at::Tensor out = masked_conv2d_step(cache, x.select(2, r).select(2, col), w, b, r, col, mt, c.g);
        EXPECT(out.is_contiguous() && close(out, full.select(2, r).select(2, col), 1e-12, 1e-12));
      }
    }
    EXPECT(at::equal(cache, x));
    // without x_new the cache is left alone; float32 and bfloat16 accumulate in float32
    at::Tensor before = cache.clone();
    const int64_t r = c.H / 2, col = c.W / 2;
    at::Tensor want = full.select(2, r);
    if (c.mt != 'V') want = want.select(2, col);
    at::Tensor out32 = masked_conv2d_step(cache, std::nullopt, w, b, r, col, mt, c.g);
    EXPECT(at::equal(cache, before) && close(out32, want, 1e-12, 1e-12));
    at::Tensor cache32 = cache.to(at::kFloat);
    EXPECT(close(masked_conv2d_step(cache32, std::nullopt, w.to(at::kFloat), b.to(at::kFloat), r, col, mt, c.g),
                 want.to(at::kFloat), 1e-4, 1e-5));
  }
  at::Tensor cache = at::zeros({2, 3, 7, 7});
  at::Tensor w = at::zeros({6, 3, 3, 3});
  EXPECT_VALUE_ERROR(masked_conv2d_step(cache, std::nullopt, w, {}, 7, 0, "B", 1), "row must be in [0, 7)");
  EXPECT_VALUE_ERROR(masked_conv2d_step(cache, std::nullopt, w, {}, 0, -1, "B", 1), "col must be in [0, 7)");
  EXPECT_VALUE_ERROR(masked_conv2d_step(cache, at::zeros({2, 4}), w, {}, 0, 0, "B", 1), "x_new must have shape (2, 3)");
  EXPECT_VALUE_ERROR(masked_conv2d_step(cache, at::zeros({2, 3}), w, {}, 0, 0, "V", 1),
                     "x_new must have shape (2, 3, 7)");
  at::Tensor cache4 = at::zeros({2, 4, 7, 7});
  EXPECT_VALUE_ERROR(masked_conv2d_step(cache4, std::nullopt, w, {}, 0, 0, "B", 1), "cache has 4 channels");
}

}  // namespace spn_test
