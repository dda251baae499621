"""slice_scatter_: writes slice t of an image, in place.

ref.py     the pure-PyTorch reference: the spec, with the shapes
op.py      the public function (spn_kernels.slice_scatter_), its fake kernel and its backend choice
triton.py  the Triton kernel, its launcher and torch.ops.spn_triton.slice_scatter_ (imported on first use)
C++:       csrc/slice_scatter_/cpu.cpp, csrc/slice_scatter_/slice_scatter_.cu (bound in csrc/cuda/binding.cpp)
Tests:     tests/ops/test_slice_scatter_.py
Benchmark: benchmarks/bench_slice_scatter_.py
"""
