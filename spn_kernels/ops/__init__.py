"""One folder per op, named after it: ref.py (the spec), op.py (the public function), triton.py (the Triton
kernel). spn_kernels re-exports the public functions; this package imports nothing, because a function bound
here under its op's name would hide the op's folder (``import spn_kernels.ops.<op>.ref as ref`` would fail)."""
