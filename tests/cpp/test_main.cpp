// C++ tests of the spn ops through the dispatcher, without Python. Each check compares a kernel with a
// plain ATen computation of the same thing; the program exits non-zero on the first failure.
#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>

#include <cstdio>
#include <string>

#include "check.h"

static void test_schemas_registered() {
  for (const char* name : {"subscale_split", "subscale_merge", "slice_context", "slice_scatter_", "masked_conv2d",
                           "masked_conv2d_backward", "masked_conv2d_step"}) {
    const std::string full = std::string("spn::") + name;
    auto op = c10::Dispatcher::singleton().findSchema({full, ""});
    EXPECT(op.has_value());
    EXPECT(op->hasKernelForDispatchKey(c10::DispatchKey::CPU));  // every op has a C++ CPU kernel
  }
}

int main() {
  at::manual_seed(0);
  test_schemas_registered();
  spn_test::test_subscale_ops();
  spn_test::test_masked_conv();
  spn_test::test_masked_conv_step();
  std::printf("spn_cpp_tests: all passed\n");
  return 0;
}
