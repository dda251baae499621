"""categorical_draw: one inverse-CDF draw per row of logits, with its log-probability (the sampler's draw).

ref.py     the pure-PyTorch reference: the spec, with the shapes
op.py      the public function (spn_kernels.categorical_draw), its fake kernel and its backend choice
C++:       csrc/categorical_draw/cpu.cpp
Tests:     tests/ops/test_categorical_draw.py
"""
