"""slice_context: integer image + slice index t -> the context network's float32 input.

ref.py     the pure-PyTorch reference: the spec, with the shapes
op.py      the public function (spn_kernels.slice_context), its fake kernel and its backend choice
triton.py  the Triton kernel, its launcher and torch.ops.spn_triton.slice_context (imported on first use)
C++:       csrc/slice_context/cpu.cpp, csrc/slice_context/slice_context.cu (bound in csrc/cuda/binding.cpp)
Tests:     tests/ops/test_slice_context.py
Benchmark: benchmarks/bench_slice_context.py
"""
