"""subscale_split: [B, C, H, W] -> [B, s*s, C, H/s, W/s], the s*s interleaved slices of an image.

ref.py     the pure-PyTorch reference: the spec, with the shapes
op.py      the public function (spn_kernels.subscale_split), its fake kernel and its backend choice
triton.py  the Triton kernel, its launcher and torch.ops.spn_triton.subscale_split (imported on first use)
C++:       csrc/subscale_split/cpu.cpp, csrc/subscale_split/subscale_split.cu (bound in csrc/cuda/binding.cpp)
Tests:     tests/ops/test_subscale_split.py
Benchmark: benchmarks/bench_subscale_split.py
"""
