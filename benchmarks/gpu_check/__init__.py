"""GPU check: every spn op on every GPU backend against the references, the model (a training step against
backend="torch", the sampler), then timings against the torch references, in one budgeted run that survives
failures. Builds nothing: spn_kernels must be built (its CUDA C++ kernels are used where it was built with them).

    python -m benchmarks.gpu_check --out DIR --budget 420   # on a GPU: checks, then timings, within 420 s
    python -m benchmarks.gpu_check --tiny --out DIR         # checks only, tiny sizes; on CPU: TRITON_INTERPRET=1
    python -m benchmarks.gpu_check --list                   # the cases in run order, with their cost estimates

Every check and timing is one case, run isolated: an exception is recorded with its traceback and the next
case runs. Results stream into DIR/gpu_check.jsonl, one flushed JSON line per result (a first "machine" line,
a last "summary" line), and DIR/gpu_check.md gets the markdown table at the end. Cases run cheapest and most
important first (op checks, model checks, TF32 checks, kernel timings, model timings); with --budget, a case
whose estimated cost no longer fits is recorded as skipped, with the reason.

fp32 on CUDA: every case starts with TF32 off (exact: torch.backends.cuda.matmul.allow_tf32 and
torch.backends.cudnn.allow_tf32 False; the Triton kernels follow cudnn.allow_tf32) and is held to the exact
bound (2x the fp32 reference's error against float64, plus 2 ulps); the "tf32" checks turn TF32 on for the
kernel only and hold it to the exact bound plus 2^-9 times sum |a_i b_i| of each output.
"""

from .harness import Case, CheckResult, TimingResult, fp32_mode, run_cases
from .timings import time_conv, time_slices, time_step

__all__ = [
    "Case",
    "CheckResult",
    "TimingResult",
    "fp32_mode",
    "run_cases",
    "time_conv",
    "time_slices",
    "time_step",
]
