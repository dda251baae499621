"""Compiles every Triton kernel for real GPUs (sm_90 and sm_80), for every configuration its launcher can pick.

The interpreter accepts what the compiler rejects (tl.dot with K < 16, shared memory over the limit, layout
errors), so CI also compiles. No GPU is needed: triton.compile(ASTSource(...), target=GPUTarget(...)) emits
PTX and cubin here. The cases are not a second copy of the launch code: each launcher is split into a pure
plan function (spn_kernels/_triton_launch.py: Launch), and the cases call those same plan functions on meta
tensors, for each entry of the op's config table and each tl.dot precision the launcher can pick ("tf32" or
"ieee" for fp32 tiles: torch.backends.cudnn.allow_tf32). The plan's kernel, arguments, constexprs and
num_warps/num_stages are compiled, with the argument specialisation the runtime would apply (ints equal to 1
as constexprs, 16-byte divisibility).

Run in a subprocess with TRITON_INTERPRET unset (tests/conftest.py sets it to 1, which turns @triton.jit
into the interpreter): `python -m tests.ops.test_triton_compile 90 80` (the test runs one process per architecture,
side by side).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
import torch

_TY = {
    torch.float32: "fp32",
    torch.float16: "fp16",
    torch.bfloat16: "bf16",
    torch.float64: "fp64",
    torch.uint8: "u8",
    torch.int8: "i8",
    torch.int16: "i16",
    torch.int32: "i32",
    torch.int64: "i64",
}
META = torch.device("meta")


def _precisions(dtype):
    """The tl.dot precisions a launcher can pick for tiles of ``dtype`` on a GPU (dot_precision)."""
    return ("tf32", "ieee") if dtype == torch.float32 else ("ieee",)


def _cases():
    """(name, thunk) pairs; each thunk returns the Launch objects of one plan, built on meta tensors."""
    from spn_kernels import _triton_slices
    from spn_kernels.ops.categorical_draw import triton as draw
    from spn_kernels.ops.gated_step import triton as gated
    from spn_kernels.ops.masked_conv2d import triton as conv
    from spn_kernels.ops.masked_conv2d_step import triton as step
    from spn_kernels.ops.slice_context import triton as context
    from spn_kernels.ops.slice_scatter_ import triton as scatter
    from spn_kernels.ops.subscale_merge import triton as merge
    from spn_kernels.ops.subscale_split import triton as split

    def t(*shape, dtype=torch.float32):
        return torch.empty(*shape, dtype=dtype, device=META)

    out = []
    idx = t(64, dtype=torch.int64)
    for cfg in _triton_slices.CONFIGS:
        if cfg == "interp":
            continue
        for dtype in (torch.uint8, torch.bfloat16, torch.float32):
            for s in (2, 4, 8, 3) if dtype != torch.bfloat16 else (4,):
                img = t(64, 3, 24 * s, 24 * s, dtype=dtype)
                out.append((f"split-{cfg}-{dtype}-s{s}", lambda img=img, s=s, c=cfg: [split.plan(img, s, c)[0]]))
            img = t(64, 3, 256, 256, dtype=dtype)
            sl = t(64, 16, 3, 64, 64, dtype=dtype)
            out.append((f"merge-{cfg}-{dtype}", lambda sl=sl, c=cfg: [merge.plan(sl, c)[0]]))
            out.append((f"scatter-{cfg}-{dtype}", lambda img=img, v=sl[:, 0], c=cfg: [scatter.plan(img, v, 4, idx, c)]))
        for dtype in (torch.uint8, torch.int16):
            for s in (4, 8):
                img = t(64, 3, 256, 256, dtype=dtype)
                out.append(
                    (f"context-{cfg}-{dtype}-s{s}", lambda img=img, s=s, c=cfg: [context.plan(img, s, idx, 8, c)[0]])
                )

    def conv_dtypes(name):
        return {"h16": (torch.bfloat16, torch.float16), "f32": (torch.float32,), "f64": (torch.float64,)}[name[:3]]

    def fwd(x, w, b, mt, g, cfg, prec):
        return [conv.plan_conv(x, w, b, mt, g, False, cfg, prec)[0]]

    def dx(gy, w, mt, g, cfg, prec):
        return [conv.plan_conv(gy, w, None, mt, g, True, cfg, prec)[0]]

    def dw(gy, x, w, mt, g, need, cfg, prec):
        return [conv.plan_conv_dw(gy, x, w, mt, g, need[1], need[2], cfg, prec)[0]]

    for cfg in conv.CONV_CONFIGS:
        for dtype in conv_dtypes(cfg):
            for prec in _precisions(dtype):
                x, w, b = t(8, 128, 32, 32, dtype=dtype), t(128, 128, 5, 5, dtype=dtype), t(128, dtype=dtype)
                out.append(
                    (f"conv-{cfg}-{dtype}-{prec}", lambda x=x, w=w, b=b, c=cfg, p=prec: fwd(x, w, b, "B", 1, c, p))
                )
                out.append((f"conv-dx-{cfg}-{dtype}-{prec}", lambda x=x, w=w, c=cfg, p=prec: dx(x, w, "B", 1, c, p)))
    # the mask variants change the kernels' static structure: grouped centre tap (A and B), V, no bias
    x, w = t(8, 96, 16, 16), t(96, 96, 3, 3)
    for mt, g in (("A", 3), ("B", 3), ("V", 1), ("A", 1)):
        out.append(
            (
                f"conv-{mt}-g{g}",
                lambda mt=mt, g=g, x=x, w=w: (
                    dx(x, w, mt, g, None, "tf32") + dw(x, x, w, mt, g, [True] * 3, None, "tf32")
                ),
            )
        )
        out.append((f"conv-fwd-{mt}-g{g}", lambda mt=mt, g=g, x=x, w=w: fwd(x, w, None, mt, g, None, "tf32")))
    # the grouped centre tap's own loop (finite inputs in one dot, a 0/1 dot counting the non-finite ones) in
    # the 16-bit and fp64 tiles too
    for dtype in (torch.bfloat16, torch.float16, torch.float64):
        xg, wg = t(8, 96, 16, 16, dtype=dtype), t(96, 96, 3, 3, dtype=dtype)
        out.append((f"conv-A-g3-{dtype}", lambda x=xg, w=wg: fwd(x, w, None, "A", 3, None, "ieee")))
    # gated-PixelCNN kernel shapes ((1, k) rows, (k//2 + 1, k) and (k//2, k) vertical stacks), the interleaved
    # colour layout with unequal groups, and k = 1 "A" (no kept tap: grad_bias alone)
    xo = t(8, 10, 16, 16)
    shape_cases = (
        ((96, 96, 1, 5), "A", 1, "blocked", x),
        ((96, 96, 1, 5), "B", 3, "blocked", x),
        ((96, 96, 3, 5), "V", 1, "blocked", x),
        ((96, 96, 2, 5), "B", 1, "blocked", x),
        ((10, 10, 1, 3), "A", 3, "interleaved", xo),
        ((10, 10, 3, 3), "B", 3, "interleaved", xo),
        ((96, 96, 1, 1), "A", 1, "blocked", x),
    )
    for shape, mt, g, lay, src in shape_cases:
        ws = t(*shape)

        def cases(ws=ws, mt=mt, g=g, lay=lay, src=src):
            return [
                conv.plan_conv(src, ws, None, mt, g, False, None, "tf32", lay)[0],
                conv.plan_conv(src, ws, None, mt, g, True, None, "tf32", lay)[0],
                conv.plan_conv_dw(src, src, ws, mt, g, True, True, None, "tf32", lay)[0],
            ]

        out.append((f"conv-{'x'.join(map(str, shape[2:]))}-{mt}-g{g}-{lay}", cases))
    for cfg in conv.DW_CONFIGS:
        for dtype in conv_dtypes(cfg):
            for prec in _precisions(dtype):
                x, w = t(8, 128, 32, 32, dtype=dtype), t(128, 128, 5, 5, dtype=dtype)
                # grad_weight + grad_bias, and grad_bias alone (mask A: STRICT, and B)
                for need, mt in (([False, True, True], "A"), ([False, False, True], "A"), ([False, False, True], "B")):
                    out.append(
                        (
                            f"conv-dw-{cfg}-{dtype}-{prec}-{mt}-{need}",
                            lambda x=x, w=w, c=cfg, n=need, mt=mt, p=prec: dw(x, x, w, mt, 1, n, c, p),
                        )
                    )
    for cfg in step.STEP_CONFIGS:
        dtypes = (torch.float64,) if cfg.endswith("f64") else (torch.bfloat16, torch.float16, torch.float32)
        mt = "V" if cfg.startswith("row") else "B"
        for dtype in dtypes:
            for prec in _precisions(dtype):
                cache, w, b = t(16, 128, 32, 32, dtype=dtype), t(128, 128, 5, 5, dtype=dtype), t(128, dtype=dtype)
                xn = t(16, 128, 32, dtype=dtype) if mt == "V" else t(16, 128, dtype=dtype)
                for new in (xn, None):
                    out.append(
                        (
                            f"step-{cfg}-{dtype}-{prec}-new{new is not None}",
                            lambda cache=cache, xn=new, w=w, b=b, c=cfg, mt=mt, p=prec: [
                                step.plan(cache, xn, w, b, 5, 7, mt, 1, c, p)[0]
                            ],
                        )
                    )
    for shape, mt, g, lay in (((96, 96, 1, 5), "B", 3, "interleaved"), ((96, 96, 3, 5), "V", 1, "blocked")):
        cache, ws = t(16, 96, 16, 16), t(*shape)
        xn = t(16, 96, 16) if mt == "V" else t(16, 96)
        out.append(
            (
                f"step-{'x'.join(map(str, shape[2:]))}-{mt}-g{g}-{lay}",
                lambda cache=cache, xn=xn, ws=ws, mt=mt, g=g, lay=lay: [
                    step.plan(cache, xn, ws, None, 3, 4, mt, g, None, "ieee", lay)[0]
                ],
            )
        )
    cache, w = t(16, 96, 16, 16), t(96, 96, 5, 5)
    for mt in ("A", "B"):
        out.append(
            (
                f"step-{mt}-g3",
                lambda mt=mt, cache=cache, w=w: [
                    step.plan(cache, cache[:, :, 0, 0], w, None, 3, 4, mt, 3, None, "tf32")[0]
                ],
            )
        )
    # gated_step: every config at the decoder widths of the CPU presets (32, 3 channels in block 0) and the
    # paper-scale ones (256, d not a power of two: 96)
    for cfg in gated.CONFIGS:
        dtype = torch.float64 if cfg == "f64" else torch.float32
        for d, c0, k in ((32, 3, 3), (256, 256, 5), (96, 3, 3)):
            p, n = k // 2, 16
            h_in = [t(16, n + p, n + 2 * p, c, dtype=dtype) for c in (c0, d)]
            row_term = [t(16, n, 2 * d, dtype=dtype) for _ in range(2)]
            w_h = [t((p + 1) * k * c, 2 * d, dtype=dtype) for c in (c0, d)]
            w_out, b_out = [t(d, d, dtype=dtype)] * 2, [t(d, dtype=dtype)] * 2
            out.append(
                (
                    f"gated-step-{cfg}-d{d}-c{c0}-k{k}",
                    lambda a=(h_in, row_term, w_h, w_out, b_out), c=cfg: gated.plan(*a, 3, 4, c)[0],
                )
            )
    # categorical_draw: row blocks from 16 to MAX_K (K = 2, 256, MAX_K), float32 and float64 logits
    for dtype in (torch.float32, torch.float64):
        for K in (2, 256, draw.MAX_K):
            lg, u = t(64, K, dtype=dtype), t(64, dtype=torch.float64)
            v, lp = t(64, dtype=torch.int64), t(64, dtype=torch.float64)
            out.append((f"draw-{dtype}-K{K}", lambda a=(lg, u, 0.7, v, lp): [draw.plan(*a)]))
    return out


def _source(launch):
    from triton.backends.compiler import BaseBackend
    from triton.compiler import ASTSource
    from triton.runtime.jit import native_specialize_impl

    kernel = launch.kernel
    names = kernel.arg_names
    sig, consts, attrs = {}, {}, {}
    for i, (name, arg) in enumerate(zip(names, launch.args)):
        if isinstance(arg, torch.Tensor):
            sig[name], spec = "*" + _TY[arg.dtype], "D"  # the caching allocator aligns to >= 16 bytes
        else:
            # do_not_specialize arguments (sizes that vary at run time) get no value/divisibility specialisation
            specialize = not kernel.params[i].do_not_specialize
            sig[name], spec = native_specialize_impl(BaseBackend, arg, False, specialize, True)
            if sig[name] == "constexpr":
                consts[name] = spec
        if spec == "D":
            attrs[(i,)] = [["tt.divisibility", 16]]
    options = {}
    for name, value in launch.meta.items():
        if name in ("num_warps", "num_stages"):
            options[name] = value
        else:
            sig[name], consts[name] = "constexpr", value
    return ASTSource(kernel, sig, consts, attrs), options


def compile_all(capability: int) -> int:
    import triton
    from triton.backends.compiler import GPUTarget

    from spn_kernels import _triton_launch

    assert not _triton_launch.interpreting(), "unset TRITON_INTERPRET: it replaces @triton.jit by the interpreter"
    target = GPUTarget("cuda", capability, 32)
    seen, n, t0 = set(), 0, time.time()
    for name, thunk in _cases():
        launches = thunk()
        assert launches, f"{name}: the plan launches nothing"
        for launch in launches:
            src, options = _source(launch)
            key = (src.hash(), tuple(sorted(options.items())))
            if key in seen:
                continue
            seen.add(key)
            try:
                kernel = triton.compile(src, target=target, options=options)
            except Exception as e:  # name the case, then fail
                raise RuntimeError(f"sm_{capability} {name} ({launch.kernel.fn.__name__}, {options}): {e}") from e
            assert kernel.asm.get("cubin"), name
            n += 1
    print(f"sm_{capability}: compiled {n} kernels in {time.time() - t0:.1f} s")
    return n


def test_compile_for_gpu(tmp_path):
    pytest.importorskip("triton")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    procs = {}
    for cap in ("90", "80"):  # one process per architecture, side by side: compiling is single-threaded
        env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
        env["TRITON_CACHE_DIR"] = str(tmp_path / cap)  # compile for real every time, not from an earlier cache
        procs[cap] = subprocess.Popen(
            [sys.executable, "-m", "tests.ops.test_triton_compile", cap],
            env=env, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
    for cap, proc in procs.items():
        try:
            out, err = proc.communicate(timeout=1200)
        except subprocess.TimeoutExpired:
            for p in procs.values():
                p.kill()
            raise
        assert proc.returncode == 0, out[-4000:] + err[-8000:]
        assert f"sm_{cap}: compiled" in out


if __name__ == "__main__":
    for cap in sys.argv[1:]:
        compile_all(int(cap))
