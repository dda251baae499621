"""gated_step: every gated PixelCNN block's horizontal step at one position, in one call (the sampler's decoder step).

ref.py     the pure-PyTorch reference: the spec, with the shapes
op.py      the public function (spn_kernels.gated_step), its checks, its fake kernel and its backend choice
C++:       csrc/gated_step/cpu.cpp
Tests:     tests/ops/test_gated_step.py
"""
