// `import spn_kernels._C` loads this shared object, which runs the TORCH_LIBRARY registrations linked into
// it (csrc/ops.cpp, csrc/<op>/cpu.cpp, csrc/cuda/binding.cpp). The module itself is empty; PyInit__C exists
// only so that Python can import it. Kept apart from ops.cpp so CMake builds the ops without Python.
#include <Python.h>

extern "C" {
PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module_def);
}
}
