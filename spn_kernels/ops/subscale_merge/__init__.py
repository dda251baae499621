"""subscale_merge: [B, s*s, C, h, w] -> [B, C, h*s, w*s], the inverse of subscale_split.

ref.py     the pure-PyTorch reference: the spec, with the shapes
op.py      the public function (spn_kernels.subscale_merge), its fake kernel and its backend choice
triton.py  the Triton kernel, its launcher and torch.ops.spn_triton.subscale_merge (imported on first use)
C++:       csrc/subscale_merge/cpu.cpp, csrc/subscale_merge/subscale_merge.cu (bound in csrc/cuda/binding.cpp)
Tests:     tests/ops/test_subscale_merge.py
Benchmark: benchmarks/bench_subscale_merge.py
"""
