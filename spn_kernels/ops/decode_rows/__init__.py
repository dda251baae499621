"""decode_rows: whole rows of a slice sampled in one call, the sampler's inner loop (decoder, head, draw, writes).

ref.py     the pure-PyTorch reference: the spec, with the shapes
op.py      the public function (spn_kernels.decode_rows), its checks (once per sampling run), its fake kernel and
           its backend choice
C++:       csrc/decode_rows/cpu.cpp
Tests:     tests/ops/test_decode_rows.py
"""
