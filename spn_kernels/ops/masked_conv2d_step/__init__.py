"""masked_conv2d_step: the sampler's cached step of masked_conv2d.

ref.py     the pure-PyTorch reference: the spec, with the shapes
op.py      the public function (spn_kernels.masked_conv2d_step), its fake kernel and its backend choice
triton.py  the Triton kernel, its launcher and torch.ops.spn_triton.masked_conv2d_step (imported on first use)
C++:       csrc/masked_conv2d_step/cpu.cpp, csrc/masked_conv2d_step/masked_conv2d_step.cu
           (bound in csrc/cuda/binding.cpp)
Tests:     tests/ops/test_masked_conv2d_step.py
Benchmark: benchmarks/bench_masked_conv2d_step.py
"""
