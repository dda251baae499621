"""masked_conv2d: the PixelCNN masked convolution, with its backward op masked_conv2d_backward.

ref.py     the pure-PyTorch reference: the spec, with the shapes
op.py      the public function (spn_kernels.masked_conv2d), its fake kernel, autograd and its backend choice
triton.py  the Triton kernel, its launcher and torch.ops.spn_triton.masked_conv2d (imported on first use)
C++:       csrc/masked_conv2d/cpu.cpp
Tests:     tests/ops/test_masked_conv2d.py
Benchmark: benchmarks/bench_masked_conv2d.py
"""
