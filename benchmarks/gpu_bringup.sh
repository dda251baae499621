#!/usr/bin/env bash
# First run on a fresh GPU machine, one command, inside 10 minutes: build the extension in place (no pip, no
# network), then gpu_check with what is left of the time. Everything goes to one folder:
#   machine.txt (GPU, driver, versions, commit), build.log, gpu_check.log, gpu_check.jsonl (one line per
#   result, streamed), gpu_check.md (the table), bringup.log (the timeline).
#
#   bash benchmarks/gpu_bringup.sh [OUT_DIR] [gpu_check flags...]
#   TOTAL_S=540 MAX_JOBS=16 bash benchmarks/gpu_bringup.sh bench-results/bringup
#   SKIP_BUILD=1 bash benchmarks/gpu_bringup.sh bench-results/timings --kind timing   # again, built already
#
# TOTAL_S (default 540) is the whole run, build included; gpu_check's budget is what the build leaves, less a
# margin, and a hard timeout sends it SIGINT so that it still writes its table. The exit status is gpu_check's
# (1: a check failed or a case raised), or 3 when the build failed.
set -uo pipefail
cd "$(dirname "$0")/.."
START=$(date +%s)
TOTAL_S=${TOTAL_S:-540}
OUT=${1:-bench-results/bringup-$(date +%Y%m%d-%H%M%S)}
shift $(($# > 0 ? 1 : 0))
mkdir -p "$OUT"
PY=${PYTHON:-$(command -v python || command -v python3)}
elapsed() { echo $(($(date +%s) - START)); }
log() { echo "[$(elapsed) s] $*" | tee -a "$OUT/bringup.log"; }

log "bring-up into $OUT (total ${TOTAL_S} s)"
{
    nvidia-smi || true
    "$PY" - <<'PYEOF'
import sys, torch
print("python", sys.version.split()[0], "torch", torch.__version__, "cuda", torch.version.cuda)
print("gpu", torch.cuda.get_device_name() if torch.cuda.is_available() else "none")
try:
    import triton
    print("triton", triton.__version__)
except ImportError:
    print("triton missing")
from torch.utils.cpp_extension import is_ninja_available
print("ninja", is_ninja_available())
PYEOF
    nvcc --version || true
    git rev-parse HEAD && git status --short
} >"$OUT/machine.txt" 2>&1
log "machine: $(grep -m1 '^gpu ' "$OUT/machine.txt"); $(grep -m1 '^python ' "$OUT/machine.txt")"

# The build: setup.py directly (no pip resolution); sm_90 only; nvcc jobs in parallel (ninja when present).
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0}
export MAX_JOBS=${MAX_JOBS:-$(nproc)}
export CUDA_HOME=${CUDA_HOME:-/usr/local/cuda}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
build() {
    SPN_BUILD_CUDA=$1 timeout "$2" "$PY" setup.py build_ext --inplace >>"$OUT/build.log" 2>&1
}
if [[ "${SKIP_BUILD:-0}" == 1 ]] && compgen -G "spn_kernels/_C*.so" >/dev/null; then
    log "build skipped (SKIP_BUILD=1, spn_kernels/_C is there)"
else
    log "build: CUDA extension, TORCH_CUDA_ARCH_LIST=$TORCH_CUDA_ARCH_LIST MAX_JOBS=$MAX_JOBS"
    if ! build 1 $((TOTAL_S / 2)); then
        # Without the CUDA C++ kernels every GPU op still runs Triton: build the CPU part and check that.
        log "CUDA build failed (tail of build.log below); building without CUDA C++"
        tail -n 30 "$OUT/build.log" | tee -a "$OUT/bringup.log"
        if ! build 0 $((TOTAL_S - $(elapsed) - 180)); then
            log "build failed; see $OUT/build.log"
            tail -n 30 "$OUT/build.log"
            exit 3
        fi
    fi
    log "build done"
fi
"$PY" -c "import spn_kernels; from spn_kernels._backend import CUDA_CPP_OPS as c; print('spn_kernels', spn_kernels.__file__, 'CUDA C++ ops:', sorted(c))" 2>&1 | tee -a "$OUT/bringup.log"

# gpu_check: budget = what is left, less ~40 s for its start-up, the table and the exit; the hard limit
# (SIGINT, then SIGKILL 15 s later) sits 15 s past the budget.
LEFT=$((TOTAL_S - $(elapsed)))
BUDGET=$((LEFT - 40))
if ((BUDGET < 30)); then
    log "no time left for gpu_check (${LEFT} s)"
    exit 3
fi
log "gpu_check: budget ${BUDGET} s"
timeout -s INT -k 15 $((BUDGET + 15)) "$PY" -m benchmarks.gpu_check --out "$OUT" --budget "$BUDGET" "$@" 2>&1 | tee "$OUT/gpu_check.log"
RC=${PIPESTATUS[0]}
log "gpu_check exit status $RC; results in $OUT (gpu_check.md, gpu_check.jsonl)"
exit "$RC"
