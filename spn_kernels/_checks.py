"""The input rules of the ops in Python, for where no C++ kernel runs.

The C++ kernels check their own inputs (csrc/checks.h, shared by the CPU kernels and the CUDA binding), so on
the dispatcher path the public functions check only what C++ cannot see (`as_t`, `check_devices`). These
rules run instead for the reference (backend="torch"), inside the Triton ops, and in the fake kernels
(torch.compile). Each raises ValueError naming the argument and showing the shapes, with the same wording as
the C++ checks. Plain ``if``/``raise`` rather than torch._check_value: dynamo traces it (guarding on shapes),
while _check_value's message closure must not capture tensors.
"""

from __future__ import annotations

from typing import Callable

import torch

MASK_TYPES = ("A", "B", "V")
FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
INT_DTYPES = (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)


def require(cond, message: Callable[[], str]) -> None:
    if not cond:
        raise ValueError(message())


def _shape(t: torch.Tensor) -> str:
    return str(tuple(t.shape))


def check_rank(x: torch.Tensor, rank: int, name: str, layout: str) -> None:
    require(x.dim() == rank, lambda: f"{name} must be {rank}-D {layout}, got shape {_shape(x)}")


def check_same(a: torch.Tensor, b: torch.Tensor, na: str, nb: str) -> None:
    require(a.device == b.device, lambda: f"{na} is on {a.device} but {nb} is on {b.device}")
    require(a.dtype == b.dtype, lambda: f"{na} has dtype {a.dtype} but {nb} has dtype {b.dtype}")


def check_devices(first: torch.Tensor, name: str, **others: torch.Tensor | None) -> None:
    """Every tensor in ``others`` is on ``first``'s device. The dispatcher picks a kernel from the devices of
    all tensor arguments before any kernel runs, so the public functions check this themselves."""
    for na, t in others.items():
        if isinstance(t, torch.Tensor):
            require(t.device == first.device, lambda: f"{na} is on {t.device} but {name} is on {first.device}")


# ---------------------------------------------------------------- slice ops
def check_subscale(x: torch.Tensor, s: int, name: str = "x") -> None:
    check_rank(x, 4, name, "[B, C, H, W]")
    require(s >= 1, lambda: f"s must be >= 1, got s={s}")
    require(
        x.shape[2] % s == 0 and x.shape[3] % s == 0,
        lambda: f"{name} height and width must be divisible by s={s}, got {name} of shape {_shape(x)}",
    )


def check_slices(slices: torch.Tensor) -> int:
    """Validates a [B, s*s, C, n, m] stack and returns s."""
    check_rank(slices, 5, "slices", "[B, s*s, C, n, m]")
    s2 = int(slices.shape[1])
    s = int(round(s2**0.5))
    require(s >= 1 and s * s == s2, lambda: f"slices.shape[1] must be a square s*s >= 1, got shape {_shape(slices)}")
    return s


def check_int_image(x: torch.Tensor, name: str = "x") -> None:
    require(
        x.dtype in INT_DTYPES, lambda: f"{name} must be an integer image (uint8/int8/int16/int32/int64), got {x.dtype}"
    )


def check_bits(bits: int) -> None:
    require(1 <= bits <= 16, lambda: f"bits must be in 1..16, got bits={bits}")


def check_t(t: torch.Tensor, x: torch.Tensor) -> None:
    """t is an integer tensor [B] on x's device (its values: `as_t`)."""
    B = x.shape[0]
    require(t.dim() == 1 and t.shape[0] == B, lambda: f"t must have shape [B]=({B},), got shape {_shape(t)}")
    require(not t.is_floating_point() and not t.is_complex(), lambda: f"t must be an integer tensor, got {t.dtype}")
    require(t.device == x.device, lambda: f"t is on {t.device} but x is on {x.device}")


def as_t(t: int | torch.Tensor, x: torch.Tensor, hi: int, check_values: bool) -> torch.Tensor:
    """The slice index ``t`` as a tensor: an int becomes an int64 tensor [B] on x's device, a tensor is
    passed on as it is (its shape and dtype are the kernel's to check: `check_t`, csrc/checks.h).

    ``hi`` is the largest valid value. With ``check_values`` the range is checked here, eagerly: for every
    kernel but the C++ CPU ones, which read t on the host and check it themselves. Under torch.compile nobody
    checks the values (a graph cannot branch on them); the kernels then stay in bounds whatever t holds.
    """
    if isinstance(t, int):
        if check_values:
            require(0 <= t <= hi, lambda: f"t must be in [0, {hi}], got t={t}")
        return torch.full((x.shape[0] if x.dim() else 0,), t, dtype=torch.int64, device=x.device)
    require(isinstance(t, torch.Tensor), lambda: f"t must be an int or a LongTensor [B], got {type(t)}")
    if check_values and t.numel() > 0 and not (t.is_floating_point() or t.is_complex()):
        lo_v, hi_v = int(t.min()), int(t.max())
        require(lo_v >= 0 and hi_v <= hi, lambda: f"t must be in [0, {hi}], got values in [{lo_v}, {hi_v}]")
    return t


# ---------------------------------------------------------------- masked convolution
COLOR_LAYOUTS = ("blocked", "interleaved")


def kernel_rows(kh: int, kw: int) -> tuple[int, int]:
    """(r0, n): a (kh, kw) weight holds rows r0..r0+n-1 of the centred kw x kw kernel (masked_conv2d/ref.py).
    Raises ValueError for a shape that is none of the allowed row sets."""
    p = kw // 2
    require(kw % 2 == 1, lambda: f"weight kernel width must be odd, got kernel (kh, kw)=({kh}, {kw})")
    require(kh >= 1, lambda: f"weight kernel height must be >= 1, got kernel (kh, kw)=({kh}, {kw})")
    if kh == kw:
        return 0, kw
    if kh == 1:
        return p, 1
    if kh in (p, p + 1):
        return 0, kh
    raise ValueError(
        f"weight kernel height must be one of {kw} (all rows), 1 (centre row), {p + 1} (rows 0..{p}) or {p} "
        f"(rows 0..{p - 1}) for kernel width {kw}, got kernel (kh, kw)=({kh}, {kw})"
    )


def check_conv_params(
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    mask_type: str,
    color_groups: int,
    color_layout: str = "blocked",
) -> None:
    kh, kw = weight.shape[2], weight.shape[3]
    require(kw % 2 == 1, lambda: f"weight kernel width must be odd, got shape {_shape(weight)}")
    kernel_rows(kh, kw)
    require(mask_type in MASK_TYPES, lambda: f"mask_type must be one of 'A', 'B', 'V', got {mask_type!r}")
    require(
        color_layout in COLOR_LAYOUTS,
        lambda: f"color_layout must be one of 'blocked', 'interleaved', got {color_layout!r}",
    )
    require(color_groups >= 1, lambda: f"color_groups must be >= 1, got {color_groups}")
    require(
        mask_type != "V" or color_groups == 1,
        lambda: f"color_groups applies to the centre tap of masks 'A'/'B' only; mask 'V' needs 1, got {color_groups}",
    )
    require(
        color_layout == "interleaved" or (weight.shape[0] % color_groups == 0 and weight.shape[1] % color_groups == 0),
        lambda: (
            f"C_out and C_in must be divisible by color_groups={color_groups} for color_layout='blocked' "
            f"(color_layout='interleaved' allows unequal groups), got weight {_shape(weight)}"
        ),
    )
    require(
        weight.dtype in FLOAT_DTYPES, lambda: f"weight must be float16/bfloat16/float32/float64, got {weight.dtype}"
    )
    if bias is not None:
        require(
            bias.dim() == 1 and bias.shape[0] == weight.shape[0],
            lambda: f"bias must have shape [C_out]=({weight.shape[0]},), got {_shape(bias)}",
        )
        check_same(bias, weight, "bias", "weight")


def check_conv(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    mask_type: str,
    color_groups: int,
    color_layout: str = "blocked",
) -> None:
    check_rank(x, 4, "x", "[B, C_in, H, W]")
    check_rank(weight, 4, "weight", "[C_out, C_in, kh, kw]")
    check_conv_params(weight, bias, mask_type, color_groups, color_layout)
    require(
        x.shape[1] == weight.shape[1],
        lambda: (
            f"x has {x.shape[1]} channels but weight expects C_in={weight.shape[1]}: "
            f"x {_shape(x)}, weight {_shape(weight)}"
        ),
    )
    check_same(x, weight, "x", "weight")


def check_conv_backward(
    grad_out: torch.Tensor,
    x: torch.Tensor,
    weight: torch.Tensor,
    mask_type: str,
    color_groups: int,
    output_mask: list[bool],
    color_layout: str = "blocked",
) -> None:
    check_conv(x, weight, None, mask_type, color_groups, color_layout)
    require(len(output_mask) == 3, lambda: f"output_mask must have 3 entries, got {len(output_mask)}")
    want = (x.shape[0], weight.shape[0], x.shape[2], x.shape[3])
    require(
        tuple(grad_out.shape) == want,
        lambda: f"grad_out must have shape [B, C_out, H, W]={want}, got {_shape(grad_out)}",
    )
    check_same(grad_out, x, "grad_out", "x")


def check_step(
    cache: torch.Tensor,
    x_new: torch.Tensor | None,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    row: int,
    col: int,
    mask_type: str,
    color_groups: int,
    color_layout: str = "blocked",
) -> None:
    check_rank(cache, 4, "cache", "[B, C_in, H, W]")
    check_rank(weight, 4, "weight", "[C_out, C_in, kh, kw]")
    check_conv_params(weight, bias, mask_type, color_groups, color_layout)
    check_same(cache, weight, "cache", "weight")
    B, C, H, W = cache.shape
    require(
        C == weight.shape[1],
        lambda: (
            f"cache has {C} channels but weight expects C_in={weight.shape[1]}: "
            f"cache {_shape(cache)}, weight {_shape(weight)}"
        ),
    )
    require(0 <= row < H, lambda: f"row must be in [0, {H}) for cache {_shape(cache)}, got row={row}")
    require(0 <= col < W, lambda: f"col must be in [0, {W}) for cache {_shape(cache)}, got col={col}")
    if x_new is not None:
        want = (B, C, W) if mask_type == "V" else (B, C)
        require(
            tuple(x_new.shape) == want,
            lambda: (
                f"x_new must have shape {want} for mask '{mask_type}' and cache {_shape(cache)}, got {_shape(x_new)}"
            ),
        )
        check_same(x_new, cache, "x_new", "cache")
